//! `POST /mxdeliv` on loopback: the incoming filter behind HTTP, re-injecting into a
//! recording SMTP sink.

use std::sync::{Arc, Mutex};

use chatmaild::filtermail::http;
use chatmaild::filtermail::incoming::{ENFORCE_E2EE_FILE, Incoming, Mailboxes};
use chatmaild::filtermail::smtp::client::Relay;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SENDER: &str = "alice123@chat.example.org";
const RCPT: &str = "bob456789@remote.example";

type Log = Arc<Mutex<Vec<(String, Vec<String>, Vec<u8>)>>>;

/// Minimal accepting SMTP sink recording (MAIL FROM arg, RCPT args, data).
async fn sink() -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log2.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut rd = BufReader::new(rd);
                wr.write_all(b"220 sink\r\n").await?;
                let (mut from, mut rcpts) = (String::new(), Vec::new());
                loop {
                    let mut line = String::new();
                    if rd.read_line(&mut line).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    let reply: &[u8] = if let Some(a) = line.strip_prefix("MAIL FROM:") {
                        from = a.trim_end().to_owned();
                        b"250 ok\r\n"
                    } else if let Some(a) = line.strip_prefix("RCPT TO:") {
                        rcpts.push(a.trim_end().to_owned());
                        b"250 ok\r\n"
                    } else if line.starts_with("DATA") {
                        wr.write_all(b"354 go\r\n").await?;
                        let mut data = Vec::new();
                        loop {
                            let mut l = Vec::new();
                            rd.read_until(b'\n', &mut l).await?;
                            if l == b".\r\n" || l.is_empty() {
                                break;
                            }
                            data.extend_from_slice(&l);
                        }
                        log.lock()
                            .unwrap()
                            .push((from.clone(), std::mem::take(&mut rcpts), data));
                        b"250 queued\r\n"
                    } else if line.starts_with("QUIT") {
                        wr.write_all(b"221 bye\r\n").await?;
                        return Ok(());
                    } else {
                        b"250 ok\r\n"
                    };
                    wr.write_all(reply).await?;
                }
            });
        }
    });
    (port, log)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/filtermail")
            .join(name),
    )
    .unwrap()
}

async fn start(max_size: usize) -> (String, Log, tempfile::TempDir) {
    let (sink_port, log) = sink().await;
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join(RCPT);
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join(ENFORCE_E2EE_FILE), b"").unwrap();
    let handler = Incoming::new(
        Mailboxes {
            dir: dir.path().to_owned(),
            domain: "remote.example".into(),
        },
        None,
        Relay::new("127.0.0.1", sink_port),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mxdeliv", listener.local_addr().unwrap());
    tokio::spawn(http::serve(listener, Arc::new(handler), max_size));
    (url, log, dir)
}

async fn post(url: &str, from: Option<&str>, to: &[&str], body: Vec<u8>) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).body(body);
    if let Some(from) = from {
        req = req.header("X-MAIL-FROM", from);
    }
    for rcpt in to {
        req = req.header("X-MAIL-TO", *rcpt);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn delivery_and_refusals() {
    let (url, log, _dir) = start(100_000).await;
    let msg = fixture("encrypted.eml");
    assert_eq!(
        post(
            &url,
            Some(SENDER),
            &[RCPT, "carol1234@remote.example"],
            msg.clone()
        )
        .await,
        (200, "250 OK".into())
    );
    assert_eq!(
        post(&url, Some(SENDER), &[RCPT], fixture("plain.eml")).await,
        (
            400,
            "523 Encryption Needed: Invalid Unencrypted Mail".into()
        )
    );
    assert_eq!(
        post(&url, Some(SENDER), &[], msg.clone()).await,
        (400, "503 5.5.1 Error: need RCPT command".into())
    );
    assert_eq!(
        post(&url, Some(SENDER), &["not an address"], msg.clone()).await,
        (400, "501 5.1.3 Bad recipient address syntax".into())
    );
    // No X-MAIL-FROM: null sender; a bounce must still pass the filter.
    assert_eq!(
        post(&url, None, &[RCPT], fixture("mailer-daemon.eml")).await,
        (200, "250 OK".into())
    );
    // LF-only bodies are re-injected with CRLF and dot-stuffed.
    let lf = String::from_utf8(msg.clone())
        .unwrap()
        .replace("\r\n", "\n")
        + ".dot\n";
    assert_eq!(
        post(&url, Some(SENDER), &[RCPT], lf.into_bytes()).await,
        (200, "250 OK".into())
    );

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].0, format!("<{SENDER}>"));
    assert_eq!(
        log[0].1,
        vec![format!("<{RCPT}>"), "<carol1234@remote.example>".into()]
    );
    assert_eq!(log[0].2, msg);
    assert_eq!(log[1].0, "<>");
    let mut want = msg.clone();
    want.extend_from_slice(b"..dot\r\n");
    assert_eq!(log[2].2, want);
}

#[tokio::test]
async fn method_path_and_size() {
    let (url, log, _dir) = start(2_000).await;
    let client = reqwest::Client::new();
    let get = client.get(&url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let other = client
        .post(url.replace("/mxdeliv", "/other"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let big = vec![b'a'; 5_000];
    assert_eq!(
        post(&url, Some(SENDER), &[RCPT], big).await,
        (413, "552 Message exceeds maximum size".into())
    );
    assert!(log.lock().unwrap().is_empty());
}
