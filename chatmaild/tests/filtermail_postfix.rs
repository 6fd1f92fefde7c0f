//! filtermail between two real Postfix smtpds, wired like a relay: a before-queue
//! `smtpd_proxy_filter` on the submission side, re-injection into a second smtpd, queue,
//! then Postfix's smtp client delivers to a recording sink. Everything on loopback.
//!
//! Runs only with `CHATMAIL_POSTFIX_TESTS=1`, as root, with Debian's `postfix` package
//! installed (no running system instance needed; the test starts its own with a private
//! config and queue directory and stops it again).

mod support;

use std::path::Path;
use std::time::Duration;

use support::{
    Filtermail, PrivatePostfix, Signer, fixture, free_port, postfix_dir, start_sink,
    start_txt_server, submit, submit_with,
};

fn enabled() -> bool {
    std::env::var("CHATMAIL_POSTFIX_TESTS").is_ok_and(|v| v == "1")
}

/// The relay's wiring: `submit_port` hands every transaction to filtermail on
/// `filter_port` (before-queue proxy), which re-injects into `reinject_port`.
struct Postfix(#[allow(dead_code)] PrivatePostfix);

impl Postfix {
    fn start(
        dir: &Path,
        submit_port: u16,
        filter_port: u16,
        reinject_port: u16,
        sink_port: u16,
    ) -> Postfix {
        let services = format!(
            "127.0.0.1:{submit_port} inet n - n - - smtpd\n  -o smtpd_proxy_filter=127.0.0.1:{filter_port}\n\
             127.0.0.1:{reinject_port} inet n - n - 10 smtpd\n  -o syslog_name=postfix/reinject\n"
        );
        Postfix(PrivatePostfix::start(
            dir,
            sink_port,
            "smtpd_authorized_xforward_hosts = 127.0.0.0/8\n",
            &services,
            &[submit_port, reinject_port],
        ))
    }
}

/// filtermail in `mode` listening on `filter_port` (both SMTP modes' keys) and re-injecting
/// to `reinject_port`; `extra` is appended to the ini's `[params]`.
fn start_filtermail(
    dir: &Path,
    mode: &str,
    filter_port: u16,
    reinject_port: u16,
    extra: &str,
    env: &[(&str, &str)],
) -> Filtermail {
    let ini = dir.join(format!("{mode}.ini"));
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = relay.test\nmailboxes_dir = {}\n\
             filtermail_smtp_port = {filter_port}\nfiltermail_smtp_port_incoming = {filter_port}\n\
             filtermail_http_port_incoming = {}\n\
             postfix_reinject_port = {reinject_port}\npostfix_reinject_port_incoming = {reinject_port}\n{extra}",
            mail.display(),
            free_port()
        ),
    )
    .unwrap();
    Filtermail::start(&ini, mode, env)
}

const SKIP_DKIM: &[(&str, &str)] = &[("FILTERMAIL_SKIP_DKIM", "1")];

#[test]
fn postfix_proxy_filter_outgoing() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let (submit_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    let _filter = start_filtermail(
        dir.path(),
        "outgoing",
        filter_port,
        reinject_port,
        "",
        SKIP_DKIM,
    );
    let _postfix = Postfix::start(
        dir.path(),
        submit_port,
        filter_port,
        reinject_port,
        sink_port,
    );

    let sender = "alice123@chat.example.org";
    let rcpt = "bob456789@remote.example";
    let accepted = submit(submit_port, sender, rcpt, &fixture("encrypted.eml"));
    assert!(accepted.starts_with("250"), "{accepted}");
    let (from, data) = delivered
        .recv_timeout(Duration::from_secs(60))
        .expect("Postfix delivered the filtered message to the sink");
    assert_eq!(from, format!("MAIL FROM:<{sender}>"));
    // Postfix adds its Received: header; the message itself arrives intact.
    let body = fixture("encrypted.eml");
    assert!(data.ends_with(&body[body.len() - 200..]));

    let refused = submit(submit_port, sender, rcpt, &fixture("fake-encrypted.eml"));
    assert!(refused.starts_with("523"), "{refused}");
    let forged = submit(submit_port, sender, rcpt, &fixture("from-forged.eml"));
    assert!(forged.starts_with("500"), "{forged}");
    assert!(delivered.recv_timeout(Duration::from_secs(3)).is_err());
}

#[test]
fn postfix_proxy_filter_incoming() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let (smtp_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    let _filter = start_filtermail(
        dir.path(),
        "incoming",
        filter_port,
        reinject_port,
        "",
        SKIP_DKIM,
    );
    let _postfix = Postfix::start(dir.path(), smtp_port, filter_port, reinject_port, sink_port);
    let rcpt = "bob456789@remote.example";
    let user = dir.path().join("mail").join(rcpt);
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("enforceE2EEincoming"), b"").unwrap();

    // Forwarded mail (envelope sender differs from From) is accepted with a null sender.
    let srs = "srs0=hh=tt=chat.example.org=alice123@forwarder.example";
    let accepted = submit(smtp_port, srs, rcpt, &fixture("encrypted.eml"));
    assert!(accepted.starts_with("250"), "{accepted}");
    let (from, _) = delivered
        .recv_timeout(Duration::from_secs(60))
        .expect("delivered");
    assert_eq!(from, "MAIL FROM:<>");

    let refused = submit(
        smtp_port,
        "alice123@chat.example.org",
        rcpt,
        &fixture("plain.eml"),
    );
    assert!(refused.starts_with("523"), "{refused}");
    assert!(delivered.recv_timeout(Duration::from_secs(3)).is_err());
}

#[test]
fn postfix_rate_limit_answers_450_after_the_burst() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let (submit_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    // One message a minute refills the bucket: nothing refills during the test.
    let limits = "max_user_send_per_minute = 1\nmax_user_send_burst_size = 3\n";
    let _filter = start_filtermail(
        dir.path(),
        "outgoing",
        filter_port,
        reinject_port,
        limits,
        &[],
    );
    let _postfix = Postfix::start(
        dir.path(),
        submit_port,
        filter_port,
        reinject_port,
        sink_port,
    );

    let sender = "alice123@chat.example.org";
    let rcpt = "bob456789@remote.example";
    let message = fixture("encrypted.eml");
    for n in 1..=3 {
        let reply = submit(submit_port, sender, rcpt, &message);
        assert!(
            reply.starts_with("250"),
            "message {n} of the burst: {reply}"
        );
    }
    let throttled = submit(submit_port, sender, rcpt, &message);
    let expected = format!("450 4.7.1: Too much mail from <{sender}>, ");
    assert!(throttled.starts_with(&expected), "{throttled}");
    // The limit is per sender.
    let other = "carol789@chat.example.org";
    let from_other = String::from_utf8(message.clone())
        .unwrap()
        .replace(sender, other);
    let reply = submit(submit_port, other, rcpt, from_other.as_bytes());
    assert!(reply.starts_with("250"), "{reply}");
    for _ in 0..4 {
        delivered
            .recv_timeout(Duration::from_secs(60))
            .expect("accepted messages reach the sink");
    }
    assert!(delivered.recv_timeout(Duration::from_secs(3)).is_err());
}

#[test]
fn postfix_incoming_requires_an_aligned_dkim_signature() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let domain = "chat.example.org";
    let published = Signer::new(domain, "sel1");
    let dns = start_txt_server(&[(&published.record_name(), &published.record_text())]);
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let (smtp_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    let dns = dns.to_string();
    let _filter = start_filtermail(
        dir.path(),
        "incoming",
        filter_port,
        reinject_port,
        "",
        &[(chatmaild::filtermail::DNS_SERVER_ENV, &dns)],
    );
    let _postfix = Postfix::start(dir.path(), smtp_port, filter_port, reinject_port, sink_port);

    let sender = "alice123@chat.example.org";
    let rcpt = "bob456789@remote.example";
    let message = fixture("encrypted.eml");

    let unsigned = submit(smtp_port, sender, rcpt, &message);
    assert_eq!(unsigned, "554 5.7.1 No DKIM signature found");

    let signed = published.sign(&message);
    let altered = String::from_utf8(signed.clone()).unwrap().replacen(
        "encrypted message",
        "encrypted massage",
        1,
    );
    assert_ne!(altered.as_bytes(), &signed[..]);
    let reply = submit(smtp_port, sender, rcpt, altered.as_bytes());
    assert_eq!(
        reply, "554 5.7.1 No valid DKIM signature found",
        "altered body"
    );

    // Same domain and selector, but not the key in DNS.
    let impostor = Signer::new(domain, "sel1");
    let reply = submit(smtp_port, sender, rcpt, &impostor.sign(&message));
    assert_eq!(
        reply, "554 5.7.1 No valid DKIM signature found",
        "wrong key"
    );
    assert!(delivered.recv_timeout(Duration::from_secs(3)).is_err());

    let reply = submit(smtp_port, sender, rcpt, &signed);
    assert!(reply.starts_with("250"), "{reply}");
    let (from, data) = delivered
        .recv_timeout(Duration::from_secs(60))
        .expect("the signed message reaches the sink");
    assert_eq!(from, format!("MAIL FROM:<{sender}>"));
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("DKIM-Signature: "), "{text}");
    assert!(data.ends_with(&message[message.len() - 200..]));
}

#[test]
fn postfix_forwards_the_client_address_to_filtermail() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    // Real DKIM checks against an empty loopback DNS server.
    let dns = start_txt_server(&[]).to_string();
    let dir = postfix_dir();
    let (sink_port, delivered) = start_sink();
    let (smtp_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    let _filter = start_filtermail(
        dir.path(),
        "incoming",
        filter_port,
        reinject_port,
        "",
        &[(chatmaild::filtermail::DNS_SERVER_ENV, &dns)],
    );
    let _postfix = Postfix::start(dir.path(), smtp_port, filter_port, reinject_port, sink_port);

    // Mail from an IPv4 relay: unsigned, with its address as the From domain.
    let sender = "alice123@[203.0.113.7]";
    let rcpt = "bob456789@remote.example";
    let message = String::from_utf8(fixture("encrypted.eml"))
        .unwrap()
        .replace("alice123@chat.example.org", sender)
        .into_bytes();

    // The test client talks to Postfix from 127.0.0.1, which Postfix hands on with
    // XFORWARD; a loopback peer is never an IP-literal relay.
    let reply = submit(smtp_port, sender, rcpt, &message);
    assert_eq!(reply, "554 5.7.1 No DKIM signature found");

    // Postfix takes XFORWARD from the (authorized) test client as if it were a front end
    // and forwards that address to filtermail, which only sees it if Postfix really
    // sends XFORWARD ADDR to the proxy filter.
    let from_relay = ["XFORWARD ADDR=203.0.113.7"];
    let reply = submit_with(smtp_port, &from_relay, sender, rcpt, &message);
    assert!(reply.starts_with("250"), "{reply}");
    let (from, _) = delivered
        .recv_timeout(Duration::from_secs(60))
        .expect("the IP relay's message reaches the sink");
    assert_eq!(from, format!("MAIL FROM:<{sender}>"));

    // Another address than the From literal: DKIM needed, none there.
    let elsewhere = ["XFORWARD ADDR=198.51.100.9"];
    let reply = submit_with(smtp_port, &elsewhere, sender, rcpt, &message);
    assert_eq!(reply, "554 5.7.1 No DKIM signature found");
    assert!(delivered.recv_timeout(Duration::from_secs(3)).is_err());
}
