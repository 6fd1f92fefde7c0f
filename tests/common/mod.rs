//! Test hosts for integration tests: real Debian 12 machines (systemd-nspawn, see
//! tests/testhost/README.md), reached over SSH exactly like a real server.
//!
//! Host tests run only when CHATMAIL_TESTHOSTS=1 (they need root); otherwise they print why
//! they were skipped and pass.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod relay;

pub fn enabled(test: &str) -> bool {
    let on = std::env::var("CHATMAIL_TESTHOSTS").as_deref() == Ok("1");
    if !on {
        eprintln!(
            "skipping {test}: set CHATMAIL_TESTHOSTS=1 (as root) to run tests against test hosts"
        );
    }
    on
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost")
}

/// The exports of `ssh-env`: the agent with the test key, the known_hosts file, the DNS.
pub fn ssh_env() -> &'static BTreeMap<String, String> {
    static ENV: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let out = Command::new("bash")
            .arg(scripts().join("ssh-env"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run ssh-env");
        assert!(out.status.success(), "ssh-env failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

pub fn known_hosts() -> String {
    ssh_env()["TESTHOST_KNOWN_HOSTS"].clone()
}

/// A booted test host, taken down when dropped.
pub struct TestHost {
    pub name: String,
    pub addr: String,
}

impl TestHost {
    pub fn up(name: &str) -> TestHost {
        TestHost::up_suite(name, "bookworm")
    }

    /// A host of Debian `suite` (bookworm, trixie).
    pub fn up_suite(name: &str, suite: &str) -> TestHost {
        ssh_env();
        let out = Command::new("bash")
            .arg(scripts().join("up"))
            .args(["--suite", suite, name])
            .stderr(Stdio::inherit())
            .output()
            .expect("run up");
        assert!(out.status.success(), "up {name} failed");
        let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        TestHost {
            name: name.to_string(),
            addr,
        }
    }

    /// Runs a shell command on the host as root; panics if it fails.
    pub fn sh(&self, command: &str) -> String {
        let out = self.try_sh(command);
        assert!(
            out.status.success(),
            "on {}: {command}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn try_sh(&self, command: &str) -> Output {
        Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts()))
            .arg(format!("root@{}", self.addr))
            .arg(command)
            .envs(ssh_env())
            .output()
            .expect("run ssh")
    }

    /// Runs a shell command inside the host without ssh (`nsexec`): works when a firewall
    /// on the host keeps this machine's ssh out. Panics if it fails.
    pub fn nsexec(&self, command: &str) -> String {
        let out = Command::new("bash")
            .arg(scripts().join("nsexec"))
            .args([self.name.as_str(), "sh", "-c", command])
            .output()
            .expect("run nsexec");
        assert!(
            out.status.success(),
            "in {}: {command}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fingerprint of everything a deploy could touch: packages, files under the managed
    /// trees (path, size, mode, owner, mtime), accounts and unit states. Left out: what
    /// changes on its own (ssh login sessions, the example's heartbeat file).
    pub fn fingerprint(&self) -> String {
        self.sh(
            "{ dpkg -l; getent passwd; getent group; \
               find /etc /srv /usr/local /var/lib/chatmail-deploy -xdev -not -name 'heartbeat.txt*' \
                 -printf '%p %s %m %u %T@\\n' 2>/dev/null | sort; \
               systemctl list-units --all --no-legend --plain | grep -v '^session-' | sort; } | sha256sum",
        )
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if std::env::var_os("TESTHOST_KEEP").is_some() {
            return;
        }
        let _ = Command::new("bash")
            .arg(scripts().join("down"))
            .arg(&self.name)
            .env("TESTHOST_KEEP_INFRA", "1")
            .stderr(Stdio::null())
            .status();
    }
}

/// The example binary, built first if needed (`cargo test --test X` does not build other packages).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    // the examples are workspace members of their own (they depend on the engine only), built
    // with the engine's test hooks as the deploy tool is under `cargo test`
    let path = dir.join(name);
    let built = Command::new(env!("CARGO"))
        .args(["build", "-p", name, "--features", "test-hooks"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build -p");
    assert!(
        built.success() && path.exists(),
        "cannot build example {name}"
    );
    path
}

/// The result of running the deploy tool.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// The error line: stderr must hold exactly one line, starting with "error: ".
    pub fn one_error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr
        );
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        assert_eq!(self.code, 1, "exit status for an error");
        lines[0]
    }
}

/// Deploys the webhost example to `host` with `extra` arguments.
pub fn deploy_webhost(host: &TestHost, extra: &[&str]) -> Run {
    let kh = known_hosts();
    let mut args = vec![
        "--ssh-host",
        host.addr.as_str(),
        "--known-hosts",
        kh.as_str(),
    ];
    args.extend_from_slice(extra);
    run(&example("webhost"), &args, &[])
}

pub fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(program)
        .args(args)
        .envs(ssh_env())
        .envs(env.iter().copied())
        .env_remove("CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS")
        .output()
        .expect("run deploy");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ {} {}\n{}{}",
        program.display(),
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r
}

/// GET http://addr:port/path with a plain socket; returns the body.
pub fn http_get(addr: &str, port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((addr, port)).expect("connect http");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Writes a chatmail.ini for `domain` with `init`, fit for test hosts.
pub fn test_ini(tool: &Path, ini: &Path, domain: &str) {
    let _ = std::fs::remove_file(ini);
    let init = run(
        tool,
        &["init", domain, "--config", ini.to_str().unwrap()],
        &[],
    );
    assert_eq!(init.code, 0, "{}", init.stderr);
    // test hosts share this machine's load average, which parallel builds push past the
    // default refusal threshold for new accounts
    let mut text = std::fs::read_to_string(ini).unwrap();
    text.push_str("max_load_1m = 1000\n");
    std::fs::write(ini, text).unwrap();
}

/// Builds the tool and the relay binaries in release mode (what operators deploy, for
/// benchmarks); returns the folder holding them.
pub fn release_bins() -> PathBuf {
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--release", "--workspace", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "release build failed");
    target_dir().join("release")
}

/// A bench's first numeric argument (`cargo bench --bench X -- COUNT`), else `default`.
pub fn count_arg(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Where cargo puts build output (CARGO_TARGET_DIR if set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A Python with the Delta Chat client (deltachat-rpc-server and -client from PyPI), made on
/// first use in target/e2e-venv unless CHATMAIL_E2E_PYTHON names one.
pub fn e2e_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CHATMAIL_E2E_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-venv");
    let python = venv.join("bin/python3");
    installed_once(&venv.join(".client-installed"), || {
        Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .unwrap()
            .success()
            && pip_install(&python, &["deltachat-rpc-server", "deltachat-rpc-client"])
    });
    python
}

/// Runs `install` unless `marker` exists, and writes `marker` once it succeeded. Tests of one
/// binary run in parallel: one installs while the others wait, and an install counts as done
/// only after it finished (a venv whose python exists may still lack the packages).
fn installed_once(marker: &Path, install: impl FnOnce() -> bool) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if marker.exists() {
        return;
    }
    assert!(install(), "cannot install {}", marker.display());
    std::fs::write(marker, b"").unwrap();
}

fn pip_install(python: &Path, packages: &[&str]) -> bool {
    Command::new(python)
        .args(["-m", "pip", "install", "-q"])
        .args(packages)
        .status()
        .unwrap()
        .success()
}

/// The number of remote commands from the deploy tool's "done in 0.123 s, 1 remote command".
pub fn remote_commands(stderr: &str) -> usize {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("done in "))
        .filter_map(|l| l.split(", ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// The bytes from the deploy tool's "done in 1.2 s, 34 remote commands, 5678 bytes uploaded".
pub fn uploaded_bytes(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("done in "))
        .filter_map(|l| l.split(", ").nth(2))
        .filter_map(|l| l.strip_suffix(" bytes uploaded"))
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// Publishes records in the test DNS ("owner. ttl IN TYPE value"), replacing what an earlier
/// run left for the same owner and type: the test DNS outlives hosts while others are up, and
/// a stale A record would send clients to a host that no longer is this relay.
pub fn dns_set(records: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost/dns");
    for record in records {
        let words: Vec<&str> = record.split_whitespace().collect();
        let owner = words[0];
        let rtype = words
            .iter()
            .position(|w| *w == "IN")
            .and_then(|i| words.get(i + 1))
            .expect("record as: owner ttl IN TYPE value");
        let _ = Command::new("bash")
            .arg(&script)
            .args(["del", owner, rtype])
            .status();
    }
    let ok = Command::new("bash")
        .arg(&script)
        .arg("add")
        .args(records)
        .status()
        .unwrap()
        .success();
    assert!(ok, "dns add failed: {records:?}");
}

/// Runs the deploy `n` times, each of which must change nothing; returns the sorted wall
/// times in seconds and the remote commands of the last run.
pub fn noop_reruns(program: &Path, args: &[&str], n: usize) -> (Vec<f64>, usize) {
    let mut times = Vec::new();
    let mut commands = 0;
    for _ in 0..n {
        let started = std::time::Instant::now();
        let r = run(program, args, &[]);
        times.push(started.elapsed().as_secs_f64());
        assert!(
            r.last_line().starts_with("summary: 0 changed"),
            "{}",
            r.stdout
        );
        commands = remote_commands(&r.stderr);
    }
    times.sort_by(f64::total_cmp);
    (times, commands)
}

/// The DKIM public key record a relay needs published, read from the key made on the host.
pub fn dkim_record(host: &TestHost, domain: &str) -> String {
    let txt = host.sh("cat /etc/dkimkeys/opendkim.txt");
    // opendkim-genkey writes a zone snippet: keep the quoted strings, join them
    let value: String = txt.split('"').skip(1).step_by(2).collect();
    let chunks: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "opendkim._domainkey.{domain}. 60 IN TXT {}",
        chunks.join(" ")
    )
}

/// `cmping` (PyPI), installed on first use beside the python of [`e2e_python`].
pub fn cmping() -> PathBuf {
    let python = e2e_python();
    installed_once(&python.with_file_name(".cmping-installed"), || {
        pip_install(&python, &["cmping"])
    });
    python.with_file_name("cmping")
}
