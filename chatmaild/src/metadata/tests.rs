//! Metadata dict + notifier against a loopback HTTP stand-in for the notification proxy.

use std::collections::VecDeque;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::notifier::{Notifier, NotifierSettings, QueueItem};
use super::tokens::TokenStore;
use super::*;
use crate::dict::Session;

const ADDR: &str = "abcdefghi@chat.example.org";
const SERVER_KEY: &str =
    "shared/5cbe730f146fea6535be0d003dd4fc98/vendor/vendor.dovecot/pvt/server/vendor/deltachat/";

/// Answers POSTs with the queued status codes (200 once they run out), records bodies.
#[derive(Clone, Default)]
struct FakeProxy {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl FakeProxy {
    async fn start(statuses: &[u16]) -> (FakeProxy, String) {
        let proxy = FakeProxy {
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            ..FakeProxy::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let p = p.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read headers, then Content-Length bytes of body.
                    let (head_end, len) = loop {
                        let n = sock.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = sock.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
                    p.bodies.lock().unwrap().push(body);
                    let status = p.statuses.lock().unwrap().pop_front().unwrap_or(200);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        (proxy, url)
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    config: Config,
    dict: Arc<MetadataDict>,
    queue_dir: PathBuf,
}

fn fixture(url: &str, extra: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mbox = tmp.path().join("mail");
    std::fs::create_dir_all(mbox.join(ADDR)).unwrap();
    let queue_dir = mbox.join(QUEUE_DIR_NAME);
    std::fs::create_dir_all(&queue_dir).unwrap();
    let config = Config::parse(
        &format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\nturn_socket_path = {}\n{extra}",
            mbox.display(),
            tmp.path().join("turn.socket").display()
        ),
        "t.ini",
    )
    .unwrap();
    let settings = NotifierSettings {
        url: url.to_owned(),
        base_delay: 0,
        ..NotifierSettings::default()
    };
    let notifier = Notifier::new(queue_dir.clone(), TokenStore::new(&mbox), settings).unwrap();
    let appversions = tmp.path().join("appversions.json");
    let dict = Arc::new(MetadataDict::new(&config, notifier, appversions));
    Fixture {
        tmp,
        config,
        dict,
        queue_dir,
    }
}

/// Feed lines through a protocol session on a blocking thread, like the server does.
async fn session(dict: &Arc<MetadataDict>, lines: &[String]) -> Vec<Option<String>> {
    let dict = dict.clone();
    let lines = lines.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut s = Session::new();
        lines
            .iter()
            .map(|l| s.handle_line(dict.as_ref(), l.as_bytes()))
            .collect()
    })
    .await
    .unwrap()
}

async fn lookup(f: &Fixture, key: &str) -> Option<String> {
    session(&f.dict, &[format!("L{key}\t{ADDR}")])
        .await
        .remove(0)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn queue_len(f: &Fixture) -> usize {
    std::fs::read_dir(&f.queue_dir).unwrap().count()
}

fn set_token(token: &str) -> Vec<String> {
    vec![
        format!("B1\t{ADDR}"),
        format!("S1\tpriv/5cbe730f146fea6535be0d003dd4fc98/devicetoken\t{token}"),
        "C1".to_owned(),
    ]
}

fn message_new() -> Vec<String> {
    vec![
        format!("B2\t{ADDR}"),
        "S2\tpriv/5cbe730f146fea6535be0d003dd4fc98/messagenew".to_owned(),
        "C2".to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registration_and_lookup() {
    let f = fixture("http://127.0.0.1:9/notify", "");
    let key = "priv/5cbe730f146fea6535be0d003dd4fc98/devicetoken";
    assert_eq!(lookup(&f, key).await.unwrap(), "O\n");
    assert_eq!(
        session(&f.dict, &set_token("tok-AAA")).await[2].as_deref(),
        Some("O\n")
    );
    assert_eq!(
        session(&f.dict, &set_token("tok-BBB")).await[2].as_deref(),
        Some("O\n")
    );
    let reply = lookup(&f, key).await.unwrap();
    let mut tokens: Vec<&str> = reply
        .trim_end()
        .strip_prefix('O')
        .unwrap()
        .split(' ')
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["tok-AAA", "tok-BBB"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_caps_fail_the_commit() {
    use crate::metadata::tokens::{MAX_TOKEN_BYTES, MAX_TOKENS};
    let f = fixture("http://127.0.0.1:9/notify", "");
    let commit = async |token: &str| session(&f.dict, &set_token(token)).await[2].clone();
    for i in 0..MAX_TOKENS {
        assert_eq!(commit(&format!("tok-{i}")).await.as_deref(), Some("O\n"));
    }
    assert_eq!(commit("tok-new").await.as_deref(), Some("F\n"));
    assert_eq!(
        commit("tok-0").await.as_deref(),
        Some("O\n"),
        "re-set at the cap"
    );
    let long = "x".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(commit(&long).await.as_deref(), Some("F\n"));
    let key = "priv/5cbe730f146fea6535be0d003dd4fc98/devicetoken";
    let stored = lookup(&f, key).await.unwrap();
    assert_eq!(stored.split(' ').count(), MAX_TOKENS, "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_for_unknown_user_dir_fails_commit() {
    let f = fixture("http://127.0.0.1:9/notify", "");
    let r = session(
        &f.dict,
        &[
            "B1\tnobody@chat.example.org".to_owned(),
            "S1\tpriv/g/devicetoken\tt".to_owned(),
            "C1".to_owned(),
        ],
    )
    .await;
    assert_eq!(r[2].as_deref(), Some("F\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandled_sets_fail_and_unknown_lookups_are_not_found() {
    let f = fixture("http://127.0.0.1:9/notify", "");
    let r = session(
        &f.dict,
        &[
            format!("B1\t{ADDR}"),
            "S1\tpriv/g/other\tx".to_owned(),
            "C1".to_owned(),
        ],
    )
    .await;
    assert_eq!(r[2].as_deref(), Some("F\n"));
    for key in [
        "priv/123/chatmail",
        "shared/g/comment",
        &format!("{SERVER_KEY}unknown"),
        "nonsense",
    ] {
        assert_eq!(lookup(&f, key).await.as_deref(), Some("N\n"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_attributes() {
    let f = fixture("http://127.0.0.1:9/notify", "");
    assert_eq!(
        lookup(&f, &format!("{SERVER_KEY}irohrelay"))
            .await
            .as_deref(),
        Some("Ohttps://chat.example.org\n")
    );
    assert_eq!(
        lookup(&f, &format!("{SERVER_KEY}maxsmtprecipients"))
            .await
            .as_deref(),
        Some("O1000\n")
    );
    // No appversions file → not found; with file → compact JSON.
    assert_eq!(
        lookup(&f, &format!("{SERVER_KEY}appversions"))
            .await
            .as_deref(),
        Some("N\n")
    );
    std::fs::write(
        f.tmp.path().join("appversions.json"),
        appversions::DEFAULT_CONTENT,
    )
    .unwrap();
    let reply = lookup(&f, &format!("{SERVER_KEY}appversions"))
        .await
        .unwrap();
    assert!(
        reply.starts_with("O{\"clients\":[{\"clientId\":\"deltachat\""),
        "{reply}"
    );
    assert_eq!(reply.matches('\n').count(), 1);

    // TURN: no socket → not found; with a credential server → host:3478:user:pass.
    assert_eq!(
        lookup(&f, &format!("{SERVER_KEY}turn")).await.as_deref(),
        Some("N\n")
    );
    let listener = UnixListener::bind(&f.config.turn_socket_path).unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"1767225600:Zm9vYmFy\n");
        }
    });
    assert_eq!(
        lookup(&f, &format!("{SERVER_KEY}turn")).await.as_deref(),
        Some("Ochat.example.org:3478:1767225600:Zm9vYmFy\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iroh_relay_empty_means_not_advertised() {
    let f = fixture("http://127.0.0.1:9/notify", "iroh_relay =\n");
    assert_eq!(
        lookup(&f, &format!("{SERVER_KEY}irohrelay"))
            .await
            .as_deref(),
        Some("N\n")
    );
    let f = fixture("http://127.0.0.1:9/notify", "mail_domain_unused = 1\n");
    assert_eq!(f.config.unused_keys, ["mail_domain_unused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_turn_hostname_is_bracketed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::parse(
        &format!(
            "[params]\nmail_domain = 203.0.113.7\nmailboxes_dir = {}\n",
            tmp.path().display()
        ),
        "t.ini",
    )
    .unwrap();
    let notifier = Notifier::new(
        tmp.path().to_owned(),
        TokenStore::new(tmp.path()),
        NotifierSettings::default(),
    )
    .unwrap();
    let d = MetadataDict::new(&config, notifier, tmp.path().join("x"));
    assert_eq!(d.turn_hostname, "[203.0.113.7]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_triggers_one_push_per_token() {
    let (proxy, url) = FakeProxy::start(&[]).await;
    let f = fixture(&url, "");
    session(&f.dict, &set_token("tok-AAA")).await;
    session(&f.dict, &set_token("tok-BBB")).await;
    let r = session(&f.dict, &message_new()).await;
    assert_eq!(r, [None, None, Some("O\n".to_owned())]);
    wait_for("two pushes", || proxy.bodies().len() == 2).await;
    let mut bodies = proxy.bodies();
    bodies.sort();
    assert_eq!(bodies, ["tok-AAA", "tok-BBB"]);
    wait_for("queue drained", || queue_len(&f) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tokens_no_push() {
    let (proxy, url) = FakeProxy::start(&[]).await;
    let f = fixture(&url, "");
    let r = session(&f.dict, &message_new()).await;
    assert_eq!(r[2].as_deref(), Some("O\n"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(proxy.bodies().is_empty());
    assert_eq!(queue_len(&f), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_token_is_removed() {
    let (proxy, url) = FakeProxy::start(&[410]).await;
    let f = fixture(&url, "");
    session(&f.dict, &set_token("tok-GONE")).await;
    session(&f.dict, &message_new()).await;
    wait_for("queue drained", || queue_len(&f) == 0).await;
    assert_eq!(proxy.bodies(), ["tok-GONE"]);
    let key = "priv/g/devicetoken";
    wait_for("token removed", || {
        TokenStore::new(&f.config.mailboxes_dir)
            .tokens(ADDR)
            .unwrap()
            .is_empty()
    })
    .await;
    assert_eq!(lookup(&f, key).await.as_deref(), Some("O\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_then_succeed() {
    let (proxy, url) = FakeProxy::start(&[500, 503]).await;
    let f = fixture(&url, "");
    session(&f.dict, &set_token("tok-R")).await;
    session(&f.dict, &message_new()).await;
    wait_for("three attempts", || proxy.bodies().len() == 3).await;
    wait_for("queue drained", || queue_len(&f) == 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(proxy.bodies().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_five_attempts() {
    let (proxy, url) = FakeProxy::start(&[500; 10]).await;
    let f = fixture(&url, "");
    session(&f.dict, &set_token("tok-F")).await;
    session(&f.dict, &message_new()).await;
    wait_for("five attempts", || proxy.bodies().len() == 5).await;
    wait_for("queue drained", || queue_len(&f) == 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.bodies().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_retried() {
    // Nothing listens on this port: every attempt fails fast, then the item is dropped.
    let f = fixture("http://127.0.0.1:9/notify", "");
    session(&f.dict, &set_token("tok-X")).await;
    session(&f.dict, &message_new()).await;
    wait_for("queue drained", || queue_len(&f) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_items_are_requeued_and_junk_removed() {
    let (proxy, url) = FakeProxy::start(&[]).await;
    let f = fixture(&url, "");
    let now = crate::user::now_secs();
    QueueItem::create(&f.queue_dir, ADDR, now, "tok-P1").unwrap();
    QueueItem::create(&f.queue_dir, ADDR, now - 6 * 3600, "tok-EXPIRED").unwrap();
    std::fs::write(
        f.queue_dir.join("abc.tmp"),
        format!("{ADDR}\n{now}\ntok-TMP"),
    )
    .unwrap();
    std::fs::write(f.queue_dir.join("junk"), "not an item").unwrap();
    let notifier = Notifier::new(
        f.queue_dir.clone(),
        TokenStore::new(&f.config.mailboxes_dir),
        NotifierSettings {
            url,
            base_delay: 0,
            ..NotifierSettings::default()
        },
    )
    .unwrap();
    let n = tokio::task::spawn_blocking(move || notifier.requeue_persisted().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 2);
    wait_for("queue drained", || queue_len(&f) == 0).await;
    assert_eq!(proxy.bodies(), ["tok-P1"]);
}
