//! Restarts under load: a stream of encrypted messages through submission while a deploy
//! restarts filtermail (and Postfix), on a real relay. Every message the client got a 250
//! for must be stored exactly once, and a filtermail restart must refuse nothing.
//!
//! Needs CHATMAIL_TESTHOSTS=1 (root). Size: CHATMAIL_RESTART_MESSAGES (default 1000) per
//! phase. CHATMAIL_RESTART_BINS=DIR deploys the relay binaries from DIR instead of this
//! build's (to measure another version, e.g. the code before graceful restarts).

mod common;
mod restarts {
    pub mod stream;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chatmail_deploy::probe::account::{Account, Rules};
use chatmail_deploy::probe::tls::Connector;
use common::relay::Relay;
use common::{Run, enabled};
use restarts::stream::{Stream, Tally, User};

const DOMAIN: &str = "_gr-a.test";
/// Concurrent submission clients.
const CLIENTS: usize = 8;

fn messages() -> usize {
    std::env::var("CHATMAIL_RESTART_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Replace `key = ...` in the relay's ini (appending it if absent).
fn set_ini(relay: &Relay, key: &str, value: &str) {
    let text = std::fs::read_to_string(&relay.ini).unwrap();
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.split('=').next().map(str::trim) != Some(key))
        .map(str::to_owned)
        .collect();
    out.push(format!("{key} = {value}"));
    std::fs::write(&relay.ini, out.join("\n") + "\n").unwrap();
}

/// Stream at least `min` messages; once 100 went out, run `during` (a deploy, blocking);
/// keep streaming 3 s after it returned. Returns the records and what `during` returned.
fn stream_while<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    relay: &Relay,
    users: &Arc<Vec<User>>,
    min: usize,
    during: impl FnOnce() -> T + Send + 'static,
) -> (Vec<(String, restarts::stream::Outcome)>, T, Duration) {
    let stream = Stream::new();
    let connector = Connector::new(true, Duration::from_secs(20)).unwrap();
    let started = Instant::now();
    let task = rt.spawn({
        let (stop, sent) = (stream.stop.clone(), stream.sent.clone());
        let s = Stream { stop, sent };
        let (addr, users) = (relay.host.addr.clone(), users.clone());
        async move { restarts::stream::run(&s, connector, addr, users, min).await }
    });
    while stream.sent.load(Ordering::SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = during();
    std::thread::sleep(Duration::from_secs(3));
    stream.stop.store(true, Ordering::SeqCst);
    let records = rt.block_on(task).unwrap();
    (records, result, started.elapsed())
}

/// Wait until Postfix's queue is empty, then count each Message-ID in the maildirs.
fn stored_ids(relay: &Relay) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let queued = relay.host.sh("postqueue -j | wc -l");
        if queued.trim() == "0" {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "the queue did not drain: {queued}{}",
                relay.host.sh("postqueue -p | tail -20")
            );
        }
        // mail deferred while Dovecot restarted waits minutes for its retry otherwise
        relay.host.sh("postqueue -f");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Dovecot stores gzip (zlib_save): zgrep reads both.
    let out = relay.host.sh(&format!(
        "find /home/vmail/mail/{DOMAIN} -type f \\( -path '*/cur/*' -o -path '*/new/*' \\) -print0 \
         | xargs -0 -r zgrep -h -i -m1 -o '^Message-ID: *<[^>]*>' || true"
    ));
    let mut counts = BTreeMap::new();
    for line in out.lines() {
        let id = line["message-id:".len()..].trim().to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

fn users(rt: &tokio::runtime::Runtime, relay: &Relay) -> Arc<Vec<User>> {
    let config = chatmaild::config::Config::load(&relay.ini).unwrap();
    let rules = Rules::from_config(&config);
    let connector = Connector::new(true, Duration::from_secs(20)).unwrap();
    let addr = relay.host.addr.clone();
    Arc::new(rt.block_on(async {
        let mut users = Vec::new();
        for _ in 0..CLIENTS {
            users.push(User::create(&connector, &addr, Account::fresh(&rules)).await);
        }
        users
    }))
}

fn restarted(run: &Run, unit: &str) -> bool {
    run.stdout.contains(&format!("service {unit}: restart"))
}

/// Runs `deploy` with `key = value` while the stream runs; prints and returns the tally.
fn phase(
    rt: &tokio::runtime::Runtime,
    relay: &Arc<Relay>,
    users: &Arc<Vec<User>>,
    name: &str,
    key: &str,
    value: &str,
    before_deploy: impl FnOnce(&Relay) + Send + 'static,
) -> (Tally, Run) {
    set_ini(relay, key, value);
    let r = relay.clone();
    let (records, run, took) = stream_while(rt, relay, users, messages(), move || {
        before_deploy(&r);
        r.deploy(&[])
    });
    assert_eq!(run.code, 0, "the deploy during the stream failed");
    let tally = Tally::new(&records, &stored_ids(relay));
    println!(
        "{name}: {tally} ({:.0} msg/s over {:.1} s)",
        records.len() as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
    (tally, run)
}

#[test]
fn restarts_under_load_lose_refuse_and_duplicate_nothing() {
    if !enabled("restarts_under_load") {
        return;
    }
    let mut relay = Relay::new("gr-a", DOMAIN);
    if let Some(dir) = std::env::var_os("CHATMAIL_RESTART_BINS") {
        relay.bins = dir.into();
    }
    let relay = Arc::new(relay);
    // the stream is far faster than a person sends
    set_ini(&relay, "max_user_send_per_minute", "1000000");
    set_ini(&relay, "max_user_send_burst_size", "1000000");
    assert_eq!(relay.deploy(&[]).code, 0);
    let rt = runtime();
    let users = users(&rt, &relay);

    // filtermail alone: only filtermail reads the send rate (and the dict services,
    // which the stream does not need once logged in)
    let (alone, run) = phase(
        &rt,
        &relay,
        &users,
        "filtermail restart",
        "max_user_send_per_minute",
        "1000001",
        |_| {},
    );
    assert!(restarted(&run, "filtermail.service"), "{}", run.stdout);
    assert!(!restarted(&run, "postfix.service"), "{}", run.stdout);

    // Postfix too (main.cf's message_size_limit, so Dovecot and filtermail as well):
    // connections Postfix drops are allowed, a 250 that is not stored is not. Postfix's
    // stop kills LMTP clients that Dovecot already answered, and the queue delivers those
    // again: duplicates here are Postfix's at-least-once delivery, counted, not asserted.
    let (both, run) = phase(
        &rt,
        &relay,
        &users,
        "filtermail + postfix restart",
        "max_message_size",
        "31457281",
        |_| {},
    );
    assert!(restarted(&run, "filtermail.service"), "{}", run.stdout);
    assert!(restarted(&run, "postfix.service"), "{}", run.stdout);

    // Postfix reloaded (what a config change needs) while filtermail restarts: nothing
    // refused, lost or duplicated
    let (reload, run) = phase(
        &rt,
        &relay,
        &users,
        "filtermail restart + postfix reload",
        "max_user_send_per_minute",
        "1000002",
        |relay| {
            relay.host.sh("systemctl reload postfix");
        },
    );
    assert!(restarted(&run, "filtermail.service"), "{}", run.stdout);

    let (logged_in, failed) = logins_while_dict_services_restart(&rt, &relay);

    let t = alone;
    assert_eq!(t.lost, 0, "{t}");
    assert_eq!(t.duplicated, 0, "{t}");
    assert_eq!(t.refused_total(), 0, "{t}");
    assert_eq!(t.dropped, 0, "{t}");
    assert_eq!(t.stored_unaccepted, 0, "{t}");
    assert_eq!(both.lost, 0, "{both}");
    let t = reload;
    assert_eq!(t.lost, 0, "{t}");
    assert_eq!(t.duplicated, 0, "{t}");
    assert_eq!(t.refused_total(), 0, "{t}");
    assert_eq!(t.dropped, 0, "{t}");
    assert!(logged_in > 0);
    assert_eq!(failed, 0, "logins failed while the dict services restarted");
}

/// Fresh-account logins while doveauth, chatmail-metadata and lastlogin restart; prints
/// and returns (logged in, failed).
fn logins_while_dict_services_restart(
    rt: &tokio::runtime::Runtime,
    relay: &Relay,
) -> (usize, usize) {
    let config = chatmaild::config::Config::load(&relay.ini).unwrap();
    let stream = Stream::new();
    let connector = Connector::new(true, Duration::from_secs(20)).unwrap();
    let task = rt.spawn({
        let s = Stream {
            stop: stream.stop.clone(),
            sent: stream.sent.clone(),
        };
        let addr = relay.host.addr.clone();
        async move {
            restarts::stream::logins(&s, connector, addr, Rules::from_config(&config), 4).await
        }
    });
    while stream.sent.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    relay
        .host
        .sh("systemctl restart doveauth.service chatmail-metadata.service lastlogin.service");
    let after = stream.sent.load(Ordering::SeqCst);
    while stream.sent.load(Ordering::SeqCst) < after + 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stream.stop.store(true, Ordering::SeqCst);
    let (ok, failed) = rt.block_on(task).unwrap();
    println!("dict services restart: {ok} logins, {failed} failed");
    (ok, failed)
}
/// The three filtermail units of a relay, and their sockets.
const FILTERMAIL: &[&str] = &[
    "filtermail.service",
    "filtermail-incoming.service",
    "filtermail-transport.service",
];

#[test]
fn a_relay_without_socket_units_converges_in_one_run() {
    if !enabled("restarts_migration") {
        return;
    }
    let relay = Relay::new("gr-m", "_gr-m.test");
    assert_eq!(relay.deploy(&[]).code, 0);
    let sockets: Vec<String> = FILTERMAIL
        .iter()
        .map(|u| u.replace(".service", ".socket"))
        .collect();
    // back to the layout of the code before socket units: the services bind the ports
    relay.host.sh(&format!(
        "set -e; systemctl stop {s}; systemctl disable --quiet {s}; \
         for u in {s}; do rm /etc/systemd/system/$u; done; \
         systemctl daemon-reload; systemctl start {services}",
        s = sockets.join(" "),
        services = FILTERMAIL.join(" "),
    ));
    let held = relay.host.sh("ss -Hltnp 'sport = :10080'");
    assert!(
        held.contains("filtermail") && !held.contains("systemd"),
        "{held}"
    );
    let since = relay.host.sh("date +%s").trim().to_string();

    let run = relay.deploy(&[]);
    assert_eq!(run.code, 0, "the switch to socket units failed");
    // one restart each: the socket's, which restarts the service after it
    for unit in FILTERMAIL {
        let socket = unit.replace(".service", ".socket");
        assert!(restarted(&run, &socket), "{}", run.stdout);
        assert!(!restarted(&run, unit), "{}", run.stdout);
    }
    for unit in FILTERMAIL
        .iter()
        .map(|u| u.to_string())
        .chain(sockets.clone())
    {
        assert_eq!(
            relay
                .host
                .try_sh(&format!("systemctl is-active --quiet {unit}"))
                .status
                .code(),
            Some(0),
            "{unit} is not active after the switch"
        );
    }
    // the filtermails now serve the sockets systemd holds
    let passed = relay.host.sh(&format!(
        "journalctl --since @{since} -u filtermail -u filtermail-incoming -u filtermail-transport \
         --no-pager -o cat | grep -c 'socket passed by systemd' || true"
    ));
    assert_eq!(
        passed.trim(),
        "4",
        "outgoing, incoming SMTP+HTTP, transport"
    );
    let held = relay.host.sh("ss -Hltnp 'sport = :10080'");
    assert!(
        held.contains("systemd") && held.contains("filtermail"),
        "{held}"
    );

    let again = relay.deploy(&[]);
    assert!(
        again.last_line().starts_with("summary: 0 changed, "),
        "{}",
        again.stdout
    );
}
