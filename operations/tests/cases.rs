//! Data-driven plan and apply tests through a recording fake remote: each file in
//! `tests/cases/*.toml` holds cases (a desired state, the facts of a host, the replies of the
//! host's commands), and `tests/cases/*.out` holds what comes out of each: the plan, every
//! command apply sends with its stdin size, the outcome or error, and the reporter's events.
//! A change in the engine shows as a diff of those files; `CHATMAIL_BLESS=1 cargo test -p
//! operations --test cases` writes them anew for review.
//!
//! The fake only records and replies; behaviour that depends on a real host (what the
//! commands do there) is tested on test hosts (tests/engine.rs, tests/faults.rs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use facts::{ExecOutput, HostFacts, Remote, RemoteError};
use operations::{ApplyOptions, Change, Plan, Reporter, State};

mod case;

use case::CaseFile;

/// Answers each command with the first reply whose `when` it contains (else success, no
/// output) and records it.
struct FakeRemote {
    replies: Vec<case::Reply>,
    log: Mutex<Vec<(String, usize)>>,
}

impl Remote for FakeRemote {
    async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, RemoteError> {
        self.log
            .lock()
            .unwrap()
            .push((command.to_string(), stdin.len()));
        let reply = self.replies.iter().find(|r| command.contains(&r.when));
        match reply {
            Some(r) if r.lost => Err(RemoteError(
                "ssh connection lost while a command ran".into(),
            )),
            Some(r) => Ok(ExecOutput {
                stdout: r.stdout.clone().into_bytes(),
                stderr: r.stderr.clone().into_bytes(),
                status: Some(r.status),
            }),
            None => Ok(ExecOutput {
                status: Some(0),
                ..ExecOutput::default()
            }),
        }
    }
}

/// The reporter's events in order (waiting events left out: they depend on the clock).
#[derive(Default)]
struct RecordingReporter {
    events: Mutex<Vec<String>>,
}

impl Reporter for RecordingReporter {
    fn change_started(&self, change: &Change) {
        self.push(format!("started: {}", change.description));
    }
    fn change_finished(&self, change: &Change) {
        self.push(format!("finished: {}", change.description));
    }
    fn note(&self, message: &str) {
        self.push(format!("note: {message}"));
    }
    fn warning(&self, change: &Change, message: &str) {
        self.push(format!("warning from {}: {message}", change.description));
    }
    fn command_failed(&self, what: &str, stderr: &str) {
        self.push(format!("failed: {what}: stderr {:?}", stderr.trim_end()));
    }
}

impl RecordingReporter {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

fn describe_plan(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "== plan: {} changes, {} handlers, {} unchanged",
        plan.changes.len(),
        plan.handlers.len(),
        plan.unchanged
    );
    for c in &plan.changes {
        let _ = writeln!(out, "change: {}", c.description);
        if let Some(diff) = &c.diff {
            for line in diff.lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
    for h in &plan.handlers {
        let _ = writeln!(out, "handler: {}", h.description);
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
}

async fn run_case(c: &case::Case) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {}", c.name);
    let state: State = c.state();
    let facts: HostFacts = c.facts.host_facts(&state, &c.name);
    let plan = match operations::plan(&state, &facts) {
        Ok(plan) => plan,
        Err(e) => {
            let _ = writeln!(out, "== plan error: {e}");
            return out;
        }
    };
    describe_plan(&mut out, &plan);
    if c.dry_run {
        let _ = writeln!(out, "== dry run: nothing sent");
        return out;
    }
    let remote = FakeRemote {
        replies: c.reply.clone(),
        log: Mutex::new(Vec::new()),
    };
    let reporter = RecordingReporter::default();
    let options = ApplyOptions {
        stop_after_packages: c.stop_after_packages,
        ..ApplyOptions::default()
    };
    let result = operations::apply(&remote, &plan, &reporter, &options).await;
    for (i, (command, stdin)) in remote.log.lock().unwrap().iter().enumerate() {
        let _ = writeln!(out, "== exec {} (stdin {stdin} bytes)", i + 1);
        let _ = writeln!(out, "{}", command.trim_end());
    }
    match result {
        Ok(o) => {
            let _ = writeln!(
                out,
                "== outcome: {} changed, {} handlers, {} resources covered, finished: {}",
                o.changed, o.handlers, o.covered, o.finished
            );
        }
        Err(e) => {
            let _ = writeln!(out, "== error: {e}");
        }
    }
    let _ = writeln!(out, "== reporter");
    for event in reporter.events.lock().unwrap().iter() {
        let _ = writeln!(out, "{event}");
    }
    out
}

fn diff(name: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("expected {name}"), &format!("actual {name}"))
        .to_string()
}

#[tokio::test]
async fn every_case_gives_its_recorded_plan_commands_and_outcome() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let bless = std::env::var_os("CHATMAIL_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "case files missing in {}", dir.display());
    let mut failures = BTreeMap::new();
    let mut count = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let cases: CaseFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut actual = String::new();
        for c in &cases.case {
            actual += &run_case(c).await;
            actual.push('\n');
            count += 1;
        }
        let expected_path = path.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            let name = expected_path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            failures.insert(name.clone(), diff(&name, &expected, &actual));
        }
    }
    assert!(count >= 30, "only {count} cases");
    assert!(
        failures.is_empty(),
        "cases differ from their recorded output (accept with CHATMAIL_BLESS=1 cargo test -p operations --test cases):\n{}",
        failures.into_values().collect::<String>()
    );
}

/// The file format is checked too: an unknown key is an error, not a silently ignored case.
#[test]
fn a_misspelled_key_in_a_case_file_is_refused() {
    let err = toml::from_str::<CaseFile>("[[case]]\nname = \"x\"\ndry_runn = true\n")
        .err()
        .expect("refused");
    assert!(err.to_string().contains("dry_runn"), "{err}");
}
