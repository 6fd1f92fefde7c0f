//! One remote step of a run: its deadline, what it says while it runs, and its error.
//!
//! Every step has a deadline that scales with what it does, so a run never hangs; a step
//! that runs longer than a few seconds says what it waits for (its latest output line, or
//! that it has printed nothing yet); a failed step's error names the step and carries all of
//! its stderr, condensed; a lost link names the step that was running.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use facts::{ExecOutput, Remote};

use crate::{ChangeKind, Error, Reporter};

/// A step silent for this long is reported as waiting (then as often as the reporter likes).
const QUIET_BEFORE_WAITING: Duration = Duration::from_secs(3);

/// Bytes per second an upload is allowed at the least: a slow DSL uplink, four times over.
const SLOWEST_UPLOAD: u64 = 100_000;

/// How long a step may take, by kind, before the run gives up on it:
/// - packages, and commands that run apt or dpkg: 40 min, room for apt's own waits for its
///   locks (`DPkg::Lock::Timeout=600`, for the update and for the install) plus 20 min of
///   downloads and maintainer scripts; such a step shows its progress all the way;
/// - downloads fetched by the host: 10 min (a 20 MB release at 35 kB/s);
/// - other commands: 15 min (key generation, a certificate request with its retries);
/// - services, restarts and reloads: 5 min (systemd's own start and stop timeouts are 90 s
///   each, and a checked restart may restart twice);
/// - a file: 60 s plus its upload at [`SLOWEST_UPLOAD`];
/// - accounts, directories, links, removals and bookkeeping: 60 s.
pub fn deadline(kind: ChangeKind, runs_apt: bool, upload: usize) -> Duration {
    let mins = |m: u64| Duration::from_secs(m * 60);
    match kind {
        ChangeKind::Packages => mins(40),
        ChangeKind::Command if runs_apt => mins(40),
        ChangeKind::Command => mins(15),
        // a download from the operator's machine is an upload as well
        ChangeKind::Download => mins(10).max(deadline(ChangeKind::File, false, upload)),
        ChangeKind::Service | ChangeKind::Restart | ChangeKind::Reload => mins(5),
        ChangeKind::DaemonReload => mins(1),
        ChangeKind::File => Duration::from_secs(60 + upload as u64 / SLOWEST_UPLOAD),
        ChangeKind::Directory
        | ChangeKind::Symlink
        | ChangeKind::Remove
        | ChangeKind::Group
        | ChangeKind::User => mins(1),
    }
}

/// The bound of a step that is no change (recording pending restarts, reading old files).
pub const BOOKKEEPING: Duration = Duration::from_secs(60);

/// The locks apt and dpkg take, in the order apt takes them.
const APT_LOCKS: &str = "/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock";

/// Put in front of a step that runs apt: while another process holds one of apt's locks (an
/// `apt-daily` run, the apt-get of a killed deploy), say every 5 s which process it is
/// (apt itself waits silently when its output is not a terminal), and go on once it is
/// free. The locks are fcntl locks: /proc/locks names their holders by pid and
/// device:inode, which `stat` gives for each lock file.
pub fn apt_lock_wait() -> String {
    format!(
        r#"apt_lock_holder() {{
for f in {APT_LOCKS}; do
[ -e "$f" ] || continue
d=$((0x$(stat -c %D -- "$f"))); id=$(printf '%02x:%02x:%s' $(( (d >> 8) & 0xfff )) $(( (d & 0xff) | ((d >> 12) & 0xfff00) )) "$(stat -c %i -- "$f")")
pid=$(awk -v id="$id" '$2 != "->" && $6 == id {{ print $5; exit }}' /proc/locks)
if [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null && [ -r "/proc/$pid/cmdline" ]; then
echo "$f is held by process $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-200 | sed 's/ *$//'))"
return 0
fi
done
return 1
}}
apt_waited=0
while holder=$(apt_lock_holder); do
if [ $((apt_waited % 5)) -eq 0 ]; then echo "waiting for apt's lock: $holder" >&2; fi
sleep 1; apt_waited=$((apt_waited + 1))
done
if [ "$apt_waited" -gt 0 ]; then echo "apt's lock is free after ${{apt_waited}} s" >&2; fi"#
    )
}

/// The script as it is sent: a step that runs apt first waits for apt's locks, out loud.
pub fn prepared(runs_apt: bool, script: &str) -> String {
    if runs_apt {
        format!("{}\n{script}", apt_lock_wait())
    } else {
        script.to_string()
    }
}

/// Runs one step: `what` names it in waits and errors, `limit` bounds it.
pub async fn run<R: Remote>(
    remote: &R,
    script: &str,
    stdin: &[u8],
    what: &str,
    limit: Duration,
    reporter: &dyn Reporter,
) -> Result<ExecOutput, Error> {
    let started = Instant::now();
    let latest: Mutex<Option<String>> = Mutex::new(None);
    let on_line = |line: &str| *latest.lock().unwrap() = Some(line.to_string());
    let exec = remote.exec_streaming(script, stdin, &on_line);
    let waits = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let elapsed = started.elapsed();
            if elapsed >= QUIET_BEFORE_WAITING {
                let line = latest.lock().unwrap().clone();
                reporter.waiting(what, elapsed, line.as_deref());
            }
        }
    };
    let out = tokio::select! {
        out = exec => out.map_err(|e| Error::ChangeFailed {
            what: what.to_string(),
            detail: e.0,
        })?,
        _ = waits => unreachable!("the waits never end"),
        _ = tokio::time::sleep(limit) => {
            let line = latest.lock().unwrap().clone();
            return Err(Error::ChangeFailed {
                what: what.to_string(),
                detail: format!(
                    "no result within {} s, the bound for this step{}",
                    seconds(limit),
                    line.map(|l| format!(" (its last output: {l})")).unwrap_or_default()
                ),
            });
        }
    };
    reporter.waiting_over(what);
    if out.success() {
        return Ok(out);
    }
    reporter.command_failed(what, &String::from_utf8_lossy(&out.stderr));
    let detail = match (out.status, out.error_text()) {
        (None, _) => "killed by a signal".to_string(),
        (Some(code), text) if text.is_empty() => format!("exit status {code}"),
        (Some(code), text) => format!("{text} (exit status {code})"),
    };
    Err(Error::ChangeFailed {
        what: what.to_string(),
        detail,
    })
}

/// `24`, or `0.05` for a bound cut below a second by the test hook.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.2}", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facts::RemoteError;

    /// A host that answers every command the same way.
    enum Fake {
        Lost,
        Silent,
        Fails(&'static str),
    }

    impl Remote for Fake {
        async fn exec(&self, _: &str, _: &[u8]) -> Result<ExecOutput, RemoteError> {
            match self {
                Fake::Lost => Err(RemoteError(
                    "ssh connection lost while the command ran".into(),
                )),
                Fake::Silent => std::future::pending().await,
                Fake::Fails(stderr) => Ok(ExecOutput {
                    stderr: stderr.as_bytes().to_vec(),
                    status: Some(100),
                    ..ExecOutput::default()
                }),
            }
        }
    }

    async fn error_of(remote: Fake, limit: Duration) -> String {
        let reporter = crate::NullReporter;
        run(
            &remote,
            "x",
            b"",
            "packages: install nginx",
            limit,
            &reporter,
        )
        .await
        .unwrap_err()
        .to_string()
    }

    #[tokio::test]
    async fn a_lost_link_names_the_step() {
        assert_eq!(
            error_of(Fake::Lost, Duration::from_secs(60)).await,
            "packages: install nginx failed: ssh connection lost while the command ran"
        );
    }

    #[tokio::test]
    async fn a_step_past_its_bound_fails_naming_it() {
        assert_eq!(
            error_of(Fake::Silent, Duration::from_millis(50)).await,
            "packages: install nginx failed: no result within 0.05 s, the bound for this step"
        );
    }

    #[tokio::test]
    async fn a_failed_step_carries_all_of_its_stderr() {
        let stderr = "E: Failed to fetch http://deb.debian.org/x.deb  503  Service Unavailable\nE: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?\n";
        assert_eq!(
            error_of(Fake::Fails(stderr), Duration::from_secs(60)).await,
            "packages: install nginx failed: E: Failed to fetch http://deb.debian.org/x.deb  503  Service Unavailable | E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing? (exit status 100)"
        );
    }

    #[test]
    fn deadlines_scale_with_kind_and_size() {
        assert_eq!(
            deadline(ChangeKind::File, false, 0),
            Duration::from_secs(60)
        );
        assert_eq!(
            deadline(ChangeKind::File, false, 50_000_000),
            Duration::from_secs(560)
        );
        assert_eq!(
            deadline(ChangeKind::Packages, true, 0),
            Duration::from_secs(2400)
        );
        assert_eq!(
            deadline(ChangeKind::Command, true, 0),
            Duration::from_secs(2400)
        );
        assert_eq!(
            deadline(ChangeKind::Command, false, 0),
            Duration::from_secs(900)
        );
    }

    #[test]
    fn only_apt_steps_wait_for_apts_lock() {
        assert!(prepared(true, "apt-get install x").contains("/proc/locks"));
        assert_eq!(prepared(false, "cat > f"), "cat > f");
    }

    /// The wait runs in a real shell: with no apt lock held it is silent and goes on.
    #[test]
    fn the_lock_wait_is_silent_when_nobody_holds_a_lock() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{}\necho after", apt_lock_wait()))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "after\n");
    }
}
