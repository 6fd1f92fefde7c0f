//! filtermail's SMTP behaviour end to end on loopback: a client talks to the filter, the
//! filter re-injects into a small recording SMTP sink started by the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmaild::filtermail::incoming::{ENFORCE_E2EE_FILE, Incoming, Mailboxes};
use chatmaild::filtermail::outgoing::Outgoing;
use chatmaild::filtermail::reply::Reply;
use chatmaild::filtermail::smtp::client::Relay;
use chatmaild::filtermail::smtp::server::{Limits, serve};
use chatmaild::filtermail::smtp::{Envelope, Handler};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const SENDER: &str = "alice123@chat.example.org";
const RCPT: &str = "bob456789@remote.example";

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/filtermail")
        .join(name);
    std::fs::read(path).unwrap()
}

/// What the sink received in one transaction.
#[derive(Debug, Clone, Default)]
struct Delivered {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
}

/// A recording SMTP server standing in for Postfix's re-injection port.
#[derive(Clone, Default)]
struct Sink {
    delivered: Arc<Mutex<Vec<Delivered>>>,
    /// Reply to RCPT TO (default `250 2.1.5 Ok`).
    rcpt_reply: Option<&'static str>,
}

impl Sink {
    async fn start(self) -> (u16, Sink) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move { sink.session(stream).await });
            }
        });
        (port, self)
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        wr.write_all(b"220 sink ESMTP\r\n").await?;
        let mut cur = Delivered::default();
        loop {
            let mut line = String::new();
            if rd.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            let reply: &str = if upper.starts_with("EHLO") {
                "250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                cur = Delivered {
                    mail_from: line[10..].trim_end().to_owned(),
                    ..Default::default()
                };
                "250 2.1.0 Ok\r\n"
            } else if upper.starts_with("RCPT TO:") {
                cur.rcpt_to.push(line[8..].trim_end().to_owned());
                self.rcpt_reply.unwrap_or("250 2.1.5 Ok\r\n")
            } else if upper.starts_with("DATA") {
                wr.write_all(b"354 go ahead\r\n").await?;
                loop {
                    let mut l = Vec::new();
                    if rd.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    cur.data.extend_from_slice(&l);
                }
                self.delivered.lock().unwrap().push(cur.clone());
                "250 2.0.0 Ok: queued as 4711\r\n"
            } else if upper.starts_with("QUIT") {
                wr.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                "502 5.5.2 unknown\r\n"
            };
            wr.write_all(reply.as_bytes()).await?;
        }
    }

    fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().unwrap().clone()
    }
}

async fn start_filter<H: Handler>(handler: H, limits: Limits) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, Arc::new(handler), limits));
    port
}

/// A line-oriented test client.
struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (rd, wr) = stream.into_split();
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
        };
        assert_eq!(c.reply().await, "220 filtermail SMTP");
        c
    }

    /// One complete (possibly multi-line) reply, lines joined with `|`.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.rd.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            if n == 0 {
                return if lines.is_empty() {
                    "<closed>".into()
                } else {
                    lines.join("|")
                };
            }
            let line = line.trim_end().to_owned();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                return lines.join("|");
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// A whole transaction; returns the reply after the final dot.
    async fn mail(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if !r.starts_with("250") {
            return r;
        }
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            assert!(r.starts_with("250"), "{r}");
        }
        assert_eq!(
            self.cmd("DATA").await,
            "354 End data with <CR><LF>.<CR><LF>"
        );
        self.send(&stuff(message)).await;
        self.send(b".\r\n").await;
        self.reply().await
    }
}

fn stuff(message: &[u8]) -> Vec<u8> {
    chatmaild::filtermail::data::stuff(message)
}

fn outgoing(sink_port: u16, burst: u32) -> Outgoing {
    Outgoing::new(60, burst, Relay::new("127.0.0.1", sink_port))
}

#[tokio::test]
async fn greeting_and_command_replies() {
    let (sink_port, _sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    assert_eq!(c.cmd("HELO client").await, "250-filtermail|250 OK");
    assert_eq!(
        c.cmd("EHLO client").await,
        "250-filtermail|250-8BITMIME|250 OK"
    );
    assert_eq!(
        c.cmd("LHLO client").await,
        "250-filtermail|250-8BITMIME|250 OK"
    );
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    assert_eq!(c.cmd("RSET").await, "250 OK");
    assert_eq!(c.cmd("VRFY root").await, "500 Command not recognized");
    assert_eq!(c.cmd("STARTTLS").await, "500 Command not recognized");
    assert_eq!(
        c.cmd("RCPT TO:<a@b.example>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Error: need MAIL command");
    assert_eq!(
        c.cmd("MAIL FROM:<not an address>").await,
        "500 Invalid address in MAIL FROM"
    );
    assert_eq!(c.cmd("MAIL FROM:<>").await, "500 Invalid from address <>");
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=10")).await,
        "250 OK"
    );
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{SENDER}>")).await,
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Error: need RCPT command");
    assert_eq!(
        c.cmd("RCPT TO:<>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{RCPT}> NOTIFY=NEVER")).await,
        "250 OK"
    );
    let long = format!("NOOP {}", "x".repeat(10_000));
    assert_eq!(c.cmd(&long).await, "500 5.5.2 Error: line too long");
    assert_eq!(c.cmd("QUIT").await, "221 OK");
    assert_eq!(c.reply().await, "<closed>");
}

#[tokio::test]
async fn outgoing_encrypted_is_relayed_verbatim() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    assert!(c.cmd("EHLO localhost").await.starts_with("250"));
    // A leading dot in the body must survive the round trip (stuffed on both legs).
    let mut msg = fixture("encrypted.eml");
    msg.extend_from_slice(b".signature-ish trailer line\r\n");
    assert_eq!(
        c.mail(SENDER, &[RCPT, "carol1234@remote.example"], &msg)
            .await,
        "250 OK"
    );
    let got = sink.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, format!("<{SENDER}>"));
    assert_eq!(
        got[0].rcpt_to,
        vec![format!("<{RCPT}>"), "<carol1234@remote.example>".to_owned()]
    );
    assert_eq!(got[0].data, stuff(&msg));
    // The session continues after a message.
    assert_eq!(c.cmd("NOOP").await, "250 OK");
}

#[tokio::test]
async fn outgoing_refusals_are_not_relayed() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    for (name, want) in [
        (
            "fake-encrypted.eml",
            "523 Encryption Needed: Invalid Unencrypted Mail",
        ),
        (
            "literal.eml",
            "523 Encryption Needed: Invalid Unencrypted Mail",
        ),
        (
            "plain.eml",
            "523 Encryption Needed: Invalid Unencrypted Mail",
        ),
        (
            "from-forged.eml",
            "500 Invalid FROM <ceo@bank.example> for <alice123@chat.example.org>",
        ),
        (
            "duplicate-from.eml",
            "500 Invalid FROM header: <alice123@chat.example.org>",
        ),
    ] {
        assert_eq!(
            c.mail(SENDER, &[RCPT], &fixture(name)).await,
            want,
            "{name}"
        );
    }
    assert!(sink.delivered().is_empty());
}

#[tokio::test]
async fn outgoing_rate_limit_at_mail_from() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 3), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    let msg = fixture("encrypted.eml");
    for _ in 0..3 {
        assert_eq!(c.mail(SENDER, &[RCPT], &msg).await, "250 OK");
    }
    let refused = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(
        refused.starts_with("450 4.7.1: Too much mail from <alice123@chat.example.org>"),
        "{refused}"
    );
    // Another sender is not affected, and the session goes on.
    assert_eq!(
        c.cmd("MAIL FROM:<carol1234@chat.example.org>").await,
        "250 OK"
    );
    assert_eq!(sink.delivered().len(), 3);
}

#[tokio::test]
async fn oversize_message_is_refused_and_session_survives() {
    let (sink_port, sink) = Sink::default().start().await;
    let msg = fixture("encrypted.eml");
    let limit = msg.len() + 100;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(limit)).await;
    let mut c = Client::connect(port).await;
    // Exactly at the limit passes.
    let mut exact = msg.clone();
    exact.extend(std::iter::repeat_n(b'x', limit - msg.len() - 2));
    exact.extend_from_slice(b"\r\n");
    assert_eq!(exact.len(), limit);
    assert_eq!(c.mail(SENDER, &[RCPT], &exact).await, "250 OK");
    // One more line is too much, also as one huge line without any newline for a while.
    let mut big = exact.clone();
    big.extend_from_slice(b"y\r\n");
    assert_eq!(
        c.mail(SENDER, &[RCPT], &big).await,
        "552 Message exceeds maximum size"
    );
    let mut huge_line = msg.clone();
    huge_line.extend(std::iter::repeat_n(b'z', 3 * limit));
    huge_line.extend_from_slice(b"\r\n");
    assert_eq!(
        c.mail(SENDER, &[RCPT], &huge_line).await,
        "552 Message exceeds maximum size"
    );
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    assert_eq!(sink.delivered().len(), 1);
}

#[tokio::test]
async fn invalid_data_is_refused() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 100), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    let msg = fixture("encrypted.eml");
    for (what, broken) in [
        ("bare LF", {
            let mut m = msg.clone();
            m.extend_from_slice(b"bare\nline\r\n");
            m
        }),
        ("bare CR", {
            let mut m = msg.clone();
            m.extend_from_slice(b"bare\rcr\r\n");
            m
        }),
        ("lone dot with LF", {
            let mut m = msg.clone();
            m.extend_from_slice(b".\n");
            m
        }),
    ] {
        assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await, "250 OK");
        assert_eq!(c.cmd(&format!("RCPT TO:<{RCPT}>")).await, "250 OK");
        assert!(c.cmd("DATA").await.starts_with("354"));
        // Sent without stuffing so the oddities reach the filter as they are.
        c.send(&broken).await;
        c.send(b".\r\n").await;
        assert_eq!(c.reply().await, "500 Invalid DATA", "{what}");
    }
    assert!(sink.delivered().is_empty());
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    let mut batch =
        format!("EHLO x\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n").into_bytes();
    batch.extend_from_slice(&stuff(&fixture("encrypted.eml")));
    batch.extend_from_slice(b".\r\nNOOP\r\nQUIT\r\n");
    c.send(&batch).await;
    for want in [
        "250-filtermail|250-8BITMIME|250 OK",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "250 OK",
        "221 OK",
    ] {
        assert_eq!(c.reply().await, want);
    }
    assert_eq!(sink.delivered().len(), 1);
}

#[tokio::test]
async fn connection_lost_during_data_forwards_nothing() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await, "250 OK");
    assert_eq!(c.cmd(&format!("RCPT TO:<{RCPT}>")).await, "250 OK");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&fixture("encrypted.eml")[..200]).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.delivered().is_empty());
}

#[tokio::test]
async fn reinjection_errors_are_passed_back() {
    let rejecting = Sink {
        rcpt_reply: Some("550 5.1.1 <bob456789@remote.example>: Recipient address rejected\r\n"),
        ..Default::default()
    };
    let (sink_port, _sink) = rejecting.start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    assert_eq!(
        c.mail(SENDER, &[RCPT], &fixture("encrypted.eml")).await,
        "550 5.1.1 <bob456789@remote.example>: Recipient address rejected"
    );

    // Nothing listens on the re-injection port: temporary failure, so Postfix retries.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let port = start_filter(outgoing(dead_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    let reply = c.mail(SENDER, &[RCPT], &fixture("encrypted.eml")).await;
    assert!(reply.starts_with("451 "), "{reply}");
}

/// Accounts of remote.example: `rcpt` enforces encryption, `nomarker1` does not.
fn mailboxes_enforcing(rcpt: &str) -> (tempfile::TempDir, Mailboxes) {
    let dir = tempfile::tempdir().unwrap();
    for addr in [rcpt, "nomarker1@remote.example"] {
        let user = dir.path().join(addr);
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("password"), b"{SHA512-CRYPT}x").unwrap();
    }
    std::fs::write(dir.path().join(rcpt).join(ENFORCE_E2EE_FILE), b"").unwrap();
    let boxes = Mailboxes {
        dir: dir.path().to_owned(),
        domain: "remote.example".into(),
    };
    (dir, boxes)
}

#[tokio::test]
async fn incoming_policy_and_sender_blanking() {
    let (sink_port, sink) = Sink::default().start().await;
    let (_dir, boxes) = mailboxes_enforcing(RCPT);
    let handler = Incoming::new(boxes, None, Relay::new("127.0.0.1", sink_port));
    let port = start_filter(handler, Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;

    // The incoming filter has no rate limit and takes any sender, including bounces.
    assert_eq!(
        c.mail(SENDER, &[RCPT], &fixture("encrypted.eml")).await,
        "250 OK"
    );
    assert_eq!(
        c.mail(SENDER, &[RCPT], &fixture("plain.eml")).await,
        "523 Encryption Needed: Invalid Unencrypted Mail"
    );
    assert_eq!(
        c.mail(SENDER, &["nomarker1@remote.example"], &fixture("plain.eml"))
            .await,
        "250 OK"
    );
    // SRS/forwarding: envelope sender differs from From, re-injected with <>.
    assert_eq!(
        c.mail(
            "srs0=abc=xy=chat.example.org=alice123@forwarder.example",
            &[RCPT],
            &fixture("encrypted.eml")
        )
        .await,
        "250 OK"
    );
    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 OK");
    assert_eq!(c.cmd(&format!("RCPT TO:<{RCPT}>")).await, "250 OK");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&stuff(&fixture("mailer-daemon.eml"))).await;
    c.send(b".\r\n").await;
    assert_eq!(c.reply().await, "250 OK");

    let got = sink.delivered();
    let senders: Vec<&str> = got.iter().map(|d| d.mail_from.as_str()).collect();
    assert_eq!(
        senders,
        [
            format!("<{SENDER}>").as_str(),
            "<alice123@chat.example.org>",
            "<>",
            "<>"
        ]
    );
}

#[tokio::test]
async fn no_spelling_of_an_enforcing_recipient_takes_cleartext() {
    let (sink_port, sink) = Sink::default().start().await;
    let (_dir, boxes) = mailboxes_enforcing(RCPT);
    let handler = Incoming::new(boxes, None, Relay::new("127.0.0.1", sink_port));
    let port = start_filter(handler, Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    assert!(c.cmd("EHLO postfix").await.starts_with("250"));
    for rcpt in [
        "bob456789+tag@remote.example",
        "\"bob456789\"@remote.example",
        "BOB456789@Remote.Example",
        "bob456789@remote.example.",
        // An account that does not exist gets no exception either.
        "nobody123@remote.example",
    ] {
        assert_eq!(
            c.mail(SENDER, &[rcpt], &fixture("plain.eml")).await,
            "523 Encryption Needed: Invalid Unencrypted Mail",
            "{rcpt}"
        );
    }
    // The unmarked account's spellings all take it.
    for rcpt in [
        "nomarker1+x@remote.example",
        "\"nomarker1\"@remote.example.",
    ] {
        assert_eq!(
            c.mail(SENDER, &[rcpt], &fixture("plain.eml")).await,
            "250 OK",
            "{rcpt}"
        );
    }
    // Routing forms of our domain are refused at RCPT, one line each.
    assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await, "250 OK");
    for rcpt in [
        "bob456789%remote.example@remote.example",
        "remote.example!bob456789@remote.example",
        "\"bob456789@remote.example\"@remote.example",
    ] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{rcpt}>")).await,
            format!("550 5.1.3 Routing syntax not allowed in recipient <{rcpt}>")
        );
    }
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Error: need RCPT command");
    assert_eq!(sink.delivered().len(), 2);
}

#[tokio::test]
async fn lmtp_refusals_come_once_per_recipient() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    assert_eq!(
        c.cmd("LHLO postfix").await,
        "250-filtermail|250-8BITMIME|250 OK"
    );
    assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await, "250 OK");
    assert_eq!(c.cmd(&format!("RCPT TO:<{RCPT}>")).await, "250 OK");
    assert_eq!(c.cmd("RCPT TO:<carol1234@remote.example>").await, "250 OK");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n").await;
    assert_eq!(c.reply().await, "500 Invalid DATA");
    assert_eq!(c.reply().await, "500 Invalid DATA");
    // Back in SMTP after EHLO: a single reply again.
    assert_eq!(
        c.cmd("EHLO again").await,
        "250-filtermail|250-8BITMIME|250 OK"
    );
    assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await, "250 OK");
    assert_eq!(c.cmd(&format!("RCPT TO:<{RCPT}>")).await, "250 OK");
    assert_eq!(c.cmd("RCPT TO:<carol1234@remote.example>").await, "250 OK");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n").await;
    assert_eq!(c.reply().await, "500 Invalid DATA");
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    assert!(sink.delivered().is_empty());
}

/// Answers each recipient on its own: `ok…` recipients are delivered, others refused.
struct PerRecipient;

impl Handler for PerRecipient {
    async fn data(&self, _envelope: Envelope) -> Reply {
        Reply::new(554, "SMTP needs one verdict")
    }

    async fn lmtp_data(&self, envelope: Envelope) -> Vec<Reply> {
        envelope
            .rcpt_to
            .iter()
            .map(|r| match r.starts_with("ok") {
                true => Reply::new(250, format!("2.0.0 <{r}> delivered")),
                false => Reply::new(550, format!("5.1.1 <{r}> unknown")),
            })
            .collect()
    }
}

#[tokio::test]
async fn lmtp_handler_answers_each_recipient() {
    let port = start_filter(PerRecipient, Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    c.cmd("LHLO postfix").await;
    let rcpts = ["ok1@x.example", "no2@x.example", "ok3@y.example"];
    assert_eq!(
        c.mail(SENDER, &rcpts, b"Subject: x\r\n\r\nhi\r\n").await,
        "250 2.0.0 <ok1@x.example> delivered"
    );
    assert_eq!(c.reply().await, "550 5.1.1 <no2@x.example> unknown");
    assert_eq!(c.reply().await, "250 2.0.0 <ok3@y.example> delivered");
    // The server's own refusals are still repeated per recipient, not asked of the handler.
    c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    c.cmd("RCPT TO:<ok1@x.example>").await;
    c.cmd("RCPT TO:<ok2@x.example>").await;
    c.cmd("DATA").await;
    c.send(b"bare\nlf\r\n.\r\n").await;
    assert_eq!(c.reply().await, "500 Invalid DATA");
    assert_eq!(c.reply().await, "500 Invalid DATA");
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    // SMTP: the one reply of `data`.
    c.cmd("EHLO client").await;
    assert_eq!(
        c.mail(SENDER, &rcpts, b"Subject: x\r\n\r\nhi\r\n").await,
        "554 SMTP needs one verdict"
    );
    assert_eq!(c.cmd("NOOP").await, "250 OK");
}

#[tokio::test]
async fn lmtp_filter_verdict_applies_to_every_recipient() {
    let (sink_port, sink) = Sink::default().start().await;
    let port = start_filter(outgoing(sink_port, 10), Limits::new(100_000)).await;
    let mut c = Client::connect(port).await;
    c.cmd("LHLO postfix").await;
    let rcpts = [RCPT, "carol1234@remote.example"];
    assert_eq!(
        c.mail(SENDER, &rcpts, &fixture("encrypted.eml")).await,
        "250 OK"
    );
    assert_eq!(c.reply().await, "250 OK");
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    assert_eq!(sink.delivered().len(), 1);
}
