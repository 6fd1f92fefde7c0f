//! Taking over a relay that upstream's cmdeploy set up: its Python virtualenv, sdist, units
//! and leftover mtail unit go, accounts and mail stay, `status` is green, and a second run
//! changes nothing.
//!
//! The host is prepared from upstream's file layout (shared/reference/deploy.md §4.10, §4.17):
//! the venv with the service entry points (stand-ins that stay running, as upstream's Python
//! services do), the sdist in `dist/`, the three dict units running from the venv, a disabled
//! `mtail.service` with its binary and program (what cmdeploy leaves when `mtail_address` is
//! unset), `/etc/chatmail-version`, and an account with mail in upstream's mailbox layout.

mod common;

use std::process::Command;

use common::relay::{Relay, deploy_tool};
use common::{enabled, known_hosts, run};

const DOMAIN: &str = "_relay-take.test";
const USER: &str = "upstream1@_relay-take.test";
const PASSWORD: &str = "an-upstream-password";
const CMLIB: &str = "/usr/local/lib/chatmaild";

fn sha512_crypt(password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "takeoversalt", password])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// What cmdeploy 1.12 leaves on a relay whose ini sets no mtail_address.
fn prepare_like_cmdeploy(relay: &Relay) {
    let h = &relay.host;
    let mbox = format!("/home/vmail/mail/{DOMAIN}/{USER}");
    let unit = |name: &str| {
        format!(
            "[Unit]\nDescription=Chatmail dict authentication proxy for dovecot\n\n[Service]\n\
             ExecStart={CMLIB}/venv/bin/{name} /run/{name}/{name}.socket {CMLIB}/chatmail.ini\n\
             Restart=always\nRestartSec=30\nUser=vmail\nRuntimeDirectory={name}\n\n\
             [Install]\nWantedBy=multi-user.target\n"
        )
    };
    let mut script = format!(
        "set -e\n\
         useradd --system --user-group --home-dir /home/vmail --shell /usr/sbin/nologin vmail\n\
         mkdir -p {CMLIB}/venv/bin {CMLIB}/venv/lib/python3.11/site-packages/chatmaild {CMLIB}/dist\n\
         head -c 200000 /dev/urandom > {CMLIB}/venv/lib/python3.11/site-packages/chatmaild/__init__.py\n\
         head -c 100000 /dev/urandom > {CMLIB}/dist/chatmaild-1.12.0.tar.gz\n\
         for b in doveauth chatmail-metadata lastlogin chatmail-expire chatmail-fsreport filtermail; do\n\
           printf '#!/bin/sh\\nexec sleep infinity\\n' > {CMLIB}/venv/bin/$b; chmod 755 {CMLIB}/venv/bin/$b\n\
         done\n\
         cp /dev/stdin {CMLIB}/chatmail.ini <<'EOF'\n{ini}EOF\n\
         printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/mtail; chmod 755 /usr/local/bin/mtail\n\
         mkdir -p /etc/mtail; echo 'counter delivered_mail' > /etc/mtail/delivered_mail.mtail\n\
         printf '[Unit]\\nDescription=mtail\\n[Service]\\nExecStart=/usr/local/bin/mtail\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/mtail.service\n\
         printf '0123456789abcdef0123456789abcdef01234567\\ndiff --git a/x b/x\\n' > /etc/chatmail-version\n\
         mkdir -p {mbox}/cur {mbox}/new {mbox}/tmp\n\
         printf '%s' '{{SHA512-CRYPT}}{hash}' > {mbox}/password\n\
         printf 'From: {USER}\\r\\nTo: {USER}\\r\\nSubject: kept across the takeover\\r\\n\\r\\nbody\\r\\n' > {mbox}/cur/1700000000.M1P1.upstream:2,S\n\
         touch {mbox}/enforceE2EEincoming\n\
         chown -R vmail:vmail /home/vmail; chmod 700 /home/vmail/mail/{DOMAIN}\n",
        ini = std::fs::read_to_string(&relay.ini).unwrap(),
        hash = sha512_crypt(PASSWORD),
    );
    for name in ["doveauth", "chatmail-metadata", "lastlogin"] {
        script.push_str(&format!(
            "cat > /etc/systemd/system/{name}.service <<'EOF'\n{}EOF\n",
            unit(name)
        ));
    }
    script.push_str(
        "systemctl daemon-reload\n\
         systemctl enable --now doveauth.service chatmail-metadata.service lastlogin.service\n\
         systemctl disable mtail.service\n",
    );
    h.sh(&script);
    assert_eq!(
        h.sh("systemctl is-active doveauth.service; systemctl is-enabled mtail.service || true"),
        "active\ndisabled\n",
        "the host looks like a cmdeploy relay"
    );
}

fn fetch_first_message(addr: &str) -> std::process::Output {
    Command::new("curl")
        .args(["-sk", "--max-time", "20", "--user"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("imaps://{addr}/INBOX;UID=1"))
        .output()
        .unwrap()
}

#[test]
fn a_cmdeploy_relay_is_taken_over_keeping_accounts_and_mail() {
    if !enabled("takeover") {
        return;
    }
    let relay = Relay::new("relay-take", DOMAIN);
    prepare_like_cmdeploy(&relay);
    let h = &relay.host;
    let password_before = h.sh(&format!(
        "sha256sum /home/vmail/mail/{DOMAIN}/{USER}/password"
    ));

    // the dry run names every leftover it removes, and changes nothing
    let before = h.fingerprint();
    let dry = relay.deploy(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for line in [
        "~ directory /usr/local/lib/chatmaild/venv: remove with everything in it",
        "~ directory /usr/local/lib/chatmaild/dist: remove with everything in it",
        "~ file /etc/systemd/system/mtail.service: remove",
        "~ file /usr/local/bin/mtail: remove",
        "~ directory /etc/mtail: remove with everything in it",
    ] {
        assert!(
            dry.stdout.contains(line),
            "dry run lacks {line:?}:\n{}",
            dry.stdout
        );
    }
    assert!(
        !dry.stdout
            .contains("/home/vmail/mail/_relay-take.test/upstream1"),
        "the dry run touches no mailbox: {}",
        dry.stdout
    );
    assert_eq!(h.fingerprint(), before, "the dry run changed the host");

    let first = relay.deploy(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        h.sh(&format!(
            "ls -d {CMLIB}/venv {CMLIB}/dist /etc/systemd/system/mtail.service /usr/local/bin/mtail /etc/mtail 2>/dev/null; true"
        )),
        "",
        "cmdeploy's leftovers are gone"
    );
    assert!(
        h.sh("systemctl show -p ExecStart doveauth.service")
            .contains("/usr/local/bin/doveauth"),
        "doveauth runs our binary"
    );
    assert_eq!(
        h.sh(&format!(
            "sha256sum /home/vmail/mail/{DOMAIN}/{USER}/password"
        )),
        password_before,
        "the account's password file is untouched"
    );
    assert_eq!(h.sh("cat /etc/chatmail-version").lines().count(), 1);

    // status is green: no dead mtail unit, every relay unit active
    let kh = known_hosts();
    let status = run(
        &deploy_tool(),
        &[
            "status",
            "--ssh-host",
            &h.addr,
            "--known-hosts",
            &kh,
            "--config",
            relay.ini.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert!(!status.stdout.contains("mtail"), "{}", status.stdout);

    // the upstream account logs in with its password and its mail is there
    let mail = fetch_first_message(&h.addr);
    assert!(
        String::from_utf8_lossy(&mail.stdout).contains("Subject: kept across the takeover"),
        "curl exit {:?}: {}",
        mail.status.code(),
        String::from_utf8_lossy(&mail.stderr)
    );

    let second = relay.deploy(&[]);
    assert!(
        second.last_line().starts_with("summary: 0 changed, "),
        "{}",
        second.stdout
    );
}
