//! Engine speed on a real test host: wall time and remote commands of a fresh deploy and of
//! no-op re-runs, for the webhost example alone and with 100 more managed files.
//!
//!     CHATMAIL_TESTHOSTS=1 cargo bench --bench engine
//!
//! `ENGINE_BENCH_WEBHOST=/path/to/webhost` measures that build instead of a fresh release
//! build (another commit's, say, to compare before and after a change).
//!
//! Prints numbers; asserts nothing about them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::{TestHost, known_hosts, run};

const RERUNS: usize = 10;

fn main() {
    if !common::enabled("engine bench") {
        return;
    }
    let webhost = match std::env::var_os("ENGINE_BENCH_WEBHOST") {
        Some(path) => std::path::PathBuf::from(path),
        None => {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "webhost"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo build");
            assert!(status.success());
            common::target_dir().join("release/webhost")
        }
    };
    println!("measuring {}", webhost.display());
    let host = TestHost::up("eng-bench");
    let kh = known_hosts();

    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>9}",
        "case", "min s", "median s", "max s", "commands"
    );
    for extra in ["0", "100"] {
        let args = [
            "--ssh-host",
            host.addr.as_str(),
            "--known-hosts",
            kh.as_str(),
            "--extra-files",
            extra,
        ];
        let t = Instant::now();
        let first = run(&webhost, &args, &[]);
        assert_eq!(first.code, 0, "{}", first.stderr);
        let label = format!("first run, {extra} extra files");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{label:<34} {secs:>10.3} {secs:>10.3} {secs:>10.3} {:>9}",
            common::remote_commands(&first.stderr)
        );

        let (times, cmds) = common::noop_reruns(&webhost, &args, RERUNS);
        let label = format!("no-op re-run, {extra} extra files");
        println!(
            "{label:<34} {:>10.3} {:>10.3} {:>10.3} {cmds:>9}",
            times[0],
            times[RERUNS / 2],
            times[RERUNS - 1]
        );
    }
}
