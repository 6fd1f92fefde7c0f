//! Scanning per-address Maildirs for expiry and storage reports.

use std::fs::Metadata;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Maildir folders nest only a level or two; the bound protects against symlink loops.
const MAX_DEPTH: usize = 16;

/// A regular file found while scanning.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    pub path: PathBuf,
    /// Modification time, Unix seconds with fraction.
    pub mtime: f64,
    pub size: u64,
}

/// Everything found below one address directory.
#[derive(Debug, Clone, Default)]
pub struct MailboxStat {
    pub basedir: PathBuf,
    /// Directory name = the address.
    pub name: String,
    /// Files directly inside any `cur`, `new` or `tmp` directory.
    pub messages: Vec<FileEntry>,
    /// All other regular files, largest first.
    pub extrafiles: Vec<FileEntry>,
    /// mtime of the `password` file: the last-login day.
    pub last_login: Option<f64>,
}

pub(crate) fn mtime_f64(meta: &Metadata) -> f64 {
    match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(d)) => d.as_secs_f64(),
        Ok(Err(e)) => -e.duration().as_secs_f64(),
        Err(_) => 0.0,
    }
}

/// Regular file (following symlinks) or `None`.
fn file_entry(path: PathBuf) -> Option<FileEntry> {
    let meta = std::fs::metadata(&path).ok()?;
    meta.is_file().then(|| FileEntry {
        mtime: mtime_f64(&meta),
        size: meta.len(),
        path,
    })
}

fn list_names(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl MailboxStat {
    pub fn scan(basedir: &Path) -> MailboxStat {
        let mut stat = MailboxStat {
            basedir: basedir.to_owned(),
            name: basedir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..MailboxStat::default()
        };
        stat.scan_dir(basedir, 0);
        stat.extrafiles.sort_by_key(|e| std::cmp::Reverse(e.size));
        stat
    }

    fn scan_dir(&mut self, dir: &Path, depth: usize) {
        for name in list_names(dir) {
            let path = dir.join(&name);
            if matches!(name.as_str(), "cur" | "new" | "tmp") {
                for msg in list_names(&path) {
                    if let Some(entry) = file_entry(path.join(msg)) {
                        self.messages.push(entry);
                    }
                }
            } else if path.is_dir() {
                if depth < MAX_DEPTH {
                    self.scan_dir(&path, depth + 1);
                }
            } else if let Some(entry) = file_entry(path) {
                if name == "password" {
                    self.last_login = Some(entry.mtime);
                }
                self.extrafiles.push(entry);
            }
        }
    }
}

/// Scan the address directories (names containing `@`) among the first `maxnum` entries
/// of the mailboxes dir, in directory order. A missing dir is reported on `info`.
pub fn scan_mailboxes(
    basedir: &Path,
    maxnum: Option<usize>,
    info: &mut dyn Write,
) -> impl Iterator<Item = MailboxStat> + use<> {
    let names = if basedir.exists() {
        list_names(basedir)
    } else {
        let _ = writeln!(info, "no mailboxes found at: {}", basedir.display());
        Vec::new()
    };
    let basedir = basedir.to_owned();
    let limit = maxnum.unwrap_or(usize::MAX);
    names
        .into_iter()
        .take(limit)
        .filter(|n| n.contains('@'))
        .map(move |n| MailboxStat::scan(&basedir.join(n)))
}

/// `Mon DD` of a Unix timestamp (UTC), for log lines.
pub fn month_day(ts: f64) -> String {
    let (_, m, d) = civil_from_days((ts.floor() as i64).div_euclid(86_400));
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!("{} {d:02}", MONTHS[(m - 1) as usize])
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn datetime_string(ts: f64) -> String {
    let secs = ts.floor() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(month_day(0.0), "Jan 01");
        assert_eq!(month_day(1_767_312_345.0), "Jan 02");
        assert_eq!(datetime_string(1_767_312_345.5), "2026-01-02 00:05:45");
        assert_eq!(datetime_string(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(month_day(1_709_164_800.0), "Feb 29");
    }

    #[test]
    fn scan_classifies_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mb = tmp.path().join("a@x.org");
        for d in [
            "cur",
            "new",
            "tmp",
            ".DeltaChat/cur",
            ".DeltaChat/new",
            "deep/er",
        ] {
            std::fs::create_dir_all(mb.join(d)).unwrap();
        }
        std::fs::write(mb.join("password"), "pw").unwrap();
        std::fs::write(mb.join("cur/1.M1,S=10"), "0123456789").unwrap();
        std::fs::write(mb.join("new/2.M2,S=3"), "abc").unwrap();
        std::fs::write(mb.join(".DeltaChat/cur/3.M3,S=1"), "x").unwrap();
        std::fs::write(mb.join("dovecot.index"), "12345").unwrap();
        std::fs::write(mb.join("deep/er/file"), "1").unwrap();
        // Directories inside cur/ are not messages.
        std::fs::create_dir_all(mb.join("cur/subdir")).unwrap();
        let s = MailboxStat::scan(&mb);
        assert_eq!(s.name, "a@x.org");
        assert_eq!(s.messages.len(), 3);
        assert!(s.last_login.is_some());
        let extra: Vec<u64> = s.extrafiles.iter().map(|e| e.size).collect();
        assert_eq!(extra, [5, 2, 1], "largest first");
    }

    #[test]
    fn scan_mailboxes_filters_and_limits() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["a@x", "b@x", "pending_notifications"] {
            std::fs::create_dir_all(tmp.path().join(n)).unwrap();
        }
        let mut info = Vec::new();
        let mut names: Vec<String> = scan_mailboxes(tmp.path(), None, &mut info)
            .map(|m| m.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a@x", "b@x"]);
        assert!(scan_mailboxes(tmp.path(), Some(3), &mut info).count() == 2);
        assert!(scan_mailboxes(tmp.path(), Some(0), &mut info).count() == 0);
        assert!(info.is_empty());
        assert_eq!(
            scan_mailboxes(&tmp.path().join("missing"), None, &mut info).count(),
            0
        );
        assert!(
            String::from_utf8(info)
                .unwrap()
                .starts_with("no mailboxes found at: ")
        );
    }
}
