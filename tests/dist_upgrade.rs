//! A Debian 12 relay whose host is dist-upgraded to Debian 13: the next `run` moves it from
//! chatmail's Dovecot 2.3 to Debian's 2.4 without losing an account or a message.
//!
//! The relay (chatmail's Dovecot build, as relay tests deploy by default) gets two accounts,
//! one made by its first login and one by /new, and mail between them through the relay.
//! Its host then follows the release notes (sources to trixie, `apt-get upgrade
//! --without-new-pkgs`, `apt-get full-upgrade`), and `run` must converge at once; the old
//! accounts log in with their old passwords, the old mail reads back byte for byte, new
//! mail flows, and after a reboot a second run changes nothing.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chatmail_deploy::probe::account::{Account, Rules};
use chatmail_deploy::probe::imap::Imap;
use chatmail_deploy::probe::openpgp::{Key, decrypt_message, encrypted_message};
use chatmail_deploy::probe::smtp::{Sent, Smtp};
use chatmail_deploy::probe::tls::{Connector, TlsStream};
use common::relay::Relay;
use common::{dns_set, enabled};

const NAME: &str = "upg-relay";
const DOMAIN: &str = "_upg-relay.test";

/// A relay account with the key its client would have.
struct Person {
    account: Account,
    key: Key,
}

fn connector() -> Connector {
    Connector::new(true, Duration::from_secs(30)).unwrap()
}

async fn imap_session(addr: &str, who: &Person) -> Imap<TlsStream> {
    let mut imap = Imap::connect_tls(&connector(), addr, 993).await.unwrap();
    let r = imap
        .login(&who.account.address, &who.account.password)
        .await
        .unwrap();
    assert!(
        r.is_ok(),
        "IMAP login of {}: {}",
        who.account.address,
        r.summary()
    );
    imap
}

/// The INBOX as the account reads it: its UIDVALIDITY and every (uid, message), once it holds
/// at least `count` messages.
async fn inbox(addr: &str, who: &Person, count: u32) -> (String, Vec<(u32, Vec<u8>)>) {
    let mut imap = imap_session(addr, who).await;
    let status = imap.command("STATUS INBOX (UIDVALIDITY)").await.unwrap();
    assert!(status.is_ok(), "STATUS: {}", status.summary());
    let validity = status
        .untagged
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .find(|l| l.contains("UIDVALIDITY"))
        .expect("STATUS names the UIDVALIDITY");
    imap.select("INBOX").await.unwrap();
    let seen = imap
        .idle_until(count, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        seen >= count,
        "{}: {seen} of {count} messages",
        who.account.address
    );
    let bodies = imap.uid_fetch_bodies("1:*").await.unwrap();
    imap.logout().await;
    (validity, bodies)
}

/// An encrypted message from `from` to `to`, submitted on 587.
async fn send(addr: &str, from: &Person, to: &Person, text: &str) {
    let message = encrypted_message(
        &from.key,
        &[(to.account.address.as_str(), to.key.public())],
        "dist-upgrade",
        text,
    )
    .unwrap();
    let mut smtp = Smtp::connect_starttls(&connector(), addr, 587)
        .await
        .unwrap();
    let auth = smtp
        .auth_plain(&from.account.address, &from.account.password)
        .await
        .unwrap();
    assert_eq!(auth.code, 235, "AUTH: {auth}");
    let sent = smtp
        .send_mail(&from.account.address, &[&to.account.address], &message)
        .await
        .unwrap();
    assert!(
        matches!(sent, Sent::Accepted(_)),
        "{} -> {}: {}",
        from.account.address,
        to.account.address,
        sent.reply()
    );
    smtp.quit().await;
}

/// The texts of the messages in `bodies`, decrypted with `who`'s key, sorted.
fn texts(bodies: &[(u32, Vec<u8>)], who: &Person) -> Vec<String> {
    let mut texts: Vec<String> = bodies
        .iter()
        .map(|(_, raw)| String::from_utf8(decrypt_message(raw, &who.key).unwrap()).unwrap())
        .filter_map(|inner| {
            inner
                .split("\r\n\r\n")
                .nth(1)
                .map(|t| t.trim_end().to_string())
        })
        .collect();
    texts.sort();
    texts
}

/// An account made by its first IMAP login.
async fn by_first_login(addr: &str, rules: &Rules) -> Person {
    let account = Account::fresh(rules);
    let person = Person {
        key: Key::generate(&account.address).unwrap(),
        account,
    };
    imap_session(addr, &person).await.logout().await;
    person
}

/// An account from the web page's /new (what the QR code in the app asks).
async fn by_new(addr: &str) -> Person {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let new: serde_json::Value = client
        .post(format!("https://{addr}/new"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("/new answers JSON");
    let account = Account {
        address: new["email"].as_str().unwrap().to_string(),
        password: new["password"].as_str().unwrap().to_string(),
    };
    let person = Person {
        key: Key::generate(&account.address).unwrap(),
        account,
    };
    // the account exists from its first login, which the app does right after /new
    imap_session(addr, &person).await.logout().await;
    person
}

/// inode and mtime of each account's directory, its `cur/` and its password file, and the
/// password file's hash: what a recreated maildir or account would change.
fn account_files(relay: &Relay, people: &[&Person]) -> String {
    let dirs: Vec<String> = people
        .iter()
        .map(|p| format!("/home/vmail/mail/{DOMAIN}/{}", p.account.address))
        .collect();
    let mut script = String::new();
    for d in &dirs {
        script.push_str(&format!(
            "stat -c '%n %i %Y' {d} {d}/cur {d}/password; sha256sum {d}/password; "
        ));
    }
    relay.host.sh(&script)
}

fn testhost(script: &str, args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testhost")
        .join(script);
    let ok = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "{} {args:?} failed", script.display());
}

#[test]
fn a_bookworm_relay_dist_upgraded_to_trixie_keeps_its_accounts_and_mail() {
    if !enabled("dist_upgrade") {
        return;
    }
    let started = Instant::now();
    let relay = Relay::new(NAME, DOMAIN);
    let addr = relay.host.addr.clone();
    dns_set(&[
        &format!("{DOMAIN}. 60 IN A {addr}"),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ini = std::fs::read_to_string(&relay.ini).unwrap();
    let rules = Rules::from_config(&chatmaild::Config::parse(&ini, "chatmail.ini").unwrap());

    // ---- Debian 12 with chatmail's Dovecot 2.3, two accounts and mail both ways
    let first = relay.deploy(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let dovecot = relay.host.sh("dpkg-query -W -f='${Version}' dovecot-core");
    assert!(dovecot.contains("chatmail"), "{dovecot}");
    let alice = rt.block_on(by_first_login(&addr, &rules));
    let bob = rt.block_on(by_new(&addr));
    rt.block_on(send(
        &addr,
        &alice,
        &bob,
        "before the upgrade: alice to bob",
    ));
    rt.block_on(send(
        &addr,
        &bob,
        &alice,
        "before the upgrade: bob to alice",
    ));
    rt.block_on(send(&addr, &alice, &bob, "before the upgrade: alice again"));
    let old_alice = rt.block_on(inbox(&addr, &alice, 1));
    let old_bob = rt.block_on(inbox(&addr, &bob, 2));
    assert_eq!(
        texts(&old_alice.1, &alice),
        ["before the upgrade: bob to alice"]
    );
    assert_eq!(
        texts(&old_bob.1, &bob),
        [
            "before the upgrade: alice again",
            "before the upgrade: alice to bob"
        ]
    );
    let files = account_files(&relay, &[&alice, &bob]);
    let on_12 = started.elapsed();

    // ---- the host follows the release notes to Debian 13 (no reboot yet)
    let t = Instant::now();
    testhost("dist-upgrade", &[NAME, "trixie"]);
    let upgrade = t.elapsed();
    assert_eq!(
        relay.host.sh(". /etc/os-release; echo $VERSION_ID").trim(),
        "13"
    );

    // ---- the same run, the same chatmail.ini: converges in one run
    let t = Instant::now();
    let converge = relay.deploy(&[]);
    let converge_time = t.elapsed();
    assert_eq!(converge.code, 0, "{}", converge.stderr);
    assert!(
        converge.last_line().starts_with("summary: "),
        "{}",
        converge.stdout
    );
    relay.assert_units_active("after the upgrade's run");
    let dovecot = relay.host.sh("dpkg-query -W -f='${Version}' dovecot-core");
    assert!(dovecot.starts_with("1:2.4."), "{dovecot}");
    // the maildirs and password files are the ones from before (nothing has logged in yet)
    assert_eq!(
        account_files(&relay, &[&alice, &bob]),
        files,
        "an account's files were recreated"
    );

    // ---- after a reboot, as the release notes say: everything comes back
    testhost("reboot", &[NAME]);
    relay.assert_units_active("after the reboot");

    // the old accounts log in with their old passwords and read their old mail as it was
    let new_alice = rt.block_on(inbox(&addr, &alice, 1));
    let new_bob = rt.block_on(inbox(&addr, &bob, 2));
    assert_eq!(new_alice, old_alice, "alice's INBOX changed");
    assert_eq!(new_bob, old_bob, "bob's INBOX changed");
    // and new mail between them is delivered on 13
    rt.block_on(send(&addr, &bob, &alice, "after the upgrade: bob to alice"));
    let (_, after) = rt.block_on(inbox(&addr, &alice, 2));
    assert_eq!(
        texts(&after, &alice),
        [
            "after the upgrade: bob to alice",
            "before the upgrade: bob to alice"
        ]
    );
    assert!(
        !relay
            .host
            .try_sh("journalctl -u dovecot -b -p err -o cat --no-pager | grep -q .")
            .status
            .success(),
        "{}",
        relay
            .host
            .sh("journalctl -u dovecot -b -p err -o cat --no-pager")
    );

    // every check of the operator's test command
    let (code, report) = relay.operator_test();
    assert_eq!(code, Some(0), "{report}");

    // idempotent on the upgraded host: nothing changes, nothing restarts
    relay.assert_rerun_changes_nothing();
    eprintln!(
        "dist-upgrade test: Debian 12 relay with accounts and mail {:.0} s, upgrade {:.0} s, \
         converging run {:.0} s ({}), total {:.0} s",
        on_12.as_secs_f64(),
        upgrade.as_secs_f64(),
        converge_time.as_secs_f64(),
        converge.last_line(),
        started.elapsed().as_secs_f64()
    );
}
