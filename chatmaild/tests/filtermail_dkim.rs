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
async fn signature_must_cover_from() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    publish(&signer, &v);
    // h= names are case-insensitive.
    let signed = signer.sign_with(&encrypted(), &["from", "To"], false);
    assert_eq!(v.verify(&signed, DOMAIN).await, Ok(()));
    // Valid, aligned, but says nothing about who the message is from (RFC 6376 §5.4).
    // (Checked last: a failure drops the pre-loaded key from the cache.)
    let signed = signer.sign_with(&encrypted(), &["To", "Subject", "Date"], false);
    assert_eq!(
        v.verify(&signed, DOMAIN).await.unwrap_err().to_string(),
        "554 5.7.1 No valid DKIM signature found"
    );
}

#[tokio::test]
async fn length_limited_signature_counts_only_for_the_whole_body() {
    let v = verifier();
    let signer = Signer::new(DOMAIN, "sel1");
    publish(&signer, &v);
    let signed = signer.sign_with(&encrypted(), &["From", "To", "Subject"], true);
    let text = String::from_utf8(signed.clone()).unwrap();
    assert!(text.contains("l="), "{text}");
    assert_eq!(v.verify(&signed, DOMAIN).await, Ok(()));
    // Whitespace that relaxed canonicalization removes: l= is the raw length here
    // (mail-auth's signer), longer than the canonical body, still the whole body.
    let mut spaced = encrypted();
    spaced.extend_from_slice(b"  \r\n\r\n\r\n");
    let signed_spaced = signer.sign_with(&spaced, &["From"], true);
    assert_eq!(v.verify(&signed_spaced, DOMAIN).await, Ok(()));
    // Anyone could append to a length-limited body: appended text voids it.
    let mut appended = signed;
    appended.extend_from_slice(b"Appended by someone else.\r\n");
    assert_eq!(
        v.verify(&appended, DOMAIN).await.unwrap_err().to_string(),
        "554 5.7.1 No valid DKIM signature found"
    );
}

/// An incoming filter whose accepted mail goes nowhere: `451 Error re-injecting ...`
/// means every check passed.
fn incoming_with(v: DkimVerifier, dir: &tempfile::TempDir) -> Incoming {
    Incoming::new(
        Mailboxes {
            dir: dir.path().to_owned(),
            domain: "remote.example".into(),
        },
        Some(v),
        Relay::new("127.0.0.1", 9),
    )
}

fn from_ip_literal(literal: &str) -> Vec<u8> {
    String::from_utf8(encrypted())
        .unwrap()
        .replace("alice123@chat.example.org", &format!("alice123@{literal}"))
        .into_bytes()
}

#[tokio::test]
async fn ip_literal_from_needs_dkim_unless_it_is_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = incoming_with(verifier(), &dir);
    let env = Envelope {
        mail_from: Some("alice123@[203.0.113.7]".into()),
        rcpt_to: vec![RCPT.into()],
        data: Vec::new(),
    };
    let msg = from_ip_literal("[203.0.113.7]");
    let peer = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    assert!(
        incoming
            .filter_from(&env, &msg, peer("203.0.113.7"))
            .await
            .is_ok()
    );
    for client in [None, peer("203.0.113.8"), peer("2001:db8::7")] {
        assert_eq!(
            incoming
                .filter_from(&env, &msg, client)
                .await
                .unwrap_err()
                .to_string(),
            "554 5.7.1 No DKIM signature found",
            "{client:?}"
        );
    }
    for bogus in ["[999.0.113.7]", "[foo]", "[203.0.113]"] {
        let msg = from_ip_literal(bogus);
        assert!(
            incoming
                .filter_from(&env, &msg, peer("203.0.113.7"))
                .await
                .is_err(),
            "{bogus}"
        );
    }
}

/// A pipelining SMTP client: send bytes, then read replies (multi-line ones joined by `|`).
struct Smtp {
    rd: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    async fn connect(port: u16) -> Smtp {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (rd, wr) = stream.into_split();
        Smtp {
            rd: tokio::io::BufReader::new(rd),
            wr,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.wr.write_all(bytes).await.unwrap();
    }

    async fn reply(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).await.unwrap();
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l.trim_end().to_owned());
            if last {
                return lines.join("|");
            }
        }
    }

    async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.reply().await);
        }
        out
    }
}

#[tokio::test]
async fn xforward_addr_from_postfix_decides_over_smtp() {
    use chatmaild::filtermail::smtp::server::{Limits, serve};

    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler = Arc::new(incoming_with(verifier(), &dir));
    tokio::spawn(serve(listener, handler, Limits::new(100_000)));

    let mut c = Smtp::connect(port).await;
    assert_eq!(c.reply().await, "220 filtermail SMTP");
    c.send(b"EHLO postfix\r\n").await;
    assert_eq!(
        c.reply().await,
        "250-filtermail|250-8BITMIME|250-XFORWARD ADDR|250 OK"
    );
    let msg = chatmaild::filtermail::data::stuff(&from_ip_literal("[203.0.113.7]"));
    let transaction = |xforward: &str| {
        let mut bytes =
            format!("{xforward}MAIL FROM:<alice123@[203.0.113.7]>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n")
                .into_bytes();
        bytes.extend_from_slice(&msg);
        bytes.extend_from_slice(b".\r\n");
        bytes
    };
    let ok = ["250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>"];

    // Postfix's client is the IP literal's own address: no DKIM needed, the checks pass
    // (and re-injection to the closed port 9 fails, which proves it got that far).
    c.send(&transaction(
        "XFORWARD NAME=[UNAVAILABLE] ADDR=203.0.113.7\r\n",
    ))
    .await;
    let got = c.replies(5).await;
    assert_eq!(got[..4], ["250 OK", ok[0], ok[1], ok[2]]);
    assert!(got[4].starts_with("451 Error re-injecting mail"), "{got:?}");

    // Another client address, or none (it does not carry over from the previous
    // transaction): the literal needs a signature it cannot have.
    c.send(&transaction("XFORWARD ADDR=203.0.113.8\r\n")).await;
    assert_eq!(
        c.replies(5).await,
        [
            "250 OK",
            ok[0],
            ok[1],
            ok[2],
            "554 5.7.1 No DKIM signature found"
        ]
    );
    c.send(&transaction("")).await;
    assert_eq!(
        c.replies(4).await,
        [ok[0], ok[1], ok[2], "554 5.7.1 No DKIM signature found"]
    );

    // XFORWARD belongs before MAIL.
    c.send(b"MAIL FROM:<>\r\nXFORWARD ADDR=203.0.113.7\r\nXFORWARD\r\nRSET\r\nXFORWARD x\r\n")
        .await;
    assert_eq!(
        c.replies(5).await,
        [
            "250 OK",
            "503 5.5.1 Error: MAIL transaction in progress",
            "503 5.5.1 Error: MAIL transaction in progress",
            "250 OK",
            "501 5.5.4 Syntax: XFORWARD attribute=value..."
        ]
    );
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

    // IP-only relays do not sign; their mail skips DKIM only when it comes from that
    // very address, which `filter` (peer unknown) cannot know.
    let ip_env = Envelope {
        mail_from: Some("alice123@[203.0.113.7]".into()),
        ..env.clone()
    };
    let ip_msg = from_ip_literal("[203.0.113.7]");
    assert!(incoming.filter(&ip_env, &ip_msg).await.is_err());
    let peer = "203.0.113.7".parse().ok();
    assert!(incoming.filter_from(&ip_env, &ip_msg, peer).await.is_ok());
}

#[tokio::test]
async fn mxdeliv_takes_the_peer_from_nginx_real_ip_header() {
    use chatmaild::filtermail::http::{REAL_IP, mxdeliv};
    use chatmaild::filtermail::smtp::server::Limits;
    use http_body_util::Full;
    use hyper::body::Bytes;

    let dir = tempfile::tempdir().unwrap();
    let incoming = incoming_with(verifier(), &dir);
    let post = async |real_ip: &[&str]| {
        let mut req = hyper::Request::builder()
            .method("POST")
            .uri("/mxdeliv")
            .header("X-MAIL-FROM", "alice123@[203.0.113.7]")
            .header("X-MAIL-TO", RCPT);
        for ip in real_ip {
            req = req.header(REAL_IP, *ip);
        }
        let req = req
            .body(Full::new(Bytes::from(from_ip_literal("[203.0.113.7]"))))
            .unwrap();
        let (status, text) = mxdeliv(&incoming, req, &Limits::new(100_000)).await;
        (status.as_u16(), text)
    };
    // nginx saw the literal's own address: the checks pass (re-injection to the closed
    // port 9 then fails temporarily).
    let (status, text) = post(&["203.0.113.7"]).await;
    assert_eq!(status, 400);
    assert!(text.starts_with("451 Error re-injecting mail"), "{text}");
    let refused = (400, "554 5.7.1 No DKIM signature found".to_owned());
    for real_ip in [&[][..], &["203.0.113.8"], &["203.0.113.7", "203.0.113.7"]] {
        assert_eq!(post(real_ip).await, refused, "{real_ip:?}");
    }
}
