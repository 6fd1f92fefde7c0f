//! One deploy run, whatever the state: connect, gather facts, plan, print or apply.

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use operations::{ApplyOptions, ChangeKind, Reporter, State, Summary};

use crate::Error;
use crate::printer;
use crate::transport::{Host, SshOptions, Target, lock};

/// Package installs and removals each end a round; more rounds than this mean a loop.
const MAX_ROUNDS: usize = 4;

/// How to reach the host.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Where to deploy: HOST, USER@HOST:PORT, a Host alias from ~/.ssh/config, or @local
    /// (relay commands: default the mail domain, as cmdeploy does)
    #[arg(long, value_name = "HOST")]
    pub ssh_host: Option<String>,
    /// known_hosts file to check the host key against
    #[arg(long, env = "CHATMAIL_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Record the host key if the host is not in known_hosts yet (a changed key is always refused)
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// ssh config file for Host aliases
    #[arg(long, env = "CHATMAIL_SSH_CONFIG", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

/// What to do with the plan.
#[derive(Debug, Clone, Default, Args)]
pub struct PlanArgs {
    /// Show what would change, with diffs, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: exit with status 2 when changes are pending
    #[arg(long, requires = "dry_run")]
    pub check: bool,
    /// Print the plan or result as JSON
    #[arg(long)]
    pub json: bool,
}

impl HostArgs {
    /// These arguments, with `host` where --ssh-host was not given.
    pub fn or_host(&self, host: &str) -> HostArgs {
        HostArgs {
            ssh_host: Some(self.ssh_host.clone().unwrap_or_else(|| host.to_owned())),
            ..self.clone()
        }
    }

    pub fn target(&self) -> Result<Target, Error> {
        let host = self
            .ssh_host
            .as_deref()
            .ok_or_else(|| Error::Target("no host to connect to: pass --ssh-host".into()))?;
        let config = self
            .ssh_config
            .clone()
            .or_else(|| home().map(|h| h.join(".ssh/config")));
        Target::parse(host, config.as_deref())
    }

    pub fn ssh_options(&self) -> Result<SshOptions, Error> {
        let known_hosts = match &self.known_hosts {
            Some(p) => p.clone(),
            None => home()
                .ok_or_else(|| Error::Target("HOME is not set: pass --known-hosts".into()))?
                .join(".ssh/known_hosts"),
        };
        Ok(SshOptions {
            known_hosts,
            accept_new_host_key: self.accept_new_host_key,
            connect_timeout: Duration::from_secs(10),
        })
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Deploys `state`, reporting on the terminal (or as JSON with `--json`); returns the exit
/// code (2 for `--dry-run --check` with pending changes).
pub async fn deploy(
    host: &HostArgs,
    plan_args: &PlanArgs,
    state: &State,
) -> Result<ExitCode, Error> {
    let reporter = printer::for_output(plan_args.json);
    let query = state.query();
    run(
        host,
        plan_args,
        &query,
        &|_| Ok(Cow::Borrowed(state)),
        &*reporter,
    )
    .await
}

/// Like [`deploy`], for a state that depends on the host (its architecture, say), and to a
/// reporter of the caller's: `query` gathers the facts, `state_for` makes the state from
/// them (and may refuse the host). `query` must ask for everything the state's own query
/// asks for. The state is made once from the facts the run lock gathered, and again only
/// after a package change (the state may follow from what a package installs).
pub async fn deploy_with(
    host: &HostArgs,
    plan_args: &PlanArgs,
    query: &facts::Query,
    state_for: &(dyn Fn(&facts::HostFacts) -> Result<State, Error> + Sync),
    reporter: &dyn Reporter,
) -> Result<ExitCode, Error> {
    run(
        host,
        plan_args,
        query,
        &|facts| state_for(facts).map(Cow::Owned),
        reporter,
    )
    .await
}

/// How a run gets its state: borrowed when it is fixed, made from the facts otherwise.
type StateFor<'s> = dyn Fn(&facts::HostFacts) -> Result<Cow<'s, State>, Error> + Sync + 's;

async fn run<'s>(
    host: &HostArgs,
    plan_args: &PlanArgs,
    query: &facts::Query,
    state_for: &StateFor<'s>,
    printer: &dyn Reporter,
) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let target = host.target()?;
    printer.status(&format!("connecting to {}", target.describe()));
    let remote = Host::connect(&target, &host.ssh_options()?).await?;
    printer.status("taking the run lock and gathering facts");
    // leftovers of killed runs go, under the lock; a dry run leaves even those alone
    let cleanup = if plan_args.dry_run {
        String::new()
    } else {
        operations::stale_temp_cleanup(query.paths.iter().map(String::as_str))
    };
    let taken = within(
        FACTS_BOUND,
        "taking the run lock and gathering facts",
        lock::take(&remote, &target.describe(), query, &cleanup),
    )
    .await;
    let (facts, lock) = match taken {
        Ok(t) => t,
        Err(e) => {
            remote.close().await;
            return Err(e);
        }
    };
    let result = plan_and_apply(
        &remote, printer, &target, plan_args, query, &facts, state_for,
    )
    .await;
    // the lock goes before the connection, so that it is free when this run says it is done
    lock.release().await;
    let commands = remote.exec_count();
    let uploaded = remote.uploaded_bytes();
    remote.close().await;
    let code = result?;
    printer.timing(&format!(
        "done in {:.3} s, {commands} remote command{}, {uploaded} bytes uploaded",
        started.elapsed().as_secs_f64(),
        if commands == 1 { "" } else { "s" }
    ));
    Ok(code)
}

/// Remote steps outside apply: gathering facts, reading the files a dry run diffs. A relay's
/// facts take about a second; this bound only keeps a dead host from hanging the run.
const FACTS_BOUND: Duration = Duration::from_secs(120);

/// `future`, or an error naming `what` once `bound` has passed.
async fn within<T>(
    bound: Duration,
    what: &str,
    future: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(bound, future).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            what: what.into(),
            secs: bound.as_secs(),
        }),
    }
}

/// Everything between taking the lock and letting it go.
async fn plan_and_apply<'s>(
    remote: &Host,
    printer: &dyn Reporter,
    target: &Target,
    plan_args: &PlanArgs,
    query: &facts::Query,
    facts: &facts::HostFacts,
    state_for: &StateFor<'s>,
) -> Result<ExitCode, Error> {
    // a fact the state reads that the query did not ask for panics in debug builds where
    // it is read (facts::Answers)
    let mut state = state_for(facts)?;
    let resources = state.resources.len();
    let mut plan = operations::plan(&state, facts)?;
    if plan_args.dry_run {
        within(FACTS_BOUND, "reading the files the plan changes", async {
            Ok(operations::fetch_old_contents(remote, &mut plan).await?)
        })
        .await?;
        printer.plan_ready(&plan);
        for w in &plan.warnings {
            printer.host_warning(w);
        }
        printer.summary(&Summary {
            host: target.describe(),
            dry_run: true,
            changes: plan.changes.iter().chain(&plan.handlers).collect(),
            changed: plan.changes.iter().map(|c| c.covers).sum(),
            unchanged: plan.unchanged,
            resources,
            handlers: plan.handlers.len(),
        });
        return Ok(if plan_args.check && !plan.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        });
    }
    let options = ApplyOptions {
        stop_after_packages: true,
        hold_before_handlers: crate::test_hooks::hold_before_restarts(),
        deadline_scale: crate::test_hooks::deadline_scale(),
    };
    let mut applied = Vec::new();
    let (mut covered, mut handlers) = (0, 0);
    let mut warnings = plan.warnings.clone();
    // A package install may create what later resources manage: after it, plan again.
    let mut packages_changed = false;
    for round in 1.. {
        let outcome = operations::apply(remote, &plan, printer, &options).await?;
        packages_changed = plan
            .changes
            .iter()
            .take(outcome.changed)
            .any(|c| c.kind == ChangeKind::Packages);
        applied.extend(plan.changes.iter().take(outcome.changed).cloned());
        if outcome.finished {
            applied.extend(plan.handlers.iter().cloned());
        }
        covered += outcome.covered;
        handlers += outcome.handlers;
        if outcome.finished {
            break;
        }
        printer.status("gathering facts after package changes");
        let facts = gather(remote, query, &state).await?;
        // the state may follow from facts the packages just changed (a tool the Dovecot
        // choice needs, say): made again, as a later run would make it
        state = state_for(&facts)?;
        plan = operations::plan(&state, &facts)?;
        if round == MAX_ROUNDS && !plan.is_empty() {
            return Err(Error::NotConverged {
                rounds: MAX_ROUNDS,
                left: names(&plan),
            });
        }
    }
    // Only the host can say whether the changes took: a package that installs under
    // another name, a command whose guard stays false. Exit 0 means it matches now.
    if !applied.is_empty() {
        printer.status("checking the host against the desired state");
        let facts = gather(remote, query, &state).await?;
        // the state of the last round, unless that round changed packages it may follow from
        if packages_changed {
            state = state_for(&facts)?;
        }
        let left = operations::plan(&state, &facts)?;
        warnings = left.warnings.clone();
        if !left.changes.is_empty() {
            return Err(Error::Mismatch(names(&left)));
        }
    }
    // said about the host as the run leaves it
    for w in &warnings {
        printer.host_warning(w);
    }
    // a resource brought in line twice in one run (a package rewrote it) counts once
    let changed = covered.min(resources);
    printer.summary(&Summary {
        host: target.describe(),
        dry_run: false,
        changes: applied.iter().collect(),
        changed,
        unchanged: resources - changed,
        resources,
        handlers,
    });
    Ok(ExitCode::SUCCESS)
}

/// The facts `query` and the state's own query ask for.
async fn gather(
    remote: &Host,
    query: &facts::Query,
    state: &State,
) -> Result<facts::HostFacts, Error> {
    let mut all = query.clone();
    all.merge(&state.query());
    within(FACTS_BOUND, "gathering facts", async {
        Ok(all.gather(remote).await?)
    })
    .await
}

/// The changes of a plan, one phrase each, for an error line.
fn names(plan: &operations::Plan) -> String {
    plan.changes
        .iter()
        .map(|c| c.description.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `f` on a tokio runtime and turns an error into one line and exit status 1.
// the program's last line, after every reporter is gone
#[allow(clippy::print_stderr)]
pub fn run_main<F, E>(f: F) -> ExitCode
where
    F: std::future::Future<Output = Result<ExitCode, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::one_line(e.into().as_ref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(host: Option<&str>) -> HostArgs {
        HostArgs {
            ssh_host: host.map(str::to_owned),
            known_hosts: None,
            accept_new_host_key: false,
            ssh_config: Some(PathBuf::from("/nonexistent/ssh_config")),
        }
    }

    #[test]
    fn the_mail_domain_is_the_default_host() {
        let target = args(None).or_host("chat.example.org").target().unwrap();
        assert!(
            target.describe().contains("chat.example.org"),
            "{}",
            target.describe()
        );
        let given = args(Some("10.0.0.7")).or_host("chat.example.org");
        assert!(given.target().unwrap().describe().contains("10.0.0.7"));
        let none = args(None).target().unwrap_err().to_string();
        assert_eq!(none, "no host to connect to: pass --ssh-host");
    }
}

/// The driver reports through the reporter it is given: a command's warning and a failing
/// command's stderr arrive as events, nothing is printed. Runs on this machine (`@local`,
/// which takes the run lock in /run: root only).
#[cfg(test)]
mod reporting {
    use std::sync::Mutex;

    use operations::{Change, Command, Guard};

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Reporter for Recorder {
        fn warning(&self, change: &Change, message: &str) {
            self.push(format!("warning from {}: {message}", change.description));
        }
        fn command_failed(&self, what: &str, stderr: &str) {
            self.push(format!("failed: {what}: {}", stderr.trim_end()));
        }
        fn host_warning(&self, message: &str) {
            self.push(format!("host warning: {message}"));
        }
        fn summary(&self, summary: &Summary<'_>) {
            self.push(summary.line());
        }
    }

    impl Recorder {
        fn push(&self, event: String) {
            self.0.lock().unwrap().push(event);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn local() -> HostArgs {
        HostArgs {
            ssh_host: Some("@local".into()),
            known_hosts: Some(PathBuf::from("/nonexistent/known_hosts")),
            accept_new_host_key: false,
            ssh_config: None,
        }
    }

    async fn deploy_to(state: State, recorder: &Recorder) -> Result<ExitCode, Error> {
        deploy_with(
            &local(),
            &PlanArgs::default(),
            &state.query(),
            &|_| Ok(state.clone()),
            recorder,
        )
        .await
    }

    #[tokio::test]
    async fn a_warning_and_a_failing_commands_stderr_arrive_as_events() {
        if std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(lock::LOCK_FILE)
            .is_err()
        {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: needs to take the run lock {}", lock::LOCK_FILE);
            }
            return;
        }
        let dir = std::env::temp_dir().join(format!("engine-reporting-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("marker").display().to_string();
        let recorder = Recorder::default();

        let mut warns = State::new();
        warns.add(Command::new(
            "make the marker",
            format!("echo 'warning: the disk is nearly full' >&2; touch {marker}"),
            Guard::Creates(marker.clone()),
        ));
        let code = deploy_to(warns.clone(), &recorder).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            recorder.take(),
            [
                "warning from make the marker: the disk is nearly full",
                "summary: 1 changed, 0 unchanged (1 resources)"
            ]
        );

        let mut fails = State::new();
        fails.add(Command::new(
            "fail on purpose",
            "echo 'cannot frobnicate: no such thing' >&2; exit 3",
            Guard::Creates(dir.join("never").display().to_string()),
        ));
        let err = deploy_to(fails, &recorder).await.unwrap_err().to_string();
        assert_eq!(
            recorder.take(),
            ["failed: fail on purpose: cannot frobnicate: no such thing"]
        );
        assert!(
            err.contains("cannot frobnicate: no such thing (exit status 3)"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
