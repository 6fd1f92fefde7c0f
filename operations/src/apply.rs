//! Carrying out a plan on the host.

use std::time::Duration;

use facts::Remote;
use facts::shell::quote;
use futures_util::future::join_all;

use crate::step;

use crate::diff::{MAX_DIFF_BYTES, unified};
use crate::restarts::{self, Pending};
use crate::{Change, ChangeKind, Error, Plan, Reporter};

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Stop after a package install that has more changes behind it: packages create files,
    /// users and units the plan could not see, so the caller gathers facts again and plans
    /// the rest.
    pub stop_after_packages: bool,
    /// Test hook: after the last change, stop and wait forever before the handlers run, so
    /// that a test can kill the run at exactly that point.
    pub hold_before_handlers: bool,
    /// Test hook: every step's deadline times this (0 or less: 1), so that a test can see a
    /// step run out of time without waiting for the real bound.
    pub deadline_scale: f64,
}

impl ApplyOptions {
    fn limit(&self, bound: Duration) -> Duration {
        if self.deadline_scale > 0.0 {
            bound.mul_f64(self.deadline_scale)
        } else {
            bound
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Changes carried out (not counting handlers).
    pub changed: usize,
    /// Handlers run: daemon-reload, restarts, reloads.
    pub handlers: usize,
    /// Resources of the state those changes brought in line.
    pub covered: usize,
    /// False when apply stopped after packages and the rest must be planned again.
    pub finished: bool,
}

/// Fetches the current content of the files the plan rewrites, in one remote command, and
/// fills in their diffs.
pub async fn fetch_old_contents<R: Remote>(remote: &R, plan: &mut Plan) -> Result<(), Error> {
    let wanted: Vec<usize> = plan
        .changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.new_content.is_some())
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut script = String::from("for p in");
    for &i in &wanted {
        script.push(' ');
        script.push_str(&quote(&plan.changes[i].target));
    }
    script.push_str(&format!(
        "; do s=$(stat -c %s -- \"$p\" 2>/dev/null || echo -1); \
         if [ \"$s\" -ge 0 ] && [ \"$s\" -le {MAX_DIFF_BYTES} ]; then echo \"$s\"; cat -- \"$p\"; else echo -1; fi; done"
    ));
    let out = remote.exec(&script, b"").await?;
    let mut rest: &[u8] = &out.stdout;
    for &i in &wanted {
        let change = &mut plan.changes[i];
        let new = change.new_content.take().unwrap_or_default();
        let old = take_sized(&mut rest);
        change.diff = Some(match old {
            Some(old) => unified(&change.target, old, &new),
            None => format!("Large or unreadable file {}: replaced\n", change.target),
        });
    }
    Ok(())
}

/// Removes what killed runs left half-written beside `paths` (the managed files) and beside
/// the pending-restarts record: temp files named with [`crate::script::TEMP_SUFFIX`]. Only
/// safe while holding the run lock, so that no live run is writing them.
pub fn stale_temp_cleanup<'a>(paths: impl IntoIterator<Item = &'a str>) -> String {
    let suffix = crate::script::TEMP_SUFFIX;
    let mut script = String::from("for p in");
    for p in paths {
        script.push(' ');
        script.push_str(&quote(p));
    }
    script.push_str(&format!(
        "; do rm -f -- \"$p\"{suffix} \"$p\"{suffix}.* \"$p\"{suffix}.*.archive; done; rm -f -- {}.tmp {}.tmp.*",
        crate::PENDING_FILE,
        crate::PENDING_FILE
    ));
    script
}

/// Reads "<size>\n<size bytes>" from the front of `rest`; `None` for size -1 or bad input.
fn take_sized<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let size: i64 = std::str::from_utf8(&rest[..nl]).ok()?.trim().parse().ok()?;
    *rest = &rest[nl + 1..];
    let size = usize::try_from(size).ok()?;
    if size > rest.len() {
        *rest = &[];
        return None;
    }
    let (body, tail) = rest.split_at(size);
    *rest = tail;
    Some(body)
}

/// Runs every change of the plan in order, then the handlers. Handlers are recorded on the
/// host before the first change and cleared after the last handler, so that an interrupted
/// run leaves them for the next one.
pub async fn apply<R: Remote>(
    remote: &R,
    plan: &Plan,
    reporter: &dyn Reporter,
    options: &ApplyOptions,
) -> Result<Outcome, Error> {
    let barrier = plan
        .changes
        .iter()
        .position(|c| c.kind == ChangeKind::Packages)
        .filter(|&i| options.stop_after_packages && i + 1 < plan.changes.len());
    let (changes, pending) = match barrier {
        Some(i) => {
            let first = &plan.changes[..=i];
            (first, Pending::from_changes(first, &plan.pending_on_host))
        }
        None => (&plan.changes[..], plan.pending.clone()),
    };
    if !pending.is_empty() && pending != plan.pending_on_host {
        let script = restarts::record_script(&pending);
        let limit = options.limit(step::BOOKKEEPING);
        step::run(
            remote,
            &script,
            b"",
            "recording pending restarts",
            limit,
            reporter,
        )
        .await?;
    }
    // systemd must read changed unit files before it is asked to act on a unit: the planned
    // daemon-reload runs right before the first such change, or with the handlers
    let daemon_reload = plan
        .handlers
        .iter()
        .find(|c| c.kind == ChangeKind::DaemonReload);
    let mut reload_due = plan.pending_on_host.daemon_reload;
    let mut reloads = 0;
    let mut rest = changes;
    while let Some(change) = rest.first() {
        // independent file writes go out together (the transport bounds the channels)
        let batch = rest
            .iter()
            .take_while(|c| c.kind == ChangeKind::File)
            .count();
        if batch > 1 {
            let (files, tail) = rest.split_at(batch);
            files.iter().for_each(|c| reporter.change_started(c));
            let results =
                join_all(files.iter().map(|c| execute(remote, c, reporter, options))).await;
            for (c, result) in files.iter().zip(results) {
                result?;
                reload_due |= c.changes_unit_file;
                reporter.change_finished(c);
            }
            rest = tail;
            continue;
        }
        rest = &rest[1..];
        if change.uses_systemd() && reload_due {
            if let Some(reload) = daemon_reload {
                reporter.change_started(reload);
                execute(remote, reload, reporter, options).await?;
                reporter.change_finished(reload);
                reloads += 1;
            }
            reload_due = false;
        }
        reporter.change_started(change);
        execute(remote, change, reporter, options).await?;
        reload_due |= change.changes_unit_file;
        reporter.change_finished(change);
    }
    let covered = changes.iter().map(|c| c.covers).sum();
    if barrier.is_some() {
        return Ok(Outcome {
            changed: changes.len(),
            handlers: reloads,
            covered,
            finished: false,
        });
    }
    if options.hold_before_handlers && !plan.handlers.is_empty() {
        reporter.note("holding before restarts (test hook)");
        std::future::pending::<()>().await;
    }
    // a unit that refuses its new config must not keep the others from theirs: every
    // handler runs, the failures are reported together, and they stay pending on the host
    let mut failures = Vec::new();
    let mut handlers = reloads;
    for change in &plan.handlers {
        if change.kind == ChangeKind::DaemonReload && !reload_due && reloads > 0 {
            continue;
        }
        handlers += 1;
        reporter.change_started(change);
        match execute(remote, change, reporter, options).await {
            Ok(()) => reporter.change_finished(change),
            Err(Error::ChangeFailed { detail, .. })
                if matches!(change.kind, ChangeKind::Restart | ChangeKind::Reload) =>
            {
                failures.push(named_failure(&change.target, detail))
            }
            Err(e) => return Err(e),
        }
    }
    if !failures.is_empty() {
        return Err(Error::HandlersFailed(failures.join("; ")));
    }
    if !plan.pending.is_empty() || !plan.pending_on_host.is_empty() || plan.keeps_previous {
        let limit = options.limit(step::BOOKKEEPING);
        let script = restarts::clear_script();
        step::run(
            remote,
            &script,
            b"",
            "clearing pending restarts",
            limit,
            reporter,
        )
        .await?;
    }
    Ok(Outcome {
        changed: changes.len(),
        handlers,
        covered,
        finished: true,
    })
}

async fn execute<R: Remote>(
    remote: &R,
    change: &Change,
    reporter: &dyn Reporter,
    options: &ApplyOptions,
) -> Result<(), Error> {
    let limit = options.limit(step::deadline(
        change.kind,
        change.runs_apt(),
        change.stdin.len(),
    ));
    let script = step::prepared(change.runs_apt(), &change.script);
    let out = step::run(
        remote,
        &script,
        &change.stdin,
        &change.description,
        limit,
        reporter,
    )
    .await?;
    for message in warnings(&out.stderr) {
        reporter.warning(change, message);
    }
    Ok(())
}

/// A failed handler's message names its unit: a checked restart and systemd's own "Job for
/// UNIT failed" do, a step's timeout ("no result within 24 s") does not.
fn named_failure(unit: &str, detail: String) -> String {
    if detail.contains(unit) {
        detail
    } else {
        format!("{unit}: {detail}")
    }
}

/// The lines of a successful command's stderr meant for the operator: commands print
/// `warning: ...` for what succeeded but not as wished (the rest of stderr is tool noise).
fn warnings(stderr: &[u8]) -> Vec<&str> {
    std::str::from_utf8(stderr)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("warning: "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_failure_names_its_unit_once() {
        assert_eq!(
            named_failure("nginx.service", "no result within 24 s".into()),
            "nginx.service: no result within 24 s"
        );
        let checked = "postfix@-.service: new config refused by postfix check".to_string();
        assert_eq!(named_failure("postfix@-.service", checked.clone()), checked);
        let systemd = "Job for a.service failed. (exit status 1)".to_string();
        assert_eq!(named_failure("a.service", systemd.clone()), systemd);
    }

    #[test]
    fn warnings_are_the_lines_that_say_so() {
        let stderr =
            b"debconf: noise\nwarning: Debian's Dovecot installed\n  warning: second\nW: apt\n";
        assert_eq!(warnings(stderr), ["Debian's Dovecot installed", "second"]);
        assert!(warnings(b"\xff\xfe").is_empty());
    }

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("opstale{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("it's.conf");
        let names = [
            "it's.conf",
            "it's.conf.chatmail-deploy-tmp",
            "it's.conf.chatmail-deploy-tmp.123",
            "it's.conf.chatmail-deploy-tmp.123.archive",
            "it's.conf.other",
        ];
        for n in names {
            std::fs::write(dir.join(n), "x").unwrap();
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(stale_temp_cleanup([path.to_str().unwrap()]))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["it's.conf", "it's.conf.other"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn splits_sized_records() {
        let data = b"3\nabc-1\n0\n5\nhello".to_vec();
        let mut rest: &[u8] = &data;
        assert_eq!(take_sized(&mut rest), Some(&b"abc"[..]));
        assert_eq!(take_sized(&mut rest), None);
        assert_eq!(take_sized(&mut rest), Some(&b""[..]));
        assert_eq!(take_sized(&mut rest), Some(&b"hello"[..]));
        assert!(rest.is_empty());
    }

    #[test]
    fn truncated_records_do_not_panic() {
        let mut rest: &[u8] = b"99\nshort";
        assert_eq!(take_sized(&mut rest), None);
        let mut rest: &[u8] = b"garbage";
        assert_eq!(take_sized(&mut rest), None);
    }
}
