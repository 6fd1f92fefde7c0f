//! The full relay on a test host: fresh deploy and no-op re-run wall times and remote
//! commands, and message delivery latency through the deployed relay with a real chat client.
//!
//!     CHATMAIL_TESTHOSTS=1 cargo bench --bench relay [-- COUNT]
//!
//! Prints numbers; asserts only that the runs worked.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{TestHost, known_hosts, run};

const RERUNS: usize = 5;
const DOMAIN: &str = "_bench-relay.test";

fn main() {
    if !common::enabled("relay bench") {
        return;
    }
    let count = common::count_arg(50);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bins = common::release_bins();
    let tool = bins.join("chatmail-deploy");
    let host = TestHost::up("bench-relay");
    common::dns_set(&[
        &format!("{DOMAIN}. 60 IN A {}", host.addr),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);
    let dir = root.join("target/bench-relay");
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("chatmail.ini");
    common::test_ini(&tool, &ini, DOMAIN);
    let kh = known_hosts();
    let dovecot = common::relay::chatmail_dovecot();
    let args = [
        "run",
        "--ssh-host",
        &host.addr,
        "--known-hosts",
        &kh,
        "--config",
        ini.to_str().unwrap(),
        "--bin-dir",
        bins.to_str().unwrap(),
        "--skip",
        "turn,iroh-relay",
        // chatmail's Dovecot build, as operators get it (Debian's adds 0.5 s to every push)
        "--dovecot-debs",
        &dovecot.0,
        "--dovecot-pins",
        dovecot.1.to_str().unwrap(),
    ];

    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "case", "min s", "median s", "max s", "commands"
    );
    let t = Instant::now();
    let first = run(&tool, &args, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let s = t.elapsed().as_secs_f64();
    println!(
        "{:<30} {s:>9.2} {s:>9.2} {s:>9.2} {:>9}",
        "fresh deploy",
        common::remote_commands(&first.stderr)
    );

    let pids = host.sh("systemctl show -p Id,MainPID --type=service --state=running");
    let (times, cmds) = common::noop_reruns(&tool, &args, RERUNS);
    println!(
        "{:<30} {:>9.2} {:>9.2} {:>9.2} {cmds:>9}",
        "no-op re-run",
        times[0],
        times[RERUNS / 2],
        times[RERUNS - 1]
    );
    let restarted = pids != host.sh("systemctl show -p Id,MainPID --type=service --state=running");
    println!(
        "services restarted by the no-op runs: {}",
        if restarted { "SOME" } else { "none" }
    );

    let python = common::e2e_python();
    let out = Command::new("bash")
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(&python)
        .arg(root.join("tests/e2e/latency.py"))
        .args([DOMAIN, &host.addr, &count.to_string()])
        .envs(common::ssh_env())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    println!(
        "delivery latency, {count} messages 1.1 s apart (Delta Chat client): {}",
        line.trim()
    );
    println!(
        "dovecot: {}",
        host.sh("dpkg-query -W -f='${Version}' dovecot-core")
    );
}
