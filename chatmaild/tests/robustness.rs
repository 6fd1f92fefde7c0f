//! Malformed and random protocol input must never panic a service, and every request that
//! expects an answer must get exactly one well-formed answer.

use std::sync::Arc;

use chatmaild::Config;
use chatmaild::dict::{DictHandler, Session};
use chatmaild::doveauth::AuthDict;
use chatmaild::lastlogin::LastLoginDict;
use chatmaild::metadata::MetadataDict;
use chatmaild::metadata::notifier::{Notifier, NotifierSettings};
use chatmaild::metadata::tokens::TokenStore;

/// Small deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Lines that look roughly like dict requests, with hostile fragments mixed in.
fn random_line(rng: &mut Rng) -> Vec<u8> {
    const COMMANDS: &[u8] = b"HLIBSCURA?\x00\xff";
    const PIECES: &[&[u8]] = &[
        b"shared/passdb/secret\"",
        b"shared/userdb/",
        b"shared/last-login/",
        b"shared/",
        b"passdb/",
        b"userdb/",
        b"priv/",
        b"last-login/",
        b"devicetoken",
        b"messagenew",
        b"vendor/vendor.dovecot/pvt/server/vendor/deltachat/",
        b"irohrelay",
        b"\"",
        b"\\",
        b"\t",
        b"\x01",
        b"\x01t",
        b"@chat.example.org",
        b"abcdefghi",
        b"../",
        b"/",
        b"1",
        b"1767312345",
        b"\xc3\xa4",
        b"\xff\xfe",
        b"-",
        b" ",
    ];
    if rng.below(3) == 0 {
        // A nearly valid passdb/userdb lookup, so that creation paths get exercised too.
        const LOCAL: &[&[u8]] = &[
            b"abcdefghi",
            b"x",
            b"../",
            b"\\\"",
            b"\xc3\xa4",
            b"UPPER",
            b"a.b-c_d",
        ];
        let mut line = if rng.below(2) == 0 {
            b"Lshared/passdb/".to_vec()
        } else {
            b"Lshared/userdb/".to_vec()
        };
        for _ in 0..rng.below(3) {
            line.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        if line.starts_with(b"Lshared/passdb/") {
            line.push(b'"');
        }
        for _ in 0..=rng.below(2) {
            line.extend_from_slice(LOCAL[rng.below(LOCAL.len())]);
        }
        line.extend_from_slice(b"@chat.example.org");
        return line;
    }
    let mut line = vec![COMMANDS[rng.below(COMMANDS.len())]];
    for _ in 0..rng.below(12) {
        line.extend_from_slice(PIECES[rng.below(PIECES.len())]);
    }
    line
}

/// Returns how many lookups found something (to show the generator reaches deep paths).
fn check_replies<H: DictHandler>(handler: &H, seed: u64, rounds: usize) -> usize {
    let mut found = 0;
    let mut rng = Rng(seed);
    let mut session = Session::new();
    for _ in 0..rounds {
        let line = random_line(&mut rng);
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let reply = session.handle_line(handler, trimmed);
        match trimmed[0] {
            b'L' => {
                let r = reply.expect("lookups are always answered");
                assert!(
                    matches!(r.as_bytes()[0], b'O' | b'N' | b'F') && r.ends_with('\n'),
                    "{r:?}"
                );
                assert_eq!(r.matches('\n').count(), 1, "one line per lookup: {r:?}");
                found += usize::from(r.starts_with('O'));
            }
            b'I' => {
                let r = reply.expect("iterations are always answered");
                assert!(r.ends_with('\n'), "{r:?}");
            }
            b'C' => {
                let r = reply.expect("commits are always answered");
                assert!(r == "O\n" || r == "F\n", "{r:?}");
            }
            _ => assert_eq!(reply, None, "{:?}", String::from_utf8_lossy(trimmed)),
        }
    }
    found
}

fn config(dir: &std::path::Path) -> Config {
    Config::parse(
        &format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n\
             username_min_length = 1\nusername_max_length = 20\npassword_min_length = 1\n",
            dir.display()
        ),
        "t.ini",
    )
    .unwrap()
}

#[test]
fn doveauth_survives_random_input() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = AuthDict::new(config(tmp.path()))
        .with_nocreate_file(tmp.path().join("nocreate"))
        .with_resource_gate(Arc::new(|_: &Config| true));
    let found: usize = (1..=5).map(|seed| check_replies(&auth, seed, 2000)).sum();
    assert!(
        found > 0,
        "no lookup ever succeeded; the generator is too weak"
    );
    // Whatever got created stayed inside the mailboxes directory.
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with("@chat.example.org"), "{name:?}");
    }
}

#[test]
fn lastlogin_survives_random_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dict = LastLoginDict::new(config(tmp.path()));
    for seed in 10..=14 {
        check_replies(&dict, seed, 2000);
    }
}

#[test]
fn metadata_survives_random_input() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("abcdefghi@chat.example.org")).unwrap();
    let queue = tmp.path().join("pending_notifications");
    std::fs::create_dir_all(&queue).unwrap();
    let config = config(tmp.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    // Nothing listens there: any push attempt fails fast and is retried in the background.
    let settings = NotifierSettings {
        url: "http://127.0.0.1:9/notify".into(),
        ..NotifierSettings::default()
    };
    let notifier = Notifier::new(queue, TokenStore::new(tmp.path()), settings).unwrap();
    let dict = MetadataDict::new(&config, notifier, tmp.path().join("appversions.json"));
    for seed in 20..=24 {
        check_replies(&dict, seed, 2000);
    }
}
