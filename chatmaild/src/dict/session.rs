//! Per-connection protocol state: turns request lines into handler calls and replies.

use std::collections::HashMap;

use super::protocol::{Request, tab_escape};
use super::{DictHandler, LookupResult};

/// Dovecot keeps only a handful of transactions open per connection; anything beyond this
/// is a misbehaving client and must not grow memory without bound.
pub const MAX_OPEN_TRANSACTIONS: usize = 1024;

#[derive(Debug)]
struct Transaction {
    user: String,
    ok: bool,
}

/// State of one client connection. Transaction ids are only unique per connection
/// (Dovecot starts at `1` on every connection), so they are stored here.
#[derive(Debug, Default)]
pub struct Session {
    transactions: HashMap<String, Transaction>,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// A transaction is open (begun, not yet committed or rolled back).
    pub fn in_transaction(&self) -> bool {
        !self.transactions.is_empty()
    }

    /// Whether handling `line` may call into the handler (file I/O, hashing), so the
    /// caller should run it off the async executor.
    pub fn may_block(line: &[u8]) -> bool {
        matches!(line.first(), Some(b'L' | b'I' | b'S'))
    }

    /// Handle one trimmed, non-empty line and return the reply to send, if any.
    pub fn handle_line<H: DictHandler + ?Sized>(
        &mut self,
        handler: &H,
        line: &[u8],
    ) -> Option<String> {
        let Ok(text) = std::str::from_utf8(line) else {
            log::warn!(
                "dict request is not valid UTF-8, rejected: {}",
                describe(line)
            );
            return self.reject(line);
        };
        match Request::parse(text) {
            Request::Hello => None,
            Request::Lookup { key, user } => Some(match handler.lookup(&key, user.as_deref()) {
                LookupResult::Found(value) => format!("O{}\n", tab_escape(&value)),
                LookupResult::NotFound => "N\n".to_owned(),
                LookupResult::Failed => "F\n".to_owned(),
            }),
            Request::Iterate { path, user, .. } => {
                let mut out = String::new();
                for (key, value) in handler.iterate(&path, user.as_deref()) {
                    out.push('O');
                    out.push_str(&tab_escape(&key));
                    out.push('\t');
                    out.push_str(&tab_escape(&value));
                    out.push('\n');
                }
                // The empty line ends the listing; without it Dovecot waits until timeout.
                out.push('\n');
                Some(out)
            }
            Request::Begin { txid, user } => {
                if self.transactions.len() >= MAX_OPEN_TRANSACTIONS
                    && !self.transactions.contains_key(&txid)
                {
                    log::error!("too many open dict transactions, ignoring begin of {txid:?}");
                } else {
                    self.transactions
                        .insert(txid, Transaction { user, ok: true });
                }
                None
            }
            Request::Set { txid, key, value } => {
                match self.transactions.get_mut(&txid) {
                    Some(tx) => {
                        if !handler.set(&tx.user, &key, value.as_deref()) {
                            tx.ok = false;
                            log::error!("dictproxy-set failed for {:?}: {:?}", tx.user, text);
                        }
                    }
                    None => log::error!("dict set for unknown transaction: {text:?}"),
                }
                None
            }
            Request::Commit { txid } => Some(match self.transactions.remove(&txid) {
                Some(Transaction { ok: true, .. }) => "O\n".to_owned(),
                Some(Transaction { ok: false, .. }) => "F\n".to_owned(),
                None => {
                    log::error!("dict commit for unknown transaction: {text:?}");
                    "F\n".to_owned()
                }
            }),
            Request::Unknown { .. } => {
                log::warn!("unknown dictproxy request: {text:?}");
                None
            }
        }
    }

    /// Answer a line that could not be processed (too long or not UTF-8) so that Dovecot
    /// is not left waiting for a reply, and make a pending transaction fail if it was a set.
    /// `prefix` is the beginning of the line.
    pub fn reject(&mut self, prefix: &[u8]) -> Option<String> {
        match prefix.first() {
            Some(b'L') => Some("F\n".to_owned()),
            Some(b'I') => Some("\n".to_owned()),
            Some(b'S') => {
                let txid = txid_of(prefix);
                if let Some(tx) = self.transactions.get_mut(&txid) {
                    tx.ok = false;
                }
                None
            }
            Some(b'C') => {
                let txid = txid_of(prefix);
                self.transactions.remove(&txid);
                Some("F\n".to_owned())
            }
            _ => None,
        }
    }
}

fn txid_of(line: &[u8]) -> String {
    let rest = &line[1..];
    let end = rest.iter().position(|&b| b == b'\t').unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

/// Describe a rejected line for the log without its content: lookup keys of doveauth carry
/// cleartext passwords.
pub fn describe(line: &[u8]) -> String {
    let command = line
        .first()
        .map_or('?', |&b| if b.is_ascii_graphic() { b as char } else { '?' });
    format!("command {command:?}, {} bytes", line.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records calls; lookups of `found/*` succeed, `fail/*` fail; sets succeed unless
    /// the key starts with `bad`.
    #[derive(Default)]
    struct Recorder {
        sets: Mutex<Vec<(String, String, Option<String>)>>,
    }

    impl DictHandler for Recorder {
        fn lookup(&self, key: &str, user: Option<&str>) -> LookupResult {
            if let Some(rest) = key.strip_prefix("found/") {
                LookupResult::Found(format!("{rest}|{}", user.unwrap_or("-")))
            } else if key.starts_with("fail/") {
                LookupResult::Failed
            } else {
                LookupResult::NotFound
            }
        }

        fn iterate(&self, path: &str, _user: Option<&str>) -> Vec<(String, String)> {
            if path == "list/" {
                vec![
                    ("list/a".into(), "1".into()),
                    ("list/b\tc".into(), String::new()),
                ]
            } else {
                Vec::new()
            }
        }

        fn set(&self, user: &str, key: &str, value: Option<&str>) -> bool {
            self.sets
                .lock()
                .unwrap()
                .push((user.into(), key.into(), value.map(Into::into)));
            !key.starts_with("bad")
        }
    }

    fn run(lines: &[&str]) -> (Vec<Option<String>>, Recorder) {
        let h = Recorder::default();
        let mut s = Session::new();
        let replies = lines
            .iter()
            .map(|l| s.handle_line(&h, l.as_bytes()))
            .collect();
        (replies, h)
    }

    #[test]
    fn hello_gets_no_reply() {
        assert_eq!(run(&["H3\t2\t0\t\tauth"]).0, [None]);
    }

    #[test]
    fn lookup_replies() {
        let (r, _) = run(&["Lfound/x\tu@x", "Lfound/y", "Lnothing", "Lfail/z"]);
        assert_eq!(
            r,
            [
                Some("Ox|u@x\n".into()),
                Some("Oy|-\n".into()),
                Some("N\n".into()),
                Some("F\n".into())
            ]
        );
    }

    #[test]
    fn lookup_value_is_tab_escaped() {
        let (r, _) = run(&["Lfound/a\x01tb"]);
        assert_eq!(r, [Some("Oa\x01tb|-\n".into())]);
    }

    #[test]
    fn iterate_ends_with_empty_line() {
        let (r, _) = run(&["I0\t0\tlist/", "I0\t0\tother/", "I"]);
        assert_eq!(
            r,
            [
                Some("Olist/a\t1\nOlist/b\x01tc\t\n\n".into()),
                Some("\n".into()),
                Some("\n".into())
            ]
        );
    }

    #[test]
    fn transaction_ok_and_failed() {
        let (r, h) = run(&[
            "B1\tu@x",
            "S1\tgood\tv",
            "C1",
            "B1\tu@x",
            "S1\tbad\tv",
            "S1\tgood",
            "C1",
        ]);
        assert_eq!(
            r,
            [
                None,
                None,
                Some("O\n".into()),
                None,
                None,
                None,
                Some("F\n".into())
            ]
        );
        let sets = h.sets.lock().unwrap();
        assert_eq!(sets[0], ("u@x".into(), "good".into(), Some("v".into())));
        assert_eq!(sets[2], ("u@x".into(), "good".into(), None));
    }

    #[test]
    fn empty_transaction_commits_ok() {
        assert_eq!(run(&["B5\tu", "C5"]).0, [None, Some("O\n".into())]);
    }

    #[test]
    fn interleaved_transactions() {
        let (r, h) = run(&["B1\ta@x", "B2\tb@x", "S2\tbad", "S1\tk\tv", "C2", "C1"]);
        assert_eq!(
            r,
            [
                None,
                None,
                None,
                None,
                Some("F\n".into()),
                Some("O\n".into())
            ]
        );
        assert_eq!(h.sets.lock().unwrap()[1].0, "a@x");
    }

    #[test]
    fn unknown_transaction_ids() {
        let (r, h) = run(&["S9\tk\tv", "C9"]);
        assert_eq!(r, [None, Some("F\n".into())]);
        assert!(h.sets.lock().unwrap().is_empty());
    }

    #[test]
    fn unknown_commands_are_ignored() {
        let (r, h) = run(&["B1\tu", "U1\tk", "A1\tk\t1", "R1", "zzz", "C1"]);
        assert_eq!(r, [None, None, None, None, None, Some("O\n".into())]);
        assert!(h.sets.lock().unwrap().is_empty());
    }

    #[test]
    fn invalid_utf8_is_rejected_with_a_reply() {
        let h = Recorder::default();
        let mut s = Session::new();
        assert_eq!(s.handle_line(&h, b"Lfound/\xff\xfe"), Some("F\n".into()));
        assert_eq!(s.handle_line(&h, b"I0\t0\t\xff"), Some("\n".into()));
        assert_eq!(s.handle_line(&h, b"B1\tu"), None);
        assert_eq!(s.handle_line(&h, b"S1\tk\t\xff"), None);
        assert_eq!(s.handle_line(&h, b"C1"), Some("F\n".into()));
        assert_eq!(s.handle_line(&h, b"X\xff"), None);
        assert_eq!(s.handle_line(&h, b"C\xff"), Some("F\n".into()));
    }

    #[test]
    fn open_transactions_are_bounded() {
        let h = Recorder::default();
        let mut s = Session::new();
        for i in 0..MAX_OPEN_TRANSACTIONS + 10 {
            s.handle_line(&h, format!("B{i}\tu").as_bytes());
        }
        assert_eq!(s.transactions.len(), MAX_OPEN_TRANSACTIONS);
        // Re-beginning an existing id is still allowed.
        s.handle_line(&h, b"B0\tv");
        assert_eq!(s.transactions["0"].user, "v");
    }
}
