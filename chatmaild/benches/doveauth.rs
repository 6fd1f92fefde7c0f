//! Throughput of doveauth over its unix socket: account creations (SHA512-crypt hashing,
//! locking, atomic writes) and passdb lookups of existing accounts.
//!
//! `cargo bench -p chatmaild --bench doveauth` (env BENCH_USERS, BENCH_LOOKUPS,
//! BENCH_CONNECTIONS override the sizes). With BENCH_SOCKET=<path> the load goes to an
//! already running doveauth for `chat.example.org` instead (to compare implementations).
//! With BENCH_CHATMAILD=<path> the bench starts that build of the multi-call binary as
//! `<path> doveauth <socket> <ini>` and measures it (e.g. the static builds of each
//! opt-level, `chatmaild/benches/opt-levels`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chatmaild::Config;
use chatmaild::dict;
use chatmaild::doveauth::AuthDict;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each connection sends its share of lookups one at a time, like a Dovecot auth worker.
async fn run(socket: &std::path::Path, connections: usize, keys: Arc<Vec<String>>) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let keys = keys.clone();
        let socket = socket.to_owned();
        tasks.push(tokio::spawn(async move {
            let stream = UnixStream::connect(&socket).await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            for key in keys.iter().skip(c).step_by(connections) {
                w.write_all(format!("L{key}\n").as_bytes()).await.unwrap();
                line.clear();
                r.read_line(&mut line).await.unwrap();
                assert!(line.starts_with('O'), "unexpected reply {line:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// Start `bin doveauth` on a socket in `dir`, its resource checks out of reach as in the
/// in-process server, and wait until it listens.
fn start_doveauth(bin: &Path, dir: &Path) -> (support::Running, PathBuf) {
    let socket = dir.join("external-doveauth.socket");
    let ini = dir.join("external-doveauth.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\npassdb_path = {}\n\
             max_load_1m = 1000000\nmin_available_memory = 0\nmin_free_disk_space = 0\n",
            dir.join("external-mail").display(),
            dir.join("external-passdb.sqlite").display()
        ),
    )
    .unwrap();
    let running = support::start(
        bin,
        &["doveauth".as_ref(), socket.as_os_str(), ini.as_os_str()],
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
    );
    (running, socket)
}

#[tokio::main]
async fn main() {
    let users = env_or("BENCH_USERS", 2000);
    let lookups = env_or("BENCH_LOOKUPS", 50_000);
    let connections = env_or("BENCH_CONNECTIONS", 8);

    let tmp = tempfile::tempdir().unwrap();
    let config = Config::parse(
        &format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n",
            tmp.path().join("mail").display()
        ),
        "bench.ini",
    )
    .unwrap();
    let auth = AuthDict::new(config)
        .with_nocreate_file(tmp.path().join("nocreate"))
        .with_resource_gate(Arc::new(|_: &Config| true));
    let external =
        std::env::var_os("BENCH_CHATMAILD").map(|bin| start_doveauth(Path::new(&bin), tmp.path()));
    let socket = match (std::env::var_os("BENCH_SOCKET"), &external) {
        (_, Some((_, socket))) => socket.clone(),
        (Some(external), None) => external.into(),
        (None, None) => {
            let socket = tmp.path().join("doveauth.socket");
            let listener = dict::bind(&socket).unwrap();
            tokio::spawn(dict::serve_listener(listener, Arc::new(auth)));
            socket
        }
    };
    // Distinct names per run, so that creations really create against an external server.
    let run_id = std::process::id() % 1000;

    let key =
        |i: usize| format!("shared/passdb/password-{i:04}\"{run_id:03}{i:06}@chat.example.org");
    let create: Arc<Vec<String>> = Arc::new((0..users).map(key).collect());
    let secs = run(&socket, connections, create).await;
    println!(
        "doveauth: {users} creations over {connections} connections in {secs:.2} s = {:.0} creations/s",
        users as f64 / secs
    );

    let existing: Arc<Vec<String>> = Arc::new((0..lookups).map(|i| key(i % users)).collect());
    let secs = run(&socket, connections, existing).await;
    println!(
        "doveauth: {lookups} passdb lookups of existing users over {connections} connections in {secs:.2} s = {:.0} lookups/s",
        lookups as f64 / secs
    );
}
