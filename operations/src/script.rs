//! The shell commands that carry out changes. Every one of them is safe to run twice.

use facts::shell::{quote, quote_all};

/// Writes stdin to `path` atomically: a temp file next to it gets owner and mode first, then
/// is renamed over the old file, so nobody ever reads a half-written or too-open file.
pub(crate) fn write_file(path: &str, owner: &str, group: &str, mode: u32) -> String {
    format!(
        "set -e; umask 077; p={p}; t=\"$p.chatmail-deploy-tmp\"; trap 'rm -f \"$t\"' EXIT\n\
         mkdir -p -- \"$(dirname -- \"$p\")\"\n\
         cat > \"$t\"\n\
         {attrs}\n\
         mv -f -- \"$t\" \"$p\"",
        p = quote(path),
        attrs = attributes("\"$t\"", owner, group, mode),
    )
}

/// Fetches the download on the host and installs it only if its sha256 matches.
pub(crate) fn download(d: &crate::Download) -> String {
    let fetch_to = if d.extract.is_some() {
        "\"$t.archive\""
    } else {
        "\"$t\""
    };
    let extract = match &d.extract {
        Some(member) => format!(
            "tar -xzO -f \"$t.archive\" {} > \"$t\"; rm -f \"$t.archive\"\n",
            quote(member)
        ),
        None => String::new(),
    };
    format!(
        "set -e; umask 077; p={p}; t=\"$p.chatmail-deploy-tmp\"; trap 'rm -f \"$t\" \"$t.archive\"' EXIT\n\
         mkdir -p -- \"$(dirname -- \"$p\")\"\n\
         if command -v curl >/dev/null; then curl -fsSL --retry 2 --connect-timeout 20 -o {fetch_to} {u}\n\
         elif command -v wget >/dev/null; then wget -q -O {fetch_to} {u}\n\
         else echo 'neither curl nor wget is installed on the host' >&2; exit 1; fi\n\
         {extract}\
         actual=$(sha256sum < \"$t\" | cut -d' ' -f1)\n\
         if [ \"$actual\" != {s} ]; then echo \"{p_plain}: sha256 of {u_plain} is $actual, expected {s}\" >&2; exit 1; fi\n\
         {attrs}\n\
         mv -f -- \"$t\" \"$p\"",
        p = quote(&d.path),
        u = quote(&d.url),
        s = quote(&d.sha256),
        p_plain = d.path.replace(['"', '$', '`', '\\'], "_"),
        u_plain = d.url.replace(['"', '$', '`', '\\'], "_"),
        attrs = attributes("\"$t\"", &d.owner, &d.group, d.mode),
    )
}

pub(crate) fn attributes(target: &str, owner: &str, group: &str, mode: u32) -> String {
    format!(
        "chown {} {target}; chmod {mode:o} {target}",
        quote(&format!("{owner}:{group}"))
    )
}

pub(crate) fn directory(path: &str, owner: &str, group: &str, mode: u32) -> String {
    let p = quote(path);
    format!(
        "set -e; mkdir -p -- {p}; {}",
        attributes(&p, owner, group, mode)
    )
}

pub(crate) fn symlink(path: &str, target: &str) -> String {
    let p = quote(path);
    format!(
        "set -e; mkdir -p -- \"$(dirname -- {p})\"; ln -sfn -- {} {p}",
        quote(target)
    )
}

pub(crate) fn remove(path: &str) -> String {
    format!("rm -f -- {}", quote(path))
}

pub(crate) const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// One apt-get call for all packages. Daemons are kept from starting during the install
/// (policy-rc.d answers 101) so that an unconfigured service never grabs a port; the state's
/// own service resources start them once their configuration is in place.
pub(crate) fn apt_install(packages: &[String]) -> String {
    format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive\n\
         created=\n\
         if [ ! -e {POLICY_RC_D} ]; then printf '#!/bin/sh\\n# chatmail-deploy: no daemon starts during package installs\\nexit 101\\n' > {POLICY_RC_D}; chmod 755 {POLICY_RC_D}; created=1; fi\n\
         trap '[ -z \"$created\" ] || rm -f {POLICY_RC_D}' EXIT\n\
         if [ -z \"$(find /var/cache/apt/pkgcache.bin -mmin -1440 2>/dev/null)\" ]; then apt-get -q -o DPkg::Lock::Timeout=600 update; fi\n\
         apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install -- {}",
        quote_all(packages)
    )
}

pub(crate) fn apt_remove(packages: &[String]) -> String {
    format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive\n\
         apt-get -q -y -o DPkg::Lock::Timeout=600 remove -- {}",
        quote_all(packages)
    )
}

pub(crate) fn group_add(name: &str, system: bool) -> String {
    let n = quote(name);
    let sys = if system { "--system " } else { "" };
    format!("getent group {n} >/dev/null || groupadd {sys}{n}")
}

pub(crate) fn user_add(
    name: &str,
    system: bool,
    home: Option<&str>,
    shell: Option<&str>,
    group: Option<&str>,
) -> String {
    let n = quote(name);
    let mut args = String::new();
    if system {
        args.push_str(" --system");
    }
    if let Some(h) = home {
        args.push_str(&format!(" --home-dir {}", quote(h)));
    }
    args.push_str(" --no-create-home");
    if let Some(s) = shell {
        args.push_str(&format!(" --shell {}", quote(s)));
    }
    // a same-named group may already exist (created explicitly, or left by a package)
    let g = quote(group.unwrap_or(name));
    let gid = if group.is_some() {
        format!("--gid {g}")
    } else {
        format!(
            "$(if getent group {g} >/dev/null; then echo --gid {g}; else echo --user-group; fi)"
        )
    };
    format!("getent passwd {n} >/dev/null || useradd{args} {gid} {n}")
}

pub(crate) fn systemctl(verb: &str, unit: &str) -> String {
    format!("systemctl {verb} -- {}", quote(unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn write_file_is_atomic_and_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("opwrite{}", std::process::id()));
        let path = dir.join("sub dir/it's.conf");
        let owner = sh("id -un", b"").stdout;
        let owner = String::from_utf8_lossy(&owner).trim().to_string();
        let group = String::from_utf8_lossy(&sh("id -gn", b"").stdout)
            .trim()
            .to_string();
        let out = sh(
            &write_file(path.to_str().unwrap(), &owner, &group, 0o640),
            b"hello\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn download_refuses_a_wrong_checksum_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("opdl{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.bin");
        std::fs::write(&src, b"payload").unwrap();
        let dest = dir.join("dest.bin");
        let url = format!("file://{}", src.display());
        let dl = |url: &str, sha: &str, extract: Option<&str>| crate::Download {
            path: dest.to_str().unwrap().into(),
            url: url.into(),
            sha256: sha.into(),
            extract: extract.map(String::from),
            local: None,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o755,
            notify: vec![],
        };
        let script = download(&dl(&url, &"0".repeat(64), None));
        let out = sh(&script, b"");
        if String::from_utf8_lossy(&out.stderr).contains("neither curl") {
            return; // no fetcher on this machine
        }
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected 0000"));
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // a member of a .tar.gz, checked after extraction
        let tar = std::process::Command::new("tar")
            .args(["-czf", "src.tar.gz", "src.bin"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(tar.success());
        let sha = "239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5"; // "payload"
        let url = format!("file://{}", dir.join("src.tar.gz").display());
        let out = sh(&download(&dl(&url, sha, Some("src.bin"))), b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"payload");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
