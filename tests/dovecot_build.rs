//! chatmail's Dovecot build installed through the deploy's real path (download, pin check,
//! dpkg -i, fix-broken, dpkg -i), Debian's build as the loud fallback while it cannot be
//! had, and no push lost around IMAP hibernation on either build.

mod common;

use std::time::Duration;

use chatmail_deploy::probe::account::{Account, Rules};
use chatmail_deploy::probe::imap::Imap;
use chatmail_deploy::probe::openpgp::{Key, encrypted_message};
use chatmail_deploy::probe::smtp::{Sent, Smtp};
use chatmail_deploy::probe::tls::Connector;
use common::relay::{Relay, chatmail_dovecot, deploy_tool};
use common::{enabled, known_hosts, run};
use tokio::time::Instant;

const FALLBACK_WARNING: &str = "warning: chatmail's Dovecot build 2.3.21+dfsg1-3 cannot be downloaded from https://download.delta.chat/dovecot or https://github.com/";

fn dpkg_version(relay: &Relay) -> String {
    relay
        .host
        .sh("dpkg-query -W -f='${Version}' dovecot-core")
        .trim()
        .to_string()
}

fn status(relay: &Relay) -> common::Run {
    let kh = known_hosts();
    run(
        &deploy_tool(),
        &[
            "status",
            "--ssh-host",
            &relay.host.addr,
            "--known-hosts",
            &kh,
            "--config",
            relay.ini.to_str().unwrap(),
        ],
        &[],
    )
}

/// The version in the pins file's names (`dovecot-core_<version>_amd64.deb`).
fn pinned_version(pins: &str) -> String {
    pins.lines()
        .find_map(|l| l.split_once("dovecot-core_")?.1.split('_').next())
        .expect("a dovecot-core line")
        .to_string()
}

#[test]
fn the_fallback_warns_until_the_served_build_installs_and_no_push_is_lost_on_either() {
    if !enabled("dovecot_build") {
        return;
    }
    let mut relay = Relay::new("relay-dovecot", "_dovecot.test");
    relay.upstream_dovecot = true;
    // the push test submits 16 messages within 1.5 s from one account
    relay.append_ini("max_user_send_burst_size = 100\n");

    // upstream's .debs are out of reach here: Debian's build, said loudly, no hibernation
    let first = relay.deploy(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains(
            "changed: dovecot: install Debian's Dovecot (chatmail's build cannot be downloaded)"
        ),
        "{}",
        first.stdout
    );
    assert!(first.stderr.contains(FALLBACK_WARNING), "{}", first.stderr);
    let debian = dpkg_version(&relay);
    assert!(debian.starts_with("1:2.3.19"), "{debian}");
    assert!(
        relay
            .host
            .sh("doveconf -h imap_hibernate_timeout")
            .trim()
            .eq("0"),
        "no hibernation with Debian's build"
    );
    let st = status(&relay);
    assert!(
        st.stdout.contains(&format!(
            "dovecot build: WARN Debian's {debian}, not chatmail's"
        )),
        "{}",
        st.stdout
    );
    // every run tries again, warns again, and changes nothing while it cannot download
    let again = relay.deploy(&[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.last_line().starts_with("summary: 0 changed"),
        "{}",
        again.stdout
    );
    assert!(again.stderr.contains(FALLBACK_WARNING), "{}", again.stderr);
    no_push_is_lost(&relay, "Debian's build");

    // the served set with one wrong pin: refused before dpkg sees it, Debian's keeps running
    let (url, pins_path) = chatmail_dovecot();
    let pins = std::fs::read_to_string(pins_path).unwrap();
    let version = pinned_version(&pins);
    let zeros = "0".repeat(64);
    let wrong: String = pins
        .lines()
        .map(|l| {
            if l.contains("dovecot-core_") && l.contains("_amd64.deb") {
                format!("{zeros}  {}\n", l.split_whitespace().last().unwrap())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let wrong_path = relay.ini.with_file_name("WRONG-SHA256SUMS");
    std::fs::write(&wrong_path, wrong).unwrap();
    let source = |pins: &str| -> Vec<String> {
        vec![
            "--dovecot-debs".into(),
            url.clone(),
            "--dovecot-pins".into(),
            pins.into(),
        ]
    };
    let args = source(wrong_path.to_str().unwrap());
    let refused = relay.deploy(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let line = refused.one_error_line();
    assert!(
        line.contains(&format!("dovecot-core_{version}_amd64.deb: sha256 is "))
            && line.contains(&format!(", expected {zeros}: not installed")),
        "{line}"
    );
    assert_eq!(dpkg_version(&relay), debian, "dpkg never saw the .deb");
    relay.host.sh("systemctl is-active dovecot.service");

    // the right pins: chatmail's build through the real path, hibernation back on
    let args = source(pins_path.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let installed = relay.deploy(&args);
    assert_eq!(installed.code, 0, "{}", installed.stderr);
    assert!(
        installed.stdout.contains(&format!(
            "changed: dovecot: install chatmail's build {version} from {}",
            url.trim_end_matches('/')
        )),
        "{}",
        installed.stdout
    );
    assert!(
        !installed.stderr.contains("warning:"),
        "{}",
        installed.stderr
    );
    assert_eq!(
        dpkg_version(&relay).split_once(':').map(|(_, v)| v),
        Some(version.as_str())
    );
    assert_eq!(
        relay.host.sh("doveconf -h imap_hibernate_timeout").trim(),
        "30 secs"
    );
    let st = status(&relay);
    assert!(
        st.stdout.contains("dovecot build: chatmail's 1:"),
        "{}",
        st.stdout
    );
    // a second run installs nothing and restarts nothing
    let units = ["dovecot.service", "postfix.service", "filtermail.service"];
    let pids = relay.main_pids(&units);
    let second = relay.deploy(&args);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.last_line().starts_with("summary: 0 changed"),
        "{}",
        second.stdout
    );
    assert_eq!(relay.main_pids(&units), pids, "nothing restarted");
    no_push_is_lost(&relay, "chatmail's build");
}

/// One client per offset enters IDLE; mail for it is submitted 29.0, 29.1 ... 30.5 s later,
/// around the moment (30 s) an idle connection hibernates. Every message must be reported
/// by IDLE within 1 s of its 250.
fn no_push_is_lost(relay: &Relay, build: &str) {
    let ini = std::fs::read_to_string(&relay.ini).unwrap();
    let rules = Rules::from_config(&chatmaild::Config::parse(&ini, "chatmail.ini").unwrap());
    let addr = relay.host.addr.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let results = runtime.block_on(async move {
        let connector = Connector::new(true, Duration::from_secs(20)).unwrap();
        let sender = Account::fresh(&rules);
        let mut smtp = Smtp::connect_tls(&connector, &addr, 465).await.unwrap();
        // the sender's account comes into being with its first login
        login(&connector, &addr, &sender).await;
        let r = smtp
            .auth_plain(&sender.address, &sender.password)
            .await
            .unwrap();
        assert_eq!(r.code, 235, "AUTH: {r}");
        let key = Key::generate(&sender.address).unwrap();

        let offsets: Vec<Duration> = (0..16)
            .map(|i| Duration::from_millis(29_000 + 100 * i))
            .collect();
        // each client waits in its own task, so the moment it hears of its mail is its own
        let mut waits = Vec::new();
        let mut idles = Vec::new();
        for _ in &offsets {
            let account = Account::fresh(&rules);
            let mut imap = login(&connector, &addr, &account).await;
            imap.select("INBOX").await.unwrap();
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            waits.push(tokio::spawn(async move {
                let idle = imap.idle_begin().await.unwrap();
                started_tx.send(Instant::now()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(40);
                let exists = imap.idle_end(idle, 1, deadline).await.unwrap();
                (exists >= 1).then(Instant::now)
            }));
            idles.push((account.address, started_rx));
        }
        let mut started = Vec::new();
        for (rcpt, rx) in idles {
            started.push((rcpt, rx.await.unwrap()));
        }
        // submit each message at its offset, in offset order, from one session
        let mut sent_at = Vec::new();
        for ((rcpt, started), offset) in started.iter().zip(&offsets) {
            tokio::time::sleep_until(*started + *offset).await;
            let message = encrypted_message(&key, &[(rcpt, key.public())], "push", "push").unwrap();
            let sent = smtp
                .send_mail(&sender.address, &[rcpt], &message)
                .await
                .unwrap();
            assert!(matches!(sent, Sent::Accepted(_)), "{rcpt}: {sent:?}");
            sent_at.push((Instant::now(), *started));
        }
        let mut results = Vec::new();
        for (wait, (sent, started)) in waits.into_iter().zip(sent_at) {
            let seen = wait.await.unwrap();
            results.push((
                sent - started,
                seen.map(|seen| seen.saturating_duration_since(sent)),
            ));
        }
        results
    });
    let mut late = Vec::new();
    for (offset, latency) in &results {
        let shown = latency.map_or("never".to_string(), |l| format!("{} ms", l.as_millis()));
        eprintln!(
            "{build}: mail {:.2} s after IDLE: reported after {shown}",
            offset.as_secs_f64()
        );
        if latency.is_none_or(|l| l > Duration::from_secs(1)) {
            late.push(format!("{:.2} s: {shown}", offset.as_secs_f64()));
        }
    }
    assert!(
        late.is_empty(),
        "{build}: pushes later than 1 s or lost: {late:?}"
    );
}

async fn login(
    connector: &Connector,
    addr: &str,
    account: &Account,
) -> Imap<chatmail_deploy::probe::tls::TlsStream> {
    let mut imap = Imap::connect_tls(connector, addr, 993).await.unwrap();
    let r = imap
        .login(&account.address, &account.password)
        .await
        .unwrap();
    assert!(r.is_ok(), "login: {}", r.summary());
    imap
}
