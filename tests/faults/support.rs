//! Helpers of the fault tests: deploys of the webhost example, runs kept holding the lock.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::common::{self, Run, TestHost, example, known_hosts, ssh_env};

fn args<'a>(host: &'a TestHost, kh: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--ssh-host", host.addr.as_str(), "--known-hosts", kh];
    v.extend_from_slice(extra);
    v
}

pub fn deploy(host: &TestHost, extra: &[&str]) -> Run {
    deploy_env(host, extra, &[])
}

pub fn deploy_env(host: &TestHost, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let kh = known_hosts();
    common::run(&example("webhost"), &args(host, &kh, extra), env)
}

/// A deploy killed by `timeout` (exit status 124) if it runs longer than `secs`.
pub fn deploy_bounded(host: &TestHost, extra: &[&str], secs: u32) -> Run {
    let kh = known_hosts();
    let exe = example("webhost");
    let secs = secs.to_string();
    let mut all = vec![secs.as_str(), exe.to_str().unwrap()];
    all.extend(args(host, &kh, extra));
    common::run(std::path::Path::new("timeout"), &all, &[])
}

pub fn this_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// `(changed, unchanged, resources)` of a `summary:` line.
pub fn summary_counts(line: &str) -> (usize, usize, usize) {
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    assert!(
        line.starts_with("summary: ") && numbers.len() >= 3,
        "{line}"
    );
    (numbers[0], numbers[1], numbers[2])
}

/// `waiting: WHAT (N s): LATEST`
pub fn is_wait_line(line: &str, what: &str, latest: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("waiting: {what} (")) else {
        return false;
    };
    let Some((secs, said)) = rest.split_once(" s): ") else {
        return false;
    };
    secs.parse::<u64>().is_ok() && said == latest
}

/// A webhost run that stops before its restarts (the test hook) and stays there, holding
/// the host's lock, until it is killed.
pub struct Held {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    holding: bool,
    ended: bool,
}

impl Held {
    pub fn start(host: &TestHost, extra: &[&str]) -> Held {
        let kh = known_hosts();
        let mut child = Command::new(example("webhost"))
            .args(args(host, &kh, extra))
            .envs(ssh_env())
            .env("CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Held {
            child,
            lines,
            seen: Vec::new(),
            holding: false,
            ended: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads what arrived; true once the run holds or has ended.
    fn settled(&mut self) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.holding |= line.starts_with("note: holding before restarts");
            self.seen.push(line);
        }
        if !self.ended {
            self.ended = self.child.try_wait().unwrap().is_some();
        }
        self.holding || self.ended
    }

    /// The run's result; it must have ended.
    pub fn finish(&mut self) -> Run {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        // the reader thread ends with the pipe: collect the rest of stdout
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let r = Run {
            code: status.code().unwrap_or(-1),
            stdout: self.seen.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        };
        eprintln!("(run {})\n{}{}", self.pid(), r.stdout, r.stderr);
        r
    }

    /// SIGKILL: no cleanup of any kind.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every run holds the lock before its restarts or has ended (a run takes a
/// few seconds at most); returns the indices of those that ended.
pub fn first_to_end_or_hold(runs: &mut [Held]) -> Vec<usize> {
    for _ in 0..600 {
        if runs.iter_mut().all(|r| r.settled()) {
            return (0..runs.len()).filter(|&i| runs[i].ended).collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the runs neither held nor ended within 60 s");
}

/// Sends SIG`name` to `pid` (a run this test started).
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// stdout without its `waiting:` lines: a step slower than a few seconds (a loaded machine)
/// adds them, and they are not what a test about something else checks.
pub fn without_waits(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with("waiting: "))
        .map(|l| format!("{l}\n"))
        .collect()
}
