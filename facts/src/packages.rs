//! Installed Debian packages, from `dpkg-query`.

use std::collections::BTreeMap;

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
    // kept in a variable for `virtual_snippet`, which runs later in the same script
    format!(
        "dpkg_lines=$(dpkg-query -W -f='${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' -- {} 2>/dev/null || true)\n\
         [ -z \"$dpkg_lines\" ] || printf '%s\\n' \"$dpkg_lines\"",
        shell::quote_all(names)
    )
}

/// For the names that are not installed, what apt knows of them: `apt-cache showpkg` lists a
/// virtual package (one that only other packages provide) with no versions and its providers.
/// apt-get "installs" such a name by installing a provider, and dpkg then never shows the name
/// itself installed, so a plan naming it would never converge. Nothing runs when every name is
/// installed, which keeps a no-op run as fast as before.
pub(crate) fn virtual_snippet(names: &[&str]) -> String {
    if names.is_empty() {
        return String::new();
    }
    // no process per name: this runs on every deploy. `dpkg_lines` is the output of `snippet`.
    format!(
        "missing=$(printf '%s\\n' \"$dpkg_lines\" | awk -F '\\t' -v want={want} \\\n\
         'BEGIN {{ n = split(want, w, \" \") }} {{ sub(/:.*/, \"\", $1) }} $2 ~ /^.i/ {{ ok[$1] = 1 }} \\\n\
         END {{ for (i = 1; i <= n; i++) if (!(w[i] in ok)) print w[i] }}')\n\
         [ -z \"$missing\" ] || apt-cache showpkg $missing 2>/dev/null || true",
        want = shell::quote(&names.join(" ")),
    )
}

/// Virtual packages and their providers, from `apt-cache showpkg` output. A name apt does not
/// know at all is not listed (stale lists are healed by the install's `apt-get update`).
pub(crate) fn parse_virtual(out: &str) -> BTreeMap<String, Vec<String>> {
    #[derive(PartialEq)]
    enum Part {
        Versions,
        ReverseProvides,
        Other,
    }
    let mut found = BTreeMap::new();
    let mut finish = |name: Option<String>, versions: usize, providers: &mut Vec<String>| {
        if let Some(name) = name
            && versions == 0
            && !providers.is_empty()
        {
            providers.sort();
            providers.dedup();
            found.insert(name, std::mem::take(providers));
        }
        providers.clear();
    };
    let (mut name, mut versions, mut providers, mut part) = (None, 0, Vec::new(), Part::Other);
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("Package: ") {
            finish(name.take(), versions, &mut providers);
            name = Some(n.trim().to_string());
            versions = 0;
            part = Part::Other;
        } else if line.starts_with("Versions:") {
            part = Part::Versions;
        } else if line.starts_with("Reverse Provides:") {
            part = Part::ReverseProvides;
        } else if line.starts_with("Reverse Depends:")
            || line.starts_with("Dependencies:")
            || line.starts_with("Provides:")
        {
            part = Part::Other;
        } else if !line.trim().is_empty() {
            match part {
                Part::Versions => versions += 1,
                Part::ReverseProvides => {
                    if let Some(p) = line.split_whitespace().next() {
                        providers.push(p.to_string());
                    }
                }
                Part::Other => {}
            }
        }
    }
    finish(name, versions, &mut providers);
    found
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

    /// Captured from Debian 12: `apt-cache showpkg ssh-client curl` (versions shortened).
    #[test]
    fn finds_virtual_packages_and_their_providers() {
        let out = "Package: ssh-client\nVersions: \n\nReverse Depends: \n  sshfs,ssh-client\nDependencies: \nProvides: \nReverse Provides: \nopenssh-client 1:9.2p1-2+deb12u6 (= )\nopenssh-client 1:9.2p1-2+deb12u10 (= )\nPackage: curl\nVersions: \n7.88.1-10+deb12u14 (/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages)\n Description Language: \n\nReverse Depends: \n  zoneminder,curl\nDependencies: \n7.88.1-10+deb12u14 - libc6 (2 2.34)\nProvides: \n7.88.1-10+deb12u14 - \nReverse Provides: \n";
        let v = parse_virtual(out);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v["ssh-client"], vec!["openssh-client".to_string()]);
    }

    #[test]
    fn virtual_snippet_runs_and_asks_only_for_missing_names() {
        let names = ["sh-is-not-a-package-name-x", "dash"];
        let script = format!("{}\n{}", snippet(&names), virtual_snippet(&names));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}");
        assert!(parse_virtual(&String::from_utf8_lossy(&out.stdout)).is_empty());
        assert_eq!(virtual_snippet(&[]), "");
    }

    #[test]
    fn snippet_quotes_names() {
        assert!(snippet(&["nginx", "a b"]).contains("-- nginx 'a b' 2>"));
        assert_eq!(snippet(&[]), "");
    }
}
