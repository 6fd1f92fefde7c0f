//! Restart handlers, and the record of pending ones on the host.
//!
//! Before the first change of a run that will need restarts, the restarts are written to
//! [`PENDING_FILE`]; the file is removed only after they ran. A run killed in between leaves
//! the file behind, and the next run picks the restarts up from its facts.

use std::collections::BTreeSet;

use facts::shell::quote;

use crate::Notify;

pub const PENDING_FILE: &str = "/var/lib/chatmail-deploy/pending-restarts";

/// One line per handler: `restart UNIT`, `reload UNIT` or `daemon-reload`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    pub notify: BTreeSet<Notify>,
    pub daemon_reload: bool,
}

impl Pending {
    pub fn parse(text: &str) -> Pending {
        let mut p = Pending::default();
        for line in text.lines().map(str::trim) {
            match line.split_once(' ') {
                Some(("restart", unit)) => {
                    p.notify.insert(Notify::Restart(unit.to_string()));
                }
                Some(("reload", unit)) => {
                    p.notify.insert(Notify::Reload(unit.to_string()));
                }
                _ if line == "daemon-reload" => p.daemon_reload = true,
                _ => {} // unknown lines: written by a newer version, ignore
            }
        }
        p
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.daemon_reload {
            s.push_str("daemon-reload\n");
        }
        for n in &self.notify {
            match n {
                Notify::Restart(u) => s.push_str(&format!("restart {u}\n")),
                Notify::Reload(u) => s.push_str(&format!("reload {u}\n")),
            }
        }
        s
    }

    /// What `changes` call for, on top of what is already recorded.
    pub fn from_changes(changes: &[crate::Change], on_host: &Pending) -> Pending {
        let mut p = on_host.clone();
        for c in changes {
            p.daemon_reload |= c.changes_unit_file;
            p.notify.extend(c.notify.iter().cloned());
        }
        p
    }

    pub fn is_empty(&self) -> bool {
        !self.daemon_reload && self.notify.is_empty()
    }

    /// A restart makes a reload of the same unit pointless.
    pub fn effective(&self) -> Vec<Notify> {
        let restarted: BTreeSet<&str> = self
            .notify
            .iter()
            .filter(|n| matches!(n, Notify::Restart(_)))
            .map(Notify::unit)
            .collect();
        self.notify
            .iter()
            .filter(|n| matches!(n, Notify::Restart(_)) || !restarted.contains(n.unit()))
            .cloned()
            .collect()
    }
}

pub(crate) fn record_script(pending: &Pending) -> String {
    let dir = PENDING_FILE.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
    format!(
        "set -e; mkdir -p {dir}; t={f}.tmp.$$; trap 'rm -f \"$t\"' EXIT; printf %s {body} > \"$t\"; sync \"$t\" 2>/dev/null || true; mv -f \"$t\" {f}",
        f = PENDING_FILE,
        body = quote(&pending.render()),
    )
}

/// After the last handler: nothing is pending, and no unit needs its previous files any
/// more (a unit whose files changed but that was not restarted, a stopped one, keeps none).
pub(crate) fn clear_script() -> String {
    format!(
        "rm -f {PENDING_FILE}; rm -rf -- {}",
        crate::script::PREVIOUS_DIR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut p = Pending {
            daemon_reload: true,
            ..Pending::default()
        };
        p.notify.insert(Notify::Restart("a.service".into()));
        p.notify.insert(Notify::Reload("nginx.service".into()));
        assert_eq!(Pending::parse(&p.render()), p);
    }

    #[test]
    fn restart_wins_over_reload() {
        let p = Pending::parse("reload nginx.service\nrestart nginx.service\nreload x.service\n");
        assert_eq!(
            p.effective(),
            vec![
                Notify::Restart("nginx.service".into()),
                Notify::Reload("x.service".into())
            ]
        );
    }

    #[test]
    fn garbage_lines_are_ignored() {
        let p = Pending::parse("\nfrobnicate x\nrestart\n");
        assert!(p.is_empty());
    }
}
