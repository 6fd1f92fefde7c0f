//! The shell text that runs apt: package lists that heal themselves, waits that say what they
//! wait for, and no daemon starting during an install.
//!
//! Why not just `apt-get update && apt-get install`: a failed `apt-get update` exits 0 (the old
//! lists stay and `pkgcache.bin` gets a fresh date), so a freshness check by that file's age
//! skipped updates for a day after a mirror outage; and apt waits for the dpkg lock
//! (`DPkg::Lock::Timeout`) but not for the lists lock `apt-daily` holds after boot.

use facts::shell::quote_all;

/// Where the time of the last *successful* `apt-get update` is kept (its mtime).
pub const UPDATED_STAMP: &str = "/var/lib/chatmail-deploy/apt-lists-updated";

/// Lists older than this are updated before an install.
const MAX_AGE_MINUTES: u32 = 1440;
/// How long a lock held by someone else (apt-daily, an operator, a killed run) is waited for.
const LOCK_WAIT_SECONDS: u32 = 600;

pub(crate) const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Shell functions every apt script starts with (POSIX sh: Debian's dash has no pipefail).
/// They own the script's EXIT trap: add cleanup to `$chatmail_at_exit`, never `trap`.
/// - `chatmail_no_daemon_starts`: policy-rc.d answers 101 until the script exits, so an
///   unconfigured service never grabs a port; the state's service resources start them later.
/// - `chatmail_apt_update`: waits for the lists lock, fails on any list that did not download,
///   and only then renews the stamp.
/// - `chatmail_apt_fresh`: updates when the last successful update is older than a day.
/// - `chatmail_apt_install PKG...`: installs; when apt cannot find a package or a download
///   fails (stale or missing lists), updates once and installs again.
pub fn functions() -> String {
    format!(
        r#"export DEBIAN_FRONTEND=noninteractive
chatmail_created_policy=
chatmail_no_daemon_starts() {{
  if [ ! -e {POLICY_RC_D} ]; then
    printf '#!/bin/sh\n# chatmail-deploy: no daemon starts during package installs\nexit 101\n' > {POLICY_RC_D}
    chmod 755 {POLICY_RC_D}; chatmail_created_policy=1
  fi
}}
chatmail_apt_log=$(mktemp /tmp/chatmail-apt.XXXXXX)
# the script's one EXIT trap (another `trap ... EXIT` would replace it): scripts put their
# own cleanup into $chatmail_at_exit and temp files next to $chatmail_apt_log
chatmail_at_exit=
trap 'eval "$chatmail_at_exit"; [ -z "$chatmail_created_policy" ] || rm -f {POLICY_RC_D}; rm -f "$chatmail_apt_log" "$chatmail_apt_log".*' EXIT
# runs "$@" with its output on stderr and in $chatmail_apt_log; returns its status
chatmail_logged() {{
  {{ "$@"; echo $? > "$chatmail_apt_log.rc"; }} 2>&1 | tee "$chatmail_apt_log" >&2
  return "$(cat "$chatmail_apt_log.rc")"
}}
chatmail_apt_update() {{
  waited=0
  while :; do
    if chatmail_logged apt-get -q -o DPkg::Lock::Timeout={LOCK_WAIT_SECONDS} --error-on=any update; then
      mkdir -p "$(dirname {UPDATED_STAMP})" && touch {UPDATED_STAMP}
      return 0
    fi
    if grep -q 'Could not get lock /var/lib/apt/lists/lock' "$chatmail_apt_log" && [ "$waited" -lt {LOCK_WAIT_SECONDS} ]; then
      holder=$(sed -n 's/.*It is held by process \([0-9]*\) (\([^)]*\)).*/process \1 (\2)/p' "$chatmail_apt_log" | head -n 1)
      echo "waiting for the apt lists lock, held by ${{holder:-another process}} (${{waited}} s of {LOCK_WAIT_SECONDS} s)" >&2
      sleep 5; waited=$((waited + 5))
      continue
    fi
    echo "apt-get update failed: $(grep '^E: ' "$chatmail_apt_log" | head -n 3 | tr '\n' ' ')" >&2
    return 1
  done
}}
chatmail_apt_fresh() {{
  [ -n "$(find {UPDATED_STAMP} -mmin -{MAX_AGE_MINUTES} 2>/dev/null)" ] || chatmail_apt_update
}}
chatmail_apt_get() {{
  chatmail_logged apt-get -q -y -o DPkg::Lock::Timeout={LOCK_WAIT_SECONDS} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}}
chatmail_apt_install() {{
  chatmail_apt_get install -- "$@" && return 0
  grep -q -e 'Unable to locate package' -e 'has no installation candidate' -e 'Failed to fetch' -e 'Unable to fetch some archives' "$chatmail_apt_log" || return 1
  echo "apt: the package lists are stale or incomplete: updating them and installing again" >&2
  chatmail_apt_update || return 1
  chatmail_apt_get install -- "$@"
}}
"#
    )
}

/// One apt-get call for all packages, with fresh lists and no daemon starting.
pub(crate) fn install(packages: &[String]) -> String {
    format!(
        "set -e\n{}chatmail_no_daemon_starts\nchatmail_apt_fresh\nchatmail_apt_install {}",
        functions(),
        quote_all(packages)
    )
}

pub(crate) fn remove(packages: &[String]) -> String {
    format!(
        "set -e\n{}chatmail_apt_get remove -- {}",
        functions(),
        quote_all(packages)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).output().unwrap()
    }

    #[test]
    fn scripts_are_valid_shell() {
        for script in [install(&["a".into(), "b c".into()]), remove(&["a".into()])] {
            let out = Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}");
        }
        assert!(install(&["nginx".into()]).ends_with("chatmail_apt_install nginx"));
    }

    /// The one EXIT trap runs the script's own cleanup and removes the temp files.
    #[test]
    fn the_exit_trap_runs_the_scripts_cleanup_and_removes_temp_files() {
        let out = sh(&format!(
            "{}echo \"$chatmail_apt_log\"; touch \"$chatmail_apt_log.x\"; chatmail_at_exit='echo cleaned'",
            functions()
        ));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (log, rest) = stdout.split_once('\n').unwrap();
        assert_eq!(rest, "cleaned\n");
        assert!(!std::path::Path::new(log).exists());
        assert!(!std::path::Path::new(&format!("{log}.x")).exists());
    }

    /// The status of the logged command comes through the pipe to tee, which dash cannot
    /// do with pipefail; its output lands on stderr and in the log.
    #[test]
    fn logged_commands_keep_their_status_and_output() {
        let out = sh(&format!(
            "{}chatmail_logged sh -c 'echo E: broken; exit 3' && echo ok || echo \"failed $?\"\n\
             grep -c 'E: broken' \"$chatmail_apt_log\"",
            functions()
        ));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "failed 3\n1\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "E: broken\n");
    }

    /// apt-get replaced by a function: a locked list directory is waited for (with the holder
    /// named), a failed update is an error and leaves no stamp.
    #[test]
    fn update_waits_for_the_lists_lock_and_a_failure_renews_nothing() {
        let dir = std::env::temp_dir().join(format!("apt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stamp = dir.join("stamp");
        let tries = dir.join("tries");
        // dash allows no `-` in function names: the fakes are scripts first on PATH
        let write = |name: &str, body: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        write(
            "apt-get",
            &format!(
                "n=$(cat {tries} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {tries}\n\
                 if [ $n -lt 2 ]; then echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42 (apt-get)'; exit 100; fi\n\
                 if [ -n \"$FAIL\" ]; then echo 'E: Failed to fetch http://x/InRelease  Could not connect'; exit 100; fi\n",
                tries = tries.display()
            ),
        );
        write("sleep", "");
        let fake = format!("PATH={}:$PATH\n", dir.display());
        let functions = functions().replace(UPDATED_STAMP, &stamp.display().to_string());
        let ok = sh(&format!(
            "{functions}{fake}chatmail_apt_update && echo updated"
        ));
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "updated\n");
        let err = String::from_utf8_lossy(&ok.stderr);
        assert!(
            err.contains(
                "waiting for the apt lists lock, held by process 42 (apt-get) (0 s of 600 s)"
            ),
            "{err}"
        );
        assert!(stamp.exists());

        std::fs::remove_file(&stamp).unwrap();
        std::fs::remove_file(&tries).unwrap();
        let failed = sh(&format!(
            "export FAIL=1\n{functions}{fake}chatmail_apt_update && echo updated || echo failed"
        ));
        assert_eq!(String::from_utf8_lossy(&failed.stdout), "failed\n");
        assert!(
            String::from_utf8_lossy(&failed.stderr).contains(
                "apt-get update failed: E: Failed to fetch http://x/InRelease  Could not connect"
            ),
            "{}",
            String::from_utf8_lossy(&failed.stderr)
        );
        assert!(!stamp.exists(), "a failed update renews nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
