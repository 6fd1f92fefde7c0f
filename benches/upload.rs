//! What a fresh relay deploy sends to the host: bytes uploaded (all that went through the
//! remote commands' stdin) and wall time, then the same for the no-op re-run, next to the
//! numbers measured before the relay programs became one static multi-call binary.
//!
//!     CHATMAIL_TESTHOSTS=1 cargo bench --profile dev --bench upload [-- --tool PATH]
//!
//! Default: this workspace's chatmail-deploy with the relay binaries built beside it
//! (`--bin-dir`); `--tool PATH`: that chatmail-deploy (e.g. dist/chatmail-deploy-linux-x86_64)
//! with the relay binaries it carries. The host is created fresh and removed afterwards.
//! Prints numbers; asserts only that the runs worked.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{TestHost, run};

const DOMAIN: &str = "_ship-upload.test";
const HOST: &str = "shp-upload";

/// Fresh deploys measured earlier on the same kind of test host (issue 12's note): the eight
/// relay programs of the past, uploaded as they were.
const BEFORE: &[(&str, u64, f64)] = &[
    ("8 debug binaries, uncompressed", 68_458_832, 214.0),
    ("8 static release binaries, gzip", 11_231_024, 59.5),
];

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
    // fresh: a host left from an earlier run already has everything
    down(HOST);
    let host = TestHost::up(HOST);
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
        "{:<34} {:>14} {:>9} {:>9}",
        "case", "uploaded B", "wall s", "commands"
    );
    for (case, bytes, wall) in BEFORE {
        println!(
            "{:<34} {bytes:>14} {wall:>9.1} {:>9}",
            format!("before: {case}"),
            "-"
        );
    }
    for case in ["fresh deploy", "no-op re-run"] {
        let t = Instant::now();
        let r = run(&tool, &deploy, &[]);
        let wall = t.elapsed().as_secs_f64();
        assert_eq!(r.code, 0, "{}", r.stderr);
        println!(
            "{case:<34} {:>14} {wall:>9.1} {:>9}",
            common::uploaded_bytes(&r.stderr),
            common::remote_commands(&r.stderr)
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
    down(HOST);
}

fn down(name: &str) {
    let status = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testhost/down"))
        .arg(name)
        .status()
        .expect("run down");
    assert!(status.success(), "down {name} failed");
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
