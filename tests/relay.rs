//! The whole relay deployed to real Debian 12 test hosts.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::relay::{Relay, UNITS, chat_client, chat_client_with_push, deploy_tool, push_endpoint};
use common::{enabled, known_hosts, run};

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
                "the host runs Debian GNU/Linux {version} (VERSION_ID=\"{version}\"): relays are deployed on Debian 12, 13 only"
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

    // pre-flight: a program squatting on 443 is named before any change, in a container too
    // the socket must be kept in a variable: a discarded IO::Socket is closed at once
    h.sh("systemd-run --unit squatter perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 443, Listen => 5, ReuseAddr => 1) or die; sleep 3600'");
    // listening on 443 (01BB, state 0A) before the deploy starts
    h.sh("for i in $(seq 50); do grep -q ':01BB [0-9A-F:]* 0A' /proc/net/tcp /proc/net/tcp6 && exit 0; sleep 0.1; done; exit 1");
    let pid = h.sh("systemctl show -p MainPID --value squatter.service");
    let before = h.fingerprint();
    let squatted = relay.deploy(&[]);
    assert_eq!(squatted.code, 1, "{}", squatted.stderr);
    assert_eq!(
        squatted.one_error_line(),
        format!(
            "error: port 443 is held by perl (pid {}); the relay needs it for nginx: stop perl or move it to another port",
            pid.trim()
        )
    );
    assert_eq!(h.fingerprint(), before, "a squatter: the host changed");
    h.sh("systemctl stop squatter.service");

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

    chat_client_with_push(&relay, "_relay-e2e.test", &pushes, "test-device-token-42");
}

#[test]
/// Across releases too: the Debian 12 relay and the Debian 13 one sign and verify each other's
/// mail.
fn a_bookworm_and_a_trixie_relay_exchange_encrypted_messages_signed_and_verified_both_ways() {
    if !enabled("two_relays") {
        return;
    }
    let a = Relay::new("relay-xa", "_relay-xa.test");
    let b = Relay::new_trixie("relay-xb", "_relay-xb.test");
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

    let results = chat_client(
        &[
            "_relay-xa.test",
            &a.host.addr,
            "_relay-xb.test",
            &b.host.addr,
        ],
        &[&a, &b],
    );
    assert_eq!(results["encrypted_both_ways"], true);
    assert!(
        results["bob"]
            .as_str()
            .unwrap()
            .ends_with("@_relay-xb.test")
    );
    // each way the mail crossed signed by the sender's relay and the receiving filter checked
    // the signature
    for (relay, domain) in [(&a, "_relay-xa.test"), (&b, "_relay-xb.test")] {
        let journal = relay
            .host
            .sh("journalctl -u filtermail-incoming.service --no-pager -o cat");
        assert!(
            !journal.contains("No valid DKIM signature"),
            "{domain}: {journal}"
        );
        // the mail got through (encrypted both ways above) and filtermail refuses mail
        // without a valid DKIM signature (554 5.7.1) unless told to skip the check
        let env = relay
            .host
            .sh("systemctl show -p Environment filtermail-incoming.service");
        assert!(!env.contains("SKIP_DKIM"), "{domain}: {env}");
        let stored = relay.host.sh(&format!("cat /home/vmail/mail/{domain}/*/cur/* /home/vmail/mail/{domain}/*/new/* 2>/dev/null | zcat -f | grep -ci '^DKIM-Signature' || true"));
        assert_eq!(
            stored.trim(),
            "0",
            "{domain}: DKIM-Signature is stripped before storing"
        );
    }
}
