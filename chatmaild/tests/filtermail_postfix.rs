//! filtermail between two real Postfix smtpds, wired like a relay: a before-queue
//! `smtpd_proxy_filter` on the submission side, re-injection into a second smtpd, queue,
//! then Postfix's smtp client delivers to a recording sink. Everything on loopback.
//!
//! Runs only with `CHATMAIL_POSTFIX_TESTS=1`, as root, with Debian's `postfix` package
//! installed (no running system instance needed; the test starts its own with a private
//! config and queue directory and stops it again).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn enabled() -> bool {
    std::env::var("CHATMAIL_POSTFIX_TESTS").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/filtermail")
            .join(name),
    )
    .unwrap()
}

/// Recording SMTP sink standing in for the remote MTA / Dovecot.
fn start_sink() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
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
            });
        }
    });
    (port, rx)
}

struct Postfix {
    config: PathBuf,
}

impl Postfix {
    fn start(
        dir: &Path,
        submit_port: u16,
        filter_port: u16,
        reinject_port: u16,
        sink_port: u16,
    ) -> Postfix {
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
                 mydestination =\n\
                 mynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\n\
                 default_transport = smtp:[127.0.0.1]:{sink_port}\n\
                 smtp_dns_support_level = disabled\n\
                 smtp_tls_security_level = none\n\
                 message_size_limit = 31457280\n\
                 alias_maps =\n\
                 alias_database =\n",
                queue = queue.display(),
                data = data.display(),
                log = dir.join("maillog").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let services = [
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
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ];
        let master = format!(
            "127.0.0.1:{submit_port} inet n - n - - smtpd\n  -o smtpd_proxy_filter=127.0.0.1:{filter_port}\n\
             127.0.0.1:{reinject_port} inet n - n - 10 smtpd\n  -o syslog_name=postfix/reinject\n{}\n",
            services.join("\n")
        );
        std::fs::write(config.join("master.cf"), master).unwrap();
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
        wait_for_port(submit_port);
        wait_for_port(reinject_port);
        Postfix { config }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .output();
    }
}

struct Filtermail(Child);

impl Drop for Filtermail {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_filtermail(dir: &Path, mode: &str, filter_port: u16, reinject_port: u16) -> Filtermail {
    let ini = dir.join(format!("{mode}.ini"));
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = relay.test\nmailboxes_dir = {}\n\
             filtermail_smtp_port = {filter_port}\nfiltermail_smtp_port_incoming = {filter_port}\n\
             filtermail_http_port_incoming = {}\n\
             postfix_reinject_port = {reinject_port}\npostfix_reinject_port_incoming = {reinject_port}\n",
            mail.display(),
            free_port()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_filtermail"))
        .arg(&ini)
        .arg(mode)
        .env("FILTERMAIL_SKIP_DKIM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(filter_port);
    Filtermail(child)
}

/// Submit one message; returns the reply to the final dot.
fn submit(port: u16, from: &str, to: &str, message: &[u8]) -> String {
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
    for cmd in [
        "EHLO client.test".to_owned(),
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
        "DATA".to_owned(),
    ] {
        wr.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let r = reply();
        assert!(r.starts_with('2') || r.starts_with('3'), "{cmd}: {r}");
    }
    wr.write_all(&chatmaild::filtermail::data::stuff(message))
        .unwrap();
    wr.write_all(b".\r\n").unwrap();
    let result = reply();
    wr.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = rd.read_to_end(&mut rest);
    result
}

#[test]
fn postfix_proxy_filter_outgoing() {
    if !enabled() {
        eprintln!("skipped: set CHATMAIL_POSTFIX_TESTS=1 (root, postfix installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Postfix's daemons run as user postfix and must reach the queue inside.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (sink_port, delivered) = start_sink();
    let (submit_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    let _filter = start_filtermail(dir.path(), "outgoing", filter_port, reinject_port);
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
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (sink_port, delivered) = start_sink();
    let (smtp_port, filter_port, reinject_port) = (free_port(), free_port(), free_port());
    let _filter = start_filtermail(dir.path(), "incoming", filter_port, reinject_port);
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
