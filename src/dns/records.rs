//! The DNS records a relay needs, derived from its config and from facts about its host.

use std::fmt;
use std::net::IpAddr;

use chatmaild::config::{Config, TlsMode};

/// Record types the checks deal with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rtype {
    A,
    Aaaa,
    Mx,
    Txt,
    Cname,
    Srv,
    Caa,
    Ptr,
    /// Only looked up, to find the zone's own servers.
    Ns,
}

impl fmt::Display for Rtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rtype::A => "A",
            Rtype::Aaaa => "AAAA",
            Rtype::Mx => "MX",
            Rtype::Txt => "TXT",
            Rtype::Cname => "CNAME",
            Rtype::Srv => "SRV",
            Rtype::Caa => "CAA",
            Rtype::Ptr => "PTR",
            Rtype::Ns => "NS",
        })
    }
}

/// Whether a missing or wrong record fails the check (exit 1) or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Recommended,
}

/// How a published record set is judged: by meaning, not by exact text, so that an
/// equivalent record written differently (another MX preference, extra SPF mechanisms, a
/// DKIM value split elsewhere) is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A or AAAA: every published address is one of the host's.
    HostAddresses(Vec<IpAddr>),
    /// Some MX points to the domain.
    MxTo(String),
    /// Exactly one SPF record, and it allows the host (`a`, `mx`, or its address).
    Spf(Vec<IpAddr>),
    /// A DKIM record with this public key (`p=`).
    Dkim(String),
    /// A DMARC record with `p=reject`.
    Dmarc,
    /// An MTA-STS record with an id.
    MtaSts,
    /// A TLS-RPT record with a reporting address.
    TlsRpt,
    /// A CNAME to the domain, or the host's own addresses directly.
    AliasOf(String, Vec<IpAddr>),
    /// Some SRV record for this port on the domain.
    Srv(u16, String),
    /// CAA lets Let's Encrypt issue (for the account, when the record names one).
    Caa(Option<String>),
    /// The reverse name of an address is the domain.
    PtrTo(String),
}

/// One record the relay needs: what to publish, and how to judge what is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Absolute owner name (trailing dot).
    pub name: String,
    pub rtype: Rtype,
    /// Record data as published: names absolute; TXT as the bare text, unquoted.
    pub data: String,
    pub need: Need,
    pub rule: Rule,
    /// What the record is for, in the report.
    pub label: &'static str,
}

/// What the check needs to know about the relay (from chatmail.ini).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayDomain {
    /// The bare domain, without trailing dot.
    pub domain: String,
    pub tls: TlsMode,
    /// Where TLS reports go (`rua=mailto:`).
    pub report_address: String,
}

impl RelayDomain {
    pub fn from_config(config: &Config) -> RelayDomain {
        let domain = config.mail_domain_bare.trim_end_matches('.').to_string();
        let report_address = config
            .privacy_mail
            .clone()
            .filter(|m| m.contains('@'))
            .unwrap_or_else(|| format!("postmaster@{domain}"));
        RelayDomain {
            domain,
            tls: config.tls_cert_mode.clone(),
            report_address,
        }
    }

    /// A certificate other servers verify (not self-signed): MTA-STS makes sense.
    fn strict_tls(&self) -> bool {
        self.tls != TlsMode::SelfSigned
    }
}

/// Facts gathered on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Global addresses, the preferred one of each family first.
    pub addrs: Vec<IpAddr>,
    /// Base64 SubjectPublicKeyInfo of the DKIM key, if the host has one.
    pub dkim_public_key: Option<String>,
    /// `acmetool account-url`, if known.
    pub acme_account: Option<String>,
}

impl HostFacts {
    fn v4(&self) -> Vec<IpAddr> {
        self.addrs.iter().filter(|a| a.is_ipv4()).copied().collect()
    }

    fn v6(&self) -> Vec<IpAddr> {
        self.addrs.iter().filter(|a| a.is_ipv6()).copied().collect()
    }
}

/// The DKIM TXT value for a public key.
pub fn dkim_value(public_key: &str) -> String {
    format!("v=DKIM1;k=rsa;p={public_key};s=email;t=s")
}

/// The MTA-STS id for a new record: the current UTC time as YYYYMMDDHHMM.
pub fn new_sts_id(unix_secs: u64) -> String {
    let days = (unix_secs / 86400) as i64;
    let rem = unix_secs % 86400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}{:02}{:02}", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to a calendar date (H. Hinnant's algorithm; no date crate needed
/// for one timestamp).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The reverse-DNS owner name of an address (`in-addr.arpa.` / `ip6.arpa.`).
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s + "ip6.arpa."
        }
    }
}

/// Every record the relay needs, required ones first. `sts_id` keeps an already published
/// MTA-STS id (changing it makes senders refetch the policy for nothing).
pub fn expected(relay: &RelayDomain, host: &HostFacts, sts_id: &str) -> Vec<Expected> {
    let d = &relay.domain;
    let fqdn = format!("{d}.");
    let (v4, v6) = (host.v4(), host.v6());
    let all = host.addrs.clone();
    let mut out = Vec::new();
    let mut push = |name: String, rtype, data: String, need, rule, label| {
        out.push(Expected {
            name,
            rtype,
            data,
            need,
            rule,
            label,
        })
    };
    use Need::{Recommended, Required};

    // one address family suffices for mail; the other is then only recommended
    if let Some(a) = v4.first() {
        push(
            fqdn.clone(),
            Rtype::A,
            a.to_string(),
            Required,
            Rule::HostAddresses(v4.clone()),
            "address",
        );
    }
    if let Some(a) = v6.first() {
        let need = if v4.is_empty() { Required } else { Recommended };
        push(
            fqdn.clone(),
            Rtype::Aaaa,
            a.to_string(),
            need,
            Rule::HostAddresses(v6.clone()),
            "address",
        );
    }
    push(
        fqdn.clone(),
        Rtype::Mx,
        format!("10 {fqdn}"),
        Required,
        Rule::MxTo(fqdn.clone()),
        "mail exchanger",
    );
    if let Some(key) = &host.dkim_public_key {
        push(
            format!("opendkim._domainkey.{fqdn}"),
            Rtype::Txt,
            dkim_value(key),
            Required,
            Rule::Dkim(key.clone()),
            "DKIM key",
        );
    }
    if relay.strict_tls() {
        push(
            format!("_mta-sts.{fqdn}"),
            Rtype::Txt,
            format!("v=STSv1; id={sts_id}"),
            Required,
            Rule::MtaSts,
            "MTA-STS",
        );
        push(
            format!("mta-sts.{fqdn}"),
            Rtype::Cname,
            fqdn.clone(),
            Required,
            Rule::AliasOf(fqdn.clone(), all.clone()),
            "MTA-STS policy host",
        );
    }
    // the web page and its certificate; a self-signed relay is usually reached by address
    let www_need = if relay.strict_tls() {
        Required
    } else {
        Recommended
    };
    push(
        format!("www.{fqdn}"),
        Rtype::Cname,
        fqdn.clone(),
        www_need,
        Rule::AliasOf(fqdn.clone(), all.clone()),
        "web page",
    );

    push(
        fqdn.clone(),
        Rtype::Txt,
        "v=spf1 a ~all".into(),
        Recommended,
        Rule::Spf(all.clone()),
        "SPF",
    );
    push(
        format!("_dmarc.{fqdn}"),
        Rtype::Txt,
        "v=DMARC1;p=reject;adkim=s;aspf=s".into(),
        Recommended,
        Rule::Dmarc,
        "DMARC",
    );
    if relay.strict_tls() {
        push(
            format!("_smtp._tls.{fqdn}"),
            Rtype::Txt,
            format!("v=TLSRPTv1; rua=mailto:{}", relay.report_address),
            Recommended,
            Rule::TlsRpt,
            "TLS reporting",
        );
    }
    if relay.tls == TlsMode::Acme {
        let data = match &host.acme_account {
            Some(url) => format!("0 issue \"letsencrypt.org;accounturi={url}\""),
            None => "0 issue \"letsencrypt.org\"".into(),
        };
        push(
            fqdn.clone(),
            Rtype::Caa,
            data,
            Recommended,
            Rule::Caa(host.acme_account.clone()),
            "certificate authority",
        );
    }
    for (service, port) in [
        ("submission", 587),
        ("submissions", 465),
        ("imap", 143),
        ("imaps", 993),
    ] {
        push(
            format!("_{service}._tcp.{fqdn}"),
            Rtype::Srv,
            format!("0 1 {port} {fqdn}"),
            Recommended,
            Rule::Srv(port, fqdn.clone()),
            "client autoconfiguration",
        );
    }
    // set at the hosting provider, not in the zone; other mail servers distrust hosts
    // whose reverse name does not match
    for addr in &all {
        push(
            reverse_name(*addr),
            Rtype::Ptr,
            fqdn.clone(),
            Recommended,
            Rule::PtrTo(fqdn.clone()),
            "reverse DNS",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(domain: &str, tls: TlsMode) -> RelayDomain {
        RelayDomain {
            domain: domain.into(),
            tls,
            report_address: format!("postmaster@{domain}"),
        }
    }

    fn host() -> HostFacts {
        HostFacts {
            addrs: vec![
                "203.0.113.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap(),
            ],
            dkim_public_key: Some("MIIBIjAN".into()),
            acme_account: Some("https://acme.example/acct/1".into()),
        }
    }

    fn lines(records: &[Expected]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{:?} {} {} {}", r.need, r.name, r.rtype, r.data))
            .collect()
    }

    #[test]
    fn acme_relay_needs_everything() {
        let got = lines(&expected(
            &relay("chat.example.org", TlsMode::Acme),
            &host(),
            "202611251900",
        ));
        let want = [
            "Required chat.example.org. A 203.0.113.7",
            "Recommended chat.example.org. AAAA 2001:db8::7",
            "Required chat.example.org. MX 10 chat.example.org.",
            "Required opendkim._domainkey.chat.example.org. TXT v=DKIM1;k=rsa;p=MIIBIjAN;s=email;t=s",
            "Required _mta-sts.chat.example.org. TXT v=STSv1; id=202611251900",
            "Required mta-sts.chat.example.org. CNAME chat.example.org.",
            "Required www.chat.example.org. CNAME chat.example.org.",
            "Recommended chat.example.org. TXT v=spf1 a ~all",
            "Recommended _dmarc.chat.example.org. TXT v=DMARC1;p=reject;adkim=s;aspf=s",
            "Recommended _smtp._tls.chat.example.org. TXT v=TLSRPTv1; rua=mailto:postmaster@chat.example.org",
            "Recommended chat.example.org. CAA 0 issue \"letsencrypt.org;accounturi=https://acme.example/acct/1\"",
            "Recommended _submission._tcp.chat.example.org. SRV 0 1 587 chat.example.org.",
            "Recommended _submissions._tcp.chat.example.org. SRV 0 1 465 chat.example.org.",
            "Recommended _imap._tcp.chat.example.org. SRV 0 1 143 chat.example.org.",
            "Recommended _imaps._tcp.chat.example.org. SRV 0 1 993 chat.example.org.",
            "Recommended 7.113.0.203.in-addr.arpa. PTR chat.example.org.",
            "Recommended 7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR chat.example.org.",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn self_signed_relay_skips_mta_sts_and_caa() {
        let got = expected(&relay("_chat.test", TlsMode::SelfSigned), &host(), "1");
        assert!(
            got.iter()
                .all(|r| !r.name.contains("mta-sts") && !r.name.starts_with("_smtp._tls"))
        );
        assert!(got.iter().all(|r| r.rtype != Rtype::Caa));
        let www = got.iter().find(|r| r.name == "www._chat.test.").unwrap();
        assert_eq!(www.need, Need::Recommended);
    }

    #[test]
    fn external_tls_keeps_mta_sts_but_no_caa() {
        let got = expected(&relay("x.org", TlsMode::External), &host(), "1");
        assert!(got.iter().any(|r| r.name == "_mta-sts.x.org."));
        assert!(got.iter().all(|r| r.rtype != Rtype::Caa));
    }

    #[test]
    fn ipv6_only_host_requires_aaaa_and_unknown_account_gives_plain_caa() {
        let h = HostFacts {
            addrs: vec!["2001:db8::7".parse().unwrap()],
            dkim_public_key: None,
            acme_account: None,
        };
        let got = expected(&relay("x.org", TlsMode::Acme), &h, "1");
        assert!(got.iter().all(|r| r.rtype != Rtype::A));
        let aaaa = got.iter().find(|r| r.rtype == Rtype::Aaaa).unwrap();
        assert_eq!(aaaa.need, Need::Required);
        assert!(got.iter().all(|r| r.label != "DKIM key"));
        let caa = got.iter().find(|r| r.rtype == Rtype::Caa).unwrap();
        assert_eq!(caa.data, "0 issue \"letsencrypt.org\"");
    }

    #[test]
    fn config_gives_domain_mode_and_report_address() {
        let c = Config::parse(
            "[params]\nmail_domain = chat.example.org\nprivacy_mail = admin@example.org\n",
            "chatmail.ini",
        )
        .unwrap();
        let r = RelayDomain::from_config(&c);
        assert_eq!(r.domain, "chat.example.org");
        assert_eq!(r.tls, TlsMode::Acme);
        assert_eq!(r.report_address, "admin@example.org");
        let c = Config::parse("[params]\nmail_domain = _t.test\n", "chatmail.ini").unwrap();
        let r = RelayDomain::from_config(&c);
        assert_eq!(r.tls, TlsMode::SelfSigned);
        assert_eq!(r.report_address, "postmaster@_t.test");
    }

    #[test]
    fn sts_id_is_utc_minutes() {
        assert_eq!(new_sts_id(0), "197001010000");
        // 2026-11-25 19:07:00 UTC
        assert_eq!(new_sts_id(1_795_633_620), "202611251907");
        // leap day
        assert_eq!(new_sts_id(951_782_400), "200002290000");
    }
}
