//! Where does real Postfix end a message's header? filtermail's header check
//! (`filtermail::header`) claims to know; this file asks a private Postfix, configured like
//! the relay (`disable_mime_input_processing = yes`, `header_size_limit = 102400`), and
//! compares.
//!
//! Each hostile variant puts one line that is not a header field before
//! `Content-Type: multipart/encrypted`. The message goes through a plain smtpd (no filter)
//! into cleanup and the queue, and the smtp client delivers it to a recording sink. The
//! test then looks at the delivered message: is `Content-Type: multipart/encrypted` still
//! in its header? The model says it is exactly when the hostile line is a header field
//! for Postfix, and the strict check refuses every variant where it is not.
//!
//! Findings (Postfix 3.7.11, Debian 12), asserted below:
//! * a line that is not `name:` with a name of printable ASCII other than `:` (or a
//!   continuation line after a field) ends the header: `X-Bad Name: v`, `no colon`,
//!   `: v`, an 8-bit name, an mbox `From ` line, a `--boundary` line, a NUL in the name.
//!   Postfix then writes an empty line itself, so the stored message is a `text/plain`
//!   message whose body starts with the hostile line and the attacker's "header".
//! * a first line that is a continuation (` x: y`) ends the header before it starts.
//! * a whitespace-only line is a continuation for Postfix (the header goes on).
//! * `name : v` (space or tab before the colon) is a field for Postfix, stored as
//!   `name: v` (mailparse would keep the space in the name, so filtermail and the client
//!   reading the stored message would disagree).
//! * a NUL in a value: Postfix stores the value cut at the NUL.
//! * a line longer than `line_length_limit` (2048) stays one field when its colon is in
//!   the first 2048 bytes (colon at offset 2047: field, at 2048: end of the header).
//! * a field longer than `header_size_limit` is cut there and the rest of the field is
//!   lost, but the header goes on with the next field.
//! * header rewriting: for clients matching `local_header_rewrite_clients`
//!   (`permit_inet_interfaces`: 127.0.0.1, i.e. every re-injection) cleanup rewrites
//!   `From:` (`"x"@d` becomes `x@d`, an unqualified `alice` becomes `alice@relay.test`);
//!   with `-o local_header_rewrite_clients=` on the smtpd it leaves `From:` alone.
//!
//! Runs only with `CHATMAIL_POSTFIX_TESTS=1`, as root, with Debian's `postfix` package.

mod support;

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use chatmaild::filtermail::data::unstuff;
use chatmaild::filtermail::header;
use support::{Delivered, PrivatePostfix, Rng, free_port, postfix_dir, start_sink, submit};

fn enabled() -> bool {
    std::env::var("CHATMAIL_POSTFIX_TESTS").is_ok_and(|v| v == "1")
}

/// A private Postfix with two plain smtpds queueing to the sink: `plain` with the default
/// header rewriting, `norewrite` with `local_header_rewrite_clients` emptied.
struct Postfix {
    _instance: PrivatePostfix,
    plain: u16,
    norewrite: u16,
}

impl Postfix {
    fn start(dir: &Path, sink_port: u16) -> Postfix {
        let (plain, norewrite) = (free_port(), free_port());
        let services = format!(
            "127.0.0.1:{plain} inet n - n - 10 smtpd\n\
             127.0.0.1:{norewrite} inet n - n - 10 smtpd\n  -o local_header_rewrite_clients=\n"
        );
        Postfix {
            _instance: PrivatePostfix::start(dir, sink_port, "", &services, &[plain, norewrite]),
            plain,
            norewrite,
        }
    }
}

const SENDER: &str = "alice123@chat.example.org";
const RCPT: &str = "bob456789@remote.example";

/// Submit `message` and return what Postfix delivered (unstuffed).
fn roundtrip(port: u16, delivered: &Receiver<Delivered>, message: &[u8]) -> Vec<u8> {
    let reply = submit(port, SENDER, RCPT, message);
    assert!(reply.starts_with("250"), "{reply}");
    let (_, data) = delivered
        .recv_timeout(Duration::from_secs(60))
        .expect("Postfix delivered the message to the sink");
    unstuff(&data)
}

/// The stored header: everything before the first empty line.
fn stored_header(delivered: &[u8]) -> &[u8] {
    let end = delivered
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(delivered.len(), |i| i + 2);
    &delivered[..end]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const CONTENT_TYPE: &str = "Content-Type: multipart/encrypted; boundary=\"XYZ\"";

/// A message with `line` (CRLF added) before its `Content-Type`.
fn with_line_before_content_type(line: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"From: <alice123@chat.example.org>\r\nSubject: probe\r\n");
    m.extend_from_slice(line);
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(CONTENT_TYPE.as_bytes());
    m.extend_from_slice(b"\r\n\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XYZ--\r\n");
    m
}

/// (name, the line, is it a header field for Postfix)
fn variants() -> Vec<(&'static str, Vec<u8>, bool)> {
    let long_value = format!("X-Long: {}", "v".repeat(5000));
    let long_name = format!("X-{}: v", "n".repeat(3000));
    let colon_after_limit = format!("X-Late{}: v", "-".repeat(2100));
    // The colon at offset 2047 is in smtpd's first 2048-byte record, at 2048 it is not.
    let colon_at_2047 = format!("X{}: v", "n".repeat(2046));
    let colon_at_2048 = format!("X{}: v", "n".repeat(2047));
    vec![
        ("space in name", b"X-Bad Name: v".to_vec(), false),
        ("no colon", b"this line has no colon".to_vec(), false),
        ("empty name", b": v".to_vec(), false),
        ("8-bit name", "X-B\u{e4}d: v".as_bytes().to_vec(), false),
        (
            "mbox From line",
            b"From alice123@chat.example.org Tue Dec  1 10:00:00 2026".to_vec(),
            false,
        ),
        ("boundary line", b"--XYZ".to_vec(), false),
        ("NUL in name", b"X-N\0ul: v".to_vec(), false),
        ("control char in name", b"X-\x01: v".to_vec(), false),
        ("DEL in name", b"X-\x7f: v".to_vec(), false),
        ("whitespace-only line", b"   ".to_vec(), true),
        ("space before colon", b"X-Obsolete : v".to_vec(), true),
        ("tab before colon", b"X-Obsolete\t: v".to_vec(), true),
        ("line over line_length_limit", long_value.into_bytes(), true),
        ("name over line_length_limit", long_name.into_bytes(), false),
        (
            "colon after line_length_limit",
            colon_after_limit.into_bytes(),
            false,
        ),
        ("colon at offset 2047", colon_at_2047.into_bytes(), true),
        ("colon at offset 2048", colon_at_2048.into_bytes(), false),
        ("NUL in value", b"X-Nul: a\0b".to_vec(), true),
        (
            "8-bit value",
            "X-Value: J\u{f6}rg".as_bytes().to_vec(),
            true,
        ),
    ]
}

#[test]
fn postfix_ends_the_header_where_the_model_says() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let postfix = Postfix::start(dir.path(), sink_port);
    let mut wrong = Vec::new();
    for (name, line, postfix_field) in variants() {
        let message = with_line_before_content_type(&line);
        let stored = roundtrip(postfix.norewrite, &delivered, &message);
        let kept = contains(stored_header(&stored), CONTENT_TYPE.as_bytes());
        let model = contains(
            &message[..header::postfix_header_end(&message)],
            CONTENT_TYPE.as_bytes(),
        );
        if kept != postfix_field || model != postfix_field {
            wrong.push(format!(
                "{name}: postfix kept Content-Type={kept}, model={model}, expected {postfix_field}\n{}",
                String::from_utf8_lossy(&stored[..stored.len().min(600)])
            ));
        }
        // Every variant that changes Postfix's header end is refused by the strict check.
        if !postfix_field && header::check(&message).is_ok() {
            wrong.push(format!("{name}: the strict check accepts it"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The strict check accepts only the plain fields among the variants; the others are
/// refused even where Postfix goes on (it would rewrite them, or other readers differ).
#[test]
fn strict_check_accepts_only_plain_fields() {
    let accepted: Vec<&str> = variants()
        .into_iter()
        .filter(|(_, line, _)| header::check(&with_line_before_content_type(line)).is_ok())
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(accepted, ["line over line_length_limit", "8-bit value"]);
}

#[test]
fn postfix_cuts_a_field_at_header_size_limit() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let postfix = Postfix::start(dir.path(), sink_port);
    // A folded Content-Type of 110 kB whose boundary parameter comes last.
    let mut ct = String::from("Content-Type: multipart/encrypted;");
    while ct.len() < 110_000 {
        ct.push_str("\r\n x-pad=\"");
        ct.push_str(&"p".repeat(900));
        ct.push_str("\";");
    }
    ct.push_str("\r\n boundary=\"XYZ\"");
    let message = format!(
        "From: <{SENDER}>\r\nSubject: probe\r\n{ct}\r\nX-After: still header\r\n\r\n\
         --XYZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XYZ--\r\n"
    );
    let stored = roundtrip(postfix.norewrite, &delivered, message.as_bytes());
    let head = stored_header(&stored);
    assert!(
        !contains(head, b"boundary=\"XYZ\""),
        "Postfix kept the whole field"
    );
    assert!(
        contains(head, b"X-After: still header"),
        "Postfix ended the header at the cut"
    );
    assert!(header::check(message.as_bytes()).is_err());
}

#[test]
fn postfix_rewrites_from_only_for_local_header_rewrite_clients() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let postfix = Postfix::start(dir.path(), sink_port);
    let from_of = |port: u16, from: &str| {
        let message = format!("From: {from}\r\nSubject: probe\r\n\r\nbody\r\n");
        let stored = roundtrip(port, &delivered, message.as_bytes());
        let text = String::from_utf8_lossy(&stored).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("From: "))
            .unwrap_or_default()
            .to_owned()
    };
    let cases = [
        "\"x\"@chat.example.org",
        "alice123",
        "Alice <alice123>",
        "alice123@chat.example.org (comment)",
    ];
    let mut report = Vec::new();
    for from in cases {
        let rewritten = from_of(postfix.plain, from);
        let kept = from_of(postfix.norewrite, from);
        report.push(format!(
            "{from:?}: default {rewritten:?}, norewrite {kept:?}"
        ));
        assert_eq!(kept, from, "local_header_rewrite_clients= keeps From");
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(
        from_of(postfix.plain, "\"x\"@chat.example.org"),
        "x@chat.example.org"
    );
    assert_eq!(from_of(postfix.plain, "alice123"), "alice123@relay.test");
}

// ------------------------------------------------- the fuzz comparison, on stable

#[path = "../fuzz/fuzz_targets/postfix_header_model.rs"]
mod postfix_header_model;

/// Header lines, good and hostile, that the generator strings together.
const PIECES: &[&[u8]] = &[
    b"From: <alice123@chat.example.org>",
    b"Content-Type: multipart/encrypted; boundary=\"XYZ\"",
    b"Subject: hi",
    b"X-Bad Name: v",
    b"no colon",
    b": v",
    b"X-Obs : v",
    b"X-Obs\t: v",
    b" folded",
    b"\tfolded",
    b" ",
    b"\t \t",
    b"",
    b"--XYZ",
    b"From alice Tue Dec  1 10:00:00 2026",
    b"X-\xc3\xa4: v",
    b"X-V: \xc3\xa4",
    b"X-N\0: v",
    b"X-V: a\0b",
    b"X-C: a\rb",
    b"\r",
    b"a:",
    b"a:b",
    b":",
    b"X-\x7f: v",
    b"X-T:\tv",
    b"X-S:   ",
];

fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut m = Vec::new();
    for _ in 0..rng.below(8) {
        match rng.below(20) {
            // a long name or value, near the 998/2048 limits
            0 => {
                let n = [997, 998, 999, 2046, 2047, 2048, 3000][rng.below(7)];
                m.extend(std::iter::repeat_n(b'n', n));
                m.extend_from_slice(b": v");
            }
            1 => {
                m.extend_from_slice(b"X-L: ");
                m.extend(std::iter::repeat_n(b'v', 1000 + rng.below(70_000)));
            }
            _ => m.extend_from_slice(PIECES[rng.below(PIECES.len())]),
        }
        m.extend_from_slice(if rng.below(6) == 0 { b"\n" } else { b"\r\n" });
    }
    if rng.below(4) > 0 {
        m.extend_from_slice(b"\r\nbody\r\n");
    }
    // A few random byte flips.
    for _ in 0..rng.below(3) {
        if !m.is_empty() {
            let i = rng.below(m.len());
            m[i] = [b' ', b'\t', b':', b'\r', b'\n', 0, b'a', 0xe4][rng.below(8)];
        }
    }
    m
}

/// The `filtermail_header` fuzz target's comparison over generated inputs, so that CI
/// checks it without nightly.
#[test]
fn mailparse_agrees_on_accepted_headers() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, total) = (0, 5000);
    for _ in 0..total {
        let input = generate(&mut rng);
        match postfix_header_model::compare(&input) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(e) => panic!("{e}\ninput: {:?}", String::from_utf8_lossy(&input)),
        }
    }
    // Both kinds must be common, or the generator tests nothing.
    assert!(accepted > total / 10, "only {accepted} of {total} accepted");
    assert!(accepted < total * 9 / 10, "{accepted} of {total} accepted");
}

/// The fixtures (the fuzz target's seeds) too.
#[test]
fn mailparse_agrees_on_the_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filtermail");
    let mut files = Vec::new();
    for sub in [dir.clone(), dir.join("deltachat")] {
        for entry in std::fs::read_dir(sub).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "eml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 40);
    for path in files {
        let raw = std::fs::read(&path).unwrap();
        // The `header-*` fixtures are the hostile headers: refused by both.
        let hostile = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("header-");
        assert_eq!(
            postfix_header_model::compare(&raw),
            Ok(!hostile),
            "{}",
            path.display()
        );
    }
}
