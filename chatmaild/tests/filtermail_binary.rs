//! The `filtermail` binary as systemd runs it: `filtermail <ini> <mode>`, on the ports of
//! the ini, re-injecting into a recording sink on loopback.

use std::io::{BufRead, BufReader as StdBufReader, Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-connection-at-a-time recording SMTP sink on a background thread; each
/// delivered message's (MAIL FROM line, data) is sent on the channel.
fn start_sink() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut wr = stream.try_clone().unwrap();
            let mut rd = StdBufReader::new(stream);
            let _ = wr.write_all(b"220 sink\r\n");
            let mut from = String::new();
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let up = line.to_ascii_uppercase();
                if up.starts_with("MAIL") {
                    from = line.trim_end().to_owned();
                }
                if up.starts_with("DATA") {
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
                    let _ = wr.write_all(b"250 queued\r\n");
                } else if up.starts_with("QUIT") {
                    let _ = wr.write_all(b"221 bye\r\n");
                    break;
                } else if up.starts_with("EHLO") {
                    let _ = wr.write_all(b"250-sink\r\n250 8BITMIME\r\n");
                } else {
                    let _ = wr.write_all(b"250 ok\r\n");
                }
            }
        }
    });
    (port, rx)
}

/// Start the binary and wait for its "entering serving loop" line.
fn start_filtermail(ini: &std::path::Path, mode: &str) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_filtermail"))
        .arg(ini)
        .arg(mode)
        .env("FILTERMAIL_SKIP_DKIM", "1")
        .env_remove("CHATMAILD_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in StdBufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let running = Running { child };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("filtermail did not start");
        if line.contains("entering serving loop") {
            return running;
        }
    }
}

fn send(port: u16, from: &str, to: &str, message: &[u8]) -> String {
    let stream = StdStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut wr = stream.try_clone().unwrap();
    let mut rd = StdBufReader::new(stream);
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
        "EHLO test".to_owned(),
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
    ] {
        wr.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        assert!(reply().starts_with("250"), "{cmd}");
    }
    wr.write_all(b"DATA\r\n").unwrap();
    assert!(reply().starts_with("354"));
    wr.write_all(&chatmaild::filtermail::data::stuff(message))
        .unwrap();
    wr.write_all(b".\r\n").unwrap();
    let result = reply();
    wr.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = rd.read_to_end(&mut rest);
    result
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/filtermail")
            .join(name),
    )
    .unwrap()
}

fn write_ini(
    dir: &std::path::Path,
    sink_port: u16,
    out_port: u16,
    in_port: u16,
) -> std::path::PathBuf {
    let ini = dir.join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n\
             filtermail_smtp_port = {out_port}\nfiltermail_smtp_port_incoming = {in_port}\n\
             postfix_reinject_port = {sink_port}\npostfix_reinject_port_incoming = {sink_port}\n",
            dir.join("mail").display()
        ),
    )
    .unwrap();
    ini
}

#[test]
fn binary_outgoing_and_incoming() {
    let dir = tempfile::tempdir().unwrap();
    let (sink_port, delivered) = start_sink();
    let (out_port, in_port) = (free_port(), free_port());
    let ini = write_ini(dir.path(), sink_port, out_port, in_port);
    let rcpt = "bob456789@chat.example.org";
    let user = dir.path().join("mail").join(rcpt);
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("enforceE2EEincoming"), b"").unwrap();

    for (mode, port) in [("outgoing", out_port), ("incoming", in_port)] {
        let _filter = start_filtermail(&ini, mode);
        let msg = fixture("encrypted.eml");
        assert_eq!(
            send(port, "alice123@chat.example.org", rcpt, &msg),
            "250 OK",
            "{mode}"
        );
        let (from, data) = delivered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(from, "MAIL FROM:<alice123@chat.example.org>");
        assert_eq!(data, chatmaild::filtermail::data::stuff(&msg));
        let refused = send(
            port,
            "alice123@chat.example.org",
            rcpt,
            &fixture("fake-encrypted.eml"),
        );
        assert!(refused.starts_with("523 "), "{mode}: {refused}");
        assert!(delivered.try_recv().is_err());
    }
}

#[test]
fn binary_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_filtermail"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: filtermail"));
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(dir.path(), 1, free_port(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_filtermail"))
        .arg(&ini)
        .arg("sideways")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mode"));
}
