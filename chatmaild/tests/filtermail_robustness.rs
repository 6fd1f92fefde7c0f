//! Deterministic mutation testing of the rules and the SMTP session (a small in-tree
//! complement to the cargo-fuzz targets in `chatmaild/fuzz`): mutated fixtures must get a
//! verdict from the documented set, the same one every time, and never be accepted in a
//! way the unmutated rules would not explain.

use chatmaild::filtermail::incoming::{self, Mailboxes};
use chatmaild::filtermail::mime::Mail;
use chatmaild::filtermail::reply::Reply;
use chatmaild::filtermail::smtp::server::{Limits, session};
use chatmaild::filtermail::smtp::{Envelope, Handler};
use chatmaild::filtermail::{Direction, outgoing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// xorshift64*: reproducible without a dependency.
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

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"=",
    b"--==BOUNDARY==",
    b"--==BOUNDARY==--",
    b"Content-Type: multipart/encrypted; boundary=x\r\n",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----END PGP MESSAGE-----",
    b"\xc1\xff\xff\xff\xff",
    b"\x00",
    b"\xff",
    b"From: <a@b.c>\r\n",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut m = input.to_vec();
    for _ in 0..=rng.below(4) {
        let pos = if m.is_empty() { 0 } else { rng.below(m.len()) };
        match rng.below(5) {
            0 if !m.is_empty() => m[pos] = rng.next() as u8,
            1 if !m.is_empty() => {
                let end = (pos + rng.below(64)).min(m.len());
                m.drain(pos..end);
            }
            2 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                m.splice(pos..pos, ins.iter().copied());
            }
            3 => m.truncate(pos),
            _ => {
                // Duplicate a slice (repeated headers, parts, packets).
                let end = (pos + rng.below(200)).min(m.len());
                let copy = m[pos..end].to_vec();
                m.splice(pos..pos, copy);
            }
        }
    }
    m
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filtermail");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn mutated_messages_get_documented_verdicts() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let boxes = Mailboxes {
        dir: "/nonexistent-filtermail-test".into(),
        domain: "remote.example".into(),
    };
    let env = Envelope {
        mail_from: Some("alice123@chat.example.org".into()),
        rcpt_to: vec!["bob456789@remote.example".into()],
        data: Vec::new(),
    };
    let seeds = fixtures();
    let mut accepted = 0;
    for i in 0..3000 {
        let msg = mutate(&mut rng, &seeds[i % seeds.len()]);
        let verdict = outgoing::check(&env, &msg);
        assert_eq!(verdict, outgoing::check(&env, &msg), "not deterministic");
        match &verdict {
            Ok(()) => {
                accepted += 1;
                // Whatever got through is one of the allowed kinds.
                let mail = Mail::parse(&msg);
                assert!(mail.is_encrypted(Direction::Outgoing) || mail.is_securejoin());
            }
            Err(r) => assert!(matches!(r.code, 500 | 523 | 554), "{r}"),
        }
        match incoming::check(&env, &msg, &boxes) {
            Ok(_) => {}
            Err(r) => assert!(matches!(r.code, 500 | 523 | 554), "{r}"),
        }
    }
    // Mutations are small, so many still pass; none passing would mean the test is broken.
    // (A quarter of the seeds are hostile headers that stay refused.)
    assert!(accepted > 40, "only {accepted} accepted");
}

struct Accept;

impl Handler for Accept {
    async fn data(&self, envelope: Envelope) -> Reply {
        assert!(envelope.data.len() <= 2048);
        Reply::ok()
    }
}

#[tokio::test]
async fn mutated_sessions_end_cleanly() {
    let mut rng = Rng(0x5eed_0000_0000_0002);
    let script: &[u8] = b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n\
        Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nNOOP\r\nQUIT\r\n";
    for _ in 0..500 {
        let input = mutate(&mut rng, script);
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut rd, mut wr) = tokio::io::split(client);
        let limits = Limits::new(2048);
        let write = async {
            wr.write_all(&input).await.ok();
            wr.shutdown().await.ok();
        };
        let read = async {
            let mut out = Vec::new();
            rd.read_to_end(&mut out).await.unwrap();
            out
        };
        let (served, _, out) = tokio::join!(session(server, &Accept, &limits), write, read);
        assert!(served.is_ok());
        assert!(out.starts_with(b"220 filtermail SMTP\r\n"));
        // Every reply line is a well-formed SMTP reply.
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.ends_with(b"\r"), "{line:?}");
            let code = std::str::from_utf8(&line[..3]).unwrap();
            assert!(code.parse::<u16>().is_ok_and(|c| (200..600).contains(&c)));
        }
    }
}
