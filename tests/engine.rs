//! The engine on real Debian 12 test hosts, through the webhost example.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{TestHost, enabled, example, http_get, known_hosts, run, ssh_env};

fn deploy(host: &TestHost, extra: &[&str]) -> common::Run {
    common::deploy_webhost(host, extra)
}

/// Main PIDs of the example's services: a restart changes them.
fn main_pids(host: &TestHost) -> String {
    host.sh("systemctl show -p MainPID nginx.service webhost-heartbeat.service")
}

#[test]
fn example_converges_and_a_second_run_changes_nothing() {
    if !enabled("example_converges") {
        return;
    }
    let host = TestHost::up("eng-converge");
    let first = deploy(&host, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.last_line().starts_with("summary: "),
        "{}",
        first.last_line()
    );
    assert!(first.stdout.contains("changed: packages: install nginx"));
    assert!(http_get(&host.addr, 80, "/").contains("Deployed by chatmail-deploy."));
    assert!(http_get(&host.addr, 80, "/logo.svg").starts_with("<svg"));
    assert_eq!(
        host.sh("systemctl is-active webhost-heartbeat.service")
            .trim(),
        "active"
    );
    assert_eq!(
        host.sh("stat -c '%U %a' /srv/webhost").trim(),
        "webhost 755"
    );

    let pids = main_pids(&host);
    let second = deploy(&host, &[]);
    assert_eq!(second.code, 0);
    assert_eq!(
        second.last_line(),
        "summary: 0 changed, 13 unchanged (13 resources)"
    );
    assert!(
        !second.stdout.contains("changed:"),
        "nothing is changed or restarted"
    );
    assert!(
        second.stderr.contains("1 remote command"),
        "facts in one round trip: {}",
        second.stderr
    );
    assert_eq!(main_pids(&host), pids, "no service was restarted");
    assert!(
        !host
            .try_sh("test -e /var/lib/chatmail-deploy/pending-restarts")
            .status
            .success()
    );

    // `ssh-client` is a virtual package here: apt would take openssh-client for it and dpkg
    // would never list ssh-client installed. Refused at plan time, before any change.
    let before = host.fingerprint();
    let virt = deploy(&host, &["--package", "ssh-client"]);
    assert_eq!(virt.code, 1, "{}", virt.stderr);
    assert_eq!(
        virt.one_error_line(),
        "error: package ssh-client is virtual on this host (provided by openssh-client): the state must name the real package"
    );
    assert!(!virt.stdout.contains("summary:"), "{}", virt.stdout);
    assert_eq!(host.fingerprint(), before, "nothing changed");

    // A host whose package facts contradict the install: a dpkg-query in front of the real
    // one hides `tree` (PATH has /usr/local/bin first), as a package installing under another
    // name would. The run must say so, not succeed.
    host.sh(
        "printf '#!/bin/sh\\n/usr/bin/dpkg-query \"$@\" | grep -v \"^tree\"\\n' > /usr/local/bin/dpkg-query && chmod 755 /usr/local/bin/dpkg-query",
    );
    let never = deploy(&host, &["--package", "tree"]);
    assert_eq!(never.code, 1, "{}", never.stderr);
    assert!(
        never
            .one_error_line()
            .contains("the host does not match the desired state after applying, still different: packages: install tree"),
        "{}",
        never.stderr
    );
    assert!(
        !never.stdout.contains("summary:"),
        "no summary claims success: {}",
        never.stdout
    );
    // with a change planned behind it, every round stops after the install again: the
    // round limit ends the run with both named, never with a summary
    let stuck = deploy(&host, &["--package", "tree", "--message", "changed"]);
    assert_eq!(stuck.code, 1, "{}", stuck.stderr);
    let line = stuck.one_error_line();
    assert!(
        line.contains(
            "the host did not converge in 4 rounds, still to change: packages: install tree; "
        ) && line.contains("/srv/webhost/index.html"),
        "{}",
        stuck.stderr
    );
    assert!(!stuck.stdout.contains("summary:"), "{}", stuck.stdout);
    host.sh("rm /usr/local/bin/dpkg-query");
}

#[test]
fn drift_is_shown_exactly_by_the_dry_run_and_repaired_by_run() {
    if !enabled("drift") {
        return;
    }
    let host = TestHost::up("eng-drift");
    assert_eq!(deploy(&host, &[]).code, 0);
    host.sh("echo '# hand edit' >> /etc/nginx/sites-available/webhost && systemctl stop webhost-heartbeat.service");

    let before = host.fingerprint();
    let dry = deploy(&host, &["--dry-run"]);
    assert_eq!(dry.code, 0);
    assert!(
        dry.stdout
            .contains("~ file /etc/nginx/sites-available/webhost: update content\n"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains(
        "    --- a/etc/nginx/sites-available/webhost\n    +++ b/etc/nginx/sites-available/webhost\n"
    ));
    assert!(
        dry.stdout.contains("\n    -# hand edit\n"),
        "the diff removes the edit"
    );
    assert!(
        dry.stdout
            .contains("~ service webhost-heartbeat.service: start (was enabled, inactive)\n")
    );
    assert!(dry.stdout.contains("~ service nginx.service: reload\n"));
    assert_eq!(
        dry.last_line(),
        "summary: 2 to change, 11 unchanged (13 resources), 1 restart/reload"
    );
    assert_eq!(host.fingerprint(), before, "the dry run changed the host");

    let check = deploy(&host, &["--dry-run", "--check"]);
    assert_eq!(check.code, 2, "--check exits 2 with pending changes");
    let json = deploy(&host, &["--dry-run", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON plan");
    assert_eq!(doc["to_change"], 2);
    assert_eq!(doc["handlers"], 1);
    assert_eq!(doc["changes"][0]["kind"], "file");
    assert!(
        doc["changes"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("-# hand edit")
    );
    assert_eq!(host.fingerprint(), before);

    let fix = deploy(&host, &[]);
    assert_eq!(
        fix.last_line(),
        "summary: 2 changed, 11 unchanged (13 resources), 1 restart/reload"
    );
    assert!(
        !host
            .sh("cat /etc/nginx/sites-available/webhost")
            .contains("hand edit")
    );
    assert_eq!(
        host.sh("systemctl is-active webhost-heartbeat.service")
            .trim(),
        "active"
    );
    assert_eq!(deploy(&host, &["--dry-run", "--check"]).code, 0);
}

#[test]
fn a_run_killed_before_its_restarts_leaves_them_for_the_next_run() {
    if !enabled("interruption") {
        return;
    }
    let host = TestHost::up("eng-interrupt");
    assert_eq!(deploy(&host, &[]).code, 0);
    let heartbeat_pid = host.sh("systemctl show -p MainPID --value webhost-heartbeat.service");

    // new port (nginx reload) and new interval (heartbeat restart); stop before the handlers
    let kh = known_hosts();
    let mut child = Command::new(example("webhost"))
        .args([
            "--ssh-host",
            &host.addr,
            "--known-hosts",
            &kh,
            "--port",
            "8080",
        ])
        .envs(ssh_env())
        .env("CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("run ended before holding").unwrap();
        if line.starts_with("note: holding before restarts") {
            break;
        }
        seen.push(line);
    }
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.contains("file /etc/nginx/sites-available/webhost: update content"))
    );
    assert_eq!(
        host.sh("cat /var/lib/chatmail-deploy/pending-restarts"),
        "reload nginx.service\n"
    );
    assert!(
        host.sh("cat /etc/nginx/sites-available/webhost")
            .contains("listen 8080")
    );
    assert!(
        std::net::TcpStream::connect((host.addr.as_str(), 8080)).is_err(),
        "nginx not reloaded yet"
    );

    let next = deploy(&host, &["--port", "8080"]);
    assert!(
        next.stdout
            .contains("changed: service nginx.service: reload (recorded as pending on the host)"),
        "{}",
        next.stdout
    );
    assert_eq!(
        next.last_line(),
        "summary: 0 changed, 13 unchanged (13 resources), 1 restart/reload"
    );
    assert!(http_get(&host.addr, 8080, "/").contains("Deployed by chatmail-deploy."));
    assert!(
        !host
            .try_sh("test -e /var/lib/chatmail-deploy/pending-restarts")
            .status
            .success()
    );
    assert_eq!(
        host.sh("systemctl show -p MainPID --value webhost-heartbeat.service"),
        heartbeat_pid,
        "only the notified service is touched"
    );
    assert_eq!(
        deploy(&host, &["--port", "8080"]).last_line(),
        "summary: 0 changed, 13 unchanged (13 resources)"
    );
}

#[test]
fn bad_input_gives_one_error_line_and_changes_nothing() {
    if !enabled("bad_input") {
        return;
    }
    let host = TestHost::up("eng-bad");
    let webhost = example("webhost");
    let kh = known_hosts();
    let tmp = std::env::temp_dir().join(format!("eng-bad-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let before = host.fingerprint();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--ssh-host".to_string(),
            host.addr.clone(),
            "--known-hosts".into(),
            kh.clone(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let go = |args: Vec<String>, env: &[(&str, &str)]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&webhost, &a, env)
    };

    // unreachable host
    let r = run(
        &webhost,
        &["--ssh-host", "127.0.0.1:1", "--known-hosts", &kh],
        &[],
    );
    assert!(
        r.one_error_line()
            .contains("cannot connect to root@127.0.0.1:1"),
        "{}",
        r.stderr
    );

    // no agent
    let out = Command::new(&webhost)
        .args(base(&[]))
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let r = common::Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(r.one_error_line().contains("no ssh-agent"), "{}", r.stderr);

    // an agent holding only a key the host does not accept
    let key = tmp.join("other_key");
    let sock = tmp.join("agent.sock");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let r = go(base(&[]), &[("SSH_AUTH_SOCK", sock.to_str().unwrap())]);
    assert!(
        r.one_error_line()
            .contains("permission denied for all 1 key(s)"),
        "{}",
        r.stderr
    );
    agent.kill().unwrap();
    agent.wait().unwrap();

    // changed host key
    let fake_kh = tmp.join("known_hosts_changed");
    let other_pub = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(&fake_kh, format!("{} {}\n", host.addr, other_pub.join(" "))).unwrap();
    let r = go(
        vec![
            "--ssh-host".into(),
            host.addr.clone(),
            "--known-hosts".into(),
            fake_kh.display().to_string(),
        ],
        &[],
    );
    assert!(r.one_error_line().contains("has CHANGED"), "{}", r.stderr);
    // ... and --accept-new-host-key does not override a changed key
    let mut args = vec![
        "--ssh-host".into(),
        host.addr.clone(),
        "--known-hosts".into(),
        fake_kh.display().to_string(),
    ];
    args.push("--accept-new-host-key".into());
    assert!(go(args, &[]).one_error_line().contains("has CHANGED"));

    // unknown host key: refused, then accepted and recorded on request
    let empty_kh = tmp.join("known_hosts_empty");
    let args = vec![
        "--ssh-host".into(),
        host.addr.clone(),
        "--known-hosts".into(),
        empty_kh.display().to_string(),
        "--dry-run".into(),
    ];
    assert!(
        go(args.clone(), &[])
            .one_error_line()
            .contains("is not known")
    );
    let mut accept = args.clone();
    accept.push("--accept-new-host-key".into());
    assert_eq!(go(accept, &[]).code, 0);
    assert!(
        std::fs::read_to_string(&empty_kh)
            .unwrap()
            .contains(&host.addr)
    );
    assert_eq!(go(args, &[]).code, 0, "the recorded key is now known");

    // a template with an undefined variable
    let tpl = tmp.join("page.j2");
    std::fs::write(
        &tpl,
        "<h1>{{ title }}</h1>\n<p>{{ no_such_variable }}</p>\n",
    )
    .unwrap();
    let r = go(base(&["--page-template", tpl.to_str().unwrap()]), &[]);
    let line = r.one_error_line();
    assert!(
        line.contains("template index.html")
            && line.contains("undefined")
            && line.contains("line 2"),
        "{line}"
    );

    // a download whose sha256 does not match the pin
    let logo = tmp.join("logo.svg");
    std::fs::write(&logo, "<svg/>").unwrap();
    let r = go(base(&["--logo-file", logo.to_str().unwrap()]), &[]);
    assert!(
        r.one_error_line().contains("expected 40c5d8d5"),
        "{}",
        r.stderr
    );

    assert_eq!(host.fingerprint(), before, "a failed run changed the host");

    // a host that is not Debian
    host.sh("cp --remove-destination /usr/lib/os-release /root/os-release.orig && printf 'NAME=Fedora\\nID=fedora\\nVERSION_ID=40\\nPRETTY_NAME=\"Fedora Linux 40\"\\n' > /etc/os-release.fake && mv /etc/os-release /root/os-release.link && mv /etc/os-release.fake /etc/os-release");
    let before = host.fingerprint();
    let r = go(base(&[]), &[]);
    assert!(
        r.one_error_line().contains("only Debian is supported"),
        "{}",
        r.stderr
    );
    assert_eq!(host.fingerprint(), before);
    host.sh("rm /etc/os-release && mv /root/os-release.link /etc/os-release");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn rsa_and_ecdsa_keys_in_the_agent_log_in() {
    if !enabled("agent_key_types") {
        return;
    }
    let host = TestHost::up("eng-keys");
    let tmp = std::env::temp_dir().join(format!("eng-keys-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let kh = known_hosts();
    for (kind, bits) in [("rsa", "3072"), ("ecdsa", "256")] {
        let key = tmp.join(format!("id_{kind}"));
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-b", bits, "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        host.sh(&format!(
            "echo '{}' >> /root/.ssh/authorized_keys",
            public.trim()
        ));
        // an agent holding only this key
        let sock = tmp.join(format!("agent-{kind}.sock"));
        let mut agent = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..50 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let added = Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(added.success());
        let r = run(
            &example("webhost"),
            &["--ssh-host", &host.addr, "--known-hosts", &kh, "--dry-run"],
            &[("SSH_AUTH_SOCK", sock.to_str().unwrap())],
        );
        agent.kill().unwrap();
        agent.wait().unwrap();
        assert_eq!(r.code, 0, "{kind} key: {}", r.stderr);
        assert!(r.last_line().starts_with("summary: "));
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_large_upload_to_a_full_disk_fails_at_once_and_the_next_run_converges() {
    if !enabled("full_disk") {
        return;
    }
    let host = TestHost::up("eng-full");
    let first = deploy(&host, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);

    // a 5 MB page onto a 1 MB filesystem: the remote `cat` dies early and stops reading
    let dir = std::env::temp_dir().join(format!("eng-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("big.html.j2");
    std::fs::write(&page, "x".repeat(5 << 20)).unwrap();
    host.sh("mount -t tmpfs -o size=1m tmpfs /srv/webhost");
    let kh = known_hosts();
    let example = example("webhost");
    // `timeout` turns a hang (what this used to do, for ever) into exit status 124
    let full = run(
        std::path::Path::new("timeout"),
        &[
            "120",
            example.to_str().unwrap(),
            "--ssh-host",
            host.addr.as_str(),
            "--known-hosts",
            kh.as_str(),
            "--page-template",
            page.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        full.code, 1,
        "exit {} (124: it hung): {}",
        full.code, full.stderr
    );
    let line = full.one_error_line();
    assert!(
        line.contains("/srv/webhost/index.html") && line.contains("No space left on device"),
        "{}",
        full.stderr
    );
    host.sh("umount /srv/webhost");
    std::fs::remove_dir_all(&dir).unwrap();

    // the disk has room again: the same host converges
    let again = deploy(&host, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(http_get(&host.addr, 80, "/").contains("Deployed by chatmail-deploy."));
}
