//! filtermail transport mode and the incoming `/mxdeliv` listener, end to end on loopback.
//!
//! Postfix's LMTP client is played by the test; remote relays are played by a TLS front
//! (nginx's role, self-signed certificate) before a real incoming HTTP listener, and by an
//! SMTP server with STARTTLS. Names resolve through a fixed table to 127.0.0.x, so nothing
//! leaves the machine.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmaild::filtermail::http;
use chatmaild::filtermail::incoming::{ENFORCE_E2EE_FILE, Incoming, Mailboxes};
use chatmaild::filtermail::smtp::client::Relay;
use chatmaild::filtermail::smtp::server::{Limits, serve};
use chatmaild::filtermail::transport::resolve::{BoxFuture, DnsResolver, LookupError, Mx, Resolve};
use chatmaild::filtermail::transport::{Transport, TransportSettings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{Filtermail, fixture};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const SENDER: &str = "alice123@chat.example.org";
const HELO: &str = "chat.example.org";

const SKIP_DKIM: &[(&str, &str)] = &[("FILTERMAIL_SKIP_DKIM", "1")];

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

// ---------------------------------------------------------------- name resolution

/// A fixed DNS: unknown names do not exist.
#[derive(Default)]
struct Table {
    mx: HashMap<String, Result<Vec<Mx>, LookupError>>,
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl Table {
    fn mx(mut self, domain: &str, hosts: &[(u16, &str)]) -> Table {
        let records = hosts
            .iter()
            .map(|(preference, exchange)| Mx {
                preference: *preference,
                exchange: exchange.to_string(),
            })
            .collect();
        self.mx.insert(domain.into(), Ok(records));
        self
    }

    fn mx_error(mut self, domain: &str, error: LookupError) -> Table {
        self.mx.insert(domain.into(), Err(error));
        self
    }

    fn host(mut self, name: &str, ip: IpAddr) -> Table {
        self.hosts.entry(name.into()).or_default().push(ip);
        self
    }
}

impl Resolve for Table {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, LookupError>> {
        let answer = match self.mx.get(domain) {
            Some(answer) => answer.clone(),
            None if self.hosts.contains_key(domain) => Err(LookupError::NoRecords),
            None => Err(LookupError::NxDomain),
        };
        Box::pin(async move { answer })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, LookupError>> {
        let answer = self.hosts.get(host).cloned().ok_or(LookupError::NxDomain);
        Box::pin(async move { answer })
    }
}

/// A tiny authoritative DNS server on loopback UDP for the real resolver: `MX` and `A`
/// answers from fixed tables, NXDOMAIN for unknown names, SERVFAIL for `servfail.test`.
async fn dns_server(mx: &[(&str, u16, &str)], a: &[(&str, Ipv4Addr)]) -> SocketAddr {
    use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
    use mail_auth::hickory_resolver::proto::rr::rdata::{A, MX};
    use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

    let mx: Vec<(String, u16, String)> = mx
        .iter()
        .map(|(d, p, e)| (format!("{d}."), *p, format!("{e}.")))
        .collect();
    let a: Vec<(String, Ipv4Addr)> = a.iter().map(|(h, ip)| (format!("{h}."), *ip)).collect();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            answer.metadata.authoritative = true;
            let Some(q) = query.queries.first().cloned() else {
                continue;
            };
            let name = q.name().to_ascii().to_ascii_lowercase();
            let known = mx.iter().any(|(d, ..)| *d == name) || a.iter().any(|(h, _)| *h == name);
            if name == "servfail.test." {
                answer.metadata.response_code = ResponseCode::ServFail;
            } else if !known {
                answer.metadata.response_code = ResponseCode::NXDomain;
            } else if q.query_type() == RecordType::MX {
                for (_, preference, exchange) in mx.iter().filter(|(d, ..)| *d == name) {
                    let exchange = Name::from_ascii(exchange).unwrap();
                    let data = RData::MX(MX::new(*preference, exchange));
                    answer.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                }
            } else if q.query_type() == RecordType::A {
                for (_, ip) in a.iter().filter(|(h, _)| *h == name) {
                    let data = RData::A(A(*ip));
                    answer.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                }
            }
            answer.add_query(q);
            let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

// ---------------------------------------------------------------- TLS

fn acceptor(names: &[&str]) -> TlsAcceptor {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// nginx's part: terminate TLS on `ip:0` and pass the bytes to `backend`.
async fn tls_front(ip: IpAddr, names: &[&str], backend: SocketAddr) -> u16 {
    let acceptor = acceptor(names);
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    port
}

// ---------------------------------------------------------------- SMTP sink

#[derive(Debug, Clone, Default)]
struct Received {
    ehlo: String,
    tls: bool,
    mail_from: String,
    rcpt_to: Vec<String>,
    data: Vec<u8>,
}

/// A recording SMTP server: Postfix's re-injection port (plain) or a remote MX
/// (STARTTLS offered when it has an acceptor).
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
    starttls: Option<TlsAcceptor>,
    /// Recipients refused at RCPT with 550.
    unknown: Vec<String>,
}

impl Sink {
    async fn start(self, ip: IpAddr) -> (SocketAddr, Sink) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move { sink.session(stream).await });
            }
        });
        (addr, self)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut io = BufReader::new(stream);
        io.get_mut().write_all(b"220 sink ESMTP\r\n").await?;
        let mut current = Received::default();
        if self.commands(&mut io, &mut current).await? {
            let acceptor = self.starttls.clone().expect("STARTTLS only when offered");
            let tls = acceptor.accept(io.into_inner()).await?;
            let mut io = BufReader::new(tls);
            current.tls = true;
            self.commands(&mut io, &mut current).await?;
        }
        Ok(())
    }

    /// Serve commands; `true` when the client asked for STARTTLS.
    async fn commands<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut BufReader<S>,
        current: &mut Received,
    ) -> std::io::Result<bool> {
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await? == 0 {
                return Ok(false);
            }
            let upper = line.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                current.ehlo = line[5..].trim_end().to_owned();
                let tls = if self.starttls.is_some() && !current.tls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                format!("250-sink\r\n{tls}250 8BITMIME\r\n")
            } else if upper.starts_with("STARTTLS") {
                io.get_mut().write_all(b"220 go ahead\r\n").await?;
                return Ok(true);
            } else if upper.starts_with("MAIL FROM:") {
                current.mail_from = line[10..].trim_end().to_owned();
                current.rcpt_to.clear();
                "250 2.1.0 Ok\r\n".into()
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = line[8..].trim_end().trim_matches(['<', '>']).to_owned();
                if self.unknown.contains(&rcpt) {
                    "550 5.1.1 User unknown\r\n".into()
                } else {
                    current.rcpt_to.push(rcpt);
                    "250 2.1.5 Ok\r\n".into()
                }
            } else if upper.starts_with("DATA") {
                io.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if io.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(false);
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                current.data = data;
                self.received.lock().unwrap().push(current.clone());
                "250 2.0.0 Ok: queued\r\n".into()
            } else if upper.starts_with("QUIT") {
                io.get_mut().write_all(b"221 Bye\r\n").await?;
                return Ok(false);
            } else {
                "502 5.5.2 Error: command not recognized\r\n".into()
            };
            io.get_mut().write_all(reply.as_bytes()).await?;
        }
    }
}

// ---------------------------------------------------------------- relays

/// A remote relay reachable over HTTPS: TLS front → incoming HTTP listener → re-injection
/// sink. Its mailboxes live in a temporary directory.
struct RemoteRelay {
    https_port: u16,
    reinjected: Sink,
    mailboxes: tempfile::TempDir,
}

impl RemoteRelay {
    async fn start(ip: IpAddr, names: &[&str]) -> RemoteRelay {
        let (reinject, reinjected) = Sink::default().start(loopback(1)).await;
        let mailboxes = tempfile::tempdir().unwrap();
        let incoming = Incoming::new(
            Mailboxes {
                dir: mailboxes.path().to_owned(),
                domain: names[0].to_owned(),
            },
            None,
            Relay::new("127.0.0.1", reinject.port()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = listener.local_addr().unwrap();
        tokio::spawn(http::serve(listener, Arc::new(incoming), 100_000));
        let https_port = tls_front(ip, names, backend).await;
        RemoteRelay {
            https_port,
            reinjected,
            mailboxes,
        }
    }

    fn enforce_e2ee(&self, addr: &str) {
        self.account(addr);
        let dir = self.mailboxes.path().join(addr);
        std::fs::write(dir.join(ENFORCE_E2EE_FILE), b"").unwrap();
    }

    /// An account without the marker: the only kind that may receive cleartext.
    fn account(&self, addr: &str) {
        let dir = self.mailboxes.path().join(addr);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("password"), b"{SHA512-CRYPT}x").unwrap();
    }
}

/// Start a transport instance answering LMTP; returns its address.
async fn transport(table: Table, https_port: u16, smtp_port: u16) -> SocketAddr {
    transport_with(Arc::new(table), https_port, smtp_port).await
}

async fn transport_with(resolver: Arc<dyn Resolve>, https_port: u16, smtp_port: u16) -> SocketAddr {
    start_transport(resolver, settings(https_port, smtp_port)).await
}

fn settings(https_port: u16, smtp_port: u16) -> TransportSettings {
    let mut settings = TransportSettings::new(HELO);
    settings.https_port = https_port;
    settings.smtp_port = smtp_port;
    settings.https_timeout = Duration::from_secs(10);
    settings.smtp_timeout = Duration::from_secs(10);
    settings
}

async fn start_transport(resolver: Arc<dyn Resolve>, settings: TransportSettings) -> SocketAddr {
    let handler = Transport::new(settings, resolver).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, Arc::new(handler), Limits::new(100_000)));
    addr
}

/// A TCP listener that accepts and then says nothing; each accepted connection is
/// reported on the channel and held open.
async fn silent_listener(ip: IpAddr) -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = tx.send(());
        }
    });
    (port, rx)
}

/// A port on `ip` with nothing listening.
async fn closed_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- LMTP client

struct Lmtp {
    io: BufReader<TcpStream>,
}

impl Lmtp {
    async fn connect(addr: SocketAddr) -> Lmtp {
        let mut lmtp = Lmtp::connect_banner(addr).await;
        assert_eq!(lmtp.line().await, "220 filtermail SMTP");
        lmtp
    }

    /// Connect without reading the greeting (any SMTP server).
    async fn connect_banner(addr: SocketAddr) -> Lmtp {
        let stream = TcpStream::connect(addr).await.unwrap();
        Lmtp {
            io: BufReader::new(stream),
        }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), self.io.read_line(&mut line));
        read.await.expect("reply in time").unwrap();
        line.trim_end().to_owned()
    }

    /// Send a command, return the reply lines.
    async fn cmd(&mut self, command: &str) -> Vec<String> {
        self.io
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = vec![self.line().await];
        while lines.last().unwrap().as_bytes().get(3) == Some(&b'-') {
            lines.push(self.line().await);
        }
        lines
    }

    /// A whole transaction as Postfix's LMTP client runs it; the per-recipient replies.
    async fn send(&mut self, mail_from: &str, rcpt_to: &[&str], message: &[u8]) -> Vec<String> {
        assert_eq!(self.cmd("LHLO postfix").await.last().unwrap(), "250 OK");
        assert_eq!(
            self.cmd(&format!("MAIL FROM:<{mail_from}>")).await,
            ["250 OK"]
        );
        for rcpt in rcpt_to {
            assert_eq!(self.cmd(&format!("RCPT TO:<{rcpt}>")).await, ["250 OK"]);
        }
        assert!(self.cmd("DATA").await[0].starts_with("354"));
        let stuffed = chatmaild::filtermail::data::stuff(message);
        let w = self.io.get_mut();
        w.write_all(&stuffed).await.unwrap();
        w.write_all(b".\r\n").await.unwrap();
        let mut replies = Vec::new();
        for _ in rcpt_to {
            replies.push(self.line().await);
        }
        replies
    }
}

fn plain_with_dot_line() -> Vec<u8> {
    let mut message = fixture("plain.eml");
    message.extend_from_slice(b".a line starting with a dot\r\n");
    message
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn https_round_trip_through_incoming_http_listener() {
    let remote = RemoteRelay::start(loopback(1), &["_relay.test"]).await;
    let table = Table::default().host("_relay.test", loopback(1));
    let smtp_port = closed_port(loopback(1)).await;
    let lmtp = transport(table, remote.https_port, smtp_port).await;

    let message = fixture("encrypted.eml");
    let rcpts = ["bob456789@_relay.test", "carol1234@_relay.test"];
    let replies = Lmtp::connect(lmtp)
        .await
        .send(SENDER, &rcpts, &message)
        .await;
    assert_eq!(replies, ["250 OK (HTTPS)", "250 OK (HTTPS)"]);

    // One copy for both recipients, re-injected unchanged with the original sender.
    let got = remote.reinjected.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, format!("<{SENDER}>"));
    assert_eq!(got[0].rcpt_to, rcpts);
    assert_eq!(got[0].data, chatmaild::filtermail::data::stuff(&message));
}

#[tokio::test]
async fn https_keeps_dot_lines_and_null_sender() {
    let remote = RemoteRelay::start(loopback(1), &["_relay.test"]).await;
    let table = Table::default().host("_relay.test", loopback(1));
    let lmtp = transport(table, remote.https_port, closed_port(loopback(1)).await).await;

    // Cleartext is fine for an account without the opt-in marker.
    remote.account("bob456789@_relay.test");
    let message = plain_with_dot_line();
    let replies = Lmtp::connect(lmtp)
        .await
        .send("", &["bob456789@_relay.test"], &message)
        .await;
    assert_eq!(replies, ["250 OK (HTTPS)"]);
    let got = remote.reinjected.received();
    assert_eq!(got[0].mail_from, "<>");
    assert!(
        got[0]
            .data
            .ends_with(b"\r\n..a line starting with a dot\r\n")
    );
}

#[tokio::test]
async fn incoming_checks_answer_per_recipient_domain() {
    // _strict.test refuses cleartext for its user; _open.test accepts it.
    let strict = RemoteRelay::start(loopback(1), &["_strict.test"]).await;
    strict.enforce_e2ee("bob456789@_strict.test");
    let table = Table::default()
        .host("_strict.test", loopback(1))
        .mx("_open.test", &[(10, "mx._open.test")])
        .host("mx._open.test", loopback(2));
    // _open.test has no /mxdeliv (nothing on 127.0.0.2's HTTPS port) but an SMTP MX.
    let mx = Sink {
        starttls: Some(acceptor(&["mx._open.test"])),
        ..Sink::default()
    };
    let (mx_addr, mx) = mx.start(loopback(2)).await;
    let lmtp = transport(table, strict.https_port, mx_addr.port()).await;

    let rcpts = [
        "bob456789@_strict.test",
        "dave12345@_open.test",
        "nobody123@_nx.test",
    ];
    let replies = Lmtp::connect(lmtp)
        .await
        .send(SENDER, &rcpts, &fixture("plain.eml"))
        .await;
    assert_eq!(
        replies,
        [
            "523 Encryption Needed: Invalid Unencrypted Mail",
            "250 OK (SMTP)",
            "512 Domain _nx.test does not exist",
        ]
    );
    assert!(strict.reinjected.received().is_empty());
    assert_eq!(mx.received()[0].rcpt_to, ["dave12345@_open.test"]);
}

#[tokio::test]
async fn smtp_fallback_uses_starttls_and_keeps_the_message() {
    let mx = Sink {
        starttls: Some(acceptor(&["mx._smtp.test"])),
        unknown: vec!["gone12345@_smtp.test".into()],
        ..Sink::default()
    };
    let (mx_addr, mx) = mx.start(loopback(2)).await;
    let table = Table::default()
        // The preferred MX does not answer at all; the second one does.
        .mx(
            "_smtp.test",
            &[(20, "mx._smtp.test"), (10, "dead._smtp.test")],
        )
        .host("dead._smtp.test", loopback(3))
        .host("mx._smtp.test", loopback(2));
    let lmtp = transport(table, closed_port(loopback(2)).await, mx_addr.port()).await;

    let message = plain_with_dot_line();
    let rcpts = ["erin12345@_smtp.test", "gone12345@_smtp.test"];
    let replies = Lmtp::connect(lmtp)
        .await
        .send(SENDER, &rcpts, &message)
        .await;
    assert_eq!(replies, ["250 OK (SMTP)", "550 5.1.1 User unknown"]);

    let got = mx.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "message must only travel after STARTTLS");
    assert_eq!(got[0].ehlo, HELO);
    assert_eq!(got[0].mail_from, format!("<{SENDER}>"));
    assert_eq!(got[0].rcpt_to, ["erin12345@_smtp.test"]);
    assert_eq!(got[0].data, chatmaild::filtermail::data::stuff(&message));
}

#[tokio::test]
async fn real_domains_need_valid_certificates() {
    // Same self-signed setup as for `_` domains, but under a normal name: neither HTTPS
    // nor STARTTLS may be used, so Postfix is told to retry later.
    let remote = RemoteRelay::start(loopback(1), &["relay.test"]).await;
    let mx = Sink {
        starttls: Some(acceptor(&["relay.test"])),
        ..Sink::default()
    };
    let (mx_addr, mx) = mx.start(loopback(1)).await;
    let table = Table::default().host("relay.test", loopback(1));
    let lmtp = transport(table, remote.https_port, mx_addr.port()).await;

    let replies = Lmtp::connect(lmtp)
        .await
        .send(SENDER, &["bob456789@relay.test"], &fixture("encrypted.eml"))
        .await;
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].starts_with(
            "421 Failed to connect to any mail server; last attempt to relay.test: TLS:"
        ),
        "{replies:?}"
    );
    assert!(remote.reinjected.received().is_empty());
    assert!(mx.received().is_empty());
}

#[tokio::test]
async fn dns_answers_become_recipient_replies() {
    let table = Table::default()
        .mx("null.test", &[(0, "")])
        .mx_error("servfail.test", LookupError::Other("SERVFAIL".into()))
        .mx("nohost.test", &[(10, "missing.nohost.test")]);
    let port = closed_port(loopback(1)).await;
    let lmtp = transport(table, port, port).await;
    let rcpts = [
        "a@null.test",
        "b@servfail.test",
        "c@nx.test",
        "d@nohost.test",
        "e@[127.0.0.1]",
    ];
    let replies = Lmtp::connect(lmtp)
        .await
        .send(SENDER, &rcpts, &fixture("encrypted.eml"))
        .await;
    assert_eq!(
        replies[0],
        "556 5.1.10 Permanent failure: Recipient address has null MX"
    );
    assert_eq!(replies[1], "421 DNS resolution failed for servfail.test");
    assert_eq!(replies[2], "512 Domain nx.test does not exist");
    assert!(
        replies[3].starts_with(
            "421 Failed to connect to any mail server; last attempt to missing.nohost.test: cannot resolve"
        ),
        "{}",
        replies[3]
    );
    assert!(
        replies[4]
            .starts_with("421 Failed to connect to any mail server; last attempt to 127.0.0.1:"),
        "{}",
        replies[4]
    );
}

#[tokio::test]
async fn ip_literal_relay_over_https() {
    let remote = RemoteRelay::start(loopback(1), &["127.0.0.1"]).await;
    let lmtp = transport(
        Table::default(),
        remote.https_port,
        closed_port(loopback(1)).await,
    )
    .await;
    let replies = Lmtp::connect(lmtp)
        .await
        .send(
            SENDER,
            &["bob456789@[127.0.0.1]"],
            &fixture("encrypted.eml"),
        )
        .await;
    assert_eq!(replies, ["250 OK (HTTPS)"]);
    assert_eq!(
        remote.reinjected.received()[0].rcpt_to,
        ["bob456789@[127.0.0.1]"]
    );
}

#[tokio::test]
async fn lmtp_session_rejects_malformed_commands() {
    let port = closed_port(loopback(1)).await;
    let lmtp = transport(Table::default(), port, port).await;
    let mut c = Lmtp::connect(lmtp).await;
    assert_eq!(
        c.cmd("LHLO postfix").await,
        ["250-filtermail", "250-8BITMIME", "250 OK"]
    );
    assert_eq!(
        c.cmd("RCPT TO:<a@b.test>").await,
        ["503 5.5.1 Error: need MAIL command"]
    );
    assert_eq!(c.cmd("DATA").await, ["503 5.5.1 Error: need MAIL command"]);
    assert_eq!(
        c.cmd("MAIL FROM:<not an address>").await,
        ["500 Invalid address in MAIL FROM"]
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, ["250 OK"]);
    assert_eq!(c.cmd("DATA").await, ["503 5.5.1 Error: need RCPT command"]);
    assert_eq!(
        c.cmd("RCPT TO:<nobody>").await,
        ["501 5.1.3 Bad recipient address syntax"]
    );
    assert_eq!(c.cmd("VRFY a@b.test").await, ["500 Command not recognized"]);
    assert_eq!(c.cmd("RSET").await, ["250 OK"]);
    assert_eq!(c.cmd("NOOP").await, ["250 OK"]);
    assert_eq!(c.cmd("QUIT").await, ["221 OK"]);
}

#[tokio::test]
async fn http_listener_speaks_http_1_0_like_nginx() {
    // nginx's proxy_pass uses HTTP/1.0 with Content-Length and closes afterwards.
    let mailboxes = tempfile::tempdir().unwrap();
    let (reinject, sink) = Sink::default().start(loopback(1)).await;
    let incoming = Incoming::new(
        Mailboxes {
            dir: mailboxes.path().to_owned(),
            domain: "_relay.test".into(),
        },
        None,
        Relay::new("127.0.0.1", reinject.port()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(listener, Arc::new(incoming), 100_000));

    let body = fixture("encrypted.eml");
    let head = format!(
        "POST /mxdeliv HTTP/1.0\r\nHost: 127.0.0.1\r\nX-MAIL-FROM: {SENDER}\r\nX-MAIL-TO: bob456789@_relay.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n250 OK"), "{answer}");
    assert_eq!(sink.received()[0].rcpt_to, ["bob456789@_relay.test"]);
}

#[tokio::test]
async fn dns_resolver_answers_from_a_loopback_server() {
    let server = dns_server(
        &[
            ("_dns.test", 20, "mx2._dns.test"),
            ("_dns.test", 10, "mx1._dns.test"),
        ],
        &[
            ("mx1._dns.test", Ipv4Addr::new(127, 0, 0, 2)),
            ("a-only.test", Ipv4Addr::LOCALHOST),
        ],
    )
    .await;
    let resolver = DnsResolver::with_name_server(server, Duration::from_secs(5)).unwrap();
    let mut mx = resolver.mx("_dns.test").await.unwrap();
    mx.sort_by_key(|m| m.preference);
    assert_eq!(
        mx,
        [
            Mx {
                preference: 10,
                exchange: "mx1._dns.test".into()
            },
            Mx {
                preference: 20,
                exchange: "mx2._dns.test".into()
            },
        ]
    );
    assert_eq!(resolver.ips("mx1._dns.test").await.unwrap(), [loopback(2)]);
    assert_eq!(resolver.mx("nx.test").await, Err(LookupError::NxDomain));
    assert_eq!(
        resolver.mx("a-only.test").await,
        Err(LookupError::NoRecords)
    );
    assert!(matches!(
        resolver.mx("servfail.test").await,
        Err(LookupError::Other(_))
    ));
}

#[tokio::test]
async fn smtp_delivery_found_through_real_dns() {
    let mx = Sink {
        starttls: Some(acceptor(&["mx1._dns.test"])),
        ..Sink::default()
    };
    let (mx_addr, mx) = mx.start(loopback(2)).await;
    let server = dns_server(
        &[("_dns.test", 10, "mx1._dns.test")],
        &[("mx1._dns.test", Ipv4Addr::new(127, 0, 0, 2))],
    )
    .await;
    let resolver = DnsResolver::with_name_server(server, Duration::from_secs(5)).unwrap();
    let lmtp = transport_with(
        Arc::new(resolver),
        closed_port(loopback(2)).await,
        mx_addr.port(),
    )
    .await;
    let replies = Lmtp::connect(lmtp)
        .await
        .send(
            SENDER,
            &["frank1234@_dns.test", "x@nx.test"],
            &fixture("encrypted.eml"),
        )
        .await;
    assert_eq!(
        replies,
        ["250 OK (SMTP)", "512 Domain nx.test does not exist"]
    );
    assert_eq!(mx.received()[0].rcpt_to, ["frank1234@_dns.test"]);
}

#[tokio::test]
async fn busy_destination_is_deferred() {
    // The relay's HTTPS port accepts but never answers: the first delivery hangs there.
    let (https_port, mut accepted) = silent_listener(loopback(1)).await;
    let table = Table::default().host("_slow.test", loopback(1));
    let mut one_at_a_time = settings(https_port, closed_port(loopback(1)).await);
    one_at_a_time.per_destination = 1;
    let lmtp = start_transport(Arc::new(table), one_at_a_time).await;
    let message = fixture("encrypted.eml");

    let first = {
        let message = message.clone();
        tokio::spawn(async move {
            let mut c = Lmtp::connect(lmtp).await;
            c.send(SENDER, &["a@_slow.test"], &message).await
        })
    };
    accepted.recv().await.unwrap();
    let second = Lmtp::connect(lmtp)
        .await
        .send(SENDER, &["b@_slow.test"], &message)
        .await;
    assert_eq!(second, ["421 Transport busy"]);
    first.abort();
}

#[tokio::test]
async fn smtp_only_hosts_skip_https_for_a_while() {
    // Something that is not /mxdeliv on the HTTPS port: connections are counted.
    let (https_port, mut attempts) = silent_listener(loopback(2)).await;
    let mx = Sink {
        starttls: Some(acceptor(&["mx._plain.test"])),
        ..Sink::default()
    };
    let (mx_addr, mx) = mx.start(loopback(2)).await;
    let table = Table::default()
        .mx("_plain.test", &[(10, "mx._plain.test")])
        .host("mx._plain.test", loopback(2));
    let mut quick = settings(https_port, mx_addr.port());
    quick.https_timeout = Duration::from_millis(300);
    let lmtp = start_transport(Arc::new(table), quick).await;

    for rcpt in ["a@_plain.test", "b@_plain.test"] {
        let replies = Lmtp::connect(lmtp)
            .await
            .send(SENDER, &[rcpt], &fixture("encrypted.eml"))
            .await;
        assert_eq!(replies, ["250 OK (SMTP)"]);
    }
    assert_eq!(mx.received().len(), 2);
    // Only the first message tried HTTPS.
    assert!(attempts.try_recv().is_ok());
    assert!(attempts.try_recv().is_err());
}

// ---------------------------------------------------------------- the binary

async fn free_port() -> u16 {
    closed_port(loopback(1)).await
}

#[tokio::test]
async fn binary_transport_mode_answers_lmtp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let ini = dir.path().join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nfiltermail_lmtp_port_transport = {port}\n"
        ),
    )
    .unwrap();
    let _binary = Filtermail::start(&ini, "transport", SKIP_DKIM);
    // No message: delivering would query the machine's DNS or reach its port 25/443.
    let mut c = Lmtp::connect(SocketAddr::new(loopback(1), port)).await;
    assert_eq!(c.cmd("LHLO postfix").await.last().unwrap(), "250 OK");
    assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await, ["250 OK"]);
    assert_eq!(
        c.cmd("RCPT TO:<bob456789@remote.example>").await,
        ["250 OK"]
    );
    assert_eq!(c.cmd("RSET").await, ["250 OK"]);
    assert_eq!(c.cmd("QUIT").await, ["221 OK"]);
}

#[tokio::test]
async fn binary_incoming_mode_serves_smtp_and_mxdeliv() {
    let dir = tempfile::tempdir().unwrap();
    let (reinject, sink) = Sink::default().start(loopback(1)).await;
    let (smtp_port, http_port) = (free_port().await, free_port().await);
    let ini = dir.path().join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n\
             filtermail_smtp_port_incoming = {smtp_port}\n\
             filtermail_http_port_incoming = {http_port}\n\
             postfix_reinject_port_incoming = {}\n",
            dir.path().join("mail").display(),
            reinject.port()
        ),
    )
    .unwrap();
    let _binary = Filtermail::start(&ini, "incoming", SKIP_DKIM);

    // Both listeners of the one process: the SMTP greeting (checked by connect) and HTTP.
    Lmtp::connect(SocketAddr::new(loopback(1), smtp_port)).await;
    let url = format!("http://127.0.0.1:{http_port}/mxdeliv");
    let client = reqwest::Client::new();
    let answer = client
        .post(&url)
        .header("X-MAIL-FROM", SENDER)
        .header("X-MAIL-TO", "bob456789@chat.example.org")
        .body(fixture("encrypted.eml"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "250 OK");
    assert_eq!(sink.received()[0].rcpt_to, ["bob456789@chat.example.org"]);
    let get = client.get(&url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

// ---------------------------------------------------------------- real Postfix

/// A private Postfix instance (own config and queue) whose `default_transport` is the
/// transport under test, as on a relay.
struct Postfix {
    config: std::path::PathBuf,
    maillog: std::path::PathBuf,
}

impl Postfix {
    async fn start(dir: &std::path::Path, submit_port: u16, lmtp: SocketAddr) -> Postfix {
        let (config, queue, data) = (dir.join("etc"), dir.join("queue"), dir.join("data"));
        for d in [&config, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        let chown = tokio::process::Command::new("chown")
            .arg("postfix:postfix")
            .arg(&data)
            .status()
            .await
            .unwrap();
        assert!(chown.success());
        let maillog = dir.join("maillog");
        let main_cf = format!(
            "compatibility_level = 3.6\nqueue_directory = {}\ndata_directory = {}\n\
             maillog_file = {}\nmaillog_file_prefixes = {}\nmail_owner = postfix\n\
             setgid_group = postdrop\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
             myhostname = chat.example.org\nmydestination =\nmynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             default_transport = lmtp:inet:[127.0.0.1]:{}\n\
             lmtp_tls_security_level = none\nalias_maps =\nalias_database =\n",
            queue.display(),
            data.display(),
            maillog.display(),
            dir.display(),
            lmtp.port(),
        );
        std::fs::write(config.join("main.cf"), main_cf).unwrap();
        let services = [
            format!("127.0.0.1:{submit_port} inet n - n - - smtpd"),
            "pickup unix n - n 60 1 pickup".into(),
            "cleanup unix n - n - 0 cleanup".into(),
            "qmgr unix n - n 300 1 qmgr".into(),
            "rewrite unix - - n - - trivial-rewrite".into(),
            "bounce unix - - n - 0 bounce".into(),
            "defer unix - - n - 0 bounce".into(),
            "trace unix - - n - 0 bounce".into(),
            "verify unix - - n - 1 verify".into(),
            "flush unix n - n 1000? 0 flush".into(),
            "proxymap unix - - n - - proxymap".into(),
            "smtp unix - - n - - smtp".into(),
            "lmtp unix - - n - - lmtp".into(),
            "showq unix n - n - - showq".into(),
            "error unix - - n - - error".into(),
            "retry unix - - n - - error".into(),
            "discard unix - - n - - discard".into(),
            "anvil unix - - n - 1 anvil".into(),
            "scache unix - - n - 1 scache".into(),
            "postlog unix-dgram n - n - 1 postlogd".into(),
        ];
        std::fs::write(config.join("master.cf"), services.join("\n") + "\n").unwrap();
        let postfix = Postfix { config, maillog };
        let out = postfix.control("start").await;
        assert!(
            out.status.success(),
            "postfix start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            postfix.log()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", submit_port))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "smtpd never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        postfix
    }

    async fn control(&self, command: &str) -> std::process::Output {
        tokio::process::Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg(command)
            .output()
            .await
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// The `status=...` of the log line for `rcpt`, once there is one.
    async fn status_of(&self, rcpt: &str) -> String {
        let needle = format!("to=<{rcpt}>");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            let found = log
                .lines()
                .filter(|l| l.contains(&needle))
                .find_map(|l| l.split_once("status=").map(|(_, s)| s.to_owned()));
            if let Some(status) = found {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no status for {rcpt}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Postfix {
    /// Also on a failed assertion: never leave the instance running.
    fn drop(&mut self) {
        let _ = std::process::Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_lmtp_client_reads_one_reply_per_recipient() {
    if std::env::var("CHATMAIL_POSTFIX_TESTS").ok().as_deref() != Some("1") {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    // bob's relay takes /mxdeliv and refuses cleartext for him; dave's domain only has an
    // SMTP MX; _nx.test does not exist.
    let strict = RemoteRelay::start(loopback(1), &["_relay.test"]).await;
    strict.enforce_e2ee("bob456789@_relay.test");
    let mx = Sink {
        starttls: Some(acceptor(&["mx._open.test"])),
        ..Sink::default()
    };
    let (mx_addr, mx) = mx.start(loopback(2)).await;
    let table = Table::default()
        .host("_relay.test", loopback(1))
        .mx("_open.test", &[(10, "mx._open.test")])
        .host("mx._open.test", loopback(2));
    let lmtp = transport(table, strict.https_port, mx_addr.port()).await;

    let dir = tempfile::tempdir().unwrap();
    // Postfix's daemons run as user postfix and must reach the queue inside.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let submit_port = free_port().await;
    let postfix = Postfix::start(dir.path(), submit_port, lmtp).await;

    // A null sender, so that Postfix has no bounce to send afterwards.
    let rcpts = [
        "bob456789@_relay.test",
        "dave12345@_open.test",
        "nobody123@_nx.test",
    ];
    let mut smtp = Lmtp::connect_banner(SocketAddr::new(loopback(1), submit_port)).await;
    assert!(smtp.line().await.starts_with("220"));
    assert!(
        smtp.cmd("EHLO client.test")
            .await
            .last()
            .unwrap()
            .starts_with("250")
    );
    assert!(smtp.cmd("MAIL FROM:<>").await[0].starts_with("250"));
    for rcpt in rcpts {
        let reply = smtp.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(reply[0].starts_with("250"), "{rcpt}: {reply:?}");
    }
    assert!(smtp.cmd("DATA").await[0].starts_with("354"));
    let message = chatmaild::filtermail::data::stuff(&fixture("plain.eml"));
    smtp.io.get_mut().write_all(&message).await.unwrap();
    let queued = smtp.cmd(".").await;
    assert!(queued[0].starts_with("250"), "{queued:?}");

    let bob = postfix.status_of(rcpts[0]).await;
    let dave = postfix.status_of(rcpts[1]).await;
    let nobody = postfix.status_of(rcpts[2]).await;
    assert!(
        bob.starts_with("bounced") && bob.contains("523 Encryption Needed"),
        "{bob}"
    );
    assert!(dave.starts_with("sent (250 OK (SMTP))"), "{dave}");
    assert!(
        nobody.starts_with("bounced") && nobody.contains("512 Domain _nx.test does not exist"),
        "{nobody}"
    );
    assert_eq!(mx.received()[0].rcpt_to, ["dave12345@_open.test"]);
    assert!(strict.reinjected.received().is_empty());
}
