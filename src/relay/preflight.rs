//! Checks before anything changes on the host: privacy contacts that are not the upstream
//! operators', an mtail address the host really has, and ports nobody else holds.

use anyhow::bail;
use facts::{HostFacts, Query};

use ::chatmaild::config::Config;

const MTAIL_CHECK: &str = "preflight: mtail_address on the host";

/// (port, processes allowed to hold it)
fn ports(c: &Config) -> Vec<(u16, &'static [&'static str])> {
    let smtpd: &[&str] = &["master", "smtpd"];
    let filtermail: &[&str] = &["filtermail"];
    let mut list = vec![
        (25, smtpd),
        (53, &["unbound"][..]),
        (80, &["acmetool", "nginx"][..]),
        (143, &["imap-login", "dovecot"][..]),
        (443, &["nginx"][..]),
        (465, smtpd),
        (587, smtpd),
        (993, &["dovecot", "imap-login"][..]),
        (3340, &["iroh-relay"][..]),
        (8443, &["nginx"][..]),
        // the 443 front's PROXY-protocol hops (HTTPS, SMTPS, IMAPS)
        (8444, &["nginx"][..]),
        (8465, &["nginx"][..]),
        (8993, &["nginx"][..]),
        (c.postfix_reinject_port, smtpd),
        (c.postfix_reinject_port_incoming, smtpd),
        (c.filtermail_smtp_port, filtermail),
        (c.filtermail_smtp_port_incoming, filtermail),
        (c.filtermail_http_port_incoming, filtermail),
        (c.filtermail_lmtp_port_transport, filtermail),
    ];
    if c.tls_cert_mode == ::chatmaild::config::TlsMode::Acme {
        list.push((402, &["acmetool"][..]));
    }
    list
}

fn port_check(port: u16) -> String {
    format!("preflight: port {port}")
}

/// Adds the host-side checks to the facts query.
pub fn extend_query(config: &Config, q: &mut Query) {
    if let Some(addr) = config.mtail_address.as_deref().filter(|a| !is_loopback(a)) {
        q.checks.insert(
            MTAIL_CHECK.into(),
            format!(
                "ip -4 -o addr show | grep -q ' {}/'",
                addr.replace('\'', "")
            ),
        );
    }
    // succeeds when the port is free or held by one of the expected programs
    for (port, allowed) in ports(config) {
        let names = allowed.join("|");
        q.checks.insert(
            port_check(port),
            format!(
                "! ss -Hlptn 'sport = :{port}' | grep -q . || ss -Hlptn 'sport = :{port}' | grep -qE '\\(\\(\"({names})\"'"
            ),
        );
    }
}

fn is_loopback(addr: &str) -> bool {
    matches!(addr, "127.0.0.1" | "::1" | "localhost")
}

/// Refuses a deploy that would break the host or publish someone else's contacts.
pub fn check(config: &Config, facts: &HostFacts) -> anyhow::Result<()> {
    check_release(&facts.os)?;
    check_privacy(config)?;
    if let Some(false) = facts.checks.get(MTAIL_CHECK) {
        bail!(
            "mtail_address {} is not an address of the host (VPN down?)",
            config.mtail_address.as_deref().unwrap_or("")
        );
    }
    // in containers the host's ports are not ours to judge
    if facts.container.is_none() {
        for (port, allowed) in ports(config) {
            if let Some(false) = facts.checks.get(&port_check(port)) {
                bail!(
                    "port {port} is occupied by another program (expected: {})",
                    allowed.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Debian releases whose packages and config formats the relay model is written for
/// (another release has other package names and a Dovecot that refuses this config).
pub const SUPPORTED_DEBIAN: &[&str] = &["12"];

fn check_release(os: &facts::OsRelease) -> anyhow::Result<()> {
    // other distributions are refused by the engine itself, with its own message
    if os.is_debian() && !SUPPORTED_DEBIAN.contains(&os.version_id.as_str()) {
        let name = if os.pretty_name.is_empty() {
            "Debian"
        } else {
            os.pretty_name.as_str()
        };
        bail!(
            "the host runs {name} (VERSION_ID={:?}): relays are deployed on Debian {} only",
            os.version_id,
            SUPPORTED_DEBIAN.join(", ")
        );
    }
    Ok(())
}

fn check_privacy(config: &Config) -> anyhow::Result<()> {
    let domain = config.mail_domain_bare.as_str();
    if domain == "testrun.org" || domain.ends_with(".testrun.org") {
        return Ok(());
    }
    let contacts = [
        &config.privacy_postal,
        &config.privacy_mail,
        &config.privacy_pdo,
        &config.privacy_supervisor,
    ];
    for value in contacts.into_iter().flatten() {
        let lower = value.to_lowercase();
        if ["merlinux", "schmieder", "testrun.org"]
            .iter()
            .any(|w| lower.contains(w))
        {
            bail!(
                "chatmail.ini has the upstream operators' privacy contacts: please set your own privacy_* values"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!("[params]\nmail_domain = chat.example.org\n{extra}"),
            "chatmail.ini",
        )
        .unwrap()
    }

    #[test]
    fn upstream_privacy_contacts_are_refused() {
        assert!(check_privacy(&config("privacy_mail = privacy@merlinux.eu\n")).is_err());
        assert!(check_privacy(&config("privacy_postal = Schmieder GmbH\n")).is_err());
        assert!(check_privacy(&config("privacy_mail = me@example.org\n")).is_ok());
        let testrun = Config::parse(
            "[params]\nmail_domain = nine.testrun.org\nprivacy_mail = x@merlinux.eu\n",
            "chatmail.ini",
        )
        .unwrap();
        assert!(check_privacy(&testrun).is_ok());
    }

    #[test]
    fn checks_are_asked_and_judged() {
        let c = config("mtail_address = 10.77.0.99\n");
        let mut q = Query::default();
        extend_query(&c, &mut q);
        assert!(q.checks[MTAIL_CHECK].contains("' 10.77.0.99/'"));
        assert!(q.checks.contains_key("preflight: port 25"));
        let mut facts = HostFacts::default();
        facts.checks.insert(MTAIL_CHECK.into(), false);
        let err = check(&c, &facts).unwrap_err().to_string();
        assert!(
            err.contains("mtail_address 10.77.0.99 is not an address of the host"),
            "{err}"
        );
        facts.checks.insert(MTAIL_CHECK.into(), true);
        facts.checks.insert("preflight: port 443".into(), false);
        assert!(
            check(&c, &facts)
                .unwrap_err()
                .to_string()
                .starts_with("port 443 is occupied")
        );
        facts.container = Some("systemd-nspawn".into());
        assert!(
            check(&c, &facts).is_ok(),
            "ports are not checked in containers"
        );
    }

    #[test]
    fn only_supported_debian_releases() {
        let os = |v: &str| facts::OsRelease {
            id: "debian".into(),
            version_id: v.into(),
            pretty_name: format!("Debian GNU/Linux {v}"),
            ..Default::default()
        };
        assert!(check_release(&os("12")).is_ok());
        for v in ["11", "13", "14", ""] {
            let err = check_release(&os(v)).unwrap_err().to_string();
            assert!(
                err.contains("relays are deployed on Debian 12 only"),
                "{err}"
            );
            assert!(err.contains(&format!("VERSION_ID=\"{v}\"")), "{err}");
        }
    }
}
