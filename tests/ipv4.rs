//! A relay without DNS: chatmail.ini names the host's IPv4 address, addresses are
//! `user@[a.b.c.d]`, the certificate is self-signed and nothing is DKIM-signed.

mod common;

use common::relay::{Relay, deploy_tool};
use common::{TestHost, enabled};

/// The units an IPv4 relay runs (no OpenDKIM: nothing to publish a key in).
const UNITS: &[&str] = &[
    "unbound.service",
    "doveauth.service",
    "chatmail-metadata.service",
    "lastlogin.service",
    "filtermail.service",
    "filtermail-incoming.service",
    "filtermail-transport.service",
    "dovecot.service",
    "postfix.service",
    "fcgiwrap.socket",
    "nginx.service",
];

#[test]
fn ipv4_relay_deploys_converges_and_passes_the_test_command() {
    if !enabled("ipv4_relay") {
        return;
    }
    let host = TestHost::up("relay-v4");
    let ip = host.addr.clone();
    let relay = Relay::on_host(host, &ip);
    let first = relay.deploy(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let h = &relay.host;
    assert_eq!(h.sh("systemctl --failed --no-legend --plain"), "");
    for unit in UNITS {
        assert_eq!(
            h.sh(&format!("systemctl is-active {unit}")).trim(),
            "active",
            "{unit}"
        );
    }
    assert_eq!(
        h.sh("systemctl is-active opendkim.service || true").trim(),
        "inactive"
    );
    assert_eq!(h.sh("cat /etc/mailname").trim(), format!("[{ip}]"));

    // the whole client-side check, over the address alone (no DNS involved)
    let out = std::process::Command::new(deploy_tool())
        .args([
            "test",
            "--insecure",
            "--config",
            relay.ini.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("  ok   encrypted message delivered and decrypted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  ok   cleartext message refused: 523 "),
        "{stdout}"
    );
    let account = h.sh("ls /home/vmail/mail/ | head -1");
    assert_eq!(
        account.trim(),
        ip,
        "mailboxes under the bare address, as upstream"
    );

    let second = relay.deploy(&[]);
    assert!(
        second.last_line().starts_with("summary: 0 changed, "),
        "{}",
        second.stdout
    );
}
