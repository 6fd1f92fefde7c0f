//! The resources a desired state is made of.

use std::path::PathBuf;

use serde::Serialize;

/// What a changed file or download asks of a service at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "action", content = "unit", rename_all = "lowercase")]
pub enum Notify {
    Restart(String),
    Reload(String),
}

impl Notify {
    pub fn unit(&self) -> &str {
        match self {
            Notify::Restart(u) | Notify::Reload(u) => u,
        }
    }
}

/// A Debian package, installed or removed.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub present: bool,
}

/// A regular file with exact content, owner, group and mode.
#[derive(Debug, Clone)]
pub struct File {
    pub path: String,
    pub content: Vec<u8>,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub notify: Vec<Notify>,
    /// The content's gzip stream when this program already holds one (the relay binaries
    /// it carries): uploaded as it is instead of compressing the content again.
    pub gzip: Option<&'static [u8]>,
}

impl File {
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        File {
            path: path.into(),
            content: content.into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            notify: Vec::new(),
            gzip: None,
        }
    }

    /// `stream` must unpack to the content: the host checks the unpacked size and sha256.
    pub fn gzipped(mut self, stream: &'static [u8]) -> Self {
        self.gzip = Some(stream);
        self
    }

    pub fn owner(mut self, owner: &str, group: &str) -> Self {
        self.owner = owner.into();
        self.group = group.into();
        self
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub fn restarts(mut self, unit: &str) -> Self {
        self.notify.push(Notify::Restart(unit.into()));
        self
    }

    pub fn reloads(mut self, unit: &str) -> Self {
        self.notify.push(Notify::Reload(unit.into()));
        self
    }
}

/// A directory; only the leaf gets owner and mode, parents are created as root.
#[derive(Debug, Clone)]
pub struct Directory {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

impl Directory {
    pub fn new(path: impl Into<String>) -> Self {
        Directory {
            path: path.into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o755,
        }
    }

    pub fn owner(mut self, owner: &str, group: &str) -> Self {
        self.owner = owner.into();
        self.group = group.into();
        self
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Symlink {
    pub path: String,
    pub target: String,
    pub notify: Vec<Notify>,
}

/// A file or symlink that must not exist. Directories are never removed: they may hold mail.
#[derive(Debug, Clone)]
pub struct Removed {
    pub path: String,
    pub notify: Vec<Notify>,
}

/// A directory that must not exist, with everything in it: for what the state's own earlier
/// versions (or the tool it replaces) installed and nothing else, e.g. an old virtualenv.
/// Refused at plan time for top-level and system directories and for the places that hold
/// user data.
#[derive(Debug, Clone)]
pub struct RemovedTree {
    pub path: String,
}

/// Trees that may hold mail, accounts, keys or certificates: never removed recursively.
pub const PROTECTED_TREES: &[&str] = &[
    "/home",
    "/root",
    "/var/lib/acme",
    "/var/mail",
    "/var/spool",
    "/var/vmail",
    "/etc/dkimkeys",
    "/etc/ssl",
];

/// System directories (their contents belong to many packages): never removed as a whole.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/etc/apt",
    "/etc/systemd",
    "/usr/local/bin",
    "/usr/local/lib",
    "/etc/systemd/system",
    "/usr/lib/systemd",
];

impl RemovedTree {
    /// Why this path may not be removed recursively, if so.
    pub fn refusal(&self) -> Option<String> {
        let depth = self.path.split('/').filter(|c| !c.is_empty()).count();
        let protected = PROTECTED_TREES
            .iter()
            .find(|p| self.path == **p || self.path.starts_with(&format!("{p}/")));
        if self.path.contains("/../") || self.path.ends_with("/..") || self.path.contains("/./") {
            Some(format!("{}: not a plain path", self.path))
        } else if depth < 2 || SYSTEM_DIRS.contains(&self.path.as_str()) {
            Some(format!(
                "{}: a system directory, never removed as a whole",
                self.path
            ))
        } else {
            protected.map(|p| format!("{}: {p} holds user data, never removed", self.path))
        }
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub system: bool,
}

/// An account. An existing account keeps its uid; shell, home and supplementary groups are
/// reconciled.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub system: bool,
    pub home: Option<String>,
    pub shell: Option<String>,
    /// Primary group; `None` gives a same-named group.
    pub group: Option<String>,
    pub groups: Vec<String>,
}

impl User {
    pub fn system(name: &str) -> Self {
        User {
            name: name.into(),
            system: true,
            home: None,
            shell: None,
            group: None,
            groups: Vec::new(),
        }
    }
}

/// A systemd unit's wanted state; `None` leaves that aspect alone.
#[derive(Debug, Clone)]
pub struct Service {
    pub unit: String,
    pub enabled: Option<bool>,
    pub running: Option<bool>,
    pub masked: bool,
}

impl Service {
    /// Enabled and running.
    pub fn running(unit: &str) -> Self {
        Service {
            unit: unit.into(),
            enabled: Some(true),
            running: Some(true),
            masked: false,
        }
    }

    /// Disabled and stopped.
    pub fn stopped(unit: &str) -> Self {
        Service {
            unit: unit.into(),
            enabled: Some(false),
            running: Some(false),
            masked: false,
        }
    }
}

/// A file with a pinned sha256, fetched on the host from `url`, or uploaded from `local`
/// for hosts without internet.
#[derive(Debug, Clone)]
pub struct Download {
    pub path: String,
    pub url: String,
    /// Of the installed file (after extraction, for archives).
    pub sha256: String,
    /// Member of a .tar.gz at `url` to install, instead of the fetched file itself.
    pub extract: Option<String>,
    pub local: Option<PathBuf>,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub notify: Vec<Notify>,
}

/// When a guarded command runs. The condition is a shell test evaluated with the facts.
#[derive(Debug, Clone)]
pub enum Guard {
    /// Run when the path does not exist (e.g. generating a key once).
    Creates(String),
    /// Run when this shell condition fails.
    Unless(String),
    /// Run when this shell condition succeeds.
    OnlyIf(String),
}

#[derive(Debug, Clone)]
pub struct Command {
    pub description: String,
    pub script: String,
    pub guard: Guard,
    pub notify: Vec<Notify>,
    /// Runs apt or dpkg: the step waits for apt's locks and gets apt's deadline.
    pub runs_apt: bool,
    /// Asks systemd to act on units: a pending daemon-reload runs before it.
    pub uses_systemd: bool,
}

impl Command {
    pub fn new(description: impl Into<String>, script: impl Into<String>, guard: Guard) -> Self {
        Command {
            description: description.into(),
            script: script.into(),
            guard,
            notify: Vec::new(),
            runs_apt: false,
            uses_systemd: false,
        }
    }

    pub fn restarts(mut self, unit: &str) -> Self {
        self.notify.push(Notify::Restart(unit.into()));
        self
    }

    pub fn runs_apt(mut self) -> Self {
        self.runs_apt = true;
        self
    }

    pub fn uses_systemd(mut self) -> Self {
        self.uses_systemd = true;
        self
    }
}

/// One element of a desired state.
#[derive(Debug, Clone)]
pub enum Resource {
    Package(Package),
    File(File),
    Directory(Directory),
    Symlink(Symlink),
    Removed(Removed),
    RemovedTree(RemovedTree),
    Group(Group),
    User(User),
    Service(Service),
    Download(Download),
    Command(Command),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_with_user_data_or_near_the_root_are_never_removed() {
        let refusal = |p: &str| RemovedTree { path: p.into() }.refusal();
        assert_eq!(refusal("/usr/local/lib/chatmaild/venv"), None);
        assert_eq!(refusal("/etc/mtail"), None);
        for p in [
            "/",
            "/usr",
            "/usr/local",
            "/usr/local/lib",
            "/etc",
            "/etc/systemd/system",
            "/home/vmail/mail",
            "/home/vmail",
            "/etc/dkimkeys/x",
            "/var/lib/acme/live",
            "/usr/local/../../home/vmail",
            "/etc/ssl/private",
        ] {
            assert!(refusal(p).is_some(), "{p}");
        }
    }
}
