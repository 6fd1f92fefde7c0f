//! Deploys under faults on real Debian 12 test hosts (issue 17): two runs at once, a killed
//! run's lock, apt's lock held by another process, uploads onto a full or read-only disk,
//! and counts that add up. Each test checks the exact output, the exit status, what is left
//! on the host, and that the next run converges.

mod common;
#[path = "faults/support.rs"]
mod faults_support;

use std::process::Command;

use common::{TestHost, enabled, example, known_hosts, run};
use faults_support::{Held, deploy, deploy_env, summary_counts};

/// The refusal a run gets while `holder` (a webhost run with `args`) holds the lock.
fn refusal_of(host: &TestHost, holder: &Held, args: &str) -> String {
    format!(
        "error: root@{} is being deployed by another run: pid {} on {}, since ",
        host.addr,
        holder.pid(),
        faults_support::this_hostname()
    ) + &format!(
        "|, running `webhost {args}`; nothing was changed (the lock is /run/chatmail-deploy.lock, held as long as that run is connected)"
    )
}

/// `line` is `pattern` with a `YYYY-MM-DD HH:MM:SS UTC` time where `pattern` has `|`.
fn matches_with_time(line: &str, pattern: &str) -> bool {
    let (head, tail) = pattern.split_once('|').expect("pattern has a time slot");
    let Some(rest) = line.strip_prefix(head) else {
        return false;
    };
    let Some(time) = rest.strip_suffix(tail) else {
        return false;
    };
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    shape == "9999-99-99 99:99:99 UTC"
}

#[test]
fn two_runs_at_once_one_is_refused_naming_the_other_and_a_killed_runs_lock_is_taken_over() {
    if !enabled("faults_concurrent") {
        return;
    }
    let host = TestHost::up("rt-concurrent");
    let first = deploy(&host, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let kh = known_hosts();
    let base = format!("--ssh-host {} --known-hosts {kh}", host.addr);

    // a new port changes nginx's site and asks for a reload: a run with it holds
    for (a, b) in [("8081", "8081"), ("8082", "8083")] {
        // both start together; each holds before its restarts once it has the lock, so the
        // one that got it is still running when the other asks
        let mut runs = [
            Held::start(&host, &["--port", a]),
            Held::start(&host, &["--port", b]),
        ];
        let ended: Vec<usize> = faults_support::first_to_end_or_hold(&mut runs);
        assert_eq!(ended.len(), 1, "exactly one run is refused");
        let (loser, winner) = (ended[0], 1 - ended[0]);
        let refused = runs[loser].finish();
        let (port, winner_port) = ([a, b][loser], [a, b][winner]);
        let winner_args = format!("{base} --port {winner_port}");
        assert_eq!(refused.code, 1, "{}", refused.stderr);
        let line = refused.one_error_line().to_string();
        assert!(
            matches_with_time(&line, &refusal_of(&host, &runs[winner], &winner_args)),
            "{line}"
        );
        assert_eq!(
            refused.stdout, "",
            "the refused run printed no plan and no change"
        );
        let site = host.sh("cat /etc/nginx/sites-available/webhost");
        assert!(
            site.contains(&format!("listen {winner_port}")),
            "the holder wrote: {site}"
        );
        if port != winner_port {
            assert!(!site.contains(&format!("listen {port}")), "{site}");
        }
        assert_eq!(
            host.sh("sed -n 's/^local-pid=//p' /run/chatmail-deploy.holder")
                .trim(),
            runs[winner].pid().to_string()
        );

        // SIGKILL: no cleanup of any kind; the lock dies with the connection
        runs[winner].kill();
        let next = deploy(&host, &["--port", winner_port]);
        assert_eq!(next.code, 0, "{}", next.stderr);
        assert_eq!(
            faults_support::without_waits(&next.stdout),
            "changed: service nginx.service: reload (recorded as pending on the host)\nsummary: 0 changed, 13 unchanged (13 resources), 1 restart/reload\n"
        );
        let again = deploy(&host, &["--port", winner_port]);
        assert_eq!(
            again.last_line(),
            "summary: 0 changed, 13 unchanged (13 resources)"
        );
        assert_eq!(
            host.try_sh("test -e /run/chatmail-deploy.holder")
                .status
                .code(),
            Some(1),
            "a run that ended removes its name"
        );
    }
    let stale = host.sh("find / -xdev -name '*.chatmail-deploy-tmp*' | wc -l");
    assert_eq!(stale.trim(), "0", "no temp file left");
}

#[test]
fn a_local_run_is_refused_while_another_holds_the_host_and_takes_over_once_it_is_killed() {
    if !enabled("faults_local_lock") {
        return;
    }
    let host = TestHost::up("rt-local");
    // the example binary runs on the host itself (same Debian 12), as `--ssh-host @local`
    let binary = example("webhost");
    let copied = Command::new("scp")
        .args(["-q", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts()))
        .arg(&binary)
        .arg(format!("root@{}:/usr/local/sbin/webhost", host.addr))
        .envs(common::ssh_env())
        .status()
        .unwrap();
    assert!(copied.success());
    // the example uploads its logo from where it was built
    let logo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webhost/logo.svg");
    host.sh(&format!("mkdir -p {}", logo.parent().unwrap().display()));
    let copied = Command::new("scp")
        .args(["-q", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts()))
        .arg(&logo)
        .arg(format!("root@{}:{}", host.addr, logo.display()))
        .envs(common::ssh_env())
        .status()
        .unwrap();
    assert!(copied.success());
    let first = host.try_sh("cd /root && webhost --ssh-host @local 2>/dev/null | tail -1");
    assert!(
        String::from_utf8_lossy(&first.stdout)
            .contains("summary: 13 changed, 0 unchanged (13 resources), 1 restart/reload"),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    // a holder that stops before its restarts; its pid is the shell's, which execs it
    host.sh("cd /root && (CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS=1 exec webhost --ssh-host @local --port 8090 < /dev/null > /root/held.out 2>&1 & echo $! > /root/held.pid)");
    host.sh("for i in $(seq 100); do grep -q '^note: holding' /root/held.out && exit 0; sleep 0.2; done; cat /root/held.out; exit 1");
    let pid = host.sh("cat /root/held.pid").trim().to_string();
    let refused = host.try_sh("cd /root && webhost --ssh-host @local --dry-run");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    let pattern = format!(
        "error: the local machine is being deployed by another run: pid {pid} on rt-local, since |, running `webhost --ssh-host @local --port 8090`; nothing was changed (the lock is /run/chatmail-deploy.lock, held as long as that run is connected)\n"
    );
    assert!(
        matches_with_time(&stderr, &pattern),
        "{stderr}\nexpected {pattern}"
    );
    host.sh(&format!("kill -9 {pid}"));
    let next = host.try_sh("cd /root && webhost --ssh-host @local --port 8090");
    let out = String::from_utf8_lossy(&next.stdout);
    assert_eq!(next.status.code(), Some(0), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("summary: 0 changed, 13 unchanged (13 resources), 1 restart/reload"),
        "the killed run's page is in place, its reload was pending: {out}"
    );
}

#[test]
fn a_run_waits_for_apts_lock_naming_its_holder_and_a_step_past_its_deadline_fails_naming_it() {
    if !enabled("faults_apt_lock") {
        return;
    }
    let host = TestHost::up("rt-aptlock");
    assert_eq!(deploy(&host, &[]).code, 0);
    // another apt holds dpkg's frontend lock for 60 s, as apt-daily or a killed run's
    // apt-get would: apt takes its lock, then runs the hook
    host.sh("nohup apt-get -q -y -o 'DPkg::Pre-Invoke::=sleep 60' install sl > /root/other-apt.log 2>&1 & echo $! > /root/other-apt.pid");
    host.sh("p=$(cat /root/other-apt.pid); for i in $(seq 150); do awk -v p=$p '$5 == p { f = 1 } END { exit !f }' /proc/locks && exit 0; sleep 0.2; done; exit 1");
    let apt_pid = host.sh("cat /root/other-apt.pid").trim().to_string();
    let holder = format!(
        "waiting for apt's lock: /var/lib/dpkg/lock-frontend is held by process {apt_pid} (apt-get -q -y -o DPkg::Pre-Invoke::=sleep 60 install sl)"
    );

    // with every bound cut to 1 %, the install runs out of time (24 s) while it waits
    let late = deploy_env(
        &host,
        &["--package", "hello"],
        &[("CHATMAIL_DEPLOY_DEADLINE_SCALE", "0.01")],
    );
    assert_eq!(late.code, 1, "{}", late.stderr);
    assert_eq!(
        late.one_error_line(),
        format!(
            "error: packages: install hello failed: no result within 24 s, the bound for this step (its last output: {holder})"
        )
    );
    let waits: Vec<&str> = late
        .stdout
        .lines()
        .filter(|l| l.starts_with("waiting: "))
        .collect();
    assert!(!waits.is_empty(), "{}", late.stdout);
    for w in &waits {
        assert!(
            faults_support::is_wait_line(w, "packages: install hello", &holder),
            "{w}"
        );
    }
    assert_eq!(
        host.try_sh("dpkg -s hello").status.code(),
        Some(1),
        "not installed"
    );

    // the real bound: the run waits, says for whom, and installs once the lock is free
    eprintln!("{}", host.sh("date; ps -eo pid,lstart,cmd | grep -E 'apt|sleep|dpkg'; cat /proc/locks; tail -3 /root/other-apt.log"));
    let waited = deploy(&host, &["--package", "hello"]);
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    let lines: Vec<&str> = waited.stdout.lines().collect();
    assert!(
        faults_support::is_wait_line(lines[0], "packages: install hello", &holder),
        "{}",
        waited.stdout
    );
    assert!(
        lines.contains(&"changed: packages: install hello"),
        "{}",
        waited.stdout
    );
    assert_eq!(
        waited.last_line(),
        "summary: 1 changed, 13 unchanged (14 resources)"
    );
    host.sh("dpkg -s hello >/dev/null && dpkg -s sl >/dev/null");
    let again = deploy(&host, &["--package", "hello"]);
    assert_eq!(
        again.last_line(),
        "summary: 0 changed, 14 unchanged (14 resources)"
    );
}

#[test]
fn uploads_onto_a_full_or_read_only_disk_fail_at_once_naming_the_file_and_the_cause() {
    if !enabled("faults_disk") {
        return;
    }
    let host = TestHost::up("rt-disk");
    assert_eq!(deploy(&host, &[]).code, 0);
    let tmp = std::env::temp_dir().join(format!("rt-disk-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let big = tmp.join("big.html.j2");
    std::fs::write(&big, "x".repeat(5 << 20)).unwrap();
    let heartbeat = "/usr/local/bin/webhost-heartbeat";

    // name, how the disk is broken, extra arguments, the error after the step's name
    let cases: [(&str, String, Vec<&str>, &str); 3] = [
        (
            "full /usr/local/bin",
            "rm -f /usr/local/bin/webhost-heartbeat && mount -t tmpfs -o size=64k tmpfs /usr/local/bin && (head -c 1m /dev/zero > /usr/local/bin/fill || true)".into(),
            vec![],
            "cat: write error: No space left on device (exit status 1)",
        ),
        (
            "read-only /usr/local/bin",
            "rm -f /usr/local/bin/webhost-heartbeat && mount -t tmpfs -o size=1m,ro tmpfs /usr/local/bin".into(),
            vec![],
            "Read-only file system (exit status 1)",
        ),
        (
            "5 MB onto a read-only /srv/webhost",
            "mount --bind /srv/webhost /srv/webhost && mount -o remount,bind,ro /srv/webhost".into(),
            vec!["--page-template", big.to_str().unwrap()],
            "Read-only file system (exit status 1)",
        ),
    ];
    for (name, breakage, extra, cause) in cases {
        host.sh(&breakage);
        let listing = "find /etc /srv /usr/local /var/lib/chatmail-deploy -xdev | sort";
        let before = host.sh(listing);
        let r = faults_support::deploy_bounded(&host, &extra, 60);
        assert_eq!(
            r.code, 1,
            "{name}: exit {} (124: it hung): {}",
            r.code, r.stderr
        );
        let line = r.one_error_line();
        let file = if extra.is_empty() {
            format!("file {heartbeat}: create (263 bytes, root:root 755) failed: ")
        } else {
            "file /srv/webhost/index.html: update content failed: ".to_string()
        };
        assert!(
            line.starts_with(&format!("error: {file}")) && line.ends_with(cause),
            "{name}: {line}"
        );
        assert_eq!(
            host.sh("find / -xdev -name '*.chatmail-deploy-tmp*' | wc -l")
                .trim(),
            "0",
            "{name}: no temp file left"
        );
        // what is left: the restart the new file asked for, recorded for the next run
        let pending = "/var/lib/chatmail-deploy/pending-restarts";
        let after = host.sh(listing);
        let after: Vec<&str> = after.lines().filter(|l| *l != pending).collect();
        assert_eq!(
            after,
            before.lines().collect::<Vec<_>>(),
            "{name}: nothing else created or removed"
        );
        if extra.is_empty() {
            assert_eq!(
                host.sh(&format!("cat {pending}")),
                "restart webhost-heartbeat.service\n"
            );
        }
        let mount = if extra.is_empty() {
            "/usr/local/bin"
        } else {
            "/srv/webhost"
        };
        host.sh(&format!("umount {mount}"));
        // the disk is whole again: the same run converges, and the next changes nothing
        let again = deploy(&host, &extra);
        assert_eq!(again.code, 0, "{name}: {}", again.stderr);
        let (changed, unchanged, resources) = summary_counts(again.last_line());
        assert!(
            changed >= 1 && changed + unchanged == resources,
            "{}",
            again.stdout
        );
        assert_eq!(
            deploy(&host, &extra).last_line(),
            "summary: 0 changed, 13 unchanged (13 resources)"
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn changed_and_unchanged_add_up_to_the_resources_on_every_kind_of_run() {
    if !enabled("faults_counts") {
        return;
    }
    let host = TestHost::up("rt-counts");
    let dry_fresh = deploy(&host, &["--dry-run"]);
    assert_eq!(
        dry_fresh.last_line(),
        "summary: 12 to change, 1 unchanged (13 resources), 1 restart/reload"
    );
    // nginx's default site is absent at first, created by the install, then removed
    let fresh = deploy(&host, &[]);
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert_eq!(
        fresh.last_line(),
        "summary: 13 changed, 0 unchanged (13 resources), 1 restart/reload"
    );
    let noop = deploy(&host, &[]);
    assert_eq!(
        noop.last_line(),
        "summary: 0 changed, 13 unchanged (13 resources)"
    );
    assert_eq!(
        common::remote_commands(&noop.stderr),
        1,
        "the lock costs no round trip"
    );
    let dry = deploy(&host, &["--dry-run", "--message", "new"]);
    assert_eq!(
        dry.last_line(),
        "summary: 1 to change, 12 unchanged (13 resources)"
    );
    let json = deploy(&host, &["--dry-run", "--json", "--message", "new"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (
            &doc["to_change"],
            &doc["unchanged"],
            &doc["resources"],
            &doc["handlers"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(12),
            &serde_json::json!(13),
            &serde_json::json!(0)
        )
    );
    // a change with a reload (the site and the page name the port): the reload is
    // counted apart from the resources
    let port = deploy(&host, &["--port", "8080"]);
    assert_eq!(
        port.last_line(),
        "summary: 2 changed, 11 unchanged (13 resources), 1 restart/reload"
    );
    // more resources: a package and 5 files
    let more = deploy(
        &host,
        &["--port", "8080", "--extra-files", "5", "--package", "hello"],
    );
    assert_eq!(
        more.last_line(),
        "summary: 7 changed, 13 unchanged (20 resources)"
    );
    let r = run(
        &example("webhost"),
        &[
            "--ssh-host",
            &host.addr,
            "--known-hosts",
            &known_hosts(),
            "--port",
            "8080",
            "--extra-files",
            "5",
            "--package",
            "hello",
        ],
        &[],
    );
    assert_eq!(
        r.last_line(),
        "summary: 0 changed, 20 unchanged (20 resources)"
    );
}

#[test]
fn a_run_that_stops_sending_heartbeats_loses_the_lock_to_the_next_run() {
    if !enabled("faults_silent_holder") {
        return;
    }
    let host = TestHost::up("rt-silent");
    assert_eq!(deploy(&host, &[]).code, 0);
    let mut holder = Held::start(&host, &["--port", "8085"]);
    assert!(faults_support::first_to_end_or_hold(std::slice::from_mut(&mut holder)).is_empty());
    // a stopped process sends nothing, yet its connection stays open: a link that died
    // without a word looks the same to the host
    faults_support::signal(holder.pid(), "STOP");
    let refused = deploy(&host, &["--port", "8085"]);
    assert!(
        refused.one_error_line().contains(&format!(
            "is being deployed by another run: pid {}",
            holder.pid()
        )),
        "{}",
        refused.stderr
    );
    // the host lets the lock go once it has heard nothing for 60 s; ask every 5 s
    let mut attempts = 1;
    let taken = loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        attempts += 1;
        let r = deploy(&host, &["--port", "8085"]);
        if r.code == 0 {
            break r;
        }
        assert!(
            r.stderr.contains("is being deployed by another run"),
            "{}",
            r.stderr
        );
        assert!(attempts < 40, "the lock was never released");
    };
    assert_eq!(
        faults_support::without_waits(&taken.stdout),
        "changed: service nginx.service: reload (recorded as pending on the host)\nsummary: 0 changed, 13 unchanged (13 resources), 1 restart/reload\n"
    );
    faults_support::signal(holder.pid(), "CONT");
    holder.kill();
    assert_eq!(
        deploy(&host, &["--port", "8085"]).last_line(),
        "summary: 0 changed, 13 unchanged (13 resources)"
    );
}

#[test]
fn a_relays_counts_add_up_on_a_fresh_run_a_no_op_and_a_dry_run() {
    if !enabled("faults_relay_counts") {
        return;
    }
    let relay = common::relay::Relay::new("rt-relay", "_rt-relay.test");
    let dry = relay.deploy(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let (to_change, unchanged, resources) = summary_counts(dry.last_line());
    assert_eq!(to_change + unchanged, resources, "{}", dry.last_line());
    let fresh = relay.deploy(&[]);
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    let (changed, unchanged, fresh_resources) = summary_counts(fresh.last_line());
    assert_eq!(
        changed + unchanged,
        fresh_resources,
        "{}",
        fresh.last_line()
    );
    // fewer than the dry run planned is right: what a package install brings in line (a
    // unit it enables, a file it ships as wanted) is no change of this run
    assert!(
        changed <= to_change,
        "{} after {}",
        fresh.last_line(),
        dry.last_line()
    );
    assert_eq!(fresh_resources, resources);
    let noop = relay.deploy(&[]);
    let (_, _, noop_resources) = summary_counts(noop.last_line());
    assert_eq!(
        noop.last_line(),
        format!("summary: 0 changed, {noop_resources} unchanged ({noop_resources} resources)")
    );
    eprintln!(
        "relay counts: dry {:?}, fresh {:?}, no-op {:?}",
        dry.last_line(),
        fresh.last_line(),
        noop.last_line()
    );
}
