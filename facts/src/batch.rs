//! One script for all facts of a run, and the split of its output.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::{
    Answers, Error, Group, OsRelease, Package, PathState, Remote, Unit, User, accounts, os,
    packages, paths, shell, units,
};

/// What to ask the host. The OS, architecture and container facts are always gathered.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub packages: BTreeSet<String>,
    pub paths: BTreeSet<String>,
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Unit names, asked in this order.
    pub units: BTreeSet<String>,
    /// Named shell conditions: true when the command exits 0.
    pub checks: BTreeMap<String, String>,
    /// Small text files read whole (missing files read as `None`).
    pub reads: BTreeSet<String>,
    /// Named shell commands whose standard output is the fact (stderr dropped).
    pub outputs: BTreeMap<String, String>,
}

/// Everything the planner knows about the host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    pub os: OsRelease,
    /// Kernel architecture (`uname -m`), e.g. `x86_64`.
    pub arch: String,
    /// dpkg architecture, e.g. `amd64`.
    pub dpkg_arch: String,
    /// The container technology, `None` on a VM or bare metal.
    pub container: Option<String>,
    // Each knows what the query asked: a name it did not ask for panics in debug builds.
    pub packages: Answers<Package>,
    /// Asked-for packages that are not installed and only virtual, with their providers.
    pub virtual_packages: Answers<Vec<String>>,
    pub paths: Answers<PathState>,
    pub users: Answers<User>,
    pub groups: Answers<Group>,
    pub units: Answers<Unit>,
    pub checks: Answers<bool>,
    pub reads: Answers<Option<String>>,
    pub outputs: Answers<String>,
}

impl HostFacts {
    pub fn package_installed(&self, name: &str) -> bool {
        self.packages.get(name).is_some_and(Package::installed)
    }
}

impl Query {
    /// Also asks everything `other` asks.
    pub fn merge(&mut self, other: &Query) {
        self.packages.extend(other.packages.iter().cloned());
        self.paths.extend(other.paths.iter().cloned());
        self.users.extend(other.users.iter().cloned());
        self.groups.extend(other.groups.iter().cloned());
        self.units.extend(other.units.iter().cloned());
        self.checks
            .extend(other.checks.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.reads.extend(other.reads.iter().cloned());
        self.outputs
            .extend(other.outputs.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// The script; `token` makes the section markers impossible to collide with output.
    pub fn script(&self, token: &str) -> String {
        let mut s = String::from("export LC_ALL=C\n");
        let mut section = |name: &str, body: String| {
            s.push_str(&format!("printf '\\n@@{token} {name}\\n'\n"));
            if !body.is_empty() {
                s.push_str(&body);
                s.push('\n');
            }
        };
        section("os", os::OS_RELEASE.into());
        section("arch", os::ARCH.into());
        section("container", os::CONTAINER.into());
        section("packages", packages::snippet(&strs(&self.packages)));
        section("virtual", packages::virtual_snippet(&strs(&self.packages)));
        section("paths", paths::snippet(&strs(&self.paths)));
        section("users", accounts::passwd_snippet(&strs(&self.users)));
        section("groups", accounts::group_snippet(&strs(&self.groups)));
        section("units", units::snippet(&strs(&self.units)));
        for (i, command) in self.checks.values().enumerate() {
            section(
                &format!("check{i}"),
                format!("if ( {command} ) >/dev/null 2>&1; then echo yes; else echo no; fi"),
            );
        }
        for (i, path) in self.reads.iter().enumerate() {
            let p = shell::quote(path);
            section(
                &format!("read{i}"),
                format!("if [ -f {p} ]; then echo present; cat {p}; else echo absent; fi"),
            );
        }
        for (i, command) in self.outputs.values().enumerate() {
            section(
                &format!("output{i}"),
                format!("( {command} ) 2>/dev/null || true"),
            );
        }
        section("end", String::new());
        s
    }

    /// Splits the output of [`Query::script`] and parses every section.
    pub fn parse(&self, token: &str, out: &str) -> Result<HostFacts, Error> {
        let marker = format!("\n@@{token} ");
        let mut sections: BTreeMap<&str, &str> = BTreeMap::new();
        for piece in out.split(marker.as_str()).skip(1) {
            let (name, body) = piece.split_once('\n').unwrap_or((piece, ""));
            sections.insert(name, body);
        }
        let get = |name: &str| -> Result<&str, Error> {
            sections
                .get(name)
                .copied()
                .ok_or_else(|| Error::MissingSection(name.to_string()))
        };
        get("end")?;
        let (arch, dpkg_arch) = os::parse_arch(get("arch")?);
        let unit_names = strs(&self.units);
        let mut facts = HostFacts {
            os: os::parse_os_release(get("os")?),
            arch,
            dpkg_arch,
            container: os::parse_container(get("container")?),
            ..self.unanswered()
        };
        for p in packages::parse(get("packages")?) {
            facts.packages.insert(p.name.clone(), p);
        }
        for (name, providers) in packages::parse_virtual(get("virtual")?) {
            facts.virtual_packages.insert(name, providers);
        }
        for (path, state) in paths::parse(get("paths")?)? {
            facts.paths.insert(path, state);
        }
        for u in accounts::parse_passwd(get("users")?)? {
            facts.users.insert(u.name.clone(), u);
        }
        for g in accounts::parse_group(get("groups")?)? {
            facts.groups.insert(g.name.clone(), g);
        }
        if !unit_names.is_empty() {
            for u in units::parse(&unit_names, get("units")?)? {
                facts.units.insert(u.name.clone(), u);
            }
        }
        for (i, name) in self.checks.keys().enumerate() {
            let answer = get(&format!("check{i}"))?.trim();
            facts.checks.insert(name.clone(), answer == "yes");
        }
        for (i, path) in self.reads.iter().enumerate() {
            let body = get(&format!("read{i}"))?;
            let content = body.strip_prefix("present\n").map(str::to_string);
            facts.reads.insert(path.clone(), content);
        }
        for (i, name) in self.outputs.keys().enumerate() {
            let body = get(&format!("output{i}"))?;
            facts.outputs.insert(name.clone(), body.to_string());
        }
        Ok(facts)
    }

    /// Facts that know what this query asks (nothing answered yet): what the host's answers
    /// are parsed into, and what fakes and tests fill in.
    pub fn unanswered(&self) -> HostFacts {
        let names = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
        HostFacts {
            packages: Answers::asked("package", names(&self.packages)),
            virtual_packages: Answers::asked("package", names(&self.packages)),
            paths: Answers::asked("path", names(&self.paths)),
            users: Answers::asked("user", names(&self.users)),
            groups: Answers::asked("group", names(&self.groups)),
            units: Answers::asked("unit", names(&self.units)),
            checks: Answers::asked("check", self.checks.keys().cloned()),
            reads: Answers::asked("file read", names(&self.reads)),
            outputs: Answers::asked("output", self.outputs.keys().cloned()),
            ..HostFacts::default()
        }
    }

    /// Gathers all facts in one remote command.
    pub async fn gather<R: Remote>(&self, remote: &R) -> Result<HostFacts, Error> {
        let token = fresh_token();
        let out = remote.exec(&self.script(&token), b"").await?;
        if !out.success() {
            return Err(Error::ScriptFailed {
                status: out.status,
                stderr: out.error_line(),
            });
        }
        self.parse(&token, &String::from_utf8_lossy(&out.stdout))
    }
}

fn strs(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

fn fresh_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("fact{:x}{:x}", nanos, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> Query {
        let mut q = Query::default();
        q.packages.insert("nginx".into());
        q.paths.insert("/etc/hostname".into());
        q.users.insert("root".into());
        q.groups.insert("root".into());
        q.units.insert("ssh.service".into());
        q.checks.insert("has-curl".into(), "command -v curl".into());
        q.reads.insert("/var/lib/x/pending".into());
        q.outputs
            .insert("greeting".into(), "echo hello; echo noise >&2".into());
        q
    }

    /// Runs the real script in the local shell: the sections come back whole and parse.
    #[test]
    fn script_output_round_trips_through_a_real_shell() {
        // this machine's PID 1 is not systemd, so leave units out here
        let mut q = query();
        q.units.clear();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(q.script("tok"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let facts = q
            .parse("tok", &String::from_utf8_lossy(&out.stdout))
            .unwrap();
        assert!(!facts.arch.is_empty());
        assert!(facts.users.contains_key("root"));
        assert!(facts.groups.contains_key("root"));
        assert!(facts.paths.contains_key("/etc/hostname"));
        assert!(facts.checks.contains_key("has-curl"));
        assert_eq!(facts.outputs["greeting"], "hello\n");
        assert_eq!(facts.reads["/var/lib/x/pending"], None);
    }

    #[test]
    fn parses_a_captured_batch() {
        let q = query();
        let out = "\n@@T os\nID=debian\nVERSION_ID=\"12\"\n\
\n@@T arch\nx86_64\namd64\n\
\n@@T container\nsystemd-nspawn\n\
\n@@T packages\n\
\n@@T virtual\nPackage: nginx\nVersions: \n\nReverse Provides: \nnginx-full 1.22 (= )\n\
\n@@T paths\nf\troot\troot\t644\t\t/etc/hostname\n--hashes--\n855fe6882de49825c98850b11d8e573f0485ac8c48c2e0c2ba2fa4459ead2365  /etc/hostname\n\
\n@@T users\nroot:x:0:0:root:/root:/bin/bash\n\
\n@@T groups\nroot:x:0:\n\
\n@@T units\nId=ssh.service\nLoadState=loaded\nActiveState=active\nFragmentPath=/lib/systemd/system/ssh.service\nUnitFileState=enabled\n\
\n@@T check0\nno\n\
\n@@T read0\npresent\nrestart nginx.service\n\
\n@@T output0\nhello\n\
\n@@T end\n";
        let f = q.parse("T", out).unwrap();
        assert!(f.os.is_debian());
        assert_eq!(f.dpkg_arch, "amd64");
        assert_eq!(f.container.as_deref(), Some("systemd-nspawn"));
        assert!(!f.package_installed("nginx"));
        assert_eq!(f.virtual_packages["nginx"], ["nginx-full"]);
        assert!(f.units["ssh.service"].is_active());
        assert!(!f.checks["has-curl"]);
        assert_eq!(
            f.reads["/var/lib/x/pending"].as_deref(),
            Some("restart nginx.service\n")
        );
    }

    #[test]
    fn truncated_output_is_an_error() {
        let err = query().parse("T", "\n@@T os\nID=debian\n").unwrap_err();
        assert!(matches!(err, Error::MissingSection(s) if s == "end"));
    }
}
