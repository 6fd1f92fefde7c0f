//! A desired state: the ordered resources, and the facts they need.

use std::collections::{BTreeMap, BTreeSet};

use facts::Query;

use crate::resource::*;
use crate::{Error, restarts};

#[derive(Debug, Clone, Default)]
pub struct State {
    pub resources: Vec<Resource>,
    /// unit -> shell command that exits non-zero when the unit's config is broken. A checked
    /// unit is restarted or reloaded only after its check passed; on failure the files
    /// this run changed for it are put back (see [`State::config_check`]).
    pub config_checks: BTreeMap<String, String>,
    /// (shell condition, message): the message is a warning of every plan whose facts have
    /// the condition true, e.g. a fallback that stays in place until its cause goes away.
    pub warnings: Vec<(String, String)>,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, r: impl Into<Resource>) -> &mut Self {
        self.resources.push(r.into());
        self
    }

    pub fn package(&mut self, name: &str) -> &mut Self {
        self.add(Package {
            name: name.into(),
            present: true,
        })
    }

    pub fn file(&mut self, file: File) -> &mut Self {
        self.add(file)
    }

    pub fn directory(&mut self, dir: Directory) -> &mut Self {
        self.add(dir)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(Symlink {
            path: path.into(),
            target: target.into(),
            notify: Vec::new(),
        })
    }

    pub fn service(&mut self, service: Service) -> &mut Self {
        self.add(service)
    }

    /// Validate `unit`'s config with `command` (run on the host, e.g. `nginx -t`) before it
    /// is restarted or reloaded. The previous versions of the files that notify the unit are
    /// kept on the host until it runs with the new ones; if the check or the restart fails,
    /// they are put back, the unit keeps (or gets back) its old config and the run fails with
    /// the checker's message.
    pub fn config_check(&mut self, unit: &str, command: &str) -> &mut Self {
        self.config_checks.insert(unit.into(), command.into());
        self
    }

    /// Warn with `message` whenever the shell condition `check` holds on the host.
    pub fn warning(&mut self, check: &str, message: &str) -> &mut Self {
        self.warnings.push((check.into(), message.into()));
        self
    }

    /// Checks what can be checked without the host: absolute, unique, printable paths.
    pub fn validate(&self) -> Result<(), Error> {
        let mut seen = BTreeSet::new();
        for r in &self.resources {
            let Some(path) = r.path() else { continue };
            if !path.starts_with('/')
                || path.contains(['\n', '\t', '\0'])
                || path.ends_with('/') && path != "/"
            {
                return Err(Error::Invalid(format!(
                    "path {path:?} must be absolute, without tabs or newlines, and not end in /"
                )));
            }
            if !seen.insert(path) {
                return Err(Error::Invalid(format!("{path} is managed twice")));
            }
        }
        Ok(())
    }

    /// The facts the planner needs for this state.
    pub fn query(&self) -> Query {
        let mut q = Query::default();
        q.reads.insert(restarts::PENDING_FILE.to_string());
        for (check, _) in &self.warnings {
            q.checks.insert(check.clone(), check.clone());
        }
        for r in &self.resources {
            if let Some(path) = r.path() {
                q.paths.insert(path.to_string());
            }
            match r {
                Resource::Package(p) => {
                    q.packages.insert(p.name.clone());
                }
                Resource::Group(g) => {
                    q.groups.insert(g.name.clone());
                }
                Resource::User(u) => {
                    q.users.insert(u.name.clone());
                    q.groups
                        .insert(u.group.clone().unwrap_or_else(|| u.name.clone()));
                    q.groups.extend(u.groups.iter().cloned());
                }
                Resource::Service(s) => {
                    q.units.insert(s.unit.clone());
                }
                Resource::Command(c) => match &c.guard {
                    Guard::Creates(path) => {
                        q.paths.insert(path.clone());
                    }
                    Guard::Unless(check) | Guard::OnlyIf(check) => {
                        q.checks.insert(check.clone(), check.clone());
                    }
                },
                _ => {}
            }
        }
        q
    }
}

impl Resource {
    /// The path a file-like resource manages.
    pub fn path(&self) -> Option<&str> {
        match self {
            Resource::File(f) => Some(&f.path),
            Resource::Directory(d) => Some(&d.path),
            Resource::Symlink(s) => Some(&s.path),
            Resource::Removed(r) => Some(&r.path),
            Resource::RemovedTree(r) => Some(&r.path),
            Resource::Download(d) => Some(&d.path),
            _ => None,
        }
    }
}

macro_rules! into_resource {
    ($($t:ident),*) => {$(
        impl From<$t> for Resource {
            fn from(r: $t) -> Resource { Resource::$t(r) }
        }
    )*};
}
into_resource!(
    Package,
    File,
    Directory,
    Symlink,
    Removed,
    RemovedTree,
    Group,
    User,
    Service,
    Download,
    Command
);
