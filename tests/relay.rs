//! The whole relay deployed to real Debian 12 test hosts.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::relay::{Relay, deploy_tool};
use common::{enabled, known_hosts, run};

/// The units a self-signed relay must have running.
const UNITS: &[&str] = &[
    "unbound.service",
    "doveauth.service",
    "chatmail-metadata.service",
    "lastlogin.service",
    "chatmail-expire.timer",
    "chatmail-fsreport.timer",
    "filtermail.service",
    "filtermail-incoming.service",
    "filtermail-transport.service",
    "opendkim.service",
    "dovecot.service",
    "postfix.service",
    "fcgiwrap.socket",
    "nginx.service",
];

/// IMAP login with curl over TLS (the certificate is self-signed).
fn imap_login(addr: &str, user: &str, password: &str) -> bool {
    Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "20",
            "--url",
            &format!("imaps://{addr}/"),
            "-X",
            "CAPABILITY",
        ])
        .arg("--user")
        .arg(format!("{user}:{password}"))
        .status()
        .unwrap()
        .success()
}

#[test]
fn self_signed_relay_converges_serves_and_is_idempotent() {
    if !enabled("self_signed_relay") {
        return;
    }
    let mut relay = Relay::new("relay-conv", "_relay-a.test");

    // pre-flight: a relay binary the host cannot run (here: a Mac build) is refused before
    // any change, naming the file and what is wrong
    let built = relay.bins.clone();
    let mac = relay.ini.with_file_name("mac-bins");
    std::fs::create_dir_all(&mac).unwrap();
    std::fs::write(
        mac.join("chatmaild"),
        b"\xcf\xfa\xed\xfe\x07\x00\x00\x01macho",
    )
    .unwrap();
    relay.bins = mac.clone();
    let before = relay.host.fingerprint();
    let foreign = relay.deploy(&[]);
    assert_eq!(foreign.code, 1, "{}", foreign.stderr);
    let line = foreign.one_error_line();
    assert!(
        line.starts_with(&format!(
            "error: {}/chatmaild cannot run on the host (x86_64, glibc 2.36): it is a macOS (Mach-O) program",
            mac.display()
        )),
        "{line}"
    );
    assert_eq!(relay.host.fingerprint(), before);
    relay.bins = built;

    // pre-flight: an mtail address the host does not have stops the run before any change
    let good = std::fs::read_to_string(&relay.ini).unwrap();
    relay.append_ini("mtail_address = 10.77.0.250\n");
    let before = relay.host.fingerprint();
    let refused = relay.deploy(&[]);
    assert!(
        refused
            .one_error_line()
            .contains("mtail_address 10.77.0.250 is not an address of the host"),
        "{}",
        refused.stderr
    );
    assert_eq!(relay.host.fingerprint(), before);
    std::fs::write(&relay.ini, good).unwrap();

    // pre-flight: a Debian release the relay is not made for is refused before any change
    let h = &relay.host;
    h.sh("mv /etc/os-release /root/os-release.link");
    for version in ["11", "14"] {
        h.sh(&format!(
            "printf 'ID=debian\\nVERSION_ID=\"{version}\"\\nPRETTY_NAME=\"Debian GNU/Linux {version}\"\\n' > /etc/os-release"
        ));
        let before = h.fingerprint();
        let refused = relay.deploy(&[]);
        assert_eq!(refused.code, 1, "{}", refused.stderr);
        assert!(
            refused.one_error_line().contains(&format!(
                "the host runs Debian GNU/Linux {version} (VERSION_ID=\"{version}\"): relays are deployed on Debian 12 only"
            )),
            "{}",
            refused.stderr
        );
        assert_eq!(
            h.fingerprint(),
            before,
            "Debian {version}: the host changed"
        );
    }
    h.sh("rm /etc/os-release && mv /root/os-release.link /etc/os-release");

    let first = relay.deploy(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.last_line().starts_with("summary: "));
    // chatmail's Dovecot build, served to the test hosts, installed without a warning
    assert!(
        first
            .stdout
            .contains("changed: dovecot: install chatmail's build ")
            && !first.stderr.contains("Dovecot build"),
        "{}\n{}",
        first.stdout,
        first.stderr
    );

    let h = &relay.host;
    // the installs' guard against daemons starting early is gone again
    assert!(
        !h.try_sh("test -e /usr/sbin/policy-rc.d").status.success(),
        "policy-rc.d left behind"
    );
    assert_eq!(
        h.sh("systemctl --failed --no-legend --plain"),
        "",
        "failed units"
    );
    for unit in UNITS {
        assert_eq!(
            h.sh(&format!("systemctl is-active {unit}")).trim(),
            "active",
            "{unit}"
        );
    }
    // the DKIM key was made on the host and is readable only there
    assert_eq!(
        h.sh("stat -c '%U %a' /etc/dkimkeys/opendkim.private")
            .trim(),
        "opendkim 600"
    );
    assert!(
        !first.stdout.contains("BEGIN"),
        "no key material in the output"
    );

    // accounts: created by the first login, a wrong password fails afterwards
    assert!(imap_login(
        &h.addr,
        "newuser01@_relay-a.test",
        "a-long-password"
    ));
    assert!(
        h.sh("cat /home/vmail/mail/_relay-a.test/newuser01@_relay-a.test/password")
            .starts_with("{SHA512-CRYPT}$6$")
    );
    assert!(!imap_login(
        &h.addr,
        "newuser01@_relay-a.test",
        "wrong-password"
    ));
    let new = Command::new("curl")
        .args(["-sk", "-X", "POST", &format!("https://{}/new", h.addr)])
        .output()
        .unwrap();
    let new: serde_json::Value = serde_json::from_slice(&new.stdout).expect("/new answers JSON");
    assert!(new["email"].as_str().unwrap().ends_with("@_relay-a.test"));
    assert!(new["dclogin_url"].as_str().unwrap().starts_with("dclogin:"));

    // status: all green
    let kh = known_hosts();
    let status_args = [
        "status",
        "--ssh-host",
        h.addr.as_str(),
        "--known-hosts",
        kh.as_str(),
        "--config",
        relay.ini.to_str().unwrap(),
    ];
    let status = run(&deploy_tool(), &status_args, &[]);
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert!(
        status
            .stdout
            .contains("  ok   filtermail-transport.service: active since")
    );
    assert!(status.stdout.contains("mailboxes: 1"), "{}", status.stdout);

    // a second run changes and restarts nothing
    let pids = relay.main_pids(UNITS);
    let second = relay.deploy(&[]);
    assert!(
        second.last_line().starts_with("summary: 0 changed, "),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("changed:"));
    assert!(
        second.stderr.contains("1 remote command"),
        "{}",
        second.stderr
    );
    assert_eq!(
        relay.main_pids(UNITS),
        pids,
        "a no-op run restarted something"
    );

    // a relay of the versions before the multi-call binary has a file per program: each
    // becomes a link to /usr/local/bin/chatmaild, the services that run it restart once,
    // the next run changes nothing
    h.sh("set -e; cd /usr/local/bin; \
         for p in doveauth chatmail-metadata lastlogin chatmail-expire chatmail-fsreport \
                  chatmail-quota-expire filtermail /usr/lib/cgi-bin/newemail.py; do \
           rm $p; cp chatmaild $p; done; rm chatmaild");
    let multi_call = ["doveauth.service", "filtermail-incoming.service"];
    let pids = relay.main_pids(&multi_call);
    let converged = relay.deploy(&[]);
    assert!(
        converged.last_line().starts_with("summary: 9 changed, ")
            && converged.last_line().contains(", 6 restarts/reloads"),
        "{}",
        converged.stdout
    );
    assert_eq!(
        h.sh("readlink /usr/local/bin/doveauth /usr/local/bin/filtermail /usr/lib/cgi-bin/newemail.py"),
        "/usr/local/bin/chatmaild\n".repeat(3)
    );
    assert_ne!(relay.main_pids(&multi_call), pids);
    let again = relay.deploy(&[]);
    assert!(
        again.last_line().starts_with("summary: 0 changed, "),
        "{}",
        again.stdout
    );

    // a hand edit: the dry run shows exactly that edit and its restart
    h.sh("echo '# hand edit' >> /etc/postfix/main.cf");
    // --website-only repairs an edited page and touches nothing else
    h.sh("echo '<!-- edited -->' >> /var/www/html/index.html");
    let web = relay.deploy(&["--website-only"]);
    assert!(
        web.last_line().starts_with("summary: 1 changed"),
        "{}",
        web.stdout
    );
    assert!(web.stdout.contains("/var/www/html/index.html"));
    assert_eq!(
        h.sh("grep -c '# hand edit' /etc/postfix/main.cf").trim(),
        "1"
    );
    let dry = relay.deploy(&["--dry-run"]);
    let planned: Vec<&str> = dry.stdout.lines().filter(|l| l.starts_with("~ ")).collect();
    assert_eq!(
        planned,
        [
            "~ file /etc/postfix/main.cf: update content",
            "~ service postfix.service: restart"
        ]
    );
    assert!(dry.stdout.contains("\n    -# hand edit\n"));
    assert_eq!(
        dry.last_line().split(',').next(),
        Some("summary: 1 to change")
    );
    let fix = relay.deploy(&[]);
    assert!(
        fix.last_line().starts_with("summary: 1 changed, "),
        "{}",
        fix.stdout
    );

    // --disable-mail stops and disables Dovecot and Postfix only; a normal run brings them back
    let off = relay.deploy(&["--disable-mail"]);
    assert_eq!(off.code, 0);
    for unit in ["dovecot.service", "postfix.service"] {
        assert_eq!(
            h.try_sh(&format!("systemctl is-active {unit}"))
                .status
                .code(),
            Some(3),
            "{unit} still active"
        );
        assert_eq!(
            h.sh(&format!("systemctl is-enabled {unit} || true")).trim(),
            "disabled"
        );
    }
    assert_eq!(
        h.sh("systemctl is-active nginx.service filtermail.service doveauth.service"),
        "active\nactive\nactive\n"
    );
    let on = relay.deploy(&[]);
    assert_eq!(on.code, 0);
    assert_eq!(
        h.sh("systemctl is-active dovecot.service postfix.service"),
        "active\nactive\n"
    );
    assert!(
        imap_login(&h.addr, "newuser01@_relay-a.test", "a-long-password"),
        "the account survived"
    );

    // status names a unit stopped by hand and fails
    h.sh("systemctl stop lastlogin.service");
    let status = run(&deploy_tool(), &status_args, &[]);
    assert_eq!(status.code, 1);
    assert!(
        status.stdout.contains("  FAIL lastlogin.service: inactive"),
        "{}",
        status.stdout
    );
    assert_eq!(
        status.last_line(),
        "status: 1 not active: lastlogin.service"
    );
    let back = relay.deploy(&[]);
    assert_eq!(back.code, 0, "{}", back.stderr);

    // a config its service refuses is put back before the service sees it: one error line,
    // the old file, the service still running and answering; the next correct run converges
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    let broken = std::env::temp_dir().join(format!("relay-broken-{}", std::process::id()));
    for (template, garbage, path, unit, port) in [
        (
            "postfix/main.cf.j2",
            "this line has no equals sign\n",
            "/etc/postfix/main.cf",
            "postfix.service",
            25,
        ),
        (
            "dovecot/dovecot.conf.j2",
            "no_such_dovecot_setting = 1\n",
            "/etc/dovecot/dovecot.conf",
            "dovecot.service",
            993,
        ),
        (
            "nginx/nginx.conf.j2",
            "no_such_nginx_directive on;\n",
            "/etc/nginx/nginx.conf",
            "nginx.service",
            443,
        ),
    ] {
        let _ = std::fs::remove_dir_all(&broken);
        let own = broken.join(template);
        std::fs::create_dir_all(own.parent().unwrap()).unwrap();
        let source = std::fs::read_to_string(templates.join(template)).unwrap();
        std::fs::write(&own, source + garbage).unwrap();
        let before = h.sh(&format!("sha256sum {path}"));
        let pid = relay.main_pids(&[unit]);
        let refused = relay.deploy(&["--templates", broken.to_str().unwrap()]);
        assert_eq!(refused.code, 1, "{template}: {}", refused.stdout);
        let line = refused.one_error_line();
        assert!(
            line.contains(&format!("{unit}: new config refused by "))
                && line.contains(&format!("previous files put back: {path}")),
            "{template}: {}",
            refused.stderr
        );
        assert!(!refused.stdout.contains("summary:"), "{}", refused.stdout);
        assert_eq!(h.sh(&format!("sha256sum {path}")), before, "{path} is back");
        assert_eq!(relay.main_pids(&[unit]), pid, "{unit} was not restarted");
        assert_eq!(
            h.sh(&format!("systemctl is-active {unit}")).trim(),
            "active"
        );
        assert!(
            h.try_sh(&format!("timeout 5 bash -c '</dev/tcp/127.0.0.1/{port}'"))
                .status
                .success(),
            "{unit} answers on port {port}"
        );
    }
    let _ = std::fs::remove_dir_all(&broken);
    let fixed = relay.deploy(&[]);
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    let again = relay.deploy(&[]);
    assert!(
        again.last_line().starts_with("summary: 0 changed, "),
        "{}",
        again.stdout
    );
    assert!(
        !h.try_sh("test -e /var/lib/chatmail-deploy/previous")
            .status
            .success(),
        "no previous files are kept once every service runs its config"
    );
}

fn test_dns(records: &[&str]) {
    common::dns_set(records);
}

#[test]
fn chat_client_exchanges_encrypted_messages_and_cleartext_is_refused() {
    if !enabled("chat_client_e2e") {
        return;
    }
    let python = common::e2e_python();
    let relay = Relay::new("relay-e2e", "_relay-e2e.test");
    let addr = relay.host.addr.clone();
    // the notification proxy: a local endpoint on this machine's leg of the test network
    let (push_url, pushes) = push_endpoint();
    relay.append_ini(&format!("notification_url = {push_url}\n"));
    test_dns(&[
        &format!("_relay-e2e.test. 60 IN A {addr}"),
        "_relay-e2e.test. 60 IN MX 10 _relay-e2e.test.",
    ]);
    assert_eq!(relay.deploy(&[]).code, 0);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(&python)
        .arg(root.join("tests/e2e/chat.py"))
        .args([
            "_relay-e2e.test",
            &addr,
            "--push-token",
            "test-device-token-42",
        ])
        .envs(common::ssh_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    if !out.status.success() {
        eprintln!(
            "{}",
            relay
                .host
                .sh("journalctl -u doveauth -u dovecot -u filtermail -u postfix --no-pager -n 60")
        );
        panic!("the chat client check failed");
    }
    let results: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(results["encrypted_both_ways"], true);
    assert!(
        results["cleartext"]
            .as_str()
            .unwrap()
            .starts_with("refused 523"),
        "{results}"
    );
    // bob's device token went to the notification endpoint when alice's message arrived
    let posted = pushes
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("no push notification POST arrived");
    assert_eq!(posted, "test-device-token-42");
    assert!(
        results["bob"].as_str().unwrap().starts_with("e2e"),
        "the chosen address was created by login"
    );
}

#[test]
fn two_relays_exchange_encrypted_messages_signed_and_verified() {
    if !enabled("two_relays") {
        return;
    }
    let python = common::e2e_python();
    let a = Relay::new("relay-xa", "_relay-xa.test");
    let b = Relay::new("relay-xb", "_relay-xb.test");
    for (relay, domain) in [(&a, "_relay-xa.test"), (&b, "_relay-xb.test")] {
        let addr = &relay.host.addr;
        test_dns(&[
            &format!("{domain}. 60 IN A {addr}"),
            &format!("{domain}. 60 IN MX 10 {domain}."),
        ]);
    }
    let (ra, rb) = std::thread::scope(|s| {
        let ja = s.spawn(|| a.deploy(&[]));
        let jb = s.spawn(|| b.deploy(&[]));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    assert_eq!((ra.code, rb.code), (0, 0));
    test_dns(&[
        &common::dkim_record(&a.host, "_relay-xa.test"),
        &common::dkim_record(&b.host, "_relay-xb.test"),
    ]);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(&python)
        .arg(root.join("tests/e2e/chat.py"))
        .args([
            "_relay-xa.test",
            &a.host.addr,
            "_relay-xb.test",
            &b.host.addr,
        ])
        .envs(common::ssh_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the cross-relay chat check failed");
    let results: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(results["encrypted_both_ways"], true);
    assert!(
        results["bob"]
            .as_str()
            .unwrap()
            .ends_with("@_relay-xb.test")
    );
    // the mail crossed signed by the sender's relay, and the receiving filter checked it
    let journal = b
        .host
        .sh("journalctl -u filtermail-incoming.service --no-pager -o cat");
    assert!(!journal.contains("No valid DKIM signature"), "{journal}");
    let stored = b.host.sh("cat /home/vmail/mail/_relay-xb.test/e2e*/cur/* /home/vmail/mail/_relay-xb.test/e2e*/new/* 2>/dev/null | zcat -f | grep -ci '^DKIM-Signature' || true");
    assert_eq!(
        stored.trim(),
        "0",
        "Dovecot's LMTP strips DKIM-Signature before storing"
    );
}

/// An HTTP endpoint on 10.77.0.1 (this machine, seen from the test hosts) that answers 200
/// and passes each POST body on.
fn push_endpoint() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("10.77.0.1:0").expect("bind on the test network");
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (url, rx)
}
