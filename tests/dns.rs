//! `dns` against the real test DNS server and a relay deployed on a test host: a complete
//! zone passes, each required record removed or wrong is reported with its fix, the printed
//! fixes loaded into the DNS make the next check pass, a silent server is a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Run, TestHost, enabled, known_hosts, run};

const DOMAIN: &str = "relay-dns.test";
const DNS_SERVER: &str = "10.77.0.2";

fn deploy_tool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chatmail-deploy"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dns-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_ini(dir: &Path, body: &str) -> PathBuf {
    let ini = dir.join("chatmail.ini");
    std::fs::write(&ini, format!("[params]\n{body}")).unwrap();
    ini
}

fn test_dns(args: &[&str]) {
    let ok = Command::new("bash")
        .arg(root().join("tests/testhost/dns"))
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "dns {args:?} failed");
}

/// The zone-file records in a text: the lines whose third field is the class `IN`
/// (comments, status lines and the summary have none).
fn zone_records(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with(';') && l.split_whitespace().nth(2) == Some("IN"))
        .map(String::from)
        .collect()
}

/// The status line of one record: "ok", "missing", "wrong", "unknown".
fn status_of<'a>(out: &'a str, rtype: &str, owner: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (status, t, o) = (w.next()?, w.next()?, w.next()?);
        (t == rtype && o == owner).then_some(status)
    })
}

fn line_of<'a>(out: &'a str, rtype: &str, owner: &str) -> &'a str {
    out.lines()
        .find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 2 && w[1] == rtype && w[2] == owner
        })
        .unwrap_or_else(|| panic!("no line for {rtype} {owner} in:\n{out}"))
}

struct Relay {
    host: TestHost,
    ini: PathBuf,
}

impl Relay {
    /// One relay host for the whole file, with an external certificate so that a real
    /// domain name works without a CA (MTA-STS records are then required, as with ACME).
    fn deploy() -> Relay {
        let bins = common::relay::bin_dir();
        let host = TestHost::up("relay-dns");
        let dir = temp_dir("relay");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
            ])
            .arg(format!("/CN={DOMAIN}"))
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl req failed");
        let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
        host.sh(&format!(
            "mkdir -p /etc/ssl/ext && printf '%s' '{cert}' > /etc/ssl/ext/cert.pem && \
             printf '%s' '{key}' > /etc/ssl/ext/key.pem && chmod 600 /etc/ssl/ext/key.pem"
        ));
        let ini = write_ini(
            &dir,
            &format!(
                "mail_domain = {DOMAIN}\n\
                 tls_external_cert_and_key = /etc/ssl/ext/cert.pem /etc/ssl/ext/key.pem\n\
                 max_load_1m = 1000\n"
            ),
        );
        let kh = known_hosts();
        let deployed = run(
            &deploy_tool(),
            &[
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
            ],
            &[],
        );
        assert_eq!(deployed.code, 0, "deploy failed: {}", deployed.stderr);
        Relay { host, ini }
    }

    /// `dns` against the test DNS; port 25 is probed against the relay itself.
    fn check(&self, extra: &[&str]) -> Run {
        self.check_ini(&self.ini, extra)
    }

    fn check_ini(&self, ini: &Path, extra: &[&str]) -> Run {
        let kh = known_hosts();
        let mut args = vec![
            "dns",
            "--config",
            ini.to_str().unwrap(),
            "--ssh-host",
            &self.host.addr,
            "--known-hosts",
            &kh,
            "--resolver",
            DNS_SERVER,
        ];
        if !extra.contains(&"--smtp-probe") {
            args.extend(["--smtp-probe", DOMAIN]);
        }
        args.extend_from_slice(extra);
        run(&deploy_tool(), &args, &[])
    }

    /// Loads the printed fixes into the DNS; the next check must pass.
    fn apply_fixes(&self, out: &Run) {
        self.apply_fixes_ini(&self.ini, out)
    }

    fn apply_fixes_ini(&self, ini: &Path, out: &Run) {
        let records = zone_records(&out.stdout);
        assert!(!records.is_empty(), "no fixes printed:\n{}", out.stdout);
        let mut args = vec!["add"];
        args.extend(records.iter().map(String::as_str));
        test_dns(&args);
        let again = self.check_ini(ini, &[]);
        assert_eq!(again.code, 0, "the fixes did not help:\n{}", again.stdout);
    }
}

/// Copies a file to the host over ssh.
fn upload(host: &TestHost, local: &Path, remote: &str) {
    let ok = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts()))
        .arg(format!("root@{}", host.addr))
        .arg(format!(
            "cat > {remote}.tmp && chmod 755 {remote}.tmp && mv {remote}.tmp {remote}"
        ))
        .envs(common::ssh_env())
        .stdin(std::fs::File::open(local).unwrap())
        .status()
        .unwrap()
        .success();
    assert!(ok, "upload of {} failed", local.display());
}

/// The test DNS outlives a test run: removes what earlier runs added for `fqdn`, keeping
/// the apex A, AAAA and PTR that `up` publishes.
fn clear_zone(fqdn: &str) {
    for rtype in ["MX", "TXT", "CAA"] {
        test_dns(&["del", fqdn, rtype]);
    }
    let subs = [
        "opendkim._domainkey",
        "_mta-sts",
        "mta-sts",
        "www",
        "_dmarc",
        "_smtp._tls",
        "_submission._tcp",
        "_submissions._tcp",
        "_imap._tcp",
        "_imaps._tcp",
    ];
    for sub in subs {
        test_dns(&["del", &format!("{sub}.{fqdn}")]);
    }
}

#[test]
fn dns_check_against_a_deployed_relay() {
    if !enabled("dns_check") {
        return;
    }
    let relay = Relay::deploy();
    let fqdn = format!("{DOMAIN}.");
    clear_zone(&fqdn);
    test_dns(&["del", "dmarc.policies.test."]);

    // a fresh relay has only what `up` published (A, AAAA, PTR)
    let first = relay.check(&[]);
    assert_eq!(first.code, 1);
    assert_eq!(status_of(&first.stdout, "A", &fqdn), Some("ok"));
    assert_eq!(status_of(&first.stdout, "MX", &fqdn), Some("missing"));
    assert!(
        first
            .stdout
            .contains("ok       the host reaches relay-dns.test on port 25"),
        "{}",
        first.stdout
    );
    assert!(!first.stdout.contains("BEGIN"), "no key material printed");

    // the printed DKIM record carries the key made on the host
    let dkim_line = zone_records(&first.stdout)
        .into_iter()
        .find(|l| l.starts_with("opendkim._domainkey."))
        .expect("DKIM record printed");
    let printed: String = dkim_line.split('"').skip(1).step_by(2).collect();
    let host_txt = relay.host.sh("cat /etc/dkimkeys/opendkim.txt");
    let host_value: String = host_txt.split('"').skip(1).step_by(2).collect();
    let key = |v: &str| -> String {
        v.split(';')
            .find_map(|t| t.trim().strip_prefix("p="))
            .unwrap()
            .split_whitespace()
            .collect()
    };
    assert_eq!(
        key(&printed),
        key(&host_value),
        "DKIM key differs from the host's"
    );
    for chunk in dkim_line.split('"').skip(1).step_by(2) {
        assert!(chunk.len() <= 255);
    }

    // the printed zone, loaded, completes it: every record is then ok
    relay.apply_fixes(&first);
    let complete = relay.check(&[]);
    assert!(
        complete
            .stdout
            .contains("all required DNS records are correct"),
        "{}",
        complete.stdout
    );
    let not_ok: Vec<&str> = complete
        .stdout
        .lines()
        .filter(|l| l.starts_with("missing") || l.starts_with("wrong") || l.starts_with("unknown"))
        .collect();
    assert!(not_ok.is_empty(), "{not_ok:?}");
    assert!(complete.stdout.contains("; all DNS records are in place"));

    // without --resolver, run on the host itself (@local): there are no NS records in the
    // test DNS, so the host's own resolvers answer
    upload(
        &relay.host,
        &deploy_tool(),
        "/usr/local/bin/chatmail-deploy-dnstest",
    );
    relay.host.sh(&format!(
        "printf '[params]\\nmail_domain = {DOMAIN}\\ntls_external_cert_and_key = /etc/ssl/ext/cert.pem /etc/ssl/ext/key.pem\\n' > /root/dnstest.ini"
    ));
    let on_host = relay.host.try_sh(&format!(
        "chatmail-deploy-dnstest dns --config /root/dnstest.ini --ssh-host @local --smtp-probe {DOMAIN}"
    ));
    let stdout = String::from_utf8_lossy(&on_host.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&on_host.stderr));
    assert!(stdout.starts_with("DNS answers from the system's DNS resolvers\n"));
    assert!(stdout.contains("all required DNS records are correct"));
    assert_eq!(on_host.status.code(), Some(0));
    relay
        .host
        .sh("rm -f /usr/local/bin/chatmail-deploy-dnstest /root/dnstest.ini");

    // each required record removed in turn: reported missing, its fix printed
    let required = [
        (fqdn.clone(), "A"),
        (fqdn.clone(), "MX"),
        (format!("opendkim._domainkey.{fqdn}"), "TXT"),
        (format!("_mta-sts.{fqdn}"), "TXT"),
        (format!("mta-sts.{fqdn}"), "CNAME"),
        (format!("www.{fqdn}"), "CNAME"),
    ];
    for (owner, rtype) in &required {
        test_dns(&["del", owner, rtype]);
        let out = relay.check(&[]);
        assert_eq!(out.code, 1, "{owner} {rtype} removed");
        assert_eq!(
            status_of(&out.stdout, rtype, owner),
            Some("missing"),
            "{owner} {rtype}"
        );
        let fixes = zone_records(&out.stdout);
        assert_eq!(
            fixes.len(),
            1,
            "only the removed record is printed: {fixes:?}"
        );
        let w: Vec<&str> = fixes[0].split_whitespace().collect();
        assert_eq!((w[0], w[3]), (owner.as_str(), *rtype));
        relay.apply_fixes(&out);
    }

    // each required record wrong in turn: reported with what was found, fixed by the print
    let wrong = [
        (fqdn.clone(), "A", "10.77.0.250".to_string(), "10.77.0.250"),
        (fqdn.clone(), "MX", "10 other.test.".into(), "other.test."),
        (
            format!("opendkim._domainkey.{fqdn}"),
            "TXT",
            "\"v=DKIM1;k=rsa;p=MIIBnotthekey\"".into(),
            "another public key",
        ),
        (
            format!("_mta-sts.{fqdn}"),
            "TXT",
            "\"v=STSv1;\"".into(),
            "no valid id",
        ),
        (
            format!("www.{fqdn}"),
            "CNAME",
            "elsewhere.test.".into(),
            "CNAME elsewhere.test.",
        ),
    ];
    for (owner, rtype, data, found) in &wrong {
        // keep the other records of the same owner and type (A: the host's own address goes)
        test_dns(&["del", owner, rtype]);
        test_dns(&["add", &format!("{owner} 60 IN {rtype} {data}")]);
        let out = relay.check(&[]);
        assert_eq!(out.code, 1, "{owner} {rtype} wrong");
        let line = line_of(&out.stdout, rtype, owner);
        assert!(line.starts_with("wrong"), "{line}");
        assert!(line.contains(found), "{line}");
        let fixes = zone_records(&out.stdout);
        assert_eq!(fixes.len(), 1, "{fixes:?}");
        test_dns(&["del", owner, rtype]);
        relay.apply_fixes(&out);
    }

    // the MTA-STS id already published is kept
    let before = relay.check(&[]);
    let sts = line_of(&before.stdout, "TXT", &format!("_mta-sts.{fqdn}"));
    let id = sts
        .split("id=")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    test_dns(&["del", &fqdn, "MX"]);
    let out = relay.check(&[]);
    assert!(
        !out.stdout.contains("IN  TXT    \"v=STSv1"),
        "id unchanged, not printed"
    );
    relay.apply_fixes(&out);
    assert!(relay.check(&[]).stdout.contains(&format!("id={id}")));

    // a CNAME chain is followed and said; a dangling one is reported
    let dmarc = format!("_dmarc.{fqdn}");
    test_dns(&["del", &dmarc]);
    test_dns(&[
        "add",
        &format!("{dmarc} 60 IN CNAME dmarc.policies.test."),
        "dmarc.policies.test. 60 IN TXT \"v=DMARC1; p=reject\"",
    ]);
    let out = relay.check(&[]);
    assert_eq!(out.code, 0);
    let line = line_of(&out.stdout, "TXT", &dmarc);
    assert!(
        line.starts_with("ok") && line.contains("via CNAME dmarc.policies.test."),
        "{line}"
    );
    test_dns(&["del", "dmarc.policies.test."]);
    let out = relay.check(&[]);
    let line = line_of(&out.stdout, "TXT", &dmarc);
    assert!(!line.starts_with("ok"), "{line}");
    assert!(line.contains("dmarc.policies.test."), "{line}");
    assert_eq!(out.code, 0, "DMARC is only recommended");
    test_dns(&["del", &dmarc]);
    relay.apply_fixes(&relay.check(&[]));

    // --zonefile writes the fixes; a port 25 probe that fails is a warning only
    test_dns(&["del", &fqdn, "MX"]);
    let file = temp_dir("zone").join("fixes.zone");
    let out = relay.check(&["--zonefile", file.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(zone_records(&written).len(), 1, "{written}");
    assert!(
        written.contains(&format!("IN  MX     10 {fqdn}")),
        "{written}"
    );
    let mut args = vec!["add".to_string()];
    args.extend(zone_records(&written));
    test_dns(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = relay.check(&["--smtp-probe", "mx.unreachable.test"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("warning  the host cannot reach mx.unreachable.test on port 25"),
        "{}",
        out.stdout
    );

    // a self-signed relay (`_` domain) on the same host: no MTA-STS, www only recommended;
    // its fixes (A, MX, DKIM, ..., PTR) make the check pass
    let ss_fqdn = "_relay-dns.test.";
    let ss_ini = write_ini(&temp_dir("selfsigned"), "mail_domain = _relay-dns.test\n");
    clear_zone(ss_fqdn);
    test_dns(&["del", ss_fqdn]);
    let out = relay.check_ini(&ss_ini, &[]);
    assert_eq!(out.code, 1);
    assert!(!out.stdout.contains("mta-sts"), "{}", out.stdout);
    assert!(!out.stdout.contains("CAA"), "{}", out.stdout);
    assert_eq!(status_of(&out.stdout, "A", ss_fqdn), Some("missing"));
    assert!(line_of(&out.stdout, "CNAME", &format!("www.{ss_fqdn}")).ends_with("(recommended)"));
    let octets: Vec<&str> = relay.host.addr.split('.').rev().collect();
    let ptr_owner = format!("{}.in-addr.arpa.", octets.join("."));
    assert!(line_of(&out.stdout, "PTR", &ptr_owner).starts_with("wrong"));
    relay.apply_fixes_ini(&ss_ini, &out);
    clear_zone(ss_fqdn);
    test_dns(&["del", ss_fqdn]);
    clear_zone(&fqdn);
}

/// Runs the tool without the test hosts' ssh-agent (for tests that need no root).
fn run_plain(args: &[&str]) -> Run {
    let out = Command::new(deploy_tool()).args(args).output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ chatmail-deploy {}\n{}{}",
        args.join(" "),
        r.stdout,
        r.stderr
    );
    r
}

/// A DNS server that does not answer gives one clear error line, quickly.
fn check_silent_server(server: &str) {
    let dir = temp_dir(&format!("silent{}", server.replace([':', '.'], "-")));
    let ini = write_ini(&dir, &format!("mail_domain = {DOMAIN}\n"));
    let started = Instant::now();
    let out = run_plain(&[
        "dns",
        "--config",
        ini.to_str().unwrap(),
        "--ssh-host",
        "root@127.0.0.1:1",
        "--resolver",
        server,
    ]);
    let took = started.elapsed();
    let line = out.one_error_line();
    assert!(line.contains(&format!("the DNS server {server}")), "{line}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// A DNS server on loopback that answers every query with `rcode` (2: SERVFAIL).
fn fake_dns(rcode: u8) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // the header and the question only: the name's labels, then type and class
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += 1 + buf[end] as usize;
            }
            let mut resp = buf[..(end + 5).min(n)].to_vec();
            resp[2] |= 0x80; // a response
            resp[3] = 0x80 | rcode; // recursion available, the error code
            resp[6..12].fill(0); // no answer, authority or additional records
            let _ = sock.send_to(&resp, peer);
        }
    });
    addr
}

#[test]
fn dns_server_that_fails_says_servfail() {
    let server = fake_dns(2);
    let dir = temp_dir("servfail");
    let ini = write_ini(&dir, &format!("mail_domain = {DOMAIN}\n"));
    let started = Instant::now();
    let out = run_plain(&[
        "dns",
        "--config",
        ini.to_str().unwrap(),
        "--ssh-host",
        "root@127.0.0.1:1",
        "--resolver",
        &server,
    ]);
    let line = out.one_error_line();
    assert!(line.contains("SERVFAIL"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn dns_server_on_loopback_that_does_not_answer() {
    check_silent_server("127.0.0.1:1");
}

#[test]
fn dns_server_on_the_test_net_that_does_not_exist() {
    if !enabled("dns_silent_server") {
        return;
    }
    check_silent_server("10.77.0.249:53");
}

#[test]
fn ipv4_relay_skips_the_checks() {
    let dir = temp_dir("ipv4");
    let ini = write_ini(&dir, "mail_domain = 203.0.113.7\n");
    let out = run_plain(&["dns", "--config", ini.to_str().unwrap()]);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout,
        "[WARNING] 203.0.113.7 is not a domain, skipping DNS checks.\n"
    );
}
