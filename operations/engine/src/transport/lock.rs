//! The host-side run lock: one deploy at a time per host.
//!
//! The lock is an `flock` held by a shell on the host that lives exactly as long as this run
//! talks to it: it takes the lock, writes who holds it beside the lock file, gathers the
//! facts (so taking the lock costs no extra round trip), then waits for heartbeats on its
//! stdin. A run that ends closes that stdin; a killed run's connection closes it too; a lost
//! link stops the heartbeats. Any of these ends the shell, and the kernel drops the lock with
//! it, so a dead run's lock is taken over by the next run with nothing to clean up.

use facts::shell::quote;
use facts::{HostFacts, Query, RemoteError};

use super::{Held, HeldStart, Host};
use crate::Error;

// One lock per host, not per tool: every tool built on the engine installs packages and
// restarts units on the same host, so a webhost run and a relay run must not overlap either
// (the same holds for the pending restarts they record in operations::restarts).
pub const LOCK_FILE: &str = "/run/chatmail-deploy.lock";
pub const HOLDER_FILE: &str = "/run/chatmail-deploy.holder";

/// How often the run tells the lock shell it is alive, and how long the shell waits for it
/// before it lets the lock go (four heartbeats: a busy link may delay one or two).
pub const HEARTBEAT_SECS: u64 = 15;
pub const SILENCE_SECS: u64 = 60;

/// Who this run is, as the holder file records it: the operator machine's hostname, the
/// local pid and the command line (the host adds the start time with its own clock).
pub fn whoami() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "an unknown machine".into());
    let command: Vec<String> = std::env::args()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                // the program's name, not where it was built
                a.rsplit('/').next().unwrap_or(&a).to_string()
            } else {
                a
            }
        })
        .collect();
    let mut command = command.join(" ").replace(['\n', '\r'], " ");
    if command.chars().count() > 200 {
        command = command.chars().take(200).collect::<String>() + "...";
    }
    format!(
        "host={host}\nlocal-pid={}\ncommand={command}",
        std::process::id()
    )
}

/// The marker after which the lock is held (what came before it is the facts' output).
pub fn locked_marker(token: &str) -> String {
    format!("\n@@{token} locked\n")
}

/// The marker that says another run holds the lock; the holder file follows it.
pub fn busy_marker(token: &str) -> String {
    format!("@@{token} busy\n")
}

/// The lock shell: take the lock or say who has it; once taken, run `cleanup` (stale
/// leftovers of killed runs, safe only under the lock) and `facts`, print the locked marker,
/// then hold the lock while heartbeats arrive.
pub fn script(token: &str, whoami: &str, cleanup: &str, facts: &str) -> String {
    format!(
        r#"L={LOCK_FILE}; H={HOLDER_FILE}
exec 9>>"$L" || exit 1
if ! flock -n 9; then
i=0
# the run that has the lock writes its name right after taking it: wait for that name
while [ $i -lt 30 ]; do
r=$(sed -n 's/^remote-pid=//p' "$H" 2>/dev/null)
if [ -n "$r" ] && [ -d "/proc/$r" ]; then break; fi
sleep 0.1; i=$((i+1))
done
printf '%s' {busy}; cat "$H" 2>/dev/null; exit 0
fi
printf 'remote-pid=%s\nstarted=%s\n%s\n' "$$" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" {who} > "$H.$$" && mv -f "$H.$$" "$H"
( {cleanup}
) </dev/null 9>&-
( {facts}
) </dev/null 9>&-
printf '\n@@%s status %s\n' {tok} "$?"
printf '%s' {locked}
while timeout {SILENCE_SECS} sh -c 'IFS= read -r _'; do :; done
if [ "$(sed -n 's/^remote-pid=//p' "$H" 2>/dev/null)" = "$$" ]; then rm -f "$H"; fi"#,
        busy = quote(&busy_marker(token)),
        locked = quote(&locked_marker(token)),
        who = quote(whoami),
        cleanup = if cleanup.is_empty() { ":" } else { cleanup },
        tok = quote(token),
    )
}

/// Takes the run lock on `host` and gathers `query`'s facts in the same remote command; a
/// host another run holds is refused with that run's name. `cleanup` runs first under the
/// lock (leftovers of killed runs: no other run can be writing them).
pub async fn take(
    host: &Host,
    target: &str,
    query: &Query,
    cleanup: &str,
) -> Result<(HostFacts, Held), Error> {
    let token = format!(
        "run{:x}{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        std::process::id()
    );
    let command = script(&token, &whoami(), cleanup, &query.script(&token));
    let marker = locked_marker(&token);
    let started = host.exec_held(&command, &marker).await;
    let started = started
        .map_err(|e| Error::Remote(RemoteError(format!("gathering facts on {target}: {e}"))))?;
    let (out, held) = match started {
        HeldStart::Holding(out, held) => (out, held),
        HeldStart::Ended(out) => {
            let text = out.stdout_str();
            if let Some(holder) = text.strip_prefix(&busy_marker(&token)) {
                return Err(Error::Lock(refusal(target, holder)));
            }
            return Err(Error::Lock(format!(
                "cannot take the run lock {LOCK_FILE} on {target}: {}",
                match out.error_text() {
                    e if e.is_empty() => format!("exit status {:?}", out.status),
                    e => e,
                }
            )));
        }
    };
    let text = out.stdout_str();
    let status_marker = format!("\n@@{token} status ");
    let status = text
        .rsplit_once(&status_marker)
        .and_then(|(_, s)| s.lines().next())
        .unwrap_or("");
    let parsed = if status != "0" {
        Err(facts::Error::ScriptFailed {
            status: status.parse().ok(),
            stderr: out.error_line(),
        })
    } else {
        query.parse(&token, &text)
    };
    match parsed {
        Ok(facts) => Ok((facts, held)),
        Err(e) => {
            held.release().await;
            Err(Error::Remote(RemoteError(format!(
                "gathering facts on {target}: {}",
                crate::one_line(&e)
            ))))
        }
    }
}

/// The one-line refusal for a run that found the lock taken, from the holder file's text.
pub fn refusal(target: &str, holder: &str) -> String {
    let field = |name: &str| {
        holder
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let who = match (field("local-pid"), field("host")) {
        (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
        _ => "a run that has not said who it is yet".into(),
    };
    let mut line = format!("{target} is being deployed by another run: {who}");
    if let Some(started) = field("started") {
        line.push_str(&format!(", since {started}"));
    }
    if let Some(command) = field("command") {
        line.push_str(&format!(", running `{command}`"));
    }
    line.push_str(&format!(
        "; nothing was changed (the lock is {LOCK_FILE}, held as long as that run is connected)"
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    #[test]
    fn refusal_names_the_holder() {
        let holder = "remote-pid=77\nstarted=2026-12-01 13:40:05 UTC\nhost=opbox\nlocal-pid=1234\ncommand=webhost --ssh-host h\n";
        assert_eq!(
            refusal("root@h", holder),
            "root@h is being deployed by another run: pid 1234 on opbox, since 2026-12-01 13:40:05 UTC, running `webhost --ssh-host h`; nothing was changed (the lock is /run/chatmail-deploy.lock, held as long as that run is connected)"
        );
        assert!(refusal("h", "").contains("a run that has not said who it is yet"));
    }

    #[test]
    fn whoami_names_this_process() {
        let me = whoami();
        assert!(
            me.contains(&format!("local-pid={}\n", std::process::id())),
            "{me}"
        );
        assert!(me.starts_with("host=") && me.contains("\ncommand="));
    }

    /// The real script in a local shell, with the lock in a scratch directory: a second
    /// shell is refused with the first one's name; once the first one's stdin closes (its
    /// run ended or died), the lock is free again.
    #[test]
    fn the_lock_lives_as_long_as_the_holders_stdin() {
        let dir = std::env::temp_dir().join(format!("runlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let local = |s: String| {
            s.replace(LOCK_FILE, dir.join("lock").to_str().unwrap())
                .replace(HOLDER_FILE, dir.join("holder").to_str().unwrap())
        };
        let start = |who: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(local(script("T", who, "", "echo facts")))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut first = start("host=a\nlocal-pid=1\ncommand=one");
        let mut out = BufReader::new(first.stdout.take().unwrap());
        let mut seen = String::new();
        while !seen.ends_with("@@T locked\n") {
            assert_ne!(out.read_line(&mut seen).unwrap(), 0, "{seen}");
        }
        assert!(seen.starts_with("facts\n"), "{seen}");

        let second = start("host=b\nlocal-pid=2\ncommand=two")
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&second.stdout);
        let holder = text.strip_prefix("@@T busy\n").expect("refused");
        assert!(
            holder.contains("host=a\nlocal-pid=1\ncommand=one"),
            "{holder}"
        );

        first.stdin.take().unwrap().write_all(b"\n").unwrap(); // a heartbeat, then EOF
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert!(first.wait().unwrap().success());
        assert!(!dir.join("holder").exists(), "the holder removes its name");

        let mut third = start("host=c\nlocal-pid=3\ncommand=three");
        drop(third.stdin.take()); // its run is over at once: it takes the lock and lets go
        let mut got = String::new();
        third
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut got)
            .unwrap_or(0);
        assert!(got.ends_with("@@T locked\n"), "{got}");
        third.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
