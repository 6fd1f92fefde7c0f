//! Storage and login statistics over all mailboxes: a human-readable summary, a Prometheus
//! textfile, or the legacy account-count metrics file.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::random_u64;
use crate::mailbox::{MailboxStat, datetime_string};
use crate::user::with_suffix;

const DAY: f64 = 86_400.0;
pub const LOGIN_BUCKETS: [u32; 7] = [1, 10, 30, 40, 80, 100, 150];
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
pub const SIZE_THRESHOLDS: [u64; 7] = [0, 100 * KIB, MIB / 2, MIB, 2 * MIB, 5 * MIB, 10 * MIB];

/// Compact human-readable size with decimal units, 5 characters wide plus the unit.
pub fn hsize(size: u64) -> String {
    let s = size as f64;
    if size < 10_000 {
        format!("{:5.2}K", s / 1000.0)
    } else if size < 1_000_000 {
        format!("{:5.0}K", s / 1000.0)
    } else if size < 1_000_000_000 {
        format!("{:5}M", size / 1_000_000)
    } else {
        format!("{:5.2}G", s / 1e9)
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub now: f64,
    pub min_login_age: u32,
    /// Only count messages below `/<mdir>/` (cur, new or tmp) in the size buckets.
    pub mdir: Option<String>,
    pub size_extra: u64,
    pub size_messages: u64,
    pub num_all_logins: u64,
    pub num_ci_logins: u64,
    pub login_buckets: [u64; LOGIN_BUCKETS.len()],
    pub message_bytes: [u64; SIZE_THRESHOLDS.len()],
    pub message_counts: [u64; SIZE_THRESHOLDS.len()],
}

impl Report {
    pub fn new(now: f64, min_login_age: u32, mdir: Option<String>) -> Report {
        Report {
            now,
            min_login_age,
            mdir,
            size_extra: 0,
            size_messages: 0,
            num_all_logins: 0,
            num_ci_logins: 0,
            login_buckets: [0; LOGIN_BUCKETS.len()],
            message_bytes: [0; SIZE_THRESHOLDS.len()],
            message_counts: [0; SIZE_THRESHOLDS.len()],
        }
    }

    pub fn user_logins(&self) -> u64 {
        self.num_all_logins - self.num_ci_logins
    }

    pub fn add_mailbox(&mut self, mbox: &MailboxStat) {
        let last_login = mbox.last_login.filter(|&t| t != 0.0);
        if let Some(login) = last_login {
            self.num_all_logins += 1;
            if mbox.name.starts_with("ci-") {
                self.num_ci_logins += 1;
            } else {
                for (i, days) in LOGIN_BUCKETS.iter().enumerate() {
                    if login >= self.now - f64::from(*days) * DAY {
                        self.login_buckets[i] += 1;
                    }
                }
            }
        }
        let cutoff = self.now - f64::from(self.min_login_age) * DAY;
        if last_login.is_some_and(|l| l <= cutoff) {
            let marker = self.mdir.as_ref().map(|d| format!("/{d}/"));
            for msg in &mbox.messages {
                if let Some(m) = &marker
                    && !msg.path.to_string_lossy().contains(m.as_str())
                {
                    continue;
                }
                for (i, threshold) in SIZE_THRESHOLDS.iter().enumerate() {
                    if msg.size >= *threshold {
                        self.message_bytes[i] += msg.size;
                        self.message_counts[i] += 1;
                    }
                }
            }
        }
        self.size_messages += mbox.messages.iter().map(|e| e.size).sum::<u64>();
        self.size_extra += mbox.extrafiles.iter().map(|e| e.size).sum::<u64>();
    }

    pub fn summary(&self) -> String {
        let mut o = String::new();
        let total = self.size_extra + self.size_messages;
        let _ = writeln!(o);
        let _ = writeln!(o, "## Mailbox storage use analysis");
        let _ = writeln!(o, "Mailbox data total size: {}", hsize(total));
        let _ = writeln!(o, "Messages total size    : {}", hsize(self.size_messages));
        let pct = if total > 0 {
            self.size_extra as f64 / total as f64 * 100.0
        } else {
            100.0
        };
        let _ = writeln!(o, "Extra files : {} ({pct:.2}%)", hsize(self.size_extra));
        let _ = writeln!(o);
        if self.min_login_age > 0 {
            let _ = writeln!(
                o,
                "### Message storage for {} days old logins",
                self.min_login_age
            );
        }
        let pref = self
            .mdir
            .as_ref()
            .map(|d| format!("[{d}] "))
            .unwrap_or_default();
        for (i, threshold) in SIZE_THRESHOLDS.iter().enumerate() {
            let bytes = self.message_bytes[i];
            let pct = if self.size_messages > 0 {
                bytes as f64 / self.size_messages as f64 * 100.0
            } else {
                0.0
            };
            let _ = writeln!(
                o,
                "{pref}larger than {}: {} ({pct:.2}%), {} msgs",
                hsize(*threshold),
                hsize(bytes),
                self.message_counts[i]
            );
        }
        let users = self.user_logins();
        let share = |n: u64| {
            if users > 0 {
                format!("({:2.2}%)", n as f64 / users as f64 * 100.0)
            } else {
                "100%".to_owned()
            }
        };
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "## Login stats, from date reference {}",
            datetime_string(self.now)
        );
        let _ = writeln!(o, "all:     {}", hsize(self.num_all_logins));
        let _ = writeln!(o, "non-ci:  {}", hsize(users));
        let _ = writeln!(o, "ci:      {}", hsize(self.num_ci_logins));
        for (i, days) in LOGIN_BUCKETS.iter().enumerate() {
            let n = self.login_buckets[i];
            let _ = writeln!(o, "last {days:3} days: {} {}", hsize(n), share(n));
        }
        o
    }

    /// Prometheus text exposition format.
    pub fn textfile(&self) -> String {
        let mut o = String::new();
        let mut gauge = |name: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} gauge");
            for (labels, v) in rows {
                let _ = writeln!(o, "{name}{{{labels}}} {v}");
            }
        };
        gauge(
            "chatmail_storage_bytes",
            "Mailbox storage in bytes.",
            vec![
                ("kind=\"messages\"".into(), self.size_messages),
                ("kind=\"extra\"".into(), self.size_extra),
                (
                    "kind=\"total\"".into(),
                    self.size_messages + self.size_extra,
                ),
            ],
        );
        let by_size = |values: &[u64]| {
            SIZE_THRESHOLDS
                .iter()
                .zip(values)
                .map(|(t, v)| (format!("min_size=\"{t}\""), *v))
                .collect::<Vec<_>>()
        };
        gauge(
            "chatmail_messages_bytes",
            "Sum of msg bytes >= threshold.",
            by_size(&self.message_bytes),
        );
        gauge(
            "chatmail_messages_count",
            "Number of msgs >= size threshold.",
            by_size(&self.message_counts),
        );
        gauge(
            "chatmail_accounts",
            "Number of accounts.",
            vec![
                ("kind=\"all\"".into(), self.num_all_logins),
                ("kind=\"ci\"".into(), self.num_ci_logins),
                ("kind=\"user\"".into(), self.user_logins()),
            ],
        );
        gauge(
            "chatmail_accounts_active",
            "Non-CI accounts active within N days.",
            LOGIN_BUCKETS
                .iter()
                .zip(self.login_buckets)
                .map(|(d, v)| (format!("days=\"{d}\""), v))
                .collect(),
        );
        o
    }

    /// The format of the former metrics script (account counts only).
    pub fn legacy_metrics(&self) -> String {
        format!(
            "# HELP total number of accounts\n# TYPE accounts gauge\naccounts {}\n\
             # HELP number of CI accounts\n# TYPE ci_accounts gauge\nci_accounts {}\n\
             # HELP number of non-CI accounts\n# TYPE nonci_accounts gauge\nnonci_accounts {}\n",
            self.num_all_logins,
            self.num_ci_logins,
            self.user_logins()
        )
    }
}

/// Write a world-readable file atomically (node_exporter / nginx read it as other users).
pub fn write_public_atomic(path: &Path, content: &str) -> Result<()> {
    let tmp = with_suffix(path, &format!(".{}.tmp", random_u64()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::FileEntry;
    use std::path::PathBuf;

    const NOW: f64 = 1_800_000_000.0;

    fn mbox(
        name: &str,
        login_days_ago: Option<f64>,
        messages: &[(&str, u64)],
        extra: u64,
    ) -> MailboxStat {
        MailboxStat {
            basedir: PathBuf::from(format!("/m/{name}")),
            name: name.into(),
            messages: messages
                .iter()
                .map(|(p, size)| FileEntry {
                    path: PathBuf::from(format!("/m/{name}/{p}")),
                    mtime: NOW,
                    size: *size,
                })
                .collect(),
            extrafiles: vec![FileEntry {
                path: PathBuf::from("/m/x/password"),
                mtime: NOW,
                size: extra,
            }],
            last_login: login_days_ago.map(|d| NOW - d * DAY),
        }
    }

    fn sample() -> Report {
        let mut r = Report::new(NOW, 0, None);
        r.add_mailbox(&mbox(
            "user1@x",
            Some(0.5),
            &[("cur/a", 200 * KIB), ("new/b", 100)],
            1000,
        ));
        r.add_mailbox(&mbox("user2@x", Some(35.0), &[("cur/c", 3 * MIB)], 1000));
        r.add_mailbox(&mbox("ci-abc@x", Some(0.0), &[("tmp/d", 50)], 10));
        r.add_mailbox(&mbox("nopw@x", None, &[("cur/e", 7)], 0));
        r
    }

    #[test]
    fn sizes() {
        assert_eq!(hsize(0), " 0.00K");
        assert_eq!(hsize(5), " 0.01K");
        assert_eq!(hsize(9_999), "10.00K");
        assert_eq!(hsize(10_000), "   10K");
        assert_eq!(hsize(999_999), " 1000K");
        assert_eq!(hsize(1_500_000), "    1M");
        assert_eq!(hsize(2_500_000_000), " 2.50G");
    }

    #[test]
    fn counts_and_buckets() {
        let r = sample();
        assert_eq!(
            (r.num_all_logins, r.num_ci_logins, r.user_logins()),
            (3, 1, 2)
        );
        // 1-day bucket: user1 only; 40 days and more: both non-CI users.
        assert_eq!(r.login_buckets, [1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(r.size_messages, 200 * KIB + 100 + 3 * MIB + 50 + 7);
        assert_eq!(r.size_extra, 2010);
        // nopw has no login: its messages are not bucketed.
        assert_eq!(r.message_counts, [4, 2, 1, 1, 1, 0, 0]);
        assert_eq!(r.message_bytes[1], 200 * KIB + 3 * MIB);
    }

    #[test]
    fn min_login_age_and_mdir_filters() {
        let mut r = Report::new(NOW, 30, None);
        r.add_mailbox(&mbox("user1@x", Some(0.5), &[("cur/a", 10)], 0));
        r.add_mailbox(&mbox("user2@x", Some(35.0), &[("cur/c", 20)], 0));
        assert_eq!(r.message_counts[0], 1);
        assert_eq!(r.message_bytes[0], 20);
        let mut r = Report::new(NOW, 0, Some("new".into()));
        r.add_mailbox(&mbox(
            "user1@x",
            Some(0.5),
            &[("cur/a", 10), ("new/b", 5)],
            0,
        ));
        assert_eq!(r.message_bytes[0], 5);
        assert!(
            r.summary().contains("[new] larger than  0.00K:  0.01K"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn textfile_format() {
        let t = sample().textfile();
        assert!(t.starts_with(
            "# HELP chatmail_storage_bytes Mailbox storage in bytes.\n# TYPE chatmail_storage_bytes gauge\n"
        ));
        assert!(t.contains("chatmail_accounts{kind=\"all\"} 3\n"));
        assert!(t.contains("chatmail_accounts{kind=\"ci\"} 1\n"));
        assert!(t.contains("chatmail_accounts{kind=\"user\"} 2\n"));
        assert!(t.contains("chatmail_accounts_active{days=\"150\"} 2\n"));
        assert!(t.contains("chatmail_messages_count{min_size=\"10485760\"} 0\n"));
        assert!(t.contains("chatmail_messages_count{min_size=\"0\"} 4\n"));
        assert_eq!(t.matches("# TYPE").count(), 5);
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn legacy_format() {
        let l = sample().legacy_metrics();
        assert!(l.contains("\naccounts 3\n"));
        assert!(l.contains("\nci_accounts 1\n"));
        assert!(l.ends_with("nonci_accounts 2\n"));
    }

    #[test]
    fn summary_text() {
        let s = sample().summary();
        assert!(s.contains("## Mailbox storage use analysis"));
        assert!(s.contains("all:      0.00K"), "{s}");
        assert!(s.contains("last   1 days:  0.00K (50.00%)"), "{s}");
        let empty = Report::new(NOW, 7, None).summary();
        assert!(empty.contains("### Message storage for 7 days old logins"));
        assert!(empty.contains("last 150 days:  0.00K 100%"), "{empty}");
    }

    #[test]
    fn atomic_public_write() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("fsreport.prom");
        write_public_atomic(&p, "a 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 1\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
