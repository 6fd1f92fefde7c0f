//! `chatmail-deploy bench` side by side with `cmping` (PyPI, the Delta Chat client's ping),
//! against the same two relays deployed on test hosts in the same run: message round trips on
//! one relay and across relays, and the account creation rate.
//!
//!     CHATMAIL_TESTHOSTS=1 cargo bench --bench operator [-- COUNT]
//!
//! Prints numbers; asserts only that every tool ran and lost nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestHost, known_hosts, run};

const RELAYS: [(&str, &str); 2] = [("bench-a", "_bench-a.test"), ("bench-b", "_bench-b.test")];

fn main() {
    if !common::enabled("operator bench") {
        return;
    }
    let count = common::count_arg(50);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bins = common::release_bins();
    let tool = bins.join("chatmail-deploy");
    let dir = root.join("target/bench-operator");
    std::fs::create_dir_all(&dir).unwrap();

    let hosts: Vec<TestHost> = RELAYS.iter().map(|(name, _)| TestHost::up(name)).collect();
    let inis: Vec<PathBuf> = RELAYS
        .iter()
        .zip(&hosts)
        .map(|((name, domain), host)| {
            common::dns_set(&[
                &format!("{domain}. 60 IN A {}", host.addr),
                &format!("{domain}. 60 IN MX 10 {domain}."),
            ]);
            let ini = dir.join(format!("{name}.ini"));
            common::test_ini(&tool, &ini, domain);
            ini
        })
        .collect();
    let kh = known_hosts();
    std::thread::scope(|s| {
        for (host, ini) in hosts.iter().zip(&inis) {
            let (tool, kh, bins) = (&tool, &kh, &bins);
            let dovecot = common::relay::chatmail_dovecot();
            s.spawn(move || {
                let args = [
                    "run",
                    "--ssh-host",
                    &host.addr,
                    "--known-hosts",
                    kh,
                    "--config",
                    path(ini),
                    "--bin-dir",
                    path(bins),
                    "--skip",
                    "turn,iroh-relay",
                    "--dovecot-debs",
                    &dovecot.0,
                    "--dovecot-pins",
                    dovecot.1.to_str().unwrap(),
                ];
                let r = run(tool, &args, &[]);
                assert_eq!(r.code, 0, "{}", r.stderr);
            });
        }
    });
    common::dns_set(&[
        &common::dkim_record(&hosts[0], RELAYS[0].1),
        &common::dkim_record(&hosts[1], RELAYS[1].1),
    ]);

    let (a, b) = (RELAYS[0].1, RELAYS[1].1);
    let ours = with_test_dns(
        Command::new(&tool)
            .args(["bench", "--insecure", "--json", "--config"])
            .arg(&inis[0])
            .args(["--count", &count.to_string(), "--relay2", b]),
    );
    let ours: serde_json::Value = serde_json::from_str(ours.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("bench --json: {e}: {ours}"));

    let cmping_same = cmping(&dir, count, &[a]);
    let cmping_cross = cmping(&dir, count, &[a, b]);

    println!("message round trips, {count} messages 1.1 s apart, ms:");
    println!(
        "{:<34} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5}",
        "tool / case", "recv", "min", "p50", "avg", "p99", "max", "lost"
    );
    for row in ours["latency"].as_array().unwrap() {
        let lost = row["lost"].as_u64().unwrap();
        println!(
            "{:<34} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {lost:>5}",
            format!("chatmail-deploy, {}", row["case"].as_str().unwrap()),
            row["received"].as_u64().unwrap(),
            num(&row["min_ms"]),
            num(&row["p50_ms"]),
            num(&row["avg_ms"]),
            num(&row["p99_ms"]),
            num(&row["max_ms"]),
        );
        assert_eq!(lost, 0, "chatmail-deploy bench lost messages");
    }
    for (case, c) in [("same relay", &cmping_same), ("cross relay", &cmping_cross)] {
        println!(
            "{:<34} {:>6} {:>8.1} {:>8} {:>8.1} {:>8} {:>8.1} {:>5}",
            format!("cmping, {case}"),
            c.received,
            c.min,
            "-",
            c.avg,
            "-",
            c.max,
            c.sent - c.received
        );
        assert_eq!(c.sent, c.received, "cmping lost messages");
    }
    let acc = &ours["accounts"];
    println!(
        "account creation by first login: {} accounts in {:.2} s = {:.1}/s (login p50 {:.0} ms)",
        acc["count"],
        num(&acc["seconds"]),
        num(&acc["per_second"]),
        num(&acc["login"]["p50_ms"]),
    );
    println!(
        "dovecot: {}",
        hosts[0].sh("dpkg-query -W -f='${Version}' dovecot-core")
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Runs a client command with the test DNS as its resolver; returns stdout, panics on failure.
fn with_test_dns(cmd: &mut Command) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut wrapped = Command::new("bash");
    wrapped
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(common::ssh_env())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let out = wrapped.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?} failed:\n{stdout}\n{}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Ping {
    sent: u64,
    received: u64,
    min: f64,
    avg: f64,
    max: f64,
}

/// cmping with fresh accounts (its account cache in a new folder), parsed from its summary:
/// "N transmitted, M received, ..." and "rtt min/avg/max/mdev = a/b/c/d ms".
fn cmping(dir: &Path, count: usize, relays: &[&str]) -> Ping {
    let cmping = common::cmping();
    let cache = dir.join(format!("cmping-cache-{}", relays.join("-")));
    let _ = std::fs::remove_dir_all(&cache);
    let mut cmd = Command::new(&cmping);
    cmd.args(["-c", &count.to_string()])
        .args(relays)
        .env("XDG_CACHE_HOME", &cache)
        // cmping starts deltachat-rpc-server from PATH
        .env("PATH", path_with(cmping.parent().unwrap()));
    let out = with_test_dns(&mut cmd);
    let counts = out
        .lines()
        .find(|l| l.contains(" transmitted, "))
        .unwrap_or_else(|| panic!("no summary from cmping:\n{out}"));
    let words: Vec<&str> = counts.split_whitespace().collect();
    let rtt = out
        .lines()
        .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
        .unwrap_or_else(|| panic!("no rtt line from cmping:\n{out}"));
    let ms: Vec<f64> = rtt
        .trim_end_matches(" ms")
        .split('/')
        .map(|v| v.parse().unwrap())
        .collect();
    Ping {
        sent: words[0].parse().unwrap(),
        received: words[2].parse().unwrap(),
        min: ms[0],
        avg: ms[1],
        max: ms[2],
    }
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
