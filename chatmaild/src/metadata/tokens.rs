//! Push device tokens per address, stored in `MBOX/<addr>/metadata.json` as
//! `{"devicetoken": {"<token>": <unix seconds last set>}}`.
//!
//! Tokens expire 90 days after the client last set them (clients refresh them), and
//! timestamps in the future are treated as invalid. Expired tokens are pruned whenever the
//! file is modified or a read notices them.
//!
//! Every stored token costs one push request per incoming message, so an account holds at
//! most [`MAX_TOKENS`] tokens of at most [`MAX_TOKEN_BYTES`] each. Delta Chat registers one
//! token per device: a plain APNs (64 hex digits) or FCM (about 160 characters) token, or
//! since the notification proxy takes them encrypted, `openpgp:` plus the base64 of an
//! OpenPGP message whose plaintext is the token padded to 512 bytes (about 1 KB in all).
//! 16 tokens are several devices plus the stale tokens of reinstalled apps until they
//! expire; 4096 bytes are four times the encrypted token and leave room for a larger key.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fsutil::FileLock;
use crate::user::{now_secs, with_suffix};

pub const DEVICETOKEN_KEY: &str = "devicetoken";
const TOKEN_LIFETIME: i64 = 90 * 86_400;
const CLOCK_SKEW: i64 = 60;
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Tokens per account; see the module comment for the numbers.
pub const MAX_TOKENS: usize = 16;
/// Bytes per token.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Tokens travel space-separated (GETMETADATA answers) and in HTTP requests: printable
/// ASCII without blanks is what every real token is made of.
fn check_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::TokenRefused("empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::TokenRefused("longer than 4096 bytes"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::TokenRefused("not printable ASCII"));
    }
    Ok(())
}

fn is_valid(timestamp: &Value, now: i64) -> bool {
    timestamp
        .as_f64()
        .is_some_and(|ts| ts > (now - TOKEN_LIFETIME) as f64 && ts < (now + CLOCK_SKEW) as f64)
}

/// Access to the token files below the mailboxes directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    mailboxes_dir: PathBuf,
}

impl TokenStore {
    pub fn new(mailboxes_dir: impl Into<PathBuf>) -> TokenStore {
        TokenStore {
            mailboxes_dir: mailboxes_dir.into(),
        }
    }

    fn path(&self, addr: &str) -> Result<PathBuf> {
        // The address comes from Dovecot, but it still must not leave the mailboxes dir.
        if addr.is_empty() || !addr.contains('@') || addr.contains('/') {
            return Err(Error::InvalidAddress(addr.to_owned()));
        }
        Ok(self.mailboxes_dir.join(addr).join("metadata.json"))
    }

    /// Valid tokens of `addr`; prunes stored tokens if some have expired and converts the
    /// legacy list format so that legacy users keep getting notifications.
    pub fn tokens(&self, addr: &str) -> Result<Vec<String>> {
        self.tokens_at(addr, now_secs())
    }

    pub fn tokens_at(&self, addr: &str, now: i64) -> Result<Vec<String>> {
        let path = self.path(addr)?;
        let data = read_json(&path);
        match data.get(DEVICETOKEN_KEY) {
            Some(Value::Object(tokens)) => {
                let valid: Vec<String> = tokens
                    .iter()
                    .filter(|(_, ts)| is_valid(ts, now))
                    .map(|(t, _)| t.clone())
                    .collect();
                if valid.len() < tokens.len() {
                    self.modify_at(addr, now, |_| {})?;
                }
                Ok(valid)
            }
            Some(Value::Array(_)) => {
                let mut out = Vec::new();
                self.modify_at(addr, now, |tokens| out = tokens.keys().cloned().collect())?;
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Add a token or refresh its timestamp. A new token beyond [`MAX_TOKENS`] (after
    /// expired ones are pruned) is refused; refreshing a stored one always works.
    pub fn add(&self, addr: &str, token: &str) -> Result<()> {
        self.add_at(addr, token, now_secs())
    }

    pub fn add_at(&self, addr: &str, token: &str, now: i64) -> Result<()> {
        check_token(token)?;
        let mut full = false;
        self.modify_at(addr, now, |tokens| {
            if tokens.contains_key(token) || tokens.len() < MAX_TOKENS {
                tokens.insert(token.to_owned(), Value::from(now));
            } else {
                full = true;
            }
        })?;
        if full {
            return Err(Error::TokenRefused("too many tokens for this address"));
        }
        Ok(())
    }

    /// Forget a token (the notification service said it is gone).
    pub fn remove(&self, addr: &str, token: &str) -> Result<()> {
        self.modify_at(addr, now_secs(), |tokens| {
            tokens.remove(token);
        })
    }

    /// Locked read-modify-write of the token map, with legacy conversion and pruning.
    fn modify_at(
        &self,
        addr: &str,
        now: i64,
        f: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<()> {
        let path = self.path(addr)?;
        let _lock = FileLock::acquire(&with_suffix(&path, ".lock"), LOCK_TIMEOUT)?;
        let mut data = read_json(&path);
        let mut tokens = match data.remove(DEVICETOKEN_KEY) {
            Some(Value::Object(map)) => map,
            Some(Value::Array(list)) => list
                .into_iter()
                .filter_map(|t| t.as_str().map(|s| (s.to_owned(), Value::from(now))))
                .collect(),
            _ => Map::new(),
        };
        tokens.retain(|_, ts| is_valid(ts, now));
        f(&mut tokens);
        data.insert(DEVICETOKEN_KEY.to_owned(), Value::Object(tokens));
        let tmp = with_suffix(&path, ".tmp");
        let bytes = serde_json::to_vec(&Value::Object(data)).expect("JSON maps always serialize");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

/// The stored object; missing → empty, corrupt → logged and treated as empty.
fn read_json(path: &Path) -> Map<String, Value> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => {
                log::warn!(
                    "corrupt serialization state at: {:?}",
                    path.display().to_string()
                );
                Map::new()
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Map::new(),
        Err(e) => {
            log::warn!("cannot read {}: {e}", path.display());
            Map::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "user1@example.org";
    const B: &str = "user2@example.org";

    fn store() -> (tempfile::TempDir, TokenStore) {
        let tmp = tempfile::tempdir().unwrap();
        for addr in [A, B] {
            std::fs::create_dir_all(tmp.path().join(addr)).unwrap();
        }
        let s = TokenStore::new(tmp.path());
        (tmp, s)
    }

    #[test]
    fn persistence_across_instances() {
        let (tmp, s1) = store();
        let s2 = TokenStore::new(tmp.path());
        assert!(s1.tokens(A).unwrap().is_empty());
        s1.add(A, "01234").unwrap();
        s1.add(B, "456").unwrap();
        assert_eq!(s2.tokens(A).unwrap(), ["01234"]);
        assert_eq!(s2.tokens(B).unwrap(), ["456"]);
        s2.remove(A, "01234").unwrap();
        assert!(s1.tokens(A).unwrap().is_empty());
        assert_eq!(s1.tokens(B).unwrap(), ["456"]);
    }

    #[test]
    fn remove_nonexisting_and_without_set() {
        let (_tmp, s) = store();
        s.remove(A, "123").unwrap();
        assert!(s.tokens(A).unwrap().is_empty());
        s.add(A, "123").unwrap();
        s.remove(A, "other").unwrap();
        assert_eq!(s.tokens(A).unwrap(), ["123"]);
    }

    #[test]
    fn expiry_and_future_timestamps() {
        let (tmp, s) = store();
        let now = 1_800_000_000;
        let path = tmp.path().join(A).join("metadata.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"devicetoken": {{"old": {}, "fresh": {}, "future": {}, "slightly-ahead": {}, "junk": "x"}}}}"#,
                now - TOKEN_LIFETIME,
                now - TOKEN_LIFETIME + 10,
                now + 61,
                now + 59
            ),
        )
        .unwrap();
        let mut t = s.tokens_at(A, now).unwrap();
        t.sort();
        assert_eq!(t, ["fresh", "slightly-ahead"]);
        // The read pruned the file.
        let raw: Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join(A).join("metadata.json")).unwrap(),
        )
        .unwrap();
        let mut keys: Vec<_> = raw[DEVICETOKEN_KEY]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        assert_eq!(keys, ["fresh", "slightly-ahead"]);
    }

    #[test]
    fn refresh_keeps_token_alive() {
        let (_tmp, s) = store();
        let now = 1_800_000_000;
        s.add_at(A, "t", now).unwrap();
        s.add_at(A, "t", now + TOKEN_LIFETIME - 5).unwrap();
        assert_eq!(s.tokens_at(A, now + TOKEN_LIFETIME + 5).unwrap(), ["t"]);
    }

    #[test]
    fn legacy_list_format_is_converted() {
        let (tmp, s) = store();
        let path = tmp.path().join(A).join("metadata.json");
        std::fs::write(&path, r#"{"devicetoken": ["t1", "t2"], "other": 1}"#).unwrap();
        let mut t = s.tokens(A).unwrap();
        t.sort();
        assert_eq!(t, ["t1", "t2"]);
        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(raw[DEVICETOKEN_KEY].is_object());
        assert_eq!(raw["other"], 1, "unrelated keys are preserved");
    }

    #[test]
    fn corrupt_file_is_treated_as_empty() {
        let (tmp, s) = store();
        let path = tmp.path().join(A).join("metadata.json");
        for bad in ["{not json", "[1,2]", "", r#"{"devicetoken": "x"}"#] {
            std::fs::write(&path, bad).unwrap();
            assert!(s.tokens(A).unwrap().is_empty(), "{bad:?}");
        }
        s.add(A, "t").unwrap();
        assert_eq!(s.tokens(A).unwrap(), ["t"]);
    }

    #[test]
    fn reads_python_written_file() {
        let (tmp, s) = store();
        let now = now_secs();
        std::fs::write(
            tmp.path().join(A).join("metadata.json"),
            format!(
                r#"{{"devicetoken": {{"tok-AAA": {now}, "tok-BBB": {}}}}}"#,
                now - 10
            ),
        )
        .unwrap();
        let mut t = s.tokens(A).unwrap();
        t.sort();
        assert_eq!(t, ["tok-AAA", "tok-BBB"]);
    }

    #[test]
    fn concurrent_adds_keep_every_token() {
        let (_tmp, s) = store();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..4 {
                        s.add(A, &format!("tok-{t}-{i}")).unwrap();
                    }
                });
            }
        });
        assert_eq!(s.tokens(A).unwrap().len(), 16);
    }

    #[test]
    fn token_count_is_capped_but_refresh_works_at_the_cap() {
        let (_tmp, s) = store();
        let now = 1_800_000_000;
        for i in 0..MAX_TOKENS {
            s.add_at(A, &format!("tok-{i}"), now).unwrap();
        }
        let err = s.add_at(A, "one-too-many", now).unwrap_err();
        assert!(matches!(err, Error::TokenRefused(_)), "{err}");
        assert_eq!(s.tokens_at(A, now).unwrap().len(), MAX_TOKENS);
        // Re-setting a stored token refreshes it.
        s.add_at(A, "tok-3", now + 100).unwrap();
        // Other accounts have their own budget.
        s.add_at(B, "one-too-many", now).unwrap();
        // Once tokens expire, there is room again.
        let later = now + TOKEN_LIFETIME + 1;
        s.add_at(A, "fresh", later).unwrap();
        let mut left = s.tokens_at(A, later).unwrap();
        left.sort();
        assert_eq!(left, ["fresh", "tok-3"]);
    }

    #[test]
    fn token_size_and_characters() {
        let (_tmp, s) = store();
        // The shapes Delta Chat sends: APNs hex, FCM, and an OpenPGP-encrypted token.
        let apns = "a1".repeat(32);
        let fcm = format!("cXk9:APA91b{}", "Zz-_9".repeat(30));
        let encrypted = format!("openpgp:{}", "wV4D".repeat(240) + "==");
        let largest = "x".repeat(MAX_TOKEN_BYTES);
        for token in [&apns, &fcm, &encrypted, &largest] {
            s.add(A, token).unwrap();
        }
        for bad in [
            "".to_owned(),
            "x".repeat(MAX_TOKEN_BYTES + 1),
            "two tokens".to_owned(),
            "tab\tinside".to_owned(),
            "nul\0".to_owned(),
            "ümlaut".to_owned(),
        ] {
            assert!(
                matches!(s.add(A, &bad), Err(Error::TokenRefused(_))),
                "{bad:?}"
            );
        }
        assert_eq!(s.tokens(A).unwrap().len(), 4);
    }

    #[test]
    fn invalid_addresses() {
        let (_tmp, s) = store();
        for bad in ["", "noat", "../x@y", "a/b@c"] {
            assert!(
                matches!(s.tokens(bad), Err(Error::InvalidAddress(_))),
                "{bad}"
            );
            assert!(s.add(bad, "t").is_err());
        }
    }

    #[test]
    fn missing_account_dir_is_an_error_on_write() {
        let (_tmp, s) = store();
        assert!(s.tokens("nobody@example.org").unwrap().is_empty());
        assert!(s.add("nobody@example.org", "t").is_err());
    }
}
