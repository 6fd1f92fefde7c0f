//! Resolving the records a relay needs and judging what is published.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use super::records::{Expected, Rtype, Rule};
use super::system;

/// One lookup never takes longer than this, whatever the server does.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(6);

/// A published record, reduced to what the rules look at. Names are lowercase, absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addr(IpAddr),
    Mx(u16, String),
    /// The strings of one TXT record, joined.
    Txt(String),
    Cname(String),
    Srv {
        port: u16,
        target: String,
    },
    Caa {
        tag: String,
        value: String,
    },
    Ptr(String),
    Ns(String),
}

/// The answer to one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records found; `via` lists the CNAMEs followed to get there.
    Records {
        via: Vec<String>,
        answers: Vec<Answer>,
    },
    /// The name exists but has no record of this type.
    NoRecords,
    /// The name does not exist.
    NxDomain,
    /// No usable answer: timeout, SERVFAIL, unreachable server.
    Failed(String),
}

/// The result of judging one expected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    Missing(String),
    Wrong(String),
    /// Could not be checked (the server did not answer).
    Unknown(String),
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok(_))
    }
}

/// A resolver asking `server`, or the system's resolvers.
pub fn resolver(server: Option<SocketAddr>) -> anyhow::Result<TokioResolver> {
    match server {
        Some(addr) => resolver_at(&[addr]),
        None => resolver_for(&system::name_servers(Path::new(system::RESOLV_CONF))?),
    }
}

/// Short per-try timeouts (a lookup as a whole is bounded by [`LOOKUP_TIMEOUT`]), no hosts
/// file, no cache: the point is to see what the DNS publishes right now.
fn options() -> ResolverOpts {
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    // names are absolute: never retried with search domains appended
    options.ndots = 0;
    options
}

/// A resolver asking these servers (port 53), e.g. a zone's authoritative ones.
pub fn resolver_for(servers: &[IpAddr]) -> anyhow::Result<TokioResolver> {
    let addrs: Vec<SocketAddr> = servers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
    resolver_at(&addrs)
}

fn resolver_at(servers: &[SocketAddr]) -> anyhow::Result<TokioResolver> {
    let name_servers = servers
        .iter()
        .map(|addr| {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            ns
        })
        .collect();
    Resolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers),
        TokioRuntimeProvider::default(),
    )
    .with_options(options())
    .build()
    .map_err(|e| anyhow::anyhow!("cannot set up the DNS resolver: {e}"))
}

/// The zone holding `domain` and its name servers' addresses, found through `system`:
/// asking them directly shows a change at once, where a caching resolver may still serve
/// the old record until its TTL runs out.
pub async fn authoritative(
    system: &TokioResolver,
    domain: &str,
) -> Option<(String, Vec<(String, IpAddr)>)> {
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    // the domain itself, then its parents, but never a top-level domain alone
    for i in 0..labels.len().saturating_sub(1) {
        let zone = format!("{}.", labels[i..].join("."));
        let names: Vec<String> = match lookup(system, &zone, Rtype::Ns).await {
            Outcome::Records { answers, .. } => answers
                .into_iter()
                .filter_map(|a| match a {
                    Answer::Ns(n) => Some(n),
                    _ => None,
                })
                .collect(),
            Outcome::NoRecords | Outcome::NxDomain => continue,
            Outcome::Failed(_) => return None,
        };
        let mut servers = Vec::new();
        for ns in names {
            let ips = tokio::time::timeout(LOOKUP_TIMEOUT, system.lookup_ip(ns.as_str())).await;
            if let Ok(Ok(ips)) = ips {
                // IPv4 first: this machine may have no IPv6 route
                let mut ips: Vec<IpAddr> = ips.iter().collect();
                ips.sort_by_key(|ip| ip.is_ipv6());
                servers.extend(ips.into_iter().map(|ip| (ns.clone(), ip)));
            }
        }
        return (!servers.is_empty()).then_some((zone, servers));
    }
    None
}

fn record_type(t: Rtype) -> RecordType {
    match t {
        Rtype::A => RecordType::A,
        Rtype::Aaaa => RecordType::AAAA,
        Rtype::Mx => RecordType::MX,
        Rtype::Txt => RecordType::TXT,
        Rtype::Cname => RecordType::CNAME,
        Rtype::Srv => RecordType::SRV,
        Rtype::Caa => RecordType::CAA,
        Rtype::Ptr => RecordType::PTR,
        Rtype::Ns => RecordType::NS,
    }
}

fn name(n: &impl ToString) -> String {
    let mut s = n.to_string().to_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// One lookup, bounded in time, with the error cases told apart.
pub async fn lookup(resolver: &TokioResolver, owner: &str, rtype: Rtype) -> Outcome {
    let query = resolver.lookup(owner, record_type(rtype));
    let result = match tokio::time::timeout(LOOKUP_TIMEOUT, query).await {
        Err(_) => return Outcome::Failed("no answer (timed out)".into()),
        Ok(r) => r,
    };
    let lookup = match result {
        Ok(l) => l,
        Err(e) if e.is_nx_domain() => return Outcome::NxDomain,
        Err(e) if e.is_no_records_found() => return Outcome::NoRecords,
        Err(e) => return Outcome::Failed(describe(&e)),
    };
    let mut via = Vec::new();
    let mut answers = Vec::new();
    for record in lookup.answers() {
        match &record.data {
            RData::CNAME(c) if rtype != Rtype::Cname => via.push(name(&c.0)),
            RData::CNAME(c) => answers.push(Answer::Cname(name(&c.0))),
            RData::A(a) if rtype == Rtype::A => answers.push(Answer::Addr(a.0.into())),
            RData::AAAA(a) if rtype == Rtype::Aaaa => answers.push(Answer::Addr(a.0.into())),
            RData::MX(mx) => answers.push(Answer::Mx(mx.preference, name(&mx.exchange))),
            RData::TXT(txt) => answers.push(Answer::Txt(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect(),
            )),
            RData::SRV(srv) => answers.push(Answer::Srv {
                port: srv.port,
                target: name(&srv.target),
            }),
            RData::CAA(caa) => answers.push(Answer::Caa {
                tag: caa.tag.to_lowercase(),
                value: String::from_utf8_lossy(&caa.value).into_owned(),
            }),
            RData::PTR(p) => answers.push(Answer::Ptr(name(&p.0))),
            RData::NS(ns) => answers.push(Answer::Ns(name(&ns.0))),
            _ => {}
        }
    }
    if answers.is_empty() && via.is_empty() {
        return Outcome::NoRecords;
    }
    // answers may be empty: a CNAME whose target has no such record
    Outcome::Records { via, answers }
}

/// A resolver error in words an operator can act on.
pub fn describe(e: &NetError) -> String {
    match e {
        NetError::Timeout => "no answer (timed out)".into(),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
            "SERVFAIL: the DNS server could not answer (broken delegation or DNSSEC?)".into()
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => {
            "REFUSED: the DNS server does not answer this query".into()
        }
        NetError::Dns(DnsError::ResponseCode(code)) => format!("error response {code}"),
        NetError::Io(io) => format!("cannot reach the DNS server: {io}"),
        NetError::NoConnections => "cannot reach the DNS server".into(),
        other => other.to_string(),
    }
}

/// Looks up what `expected` needs with `resolver`; a CNAME it does not follow (an
/// authoritative server answers only for its own zone) is followed with `follow`.
pub async fn resolve_following(
    resolver: &TokioResolver,
    follow: Option<&TokioResolver>,
    expected: &Expected,
) -> Outcome {
    let outcome = resolve(resolver, expected).await;
    let (Some(follow), Outcome::Records { via, answers }) = (follow, &outcome) else {
        return outcome;
    };
    let Some(target) = via.last().filter(|_| answers.is_empty()) else {
        return outcome;
    };
    match lookup(follow, target, expected.rtype).await {
        Outcome::Records { via: more, answers } => Outcome::Records {
            via: via.iter().chain(&more).cloned().collect(),
            answers,
        },
        _ => outcome,
    }
}

/// Looks up what `expected` needs. Aliases (`www`, `mta-sts`) are looked up as CNAME
/// first, then as addresses: pointing them at the host directly works too.
pub async fn resolve(resolver: &TokioResolver, expected: &Expected) -> Outcome {
    match &expected.rule {
        Rule::AliasOf(..) => {
            let cname = lookup(resolver, &expected.name, Rtype::Cname).await;
            if cname != Outcome::NoRecords {
                return cname;
            }
            let (v4, v6) = tokio::join!(
                lookup(resolver, &expected.name, Rtype::A),
                lookup(resolver, &expected.name, Rtype::Aaaa)
            );
            let mut answers = Vec::new();
            for o in [&v4, &v6] {
                if let Outcome::Records { answers: a, .. } = o {
                    answers.extend(a.iter().cloned());
                }
            }
            match (answers.is_empty(), v4) {
                (false, _) => Outcome::Records {
                    via: vec![],
                    answers,
                },
                (true, failed @ Outcome::Failed(_)) => failed,
                (true, _) => Outcome::NoRecords,
            }
        }
        _ => {
            let outcome = lookup(resolver, &expected.name, expected.rtype).await;
            if !matches!(outcome, Outcome::NxDomain | Outcome::NoRecords) {
                return outcome;
            }
            // a CNAME to a name that does not exist answers NXDOMAIN: say where it points
            if let Outcome::Records { answers, .. } =
                lookup(resolver, &expected.name, Rtype::Cname).await
                && let Some(Answer::Cname(target)) = answers.first()
            {
                return Outcome::Records {
                    via: vec![target.clone()],
                    answers: vec![],
                };
            }
            outcome
        }
    }
}

fn txts(answers: &[Answer]) -> Vec<&str> {
    answers
        .iter()
        .filter_map(|a| match a {
            Answer::Txt(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// `tag=value` pairs of a DKIM/DMARC-style record (`;`-separated, whitespace ignored).
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_lowercase(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Long values (DKIM keys) shortened for a one-line report.
fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s.to_string()
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|t| format!("\"{}\"", short(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(a: &Answer) -> String {
    match a {
        Answer::Addr(ip) => ip.to_string(),
        Answer::Mx(p, x) => format!("{p} {x}"),
        Answer::Txt(t) => format!("\"{}\"", short(t)),
        Answer::Cname(c) => format!("CNAME {c}"),
        Answer::Srv { port, target } => format!("port {port} on {target}"),
        Answer::Caa { tag, value } => format!("{tag} \"{value}\""),
        Answer::Ptr(p) | Answer::Ns(p) => p.clone(),
    }
}

fn show_all(answers: &[Answer]) -> String {
    answers.iter().map(show).collect::<Vec<_>>().join(", ")
}

/// Judges what was found against what is needed.
pub fn judge(expected: &Expected, outcome: &Outcome) -> Verdict {
    let (via, answers) = match outcome {
        Outcome::Failed(why) => return Verdict::Unknown(why.clone()),
        Outcome::NxDomain => return Verdict::Missing(format!("{} does not exist", expected.name)),
        Outcome::NoRecords => {
            return Verdict::Missing(format!("no {} record", expected.rtype));
        }
        Outcome::Records { via, answers } => (via, answers),
    };
    if let (true, Some(target)) = (answers.is_empty(), via.last()) {
        return Verdict::Wrong(format!(
            "CNAME to {target}, which has no {} record",
            expected.rtype
        ));
    }
    let verdict = judge_answers(&expected.rule, answers);
    match (verdict, via.last()) {
        (Verdict::Ok(s), Some(t)) => Verdict::Ok(format!("{s} (via CNAME {t})")),
        (Verdict::Wrong(s), Some(t)) => Verdict::Wrong(format!("{s} (via CNAME {t})")),
        (v, _) => v,
    }
}

fn judge_answers(rule: &Rule, answers: &[Answer]) -> Verdict {
    let found = show_all(answers);
    match rule {
        Rule::HostAddresses(host) => {
            let foreign: Vec<String> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Addr(ip) if !host.contains(ip) => Some(ip.to_string()),
                    _ => None,
                })
                .collect();
            let behind_nat = !host.is_empty()
                && host.iter().all(|a| !is_public(a))
                && answers
                    .iter()
                    .all(|a| matches!(a, Answer::Addr(ip) if is_public(ip)));
            if foreign.is_empty() {
                Verdict::Ok(found)
            } else if behind_nat {
                // cloud hosts often see only a private address, NATed to the public one
                Verdict::Ok(format!(
                    "{found} (not verified: the host has only private addresses)"
                ))
            } else {
                Verdict::Wrong(format!("{} not an address of the host", foreign.join(", ")))
            }
        }
        Rule::MxTo(target) => {
            if answers
                .iter()
                .any(|a| matches!(a, Answer::Mx(_, x) if x == target))
            {
                Verdict::Ok(found)
            } else {
                Verdict::Wrong(format!("MX {found}"))
            }
        }
        Rule::Spf(addrs) => {
            let spf: Vec<&str> = txts(answers)
                .into_iter()
                .filter(|t| starts_with_ci(t, "v=spf1"))
                .collect();
            match spf.as_slice() {
                [] => Verdict::Missing("no SPF record".into()),
                [one] if spf_allows(one, addrs) => Verdict::Ok(format!("\"{one}\"")),
                [one] => Verdict::Wrong(format!("\"{one}\" does not allow the host")),
                many => Verdict::Wrong(format!(
                    "{} SPF records, there must be one: {}",
                    many.len(),
                    quoted_list(many)
                )),
            }
        }
        Rule::Dkim(key) => {
            let dkim: Vec<&str> = txts(answers)
                .into_iter()
                .filter(|t| tag(&tags(t), "p").is_some())
                .collect();
            if dkim.iter().any(|t| tag(&tags(t), "p") == Some(key)) {
                Verdict::Ok("public key matches the host's".into())
            } else if dkim.is_empty() {
                Verdict::Wrong(found)
            } else {
                Verdict::Wrong(format!(
                    "another public key than the host's: {}",
                    quoted_list(&dkim)
                ))
            }
        }
        Rule::Dmarc => {
            let dmarc: Vec<&str> = txts(answers)
                .into_iter()
                .filter(|t| starts_with_ci(t, "v=DMARC1"))
                .collect();
            match dmarc.as_slice() {
                [] => Verdict::Missing("no DMARC record".into()),
                [one] if tag(&tags(one), "p").is_some_and(|p| p.eq_ignore_ascii_case("reject")) => {
                    Verdict::Ok(format!("\"{one}\""))
                }
                [one] => Verdict::Wrong(format!("\"{one}\" (the policy must be p=reject)")),
                many => Verdict::Wrong(format!(
                    "{} DMARC records, there must be one: {}",
                    many.len(),
                    quoted_list(many)
                )),
            }
        }
        Rule::MtaSts => match txts(answers)
            .into_iter()
            .find(|t| starts_with_ci(t, "v=STSv1"))
        {
            Some(t) if sts_id(t).is_some() => Verdict::Ok(format!("\"{t}\"")),
            Some(t) => Verdict::Wrong(format!("\"{t}\" has no valid id")),
            None => Verdict::Wrong(found),
        },
        Rule::TlsRpt => match txts(answers)
            .into_iter()
            .find(|t| starts_with_ci(t, "v=TLSRPTv1"))
        {
            Some(t) if tag(&tags(t), "rua").is_some_and(|r| !r.is_empty()) => {
                Verdict::Ok(format!("\"{t}\""))
            }
            Some(t) => Verdict::Wrong(format!("\"{t}\" has no rua= address")),
            None => Verdict::Wrong(found),
        },
        Rule::AliasOf(target, host) => {
            let cname = answers.iter().find_map(|a| match a {
                Answer::Cname(c) => Some(c),
                _ => None,
            });
            match cname {
                Some(c) if c == target => Verdict::Ok(format!("CNAME {c}")),
                Some(c) => Verdict::Wrong(format!("CNAME {c}")),
                None => judge_answers(&Rule::HostAddresses(host.clone()), answers),
            }
        }
        Rule::Srv(port, target) => {
            let ok = answers.iter().any(
                |a| matches!(a, Answer::Srv { port: p, target: t } if p == port && t == target),
            );
            if ok {
                Verdict::Ok(found)
            } else {
                Verdict::Wrong(found)
            }
        }
        Rule::Caa(account) => {
            let issue: Vec<&str> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Caa { tag, value } if tag == "issue" => Some(value.as_str()),
                    _ => None,
                })
                .collect();
            let allows = |v: &&str| {
                let mut parts = v.split(';');
                let ca = parts.next().unwrap_or("").trim();
                let uri = parts
                    .filter_map(|p| p.trim().strip_prefix("accounturi="))
                    .next();
                ca.eq_ignore_ascii_case("letsencrypt.org")
                    && match (uri, account) {
                        (Some(u), Some(a)) => u == a,
                        _ => true,
                    }
            };
            if issue.iter().any(allows) {
                Verdict::Ok(found)
            } else {
                Verdict::Wrong(format!("{found} (Let's Encrypt may not issue)"))
            }
        }
        Rule::PtrTo(target) => {
            if answers
                .iter()
                .any(|a| matches!(a, Answer::Ptr(p) if p == target))
            {
                Verdict::Ok(found)
            } else {
                Verdict::Wrong(found)
            }
        }
    }
}

/// Whether an address is reachable from the internet (not private, shared or local).
fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let shared = o[0] == 100 && (64..128).contains(&o[1]);
            !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || shared)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || unique_local || link_local)
        }
    }
}

/// Whether an SPF record lets the host send: `a`, `mx` or one of its addresses, without
/// a domain argument pointing elsewhere.
fn spf_allows(record: &str, addrs: &[IpAddr]) -> bool {
    record.split_whitespace().skip(1).any(|term| {
        let term = term.trim_start_matches(['+']).to_lowercase();
        if term == "a" || term == "mx" {
            return true;
        }
        let net = term
            .strip_prefix("ip4:")
            .or_else(|| term.strip_prefix("ip6:"));
        match net {
            Some(net) => {
                let addr = net.split('/').next().unwrap_or("");
                addr.parse::<IpAddr>().is_ok_and(|a| addrs.contains(&a))
            }
            None => false,
        }
    })
}

/// The id of an MTA-STS record: 1-32 letters and digits.
pub fn sts_id(record: &str) -> Option<String> {
    let tags = tags(record);
    let id = tag(&tags, "id")?;
    (!id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::{Need, Rtype};

    fn exp(rule: Rule) -> Expected {
        Expected {
            name: "x.org.".into(),
            rtype: Rtype::Txt,
            data: String::new(),
            need: Need::Required,
            rule,
            label: "",
        }
    }

    fn found(answers: Vec<Answer>) -> Outcome {
        Outcome::Records {
            via: vec![],
            answers,
        }
    }

    fn txt(s: &str) -> Answer {
        Answer::Txt(s.into())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_must_belong_to_the_host() {
        let rule = Rule::HostAddresses(vec![ip("203.0.113.7")]);
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![Answer::Addr(ip("203.0.113.7"))])
            )
            .is_ok()
        );
        assert_eq!(
            judge(
                &exp(rule.clone()),
                &found(vec![Answer::Addr(ip("198.51.100.1"))])
            ),
            Verdict::Wrong("198.51.100.1 not an address of the host".into())
        );
        assert_eq!(
            judge(&exp(rule), &Outcome::NxDomain),
            Verdict::Missing("x.org. does not exist".into())
        );
    }

    #[test]
    fn a_host_behind_nat_is_not_contradicted() {
        let rule = Rule::HostAddresses(vec![ip("10.0.0.5")]);
        let v = judge(
            &exp(rule.clone()),
            &found(vec![Answer::Addr(ip("198.51.100.1"))]),
        );
        assert!(v.is_ok(), "{v:?}");
        assert!(!judge(&exp(rule), &found(vec![Answer::Addr(ip("10.0.0.6"))])).is_ok());
        assert!(!is_public(&ip("fd77::10")));
        assert!(!is_public(&ip("100.64.0.1")));
        assert!(is_public(&ip("2001:db8::1")));
    }

    #[test]
    fn mx_any_preference_to_the_domain() {
        let rule = Rule::MxTo("x.org.".into());
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![Answer::Mx(5, "x.org.".into())])
            )
            .is_ok()
        );
        assert_eq!(
            judge(
                &exp(rule),
                &found(vec![Answer::Mx(10, "mail.other.org.".into())])
            ),
            Verdict::Wrong("MX 10 mail.other.org.".into())
        );
    }

    #[test]
    fn spf_by_meaning() {
        let rule = Rule::Spf(vec![ip("203.0.113.7")]);
        let j = |records: &[&str]| {
            judge(
                &exp(rule.clone()),
                &found(records.iter().map(|r| txt(r)).collect()),
            )
        };
        assert!(j(&["v=spf1 a ~all"]).is_ok());
        assert!(j(&["v=spf1 mx -all", "google-site-verification=x"]).is_ok());
        assert!(j(&["v=spf1 ip4:203.0.113.7/32 -all"]).is_ok());
        assert!(matches!(j(&["v=spf1 -all"]), Verdict::Wrong(_)));
        assert!(
            matches!(j(&["v=spf1 a ~all", "v=spf1 mx ~all"]), Verdict::Wrong(w) if w.starts_with("2 SPF records"))
        );
        assert_eq!(j(&["other"]), Verdict::Missing("no SPF record".into()));
    }

    #[test]
    fn dkim_compares_the_key_only() {
        let rule = Rule::Dkim("MIIBkey".into());
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![txt("v=DKIM1; k=rsa; p=MIIB key")])
            )
            .is_ok()
        );
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![txt("v=DKIM1;k=rsa;p=MIIBkey;s=email;t=s")])
            )
            .is_ok()
        );
        assert_eq!(
            judge(&exp(rule), &found(vec![txt("v=DKIM1;p=OTHER")])),
            Verdict::Wrong("another public key than the host's: \"v=DKIM1;p=OTHER\"".into())
        );
    }

    #[test]
    fn dmarc_needs_reject() {
        let j = |r: &str| judge(&exp(Rule::Dmarc), &found(vec![txt(r)]));
        assert!(j("v=DMARC1; p=reject").is_ok());
        assert!(matches!(j("v=DMARC1;p=none"), Verdict::Wrong(_)));
    }

    #[test]
    fn sts_and_tlsrpt() {
        assert_eq!(
            sts_id("v=STSv1; id=202611251900"),
            Some("202611251900".into())
        );
        assert_eq!(sts_id("v=STSv1; id=bad-id"), None);
        assert!(judge(&exp(Rule::MtaSts), &found(vec![txt("v=STSv1; id=1")])).is_ok());
        assert!(
            judge(
                &exp(Rule::TlsRpt),
                &found(vec![txt("v=TLSRPTv1; rua=mailto:a@b")])
            )
            .is_ok()
        );
        assert!(!judge(&exp(Rule::TlsRpt), &found(vec![txt("v=TLSRPTv1;")])).is_ok());
    }

    #[test]
    fn alias_by_cname_or_addresses() {
        let rule = Rule::AliasOf("x.org.".into(), vec![ip("203.0.113.7")]);
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![Answer::Cname("x.org.".into())])
            )
            .is_ok()
        );
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![Answer::Addr(ip("203.0.113.7"))])
            )
            .is_ok()
        );
        assert_eq!(
            judge(&exp(rule), &found(vec![Answer::Cname("y.org.".into())])),
            Verdict::Wrong("CNAME y.org.".into())
        );
    }

    #[test]
    fn caa_account_must_match_when_named() {
        let caa = |v: &str| Answer::Caa {
            tag: "issue".into(),
            value: v.into(),
        };
        let rule = Rule::Caa(Some("https://a/1".into()));
        assert!(judge(&exp(rule.clone()), &found(vec![caa("letsencrypt.org")])).is_ok());
        assert!(
            judge(
                &exp(rule.clone()),
                &found(vec![caa("letsencrypt.org;accounturi=https://a/1")])
            )
            .is_ok()
        );
        assert!(
            !judge(
                &exp(rule.clone()),
                &found(vec![caa("letsencrypt.org; accounturi=https://a/2")])
            )
            .is_ok()
        );
        assert!(!judge(&exp(rule), &found(vec![caa("sectigo.com")])).is_ok());
    }

    /// A DNS server on loopback answering from a table: NXDOMAIN for names not in it, an
    /// empty answer for other types of listed names.
    fn fake_server(table: Vec<(&'static str, RData)>) -> SocketAddr {
        use hickory_resolver::proto::op::{Message, OpCode};
        use hickory_resolver::proto::rr::{Name, Record};
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(q) = query.queries.first().cloned() else {
                    continue;
                };
                let mut resp = Message::response(query.metadata.id, OpCode::Query);
                resp.metadata.authoritative = true;
                resp.metadata.recursion_desired = query.metadata.recursion_desired;
                resp.add_query(q.clone());
                let qname = q.name.to_string().to_lowercase();
                let listed: Vec<_> = table.iter().filter(|(n, _)| *n == qname).collect();
                if listed.is_empty() {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                }
                for (owner, rdata) in listed {
                    if rdata.record_type() == q.query_type {
                        let owner = Name::from_ascii(owner).unwrap();
                        resp.add_answer(Record::from_rdata(owner, 60, rdata.clone()));
                    }
                }
                let _ = sock.send_to(&resp.to_vec().unwrap(), peer);
            }
        });
        addr
    }

    fn dns_name(s: &str) -> hickory_resolver::proto::rr::Name {
        hickory_resolver::proto::rr::Name::from_ascii(s).unwrap()
    }

    #[tokio::test]
    async fn finds_the_zone_and_its_servers() {
        use hickory_resolver::proto::rr::rdata::{A, NS};
        let server = fake_server(vec![
            (
                "example.test.",
                RData::NS(NS(dns_name("ns1.example.test."))),
            ),
            (
                "ns1.example.test.",
                RData::A(A("127.0.0.53".parse().unwrap())),
            ),
            (
                "chat.example.test.",
                RData::A(A("203.0.113.7".parse().unwrap())),
            ),
        ]);
        let system = resolver(Some(server)).unwrap();
        assert_eq!(
            authoritative(&system, "chat.example.test").await,
            Some((
                "example.test.".into(),
                vec![("ns1.example.test.".into(), ip("127.0.0.53"))]
            ))
        );
        assert_eq!(authoritative(&system, "chat.other.test").await, None);
    }

    #[tokio::test]
    async fn a_cname_out_of_the_zone_is_followed_elsewhere() {
        use hickory_resolver::proto::rr::rdata::{CNAME, TXT};
        let zone = fake_server(vec![(
            "_dmarc.chat.example.test.",
            RData::CNAME(CNAME(dns_name("dmarc.provider.test."))),
        )]);
        let elsewhere = fake_server(vec![(
            "dmarc.provider.test.",
            RData::TXT(TXT::new(vec!["v=DMARC1;p=reject".into()])),
        )]);
        let (zone, elsewhere) = (
            resolver(Some(zone)).unwrap(),
            resolver(Some(elsewhere)).unwrap(),
        );
        let mut dmarc = exp(Rule::Dmarc);
        dmarc.name = "_dmarc.chat.example.test.".into();
        let alone = resolve_following(&zone, None, &dmarc).await;
        assert_eq!(
            judge(&dmarc, &alone),
            Verdict::Wrong("CNAME to dmarc.provider.test., which has no TXT record".into())
        );
        let followed = resolve_following(&zone, Some(&elsewhere), &dmarc).await;
        assert_eq!(
            judge(&dmarc, &followed),
            Verdict::Ok("\"v=DMARC1;p=reject\" (via CNAME dmarc.provider.test.)".into())
        );
    }

    #[test]
    fn resolver_errors_in_words() {
        let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
        assert!(describe(&servfail).starts_with("SERVFAIL"));
        let refused = NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused));
        assert!(describe(&refused).starts_with("REFUSED"));
        assert_eq!(describe(&NetError::Timeout), "no answer (timed out)");
    }

    #[test]
    fn cname_chain_and_failures_are_reported() {
        let rule = Rule::Dmarc;
        let via = Outcome::Records {
            via: vec!["dmarc.provider.org.".into()],
            answers: vec![txt("v=DMARC1;p=reject")],
        };
        assert_eq!(
            judge(&exp(rule.clone()), &via),
            Verdict::Ok("\"v=DMARC1;p=reject\" (via CNAME dmarc.provider.org.)".into())
        );
        let dangling = Outcome::Records {
            via: vec!["gone.org.".into()],
            answers: vec![],
        };
        assert_eq!(
            judge(&exp(rule.clone()), &dangling),
            Verdict::Wrong("CNAME to gone.org., which has no TXT record".into())
        );
        assert_eq!(
            judge(&exp(rule), &Outcome::Failed("no answer (timed out)".into())),
            Verdict::Unknown("no answer (timed out)".into())
        );
    }
}
