//! Installed Debian packages, from `dpkg-query`.

use serde::Serialize;

use crate::shell;

/// One package as dpkg knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    /// dpkg's two-letter want/status abbreviation, e.g. `ii` or `rc`.
    pub status: String,
    pub version: String,
}

impl Package {
    /// Unpacked and configured; `rc` (removed, config left) does not count.
    pub fn installed(&self) -> bool {
        self.status.get(1..2) == Some("i")
    }
}

pub(crate) fn snippet(names: &[&str]) -> String {
    if names.is_empty() {
        return String::new();
    }
    format!(
        "dpkg-query -W -f='${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' -- {} 2>/dev/null || true",
        shell::quote_all(names)
    )
}

/// Packages dpkg does not know at all are simply absent from the result.
pub(crate) fn parse(out: &str) -> Vec<Package> {
    out.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let name = f.next()?.trim();
            let status = f.next()?.trim();
            let version = f.next().unwrap_or("").trim();
            // multi-arch packages may be listed as name:arch
            let name = name.split(':').next().unwrap_or(name);
            (!name.is_empty()).then(|| Package {
                name: name.to_string(),
                status: status.to_string(),
                version: version.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_dpkg_query_output() {
        let out = "dbus\tii \t1.14.10-1~deb12u1\nopenssh-server\tii \t1:9.2p1-2+deb12u10\nnginx\trc \t1.22.1-9\n";
        let p = parse(out);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].name, "openssh-server");
        assert_eq!(p[1].version, "1:9.2p1-2+deb12u10");
        assert!(p[0].installed());
        assert!(!p[2].installed(), "rc means removed");
    }

    #[test]
    fn ignores_garbage_lines() {
        assert!(parse("\n\nnonsense\n").is_empty());
    }

    #[test]
    fn snippet_quotes_names() {
        assert!(snippet(&["nginx", "a b"]).contains("-- nginx 'a b'"));
        assert_eq!(snippet(&[]), "");
    }
}
