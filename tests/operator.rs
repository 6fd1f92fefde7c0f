//! Operator tools against a deployed relay: `test` passes on a healthy relay and names
//! the check that breaks when the relay stops refusing cleartext.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::relay::{Relay, deploy_tool};
use common::{dns_set, enabled};

const NAME: &str = "relay-op";
const DOMAIN: &str = "_relay-op.test";

/// `chatmail-deploy test --config INI ARGS`, resolving through the test DNS; returns the
/// exit code and stdout.
fn test_command(relay: &Relay, args: &[&str]) -> (i32, String) {
    command(relay, "test", args)
}

/// `chatmail-deploy SUBCOMMAND --config INI ARGS` through the test DNS.
fn command(relay: &Relay, subcommand: &str, args: &[&str]) -> (i32, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(root.join("tests/e2e/with-test-dns"))
        .arg(deploy_tool())
        .args([subcommand, "--config", relay.ini.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "{subcommand} {args:?} took {:.1} s:\n{stdout}{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// The checks a healthy self-signed relay passes (the names are the output's contract).
const CHECKS: &[&str] = &[
    "TLS 993 (IMAPS)",
    "TLS 465 (SMTPS)",
    "TLS 443 (HTTPS)",
    "ALPN imap on 443 reaches IMAP",
    "ALPN smtp on 443 reaches SMTP",
    "STARTTLS 143 (IMAP)",
    "STARTTLS 587 (submission)",
    "STARTTLS 25 (SMTP)",
    "first login creates an account",
    "second login",
    "wrong password refused",
    "IMAP capabilities XCHATMAIL XDELTAPUSH",
    "SMTP login",
    "encrypted message delivered and decrypted",
    "cleartext message refused",
    "forged From refused",
    "MAIL FROM of another user refused",
    "METADATA device token",
    "METADATA server attributes",
    "autoconfig",
    "MTA-STS policy",
    "/new creates an address",
];

fn assert_all_ok(code: i32, stdout: &str) {
    for check in CHECKS {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("  ok   {check}")
                    || l.starts_with(&format!("  ok   {check}: "))),
            "no ok line for {check:?}:\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with(&format!("test: {} passed", CHECKS.len())),
        "{stdout}"
    );
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn test_command_passes_and_names_the_cleartext_check_when_filtermail_is_bypassed() {
    if !enabled("operator_test_command") {
        return;
    }
    let relay = Relay::new(NAME, DOMAIN);
    let addr = relay.host.addr.clone();
    dns_set(&[
        &format!("{DOMAIN}. 60 IN A {addr}"),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);
    let deploy = relay.deploy(&[]);
    assert_eq!(deploy.code, 0, "{}", deploy.stderr);

    // a name the DNS does not know: one error line, no check tried
    let unknown = relay.ini.with_file_name("unknown.ini");
    std::fs::write(&unknown, "[params]\nmail_domain = _unknown-op.test\n").unwrap();
    let out = Command::new("bash")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/with-test-dns"))
        .arg(deploy_tool())
        .args(["test", "--insecure", "--config", unknown.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr
            .trim()
            .starts_with("error: cannot resolve _unknown-op.test: ")
            && stderr.trim().lines().count() == 1,
        "{stderr}"
    );

    let (code, stdout) = test_command(&relay, &["--insecure"]);
    assert_all_ok(code, &stdout);
    assert!(
        stdout.contains("  ok   cleartext message refused: 523 "),
        "{stdout}"
    );

    // bench: every message arrives, with numbers for each; accounts are created
    let (code, stdout) = command(
        &relay,
        "bench",
        &["--insecure", "--json", "--count", "3", "--accounts", "4"],
    );
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let same = &report["latency"][0];
    assert_eq!(
        (
            &same["case"],
            &same["sent"],
            &same["received"],
            &same["lost"]
        ),
        (&"same relay".into(), &3.into(), &3.into(), &0.into()),
        "{report}"
    );
    let (min, max) = (
        same["min_ms"].as_f64().unwrap(),
        same["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= max, "{report}");
    assert_eq!(report["accounts"]["count"], 4);
    assert!(report["accounts"]["per_second"].as_f64().unwrap() > 0.0);
    let created = relay
        .host
        .sh(&format!("ls /home/vmail/mail/{DOMAIN} | wc -l"));
    assert!(
        created.trim().parse::<usize>().unwrap() >= 2 + 2 + 4,
        "the test's two accounts, bench's sender and recipient and its four: {created}"
    );

    // without --insecure the self-signed certificate fails, with a hint
    let (code, stdout) = test_command(&relay, &["--timeout", "10"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("  FAIL TLS 993 (IMAPS): ") && stdout.contains("use --insecure"),
        "{stdout}"
    );

    // submission straight into Postfix, past filtermail's encryption check
    relay.host.sh(
        "sed -i 's/smtpd_proxy_filter=127\\.0\\.0\\.1:10080$/smtpd_proxy_filter=/' /etc/postfix/master.cf \
         && test $(grep -c 'smtpd_proxy_filter=$' /etc/postfix/master.cf) = 2 && postfix reload",
    );
    let (code, stdout) = test_command(&relay, &["--insecure"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("  FAIL cleartext message refused: accepted"),
        "{stdout}"
    );
    let summary = stdout.lines().last().unwrap_or("");
    assert!(
        summary.starts_with("test: ")
            && summary.contains("failed: ")
            && summary.contains("cleartext message refused"),
        "{summary}"
    );
    assert!(
        stdout.contains("  ok   encrypted message delivered and decrypted"),
        "{stdout}"
    );

    // a normal deploy puts filtermail back in the path
    let deploy = relay.deploy(&[]);
    assert_eq!(deploy.code, 0, "{}", deploy.stderr);
    let (code, stdout) = test_command(&relay, &["--insecure"]);
    assert_all_ok(code, &stdout);
}
