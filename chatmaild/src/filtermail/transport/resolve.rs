//! Name resolution for remote delivery: MX hosts of a recipient domain and the addresses
//! of a host.
//!
//! Production uses the system resolver (unbound on the relay, via `/etc/resolv.conf`).
//! Everything goes through the [`Resolve`] trait so that tests can map test domains to
//! loopback without any query leaving the machine.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

// DnsResolver uses mail-auth's hickory, which Apple targets do not build (Cargo.toml)
#[cfg(not(target_vendor = "apple"))]
use {
    mail_auth::hickory_resolver::TokioResolver,
    mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig},
    mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider,
    mail_auth::hickory_resolver::proto::rr::RData,
    std::time::Duration,
};

use crate::filtermail::reply::Reply;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a lookup produced no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name does not exist.
    NxDomain,
    /// The name exists but has no records of the asked type.
    NoRecords,
    /// Timeout, SERVFAIL, unreachable resolver...: worth retrying later.
    Other(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// The exchange name without trailing dot; empty for the null MX (`.`).
    pub exchange: String,
}

pub trait Resolve: Send + Sync + 'static {
    /// The MX records of `domain`, in any order.
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, LookupError>>;

    /// The IPv4 and IPv6 addresses of `host`.
    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, LookupError>>;
}

/// DNS through hickory: the system's resolver in production.
#[cfg(not(target_vendor = "apple"))]
pub struct DnsResolver {
    inner: TokioResolver,
}

#[cfg(not(target_vendor = "apple"))]
impl DnsResolver {
    /// The resolver configured in `/etc/resolv.conf` (unbound on a relay).
    pub fn from_system_conf() -> Result<DnsResolver, String> {
        let inner = TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| format!("cannot set up DNS resolver: {e}"))?;
        Ok(DnsResolver { inner })
    }

    /// One name server over UDP at `server` (tests run one on loopback so that no query
    /// leaves the machine).
    pub fn with_name_server(server: SocketAddr, timeout: Duration) -> Result<DnsResolver, String> {
        let mut name_server = NameServerConfig::udp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        builder.options_mut().timeout = timeout;
        builder.options_mut().attempts = 1;
        let inner = builder
            .build()
            .map_err(|e| format!("cannot set up DNS resolver: {e}"))?;
        Ok(DnsResolver { inner })
    }
}

#[cfg(not(target_vendor = "apple"))]
fn lookup_error(e: &mail_auth::hickory_resolver::net::NetError) -> LookupError {
    if e.is_nx_domain() {
        LookupError::NxDomain
    } else if e.is_no_records_found() {
        LookupError::NoRecords
    } else {
        LookupError::Other(e.to_string())
    }
}

/// Fully qualified, so that resolv.conf search domains are never appended.
#[cfg(not(target_vendor = "apple"))]
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

#[cfg(not(target_vendor = "apple"))]
impl Resolve for DnsResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<Mx>, LookupError>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .mx_lookup(fqdn(domain))
                .await
                .map_err(|e| lookup_error(&e))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: mx.exchange.to_ascii().trim_end_matches('.').to_owned(),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, LookupError>> {
        Box::pin(async move {
            let lookup = self
                .inner
                .lookup_ip(fqdn(host))
                .await
                .map_err(|e| lookup_error(&e))?;
            Ok(lookup.iter().collect())
        })
    }
}

/// The hosts to try for a recipient domain, most preferred first, or the reply that ends
/// delivery to it.
pub fn mx_hosts(domain: &str, lookup: Result<Vec<Mx>, LookupError>) -> Result<Vec<String>, Reply> {
    match lookup {
        Ok(mut records) if !records.is_empty() => {
            // RFC 7505: a single MX with an empty exchange means "accepts no mail".
            if records.iter().any(|mx| mx.exchange.is_empty()) {
                return Err(Reply::new(
                    556,
                    "5.1.10 Permanent failure: Recipient address has null MX",
                ));
            }
            // Stable: equal preferences keep the resolver's (randomised) order.
            records.sort_by_key(|mx| mx.preference);
            let mut hosts: Vec<String> = Vec::with_capacity(records.len());
            for mx in records {
                let host = mx.exchange.to_ascii_lowercase();
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            Ok(hosts)
        }
        // RFC 5321 §5.1: without MX records the domain itself is the implicit MX.
        Ok(_) | Err(LookupError::NoRecords) => Ok(vec![domain.to_owned()]),
        Err(LookupError::NxDomain) => {
            Err(Reply::new(512, format!("Domain {domain} does not exist")))
        }
        Err(LookupError::Other(e)) => {
            log::warn!("MX lookup for {domain} failed: {e}");
            Err(Reply::new(
                421,
                format!("DNS resolution failed for {domain}"),
            ))
        }
    }
}

/// Lets reqwest resolve `/mxdeliv` hosts through the same resolver as SMTP delivery.
pub struct ForReqwest(pub Arc<dyn Resolve>);

impl reqwest::dns::Resolve for ForReqwest {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = resolver
                .ips(&host)
                .await
                .map_err(|e| format!("cannot resolve {host}: {e:?}"))?;
            // reqwest puts the URL's port into every address.
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    #[test]
    fn sorted_by_preference() {
        let hosts = mx_hosts(
            "d.example",
            Ok(vec![
                mx(20, "B.d.example"),
                mx(10, "a.d.example"),
                mx(20, "b.d.example"),
            ]),
        );
        assert_eq!(hosts, Ok(vec!["a.d.example".into(), "b.d.example".into()]));
    }

    #[test]
    fn implicit_mx() {
        let want = Ok(vec!["d.example".to_owned()]);
        assert_eq!(mx_hosts("d.example", Ok(vec![])), want);
        assert_eq!(mx_hosts("d.example", Err(LookupError::NoRecords)), want);
    }

    #[test]
    fn failures() {
        assert_eq!(
            mx_hosts("d.example", Ok(vec![mx(0, "")])).unwrap_err().code,
            556
        );
        let nx = mx_hosts("d.example", Err(LookupError::NxDomain)).unwrap_err();
        assert_eq!(nx.to_string(), "512 Domain d.example does not exist");
        let other = mx_hosts("d.example", Err(LookupError::Other("SERVFAIL".into()))).unwrap_err();
        assert_eq!(other.to_string(), "421 DNS resolution failed for d.example");
    }
}
