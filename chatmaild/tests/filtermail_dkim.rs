//! Incoming DKIM verification with real signatures (Ed25519, signed by mail-auth) and key
//! records pre-loaded into the verifier's cache. The resolver points at loopback, so a
//! missing key is looked up there and nowhere else.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chatmaild::filtermail::dkim::DkimVerifier;
use chatmaild::filtermail::incoming::{Incoming, Mailboxes};
use chatmaild::filtermail::smtp::Envelope;
use chatmaild::filtermail::smtp::client::Relay;
use mail_auth::Txt;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use support::Signer;

const SENDER: &str = "alice123@chat.example.org";
const RCPT: &str = "bob456789@remote.example";

fn publish(signer: &Signer, verifier: &DkimVerifier) {
    let record = DomainKey::parse(signer.record_text().as_bytes()).unwrap();
    verifier.add_key_record(&signer.record_name(), Txt::DomainKey(Arc::new(record)));
}

fn verifier() -> DkimVerifier {
    // Port 53 on loopback: nothing answers there in the test environment.
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
    DkimVerifier::with_name_server(server, Duration::from_millis(300)).unwrap()
}

fn encrypted() -> Vec<u8> {
    support::fixture("encrypted.eml")
}

const DOMAIN: &str = "chat.example.org";

#[tokio::test]
async fn aligned_valid_signature_passes() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    publish(&signer, &v);
    assert_eq!(v.verify(&signer.sign(&encrypted()), DOMAIN).await, Ok(()));
    // d= comparison ignores case.
    assert_eq!(
        v.verify(&signer.sign(&encrypted()), "Chat.Example.ORG")
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn missing_signature() {
    let v = verifier();
    assert_eq!(
        v.verify(&encrypted(), DOMAIN)
            .await
            .unwrap_err()
            .to_string(),
        "554 5.7.1 No DKIM signature found"
    );
}

#[tokio::test]
async fn signature_of_another_domain_is_not_enough() {
    let v = verifier();
    let other = Signer::new("other.example", "sel");
    publish(&other, &v);
    let signed = other.sign(&encrypted());
    // Valid for other.example, but the From domain is chat.example.org.
    assert_eq!(v.verify(&signed, "other.example").await, Ok(()));
    assert_eq!(
        v.verify(&signed, DOMAIN).await.unwrap_err().to_string(),
        "554 5.7.1 No valid DKIM signature found"
    );
    // A parent domain is not aligned either (strict alignment).
    let parent = Signer::new("example.org", "sel");
    publish(&parent, &v);
    assert!(v.verify(&parent.sign(&encrypted()), DOMAIN).await.is_err());
}

#[tokio::test]
async fn tampering_breaks_the_signature() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    publish(&signer, &v);
    let signed = signer.sign(&encrypted());
    let text = String::from_utf8(signed).unwrap();
    let body_changed = text.replacen("encrypted message", "encrypted massage", 1);
    let from_changed = text.replacen(
        "From: <alice123@chat.example.org>",
        "From: <mallory99@chat.example.org>",
        1,
    );
    for (what, msg) in [("body", body_changed), ("from", from_changed)] {
        assert_eq!(
            v.verify(msg.as_bytes(), DOMAIN)
                .await
                .unwrap_err()
                .to_string(),
            "554 5.7.1 No valid DKIM signature found",
            "{what}"
        );
    }
}

#[tokio::test]
async fn key_not_published() {
    // The key lookup goes to the loopback resolver, which does not answer.
    let v = verifier();
    let signer = Signer::new(DOMAIN, "unpublished");
    assert_eq!(
        v.verify(&signer.sign(&encrypted()), DOMAIN)
            .await
            .unwrap_err()
            .to_string(),
        "554 5.7.1 No valid DKIM signature found"
    );
}

#[tokio::test]
async fn one_good_signature_among_bad_ones_suffices() {
    let v = verifier();
    let good = Signer::new(DOMAIN, "good");
    publish(&good, &v);
    let foreign = Signer::new("list.example", "sel");
    publish(&foreign, &v);
    let twice = foreign.sign(&good.sign(&encrypted()));
    assert_eq!(v.verify(&twice, DOMAIN).await, Ok(()));
}

#[tokio::test]
async fn incoming_filter_runs_dkim_after_the_encryption_rules() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    publish(&signer, &v);
    let dir = tempfile::tempdir().unwrap();
    let incoming = Incoming::new(
        Mailboxes {
            dir: dir.path().to_owned(),
            domain: "remote.example".into(),
        },
        Some(v),
        Relay::new("127.0.0.1", 9),
    );
    let env = Envelope {
        mail_from: Some(SENDER.into()),
        rcpt_to: vec![RCPT.into()],
        data: Vec::new(),
    };
    let msg = encrypted();
    assert_eq!(
        incoming.filter(&env, &msg).await.unwrap_err().to_string(),
        "554 5.7.1 No DKIM signature found"
    );
    assert!(incoming.filter(&env, &signer.sign(&msg)).await.is_ok());

    // IP-only relays do not sign; their mail is not DKIM-checked.
    let ip_msg = String::from_utf8(msg)
        .unwrap()
        .replace("alice123@chat.example.org", "alice123@[203.0.113.7]");
    let ip_env = Envelope {
        mail_from: Some("alice123@[203.0.113.7]".into()),
        ..env.clone()
    };
    assert!(incoming.filter(&ip_env, ip_msg.as_bytes()).await.is_ok());
}
