//! Every fixture message under `tests/fixtures/filtermail/` with its asserted verdict in
//! both directions. The messages are made by `generate.py` there (real GnuPG payloads and
//! hand-made hostile variants).

use std::path::{Path, PathBuf};

use chatmaild::filtermail::incoming::{self, ENFORCE_E2EE_FILE, Mailboxes};
use chatmaild::filtermail::outgoing;
use chatmaild::filtermail::smtp::Envelope;

const SENDER: &str = "alice123@chat.example.org";
const RCPT: &str = "bob456789@remote.example";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filtermail")
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `0` = accepted, otherwise the SMTP reply code.
fn code(r: Result<(), chatmaild::filtermail::reply::Reply>) -> u16 {
    r.map_or_else(|reply| reply.code, |()| 0)
}

fn envelope(mail_from: Option<&str>, rcpt: &str) -> Envelope {
    Envelope {
        mail_from: mail_from.map(str::to_owned),
        rcpt_to: vec![rcpt.to_owned()],
        data: Vec::new(),
    }
}

/// A mailbox tree where the recipient enforces end-to-end encryption.
fn enforcing_mailboxes() -> (tempfile::TempDir, Mailboxes) {
    let (dir, boxes) = opted_out_mailboxes();
    std::fs::write(dir.path().join(RCPT).join(ENFORCE_E2EE_FILE), b"").unwrap();
    (dir, boxes)
}

/// A mailbox tree where the recipient is an account without the marker.
fn opted_out_mailboxes() -> (tempfile::TempDir, Mailboxes) {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join(RCPT);
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("password"), b"{SHA512-CRYPT}x").unwrap();
    let boxes = Mailboxes {
        dir: dir.path().to_owned(),
        domain: "remote.example".into(),
    };
    (dir, boxes)
}

/// (file, outgoing verdict, incoming verdict for a recipient that enforces encryption)
const TABLE: &[(&str, u16, u16)] = &[
    // Real PGP/MIME messages.
    ("encrypted.eml", 0, 0),
    ("encrypted-symmetric.eml", 0, 0),
    ("encrypted-uppercase-types.eml", 0, 0),
    ("encrypted-base64-part.eml", 0, 0),
    ("encrypted-8bit-headers.eml", 0, 0),
    // Armor headers are only tolerated from other implementations.
    ("encrypted-version-header.eml", 523, 0),
    // Looks encrypted, is not.
    ("fake-encrypted.eml", 523, 523),
    ("fake-armor-cleartext.eml", 523, 523),
    ("fake-armor-base64-text.eml", 523, 523),
    ("literal.eml", 523, 523),
    ("signed-not-encrypted.eml", 523, 523),
    ("truncated-packet.eml", 523, 523),
    ("truncated-after-esk.eml", 523, 523),
    ("wrong-order.eml", 523, 523),
    ("esk-then-literal.eml", 523, 523),
    ("two-seipd.eml", 523, 523),
    ("trailing-garbage.eml", 523, 523),
    ("marker-packet-first.eml", 523, 523),
    // MIME structure games.
    ("three-parts.eml", 523, 523),
    ("wrong-control-version.eml", 523, 523),
    ("wrong-protocol-subtype.eml", 523, 523),
    ("nested-multipart.eml", 523, 523),
    ("encrypted-inside-mixed.eml", 523, 523),
    ("duplicate-content-type.eml", 523, 523),
    ("broken-boundary.eml", 523, 523),
    ("no-boundary.eml", 523, 523),
    ("headers-only.eml", 523, 523),
    // From header games (incoming accepts forged From with a blanked sender; DKIM decides).
    ("duplicate-from.eml", 500, 500),
    ("from-two-addresses.eml", 500, 500),
    ("from-missing.eml", 500, 500),
    ("from-forged.eml", 500, 0),
    ("from-display-name-trick.eml", 0, 0),
    ("from-injected-crlf.eml", 0, 0),
    // Boundaries that occur inside `-----BEGIN PGP MESSAGE-----` (mail-parser found them
    // there and refused these).
    ("encrypted-boundary-b.eml", 0, 0),
    ("encrypted-boundary-e.eml", 0, 0),
    ("encrypted-boundary-beg.eml", 0, 0),
    // A header line that Postfix's cleanup takes as the end of the header (it would store
    // a text/plain message), or that readers see differently.
    ("header-space-in-name.eml", 554, 554),
    ("header-no-colon.eml", 554, 554),
    ("header-empty-name.eml", 554, 554),
    ("header-8bit-name.eml", 554, 554),
    ("header-mbox-from.eml", 554, 554),
    ("header-boundary-line.eml", 554, 554),
    ("header-whitespace-line.eml", 554, 554),
    ("header-space-before-colon.eml", 554, 554),
    ("header-nul.eml", 554, 554),
    ("header-first-line-continuation.eml", 554, 554),
    ("header-content-type-too-long.eml", 554, 554),
    // Content-Type parameters that mailparse (Delta Chat) reads differently from others.
    ("ambiguous-two-boundaries.eml", 523, 523),
    ("ambiguous-encoded-word.eml", 523, 523),
    ("ambiguous-rfc2231.eml", 523, 523),
    // `"alice123"@chat.example.org` is alice123@chat.example.org.
    ("from-quoted-local-part.eml", 0, 0),
    // Cleartext.
    ("plain.eml", 523, 523),
    ("mdn.eml", 523, 523),
    ("securejoin-vc.eml", 0, 0),
    ("securejoin-vg.eml", 0, 0),
    ("securejoin-fake.eml", 523, 523),
    ("securejoin-two-parts.eml", 523, 523),
    ("securejoin-wrong-header.eml", 523, 523),
    ("asm.eml", 523, 523),
];

#[test]
fn every_fixture_has_its_verdict() {
    let (_dir, boxes) = enforcing_mailboxes();
    let mut wrong = Vec::new();
    for &(name, want_out, want_in) in TABLE {
        let msg = load(name);
        let out = code(outgoing::check(&envelope(Some(SENDER), RCPT), &msg));
        let inc = code(incoming::check(&envelope(Some(SENDER), RCPT), &msg, &boxes).map(|_| ()));
        if (out, inc) != (want_out, want_in) {
            wrong.push(format!(
                "{name}: got out={out} in={inc}, want out={want_out} in={want_in}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let special = name.starts_with("mailer-daemon");
        if name.ends_with(".eml") && !special && !TABLE.iter().any(|(n, _, _)| *n == name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "no verdict for {missing:?}");
}

#[test]
fn fixtures_use_crlf() {
    for &(name, _, _) in TABLE {
        let msg = load(name);
        assert!(chatmaild::filtermail::data::is_valid(&msg), "{name}");
    }
}

#[test]
fn cleartext_passes_when_no_recipient_enforces() {
    let (_dir, boxes) = opted_out_mailboxes();
    let msg = load("plain.eml");
    let env = envelope(Some(SENDER), RCPT);
    assert!(incoming::check(&env, &msg, &boxes).is_ok());
    // One enforcing recipient among several is enough to refuse.
    let (_d, enforcing) = enforcing_mailboxes();
    let mut env2 = env.clone();
    env2.rcpt_to.insert(0, "other@remote.example".into());
    assert_eq!(
        incoming::check(&env2, &msg, &enforcing)
            .unwrap_err()
            .to_string(),
        "523 Encryption Needed: Invalid Unencrypted Mail"
    );
    // The MDN stays refused for enforcing recipients but passes for opted-out ones.
    assert!(incoming::check(&env, &load("mdn.eml"), &boxes).is_ok());
}

#[test]
fn mailer_daemon_reports_reach_enforcing_users() {
    let (_dir, boxes) = enforcing_mailboxes();
    let bounce = envelope(None, RCPT);
    let accepted = incoming::check(&bounce, &load("mailer-daemon.eml"), &boxes).unwrap();
    assert_eq!(accepted.from, "mailer-daemon@remote.example");
    assert!(!accepted.blank_sender);
    for name in [
        "mailer-daemon-not-report.eml",
        "mailer-daemon-no-auto-submitted.eml",
    ] {
        assert_eq!(
            code(incoming::check(&bounce, &load(name), &boxes).map(|_| ())),
            523,
            "{name}"
        );
    }
    // Users cannot send bounces themselves.
    let out = outgoing::check(&envelope(Some(SENDER), RCPT), &load("mailer-daemon.eml"));
    assert_eq!(
        out.unwrap_err().to_string(),
        "500 Invalid FROM <mailer-daemon@remote.example> for <alice123@chat.example.org>"
    );
}

#[test]
fn autocrypt_setup_message_only_to_oneself() {
    let msg = load("asm.eml");
    assert!(outgoing::check(&envelope(Some(SENDER), SENDER), &msg).is_ok());
    assert_eq!(
        code(outgoing::check(&envelope(Some(SENDER), RCPT), &msg)),
        523
    );
    // Another spelling of one's own mailbox is still oneself.
    for to_self in [
        "alice123+x@chat.example.org",
        "\"alice123\"@chat.example.org.",
    ] {
        assert!(
            outgoing::check(&envelope(Some(SENDER), to_self), &msg).is_ok(),
            "{to_self}"
        );
    }
    assert_eq!(
        code(outgoing::check(
            &envelope(Some(SENDER), "alice1234@chat.example.org"),
            &msg
        )),
        523
    );
    let mut two = envelope(Some(SENDER), SENDER);
    two.rcpt_to.push(RCPT.into());
    assert_eq!(code(outgoing::check(&two, &msg)), 523);
}

#[test]
fn forged_from_replies() {
    let msg = load("from-forged.eml");
    assert_eq!(
        outgoing::check(&envelope(Some(SENDER), RCPT), &msg)
            .unwrap_err()
            .to_string(),
        "500 Invalid FROM <ceo@bank.example> for <alice123@chat.example.org>"
    );
    let (_dir, boxes) = enforcing_mailboxes();
    let accepted = incoming::check(&envelope(Some(SENDER), RCPT), &msg, &boxes).unwrap();
    assert!(
        accepted.blank_sender,
        "bounces must not go to a forged sender"
    );
    let missing = outgoing::check(&envelope(Some(SENDER), RCPT), &load("from-missing.eml"));
    assert_eq!(
        missing.unwrap_err().to_string(),
        "500 Invalid FROM header: "
    );
}

#[test]
fn envelope_sender_case_does_not_matter() {
    let msg = load("encrypted.eml");
    let env = envelope(Some("Alice123@Chat.Example.org"), RCPT);
    assert!(outgoing::check(&env, &msg).is_ok());
}

/// Each hostile message fails for the reason it was built for, not by accident.
#[test]
fn hostile_messages_fail_for_their_reason() {
    use chatmaild::filtermail::Direction::Outgoing;
    use chatmaild::filtermail::mime::{Ambiguity, Mail, NotPgpMime as N};
    use chatmaild::filtermail::openpgp::NotEncrypted as P;

    let reason = |name: &str| {
        let raw = load(name);
        Mail::parse(&raw).check_encrypted(Outgoing).unwrap_err()
    };
    assert_eq!(reason("fake-encrypted.eml"), N::NotMultipartEncrypted);
    assert_eq!(
        reason("wrong-protocol-subtype.eml"),
        N::NotMultipartEncrypted
    );
    assert!(matches!(
        reason("broken-boundary.eml"),
        N::NotMultipartEncrypted | N::PartCount(0)
    ));
    assert_eq!(reason("three-parts.eml"), N::PartCount(3));
    assert_eq!(reason("nested-multipart.eml"), N::NestedMultipart);
    assert_eq!(reason("wrong-control-version.eml"), N::FirstPartBody);
    assert_eq!(
        reason("duplicate-content-type.eml"),
        N::Ambiguous(Ambiguity::DuplicateField {
            part: 0,
            name: "Content-Type"
        })
    );
    assert_eq!(
        reason("encrypted-version-header.eml"),
        N::Payload(P::ArmorHeader)
    );
    assert_eq!(reason("fake-armor-cleartext.eml"), N::Payload(P::Base64));
    assert_eq!(
        reason("literal.eml"),
        N::Payload(P::LastNotSeipd { tag: 11 })
    );
    assert_eq!(
        reason("signed-not-encrypted.eml"),
        N::Payload(P::LastNotSeipd { tag: 8 })
    );
    assert_eq!(
        reason("truncated-after-esk.eml"),
        N::Payload(P::LastNotSeipd { tag: 1 })
    );
    assert!(matches!(
        reason("truncated-packet.eml"),
        N::Payload(P::Truncated { .. })
    ));
    assert!(matches!(
        reason("wrong-order.eml"),
        N::Payload(P::UnexpectedPacket { tag: 18, .. })
    ));
    assert!(matches!(
        reason("esk-then-literal.eml"),
        N::Payload(P::LastNotSeipd { tag: 11 })
    ));
    assert!(matches!(
        reason("two-seipd.eml"),
        N::Payload(P::UnexpectedPacket { tag: 18, .. })
    ));
    assert!(matches!(
        reason("marker-packet-first.eml"),
        N::Payload(P::UnexpectedPacket { tag: 10, .. })
    ));
    assert!(matches!(
        reason("trailing-garbage.eml"),
        N::Payload(P::UnexpectedPacket { tag: 18, .. } | P::OldOrInvalidHeader { .. })
    ));
    assert!(matches!(
        reason("fake-armor-base64-text.eml"),
        N::Payload(
            P::OldOrInvalidHeader { .. } | P::UnexpectedPacket { .. } | P::LastNotSeipd { .. }
        )
    ));
}

/// Messages written by Delta Chat itself (see `deltachat/README.md`): OpenPGP v6
/// (PKESK v6 / SKESK v6 + SEIPD v2) must pass both directions.
#[test]
fn real_deltachat_messages_pass() {
    use chatmaild::filtermail::Direction;
    use chatmaild::filtermail::mime::Mail;

    let (_dir, boxes) = enforcing_mailboxes();
    let dir = fixture_dir().join("deltachat");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 7);
    for name in names {
        let msg = std::fs::read(dir.join(&name)).unwrap();
        let mail = Mail::parse(&msg);
        assert_eq!(mail.check_encrypted(Direction::Outgoing), Ok(()), "{name}");
        let from = mail.from_address().unwrap();
        let env = envelope(Some(&from), RCPT);
        assert_eq!(outgoing::check(&env, &msg), Ok(()), "{name}");
        assert!(incoming::check(&env, &msg, &boxes).is_ok(), "{name}");
        // The same message with bytes appended to its payload is refused.
        let text = String::from_utf8(msg.clone()).unwrap();
        let cut = text.replacen(
            "\r\n-----END PGP MESSAGE-----",
            "AAAA\r\n-----END PGP MESSAGE-----",
            1,
        );
        assert_eq!(
            code(outgoing::check(&env, cut.as_bytes())),
            523,
            "{name} extended"
        );
    }
}

/// The replies name the reason: the header line and what is wrong with it, or what makes
/// the MIME ambiguous.
#[test]
fn header_and_ambiguity_replies() {
    let (_dir, boxes) = enforcing_mailboxes();
    let env = envelope(Some(SENDER), RCPT);
    let replies = |name: &str| {
        let msg = load(name);
        let out = outgoing::check(&env, &msg).unwrap_err().to_string();
        let inc = incoming::check(&env, &msg, &boxes).unwrap_err().to_string();
        assert_eq!(out, inc, "{name}: both directions give the same reply");
        out
    };
    assert_eq!(
        replies("header-space-in-name.eml"),
        "554 5.6.0 Invalid message header: header line 7 is not a header field \
         (space in the field name)"
    );
    assert_eq!(
        replies("header-no-colon.eml"),
        "554 5.6.0 Invalid message header: header line 7 is not a header field (no colon)"
    );
    assert_eq!(
        replies("header-first-line-continuation.eml"),
        "554 5.6.0 Invalid message header: header line 1 is a continuation line"
    );
    assert_eq!(
        replies("header-whitespace-line.eml"),
        "554 5.6.0 Invalid message header: header line 7 is whitespace only"
    );
    assert_eq!(
        replies("header-nul.eml"),
        "554 5.6.0 Invalid message header: header line 7 contains a NUL byte"
    );
    assert_eq!(
        replies("header-content-type-too-long.eml"),
        "554 5.6.0 Invalid message header: header field at line 7 is longer than 32768 bytes"
    );
    assert_eq!(
        replies("ambiguous-two-boundaries.eml"),
        "523 Encryption Needed: Invalid Unencrypted Mail \
         (ambiguous MIME: two boundary parameters in part 0)"
    );
    assert_eq!(
        replies("ambiguous-encoded-word.eml"),
        "523 Encryption Needed: Invalid Unencrypted Mail \
         (ambiguous MIME: encoded word in Content-Type of part 0)"
    );
    assert_eq!(
        replies("ambiguous-rfc2231.eml"),
        "523 Encryption Needed: Invalid Unencrypted Mail \
         (ambiguous MIME: RFC 2231 parameter boundary*0 in part 0)"
    );
}

/// The header refusal does not depend on the recipients: a message Postfix would store
/// differently is refused even for recipients who accept cleartext.
#[test]
fn header_refusal_for_every_recipient() {
    let (_dir, open) = opted_out_mailboxes();
    let env = envelope(Some(SENDER), RCPT);
    let msg = load("header-space-in-name.eml");
    assert_eq!(code(incoming::check(&env, &msg, &open).map(|_| ())), 554);
    // Ambiguous MIME only loses the encrypted verdict: cleartext recipients still get it.
    let msg = load("ambiguous-two-boundaries.eml");
    assert!(incoming::check(&env, &msg, &open).is_ok());
}

/// A quoted local part that needs no quotes is the unquoted address, in `From:` and in
/// the envelope.
#[test]
fn quoted_local_part_is_the_plain_address() {
    let (_dir, boxes) = enforcing_mailboxes();
    let msg = load("from-quoted-local-part.eml");
    let env = envelope(Some(SENDER), RCPT);
    let accepted = incoming::check(&env, &msg, &boxes).unwrap();
    assert_eq!(accepted.from, SENDER);
    assert!(!accepted.blank_sender);
    let quoted = envelope(Some("\"alice123\"@chat.example.org"), RCPT);
    assert_eq!(outgoing::check(&quoted, &load("encrypted.eml")), Ok(()));
    assert_eq!(outgoing::check(&quoted, &msg), Ok(()));
}
