//! Helpers shared by the integration tests (`mod support;` in each test file).
//!
//! Everything here talks to loopback only: SMTP peers, the relay programs and a tiny
//! DNS server. Not every test file uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The names the multi-call `chatmaild` binary answers to.
pub const PROGRAMS: &[&str] = &[
    "doveauth",
    "filtermail",
    "chatmail-metadata",
    "lastlogin",
    "chatmail-expire",
    "chatmail-quota-expire",
    "chatmail-fsreport",
    "newemail",
];

/// The relay program `name` (e.g. `doveauth`, or `chatmaild` itself) as a relay runs it: a
/// symlink of that name to the multi-call `chatmaild` binary. `CHATMAILD_TEST_BIN` points
/// the tests at another build of it (e.g. the static aarch64 one) and
/// `CHATMAILD_TEST_RUNNER` runs that through an emulator (`qemu-aarch64-static`): then
/// `name` is a script that execs `$RUNNER $BIN name args...` (the subcommand form:
/// emulators differ in what they pass as argv[0]), and its process is the emulator's, so
/// signals reach the program.
pub fn program(name: &str) -> PathBuf {
    assert!(
        name == "chatmaild" || PROGRAMS.contains(&name),
        "{name} is no relay program"
    );
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin = std::env::var_os("CHATMAILD_TEST_BIN")
            .filter(|b| !b.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_chatmaild").into());
        let bin = std::fs::canonicalize(&bin)
            .unwrap_or_else(|e| panic!("CHATMAILD_TEST_BIN {}: {e}", bin.display()));
        let runner = std::env::var("CHATMAILD_TEST_RUNNER").unwrap_or_default();
        // one directory per test process: the tests of one file run in parallel and share it
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("relay-programs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in PROGRAMS.iter().chain(&["chatmaild"]) {
            let path = dir.join(name);
            if runner.is_empty() {
                std::os::unix::fs::symlink(&bin, &path).unwrap();
                continue;
            }
            let command = if *name == "chatmaild" { "" } else { name };
            let script = format!(
                "#!/bin/sh\nexec {runner} '{}' {command} \"$@\"\n",
                bin.display()
            );
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        dir
    })
    .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/filtermail")
            .join(name),
    )
    .unwrap()
}

/// A port that was free a moment ago (the kernel does not hand it out again right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- SMTP peers

/// One message as the sink received it: the `MAIL FROM` line and the DATA bytes
/// (dot-stuffed, without the final dot line).
pub type Delivered = (String, Vec<u8>);

/// A recording SMTP sink standing in for Postfix's re-injection port, a remote MTA or
/// Dovecot. Serves connections concurrently (Postfix opens several).
pub fn start_sink() -> (u16, mpsc::Receiver<Delivered>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || sink_session(stream, &tx));
        }
    });
    (port, rx)
}

fn sink_session(stream: TcpStream, tx: &mpsc::Sender<Delivered>) {
    let mut wr = stream.try_clone().unwrap();
    let mut rd = BufReader::new(stream);
    let _ = wr.write_all(b"220 sink ESMTP\r\n");
    let mut from = String::new();
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let up = line.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if up.starts_with("MAIL") {
            from = line.trim_end().to_owned();
            b"250 ok\r\n"
        } else if up.starts_with("DATA") {
            let _ = wr.write_all(b"354 go\r\n");
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if rd.read_until(b'\n', &mut l).unwrap_or(0) == 0 || l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&l);
            }
            let _ = tx.send((from.clone(), data));
            b"250 delivered\r\n"
        } else if up.starts_with("QUIT") {
            let _ = wr.write_all(b"221 bye\r\n");
            return;
        } else {
            b"250 ok\r\n"
        };
        let _ = wr.write_all(reply);
    }
}

/// Submit one message over SMTP. Returns the first reply that is not positive (the
/// refusal of `MAIL`, `RCPT` or `DATA`) or else the reply to the final dot.
pub fn submit(port: u16, from: &str, to: &str, message: &[u8]) -> String {
    submit_with(port, &[], from, to, message)
}

/// The same with `before_mail` commands (e.g. XFORWARD) sent after EHLO.
pub fn submit_with(
    port: u16,
    before_mail: &[&str],
    from: &str,
    to: &str,
    message: &[u8],
) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut wr = stream.try_clone().unwrap();
    let mut rd = BufReader::new(stream);
    let mut reply = || {
        loop {
            let mut line = String::new();
            rd.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_owned();
            }
        }
    };
    assert!(reply().starts_with("220"));
    let mut result = None;
    let commands = std::iter::once("EHLO client.test".to_owned())
        .chain(before_mail.iter().map(|c| c.to_string()))
        .chain([
            format!("MAIL FROM:<{from}>"),
            format!("RCPT TO:<{to}>"),
            "DATA".to_owned(),
        ]);
    for cmd in commands {
        wr.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let r = reply();
        if !(r.starts_with('2') || r.starts_with('3')) {
            result = Some(r);
            break;
        }
    }
    let result = result.unwrap_or_else(|| {
        wr.write_all(&chatmaild::filtermail::data::stuff(message))
            .unwrap();
        wr.write_all(b".\r\n").unwrap();
        reply()
    });
    wr.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = rd.read_to_end(&mut rest);
    result
}

// ---------------------------------------------------------------- the binary

/// A running `filtermail <ini> <mode>`, killed when dropped.
pub struct Filtermail(Child);

impl Drop for Filtermail {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Filtermail {
    /// Start the binary with extra environment and wait for its "entering serving loop"
    /// line (so its listeners are bound).
    pub fn start(ini: &Path, mode: &str, env: &[(&str, &str)]) -> Filtermail {
        let mut command = Command::new(program("filtermail"));
        command
            .arg(ini)
            .arg(mode)
            .env_remove("CHATMAILD_LOG")
            .env_remove("RUST_LOG")
            .env_remove("FILTERMAIL_SKIP_DKIM")
            .env_remove(chatmaild::filtermail::DNS_SERVER_ENV)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let running = Filtermail(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("filtermail did not start");
            if line.contains("entering serving loop") {
                return running;
            }
        }
    }
}

// ---------------------------------------------------------------- DNS

/// An authoritative DNS server on loopback UDP answering `TXT` queries from a fixed table
/// (NXDOMAIN for other names), for the binary's test-only resolver setting.
pub fn start_txt_server(records: &[(&str, &str)]) -> SocketAddr {
    use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
    use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
    use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};

    let records: Vec<(String, String)> = records
        .iter()
        .map(|(name, text)| (format!("{}.", name.to_ascii_lowercase()), text.to_string()))
        .collect();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = query.queries.first().cloned() else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            answer.metadata.authoritative = true;
            let name = q.name().to_ascii().to_ascii_lowercase();
            let found: Vec<&String> = records
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, t)| t)
                .collect();
            if found.is_empty() {
                answer.metadata.response_code = ResponseCode::NXDomain;
            } else if q.query_type() == RecordType::TXT {
                for text in found {
                    // TXT character-strings hold at most 255 octets each.
                    let chunks = text
                        .as_bytes()
                        .chunks(255)
                        .map(|c| String::from_utf8(c.to_vec()).unwrap())
                        .collect();
                    let data = RData::TXT(TXT::new(chunks));
                    answer.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                }
            }
            answer.add_query(q);
            let _ = socket.send_to(&answer.to_vec().unwrap(), peer);
        }
    });
    addr
}

// ---------------------------------------------------------------- DKIM

/// An Ed25519 DKIM key of one domain and selector.
pub struct Signer {
    pub domain: &'static str,
    pub selector: &'static str,
    pkcs8: Vec<u8>,
}

impl Signer {
    pub fn new(domain: &'static str, selector: &'static str) -> Signer {
        use mail_auth::common::crypto::Ed25519Key;
        Signer {
            domain,
            selector,
            pkcs8: Ed25519Key::generate_pkcs8().unwrap(),
        }
    }

    fn key(&self) -> mail_auth::common::crypto::Ed25519Key {
        mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap()
    }

    /// Where the key is published: `<selector>._domainkey.<domain>`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record text publishing this key.
    pub fn record_text(&self) -> String {
        use base64::Engine;
        let p = base64::engine::general_purpose::STANDARD.encode(self.key().public_key());
        format!("v=DKIM1; k=ed25519; p={p}")
    }

    /// The message with a DKIM-Signature header prepended.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.sign_with(
            message,
            &["From", "To", "Subject", "Date", "Message-ID"],
            false,
        )
    }

    /// The same with a chosen `h=` list and, with `body_length`, an `l=` tag.
    pub fn sign_with(&self, message: &[u8], headers: &[&str], body_length: bool) -> Vec<u8> {
        use mail_auth::common::headers::HeaderWriter;
        let sig = mail_auth::dkim::DkimSigner::from_key(self.key())
            .domain(self.domain)
            .selector(self.selector)
            .headers(headers.iter().copied())
            .body_length(body_length)
            .sign(message)
            .unwrap();
        let mut out = sig.to_header().into_bytes();
        out.extend_from_slice(message);
        out
    }
}

/// A private Postfix instance (own config and queue directory under a test's directory,
/// started with `postfix -c`), delivering everything to `smtp:[127.0.0.1]:SINK`; stopped
/// when dropped. Runs as root with Debian's `postfix` package; no system instance needed.
pub struct PrivatePostfix {
    config: std::path::PathBuf,
}

impl PrivatePostfix {
    /// main.cf: what every test needs, like the relay's (no MIME processing, the relay's
    /// header_size_limit), plus `main_extra`; master.cf: `services` (the smtpds the test
    /// talks to) plus Postfix's internal services. Returns once every port in `ports`
    /// answers.
    pub fn start(
        dir: &Path,
        sink_port: u16,
        main_extra: &str,
        services: &str,
        ports: &[u16],
    ) -> PrivatePostfix {
        let config = dir.join("etc");
        let queue = dir.join("queue");
        let data = dir.join("data");
        for d in [&config, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        let status = Command::new("chown")
            .args(["postfix:postfix"])
            .arg(&data)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(
            config.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {queue}\n\
                 data_directory = {data}\n\
                 maillog_file = {log}\n\
                 maillog_file_prefixes = {dir}\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 myhostname = relay.test\n\
                 myorigin = relay.test\n\
                 mydestination =\n\
                 mynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\n\
                 default_transport = smtp:[127.0.0.1]:{sink_port}\n\
                 smtp_dns_support_level = disabled\n\
                 smtp_tls_security_level = none\n\
                 message_size_limit = 31457280\n\
                 alias_maps =\n\
                 alias_database =\n\
                 disable_mime_input_processing = yes\n\
                 header_size_limit = 102400\n\
                 {main_extra}",
                queue = queue.display(),
                data = data.display(),
                log = dir.join("maillog").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let internal = [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - 0 discard",
            "local unix - n n - - local",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ];
        std::fs::write(
            config.join("master.cf"),
            format!("{services}{}\n", internal.join("\n")),
        )
        .unwrap();
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&config)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postfix start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("maillog")).unwrap_or_default()
        );
        for &port in ports {
            wait_for_port(port);
        }
        PrivatePostfix { config }
    }
}

impl Drop for PrivatePostfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .output();
    }
}

/// A private directory the Postfix daemons (user postfix) can enter.
pub fn postfix_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

/// xorshift64*: reproducible random inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
