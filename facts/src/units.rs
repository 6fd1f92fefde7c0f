//! systemd units, from one `systemctl show` call.

use serde::Serialize;

use crate::shell;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// The name that was asked for (an alias resolves to another `Id`).
    pub name: String,
    pub id: String,
    /// `loaded`, `not-found`, `masked`, ...
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, ...
    pub active_state: String,
    /// `enabled`, `disabled`, `static`, `masked`, ... (empty when not found)
    pub unit_file_state: String,
    pub fragment_path: String,
    /// When it last became active (`ActiveEnterTimestamp`, empty if never).
    pub active_since: String,
}

impl Unit {
    pub fn exists(&self) -> bool {
        self.load_state != "not-found"
    }

    pub fn is_active(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "reloading" | "activating"
        )
    }

    pub fn is_masked(&self) -> bool {
        self.load_state == "masked" || self.unit_file_state.starts_with("masked")
    }

    /// Enabled, or started by something else (static units cannot be enabled).
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated"
        )
    }
}

pub(crate) fn snippet(names: &[&str]) -> String {
    if names.is_empty() {
        return String::new();
    }
    format!(
        "systemctl show -p Id,LoadState,ActiveState,UnitFileState,FragmentPath,ActiveEnterTimestamp -- {} 2>/dev/null || true",
        shell::quote_all(names)
    )
}

/// systemctl prints one block per asked name, in the order asked, separated by blank lines.
pub(crate) fn parse(names: &[&str], out: &str) -> Result<Vec<Unit>, crate::Error> {
    let blocks: Vec<&str> = out
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    if blocks.len() != names.len() {
        return Err(crate::Error::parse(
            "units",
            format!(
                "asked for {} units, got {} blocks",
                names.len(),
                blocks.len()
            ),
        ));
    }
    Ok(names
        .iter()
        .zip(blocks)
        .map(|(name, block)| {
            let mut unit = Unit {
                name: name.to_string(),
                ..Unit::default()
            };
            for (key, value) in block.lines().filter_map(|l| l.split_once('=')) {
                let value = value.to_string();
                match key {
                    "Id" => unit.id = value,
                    "LoadState" => unit.load_state = value,
                    "ActiveState" => unit.active_state = value,
                    "UnitFileState" => unit.unit_file_state = value,
                    "FragmentPath" => unit.fragment_path = value,
                    "ActiveEnterTimestamp" => unit.active_since = value,
                    _ => {}
                }
            }
            unit
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = "Id=ssh.service\nLoadState=loaded\nActiveState=active\nFragmentPath=/lib/systemd/system/ssh.service\nUnitFileState=enabled\nActiveEnterTimestamp=Tue 2026-12-01 18:02:11 UTC\n\n\
Id=nginx.service\nLoadState=not-found\nActiveState=inactive\nFragmentPath=\nUnitFileState=\n\n\
Id=systemd-journald.service\nLoadState=loaded\nActiveState=active\nFragmentPath=/lib/systemd/system/systemd-journald.service\nUnitFileState=static\n\n\
Id=postfix.service\nLoadState=masked\nActiveState=inactive\nFragmentPath=\nUnitFileState=masked";

    #[test]
    fn parses_captured_systemctl_show() {
        let names = [
            "sshd.service",
            "nginx.service",
            "systemd-journald.service",
            "postfix.service",
        ];
        let u = parse(&names, CAPTURED).unwrap();
        assert_eq!(u[0].name, "sshd.service");
        assert_eq!(u[0].id, "ssh.service");
        assert!(u[0].is_active() && u[0].is_enabled() && u[0].exists());
        assert_eq!(u[0].active_since, "Tue 2026-12-01 18:02:11 UTC");
        assert!(!u[1].exists());
        assert!(!u[1].is_enabled());
        assert!(u[2].is_enabled(), "static counts as enabled");
        assert!(u[3].is_masked());
    }

    #[test]
    fn block_count_mismatch_is_an_error() {
        assert!(parse(&["a.service"], "").is_err());
    }
}
