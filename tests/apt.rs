//! apt on real Debian 12 test hosts: package lists that heal themselves after a mirror outage
//! or when they are stale, and a lists lock someone else holds, waited for.

mod common;

use std::time::{Duration, Instant};

use common::{TestHost, deploy_webhost, enabled};

/// apt's freshness stamp: only a successful `apt-get update` renews it.
const STAMP: &str = "/var/lib/chatmail-deploy/apt-lists-updated";

fn installed(host: &TestHost, package: &str) -> bool {
    host.try_sh(&format!(
        "dpkg-query -W -f='${{Status}}' {package} | grep -q 'ok installed'"
    ))
    .status
    .success()
}

#[test]
fn a_mirror_outage_fails_one_run_and_the_next_run_heals_without_help() {
    if !enabled("apt_mirror_outage") {
        return;
    }
    let host = TestHost::up("apt-outage");
    assert_eq!(deploy_webhost(&host, &[]).code, 0);

    // the mirror is out of reach for this host only (a proxy port nobody listens on), and a
    // day has passed since the last update
    host.sh(&format!(
        "echo 'Acquire::http::Proxy \"http://10.77.0.1:9/\";' > /etc/apt/apt.conf.d/99-outage && rm -f {STAMP}"
    ));
    let down = deploy_webhost(&host, &["--package", "tree"]);
    assert_eq!(down.code, 1, "{}", down.stderr);
    let line = down.one_error_line();
    assert!(
        line.contains("packages: install tree")
            && line.contains("apt-get update failed: E: Failed to fetch"),
        "{line}"
    );
    assert!(!installed(&host, "tree"));
    assert!(
        !host.try_sh(&format!("test -e {STAMP}")).status.success(),
        "a failed update renews nothing"
    );

    // the mirror is back: the next run updates (the stamp is still old) and installs
    host.sh("rm /etc/apt/apt.conf.d/99-outage");
    let back = deploy_webhost(&host, &["--package", "tree"]);
    assert_eq!(back.code, 0, "{}", back.stderr);
    assert!(
        back.stdout.contains("changed: packages: install tree"),
        "{}",
        back.stdout
    );
    assert!(installed(&host, "tree"));
    host.sh(&format!("test -e {STAMP}"));

    // lists deleted behind a fresh stamp: "Unable to locate package" updates once and installs
    host.sh("find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -delete && apt-get -q clean");
    let stale = deploy_webhost(&host, &["--package", "tree", "--package", "jq"]);
    assert_eq!(stale.code, 0, "{}", stale.stderr);
    assert!(installed(&host, "jq"));
    let again = deploy_webhost(&host, &["--package", "tree", "--package", "jq"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.last_line().starts_with("summary: 0 changed"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_held_lists_lock_is_waited_for() {
    if !enabled("apt_lists_lock") {
        return;
    }
    let host = TestHost::up("apt-lock");
    assert_eq!(deploy_webhost(&host, &[]).code, 0);
    // apt locks with fcntl (as apt-daily's update does), so flock(1) would not do: perl holds
    // a whole-file write lock for 60 s (struct flock on x86_64: type, whence, start, len, pid)
    host.sh(&format!(
        "rm -f {STAMP}; systemd-run --unit lists-lock perl -MFcntl -e \
         'open(my $f, \">>\", \"/var/lib/apt/lists/lock\") or die; \
          my $l = pack(\"ssx4qqix4\", F_WRLCK, 0, 0, 0, 0); fcntl($f, F_SETLKW, $l) or die; sleep 60' && sleep 1"
    ));
    assert!(
        host.try_sh("apt-get -q update").status.code() != Some(0),
        "the lock is held"
    );
    let started = Instant::now();
    let run = deploy_webhost(&host, &["--package", "tree"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        started.elapsed() > Duration::from_secs(40),
        "the run waited for the lock instead of failing"
    );
    assert!(installed(&host, "tree"));
    host.sh(&format!("test -e {STAMP}"));
}
