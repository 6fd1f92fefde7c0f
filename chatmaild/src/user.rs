//! Per-address state on disk: `MBOX/<addr>/{password,enforceE2EEincoming,...}`.
//!
//! The password file doubles as the only activity record: its mtime is the last-login day.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::utimes;
use nix::sys::time::TimeVal;

use crate::error::{Error, Result};
use crate::fsutil::write_bytes_atomic;

/// Dovecot runs every mailbox as this system user and group.
pub const VMAIL: &str = "vmail";

/// Paths belonging to one address. Construct through [`crate::Config::get_user`], which
/// validates the address.
#[derive(Debug, Clone)]
pub struct User {
    pub addr: String,
    pub maildir: PathBuf,
    pub password_path: PathBuf,
    pub enforce_e2ee_path: PathBuf,
}

/// What Dovecot's passdb/userdb lookups need to know about an existing address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub addr: String,
    pub home: String,
    pub password: String,
}

impl UserRecord {
    /// JSON object in the shape the dict passdb/userdb expects. Spacing follows the
    /// Python service's output so that logs and captures compare equal.
    pub fn to_json(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "{{\"addr\": {}, \"home\": {}, \"uid\": {}, \"gid\": {}, \"password\": {}}}",
            q(&self.addr),
            q(&self.home),
            q(VMAIL),
            q(VMAIL),
            q(&self.password)
        )
    }
}

/// Round a Unix timestamp down to the start of its UTC day.
pub fn day_timestamp(ts: i64) -> i64 {
    ts.div_euclid(86_400) * 86_400
}

impl User {
    pub(crate) fn new(maildir: PathBuf, addr: &str) -> User {
        User {
            addr: addr.to_owned(),
            password_path: maildir.join("password"),
            enforce_e2ee_path: maildir.join("enforceE2EEincoming"),
            maildir,
        }
    }

    /// Lock file that serialises account creation for this address.
    pub fn password_lock_path(&self) -> PathBuf {
        with_suffix(&self.password_path, ".lock")
    }

    /// The stored record, or `None` if the account does not exist (missing or empty
    /// password file; the latter is logged because it means a broken account).
    pub fn record(&self) -> Result<Option<UserRecord>> {
        let bytes = match std::fs::read(&self.password_path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.password_path, e)),
        };
        if bytes.is_empty() {
            log::error!("password is empty for: {}", self.addr);
            return Ok(None);
        }
        let password = String::from_utf8(bytes).map_err(|_| {
            Error::io(
                &self.password_path,
                std::io::Error::new(ErrorKind::InvalidData, "password file is not UTF-8"),
            )
        })?;
        // a hash never ends in whitespace; a file written by hand (echo) often does
        let password = password.trim_end_matches(['\n', '\r']).to_owned();
        Ok(Some(UserRecord {
            addr: self.addr.clone(),
            home: self.maildir.to_string_lossy().into_owned(),
            password,
        }))
    }

    /// Store a password hash (atomically) and mark the account as E2EE-only.
    /// Concurrent callers are safe; the last rename wins.
    pub fn set_password(&self, encrypted: &str) -> Result<()> {
        std::fs::create_dir_all(&self.maildir).map_err(|e| Error::io(&self.maildir, e))?;
        if let Err(e) = write_bytes_atomic(&self.password_path, encrypted.as_bytes()) {
            log::error!("could not write password for: {}", self.addr);
            return Err(e);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.enforce_e2ee_path)
            .map_err(|e| Error::io(&self.enforce_e2ee_path, e))?;
        Ok(())
    }

    /// Whether incoming cleartext mail may be delivered to this address.
    pub fn is_incoming_cleartext_ok(&self) -> bool {
        !self.enforce_e2ee_path.exists()
    }

    /// Record a login at `timestamp`, with day granularity to leak as little as possible.
    /// Only touches the file when the day changed.
    pub fn set_last_login(&self, timestamp: i64) -> Result<()> {
        let meta = match std::fs::metadata(&self.password_path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                log::error!("Can not get last login timestamp for {}", self.addr);
                return Ok(());
            }
            Err(e) => return Err(Error::io(&self.password_path, e)),
        };
        let day = day_timestamp(timestamp);
        if mtime_secs(&meta) != Some(day) {
            let tv = TimeVal::new(day, 0);
            utimes(&self.password_path, &tv, &tv)
                .map_err(|e| Error::io(&self.password_path, std::io::Error::from(e)))?;
        }
        Ok(())
    }

    /// Last-login day as Unix seconds, `None` if there is no password file.
    pub fn last_login(&self) -> Option<i64> {
        let meta = std::fs::metadata(&self.password_path).ok()?;
        mtime_secs(&meta)
    }
}

fn mtime_secs(meta: &std::fs::Metadata) -> Option<i64> {
    let mtime = meta.modified().ok()?;
    Some(match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        // Pre-1970 mtimes: floor like Python's int(st_mtime) would truncate; close enough.
        Err(e) => -i64::try_from(e.duration().as_secs()).ok()?,
    })
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Current Unix time in seconds.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .try_into()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn config(dir: &Path) -> Config {
        Config::parse(
            &format!(
                "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n",
                dir.display()
            ),
            "t.ini",
        )
        .unwrap()
    }

    #[test]
    fn record_absent_empty_present() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let u = c.get_user("abcdefghi@chat.example.org").unwrap();
        assert_eq!(u.record().unwrap(), None);
        std::fs::create_dir_all(&u.maildir).unwrap();
        std::fs::write(&u.password_path, "").unwrap();
        assert_eq!(u.record().unwrap(), None);
        u.set_password("{SHA512-CRYPT}$6$abc$def").unwrap();
        let rec = u.record().unwrap().unwrap();
        assert_eq!(rec.password, "{SHA512-CRYPT}$6$abc$def");
        assert_eq!(rec.home, u.maildir.to_str().unwrap());
        // No trailing newline in the file.
        assert_eq!(
            std::fs::read(&u.password_path).unwrap(),
            b"{SHA512-CRYPT}$6$abc$def"
        );
        assert!(u.enforce_e2ee_path.exists());
        assert!(!u.is_incoming_cleartext_ok());
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(&u.maildir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
        // a file written by hand with a final newline still holds the same hash
        std::fs::write(&u.password_path, "{SHA512-CRYPT}$6$abc$def\n").unwrap();
        assert_eq!(
            u.record().unwrap().unwrap().password,
            "{SHA512-CRYPT}$6$abc$def"
        );
    }

    #[test]
    fn record_json_shape() {
        let rec = UserRecord {
            addr: "a@x.org".into(),
            home: "/m/a@x.org".into(),
            password: "{SHA512-CRYPT}$6$s$\"h\\".into(),
        };
        let json = rec.to_json();
        assert_eq!(
            json,
            r#"{"addr": "a@x.org", "home": "/m/a@x.org", "uid": "vmail", "gid": "vmail", "password": "{SHA512-CRYPT}$6$s$\"h\\"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["password"], "{SHA512-CRYPT}$6$s$\"h\\");
    }

    #[test]
    fn last_login_is_day_rounded() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        let u = c.get_user("abcdefghi@chat.example.org").unwrap();
        // Missing password file: nothing happens, no error.
        u.set_last_login(1_767_312_345).unwrap();
        assert_eq!(u.last_login(), None);
        u.set_password("{SHA512-CRYPT}x").unwrap();
        u.set_last_login(1_767_312_345).unwrap();
        assert_eq!(u.last_login(), Some(1_767_312_000));
        let atime = std::fs::metadata(&u.password_path)
            .unwrap()
            .accessed()
            .unwrap();
        assert_eq!(
            atime.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_767_312_000
        );
        u.set_last_login(1_767_312_000 + 86_399).unwrap();
        assert_eq!(u.last_login(), Some(1_767_312_000));
        u.set_last_login(1_767_312_000 + 86_400).unwrap();
        assert_eq!(u.last_login(), Some(1_767_398_400));
    }

    #[test]
    fn day_rounding() {
        assert_eq!(day_timestamp(0), 0);
        assert_eq!(day_timestamp(86_399), 0);
        assert_eq!(day_timestamp(86_400), 86_400);
        assert_eq!(day_timestamp(1_767_312_345), 1_767_312_000);
    }
}
