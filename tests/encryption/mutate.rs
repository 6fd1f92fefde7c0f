//! The property test: real Delta Chat messages, re-addressed to test accounts, mutated at
//! random (headers, MIME structure, bytes) and sent over concurrent connections on 587
//! and 25. Whatever reaches the enforcing recipient's mailbox must pass the oracle; every
//! accepted message must be stored; refusals must be 5xx.
//!
//! Each message is built from `seed` and its index alone, so one failing index can be
//! rebuilt and sent again by hand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatmail_deploy::probe::account::Account;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use super::cases::ATTACK;
use super::oracle::{self, Reader};
use super::site::{Mailbox, PEER, Path, Site, find, session};

/// Connections per path.
const WORKERS: usize = 4;

pub struct Summary {
    pub seed: u64,
    pub sent: usize,
    pub accepted: usize,
    pub refused: BTreeMap<u16, usize>,
    pub stored: usize,
    pub violations: usize,
    pub secs: f64,
    /// Until the last reply (the rest is waiting for delivery).
    pub send_secs: f64,
    pub problems: Vec<String>,
}

impl Summary {
    pub fn line(&self) -> String {
        let refused: usize = self.refused.values().sum();
        let codes: Vec<String> = self
            .refused
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        format!(
            "mutations: {} sent, {} accepted, {} refused ({}), {} stored, {} violations in {:.1} s \
             (seed {}, sent in {:.1} s: {:.0} messages/s)",
            self.sent,
            self.accepted,
            refused,
            codes.join(", "),
            self.stored,
            self.violations,
            self.secs,
            self.seed,
            self.send_secs,
            self.sent as f64 / self.send_secs.max(0.001)
        )
    }
}

/// The captured Delta Chat messages, CRLF line ends.
pub fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chatmaild/tests/fixtures/filtermail/deltachat");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| crlf(&std::fs::read(p).unwrap()))
        .collect()
}

fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// A message split into its physical header lines (without CRLF) and its body.
struct Msg {
    head: Vec<Vec<u8>>,
    /// Whether the blank line between head and body is there.
    blank: bool,
    body: Vec<u8>,
}

impl Msg {
    fn parse(raw: &[u8]) -> Msg {
        let (h, body, blank) = match find(raw, b"\r\n\r\n") {
            Some(i) => (&raw[..i], raw[i + 4..].to_vec(), true),
            None => (raw, Vec::new(), false),
        };
        let head = h
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .collect();
        Msg { head, blank, body }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.head {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
        if self.blank {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Index of the first physical line of header `name`.
    fn header(&self, name: &str) -> Option<usize> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .iter()
            .position(|l| l.to_ascii_lowercase().starts_with(prefix.as_bytes()))
    }

    /// The lines of header `name` (first line and continuations).
    fn header_span(&self, name: &str) -> Option<(usize, usize)> {
        let start = self.header(name)?;
        let mut end = start + 1;
        while end < self.head.len() && matches!(self.head[end].first(), Some(b' ' | b'\t')) {
            end += 1;
        }
        Some((start, end))
    }

    fn set_header(&mut self, name: &str, value: &str) {
        let line = format!("{name}: {value}").into_bytes();
        match self.header_span(name) {
            Some((s, e)) => {
                self.head.splice(s..e, [line]);
            }
            None => self.head.insert(0, line),
        }
    }

    fn boundary(&self) -> Option<String> {
        let (s, e) = self.header_span("Content-Type")?;
        let ct = String::from_utf8_lossy(&self.head[s..e].concat()).to_string();
        let i = ct.to_ascii_lowercase().find("boundary=")? + "boundary=".len();
        let rest = ct[i..].trim_start_matches('"');
        Some(rest.split(['"', ';', ' ']).next()?.to_string())
    }
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Non-header lines (as Postfix sees them) and other odd header-block lines.
const ODD_LINES: &[&[u8]] = &[
    b"X-Bad Name: v",
    b"no colon here",
    b": v",
    b"X-\xc3\xa9t\xc3\xa9: v",
    b"From x Tue Dec  1 10:00:00 2026",
    b"--boundary",
    b"   ",
    b"\t",
    b"X-Nul: a\0b",
    b"X-8bit: \xff\xfe",
];

/// One random mutation; returns its name.
fn mutate(m: &mut Msg, rng: &mut StdRng) -> String {
    let boundary = m.boundary().unwrap_or_default();
    let odd = |rng: &mut StdRng| ODD_LINES[rng.gen_range(0..ODD_LINES.len())].to_vec();
    let odd_name = |l: &[u8]| String::from_utf8_lossy(l).escape_debug().to_string();
    match rng.gen_range(0..26) {
        0 => {
            let l = odd(rng);
            let pos = rng.gen_range(0..=m.head.len());
            let name = format!("odd line {:?} at header {pos}", odd_name(&l));
            m.head.insert(pos, l);
            name
        }
        1 => {
            let l = odd(rng);
            let pos = m.header("Content-Type").unwrap_or(0);
            let name = format!("odd line {:?} before Content-Type", odd_name(&l));
            m.head.insert(pos, l);
            name
        }
        2 => {
            if let Some((s, e)) = m.header_span("Content-Type") {
                let joined: Vec<u8> = m.head[s..e].join(&b' ');
                m.head.splice(s..e, [joined]);
            }
            "unfold Content-Type".into()
        }
        3 => {
            let i = rng
                .gen_range(0..m.head.len().max(1))
                .min(m.head.len().saturating_sub(1));
            if let Some(line) = m.head.get(i).cloned()
                && let Some(sp) = line.iter().rposition(|&b| b == b' ')
                && sp > 0
            {
                m.head
                    .splice(i..=i, [line[..sp].to_vec(), line[sp..].to_vec()]);
            }
            format!("fold header line {i}")
        }
        4 => {
            let variant = rng.gen_range(0..3);
            let line: &[u8] = match variant {
                0 => b"Content-Type: text/plain; charset=utf-8",
                1 => b"Content-Type: multipart/mixed; boundary=\"OTHER\"",
                _ => b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"OTHER\"",
            };
            let pos = rng.gen_range(0..=m.head.len());
            m.head.insert(pos, line.to_vec());
            format!("second Content-Type #{variant} at header {pos}")
        }
        5 => {
            if let Some((_, e)) = m.header_span("Content-Type") {
                m.head[e - 1].extend_from_slice(b"; boundary=\"OTHER\"");
            }
            "second boundary= parameter (last)".into()
        }
        6 => {
            if let Some(s) = m.header("Content-Type") {
                let line = m.head[s].clone();
                let mut l = b"Content-Type: multipart/encrypted; boundary=\"OTHER\";".to_vec();
                l.extend_from_slice(
                    &line["Content-Type: multipart/encrypted;".len().min(line.len())..],
                );
                m.head[s] = l;
            }
            "second boundary= parameter (first)".into()
        }
        7 => {
            if let Some((_, e)) = m.header_span("Content-Type") {
                m.head[e - 1].extend_from_slice(b"; x= =?us-ascii?Q?1=3B_boundary=3DOTHER?=");
            }
            "encoded word '; boundary=OTHER' in a parameter".into()
        }
        8 => {
            if let Some((s, e)) = m.header_span("Content-Type") {
                let which = rng.gen_range(0..3);
                for l in &mut m.head[s..e] {
                    *l = match which {
                        0 => l.to_ascii_uppercase(),
                        1 => l.to_ascii_lowercase(),
                        _ => replace_all(l, b"boundary=", b"BOUNDARY="),
                    };
                }
                // the body's boundary lines keep their case: upper-casing changes the value
                return format!("case change #{which} of Content-Type");
            }
            "case change (no Content-Type)".into()
        }
        9 => {
            let pos = rng.gen_range(0..=m.head.len());
            m.head.insert(pos, b" ".to_vec());
            format!("whitespace-only line at header {pos}")
        }
        10 => {
            let size = [998, 1000, 4096, 65536, 102_400, 110_000][rng.gen_range(0..6)];
            let folded = rng.gen_bool(0.5);
            let mut l = b"X-Long: ".to_vec();
            let pos = rng.gen_range(0..=m.head.len());
            if folded {
                let mut lines = vec![l];
                while lines.iter().map(Vec::len).sum::<usize>() < size {
                    lines.push([b" ".as_slice(), &[b'a'; 76]].concat());
                }
                m.head.splice(pos..pos, lines);
            } else {
                l.extend(std::iter::repeat_n(b'a', size));
                m.head.insert(pos, l);
            }
            format!("X-Long header of {size} bytes (folded {folded}) at {pos}")
        }
        11 => {
            if let Some((s, e)) = m.header_span("Content-Type") {
                let mut ct = m.head[s..e].join(&b' ');
                let pad: Vec<u8> = b"; x=\""
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(b'a', 103_000))
                    .chain(*b"\"")
                    .collect();
                let at = ct.iter().position(|&b| b == b';').unwrap_or(ct.len());
                ct.splice(at..at, pad);
                m.head.splice(s..e, [ct]);
            }
            "Content-Type padded past 102400 bytes".into()
        }
        12 => {
            let i = rng
                .gen_range(0..m.head.len().max(1))
                .min(m.head.len().saturating_sub(1));
            let byte = [0u8, 0x80, 0xff, b'\r'][rng.gen_range(0..4)];
            if let Some(l) = m.head.get_mut(i) {
                let at = rng.gen_range(0..=l.len());
                l.insert(at, byte);
            }
            format!("byte {byte:#04x} in header line {i}")
        }
        13 => {
            m.blank = false;
            "blank line after the header dropped".into()
        }
        14 => {
            if let Some((s, e)) = m.header_span("Content-Type") {
                let ct: Vec<Vec<u8>> = m.head.drain(s..e).collect();
                let l = odd(rng);
                let name = format!("Content-Type moved after {:?}", odd_name(&l));
                m.head.push(l);
                m.head.extend(ct);
                return name;
            }
            "move Content-Type (none)".into()
        }
        15 => {
            let new = ["B", "E", "BEG", "-----", "PGP", "MESSAGE"][rng.gen_range(0..6)];
            rename_boundary(m, &boundary, new, true, true);
            format!("boundary renamed to {new:?}")
        }
        16 => {
            let in_head = rng.gen_bool(0.5);
            rename_boundary(m, &boundary, "CHANGED", in_head, !in_head);
            format!(
                "boundary changed in the {} only",
                if in_head { "header" } else { "body" }
            )
        }
        17 => {
            if let Some((s, e)) = m.header_span("Content-Type") {
                for l in &mut m.head[s..e] {
                    let quoted = format!("boundary=\"{boundary}\"");
                    let bare = format!("boundary={boundary}");
                    *l = if find(l, quoted.as_bytes()).is_some() {
                        replace_all(l, quoted.as_bytes(), bare.as_bytes())
                    } else {
                        replace_all(l, bare.as_bytes(), quoted.as_bytes())
                    };
                }
            }
            "boundary quoting toggled".into()
        }
        18 => {
            let part = format!("--{boundary}\r\nContent-Type: text/plain\r\n\r\n{ATTACK}\r\n");
            let marks = boundary_positions(&m.body, &boundary);
            let at = marks
                .get(rng.gen_range(0..marks.len().max(1)))
                .copied()
                .unwrap_or(0);
            m.body.splice(at..at, part.into_bytes());
            format!("extra text/plain part at body offset {at}")
        }
        19 => {
            // the payload part wrapped in multipart/mixed
            let marks = boundary_positions(&m.body, &boundary);
            if marks.len() >= 3 {
                let (a, z) = (marks[1], marks[2]);
                let start = a + boundary.len() + 4;
                let inner = m.body[start..z].to_vec();
                let wrapped = format!(
                    "Content-Type: multipart/mixed; boundary=\"NEST\"\r\n\r\n--NEST\r\n{}--NEST--\r\n",
                    String::from_utf8_lossy(&inner)
                );
                m.body.splice(start..z, wrapped.into_bytes());
            }
            "payload nested in multipart/mixed".into()
        }
        20 => {
            let marks = boundary_positions(&m.body, &boundary);
            if marks.len() >= 3 {
                let p1 = m.body[marks[0]..marks[1]].to_vec();
                let p2 = m.body[marks[1]..marks[2]].to_vec();
                let swapped = [p2, p1].concat();
                m.body.splice(marks[0]..marks[2], swapped);
            }
            "parts swapped".into()
        }
        21 => {
            let text = format!("{ATTACK}\r\n");
            if rng.gen_bool(0.5) {
                m.body.splice(0..0, text.into_bytes());
                "cleartext prepended to the body".into()
            } else {
                m.body.extend_from_slice(text.as_bytes());
                "cleartext appended to the body".into()
            }
        }
        22 => {
            let text = format!("{ATTACK}\r\n");
            if rng.gen_bool(0.5) {
                m.body = replace_all(
                    &m.body,
                    b"Version: 1\r\n",
                    format!("Version: 1\r\n{text}").as_bytes(),
                );
                "cleartext in the version part".into()
            } else {
                m.body = replace_all(
                    &m.body,
                    b"-----BEGIN PGP MESSAGE-----",
                    format!("{text}-----BEGIN PGP MESSAGE-----").as_bytes(),
                );
                "cleartext before the armor".into()
            }
        }
        23 => {
            let mut all = m.bytes();
            let at = rng.gen_range(0..=all.len());
            all.truncate(at);
            *m = Msg::parse(&all);
            format!("truncated at {at}")
        }
        24 => {
            let mut all = m.bytes();
            let k = rng.gen_range(1..=3);
            let mut at = Vec::new();
            for _ in 0..k {
                let i = rng.gen_range(0..all.len().max(1));
                if let Some(b) = all.get_mut(i) {
                    *b ^= 1 << rng.gen_range(0..8);
                }
                at.push(i);
            }
            *m = Msg::parse(&all);
            format!("bit flips at {at:?}")
        }
        _ => {
            let ct = [
                "text/plain",
                "multipart/mixed",
                "application/pgp-encrypted",
                "multipart/signed",
            ][rng.gen_range(0..4)];
            if let Some((s, e)) = m.header_span("Content-Type") {
                let joined = m.head[s..e].join(&b' ');
                let rest = joined
                    .iter()
                    .position(|&b| b == b';')
                    .map(|i| joined[i..].to_vec())
                    .unwrap_or_default();
                let mut l = format!("Content-Type: {ct}").into_bytes();
                l.extend_from_slice(&rest);
                m.head.splice(s..e, [l]);
            }
            format!("top-level type changed to {ct}")
        }
    }
}

fn rename_boundary(m: &mut Msg, old: &str, new: &str, head: bool, body: bool) {
    if old.is_empty() {
        return;
    }
    if head && let Some((s, e)) = m.header_span("Content-Type") {
        for l in &mut m.head[s..e] {
            *l = replace_all(
                l,
                format!("boundary=\"{old}\"").as_bytes(),
                format!("boundary=\"{new}\"").as_bytes(),
            );
            *l = replace_all(
                l,
                format!("boundary={old}").as_bytes(),
                format!("boundary={new}").as_bytes(),
            );
        }
    }
    if body {
        m.body = replace_all(
            &m.body,
            format!("--{old}").as_bytes(),
            format!("--{new}").as_bytes(),
        );
    }
}

/// Offsets of the boundary delimiter lines in the body.
fn boundary_positions(body: &[u8], boundary: &str) -> Vec<usize> {
    if boundary.is_empty() {
        return Vec::new();
    }
    let d = format!("--{boundary}");
    (0..body.len())
        .filter(|&i| (i == 0 || body[i - 1] == b'\n') && body[i..].starts_with(d.as_bytes()))
        .collect()
}

/// The text naming message `index` in its Message-ID.
fn token(seed: u64, index: usize) -> String {
    format!("mut-{seed}-{index}-")
}

fn mix(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Half the messages go to 587, half to 25.
fn path_of(seed: u64, index: usize) -> Path {
    if (mix(seed, index) >> 17) & 1 == 0 {
        Path::Submission
    } else {
        Path::Mx
    }
}

/// A captured message addressed `from` -> `to` with a new Message-ID, otherwise as the
/// client wrote it.
pub fn readdressed(fixture: &[u8], from: &str, to: &str, message_id: &str) -> Vec<u8> {
    let mut m = Msg::parse(fixture);
    m.set_header("From", &format!("<{from}>"));
    m.set_header("To", &format!("<{to}>"));
    m.set_header("Message-ID", &format!("<{message_id}>"));
    m.bytes()
}

/// Message `index` of a campaign: fixture, path, mutations; re-addressed.
pub fn build(
    seed: u64,
    index: usize,
    fixtures: &[Vec<u8>],
    sender: &str,
    rcpt: &str,
) -> (Path, Vec<u8>, String) {
    let mut rng = StdRng::seed_from_u64(mix(seed, index));
    let fixture = rng.gen_range(0..fixtures.len());
    let path = path_of(seed, index);
    let from = if path == Path::Submission {
        sender.to_string()
    } else {
        format!("dc@[{PEER}]")
    };
    let mut m = Msg::parse(&fixtures[fixture]);
    m.set_header("From", &format!("<{from}>"));
    m.set_header("To", &format!("<{rcpt}>"));
    // what finds the stored copy (the relay's reply carries no queue ID)
    m.set_header("Message-ID", &format!("<{}@enc.test>", token(seed, index)));
    let n = rng.gen_range(1..=3);
    let names: Vec<String> = (0..n).map(|_| mutate(&mut m, &mut rng)).collect();
    let what = format!(
        "#{index} dc-{:02} via {}: {}",
        fixture + 1,
        path.name(),
        names.join(" + ")
    );
    (path, m.bytes(), what)
}

struct Shared {
    accepted: HashMap<String, String>,
    summary: Summary,
    stored_ids: HashMap<String, usize>,
}

/// Sends the campaign and checks the mailbox; the count is CHATMAIL_ENC_MUTATIONS.
pub async fn campaign(site: &'static Site, sender: &Account, rcpt: &Account) -> Summary {
    let count: usize = std::env::var("CHATMAIL_ENC_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("CHATMAIL_ENC_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("mutations: {count} messages, seed {seed} (CHATMAIL_ENC_SEED={seed} repeats them)");
    let fixtures = Arc::new(fixtures());
    let shared = Arc::new(Mutex::new(Shared {
        accepted: HashMap::new(),
        stored_ids: HashMap::new(),
        summary: Summary {
            seed,
            sent: 0,
            accepted: 0,
            refused: BTreeMap::new(),
            stored: 0,
            violations: 0,
            secs: 0.0,
            send_secs: 0.0,
            problems: Vec::new(),
        },
    }));
    let started = Instant::now();
    // one counter per path: its workers claim indices in turn and send those of their path
    let next = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let done = Arc::new(AtomicUsize::new(0));

    // the reader: drains the mailbox while mail arrives, judging each message
    let reader = {
        let shared = shared.clone();
        let rcpt = rcpt.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut mb = Mailbox::open(site, &rcpt).await;
            let mut idle_rounds = 0;
            loop {
                let batch = mb.drain(1, Duration::from_secs(2)).await;
                let mut sh = shared.lock().await;
                judge_batch(&mut sh, &batch, &rcpt.address);
                let all_sent = done.load(Ordering::SeqCst) == 2 * WORKERS;
                let missing = sh.summary.accepted.saturating_sub(sh.summary.stored);
                drop(sh);
                if all_sent {
                    if missing == 0 && batch.is_empty() {
                        break;
                    }
                    idle_rounds = if batch.is_empty() { idle_rounds + 1 } else { 0 };
                    if idle_rounds >= 15 {
                        break;
                    }
                }
            }
            mb.close().await;
        })
    };

    let mut workers = Vec::new();
    for w in 0..2 * WORKERS {
        let path = if w < WORKERS {
            Path::Submission
        } else {
            Path::Mx
        };
        let next = next[w / WORKERS].clone();
        let (shared, done, fixtures) = (shared.clone(), done.clone(), fixtures.clone());
        let (sender, rcpt) = (sender.clone(), rcpt.address.clone());
        workers.push(tokio::spawn(async move {
            let mut s = session(site, path, Some(&sender)).await;
            // Postfix answers every error after its smtpd_soft_error_limit (10) a second
            // late: a session ends before it gets there
            let mut errors = 0;
            loop {
                if errors >= 8 {
                    s.quit().await;
                    s = session(site, path, Some(&sender)).await;
                    errors = 0;
                }
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= count {
                    break;
                }
                if path_of(seed, index) != path {
                    continue;
                }
                let (_, message, what) = build(seed, index, &fixtures, &sender.address, &rcpt);
                let from = if path == Path::Submission {
                    sender.address.clone()
                } else {
                    format!("dc@[{PEER}]")
                };
                let outcome = s.send(&from, &[&rcpt], &message).await;
                if outcome.code != 250 {
                    errors += 1;
                }
                let mut sh = shared.lock().await;
                sh.summary.sent += 1;
                match outcome.code {
                    250 => {
                        sh.summary.accepted += 1;
                        sh.accepted.insert(token(seed, index), what);
                    }
                    500..=599 => *sh.summary.refused.entry(outcome.code).or_default() += 1,
                    code => {
                        *sh.summary.refused.entry(code).or_default() += 1;
                        sh.summary
                            .problems
                            .push(format!("{what}: reply {} (not 250 or 5xx)", outcome.text));
                        if code == 0 {
                            drop(sh);
                            s = session(site, path, Some(&sender)).await;
                        }
                    }
                }
            }
            s.quit().await;
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let send_secs = started.elapsed().as_secs_f64();
    reader.await.unwrap();

    let mut sh = shared.lock().await;
    sh.summary.secs = started.elapsed().as_secs_f64();
    sh.summary.send_secs = send_secs;
    if sh.summary.stored < sh.summary.accepted {
        let mut lost: Vec<String> = sh
            .accepted
            .iter()
            .filter(|(id, _)| !sh.stored_ids.contains_key(*id))
            .map(|(_, what)| format!("accepted but not stored (or its token lost): {what}"))
            .collect();
        lost.sort();
        lost.insert(
            0,
            format!(
                "{} accepted, {} stored",
                sh.summary.accepted, sh.summary.stored
            ),
        );
        sh.summary.problems.extend(lost.into_iter().take(20));
    }
    std::mem::replace(
        &mut sh.summary,
        Summary {
            seed,
            sent: 0,
            accepted: 0,
            refused: BTreeMap::new(),
            stored: 0,
            violations: 0,
            secs: 0.0,
            send_secs: 0.0,
            problems: Vec::new(),
        },
    )
}

fn judge_batch(sh: &mut Shared, batch: &[Vec<u8>], address: &str) {
    let reader = Reader {
        address,
        enforcing: true,
    };
    for stored in batch {
        sh.summary.stored += 1;
        // the token survives most mutations; a stored copy without one is still judged
        let id = find(stored, b"<mut-").and_then(|i| {
            let rest = &stored[i + 1..];
            let end = rest.iter().position(|&b| b == b'@')?;
            Some(String::from_utf8_lossy(&rest[..end]).to_string())
        });
        let what = id
            .as_ref()
            .and_then(|id| sh.accepted.get(id).cloned())
            .unwrap_or_else(|| format!("(stored message {id:?} not among the accepted)"));
        if let Some(id) = id
            && sh.accepted.contains_key(&id)
        {
            *sh.stored_ids.entry(id).or_default() += 1;
        }
        if let Err(why) = oracle::judge(stored, &reader) {
            sh.summary.violations += 1;
            // the first few in full, then one line each
            let detail = if sh.summary.violations <= 5 {
                format!(
                    "\n----- stored -----\n{}\n------------------",
                    oracle::excerpt(stored, 2000)
                )
            } else {
                String::new()
            };
            sh.summary
                .problems
                .push(format!("VIOLATION {what}: {why}{detail}"));
        }
    }
}
