//! A self-signed relay deployed to a test host, for the tests that need a whole relay.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// chatmail's Dovecot build for the test hosts, built once and served from the test network
/// by tests/testhost/dovecot-debs: (base URL, its SHA256SUMS file).
pub fn chatmail_dovecot() -> &'static (String, PathBuf) {
    static SET: OnceLock<(String, PathBuf)> = OnceLock::new();
    SET.get_or_init(|| {
        let script = |command: &str| {
            let out = Command::new("bash")
                .arg(super::scripts().join("dovecot-debs"))
                .arg(command)
                .stderr(Stdio::inherit())
                .output()
                .expect("run dovecot-debs");
            assert!(out.status.success(), "dovecot-debs {command} failed");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let url = script("serve");
        let dir = PathBuf::from(script("build"));
        (url, dir.join("SHA256SUMS"))
    })
}

/// `run` arguments that deploy `ini` to `host` with chatmail's Dovecot build from the test
/// network, leaving out the components that download from GitHub; the caller says where
/// the relay binaries come from.
pub fn run_args(host: &TestHost, ini: &std::path::Path) -> Vec<String> {
    let (url, pins) = chatmail_dovecot();
    [
        "run",
        "--ssh-host",
        &host.addr,
        "--known-hosts",
        &known_hosts(),
        "--config",
        ini.to_str().unwrap(),
        "--skip",
        "turn,iroh-relay",
        "--dovecot-debs",
        url,
        "--dovecot-pins",
        pins.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// A booted test host with a chatmail.ini for `domain` (not deployed yet).
pub struct Relay {
    pub host: TestHost,
    pub ini: PathBuf,
    pub bins: PathBuf,
    /// Deploy with upstream's Dovecot source (unreachable here: Debian's build is installed)
    /// instead of chatmail's build served to the test hosts.
    pub upstream_dovecot: bool,
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
        Relay {
            host,
            ini,
            bins,
            upstream_dovecot: false,
        }
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
        if !self.upstream_dovecot && !extra.contains(&"--dovecot-debs") {
            let (url, pins) = chatmail_dovecot();
            args.extend([
                "--dovecot-debs",
                url,
                "--dovecot-pins",
                pins.to_str().unwrap(),
            ]);
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
