//! `/etc/os-release`, the machine architecture and whether the host is a container.

use std::collections::BTreeMap;

use serde::Serialize;

pub(crate) const OS_RELEASE: &str = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release";
/// `uname -m` names the kernel's architecture, dpkg the one packages are built for; the second
/// line is empty on hosts without dpkg.
pub(crate) const ARCH: &str = "uname -m; dpkg --print-architecture 2>/dev/null || true";
/// Prints `none` outside containers (and exits 1, which does not matter here).
pub(crate) const CONTAINER: &str = "systemd-detect-virt --container 2>/dev/null || true";

/// The parsed `os-release` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    pub fields: BTreeMap<String, String>,
}

impl OsRelease {
    pub fn is_debian(&self) -> bool {
        self.id == "debian"
    }
}

pub(crate) fn parse_os_release(out: &str) -> OsRelease {
    let fields: BTreeMap<String, String> = out
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect();
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    OsRelease {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        pretty_name: get("PRETTY_NAME"),
        fields,
    }
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v);
    v.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Returns (kernel arch, dpkg arch).
pub(crate) fn parse_arch(out: &str) -> (String, String) {
    let mut lines = out.lines().map(str::trim);
    let machine = lines.next().unwrap_or("").to_string();
    let dpkg = lines.next().unwrap_or("").to_string();
    (machine, dpkg)
}

/// `None` when the host is not a container.
pub(crate) fn parse_container(out: &str) -> Option<String> {
    match out.trim() {
        "" | "none" => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;

    #[test]
    fn parses_debian_bookworm() {
        let os = parse_os_release(BOOKWORM);
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os.fields["VERSION_CODENAME"], "bookworm");
        assert!(os.is_debian());
    }

    #[test]
    fn parses_other_systems() {
        let os = parse_os_release("NAME=Fedora\nID=fedora\nVERSION_ID=40\n");
        assert_eq!(os.id, "fedora");
        assert!(!os.is_debian());
    }

    #[test]
    fn arch_and_container() {
        assert_eq!(
            parse_arch("x86_64\namd64\n"),
            ("x86_64".into(), "amd64".into())
        );
        assert_eq!(parse_arch("aarch64\n"), ("aarch64".into(), "".into()));
        assert_eq!(
            parse_container("systemd-nspawn\n"),
            Some("systemd-nspawn".into())
        );
        assert_eq!(parse_container("none\n"), None);
    }
}
