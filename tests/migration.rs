//! Moving a relay to a new host: `--disable-mail` on the old one, copy mailboxes, DKIM keys
//! and the certificate, deploy the new one. No message and no account is lost.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{TestHost, enabled, known_hosts, run};

const DOMAIN: &str = "_relay-mig.test";
const USER: &str = "migrated1@_relay-mig.test";
const PASSWORD: &str = "migration-password";

fn imap(addr: &str, args: &[&str]) -> std::process::Output {
    imap_url(&format!("imaps://{addr}/INBOX"), args)
}

fn imap_url(url: &str, args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "20",
            "--user",
            &format!("{USER}:{PASSWORD}"),
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

/// Streams `paths` from one host to the other with tar over ssh, owners and modes kept.
fn copy(from: &TestHost, to: &TestHost, paths: &str) {
    let kh = known_hosts();
    let ssh = |h: &TestHost, cmd: &str| {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o"])
            .arg(format!("UserKnownHostsFile={kh}"))
            .arg(format!("root@{}", h.addr))
            .arg(cmd)
            .envs(common::ssh_env());
        c
    };
    let mut src = ssh(from, &format!("tar -C / -cpf - {paths}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ok = ssh(to, "tar -C / -xpf -")
        .stdin(src.stdout.take().unwrap())
        .status()
        .unwrap()
        .success();
    assert!(
        ok && src.wait().unwrap().success(),
        "copying {paths} failed"
    );
}

#[test]
fn migration_to_a_new_host_keeps_mail_accounts_and_keys() {
    if !enabled("migration") {
        return;
    }
    let bins = common::relay::bin_dir();
    let tool = PathBuf::from(env!("CARGO_BIN_EXE_chatmail-deploy"));
    let old = TestHost::up("relay-mig-old");
    let new = TestHost::up("relay-mig-new");
    let dir = std::env::temp_dir().join(format!("mig-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("chatmail.ini");
    common::test_ini(&tool, &ini, DOMAIN);
    let kh = known_hosts();
    let deploy = |host: &TestHost, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--ssh-host",
            &host.addr,
            "--known-hosts",
            &kh,
            "--config",
            ini.to_str().unwrap(),
            "--bin-dir",
            bins.to_str().unwrap(),
            "--skip",
            "turn,iroh-relay",
        ];
        args.extend_from_slice(extra);
        run(&tool, &args, &[])
    };
    assert_eq!(deploy(&old, &[]).code, 0);

    // an account with mail on the old host
    let msg = dir.join("msg.eml");
    std::fs::write(
        &msg,
        "From: someone@_relay-mig.test\r\nSubject: [...]\r\n\r\nkept across the move\r\n",
    )
    .unwrap();
    assert!(
        imap(&old.addr, &["-T", msg.to_str().unwrap()])
            .status
            .success(),
        "IMAP APPEND"
    );
    let dkim_before = old.sh("sha256sum /etc/dkimkeys/opendkim.private");
    let cert_before = old.sh("sha256sum /etc/ssl/certs/mailserver.pem");

    // 1. stop mail on the old host; 2. copy state; 3. deploy the new host
    assert_eq!(deploy(&old, &["--disable-mail"]).code, 0);
    assert!(
        !imap(&old.addr, &["-X", "EXAMINE INBOX"]).status.success(),
        "old host still serves mail"
    );
    copy(
        &old,
        &new,
        "home/vmail/mail etc/dkimkeys etc/ssl/certs/mailserver.pem etc/ssl/private/mailserver.key",
    );
    let moved = deploy(&new, &[]);
    assert_eq!(moved.code, 0, "{}", moved.stderr);
    assert!(
        !moved.stdout.contains("DKIM key for"),
        "the copied DKIM key is kept, not regenerated"
    );
    assert!(
        !moved.stdout.contains("self-signed certificate for"),
        "the copied certificate is kept"
    );
    assert_eq!(
        new.sh("sha256sum /etc/dkimkeys/opendkim.private"),
        dkim_before
    );
    assert_eq!(
        new.sh("sha256sum /etc/ssl/certs/mailserver.pem"),
        cert_before
    );

    // the account logs in on the new host with its old password and reads the old mail
    let fetched = imap_url(&format!("imaps://{}/INBOX;MAILINDEX=1", new.addr), &[]);
    let body = String::from_utf8_lossy(&fetched.stdout);
    assert!(fetched.status.success(), "login on the new host failed");
    assert!(body.contains("kept across the move"), "{body}");
    assert!(
        !imap(
            &new.addr,
            &[
                "-X",
                "EXAMINE INBOX",
                "--user",
                &format!("{USER}:wrong-password")
            ]
        )
        .status
        .success()
    );
}
