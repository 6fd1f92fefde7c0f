//! Expiry of old messages and inactive addresses (daily job), and quota-driven expiry of the
//! oldest INBOX messages (run by Dovecot's quota warning).

use std::io::Write;
use std::path::Path;

use crate::config::Config;
use crate::mailbox::{MailboxStat, month_day};

/// After a quota cleanup the mailbox should be at this fraction of its quota.
pub const QUOTA_CLEANUP_FACTOR: f64 = 0.7;
/// Messages larger than this (bytes) expire after `delete_large_after` days once seen.
pub const LARGE_MESSAGE_SIZE: u64 = 200_000;
/// Mail younger than this is never removed to make room: a full mailbox must stay visible
/// to its owner as "quota exceeded".
pub const PROTECTED_AGE: f64 = 86_400.0;

/// A message as Dovecot names it: `<delivery ts>.<unique>,S=<size>...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuotaEntry {
    pub timestamp: u64,
    pub quota_size: u64,
    /// `cur/<name>` or `new/<name>`.
    pub relpath: String,
}

/// Parse a maildir file name; `None` for names Dovecot did not produce.
pub fn parse_dovecot_filename(sub: &str, name: &str) -> Option<QuotaEntry> {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || name.as_bytes().get(digits) != Some(&b'.') {
        return None;
    }
    let rest = &name[digits + 1..];
    // The last ",S=<digits>" that has at least one character before it.
    let size = rest
        .match_indices(",S=")
        .filter(|(i, _)| *i > 0)
        .filter_map(|(i, m)| {
            let tail = &rest[i + m.len()..];
            let n = tail.bytes().take_while(u8::is_ascii_digit).count();
            tail[..n].parse::<u64>().ok()
        })
        .last()?;
    Some(QuotaEntry {
        timestamp: name[..digits].parse().ok()?,
        quota_size: size,
        relpath: format!("{sub}/{name}"),
    })
}

/// INBOX messages (`cur/` and `new/` only) with Dovecot-style names.
pub fn scan_quota_entries(mailbox: &Path) -> Vec<QuotaEntry> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(mailbox.join(sub)) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if let Some(q) = parse_dovecot_filename(sub, &e.file_name().to_string_lossy()) {
                out.push(q);
            }
        }
    }
    out
}

/// The oldest INBOX messages that must go so that the quota-counted size is at most
/// `target_bytes`; mail delivered within the last 24 h is never selected.
pub fn plan_quota_removals(mailbox: &Path, target_bytes: f64, now: f64) -> Vec<QuotaEntry> {
    let mut messages = scan_quota_entries(mailbox);
    messages.sort();
    let mut total: u64 = messages.iter().map(|m| m.quota_size).sum();
    let cutoff = now - PROTECTED_AGE;
    let mut out = Vec::new();
    for m in messages {
        if total as f64 <= target_bytes || m.timestamp as f64 > cutoff {
            break;
        }
        total -= m.quota_size;
        out.push(m);
    }
    out
}

/// Delete what [`plan_quota_removals`] selects; returns how many messages that was.
pub fn expire_to_target(mailbox: &Path, target_bytes: f64, now: f64) -> usize {
    let planned = plan_quota_removals(mailbox, target_bytes, now);
    for m in &planned {
        // Already gone (e.g. expunged meanwhile) is fine.
        let _ = std::fs::remove_file(mailbox.join(&m.relpath));
    }
    planned.len()
}

/// The quota-warning entry point: clean up and tell Dovecot to recount if anything changed.
pub fn quota_expire(mailbox: &Path, target_mb: u64, now: f64, info: &mut dyn Write) -> usize {
    let removed = expire_to_target(mailbox, (target_mb * 1024 * 1024) as f64, now);
    if removed > 0 {
        let _ = std::fs::remove_file(mailbox.join("maildirsize"));
        let name = mailbox.file_name().unwrap_or_default().to_string_lossy();
        let _ = writeln!(
            info,
            "quota-expire: removed {removed} message(s) from {name}"
        );
    }
    removed
}

/// The daily expiry run over all mailboxes.
pub struct Expiry<'a> {
    config: &'a Config,
    dry: bool,
    now: f64,
    verbose: bool,
    info: &'a mut dyn Write,
    pub del_mboxes: usize,
    pub all_mboxes: usize,
    pub del_files: usize,
    pub all_files: usize,
}

impl<'a> Expiry<'a> {
    /// `dry`: count and report but delete nothing. `info` receives progress lines.
    pub fn new(
        config: &'a Config,
        dry: bool,
        now: f64,
        verbose: bool,
        info: &'a mut dyn Write,
    ) -> Self {
        Expiry {
            config,
            dry,
            now,
            verbose,
            info,
            del_mboxes: 0,
            all_mboxes: 0,
            del_files: 0,
            all_files: 0,
        }
    }

    fn say(&mut self, line: String) {
        let _ = writeln!(self.info, "{line}");
    }

    fn remove_mailbox(&mut self, dir: &Path) {
        if self.verbose {
            self.say(format!("removing {}", dir.display()));
        }
        if !self.dry
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            self.say(format!("failed to remove {}: {e}", dir.display()));
        }
        self.del_mboxes += 1;
    }

    fn remove_file(&mut self, path: &Path, mtime: Option<f64>) {
        if self.verbose {
            match mtime {
                Some(t) => self.say(format!("removing {} {}", month_day(t), path.display())),
                None => self.say(format!("removing {}", path.display())),
            }
        }
        if !self.dry
            && let Err(e) = std::fs::remove_file(path)
        {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.say(format!("file not found/vanished {}", path.display()));
            } else {
                self.say(format!("failed to remove {}: {e}", path.display()));
            }
        }
        self.del_files += 1;
    }

    pub fn process_mailbox(&mut self, mbox: &MailboxStat) {
        let day = 86_400.0;
        let cutoff_login = self.now - f64::from(self.config.delete_inactive_users_after) * day;
        let cutoff_mails = self.now - f64::from(self.config.delete_mails_after) * day;
        let cutoff_large = self.now - f64::from(self.config.delete_large_after) * day;
        self.all_mboxes += 1;

        let Some(last_login) = mbox.last_login else {
            // No password: a leftover directory. Only an empty one is removed.
            if !self.dry {
                if std::fs::remove_dir(&mbox.basedir).is_ok() {
                    self.del_mboxes += 1;
                } else {
                    self.say(format!(
                        "Skipped deleting {}, doesn't have last_login but isn't empty",
                        mbox.basedir.display()
                    ));
                }
            }
            return;
        };
        if last_login > 0.0 && last_login < cutoff_login {
            self.remove_mailbox(&mbox.basedir);
            return;
        }
        if self.verbose {
            self.say(format!(
                "checking mailbox {} {}",
                month_day(last_login),
                mbox.name
            ));
        }

        self.all_files += mbox.messages.len();
        let mut changed = false;
        for m in &mbox.messages {
            let in_cur = m
                .path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "cur");
            // Large mail is only removed once seen (moved to cur/), never unseen in new/.
            if m.mtime < cutoff_mails
                || (m.size > LARGE_MESSAGE_SIZE && m.mtime < cutoff_large && in_cur)
            {
                self.remove_file(&m.path, Some(m.mtime));
                changed = true;
            }
        }

        let target = (self.config.max_mailbox_size_mb * 1024 * 1024) as f64 * QUOTA_CLEANUP_FACTOR;
        // Unlike the Python tool, a dry run does not delete here either; it only counts.
        let removed = if self.dry {
            plan_quota_removals(&mbox.basedir, target, self.now).len()
        } else {
            expire_to_target(&mbox.basedir, target, self.now)
        };
        if removed > 0 {
            changed = true;
            self.del_files += removed;
            if self.verbose {
                self.say(format!(
                    "quota-expire: removed {removed} message(s) from {}",
                    mbox.name
                ));
            }
        }
        if changed {
            self.remove_file(&mbox.basedir.join("maildirsize"), None);
        }
    }

    pub fn summary(&self, elapsed_secs: f64) -> String {
        format!(
            "Removed {} out of {} mailboxes and {} out of {} files in existing mailboxes in {elapsed_secs:.2} seconds",
            self.del_mboxes, self.all_mboxes, self.del_files, self.all_files
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::scan_mailboxes;
    use std::fs::{File, FileTimes};
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    const NOW: f64 = 1_800_000_000.0;
    const DAY: f64 = 86_400.0;

    fn set_mtime(path: &Path, ts: f64) {
        let t = UNIX_EPOCH + Duration::from_secs_f64(ts);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }

    fn config(mbox: &Path, extra: &str) -> Config {
        Config::parse(
            &format!(
                "[params]\nmail_domain = x.org\nmailboxes_dir = {}\n{extra}",
                mbox.display()
            ),
            "t.ini",
        )
        .unwrap()
    }

    /// Create `MBOX/<addr>` with a password file touched `login_age` days before NOW.
    fn mailbox(mbox: &Path, addr: &str, login_age: Option<f64>) -> PathBuf {
        let dir = mbox.join(addr);
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        if let Some(age) = login_age {
            std::fs::write(dir.join("password"), "pw").unwrap();
            set_mtime(&dir.join("password"), NOW - age * DAY);
        }
        std::fs::write(dir.join("maildirsize"), "x").unwrap();
        dir
    }

    /// A message with the given age (days) and size; name carries delivery time and S=.
    fn message(dir: &Path, sub: &str, age_days: f64, size: usize) -> PathBuf {
        let ts = NOW - age_days * DAY;
        let p = dir
            .join(sub)
            .join(format!("{}.M1P2.host,S={size},W={size}:2,S", ts as u64));
        std::fs::write(&p, vec![b'x'; size]).unwrap();
        set_mtime(&p, ts);
        p
    }

    fn run(config: &Config, dry: bool) -> (usize, usize, usize, usize, String) {
        let mut info = Vec::new();
        let mut out = Vec::new();
        let mut exp = Expiry::new(config, dry, NOW, true, &mut info);
        for m in scan_mailboxes(&config.mailboxes_dir, None, &mut out) {
            exp.process_mailbox(&m);
        }
        let r = (exp.del_mboxes, exp.all_mboxes, exp.del_files, exp.all_files);
        (r.0, r.1, r.2, r.3, String::from_utf8(info).unwrap())
    }

    #[test]
    fn filename_parsing() {
        let e = parse_dovecot_filename("cur", "1775324677.M448978P3029757.exam,S=3235,W=3305:2,S")
            .unwrap();
        assert_eq!(e.timestamp, 1_775_324_677);
        assert_eq!(e.quota_size, 3235);
        assert_eq!(
            e.relpath,
            "cur/1775324677.M448978P3029757.exam,S=3235,W=3305:2,S"
        );
        assert_eq!(
            parse_dovecot_filename("new", "12.a,S=1,S=22")
                .unwrap()
                .quota_size,
            22
        );
        for bad in [
            "dovecot.index",
            "x12.a,S=1",
            "12a,S=1",
            "12.,S=1",
            "12.abc",
            "12.a,S=",
            ".a,S=1",
        ] {
            assert_eq!(parse_dovecot_filename("cur", bad), None, "{bad}");
        }
    }

    #[test]
    fn inactive_mailbox_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "");
        let old = mailbox(tmp.path(), "old@x.org", Some(91.0));
        let recent = mailbox(tmp.path(), "recent@x.org", Some(89.0));
        let (del_mb, all_mb, _, _, info) = run(&c, false);
        assert_eq!((del_mb, all_mb), (1, 2));
        assert!(!old.exists());
        assert!(recent.exists());
        assert!(
            info.contains(&format!("removing {}", old.display())),
            "{info}"
        );
    }

    #[test]
    fn dry_run_deletes_nothing_but_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "");
        let old = mailbox(tmp.path(), "old@x.org", Some(91.0));
        let active = mailbox(tmp.path(), "a@x.org", Some(1.0));
        let m = message(&active, "cur", 21.0, 10);
        let (del_mb, _, del_files, all_files, _) = run(&c, true);
        assert_eq!(
            (del_mb, del_files, all_files),
            (1, 2, 1),
            "message + maildirsize"
        );
        assert!(old.exists() && m.exists() && active.join("maildirsize").exists());
    }

    #[test]
    fn mailbox_without_password() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "");
        std::fs::create_dir_all(tmp.path().join("empty@x.org")).unwrap();
        let full = mailbox(tmp.path(), "full@x.org", None);
        let (del_mb, all_mb, _, _, info) = run(&c, false);
        assert_eq!((del_mb, all_mb), (1, 2));
        assert!(!tmp.path().join("empty@x.org").exists());
        assert!(full.exists());
        assert!(
            info.contains("doesn't have last_login but isn't empty"),
            "{info}"
        );
    }

    #[test]
    fn old_and_large_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "");
        let mb = mailbox(tmp.path(), "a@x.org", Some(0.0));
        std::fs::create_dir_all(mb.join(".DeltaChat/cur")).unwrap();
        let old = message(&mb, "cur", 21.0, 10);
        let old_sub = message(&mb, ".DeltaChat/cur", 21.0, 10);
        let young = message(&mb, "cur", 19.0, 10);
        let large_seen = message(&mb, "cur", 8.0, 200_001);
        let large_unseen = message(&mb, "new", 8.0, 200_001);
        let large_recent = message(&mb, "cur", 6.0, 200_001);
        let borderline = message(&mb, "cur", 8.0, 200_000);
        let (_, _, del_files, all_files, info) = run(&c, false);
        assert_eq!(all_files, 7);
        assert_eq!(del_files, 4, "3 messages + maildirsize");
        for gone in [&old, &old_sub, &large_seen] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        for kept in [&young, &large_unseen, &large_recent, &borderline] {
            assert!(kept.exists(), "{}", kept.display());
        }
        assert!(!mb.join("maildirsize").exists());
        assert!(info.contains("checking mailbox "), "{info}");
        assert!(info.contains(&format!(
            "removing {} {}",
            month_day(NOW - 21.0 * DAY),
            old.display()
        )));
    }

    #[test]
    fn unchanged_mailbox_keeps_maildirsize() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "");
        let mb = mailbox(tmp.path(), "a@x.org", Some(0.0));
        message(&mb, "cur", 1.0, 10);
        run(&c, false);
        assert!(mb.join("maildirsize").exists());
    }

    #[test]
    fn quota_target_in_daily_run() {
        let tmp = tempfile::tempdir().unwrap();
        // 1 MB quota → target 0.7 MiB.
        let c = config(tmp.path(), "max_mailbox_size = 1M\n");
        let mb = mailbox(tmp.path(), "a@x.org", Some(0.0));
        let m1 = message(&mb, "cur", 5.0, 300_000);
        let m2 = message(&mb, "new", 4.0, 300_000);
        let m3 = message(&mb, "cur", 3.0, 300_000);
        let (_, _, del_files, _, info) = run(&c, false);
        assert!(!m1.exists());
        assert!(m2.exists() && m3.exists());
        assert_eq!(del_files, 2, "one message + maildirsize");
        assert!(
            info.contains("quota-expire: removed 1 message(s) from a@x.org"),
            "{info}"
        );
    }

    #[test]
    fn quota_target_dry_run_only_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "max_mailbox_size = 1M\n");
        let mb = mailbox(tmp.path(), "a@x.org", Some(0.0));
        let m1 = message(&mb, "cur", 5.0, 300_000);
        let m2 = message(&mb, "new", 4.0, 300_000);
        let m3 = message(&mb, "cur", 3.0, 300_000);
        let (_, _, del_files, _, _) = run(&c, true);
        assert_eq!(del_files, 2);
        assert!(m1.exists() && m2.exists() && m3.exists() && mb.join("maildirsize").exists());
    }

    #[test]
    fn quota_expire_removes_oldest_but_not_recent() {
        let tmp = tempfile::tempdir().unwrap();
        let mb = mailbox(tmp.path(), "a@x.org", Some(0.0));
        let a = message(&mb, "cur", 3.0, 1024 * 1024);
        let b = message(&mb, "new", 2.0, 1024 * 1024);
        let c = message(&mb, "cur", 0.5, 1024 * 1024);
        let d = message(&mb, "cur", 0.1, 1024 * 1024);
        // Sub-folder mail never counts for the INBOX quota cleanup.
        std::fs::create_dir_all(mb.join(".Sub/cur")).unwrap();
        let sub = message(&mb, ".Sub/cur", 10.0, 1024 * 1024);
        let mut info = Vec::new();
        // Target 1 MiB: a and b go, c and d are younger than 24 h and stay.
        assert_eq!(quota_expire(&mb, 1, NOW, &mut info), 2);
        assert!(!a.exists() && !b.exists());
        assert!(c.exists() && d.exists() && sub.exists());
        assert!(!mb.join("maildirsize").exists());
        assert_eq!(
            String::from_utf8(info).unwrap(),
            "quota-expire: removed 2 message(s) from a@x.org\n"
        );
    }

    #[test]
    fn quota_expire_below_target_does_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mb = mailbox(tmp.path(), "a@x.org", Some(0.0));
        let a = message(&mb, "cur", 3.0, 1000);
        let mut info = Vec::new();
        assert_eq!(quota_expire(&mb, 1, NOW, &mut info), 0);
        assert!(a.exists() && mb.join("maildirsize").exists());
        assert!(info.is_empty());
    }

    #[test]
    fn quota_order_uses_name_timestamp_then_size() {
        let tmp = tempfile::tempdir().unwrap();
        let mb = tmp.path().join("a@x.org");
        std::fs::create_dir_all(mb.join("cur")).unwrap();
        let ts = (NOW - 10.0 * DAY) as u64;
        for (name, size) in [("big", 300), ("small", 100)] {
            std::fs::write(mb.join("cur").join(format!("{ts}.{name},S={size}")), "").unwrap();
        }
        // Total 400, target 350 → the smaller of the two same-timestamp messages goes first.
        assert_eq!(expire_to_target(&mb, 350.0, NOW), 1);
        assert!(mb.join("cur").join(format!("{ts}.big,S=300")).exists());
    }

    #[test]
    fn summary_line() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), "");
        let mut info = Vec::new();
        let exp = Expiry::new(&c, true, NOW, false, &mut info);
        assert_eq!(
            exp.summary(1.234),
            "Removed 0 out of 0 mailboxes and 0 out of 0 files in existing mailboxes in 1.23 seconds"
        );
    }
}
