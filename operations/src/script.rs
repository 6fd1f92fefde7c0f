//! The shell commands that carry out changes. Every one of them is safe to run twice.

use facts::shell::quote;

/// Ends the name of a temp file beside the file it becomes, followed by the writing shell's
/// pid (`$$`): two commands alive at once never share a pid, so two runs never write the
/// same temp file, and a killed run's leftovers are recognised by the next one.
pub const TEMP_SUFFIX: &str = ".chatmail-deploy-tmp";

/// Writes stdin to `path` atomically: a temp file next to it gets owner and mode first, then
/// is renamed over the old file, so nobody ever reads a half-written or too-open file. A
/// stdin cut short (the run died mid-upload, and the host saw the end of its input) is not
/// installed: `size` is the length of the whole content, as it is on the host (a
/// `compressed` stdin is unpacked by `gzip -dc`, which also refuses a cut-short stream).
pub(crate) fn write_file(
    path: &str,
    owner: &str,
    group: &str,
    mode: u32,
    size: usize,
    compressed: bool,
) -> String {
    let receive = if compressed { "gzip -dc" } else { "cat" };
    format!(
        "set -e; umask 077; p={p}; t=\"$p{TEMP_SUFFIX}.$$\"; trap 'rm -f \"$t\"' EXIT\n\
         mkdir -p -- \"$(dirname -- \"$p\")\"\n\
         {receive} > \"$t\"\n\
         got=$(wc -c < \"$t\"); if [ \"$got\" -ne {size} ]; then echo \"$p: only $got of {size} bytes arrived\" >&2; exit 1; fi\n\
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
        "set -e; umask 077; p={p}; t=\"$p{TEMP_SUFFIX}.$$\"; trap 'rm -f \"$t\" \"$t.archive\"' EXIT\n\
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

/// Where the files a checked unit reads are kept, as they were before this run changed
/// them, until the unit runs with the new ones: `<dir>/<unit>/files/<path>` for files that
/// existed, `<dir>/<unit>/absent` listing those that did not.
pub const PREVIOUS_DIR: &str = "/var/lib/chatmail-deploy/previous";

/// Keeps `path` as it is now for `unit`, unless an earlier (interrupted) run already kept
/// a version: that one is what the unit last ran with successfully.
pub(crate) fn keep_previous(dir: &str, unit: &str, path: &str) -> String {
    r#"b=@B@; p=@P@
if [ ! -e "$b/files$p" ] && ! grep -qxF -- "$p" "$b/absent" 2>/dev/null; then
mkdir -p -- "$b/files$(dirname -- "$p")"
if [ -e "$p" ]; then cp -p -- "$p" "$b/files$p"; else printf '%s\n' "$p" >> "$b/absent"; fi
fi"#
    .replace("@B@", &quote(&format!("{dir}/{unit}")))
    .replace("@P@", &quote(path))
}

/// `systemctl VERB UNIT`, but only after `check` accepted the unit's config. If the check
/// or the restart fails, the files kept by [`keep_previous`] are put back (and the unit
/// restarted with them if it was the restart that failed), and the last stderr line says
/// what happened. The kept files are dropped once the unit runs with the new ones.
pub(crate) fn checked_systemctl(dir: &str, verb: &str, unit: &str, check: &str) -> String {
    r#"b=@B@; u=@U@; restored=
put_back() {
if [ -d "$b/files" ]; then
(cd "$b/files" && find . -type f) > "$b/list"
while IFS= read -r f; do f=${f#.}
cp -p -- "$b/files$f" "$f.chatmail-deploy-tmp.$$" && mv -f -- "$f.chatmail-deploy-tmp.$$" "$f" && restored="$restored $f"
done < "$b/list"
fi
if [ -f "$b/absent" ]; then
while IFS= read -r f; do rm -f -- "$f" && restored="$restored -$f"; done < "$b/absent"
fi
rm -rf -- "$b"
if [ -n "$restored" ]; then restored="previous files put back:$restored"; else restored='no previous files were kept'; fi
}
if ! out=$( ( @CHECK@ ) 2>&1 ); then
put_back
echo "$u: new config refused by @CHECK_TEXT@, not @WORD@, $restored; $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')" >&2
exit 1
fi
if ! out=$(systemctl @VERB@ -- "$u" 2>&1); then
put_back
if systemctl restart -- "$u" >/dev/null 2>&1; then again='running again with them'; else again='it does not start with them either'; fi
echo "$u: @VERB@ failed with the new config, $restored, $again; $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')" >&2
exit 1
fi
rm -rf -- "$b""#
        .replace("@B@", &quote(&format!("{dir}/{unit}")))
        .replace("@U@", &quote(unit))
        .replace(
            "@CHECK_TEXT@",
            &check.replace(['"', '$', '`', '\\'], "_"),
        )
        .replace(
            "@WORD@",
            if verb == "restart" {
                "restarted"
            } else {
                "reloaded"
            },
        )
        .replace("@CHECK@", check)
        .replace("@VERB@", verb)
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
            &write_file(path.to_str().unwrap(), &owner, &group, 0o640, 6, false),
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
    fn write_file_unpacks_a_compressed_upload_and_refuses_a_cut_short_one() {
        let dir = std::env::temp_dir().join(format!("opgz{}", std::process::id()));
        let path = dir.join("bin/tool");
        let p = path.to_str().unwrap();
        let id = |flag: &str| {
            let out = sh(&format!("id -{flag}n"), b"").stdout;
            String::from_utf8_lossy(&out).trim().to_string()
        };
        let (owner, group) = (id("u"), id("g"));
        let content: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 7).to_le_bytes())
            .collect();
        let up = crate::upload::prepare(&content);
        assert!(up.compressed);
        let script = write_file(p, &owner, &group, 0o755, content.len(), true);
        let out = sh(&script, &up.stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&path).unwrap(), content);

        // the link died half-way: the old file stays, no temp file is left
        let other: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 5).to_le_bytes())
            .collect();
        let up = crate::upload::prepare(&other);
        let out = sh(&script, &up.stdin[..up.stdin.len() / 2]);
        assert!(!out.status.success());
        assert_eq!(std::fs::read(&path).unwrap(), content);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
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

    /// A scratch directory with a fake `systemctl` that fails when `$dir/fail-<verb>` exists
    /// and logs its calls, so the checked restart runs here exactly as on a host.
    fn fake_host(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("opcheck-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let fake = format!(
            "#!/bin/sh\necho \"$*\" >> {d}/calls\n[ ! -e {d}/fail-$1 ] || {{ echo \"Job for $3 failed.\" >&2; exit 1; }}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("bin/systemctl"), fake).unwrap();
        sh(&format!("chmod +x {}/bin/systemctl", dir.display()), b"");
        dir
    }

    fn on_fake(dir: &std::path::Path, script: &str) -> std::process::Output {
        sh(&format!("PATH={}/bin:$PATH\n{script}", dir.display()), b"")
    }

    #[test]
    fn checked_restart_puts_the_previous_files_back_when_the_check_fails() {
        let dir = fake_host("refused");
        let keep = dir.join("keep");
        let (conf, new) = (dir.join("svc.conf"), dir.join("new.conf"));
        std::fs::write(&conf, "good\n").unwrap();
        for path in [&conf, &new] {
            let out = on_fake(
                &dir,
                &keep_previous(
                    keep.to_str().unwrap(),
                    "svc.service",
                    path.to_str().unwrap(),
                ),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // the run writes the new files, and a second keep (a re-run) keeps the first version
        std::fs::write(&conf, "broken\n").unwrap();
        std::fs::write(&new, "created by this run\n").unwrap();
        on_fake(
            &dir,
            &keep_previous(
                keep.to_str().unwrap(),
                "svc.service",
                conf.to_str().unwrap(),
            ),
        );
        let check = format!("grep -q good {}", conf.display());
        let out = on_fake(
            &dir,
            &checked_systemctl(keep.to_str().unwrap(), "restart", "svc.service", &check),
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().last().unwrap();
        assert!(line.starts_with(&format!("svc.service: new config refused by grep -q good {}, not restarted, previous files put back: {} -{}", conf.display(), conf.display(), new.display())), "{line}");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "good\n");
        assert!(!new.exists(), "a file the run created is removed again");
        assert!(!dir.join("calls").exists(), "no restart was tried");
        assert!(!keep.join("svc.service").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checked_restart_restarts_with_the_previous_files_when_the_restart_fails() {
        let dir = fake_host("restart");
        let keep = dir.join("keep");
        let conf = dir.join("svc.conf");
        std::fs::write(&conf, "old\n").unwrap();
        on_fake(
            &dir,
            &keep_previous(
                keep.to_str().unwrap(),
                "svc.service",
                conf.to_str().unwrap(),
            ),
        );
        std::fs::write(&conf, "new\n").unwrap();
        std::fs::write(dir.join("fail-reload-or-restart"), "").unwrap();
        let out = on_fake(
            &dir,
            &checked_systemctl(
                keep.to_str().unwrap(),
                "reload-or-restart",
                "svc.service",
                "true",
            ),
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.lines().last().unwrap().starts_with(&format!("svc.service: reload-or-restart failed with the new config, previous files put back: {}, running again with them; Job for svc.service failed.", conf.display())), "{err}");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "old\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("calls")).unwrap(),
            "reload-or-restart -- svc.service\nrestart -- svc.service\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checked_restart_drops_the_previous_files_once_the_unit_runs() {
        let dir = fake_host("ok");
        let keep = dir.join("keep");
        let conf = dir.join("svc.conf");
        std::fs::write(&conf, "old\n").unwrap();
        on_fake(
            &dir,
            &keep_previous(
                keep.to_str().unwrap(),
                "svc.service",
                conf.to_str().unwrap(),
            ),
        );
        std::fs::write(&conf, "new\n").unwrap();
        let out = on_fake(
            &dir,
            &checked_systemctl(keep.to_str().unwrap(), "restart", "svc.service", "true"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "new\n");
        assert!(!keep.join("svc.service").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("calls")).unwrap(),
            "restart -- svc.service\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
