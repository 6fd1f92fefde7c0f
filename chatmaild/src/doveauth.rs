//! doveauth: Dovecot passdb/userdb over the dict protocol, creating accounts on first login.
//!
//! Dovecot looks up `shared/passdb/<password>"<user>` (both `%E`-escaped) and
//! `shared/userdb/<user>`. An unknown address that logs in with an acceptable name and
//! password is created on the spot; Dovecot then verifies the password against the stored
//! hash itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::crypt::hash_password;
use crate::dict::{DictHandler, LookupResult};
use crate::error::{Error, Result};
use crate::fsutil::FileLock;
use crate::syslimits;
use crate::user::UserRecord;

/// While this file exists no new accounts are created (existing ones keep working).
pub const NOCREATE_FILE: &str = "/etc/chatmail-nocreate";

/// How long a first login waits for a concurrent creation of the same address.
pub const CREATE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Decides whether the machine can take another account right now.
pub type ResourceGate = Arc<dyn Fn(&Config) -> bool + Send + Sync>;

/// The doveauth dict handler.
pub struct AuthDict {
    config: Config,
    nocreate_file: PathBuf,
    resources: ResourceGate,
}

impl AuthDict {
    pub fn new(config: Config) -> AuthDict {
        AuthDict {
            config,
            nocreate_file: PathBuf::from(NOCREATE_FILE),
            resources: Arc::new(syslimits::has_sufficient_resources),
        }
    }

    /// Use another "no creation" marker file (tests, non-standard installs).
    pub fn with_nocreate_file(mut self, path: impl Into<PathBuf>) -> AuthDict {
        self.nocreate_file = path.into();
        self
    }

    /// Replace the system resource check (tests, benchmarks).
    pub fn with_resource_gate(mut self, gate: ResourceGate) -> AuthDict {
        self.resources = gate;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn is_local(&self, addr: &str) -> bool {
        addr.ends_with(&self.config.address_suffix())
    }

    /// Record of an existing account, if any.
    pub fn lookup_userdb(&self, addr: &str) -> Result<Option<UserRecord>> {
        self.config.get_user(addr)?.record()
    }

    /// The passdb procedure: existing accounts are returned as they are (no policy
    /// checks); unknown ones are created if every rule allows it.
    pub fn lookup_passdb(&self, addr: &str, cleartext: &str) -> Result<Option<UserRecord>> {
        let user = self.config.get_user(addr)?;
        if let Some(rec) = user.record()? {
            return Ok(Some(rec));
        }
        if !self.is_allowed_to_create(addr, cleartext) {
            return Ok(None);
        }
        if !(self.resources)(&self.config) {
            return Ok(None);
        }

        std::fs::create_dir_all(&user.maildir).map_err(|e| Error::io(&user.maildir, e))?;
        let _lock = FileLock::acquire(&user.password_lock_path(), CREATE_LOCK_TIMEOUT)?;
        // Another login may have created the account while we waited for the lock.
        if let Some(rec) = user.record()? {
            return Ok(Some(rec));
        }
        user.set_password(&hash_password(cleartext)?)?;
        // mtail counts this exact line, so it bypasses the logger's formatting.
        eprintln!("Created address: {addr}");
        user.record()
    }

    /// Policy for new addresses, checked in a fixed order; the first failure is logged.
    pub fn is_allowed_to_create(&self, addr: &str, cleartext: &str) -> bool {
        let c = &self.config;
        if self.nocreate_file.exists() {
            log::warn!(
                "blocked account creation because {:?} exists.",
                self.nocreate_file.display().to_string()
            );
            return false;
        }
        if cleartext.chars().count() < c.password_min_length {
            log::warn!(
                "Password needs to be at least {} characters long",
                c.password_min_length
            );
            return false;
        }
        let parts: Vec<&str> = addr.split('@').collect();
        let [localpart, _domain] = parts[..] else {
            log::warn!("user {addr:?} is not a proper e-mail address");
            return false;
        };
        let len = localpart.chars().count();
        if len < c.username_min_length || len > c.username_max_length {
            log::warn!(
                "localpart {localpart} has to be between {} and {} chars long",
                c.username_min_length,
                c.username_max_length
            );
            return false;
        }
        if !is_valid_localpart(localpart) {
            log::warn!("localpart {localpart:?} contains invalid characters");
            return false;
        }
        true
    }

    /// Names of all accounts (directory entries of the mailboxes dir containing `@`).
    pub fn iter_userdb(&self) -> Vec<String> {
        let dir = &self.config.mailboxes_dir;
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.contains('@'))
                .collect(),
            Err(e) => {
                log::error!("cannot list {}: {e}", dir.display());
                Vec::new()
            }
        }
    }
}

/// `^[a-z0-9._-]+$`: Dovecot lower-cases logins, so upper case never reaches us legitimately.
pub fn is_valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Split the `%E`-escaped part of a key into fields: backslash takes the next character
/// literally, an unescaped `"` separates fields. A trailing lone backslash is invalid.
pub fn split_and_unescape(s: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next()?),
            '"' => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.push(current);
    Some(fields)
}

/// Map a library result to a dict reply; invalid addresses are "not found" (they can never
/// exist), everything else unexpected is a failure so Dovecot retries later.
fn reply(addr: &str, result: Result<Option<UserRecord>>) -> LookupResult {
    match result {
        Ok(Some(rec)) => LookupResult::Found(rec.to_json()),
        Ok(None) => LookupResult::NotFound,
        Err(Error::InvalidAddress(_)) => {
            log::warn!("invalid address in lookup: {addr:?}");
            LookupResult::NotFound
        }
        Err(e) => {
            log::error!("lookup for {addr:?} failed: {e}");
            LookupResult::Failed
        }
    }
}

impl DictHandler for AuthDict {
    fn lookup(&self, key: &str, _user: Option<&str>) -> LookupResult {
        // Only the key is used: Dovecot before 2.3.17 sends no user field.
        let mut parts = key.splitn(3, '/');
        let (Some(namespace), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            // The key may contain a cleartext password: never log it.
            log::warn!("malformed auth lookup key ({} bytes)", key.len());
            return LookupResult::Failed;
        };
        if namespace != "shared" {
            return LookupResult::Failed;
        }
        let Some(args) = split_and_unescape(rest) else {
            log::warn!("malformed escaping in auth lookup key");
            return LookupResult::Failed;
        };
        match kind {
            "userdb" => {
                let addr = &args[0];
                if !self.is_local(addr) {
                    return LookupResult::NotFound;
                }
                reply(addr, self.lookup_userdb(addr))
            }
            "passdb" => {
                let [password, addr, ..] = &args[..] else {
                    log::warn!("passdb lookup without user field");
                    return LookupResult::Failed;
                };
                if !self.is_local(addr) {
                    return LookupResult::NotFound;
                }
                reply(addr, self.lookup_passdb(addr, password))
            }
            _ => LookupResult::Failed,
        }
    }

    fn iterate(&self, path: &str, _user: Option<&str>) -> Vec<(String, String)> {
        if path != "shared/userdb/" {
            return Vec::new();
        }
        self.iter_userdb()
            .into_iter()
            .map(|name| (format!("shared/userdb/{name}"), String::new()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::verify_password;
    use crate::dict::Session;
    use std::path::Path;

    const DOMAIN: &str = "chat.example.org";

    struct Fixture {
        _tmp: tempfile::TempDir,
        mbox: PathBuf,
        nocreate: PathBuf,
        auth: Arc<AuthDict>,
    }

    fn fixture_with(domain: &str, extra: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let mbox = tmp.path().join("mail");
        let nocreate = tmp.path().join("chatmail-nocreate");
        let config = Config::parse(
            &format!(
                "[params]\nmail_domain = {domain}\nmailboxes_dir = {}\n{extra}",
                mbox.display()
            ),
            "t.ini",
        )
        .unwrap();
        let auth = AuthDict::new(config)
            .with_nocreate_file(&nocreate)
            .with_resource_gate(Arc::new(|_: &Config| true));
        Fixture {
            _tmp: tmp,
            mbox,
            nocreate,
            auth: Arc::new(auth),
        }
    }

    fn fixture() -> Fixture {
        fixture_with(DOMAIN, "")
    }

    /// Escape like Dovecot's `%E`.
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\").replace('"', "\\\"")
    }

    fn passdb(f: &Fixture, pw: &str, user: &str) -> LookupResult {
        f.auth.lookup(
            &format!("shared/passdb/{}\"{}", esc(pw), esc(user)),
            Some(user),
        )
    }

    fn userdb(f: &Fixture, user: &str) -> LookupResult {
        f.auth
            .lookup(&format!("shared/userdb/{}", esc(user)), Some(user))
    }

    fn found_json(r: LookupResult) -> serde_json::Value {
        match r {
            LookupResult::Found(j) => serde_json::from_str(&j).unwrap(),
            other => panic!("expected Found, got {other:?}"),
        }
    }

    fn exists(mbox: &Path, addr: &str) -> bool {
        mbox.join(addr).join("password").exists()
    }

    #[test]
    fn split_unescape_cases() {
        assert_eq!(split_and_unescape("pw\"u@x").unwrap(), ["pw", "u@x"]);
        assert_eq!(
            split_and_unescape("pa\\\"ss\"u@x").unwrap(),
            ["pa\"ss", "u@x"]
        );
        assert_eq!(split_and_unescape("a\\\\\"b").unwrap(), ["a\\", "b"]);
        assert_eq!(split_and_unescape("\\x\\y").unwrap(), ["xy"]);
        assert_eq!(split_and_unescape("").unwrap(), [""]);
        assert_eq!(split_and_unescape("\"\"").unwrap(), ["", "", ""]);
        assert_eq!(split_and_unescape("abc\\"), None);
    }

    #[test]
    fn localpart_charset() {
        for ok in ["abcdefghi", "a.b-c_d9", "0123456789"] {
            assert!(is_valid_localpart(ok), "{ok}");
        }
        for bad in [
            "",
            "Abcdefghi",
            "abc+defg",
            "abc defg",
            "abcdéfgh",
            "abc\ndefg",
            "a/b",
            "a@b",
        ] {
            assert!(!is_valid_localpart(bad), "{bad:?}");
        }
    }

    #[test]
    fn first_login_creates_account() {
        let f = fixture();
        let addr = "abcdefghi@chat.example.org";
        assert_eq!(userdb(&f, addr), LookupResult::NotFound);
        let v = found_json(passdb(&f, "s3cr3t\"pw1", addr));
        assert_eq!(v["addr"], addr);
        assert_eq!(v["uid"], "vmail");
        assert_eq!(v["gid"], "vmail");
        let maildir = f.mbox.join(addr);
        assert_eq!(v["home"], maildir.to_str().unwrap());
        let pw = v["password"].as_str().unwrap();
        assert!(pw.starts_with("{SHA512-CRYPT}$6$"), "{pw}");
        assert!(verify_password("s3cr3t\"pw1", pw));
        let stored = std::fs::read_to_string(maildir.join("password")).unwrap();
        assert_eq!(stored, pw);
        assert!(!stored.ends_with('\n'));
        assert!(maildir.join("enforceE2EEincoming").exists());
        // userdb now finds it, with the same record.
        assert_eq!(found_json(userdb(&f, addr)), v);
    }

    #[test]
    fn existing_account_is_returned_unchanged_without_checks() {
        let f = fixture();
        let addr = "abcdefghi@chat.example.org";
        let first = found_json(passdb(&f, "password-one", addr));
        // Wrong password: same stored record (Dovecot rejects it), nothing overwritten.
        let second = found_json(passdb(&f, "other-password", addr));
        assert_eq!(first, second);
        // Even a too-short password or the nocreate file do not matter for existing users.
        std::fs::write(&f.nocreate, "").unwrap();
        assert_eq!(found_json(passdb(&f, "x", addr)), first);
    }

    #[test]
    fn existing_nonconforming_user_is_served() {
        let f = fixture();
        let addr = "Legacy+Name@chat.example.org";
        let user = f.auth.config().get_user(addr).unwrap();
        user.set_password("{SHA512-CRYPT}$6$x$y").unwrap();
        assert_eq!(
            found_json(passdb(&f, "p", addr))["password"],
            "{SHA512-CRYPT}$6$x$y"
        );
    }

    #[test]
    fn nocreate_file_blocks_creation() {
        let f = fixture();
        std::fs::write(&f.nocreate, "").unwrap();
        let addr = "abcdefghi@chat.example.org";
        assert_eq!(passdb(&f, "long-enough-pw", addr), LookupResult::NotFound);
        assert!(!exists(&f.mbox, addr));
    }

    #[test]
    fn password_length_rule() {
        let f = fixture();
        assert_eq!(
            passdb(&f, "12345678", "abcdefghi@chat.example.org"),
            LookupResult::NotFound
        );
        assert!(matches!(
            passdb(&f, "123456789", "abcdefghi@chat.example.org"),
            LookupResult::Found(_)
        ));
        // Length counts characters, not bytes.
        let f = fixture();
        assert_eq!(
            passdb(&f, "äöüäöüäö", "abcdefghi@chat.example.org"),
            LookupResult::NotFound
        );
    }

    #[test]
    fn username_length_rule() {
        let f = fixture();
        for bad in ["abcdefgh", "abcdefghij"] {
            let addr = format!("{bad}@{DOMAIN}");
            assert_eq!(
                passdb(&f, "long-enough-pw", &addr),
                LookupResult::NotFound,
                "{bad}"
            );
            assert!(!exists(&f.mbox, &addr));
        }
        let f = fixture_with(DOMAIN, "username_min_length = 3\nusername_max_length = 5\n");
        for (name, ok) in [
            ("ab", false),
            ("abc", true),
            ("abcde", true),
            ("abcdef", false),
        ] {
            let r = passdb(&f, "long-enough-pw", &format!("{name}@{DOMAIN}"));
            assert_eq!(matches!(r, LookupResult::Found(_)), ok, "{name}");
        }
    }

    #[test]
    fn username_charset_rule() {
        let f = fixture();
        for bad in ["abcdEfghi", "abcd+fghi", "abcd fghi", "abcdéfgh"] {
            let addr = format!("{bad}@{DOMAIN}");
            assert_eq!(
                passdb(&f, "long-enough-pw", &addr),
                LookupResult::NotFound,
                "{bad}"
            );
        }
        for good in ["abc.efghi", "abc-efghi", "abc_efghi", "123456789"] {
            let addr = format!("{good}@{DOMAIN}");
            assert!(matches!(
                passdb(&f, "long-enough-pw", &addr),
                LookupResult::Found(_)
            ));
        }
    }

    #[test]
    fn two_at_signs_rejected() {
        let f = fixture_with(DOMAIN, "username_max_length = 30\n");
        let addr = format!("abc@defghi@{DOMAIN}");
        assert_eq!(passdb(&f, "long-enough-pw", &addr), LookupResult::NotFound);
    }

    #[test]
    fn foreign_domains_are_not_found() {
        let f = fixture();
        for addr in [
            "abcdefghi@other.example",
            "abcdefghi@sub.chat.example.org.evil",
            "abcdefghi@CHAT.EXAMPLE.ORG",
            "abcdefghi",
        ] {
            assert_eq!(
                passdb(&f, "long-enough-pw", addr),
                LookupResult::NotFound,
                "{addr}"
            );
            assert_eq!(userdb(&f, addr), LookupResult::NotFound, "{addr}");
        }
        assert!(!f.mbox.exists());
    }

    #[test]
    fn ipv4_relay_uses_bracketed_domain() {
        let f = fixture_with("203.0.113.7", "");
        assert!(matches!(
            passdb(&f, "long-enough-pw", "abcdefghi@[203.0.113.7]"),
            LookupResult::Found(_)
        ));
        assert_eq!(
            passdb(&f, "long-enough-pw", "bcdefghij@203.0.113.7"),
            LookupResult::NotFound
        );
        assert!(
            f.mbox
                .join("abcdefghi@[203.0.113.7]")
                .join("password")
                .exists()
        );
    }

    #[test]
    fn path_traversal_is_not_found() {
        let f = fixture();
        let addr = format!("../../etc@{DOMAIN}");
        assert_eq!(passdb(&f, "long-enough-pw", &addr), LookupResult::NotFound);
        assert_eq!(userdb(&f, &addr), LookupResult::NotFound);
    }

    #[test]
    fn resource_gate_blocks_creation_only() {
        let f = fixture();
        let addr = "abcdefghi@chat.example.org";
        found_json(passdb(&f, "long-enough-pw", addr));
        let config = f.auth.config().clone();
        let blocked = AuthDict::new(config)
            .with_nocreate_file(&f.nocreate)
            .with_resource_gate(Arc::new(|_: &Config| false));
        let k = |pw: &str, u: &str| format!("shared/passdb/{pw}\"{u}");
        assert!(matches!(
            blocked.lookup(&k("long-enough-pw", addr), None),
            LookupResult::Found(_)
        ));
        assert_eq!(
            blocked.lookup(&k("long-enough-pw", "bcdefghij@chat.example.org"), None),
            LookupResult::NotFound
        );
    }

    #[test]
    fn real_resource_limits_can_reject() {
        let f = fixture_with(DOMAIN, "min_available_memory = 100000G\n");
        let auth = AuthDict::new(f.auth.config().clone()).with_nocreate_file(&f.nocreate);
        let k = format!("shared/passdb/long-enough-pw\"abcdefghi@{DOMAIN}");
        assert_eq!(auth.lookup(&k, None), LookupResult::NotFound);
        let f = fixture_with(
            DOMAIN,
            "max_load_1m = 1000\nmin_available_memory = 0\nmin_free_disk_space = 0\n",
        );
        let auth = AuthDict::new(f.auth.config().clone()).with_nocreate_file(&f.nocreate);
        assert!(matches!(auth.lookup(&k, None), LookupResult::Found(_)));
    }

    #[test]
    fn empty_password_file_is_not_an_account_and_gets_recreated() {
        let f = fixture();
        let addr = "abcdefghi@chat.example.org";
        std::fs::create_dir_all(f.mbox.join(addr)).unwrap();
        std::fs::write(f.mbox.join(addr).join("password"), "").unwrap();
        assert_eq!(userdb(&f, addr), LookupResult::NotFound);
        let v = found_json(passdb(&f, "long-enough-pw", addr));
        assert!(verify_password(
            "long-enough-pw",
            v["password"].as_str().unwrap()
        ));
    }

    #[test]
    fn malformed_keys_fail() {
        let f = fixture();
        for key in [
            "",
            "shared",
            "shared/passdb",
            "shared/passdb/onlypassword",
            "shared/passdb/pw\"user@chat.example.org\\",
            "priv/userdb/abcdefghi@chat.example.org",
            "shared/other/abcdefghi@chat.example.org",
        ] {
            assert_eq!(f.auth.lookup(key, None), LookupResult::Failed, "{key:?}");
        }
    }

    #[test]
    fn iterate_lists_accounts() {
        let f = fixture();
        assert!(f.auth.iterate("shared/userdb/", None).is_empty());
        for name in ["abcdefghi", "bcdefghij"] {
            found_json(passdb(&f, "long-enough-pw", &format!("{name}@{DOMAIN}")));
        }
        std::fs::create_dir_all(f.mbox.join("pending_notifications")).unwrap();
        let mut rows = f.auth.iterate("shared/userdb/", None);
        rows.sort();
        assert_eq!(
            rows,
            [
                (format!("shared/userdb/abcdefghi@{DOMAIN}"), String::new()),
                (format!("shared/userdb/bcdefghij@{DOMAIN}"), String::new()),
            ]
        );
        assert!(f.auth.iterate("shared/other/", None).is_empty());
    }

    #[test]
    fn protocol_session_end_to_end() {
        let f = fixture();
        let mut s = Session::new();
        let addr = "abcdefghi@chat.example.org";
        let line = format!("Lshared/passdb/s3cr3t\\\"pw1\"{addr}\t{addr}");
        let reply = s.handle_line(f.auth.as_ref(), line.as_bytes()).unwrap();
        assert!(
            reply.starts_with("O{\"addr\": \"abcdefghi@chat.example.org\", \"home\": "),
            "{reply}"
        );
        assert!(reply.ends_with("\"}\n"));
        let reply = s
            .handle_line(
                f.auth.as_ref(),
                format!("Lshared/userdb/{addr}\t{addr}").as_bytes(),
            )
            .unwrap();
        assert!(reply.starts_with('O'));
        let reply = s
            .handle_line(
                f.auth.as_ref(),
                b"Lshared/userdb/nobody123@chat.example.org",
            )
            .unwrap();
        assert_eq!(reply, "N\n");
        let reply = s
            .handle_line(f.auth.as_ref(), b"I0\t0\tshared/userdb/")
            .unwrap();
        assert_eq!(reply, format!("Oshared/userdb/{addr}\t\n\n"));
        // Sets are not supported by doveauth.
        s.handle_line(f.auth.as_ref(), b"B1\tu");
        s.handle_line(f.auth.as_ref(), b"S1\tk\tv");
        assert_eq!(s.handle_line(f.auth.as_ref(), b"C1").unwrap(), "F\n");
    }

    #[test]
    fn concurrent_first_logins_create_once() {
        let f = fixture();
        let addr = "abcdefghi@chat.example.org";
        let results: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..50)
                .map(|_| {
                    scope.spawn(|| {
                        found_json(passdb(&f, "long-enough-pw", addr))["password"].to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|r| r == &results[0]), "{results:?}");
        assert_eq!(results.len(), 50);
        let accounts = std::fs::read_dir(&f.mbox)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains('@')
            })
            .count();
        assert_eq!(accounts, 1, "one account for 50 simultaneous first logins");
    }

    #[test]
    fn many_parallel_distinct_creations() {
        let f = fixture();
        std::thread::scope(|scope| {
            for t in 0..50 {
                let f = &f;
                scope.spawn(move || {
                    for i in 0..5 {
                        let addr = format!("u{t:04}x{i:03}@{DOMAIN}");
                        found_json(passdb(f, "long-enough-pw", &addr));
                    }
                });
            }
        });
        assert_eq!(f.auth.iter_userdb().len(), 250);
    }
}
