//! A relay with a real domain name gets its certificate through acmetool from a local ACME
//! CA (Debian's pebble on a third test host), and nginx, Postfix and Dovecot serve it.

mod common;

use std::path::PathBuf;

use common::{TestHost, enabled, known_hosts, run};

const DOMAIN: &str = "relay-acme.test";
const AGREEMENT: &str = "acme-agreement:data:text/plain,Do%20what%20thou%20wilt";

fn dns(records: &[&str]) {
    common::dns_set(records);
}

/// pebble with a certificate of its own for acme.test, validating over the test DNS.
fn start_pebble(ca: &TestHost) -> String {
    ca.sh("apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -y install pebble openssl >/dev/null");
    ca.sh(
        "mkdir -p /etc/pebble-test && cd /etc/pebble-test && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc -days 30 \
           -keyout key.pem -out cert.pem -subj /CN=acme.test -addext subjectAltName=DNS:acme.test 2>/dev/null && \
         printf '%s' '{\"pebble\": {\"listenAddress\": \"0.0.0.0:14000\", \"managementListenAddress\": \"0.0.0.0:15000\", \
           \"certificate\": \"/etc/pebble-test/cert.pem\", \"privateKey\": \"/etc/pebble-test/key.pem\", \
           \"httpPort\": 80, \"tlsPort\": 443, \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": false}}' > config.json && \
         printf '[Service]\\nEnvironment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0\\nExecStart=/usr/bin/pebble -config /etc/pebble-test/config.json -dnsserver 10.77.0.2:53\\n' \
           > /etc/systemd/system/pebble-test.service && systemctl daemon-reload && systemctl start pebble-test.service",
    );
    for _ in 0..50 {
        if ca.try_sh("ss -ltn | grep -q ':14000 '").status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ca.sh("cat /etc/pebble-test/cert.pem")
}

/// Issuer of the certificate a TLS service presents (STARTTLS protocol if given).
fn served_cert(host: &TestHost, port: u16, starttls: Option<&str>) -> String {
    let st = starttls
        .map(|p| format!("-starttls {p}"))
        .unwrap_or_default();
    host.sh(&format!(
        "echo | openssl s_client -connect 127.0.0.1:{port} -servername {DOMAIN} {st} 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    ))
}

#[test]
fn acme_certificate_from_a_local_ca_is_served_everywhere() {
    if !enabled("acme") {
        return;
    }
    let bins = common::relay::bin_dir();
    let ca = TestHost::up("acme");
    let relay = TestHost::up("relay-acme");
    dns(&[
        &format!("acme.test. 60 IN A {}", ca.addr),
        &format!("www.{DOMAIN}. 60 IN CNAME {DOMAIN}."),
        &format!("mta-sts.{DOMAIN}. 60 IN CNAME {DOMAIN}."),
        &format!("{DOMAIN}. 60 IN MX 10 {DOMAIN}."),
    ]);
    let ca_cert = start_pebble(&ca);
    // the relay trusts the test CA's server certificate, as it trusts Let's Encrypt's
    relay.sh(&format!(
        "mkdir -p /usr/local/share/ca-certificates && printf '%s' '{ca_cert}' > /usr/local/share/ca-certificates/pebble-test.crt && update-ca-certificates >/dev/null"
    ));

    let dir = std::env::temp_dir().join(format!("acme-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("chatmail.ini");
    let tool = PathBuf::from(env!("CARGO_BIN_EXE_chatmail-deploy"));
    common::test_ini(&tool, &ini, DOMAIN);
    std::fs::write(
        &ini,
        std::fs::read_to_string(&ini).unwrap() + "acme_email = admin@relay-acme.test\n",
    )
    .unwrap();
    let kh = known_hosts();
    let args = [
        "run",
        "--ssh-host",
        &relay.addr,
        "--known-hosts",
        &kh,
        "--config",
        ini.to_str().unwrap(),
        "--bin-dir",
        bins.to_str().unwrap(),
        "--skip",
        "turn,iroh-relay",
        "--acme-directory",
        "https://acme.test:14000/dir",
        "--acme-agreement",
        AGREEMENT,
    ];
    let first = run(&tool, &args, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first
            .stdout
            .contains("changed: certificate for relay-acme.test: request with acmetool")
    );

    let issued = relay.sh(&format!(
        "openssl x509 -noout -fingerprint -sha256 -in /var/lib/acme/live/{DOMAIN}/cert"
    ));
    let names = relay.sh(&format!(
        "openssl x509 -noout -ext subjectAltName -in /var/lib/acme/live/{DOMAIN}/cert"
    ));
    for name in [DOMAIN, "www.relay-acme.test", "mta-sts.relay-acme.test"] {
        assert!(names.contains(name), "{name} missing in {names}");
    }
    assert!(
        relay
            .sh(&format!(
                "openssl x509 -noout -issuer -in /var/lib/acme/live/{DOMAIN}/cert"
            ))
            .contains("Pebble")
    );
    assert_eq!(served_cert(&relay, 8443, None), issued, "nginx");
    assert_eq!(served_cert(&relay, 993, None), issued, "Dovecot IMAPS");
    assert_eq!(served_cert(&relay, 465, None), issued, "Postfix SMTPS");
    assert_eq!(
        served_cert(&relay, 25, Some("smtp")),
        issued,
        "Postfix port 25"
    );

    let second = run(&tool, &args, &[]);
    assert!(
        second.last_line().starts_with("summary: 0 changed"),
        "{}",
        second.stdout
    );
}
