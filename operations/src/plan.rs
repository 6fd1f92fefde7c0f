//! Desired state + facts -> an ordered list of changes.

use std::collections::{BTreeMap, BTreeSet};

use facts::{HostFacts, PathKind, PathState};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::resource::*;
use crate::restarts::{self, Pending};
use crate::{Error, State, apt, diff, script};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Packages,
    File,
    Directory,
    Symlink,
    Remove,
    Group,
    User,
    Service,
    Download,
    Command,
    DaemonReload,
    Restart,
    Reload,
}

/// What a change does on the host, as data: handlers are ordered from this and a step's
/// deadline and lock waits follow from it, never from the text of its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    InstallPackages,
    RemovePackages,
    /// Sends new content and puts it in place.
    Write,
    SetAttributes,
    MakeDirectory,
    Link,
    Delete,
    AddGroup,
    AddUser,
    ModifyUser,
    Mask,
    Unmask,
    Enable,
    Disable,
    Start,
    Stop,
    /// The host fetches a pinned file itself.
    Fetch,
    /// A command of the state, run as written.
    Run,
    /// The command runs apt or dpkg (declared by the command).
    RunsApt,
    /// The command asks systemd to act on units (declared by the command).
    UsesSystemd,
    DaemonReload,
    Restart,
    Reload,
}

impl Action {
    /// Asks systemd about units, which must have read changed unit files first.
    fn talks_to_systemd(self) -> bool {
        use Action::*;
        matches!(
            self,
            Mask | Unmask
                | Enable
                | Disable
                | Start
                | Stop
                | UsesSystemd
                | DaemonReload
                | Restart
                | Reload
        )
    }
}

/// One step of a plan: what it does, in words, and the command that does it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// What it does, in order.
    pub actions: Vec<Action>,
    /// The path, unit, package list or account the change is about.
    pub target: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip)]
    pub(crate) script: String,
    #[serde(skip)]
    pub(crate) stdin: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    /// The file's new content, kept until the old one is fetched for the diff.
    #[serde(skip)]
    pub(crate) new_content: Option<Vec<u8>>,
    #[serde(skip)]
    pub(crate) changes_unit_file: bool,
    /// How many resources of the state this change brings in line (one install covers many
    /// packages; handlers cover none).
    #[serde(skip)]
    pub covers: usize,
    /// Keeps the file's previous version for a unit with a config check.
    #[serde(skip)]
    pub(crate) keeps_previous: bool,
}

impl Change {
    /// Talks to systemd: a pending daemon-reload must run first.
    pub fn uses_systemd(&self) -> bool {
        self.actions.iter().any(|a| a.talks_to_systemd())
    }

    /// Runs apt or dpkg: waits for apt's locks first and gets apt's deadline.
    pub fn runs_apt(&self) -> bool {
        self.actions.iter().any(|a| {
            matches!(
                a,
                Action::InstallPackages | Action::RemovePackages | Action::RunsApt
            )
        })
    }

    fn new(
        kind: ChangeKind,
        actions: Vec<Action>,
        target: &str,
        description: String,
        script: String,
    ) -> Self {
        Change {
            kind,
            actions,
            target: target.to_string(),
            description,
            diff: None,
            script,
            stdin: Vec::new(),
            notify: Vec::new(),
            new_content: None,
            changes_unit_file: false,
            covers: 1,
            keeps_previous: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Run after all changes: daemon-reload, restarts and reloads.
    pub handlers: Vec<Change>,
    /// Resources already in their wanted state.
    pub unchanged: usize,
    /// What the state says about the host as it is (see [`State::warning`]).
    pub warnings: Vec<String>,
    /// Handlers that an interrupted earlier run left on the host.
    #[serde(skip)]
    pub(crate) pending_on_host: Pending,
    /// Handlers to record on the host before the first change.
    #[serde(skip)]
    pub(crate) pending: Pending,
    /// Some change keeps previous files for a checked unit (dropped after the handlers).
    #[serde(skip)]
    pub(crate) keeps_previous: bool,
}

impl Plan {
    /// Number of changes and handlers.
    pub fn change_count(&self) -> usize {
        self.changes.len() + self.handlers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.change_count() == 0
    }
}

/// Diffs `state` against `facts`.
pub fn plan(state: &State, facts: &HostFacts) -> Result<Plan, Error> {
    state.validate()?;
    if !facts.os.is_debian() {
        let name = if facts.os.pretty_name.is_empty() {
            facts.os.id.clone()
        } else {
            facts.os.pretty_name.clone()
        };
        return Err(Error::UnsupportedHost(format!(
            "the host runs {name:?} (ID={}), only Debian is supported",
            facts.os.id
        )));
    }
    let mut p = Planner {
        facts,
        checks: &state.config_checks,
        changes: Vec::new(),
        unchanged: 0,
        groups_created: BTreeSet::new(),
    };
    let installs: Vec<String> = wanted_packages(state, true)
        .filter(|n| !facts.package_installed(n))
        .collect();
    if let Some((name, providers)) = installs
        .iter()
        .find_map(|n| facts.virtual_packages.get_key_value(n))
    {
        return Err(Error::VirtualPackage {
            name: name.clone(),
            providers: providers.clone(),
        });
    }
    let removals: Vec<String> = wanted_packages(state, false)
        .filter(|n| facts.package_installed(n))
        .collect();
    let mut installs_placed = false;
    let mut removals_placed = false;
    for r in &state.resources {
        match r {
            Resource::Package(pkg) => {
                let (list, placed, verb) = if pkg.present {
                    (&installs, &mut installs_placed, "install")
                } else {
                    (&removals, &mut removals_placed, "remove")
                };
                if !list.contains(&pkg.name) {
                    p.unchanged += 1;
                } else if !*placed {
                    *placed = true;
                    let script = if pkg.present {
                        apt::install(list)
                    } else {
                        apt::remove(list)
                    };
                    let desc = format!("packages: {verb} {}", list.join(" "));
                    let action = if pkg.present {
                        Action::InstallPackages
                    } else {
                        Action::RemovePackages
                    };
                    let mut c = Change::new(
                        ChangeKind::Packages,
                        vec![action],
                        &list.join(" "),
                        desc,
                        script,
                    );
                    c.covers = state
                        .resources
                        .iter()
                        .filter(|r| matches!(r, Resource::Package(q) if q.present == pkg.present && list.contains(&q.name)))
                        .count();
                    p.changes.push(c);
                }
            }
            Resource::File(f) => p.file(f)?,
            Resource::Directory(d) => p.directory(d)?,
            Resource::Symlink(s) => p.symlink(s)?,
            Resource::Removed(r) => p.removed(r)?,
            Resource::RemovedTree(r) => p.removed_tree(r)?,
            Resource::Group(g) => p.group(g),
            Resource::User(u) => p.user(u),
            Resource::Service(s) => p.service(s),
            Resource::Download(d) => p.download(d)?,
            Resource::Command(c) => p.command(c),
        }
    }
    let Planner {
        changes, unchanged, ..
    } = p;
    let pending_on_host = facts
        .reads
        .get(restarts::PENDING_FILE)
        .and_then(|c| c.as_deref())
        .map(Pending::parse)
        .unwrap_or_default();
    let handlers_pending = handlers(state, &changes, &pending_on_host);
    let handlers = handler_changes(&handlers_pending, &pending_on_host, &state.config_checks);
    let keeps_previous = changes.iter().any(|c| c.keeps_previous);
    let warnings = state
        .warnings
        .iter()
        .filter(|(check, _)| facts.checks.get(check).copied().unwrap_or(false))
        .map(|(_, message)| message.clone())
        .collect();
    Ok(Plan {
        changes,
        handlers,
        unchanged,
        warnings,
        pending_on_host,
        pending: handlers_pending,
        keeps_previous,
    })
}

fn wanted_packages(state: &State, present: bool) -> impl Iterator<Item = String> + '_ {
    let mut seen = BTreeSet::new();
    state.resources.iter().filter_map(move |r| match r {
        Resource::Package(p) if p.present == present && seen.insert(p.name.clone()) => {
            Some(p.name.clone())
        }
        _ => None,
    })
}

/// The restarts, reloads and daemon-reload the changes call for, plus those left pending.
fn handlers(state: &State, changes: &[Change], on_host: &Pending) -> Pending {
    let mut pending = on_host.clone();
    let mut last_notify: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        pending.daemon_reload |= c.changes_unit_file;
        for n in &c.notify {
            pending.notify.insert(n.clone());
            last_notify.insert(n.unit(), i);
        }
    }
    // A unit that should be stopped is not restarted, and one this run starts after its
    // last changed file already runs the new configuration.
    let stopped: BTreeSet<&str> = state
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Service(s) if s.running == Some(false) || s.masked => Some(s.unit.as_str()),
            _ => None,
        })
        .collect();
    let started_at: BTreeMap<&str, usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.actions.contains(&Action::Start))
        .map(|(i, c)| (c.target.as_str(), i))
        .collect();
    pending.notify.retain(|n| {
        let unit = n.unit();
        let fresh_start = matches!(
            (started_at.get(unit), last_notify.get(unit)),
            (Some(start), Some(notify)) if start > notify
        ) && !on_host.notify.contains(n);
        !stopped.contains(unit) && !fresh_start
    });
    pending
}

fn handler_changes(
    pending: &Pending,
    on_host: &Pending,
    checks: &BTreeMap<String, String>,
) -> Vec<Change> {
    let why = |left_pending: bool| {
        if left_pending {
            " (recorded as pending on the host)"
        } else {
            ""
        }
    };
    let mut out = Vec::new();
    if pending.daemon_reload {
        let mut c = Change::new(
            ChangeKind::DaemonReload,
            vec![Action::DaemonReload],
            "systemd",
            format!("systemd: daemon-reload{}", why(on_host.daemon_reload)),
            "systemctl daemon-reload".into(),
        );
        c.covers = 0;
        out.push(c);
    }
    for n in pending.effective() {
        let (kind, action, verb) = match &n {
            Notify::Restart(_) => (ChangeKind::Restart, Action::Restart, "restart"),
            Notify::Reload(_) => (ChangeKind::Reload, Action::Reload, "reload-or-restart"),
        };
        let word = if kind == ChangeKind::Restart {
            "restart"
        } else {
            "reload"
        };
        let mut c = Change::new(
            kind,
            vec![action],
            n.unit(),
            format!(
                "service {}: {word}{}",
                n.unit(),
                why(on_host.notify.contains(&n))
            ),
            match checks.get(n.unit()) {
                Some(check) => {
                    script::checked_systemctl(script::PREVIOUS_DIR, verb, n.unit(), check)
                }
                None => script::systemctl(verb, n.unit()),
            },
        );
        c.covers = 0;
        out.push(c);
    }
    out
}

struct Planner<'f> {
    facts: &'f HostFacts,
    checks: &'f BTreeMap<String, String>,
    changes: Vec<Change>,
    unchanged: usize,
    groups_created: BTreeSet<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_unit_file(path: &str) -> bool {
    [
        "/etc/systemd/system/",
        "/lib/systemd/system/",
        "/usr/lib/systemd/system/",
    ]
    .iter()
    .any(|d| path.starts_with(d))
}

/// "owner a:b -> c:d, mode 644 -> 600", or None when both match.
fn attribute_drift(have: &PathState, owner: &str, group: &str, mode: u32) -> Option<String> {
    let mut parts = Vec::new();
    if have.owner != owner || have.group != group {
        parts.push(format!(
            "owner {}:{} -> {owner}:{group}",
            have.owner, have.group
        ));
    }
    if have.mode != mode {
        parts.push(format!("mode {:o} -> {mode:o}", have.mode));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

impl Planner<'_> {
    fn push(&mut self, c: Change) {
        self.changes.push(c);
    }

    fn file(&mut self, f: &File) -> Result<(), Error> {
        let have = self.facts.paths.get(&f.path);
        let want_sha = sha256_hex(&f.content);
        let (description, full_write) = match have {
            None => (
                format!(
                    "file {}: create ({} bytes, {}:{} {:o})",
                    f.path,
                    f.content.len(),
                    f.owner,
                    f.group,
                    f.mode
                ),
                true,
            ),
            Some(h) if h.kind == PathKind::Directory => {
                return Err(Error::Conflict(format!(
                    "{} is a directory, but a file is wanted there",
                    f.path
                )));
            }
            Some(h) if h.sha256.as_deref() != Some(want_sha.as_str()) => {
                let mut d = format!("file {}: update content", f.path);
                if let Some(drift) = attribute_drift(h, &f.owner, &f.group, f.mode) {
                    d.push_str(&format!(", {drift}"));
                }
                (d, true)
            }
            Some(h) => match attribute_drift(h, &f.owner, &f.group, f.mode) {
                Some(drift) => (format!("file {}: {drift}", f.path), false),
                None => {
                    self.unchanged += 1;
                    return Ok(());
                }
            },
        };
        let mut c = if full_write {
            // the units that check their config get this file back if the new one fails
            let keep: Vec<String> = f
                .notify
                .iter()
                .filter(|n| self.checks.contains_key(n.unit()))
                .map(|n| script::keep_previous(script::PREVIOUS_DIR, n.unit(), &f.path))
                .collect();
            let upload = crate::upload::prepare_gzipped(&f.content, f.gzip);
            let write = script::write_file(
                &f.path,
                &f.owner,
                &f.group,
                f.mode,
                f.content.len(),
                upload.compressed,
            );
            let script = if keep.is_empty() {
                write
            } else {
                format!("set -e\n{}\n{write}", keep.join("\n"))
            };
            let mut actions = vec![Action::Write];
            if have.is_some_and(|h| attribute_drift(h, &f.owner, &f.group, f.mode).is_some()) {
                actions.push(Action::SetAttributes);
            }
            let mut c = Change::new(ChangeKind::File, actions, &f.path, description, script);
            c.keeps_previous = !keep.is_empty();
            c.stdin = upload.stdin;
            if have.is_none() {
                c.diff = Some(diff::unified(&f.path, b"", &f.content));
            } else {
                c.new_content = Some(f.content.clone());
            }
            c.changes_unit_file = is_unit_file(&f.path);
            c
        } else {
            Change::new(
                ChangeKind::File,
                vec![Action::SetAttributes],
                &f.path,
                description,
                script::attributes(&facts::shell::quote(&f.path), &f.owner, &f.group, f.mode),
            )
        };
        c.notify = f.notify.clone();
        self.push(c);
        Ok(())
    }

    fn directory(&mut self, d: &Directory) -> Result<(), Error> {
        let description = match self.facts.paths.get(&d.path) {
            None => format!(
                "directory {}: create ({}:{} {:o})",
                d.path, d.owner, d.group, d.mode
            ),
            Some(h) if h.kind != PathKind::Directory => {
                return Err(Error::Conflict(format!(
                    "{} exists and is not a directory",
                    d.path
                )));
            }
            Some(h) => match attribute_drift(h, &d.owner, &d.group, d.mode) {
                Some(drift) => format!("directory {}: {drift}", d.path),
                None => {
                    self.unchanged += 1;
                    return Ok(());
                }
            },
        };
        let action = if self.facts.paths.contains_key(&d.path) {
            Action::SetAttributes
        } else {
            Action::MakeDirectory
        };
        self.push(Change::new(
            ChangeKind::Directory,
            vec![action],
            &d.path,
            description,
            script::directory(&d.path, &d.owner, &d.group, d.mode),
        ));
        Ok(())
    }

    fn symlink(&mut self, s: &Symlink) -> Result<(), Error> {
        let description = match self.facts.paths.get(&s.path) {
            Some(h) if h.link_target.as_deref() == Some(s.target.as_str()) => {
                self.unchanged += 1;
                return Ok(());
            }
            Some(h) if h.kind == PathKind::Directory => {
                return Err(Error::Conflict(format!(
                    "{} is a directory, but a symlink is wanted there",
                    s.path
                )));
            }
            Some(h) => format!(
                "symlink {} -> {}: replace {}",
                s.path,
                s.target,
                h.link_target
                    .as_ref()
                    .map(|t| format!("link to {t}"))
                    .unwrap_or_else(|| "file".into())
            ),
            None => format!("symlink {} -> {}: create", s.path, s.target),
        };
        let mut c = Change::new(
            ChangeKind::Symlink,
            vec![Action::Link],
            &s.path,
            description,
            script::symlink(&s.path, &s.target),
        );
        c.notify = s.notify.clone();
        self.push(c);
        Ok(())
    }

    fn removed(&mut self, r: &Removed) -> Result<(), Error> {
        match self.facts.paths.get(&r.path) {
            None => {
                self.unchanged += 1;
                Ok(())
            }
            Some(h) if h.kind == PathKind::Directory => Err(Error::Conflict(format!(
                "{} is a directory; directories are never removed",
                r.path
            ))),
            Some(h) => {
                let what = if h.kind == PathKind::Symlink {
                    "symlink"
                } else {
                    "file"
                };
                let mut c = Change::new(
                    ChangeKind::Remove,
                    vec![Action::Delete],
                    &r.path,
                    format!("{what} {}: remove", r.path),
                    script::remove(&r.path),
                );
                c.changes_unit_file = is_unit_file(&r.path);
                c.notify = r.notify.clone();
                self.push(c);
                Ok(())
            }
        }
    }

    fn removed_tree(&mut self, r: &RemovedTree) -> Result<(), Error> {
        if let Some(why) = r.refusal() {
            return Err(Error::Invalid(why));
        }
        let Some(have) = self.facts.paths.get(&r.path) else {
            self.unchanged += 1;
            return Ok(());
        };
        let what = if have.kind == PathKind::Directory {
            "directory"
        } else {
            "file"
        };
        self.push(Change::new(
            ChangeKind::Remove,
            vec![Action::Delete],
            &r.path,
            format!("{what} {}: remove with everything in it", r.path),
            format!("rm -rf -- {}", facts::shell::quote(&r.path)),
        ));
        Ok(())
    }

    fn group(&mut self, g: &Group) {
        if self.facts.groups.contains_key(&g.name) {
            self.unchanged += 1;
            return;
        }
        self.groups_created.insert(g.name.clone());
        let kind = if g.system { "system group" } else { "group" };
        self.push(Change::new(
            ChangeKind::Group,
            vec![Action::AddGroup],
            &g.name,
            format!("{kind} {}: create", g.name),
            script::group_add(&g.name, g.system),
        ));
    }

    fn user(&mut self, u: &User) {
        let n = facts::shell::quote(&u.name);
        let missing_groups: Vec<&str> = u
            .groups
            .iter()
            .filter(|g| {
                self.facts
                    .groups
                    .get(*g)
                    .is_none_or(|grp| !grp.members.contains(&u.name))
            })
            .map(String::as_str)
            .collect();
        let mut script = String::new();
        let mut what = Vec::new();
        match self.facts.users.get(&u.name) {
            None => {
                script.push_str(&script::user_add(
                    &u.name,
                    u.system,
                    u.home.as_deref(),
                    u.shell.as_deref(),
                    u.group.as_deref(),
                ));
                what.push("create".to_string());
            }
            Some(have) => {
                if let Some(shell) = u.shell.as_deref().filter(|s| *s != have.shell) {
                    script.push_str(&format!(
                        "usermod --shell {} {n}; ",
                        facts::shell::quote(shell)
                    ));
                    what.push(format!("shell {} -> {shell}", have.shell));
                }
                if let Some(home) = u.home.as_deref().filter(|h| *h != have.home) {
                    script.push_str(&format!(
                        "usermod --home {} {n}; ",
                        facts::shell::quote(home)
                    ));
                    what.push(format!("home {} -> {home}", have.home));
                }
            }
        }
        if !missing_groups.is_empty() {
            if !script.is_empty() && !script.ends_with("; ") {
                script.push_str(" && ");
            }
            script.push_str(&format!(
                "usermod -a -G {} {n}",
                facts::shell::quote(&missing_groups.join(","))
            ));
            what.push(format!("add to {}", missing_groups.join(",")));
        }
        if what.is_empty() {
            self.unchanged += 1;
            return;
        }
        let kind = if u.system { "system user" } else { "user" };
        let script = format!("set -e; {}", script.trim_end_matches("; "));
        let action = if self.facts.users.contains_key(&u.name) {
            Action::ModifyUser
        } else {
            Action::AddUser
        };
        self.push(Change::new(
            ChangeKind::User,
            vec![action],
            &u.name,
            format!("{kind} {}: {}", u.name, what.join(", ")),
            script,
        ));
    }

    fn service(&mut self, s: &Service) {
        let unit = self.facts.units.get(&s.unit).cloned().unwrap_or_default();
        let mut steps: Vec<Action> = Vec::new();
        if s.masked {
            if !unit.is_masked() {
                steps.push(Action::Mask);
            }
            if unit.is_active() {
                steps.push(Action::Stop);
            }
        } else {
            if unit.is_masked() {
                steps.push(Action::Unmask);
            }
            match s.enabled {
                Some(true) if !unit.is_enabled() || unit.is_masked() => steps.push(Action::Enable),
                Some(false) if unit.unit_file_state == "enabled" => steps.push(Action::Disable),
                _ => {}
            }
            match s.running {
                Some(true) if !unit.is_active() => steps.push(Action::Start),
                Some(false) if unit.is_active() => steps.push(Action::Stop),
                _ => {}
            }
        }
        if steps.is_empty() {
            self.unchanged += 1;
            return;
        }
        let was = if unit.exists() {
            format!(
                "was {}, {}",
                if unit.unit_file_state.is_empty() {
                    "-"
                } else {
                    &unit.unit_file_state
                },
                unit.active_state
            )
        } else {
            "was not installed".to_string()
        };
        let verbs: Vec<&str> = steps.iter().map(|a| systemctl_verb(*a)).collect();
        let script = verbs
            .iter()
            .map(|v| script::systemctl(v, &s.unit))
            .collect::<Vec<_>>()
            .join(" && ");
        let c = Change::new(
            ChangeKind::Service,
            steps,
            &s.unit,
            format!("service {}: {} ({was})", s.unit, verbs.join(", ")),
            script,
        );
        self.push(c);
    }

    fn download(&mut self, d: &Download) -> Result<(), Error> {
        let have = self.facts.paths.get(&d.path);
        if let Some(h) = have {
            if h.kind != PathKind::File {
                return Err(Error::Conflict(format!(
                    "{} exists and is not a file",
                    d.path
                )));
            }
            if h.sha256.as_deref() == Some(d.sha256.as_str()) {
                match attribute_drift(h, &d.owner, &d.group, d.mode) {
                    None => self.unchanged += 1,
                    Some(drift) => self.push(Change::new(
                        ChangeKind::Download,
                        vec![Action::SetAttributes],
                        &d.path,
                        format!("file {}: {drift}", d.path),
                        script::attributes(
                            &facts::shell::quote(&d.path),
                            &d.owner,
                            &d.group,
                            d.mode,
                        ),
                    )),
                }
                return Ok(());
            }
        }
        let verb = if have.is_some() { "replace" } else { "install" };
        let mut c = match &d.local {
            Some(local) => {
                let bytes = std::fs::read(local).map_err(|source| Error::LocalFile {
                    path: local.display().to_string(),
                    source,
                })?;
                let actual = sha256_hex(&bytes);
                if actual != d.sha256 {
                    return Err(Error::ChecksumMismatch {
                        path: local.display().to_string(),
                        expected: d.sha256.clone(),
                        actual,
                    });
                }
                let upload = crate::upload::prepare(&bytes);
                let mut c = Change::new(
                    ChangeKind::Download,
                    vec![Action::Write],
                    &d.path,
                    format!(
                        "file {}: {verb} from local {} (sha256 {})",
                        d.path,
                        local.display(),
                        short(&d.sha256)
                    ),
                    script::write_file(
                        &d.path,
                        &d.owner,
                        &d.group,
                        d.mode,
                        bytes.len(),
                        upload.compressed,
                    ),
                );
                c.stdin = upload.stdin;
                c
            }
            None => Change::new(
                ChangeKind::Download,
                vec![Action::Fetch],
                &d.path,
                format!(
                    "file {}: {verb} from {} (sha256 {})",
                    d.path,
                    d.url,
                    short(&d.sha256)
                ),
                script::download(d),
            ),
        };
        c.notify = d.notify.clone();
        c.changes_unit_file = is_unit_file(&d.path);
        self.push(c);
        Ok(())
    }

    fn command(&mut self, c: &Command) {
        let run = match &c.guard {
            Guard::Creates(path) => !self.facts.paths.contains_key(path),
            Guard::Unless(check) => !self.facts.checks.get(check).copied().unwrap_or(false),
            Guard::OnlyIf(check) => self.facts.checks.get(check).copied().unwrap_or(false),
        };
        if !run {
            self.unchanged += 1;
            return;
        }
        let mut actions = vec![Action::Run];
        if c.runs_apt {
            actions.push(Action::RunsApt);
        }
        if c.uses_systemd {
            actions.push(Action::UsesSystemd);
        }
        let mut change = Change::new(
            ChangeKind::Command,
            actions,
            &c.description,
            c.description.clone(),
            c.script.clone(),
        );
        change.notify = c.notify.clone();
        self.push(change);
    }
}

/// The `systemctl` verb of a unit action.
fn systemctl_verb(action: Action) -> &'static str {
    match action {
        Action::Mask => "mask",
        Action::Unmask => "unmask",
        Action::Enable => "enable",
        Action::Disable => "disable",
        Action::Start => "start",
        Action::Stop => "stop",
        other => unreachable!("{other:?} is not a unit action"),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests;
