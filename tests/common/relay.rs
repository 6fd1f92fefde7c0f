//! A self-signed relay deployed to a test host, for the tests that need a whole relay.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Run, TestHost, known_hosts, run};

/// The units a self-signed relay must have running.
pub const UNITS: &[&str] = &[
    "unbound.service",
    "doveauth.service",
    "chatmail-metadata.service",
    "lastlogin.service",
    "chatmail-expire.timer",
    "chatmail-fsreport.timer",
    "filtermail.service",
    "filtermail-incoming.service",
    "filtermail-transport.service",
    "opendkim.service",
    "dovecot.service",
    "postfix.service",
    "fcgiwrap.socket",
    "nginx.service",
];

/// The chatmail-deploy binary under test.
pub fn deploy_tool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chatmail-deploy"))
}

/// The relay binaries, built for this machine (the test hosts have the same arch), with the
/// test hooks as `cargo test` builds them: a build without would replace the binary
/// chatmaild's own tests run (and rebuild it).
pub fn bin_dir() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "chatmaild",
            "--bins",
            "--features",
            "test-hooks",
        ])
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

    /// On a Debian 13 (trixie) host, with Debian's Dovecot 2.4 (chatmail's build is for 12).
    pub fn new_trixie(name: &str, domain: &str) -> Relay {
        Relay {
            upstream_dovecot: true,
            ..Relay::on_host(TestHost::up_suite(name, "trixie"), domain)
        }
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

    /// Every unit in [`UNITS`] is active and none has failed (`when` names the moment).
    pub fn assert_units_active(&self, when: &str) {
        let states = self
            .host
            .sh(&format!("systemctl is-active {} || true", UNITS.join(" ")));
        for (unit, state) in UNITS.iter().zip(states.lines()) {
            assert_eq!(state, "active", "{when}: {unit}");
        }
        assert_eq!(
            self.host
                .sh("systemctl --failed --no-legend --plain")
                .trim(),
            "",
            "{when}: failed units"
        );
    }

    /// Deploys again: nothing changes and no unit restarts.
    pub fn assert_rerun_changes_nothing(&self) {
        let before = self.main_pids(UNITS);
        let again = self.deploy(&[]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert!(
            again.last_line().starts_with("summary: 0 changed"),
            "{}",
            again.stdout
        );
        assert_eq!(
            self.main_pids(UNITS),
            before,
            "a second run restarted a unit"
        );
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

/// An HTTP endpoint on 10.77.0.1 (this machine, seen from the test hosts) that answers 200
/// and passes each POST body on.
pub fn push_endpoint() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("10.77.0.1:0").expect("bind on the test network");
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (url, rx)
}

/// tests/e2e/chat.py (the Delta Chat client) with `args`, through the test DNS: its JSON
/// result line. On failure the journals of `relays` are printed and the test fails.
pub fn chat_client(args: &[&str], relays: &[&Relay]) -> serde_json::Value {
    let python = super::e2e_python();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(&python)
        .arg(root.join("tests/e2e/chat.py"))
        .args(args)
        .envs(super::ssh_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    if !out.status.success() {
        for relay in relays {
            eprintln!(
                "{}",
                relay.host.sh(
                    "journalctl -u doveauth -u dovecot -u filtermail -u postfix --no-pager -n 60"
                )
            );
        }
        panic!("the chat client check failed");
    }
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// The Delta Chat client's run on one relay with a push endpoint: an account by /new and one
/// created by login, encrypted both ways, cleartext refused, and bob's device token posted to
/// the endpoint when alice's message arrived. Returns the login-created address.
pub fn chat_client_with_push(
    relay: &Relay,
    domain: &str,
    pushes: &std::sync::mpsc::Receiver<String>,
    token: &str,
) -> String {
    let results = chat_client(&[domain, &relay.host.addr, "--push-token", token], &[relay]);
    assert_eq!(results["encrypted_both_ways"], true, "{results}");
    assert!(
        results["cleartext"]
            .as_str()
            .unwrap()
            .starts_with("refused 523"),
        "{results}"
    );
    let posted = pushes
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("no push notification POST arrived");
    assert_eq!(posted, token);
    let bob = results["bob"].as_str().unwrap().to_string();
    assert!(
        bob.starts_with("e2e"),
        "{bob}: not the address chosen at login"
    );
    bob
}

impl Relay {
    /// `chatmail-deploy test --insecure` through the test DNS: (exit code, stdout).
    pub fn operator_test(&self) -> (Option<i32>, String) {
        let out = Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/with-test-dns"))
            .arg(deploy_tool())
            .args(["test", "--insecure", "--config", self.ini.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.code(), stdout)
    }
}
