//! What a fresh relay deploy sends to the host: bytes uploaded (all that went through the
//! remote commands' stdin) and wall time, then the same for the no-op re-run.
//!
//!     CHATMAIL_TESTHOSTS=1 cargo bench --profile dev --bench upload [-- --tool PATH]
//!
//! Default: this workspace's chatmail-deploy with the relay binaries built beside it
//! (`--bin-dir`); `--tool PATH`: that chatmail-deploy (e.g. dist/chatmail-deploy-linux-x86_64)
//! with the relay binaries it carries. Prints numbers; asserts only that the runs worked.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{TestHost, run};

const DOMAIN: &str = "_ship-upload.test";

fn main() {
    if !common::enabled("upload bench") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == "--tool")
        .map(|i| PathBuf::from(&args[i + 1]));
    let (tool, bin_dir) = match given {
        Some(tool) => (tool, None),
        None => (common::relay::deploy_tool(), Some(common::relay::bin_dir())),
    };
    let host = TestHost::up("ship-upload");
    let dir = std::env::temp_dir().join(format!("ship-upload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("chatmail.ini");
    common::test_ini(&tool, &ini, DOMAIN);
    let mut deploy = common::relay::run_args(&host, &ini);
    if let Some(d) = &bin_dir {
        deploy.extend(["--bin-dir".to_string(), d.display().to_string()]);
    }
    let deploy: Vec<&str> = deploy.iter().map(String::as_str).collect();

    let version = run(&tool, &["--version"], &[]);
    println!("tool: {}", tool.display());
    for line in version.stdout.lines() {
        println!("  {line}");
    }
    if let Some(d) = &bin_dir {
        let sizes: u64 = RELAY_BINARIES
            .iter()
            .filter_map(|n| std::fs::metadata(d.join(n)).ok())
            .map(|m| m.len())
            .sum();
        println!("relay binaries in --bin-dir {}: {sizes} bytes", d.display());
    }
    println!(
        "{:<14} {:>14} {:>9} {:>9}",
        "case", "uploaded B", "wall s", "commands"
    );
    for case in ["fresh deploy", "no-op re-run"] {
        let t = Instant::now();
        let r = run(&tool, &deploy, &[]);
        let wall = t.elapsed().as_secs_f64();
        assert_eq!(r.code, 0, "{}", r.stderr);
        println!(
            "{case:<14} {:>14} {wall:>9.2} {:>9}",
            uploaded_bytes(&r.stderr),
            common::remote_commands(&r.stderr)
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The relay binaries the workspace builds today; a set that has fewer simply counts less.
const RELAY_BINARIES: &[&str] = &[
    "chatmaild",
    "doveauth",
    "filtermail",
    "chatmail-metadata",
    "lastlogin",
    "chatmail-expire",
    "chatmail-quota-expire",
    "chatmail-fsreport",
    "newemail",
];

/// The bytes from the deploy tool's "done in 1.2 s, 34 remote commands, 5678 bytes uploaded".
fn uploaded_bytes(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("done in "))
        .filter_map(|l| l.split(", ").nth(2))
        .filter_map(|l| l.strip_suffix(" bytes uploaded"))
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or(0)
}
