//! Throughput and latency of the outgoing filter: SMTP in, checks, SMTP re-injection into
//! a loopback sink that accepts everything.
//!
//! `cargo bench -p chatmaild --bench filtermail` (env BENCH_MESSAGES, BENCH_CONNECTIONS).
//! Prints messages/s and per-message latency percentiles (MAIL FROM to final reply), plus
//! the cost of the content check alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmaild::filtermail::data::{stuff, unstuff};
use chatmaild::filtermail::outgoing::{self, Outgoing};
use chatmaild::filtermail::smtp::Envelope;
use chatmaild::filtermail::smtp::client::Relay;
use chatmaild::filtermail::smtp::server::{Limits, serve};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SENDER: &str = "alice123@chat.example.org";

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

/// One client connection sending `count` messages back to back; returns latencies.
async fn client(port: u16, count: usize, message: Arc<Vec<u8>>) -> Vec<Duration> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    read_reply(&mut rd, &mut line).await;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        for cmd in [
            format!("MAIL FROM:<{SENDER}>\r\n"),
            "RCPT TO:<bob456789@remote.example>\r\n".to_owned(),
            "DATA\r\n".to_owned(),
        ] {
            wr.write_all(cmd.as_bytes()).await.unwrap();
            read_reply(&mut rd, &mut line).await;
        }
        wr.write_all(&message).await.unwrap();
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

fn main() {
    let messages = env_or("BENCH_MESSAGES", 4000);
    let connections = env_or("BENCH_CONNECTIONS", 8);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/filtermail/encrypted.eml");
    let raw = std::fs::read(path).unwrap();
    let message = Arc::new(stuff(&raw));

    // Content check alone (parse + PGP/MIME + packet walk).
    let envelope = Envelope {
        mail_from: Some(SENDER.into()),
        rcpt_to: vec!["bob456789@remote.example".into()],
        data: message.to_vec(),
    };
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        outgoing::check(&envelope, &unstuff(&envelope.data)).unwrap();
    }
    let per_check = start.elapsed() / rounds;
    println!(
        "check only: {:.1} us per message ({} bytes)",
        per_check.as_secs_f64() * 1e6,
        raw.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink_port = sink().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Outgoing::new(u32::MAX, u32::MAX, Relay::new("127.0.0.1", sink_port));
        tokio::spawn(serve(listener, Arc::new(handler), Limits::new(31_457_280)));

        for conns in [1, connections] {
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
            println!(
                "outgoing filter, {conns} connection(s): {} messages in {:.2} s = {:.0} messages/s; \
                 latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                all.len(),
                elapsed.as_secs_f64(),
                all.len() as f64 / elapsed.as_secs_f64(),
                percentile(&all, 0.5).as_secs_f64() * 1e3,
                percentile(&all, 0.99).as_secs_f64() * 1e3,
                all.last().unwrap().as_secs_f64() * 1e3,
            );
        }
    });
}
