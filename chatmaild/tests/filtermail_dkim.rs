//! Incoming DKIM verification with real signatures (Ed25519, signed by mail-auth) and key
//! records pre-loaded into the verifier's cache. The resolver points at loopback, so a
//! missing key is looked up there and nowhere else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chatmaild::filtermail::dkim::DkimVerifier;
use chatmaild::filtermail::incoming::{Incoming, Mailboxes};
use chatmaild::filtermail::smtp::Envelope;
use chatmaild::filtermail::smtp::client::Relay;
use mail_auth::Txt;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimSigner;

const SENDER: &str = "alice123@chat.example.org";
const RCPT: &str = "bob456789@remote.example";

struct Signer {
    domain: &'static str,
    selector: &'static str,
    pkcs8: Vec<u8>,
}

impl Signer {
    fn new(domain: &'static str, selector: &'static str) -> Signer {
        Signer {
            domain,
            selector,
            pkcs8: Ed25519Key::generate_pkcs8().unwrap(),
        }
    }

    fn key(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap()
    }

    /// The DNS TXT record publishing this key.
    fn record(&self) -> Txt {
        use base64::Engine;
        let p = base64::engine::general_purpose::STANDARD.encode(self.key().public_key());
        let txt = format!("v=DKIM1; k=ed25519; p={p}");
        Txt::DomainKey(Arc::new(DomainKey::parse(txt.as_bytes()).unwrap()))
    }

    fn publish(&self, verifier: &DkimVerifier) {
        let name = format!("{}._domainkey.{}", self.selector, self.domain);
        verifier.add_key_record(&name, self.record());
    }

    /// The message with a DKIM-Signature header prepended.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig = DkimSigner::from_key(self.key())
            .domain(self.domain)
            .selector(self.selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(message)
            .unwrap();
        let mut out = sig.to_header().into_bytes();
        out.extend_from_slice(message);
        out
    }
}

fn verifier() -> DkimVerifier {
    // Port 53 on loopback: nothing answers there in the test environment.
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
    DkimVerifier::with_name_server(server, Duration::from_millis(300)).unwrap()
}

fn encrypted() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/filtermail/encrypted.eml");
    std::fs::read(path).unwrap()
}

const DOMAIN: &str = "chat.example.org";

#[tokio::test]
async fn aligned_valid_signature_passes() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    signer.publish(&v);
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
    other.publish(&v);
    let signed = other.sign(&encrypted());
    // Valid for other.example, but the From domain is chat.example.org.
    assert_eq!(v.verify(&signed, "other.example").await, Ok(()));
    assert_eq!(
        v.verify(&signed, DOMAIN).await.unwrap_err().to_string(),
        "554 5.7.1 No valid DKIM signature found"
    );
    // A parent domain is not aligned either (strict alignment).
    let parent = Signer::new("example.org", "sel");
    parent.publish(&v);
    assert!(v.verify(&parent.sign(&encrypted()), DOMAIN).await.is_err());
}

#[tokio::test]
async fn tampering_breaks_the_signature() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    signer.publish(&v);
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
    good.publish(&v);
    let foreign = Signer::new("list.example", "sel");
    foreign.publish(&v);
    let twice = foreign.sign(&good.sign(&encrypted()));
    assert_eq!(v.verify(&twice, DOMAIN).await, Ok(()));
}

#[tokio::test]
async fn incoming_filter_runs_dkim_after_the_encryption_rules() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    signer.publish(&v);
    let dir = tempfile::tempdir().unwrap();
    let incoming = Incoming::new(
        Mailboxes {
            dir: dir.path().to_owned(),
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
