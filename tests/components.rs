//! The third-party components on a test host: iroh-relay behind nginx, mtail counting what
//! passes through the relay and, given a chatmail-turn binary, the TURN server handing out
//! credentials through METADATA. The pinned releases live on GitHub, which test hosts cannot
//! reach, so the deploy gets stand-ins with `--binary` (tests/testhost/third-party-binaries).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::relay::{Relay, deploy_tool};
use common::{dns_set, enabled};

const NAME: &str = "relay-comp";
const DOMAIN: &str = "_relay-comp.test";
/// Logs in first, which creates the account (9 characters, the default length).
const USER: &str = "comptest1@_relay-comp.test";
const PASSWORD: &str = "comp-test-password-1";

/// `NAME=PATH` of the stand-ins, built or extracted once into target/third-party.
fn third_party_binaries() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/testhost/third-party-binaries"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run third-party-binaries");
    assert!(out.status.success(), "third-party-binaries failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// curl from this machine; returns stdout whatever the exit status (a WebSocket upgrade only
/// ends by timing out).
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HTTPS to the relay's domain as a client resolves it; `-i` output.
fn https(addr: &str, path: &str, headers: &[&str], max_time: &str) -> String {
    let resolve = format!("{DOMAIN}:443:{addr}");
    let url = format!("https://{DOMAIN}{path}");
    let mut args = vec!["-i", "--resolve", &resolve, "--max-time", max_time];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    curl(&args)
}

/// The server attribute `name` as a logged-in chat client reads it (IMAP GETMETADATA): the
/// server's lines. curl prints an untagged answer only when it is named like the command,
/// and GETMETADATA's is METADATA, so they come from its transcript.
fn server_attribute(addr: &str, name: &str) -> String {
    let out = Command::new("curl")
        .args(["-v", "-sS", "-k", "--max-time", "20", "-u"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg("-X")
        .arg(format!("GETMETADATA \"\" /shared/vendor/deltachat/{name}"))
        .arg(format!("imaps://{addr}/"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("< "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// mtail's counters, name (without labels) to value.
fn counters(addr: &str) -> BTreeMap<String, f64> {
    curl(&[&format!("http://{addr}:3903/metrics")])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.split('{').next()?.to_string(), v.parse().ok()?)))
        .collect()
}

/// `chatmail-deploy test --insecure` through the test DNS: one encrypted message and the
/// refusals pass through the relay.
fn test_command(relay: &Relay) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(deploy_tool())
        .args([
            "test",
            "--insecure",
            "--config",
            relay.ini.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A STUN binding request to addr:3478 over UDP; true when a binding success comes back.
fn stun_answers(addr: &str) -> bool {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // RFC 5389: type Binding request, no attributes, magic cookie, 12-byte transaction id
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"comp-test-id");
    for _ in 0..3 {
        socket.send_to(&request, (addr, 3478)).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = socket.recv(&mut buf) {
            return n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == request[8..20];
        }
    }
    false
}

#[test]
fn iroh_relay_mtail_and_turn_run_and_answer() {
    if !enabled("components") {
        return;
    }
    let turn_bin = std::env::var("CHATMAIL_TURN_BIN").ok();
    if turn_bin.is_none() {
        eprintln!(
            "components: leaving out TURN: set CHATMAIL_TURN_BIN=PATH to a chatmail-turn v0.4 \
             binary (its source is on GitHub only, not reachable from CI)"
        );
    }
    let started = Instant::now();
    let bins = third_party_binaries();
    eprintln!(
        "components: third-party binaries ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let relay = Relay::new(NAME, DOMAIN);
    let addr = relay.host.addr.clone();
    relay.append_ini(&format!("mtail_address = {addr}\n"));
    dns_set(&[
        &format!("{DOMAIN}. 60 IN A {addr}"),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);
    let mut args: Vec<String> = ["iroh-relay", "mtail"]
        .iter()
        .map(|n| format!("--binary={n}={}", bins[*n]))
        .collect();
    if let Some(turn) = &turn_bin {
        args.push(format!("--binary=chatmail-turn={turn}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let skip = if turn_bin.is_some() { "" } else { "turn" };

    let started = Instant::now();
    let deploy = relay.deploy_skipping(skip, &args);
    eprintln!(
        "components: first deploy took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(deploy.code, 0, "{}", deploy.stderr);

    let mut units = vec!["iroh-relay.service", "mtail.service"];
    if turn_bin.is_some() {
        units.push("turnserver.service");
    }
    let active = relay
        .host
        .sh(&format!("systemctl is-active {} || true", units.join(" ")));
    assert_eq!(
        active.lines().collect::<Vec<_>>(),
        vec!["active"; units.len()],
        "{units:?}"
    );
    eprintln!(
        "components: {}",
        relay.host.sh("ss -tulpn | grep -E ':(3340|3478|3903) '")
    );

    // iroh-relay through nginx, on the paths iroh clients use; the challenge echo shows
    // iroh-relay itself answered, not nginx
    let probe = https(
        &addr,
        "/generate_204",
        &["X-Tailscale-Challenge: comptest"],
        "20",
    );
    assert!(probe.starts_with("HTTP/1.1 204"), "{probe}");
    assert!(
        probe
            .to_ascii_lowercase()
            .contains("x-tailscale-response: response comptest"),
        "{probe}"
    );
    let ping = https(&addr, "/ping", &[], "20");
    assert!(ping.starts_with("HTTP/1.1 200"), "{ping}");
    let upgrade = https(
        &addr,
        "/relay",
        &[
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
        "3",
    );
    assert!(
        upgrade.starts_with("HTTP/1.1 101"),
        "the relay path upgrades to a WebSocket: {upgrade}"
    );

    // clients learn the relay's URL from METADATA
    let iroh = server_attribute(&addr, "irohrelay");
    assert!(
        iroh.contains(&format!("https://{DOMAIN}")),
        "irohrelay: {iroh}"
    );

    // mtail counts mail from the journal
    let before = counters(&addr);
    assert_eq!(before.get("delivered_mail"), Some(&0.0), "{before:?}");
    let report = test_command(&relay);
    assert!(
        report.contains("  ok   encrypted message delivered and decrypted"),
        "{report}"
    );
    let mut after = counters(&addr);
    for _ in 0..20 {
        if after.get("outgoing_encrypted_mail_count") > before.get("outgoing_encrypted_mail_count")
            && after.get("delivered_mail") > before.get("delivered_mail")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        after = counters(&addr);
    }
    let interesting = [
        "delivered_mail",
        "created_accounts",
        "outgoing_encrypted_mail_count",
        "incoming_encrypted_mail_count",
        "rejected_unencrypted_mail_count",
        "dkim_signed",
    ];
    for name in interesting {
        eprintln!(
            "components: mtail {name}: {:?} -> {:?}",
            before.get(name),
            after.get(name)
        );
    }
    for name in [
        "delivered_mail",
        "created_accounts",
        "outgoing_encrypted_mail_count",
    ] {
        assert!(
            after.get(name).copied().unwrap_or(0.0) > before.get(name).copied().unwrap_or(0.0),
            "{name} did not increase: {before:?} -> {after:?}"
        );
    }

    if turn_bin.is_some() {
        let turn = server_attribute(&addr, "turn");
        let creds = turn
            .split(|c: char| c.is_whitespace() || "(){}\"".contains(c))
            .find(|w| w.starts_with(&format!("{DOMAIN}:3478:")))
            .unwrap_or_else(|| panic!("no TURN credentials: {turn}"));
        let fields: Vec<&str> = creds.splitn(4, ':').collect();
        assert!(
            fields.len() == 4 && !fields[2].is_empty() && !fields[3].is_empty(),
            "host:port:user:pass: {creds}"
        );
        eprintln!("components: TURN attribute {creds}");
        let udp = relay.host.sh("ss -ulnH 'sport = :3478'");
        assert!(udp.contains(&format!("{addr}:3478")), "{udp}");
        assert!(stun_answers(&addr), "no STUN answer from {addr}:3478");
    } else {
        eprintln!("components: TURN checks skipped (CHATMAIL_TURN_BIN not set)");
    }

    // "active" also shows between the restarts of a crash loop
    let restarts = relay.host.sh(&format!(
        "systemctl show -p NRestarts --value {}",
        units.join(" ")
    ));
    let restarts: Vec<&str> = restarts.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(restarts, vec!["0"; units.len()], "NRestarts of {units:?}");

    // the second deploy changes and restarts nothing
    let mut watched = units.clone();
    watched.extend(["nginx.service", "dovecot.service", "unbound.service"]);
    let pids = relay.main_pids(&watched);
    let started = Instant::now();
    let again = relay.deploy_skipping(skip, &args);
    eprintln!(
        "components: second deploy took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.last_line().starts_with("summary: 0 changed"),
        "{}",
        again.stdout
    );
    assert_eq!(relay.main_pids(&watched), pids);

    // an ini without mtail_address turns the metrics endpoint off
    let ini = std::fs::read_to_string(&relay.ini).unwrap();
    let without: String = ini
        .lines()
        .filter(|l| !l.starts_with("mtail_address"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&relay.ini, without).unwrap();
    let off = relay.deploy_skipping(skip, &args);
    assert_eq!(off.code, 0, "{}", off.stderr);
    assert_eq!(
        relay.host.sh("systemctl is-active mtail.service; true"),
        "inactive\n"
    );
    // unit, binary and programs are gone, so `status` does not list a dead unit
    assert_eq!(
        relay.host.sh(
            "ls -d /etc/systemd/system/mtail.service /usr/local/bin/mtail /etc/mtail 2>/dev/null; true"
        ),
        ""
    );
    let quiet = relay.deploy_skipping(skip, &args);
    assert!(
        quiet.last_line().starts_with("summary: 0 changed, "),
        "{}",
        quiet.stdout
    );
}
