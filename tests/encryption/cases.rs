//! Messages for the regression cases: a valid PGP/MIME message with one thing changed, and
//! the lines Postfix does not take as headers.

use std::sync::OnceLock;

use chatmail_deploy::probe::openpgp::{Key, encrypt};

/// One real armored OpenPGP message (CRLF): the payload of every PGP/MIME case. The cases
/// test the MIME around it, so one encryption serves all.
pub fn armor() -> &'static str {
    static ARMOR: OnceLock<String> = OnceLock::new();
    ARMOR.get_or_init(|| {
        let key = Key::generate("armor@_enc.test").unwrap();
        let inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\nsecret\r\n";
        let armored = encrypt(inner, &[key.public()]).unwrap();
        armored
            .trim_end()
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
    })
}

/// The cleartext an attacker wants the recipient to read.
pub const ATTACK: &str = "ATTACKER CLEARTEXT: click http://evil.invalid";

/// The headers every case message starts with; `token` names the case in the Message-ID
/// so that its stored copy can be found.
pub fn head(from: &str, to: &str, token: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: [...]\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{token}@enc.test>\r\nMIME-Version: 1.0\r\n"
    )
}

/// PGP/MIME with `boundary`; `before_ct` goes right before the Content-Type header and
/// `preamble` before the first boundary (where a client that sees text/plain reads it).
pub fn pgp(head: &str, boundary: &str, before_ct: &[u8], preamble: &str) -> Vec<u8> {
    let mut m = head.as_bytes().to_vec();
    m.extend_from_slice(before_ct);
    m.extend_from_slice(
        format!(
            "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
             boundary=\"{boundary}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    m.extend_from_slice(pgp_body(boundary, preamble).as_bytes());
    m
}

pub fn pgp_body(boundary: &str, preamble: &str) -> String {
    format!(
        "{preamble}--{boundary}\r\nContent-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n{}\r\n\r\n--{boundary}--\r\n",
        armor()
    )
}

pub fn cleartext(head: &str) -> Vec<u8> {
    format!("{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{ATTACK}\r\n").into_bytes()
}

/// A Secure-Join vc-request (cleartext by design) with `before_ct` before its
/// Content-Type; the attacker text sits in the preamble of the one-part multipart.
pub fn securejoin(head: &str, before_ct: &[u8]) -> Vec<u8> {
    let mut m = head.as_bytes().to_vec();
    m.extend_from_slice(b"Secure-Join: vc-request\r\n");
    m.extend_from_slice(before_ct);
    m.extend_from_slice(
        format!(
            "Content-Type: multipart/mixed; boundary=\"sj\"\r\n\r\n{ATTACK}\r\n\
             --sj\r\nContent-Type: text/plain\r\n\r\nSecure-Join: vc-request\r\n--sj--\r\n"
        )
        .as_bytes(),
    );
    m
}

/// Lines Postfix ends the header block at, while a lenient parser skips them.
pub fn bad_lines() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("space in name", b"X-Bad Name: v\r\n".to_vec()),
        ("no colon", b"no colon here\r\n".to_vec()),
        ("empty name", b": v\r\n".to_vec()),
        ("8-bit name", b"X-\xc3\xa9t\xc3\xa9: v\r\n".to_vec()),
        ("mbox From", b"From x Tue Dec  1 10:00:00 2026\r\n".to_vec()),
        ("boundary line", b"--boundary\r\n".to_vec()),
    ]
}

/// PGP/MIME whose Content-Type is longer than Postfix's header_size_limit (102400): what
/// Postfix keeps of it has no boundary.
pub fn long_content_type(head: &str) -> Vec<u8> {
    let mut ct = String::from(
        "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n x=\"",
    );
    while ct.len() < 110_000 {
        ct.push_str(&"a".repeat(70));
        ct.push_str("\r\n ");
    }
    ct.push_str("a\";\r\n boundary=\"LONG\"\r\n\r\n");
    let mut m = head.as_bytes().to_vec();
    m.extend_from_slice(ct.as_bytes());
    m.extend_from_slice(pgp_body("LONG", &format!("{ATTACK}\r\n")).as_bytes());
    m
}

/// Two boundary parameters: filtermail took the first (a valid PGP/MIME body), mailparse
/// (and so the client) takes the last, which frames a cleartext part.
pub fn two_boundaries(head: &str) -> Vec<u8> {
    let mut m = head.as_bytes().to_vec();
    m.extend_from_slice(
        b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
          boundary=\"REAL\"; boundary=\"OTHER\"\r\n\r\n",
    );
    m.extend_from_slice(other_part().as_bytes());
    m.extend_from_slice(pgp_body("REAL", "").as_bytes());
    m
}

/// An encoded word that decodes to `; boundary=OTHER` (mailparse decodes encoded words in
/// any header value before reading parameters).
pub fn encoded_word_boundary(head: &str) -> Vec<u8> {
    let mut m = head.as_bytes().to_vec();
    m.extend_from_slice(
        b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
          boundary=\"REAL\"; x= =?us-ascii?Q?1=3B_boundary=3DOTHER?=\r\n\r\n",
    );
    m.extend_from_slice(other_part().as_bytes());
    m.extend_from_slice(pgp_body("REAL", "").as_bytes());
    m
}

fn other_part() -> String {
    format!("--OTHER\r\nContent-Type: text/plain\r\n\r\n{ATTACK}\r\n--OTHER--\r\n")
}
