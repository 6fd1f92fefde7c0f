//! A self-signed relay deployed to a test host, for the tests that need a whole relay.

use std::path::PathBuf;
use std::process::Command;

use super::{Run, TestHost, known_hosts, run};

/// The chatmail-deploy binary under test.
pub fn deploy_tool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chatmail-deploy"))
}

/// The relay binaries, built for this machine (the test hosts have the same arch).
pub fn bin_dir() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "chatmaild", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the relay binaries failed");
    deploy_tool().parent().unwrap().to_path_buf()
}

/// A booted test host with a chatmail.ini for `domain` (not deployed yet).
pub struct Relay {
    pub host: TestHost,
    pub ini: PathBuf,
    pub bins: PathBuf,
}

impl Relay {
    pub fn new(name: &str, domain: &str) -> Relay {
        Relay::on_host(TestHost::up(name), domain)
    }

    /// For a host that is already up (an IPv4 relay's domain is its address).
    pub fn on_host(host: TestHost, domain: &str) -> Relay {
        let bins = bin_dir();
        let name = host.name.clone();
        let dir = std::env::temp_dir().join(format!("relay-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ini = dir.join("chatmail.ini");
        super::test_ini(&deploy_tool(), &ini, domain);
        Relay { host, ini, bins }
    }

    /// Deploys without the components that download from GitHub (test hosts cannot).
    pub fn deploy(&self, extra: &[&str]) -> Run {
        self.deploy_skipping("turn,iroh-relay", extra)
    }

    /// Deploys leaving out `skip` (comma-separated components, "" for none); `extra` passes
    /// e.g. `--binary NAME=PATH` for the components kept.
    pub fn deploy_skipping(&self, skip: &str, extra: &[&str]) -> Run {
        let kh = known_hosts();
        let mut args = vec![
            "run",
            "--ssh-host",
            &self.host.addr,
            "--known-hosts",
            &kh,
            "--config",
            self.ini.to_str().unwrap(),
            "--bin-dir",
            self.bins.to_str().unwrap(),
        ];
        if !skip.is_empty() {
            args.extend(["--skip", skip]);
        }
        args.extend_from_slice(extra);
        run(&deploy_tool(), &args, &[])
    }

    pub fn append_ini(&self, text: &str) {
        let old = std::fs::read_to_string(&self.ini).unwrap();
        std::fs::write(&self.ini, old + text).unwrap();
    }

    /// `systemctl show -p Id,MainPID` of these units: equal before and after means no
    /// restart.
    pub fn main_pids(&self, units: &[&str]) -> String {
        self.host
            .sh(&format!("systemctl show -p Id,MainPID {}", units.join(" ")))
    }
}
