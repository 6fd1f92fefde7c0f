//! The case file format: TOML, every key checked (a misspelled one is an error).

use std::collections::BTreeMap;

use facts::{HostFacts, OsRelease, PathKind, PathState};
use operations::{
    Command, Directory, Download, File, Group, Guard, Notify, Package, Removed, RemovedTree,
    Service, State, Symlink, User,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub state: Vec<Item>,
    #[serde(default)]
    pub facts: Facts,
    #[serde(default)]
    pub reply: Vec<Reply>,
    /// Plan only, send nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub stop_after_packages: bool,
}

/// The host's answer to the first command that contains `when`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub when: String,
    #[serde(default)]
    pub status: u32,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// The connection drops while the command runs.
    #[serde(default)]
    pub lost: bool,
}

/// One element of the desired state. `owner` is "user:group"; `mode` an octal integer
/// (`0o640`); `restarts`/`reloads` name the units a change notifies.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Item {
    Package {
        name: String,
        #[serde(default = "yes")]
        present: bool,
    },
    File {
        path: String,
        content: String,
        owner: Option<String>,
        mode: Option<u32>,
        #[serde(default)]
        restarts: Vec<String>,
        #[serde(default)]
        reloads: Vec<String>,
    },
    Directory {
        path: String,
        owner: Option<String>,
        mode: Option<u32>,
    },
    Symlink {
        path: String,
        target: String,
        #[serde(default)]
        restarts: Vec<String>,
    },
    Removed {
        path: String,
        #[serde(default)]
        restarts: Vec<String>,
    },
    RemovedTree {
        path: String,
    },
    Group {
        name: String,
        #[serde(default)]
        system: bool,
    },
    User {
        name: String,
        #[serde(default)]
        system: bool,
        home: Option<String>,
        shell: Option<String>,
        group: Option<String>,
        #[serde(default)]
        groups: Vec<String>,
    },
    Service {
        unit: String,
        enabled: Option<bool>,
        running: Option<bool>,
        #[serde(default)]
        masked: bool,
    },
    Download {
        path: String,
        url: String,
        sha256: String,
        extract: Option<String>,
        local: Option<String>,
        owner: Option<String>,
        mode: Option<u32>,
        #[serde(default)]
        restarts: Vec<String>,
    },
    Command {
        description: String,
        script: String,
        /// Exactly one of the three guards.
        creates: Option<String>,
        unless: Option<String>,
        only_if: Option<String>,
        #[serde(default)]
        restarts: Vec<String>,
        #[serde(default)]
        runs_apt: bool,
        #[serde(default)]
        uses_systemd: bool,
    },
    ConfigCheck {
        unit: String,
        command: String,
    },
    Warning {
        check: String,
        message: String,
    },
}

fn yes() -> bool {
    true
}

fn owner(o: &Option<String>) -> (String, String) {
    let o = o.as_deref().unwrap_or("root:root");
    let (u, g) = o.split_once(':').expect("owner is user:group");
    (u.into(), g.into())
}

fn notify(restarts: &[String], reloads: &[String]) -> Vec<Notify> {
    restarts
        .iter()
        .map(|u| Notify::Restart(u.clone()))
        .chain(reloads.iter().map(|u| Notify::Reload(u.clone())))
        .collect()
}

impl Case {
    pub fn state(&self) -> State {
        let mut s = State::new();
        for item in &self.state {
            match item {
                Item::Package { name, present } => {
                    s.add(Package {
                        name: name.clone(),
                        present: *present,
                    });
                }
                Item::File {
                    path,
                    content,
                    owner: o,
                    mode,
                    restarts,
                    reloads,
                } => {
                    let (u, g) = owner(o);
                    let mut f = File::new(path.clone(), content.clone())
                        .owner(&u, &g)
                        .mode(mode.unwrap_or(0o644));
                    f.notify = notify(restarts, reloads);
                    s.file(f);
                }
                Item::Directory {
                    path,
                    owner: o,
                    mode,
                } => {
                    let (u, g) = owner(o);
                    s.directory(Directory {
                        path: path.clone(),
                        owner: u,
                        group: g,
                        mode: mode.unwrap_or(0o755),
                    });
                }
                Item::Symlink {
                    path,
                    target,
                    restarts,
                } => {
                    s.add(Symlink {
                        path: path.clone(),
                        target: target.clone(),
                        notify: notify(restarts, &[]),
                    });
                }
                Item::Removed { path, restarts } => {
                    s.add(Removed {
                        path: path.clone(),
                        notify: notify(restarts, &[]),
                    });
                }
                Item::RemovedTree { path } => {
                    s.add(RemovedTree { path: path.clone() });
                }
                Item::Group { name, system } => {
                    s.add(Group {
                        name: name.clone(),
                        system: *system,
                    });
                }
                Item::User {
                    name,
                    system,
                    home,
                    shell,
                    group,
                    groups,
                } => {
                    s.add(User {
                        name: name.clone(),
                        system: *system,
                        home: home.clone(),
                        shell: shell.clone(),
                        group: group.clone(),
                        groups: groups.clone(),
                    });
                }
                Item::Service {
                    unit,
                    enabled,
                    running,
                    masked,
                } => {
                    s.service(Service {
                        unit: unit.clone(),
                        enabled: *enabled,
                        running: *running,
                        masked: *masked,
                    });
                }
                Item::Download {
                    path,
                    url,
                    sha256,
                    extract,
                    local,
                    owner: o,
                    mode,
                    restarts,
                } => {
                    let (u, g) = owner(o);
                    s.add(Download {
                        path: path.clone(),
                        url: url.clone(),
                        sha256: sha256.clone(),
                        extract: extract.clone(),
                        local: local.as_ref().map(Into::into),
                        owner: u,
                        group: g,
                        mode: mode.unwrap_or(0o755),
                        notify: notify(restarts, &[]),
                    });
                }
                Item::Command {
                    description,
                    script,
                    creates,
                    unless,
                    only_if,
                    restarts,
                    runs_apt,
                    uses_systemd,
                } => {
                    let guard = match (creates, unless, only_if) {
                        (Some(p), None, None) => Guard::Creates(p.clone()),
                        (None, Some(c), None) => Guard::Unless(c.clone()),
                        (None, None, Some(c)) => Guard::OnlyIf(c.clone()),
                        _ => panic!("command {description:?}: exactly one guard"),
                    };
                    let mut c = Command::new(description.clone(), script.clone(), guard);
                    c.notify = notify(restarts, &[]);
                    c.runs_apt = *runs_apt;
                    c.uses_systemd = *uses_systemd;
                    s.add(c);
                }
                Item::ConfigCheck { unit, command } => {
                    s.config_check(unit, command);
                }
                Item::Warning { check, message } => {
                    s.warning(check, message);
                }
            }
        }
        s
    }
}

/// What the facts round trip would have found on the host.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// `/etc/os-release` ID and VERSION_ID; default Debian 12.
    pub os: Option<String>,
    #[serde(default)]
    pub installed: Vec<String>,
    /// Not-installed package -> its providers.
    #[serde(default, rename = "virtual")]
    pub virtual_packages: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub paths: BTreeMap<String, PathFact>,
    /// name -> home and shell
    #[serde(default)]
    pub users: BTreeMap<String, UserFact>,
    /// name -> members
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// unit -> "UnitFileState ActiveState", e.g. "enabled active", "masked inactive"
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    #[serde(default)]
    pub checks: BTreeMap<String, bool>,
    #[serde(default)]
    pub reads: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathFact {
    /// file (default), directory, symlink
    #[serde(default = "file_kind")]
    pub kind: String,
    /// A file's content (its sha256 is what the facts carry) ...
    pub content: Option<String>,
    /// ... or the sha256 itself.
    pub sha256: Option<String>,
    pub link: Option<String>,
    pub owner: Option<String>,
    pub mode: Option<u32>,
}

fn file_kind() -> String {
    "file".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFact {
    pub home: String,
    #[serde(default = "nologin")]
    pub shell: String,
}

fn nologin() -> String {
    "/usr/sbin/nologin".into()
}

impl Facts {
    /// The facts as the one round trip for `state`'s query returns them: a case may only
    /// give facts the query asks for (the plan would never see others), and every unit asked
    /// for is there, `not-found` unless the case says otherwise.
    pub fn host_facts(&self, state: &State, case: &str) -> HostFacts {
        let query = state.query();
        let asked = |what: &str, name: &String, set: &std::collections::BTreeSet<String>| {
            assert!(
                set.contains(name),
                "case {case:?} gives {what} {name:?}, which the state's facts query does not ask for"
            );
        };
        self.paths
            .keys()
            .for_each(|p| asked("path", p, &query.paths));
        self.units
            .keys()
            .for_each(|u| asked("unit", u, &query.units));
        self.users
            .keys()
            .for_each(|u| asked("user", u, &query.users));
        self.groups
            .keys()
            .for_each(|g| asked("group", g, &query.groups));
        self.reads
            .keys()
            .for_each(|r| asked("file read", r, &query.reads));
        for check in self.checks.keys() {
            assert!(
                query.checks.values().any(|c| c == check) || query.checks.contains_key(check),
                "case {case:?} gives check {check:?}, which the state's facts query does not ask for"
            );
        }
        let (id, version) = self
            .os
            .as_deref()
            .unwrap_or("debian 12")
            .split_once(' ')
            .expect("os is \"ID VERSION_ID\"");
        let mut f = HostFacts {
            os: OsRelease {
                id: id.into(),
                version_id: version.into(),
                pretty_name: format!("{id} {version}"),
                ..OsRelease::default()
            },
            arch: "x86_64".into(),
            dpkg_arch: "amd64".into(),
            virtual_packages: self.virtual_packages.clone().into(),
            checks: self.checks.clone().into(),
            ..HostFacts::default()
        };
        for name in &self.installed {
            f.packages.insert(
                name.clone(),
                facts::Package {
                    name: name.clone(),
                    status: "ii".into(),
                    version: "1.0".into(),
                },
            );
        }
        for (path, p) in &self.paths {
            let kind = match p.kind.as_str() {
                "file" => PathKind::File,
                "directory" => PathKind::Directory,
                "symlink" => PathKind::Symlink,
                other => panic!("path kind {other}"),
            };
            let (u, g) = owner(&p.owner);
            let sha256 = p.sha256.clone().or_else(|| {
                p.content
                    .as_ref()
                    .map(|c| hex::encode(Sha256::digest(c.as_bytes())))
            });
            let mode = p.mode.unwrap_or(match kind {
                PathKind::Directory => 0o755,
                PathKind::Symlink => 0o777,
                _ => 0o644,
            });
            f.paths.insert(
                path.clone(),
                PathState {
                    kind,
                    owner: u,
                    group: g,
                    mode,
                    sha256,
                    link_target: p.link.clone(),
                },
            );
        }
        for (uid, (name, u)) in (1000..).zip(&self.users) {
            f.users.insert(
                name.clone(),
                facts::User {
                    name: name.clone(),
                    uid,
                    gid: uid,
                    home: u.home.clone(),
                    shell: u.shell.clone(),
                },
            );
        }
        for (gid, (name, members)) in (2000..).zip(&self.groups) {
            f.groups.insert(
                name.clone(),
                facts::Group {
                    name: name.clone(),
                    gid,
                    members: members.clone(),
                },
            );
        }
        for (name, states) in &self.units {
            let (file_state, active) = states
                .split_once(' ')
                .expect("unit is \"UnitFileState ActiveState\"");
            f.units.insert(
                name.clone(),
                facts::Unit {
                    name: name.clone(),
                    id: name.clone(),
                    load_state: if file_state == "masked" {
                        "masked".into()
                    } else {
                        "loaded".into()
                    },
                    active_state: active.into(),
                    unit_file_state: file_state.into(),
                    fragment_path: format!("/etc/systemd/system/{name}"),
                    ..facts::Unit::default()
                },
            );
        }
        for name in &query.units {
            f.units.entry(name.clone()).or_insert_with(|| facts::Unit {
                name: name.clone(),
                id: name.clone(),
                load_state: "not-found".into(),
                active_state: "inactive".into(),
                ..facts::Unit::default()
            });
        }
        for (path, content) in &self.reads {
            f.reads.insert(path.clone(), Some(content.clone()));
        }
        f
    }
}
