//! Throughput and latency of the outgoing filter: SMTP in, checks, SMTP re-injection into
//! a loopback sink that accepts everything.
//!
//! `cargo bench -p chatmaild --bench filtermail` (env BENCH_MESSAGES, BENCH_CONNECTIONS).
//! Prints messages/s and per-message latency percentiles (MAIL FROM to final reply), plus
//! the cost of the content check alone.
//!
//! The same load runs against the in-process server, our `filtermail` binary and, when
//! `FILTERMAIL_UPSTREAM_BIN` names one, an upstream `chatmail/filtermail` binary (built
//! separately from its source; it is only run, as `<bin> <ini> outgoing`). Both binaries
//! get the same ini, log to /dev/null and re-inject into the same sink, and the rows are
//! printed side by side.
//!
//! `BENCH_CHATMAILD=<path>` measures that build of the multi-call binary instead of the
//! bench's own (e.g. the static builds of each opt-level, `chatmaild/benches/opt-levels`);
//! then the in-process rows are left out, so the table shows that binary only.
//!
//! The message is a real Delta Chat one (`tests/fixtures/filtermail/deltachat/dc-01.eml`,
//! OpenPGP v6 in new-format packets, which every filtermail version accepts; upstream
//! before 0.3 refuses the old-format packets of `encrypted.eml`), or `BENCH_MESSAGE`. The
//! envelope sender is its `From:` address.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmaild::filtermail::data::{stuff, unstuff};
use chatmaild::filtermail::mime::Mail;
use chatmaild::filtermail::outgoing::{self, Outgoing};
use chatmaild::filtermail::smtp::Envelope;
use chatmaild::filtermail::smtp::client::Relay;
use chatmaild::filtermail::smtp::server::{Limits, serve};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Accept-everything SMTP server standing in for Postfix.
async fn sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (rd, mut wr) = stream.into_split();
                let mut rd = BufReader::new(rd);
                wr.write_all(b"220 sink\r\n").await?;
                let mut line = Vec::new();
                let mut in_data = false;
                loop {
                    line.clear();
                    if rd.read_until(b'\n', &mut line).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    let reply: &[u8] = if in_data {
                        if line != b".\r\n" {
                            continue;
                        }
                        in_data = false;
                        b"250 queued\r\n"
                    } else if line.starts_with(b"DATA") {
                        in_data = true;
                        b"354 go\r\n"
                    } else if line.starts_with(b"QUIT") {
                        wr.write_all(b"221 bye\r\n").await?;
                        return Ok(());
                    } else if line.starts_with(b"EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    wr.write_all(reply).await?;
                }
            });
        }
    });
    port
}

async fn read_reply(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) {
    loop {
        line.clear();
        rd.read_line(line).await.unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

/// The benchmark's message and its sender.
struct Message {
    sender: String,
    stuffed: Vec<u8>,
}

/// One client connection sending `count` messages back to back; returns latencies.
async fn client(port: u16, count: usize, message: Arc<Message>) -> Vec<Duration> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    read_reply(&mut rd, &mut line).await;
    wr.write_all(b"EHLO bench\r\n").await.unwrap();
    read_reply(&mut rd, &mut line).await;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        for cmd in [
            format!("MAIL FROM:<{}>\r\n", message.sender),
            "RCPT TO:<bob456789@remote.example>\r\n".to_owned(),
            "DATA\r\n".to_owned(),
        ] {
            wr.write_all(cmd.as_bytes()).await.unwrap();
            read_reply(&mut rd, &mut line).await;
        }
        wr.write_all(&message.stuffed).await.unwrap();
        wr.write_all(b".\r\n").await.unwrap();
        read_reply(&mut rd, &mut line).await;
        assert!(line.starts_with("250"), "{line}");
        latencies.push(start.elapsed());
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One measured run.
struct Row {
    target: String,
    connections: usize,
    messages: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `messages` spread over `conns` connections, after a short warm-up.
async fn load(
    target: &str,
    port: u16,
    conns: usize,
    messages: usize,
    message: &Arc<Message>,
) -> Row {
    client(port, 20, message.clone()).await;
    let per_conn = messages / conns;
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(port, per_conn, message.clone())))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    Row {
        target: target.to_owned(),
        connections: conns,
        messages: all.len(),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        max: *all.last().unwrap(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `bin <ini> outgoing` on a free port re-injecting into `sink_port`; the rate limit
/// is set out of reach so that every message is filtered and relayed.
fn start_binary(bin: &Path, dir: &Path, sink_port: u16) -> (support::Running, u16) {
    let port = free_port();
    let ini = dir.join(format!("bench-{port}.ini"));
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n\
             filtermail_smtp_port = {port}\npostfix_reinject_port = {sink_port}\n\
             max_user_send_per_minute = 1000000000\nmax_user_send_burst_size = 1000000000\n",
            dir.display()
        ),
    )
    .unwrap();
    let running = support::start(bin, &[ini.as_os_str(), "outgoing".as_ref()], || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (running, port)
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<34} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "outgoing filter", "conns", "messages", "msg/s", "p50 ms", "p99 ms", "max ms"
    );
    for r in rows {
        println!(
            "{:<34} {:>5} {:>8} {:>9.0} {:>9.2} {:>9.2} {:>9.2}",
            r.target,
            r.connections,
            r.messages,
            r.per_second,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    let messages = env_or("BENCH_MESSAGES", 4000);
    let connections = env_or("BENCH_CONNECTIONS", 8);
    let upstream = std::env::var_os("FILTERMAIL_UPSTREAM_BIN").map(std::path::PathBuf::from);
    let own = Path::new(env!("CARGO_BIN_EXE_chatmaild"));
    // absolute: the symlink to it lives in a temporary directory
    let external = std::env::var_os("BENCH_CHATMAILD").map(|b| {
        std::fs::canonicalize(&b).unwrap_or_else(|e| panic!("BENCH_CHATMAILD {b:?}: {e}"))
    });
    let path = std::env::var_os("BENCH_MESSAGE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/filtermail/deltachat/dc-01.eml")
        },
        std::path::PathBuf::from,
    );
    let raw = std::fs::read(&path).unwrap();
    let sender = Mail::parse(&raw).from_address().unwrap();
    let message = Arc::new(Message {
        sender: sender.clone(),
        stuffed: stuff(&raw),
    });

    // Content check alone (parse + PGP/MIME + packet walk).
    let envelope = Envelope {
        mail_from: Some(sender),
        rcpt_to: vec!["bob456789@remote.example".into()],
        data: message.stuffed.clone(),
    };
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        outgoing::check(&envelope, &unstuff(&envelope.data)).unwrap();
    }
    let per_check = start.elapsed() / rounds;
    println!(
        "check only: {:.1} us per message ({}, {} bytes)",
        per_check.as_secs_f64() * 1e6,
        path.display(),
        raw.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("filtermail-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rows = runtime.block_on(async {
        let sink_port = sink().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Outgoing::new(u32::MAX, u32::MAX, Relay::new("127.0.0.1", sink_port));
        tokio::spawn(serve(listener, Arc::new(handler), Limits::new(31_457_280)));

        // the multi-call binary runs as filtermail under that name, as on a relay
        let ours = dir.join("filtermail");
        std::os::unix::fs::symlink(external.as_deref().unwrap_or(own), &ours).unwrap();
        let mut targets: Vec<(String, Option<std::path::PathBuf>)> = match &external {
            Some(bin) => vec![(format!("binary {}", bin.display()), Some(ours))],
            None => vec![
                ("ours, in-process".into(), None),
                ("ours, binary".into(), Some(ours)),
            ],
        };
        if let Some(bin) = upstream {
            targets.push(("upstream, binary".into(), Some(bin)));
        }
        let mut rows = Vec::new();
        for (name, bin) in targets {
            // Processes run one at a time so that they do not compete for the cores.
            let running = bin.map(|b| start_binary(&b, &dir, sink_port));
            let target_port = running.as_ref().map_or(port, |(_, p)| *p);
            for conns in [1, connections] {
                rows.push(load(&name, target_port, conns, messages, &message).await);
            }
        }
        rows
    });
    let _ = std::fs::remove_dir_all(&dir);
    print_rows(&rows);
}
