//! Transport mode: Postfix's `default_transport`. Postfix hands every non-local message
//! over LMTP; filtermail delivers one copy per recipient domain to the remote relay and
//! answers LMTP-style, one reply per recipient, so Postfix bounces or retries each
//! recipient on its own.
//!
//! Per destination: the MX hosts in preference order; on each, `POST /mxdeliv` over HTTPS
//! first (chatmail relays accept mail there without SMTP round trips), then SMTP on port
//! 25 with mandatory STARTTLS.

pub mod cache;
pub mod https;
pub mod resolve;
pub mod smtp;
pub mod tls;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;

use self::cache::{HostCache, Slots};
use self::https::{MxDeliv, Outcome};
use self::resolve::{Resolve, mx_hosts};
use self::tls::{TlsConfigs, TlsPolicy};
use super::address::domain_of;
use super::data::unstuff;
use super::reply::Reply;
use super::smtp::server::Limits;
use super::smtp::{Envelope, Handler};

/// How long a host that had to be reached by SMTP is not offered HTTPS again.
const SMTP_ONLY_FOR: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// EHLO name: the raw `mail_domain` value.
    pub helo: String,
    /// 443 on relays; tests use a local port.
    pub https_port: u16,
    /// 25 on relays; tests use a local port.
    pub smtp_port: u16,
    pub https_timeout: Duration,
    pub smtp_timeout: Duration,
    /// Concurrent deliveries to one destination domain; more are deferred.
    pub per_destination: usize,
}

impl TransportSettings {
    pub fn new(helo: &str) -> TransportSettings {
        TransportSettings {
            helo: helo.to_owned(),
            https_port: 443,
            smtp_port: 25,
            https_timeout: Duration::from_secs(60),
            smtp_timeout: Duration::from_secs(300),
            per_destination: 30,
        }
    }
}

/// Limits of the LMTP listener. Postfix has already applied `max_message_size` to the
/// queue file; what it streams over LMTP also carries its own Received header and
/// dot-stuffing, so the same limit here would reject mail that Postfix accepted. The
/// slack only bounds memory;
/// the remote relay applies its own limit.
pub fn lmtp_limits(max_message_size: usize) -> Limits {
    let slack = (max_message_size / 4).max(1 << 20);
    Limits::new(max_message_size.saturating_add(slack))
}

/// The LMTP handler of transport mode.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TransportSettings,
    resolver: Arc<dyn Resolve>,
    tls: TlsConfigs,
    mxdeliv: MxDeliv,
    smtp_only: HostCache,
    slots: Slots,
}

/// Where the copy for one recipient domain goes.
struct Destination {
    /// MX host names in preference order, or the address of an IP literal.
    hosts: Vec<Host>,
    policy: TlsPolicy,
}

struct Host {
    name: String,
    /// Set for IP literals: no name to resolve.
    ip: Option<IpAddr>,
}

/// One message as handed over by Postfix.
struct Message {
    mail_from: Option<String>,
    /// Dot-stuffed, as received (re-sent verbatim by SMTP).
    stuffed: Vec<u8>,
    /// The raw message (the `/mxdeliv` body; cheap to clone per attempt).
    raw: Bytes,
}

impl Transport {
    pub fn new(
        settings: TransportSettings,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Transport, String> {
        let tls = TlsConfigs::new()?;
        let mxdeliv = MxDeliv::new(
            resolver.clone(),
            settings.https_port,
            settings.https_timeout,
        )?;
        let slots = Slots::new(settings.per_destination);
        Ok(Transport {
            inner: Arc::new(Inner {
                settings,
                resolver,
                tls,
                mxdeliv,
                smtp_only: HostCache::new(SMTP_ONLY_FOR),
                slots,
            }),
        })
    }

    /// Deliver one message; one reply per recipient, in RCPT order.
    pub async fn deliver(&self, envelope: Envelope) -> Vec<Reply> {
        let message = Arc::new(Message {
            mail_from: envelope.mail_from,
            raw: Bytes::from(unstuff(&envelope.data)),
            stuffed: envelope.data,
        });
        let mut tasks = Vec::new();
        for (domain, indexes) in group_by_domain(&envelope.rcpt_to) {
            let rcpts: Vec<String> = indexes
                .iter()
                .map(|&i| envelope.rcpt_to[i].clone())
                .collect();
            let inner = self.inner.clone();
            let message = message.clone();
            // Destinations are independent: one slow MX must not delay the others.
            let task =
                tokio::spawn(async move { inner.deliver_to(&domain, &rcpts, &message).await });
            tasks.push((indexes, task));
        }
        let mut replies = vec![Reply::new(451, "Local error"); envelope.rcpt_to.len()];
        for (indexes, task) in tasks {
            match task.await {
                Ok(group) if group.len() == indexes.len() => {
                    for (i, reply) in indexes.into_iter().zip(group) {
                        replies[i] = reply;
                    }
                }
                Ok(_) => log::error!("delivery returned a wrong number of replies"),
                Err(e) => log::error!("delivery task failed: {e}"),
            }
        }
        replies
    }
}

impl Handler for Transport {
    /// Postfix speaks LMTP to the transport; a plain SMTP client can only get one reply,
    /// so it gets the first failure (it will retry; recipients already delivered may then
    /// get a duplicate, which is better than a silently lost message).
    async fn data(&self, envelope: Envelope) -> Reply {
        let replies = self.deliver(envelope).await;
        replies
            .iter()
            .find(|r| !r.is_positive())
            .or(replies.first())
            .cloned()
            .unwrap_or_else(|| Reply::new(451, "Local error"))
    }

    async fn lmtp_data(&self, envelope: Envelope) -> Vec<Reply> {
        self.deliver(envelope).await
    }
}

/// Recipient indexes per domain, domains in order of first appearance.
fn group_by_domain(rcpt_to: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, rcpt) in rcpt_to.iter().enumerate() {
        let domain = domain_of(rcpt).to_ascii_lowercase();
        match groups.iter_mut().find(|(d, _)| *d == domain) {
            Some((_, indexes)) => indexes.push(i),
            None => groups.push((domain, vec![i])),
        }
    }
    groups
}

impl Inner {
    async fn deliver_to(&self, domain: &str, rcpts: &[String], message: &Message) -> Vec<Reply> {
        let all = |reply: Reply| vec![reply; rcpts.len()];
        let Some(_slot) = self.slots.try_acquire(domain) else {
            log::warn!("too many deliveries to {domain} at once, deferring");
            return all(Reply::new(421, "Transport busy"));
        };
        let destination = match self.destination(domain).await {
            Ok(d) => d,
            Err(reply) => return all(reply),
        };
        let mut last_error = (domain.to_owned(), String::from("no MX host"));
        for host in &destination.hosts {
            if destination.policy != TlsPolicy::None && !self.smtp_only.contains(&host.name) {
                let outcome = self
                    .mxdeliv
                    .post(
                        &host.name,
                        destination.policy,
                        message.mail_from.as_deref(),
                        rcpts,
                        message.raw.clone(),
                    )
                    .await;
                match outcome {
                    Outcome::Delivered => {
                        log::info!("delivered to {domain} via HTTPS at {}", host.name);
                        return all(Reply::new(250, "OK (HTTPS)"));
                    }
                    Outcome::Refused(reply) => {
                        log::info!("{} refused mail for {domain}: {reply}", host.name);
                        return all(reply);
                    }
                    Outcome::Unavailable(why) => {
                        log::info!("no /mxdeliv at {} ({why}), trying SMTP", host.name);
                    }
                }
            }
            match self.smtp(host, destination.policy, rcpts, message).await {
                Ok(replies) => {
                    log::info!("delivered to {domain} via SMTP at {}", host.name);
                    self.smtp_only.insert(&host.name);
                    return replies;
                }
                Err(smtp::Failure::Connect(e)) => {
                    log::info!("SMTP to {} failed: {e}", host.name);
                    self.smtp_only.remove(&host.name);
                    last_error = (host.name.clone(), e);
                }
                Err(smtp::Failure::Broken(e)) => {
                    // Part of the message may have been accepted: no second MX for this try.
                    return all(Reply::new(
                        451,
                        format!("{e} (while attempting delivery to {})", host.name),
                    ));
                }
            }
        }
        let (host, error) = last_error;
        all(Reply::new(
            421,
            format!("Failed to connect to any mail server; last attempt to {host}: {error}"),
        ))
    }

    async fn smtp(
        &self,
        host: &Host,
        policy: TlsPolicy,
        rcpts: &[String],
        message: &Message,
    ) -> Result<Vec<Reply>, smtp::Failure> {
        let addrs = match host.ip {
            Some(ip) => vec![ip],
            None => self.resolver.ips(&host.name).await.map_err(|e| {
                smtp::Failure::Connect(format!("cannot resolve {}: {e:?}", host.name))
            })?,
        };
        let target = smtp::Target {
            host: &host.name,
            addrs: &addrs,
            port: self.settings.smtp_port,
            tls: self.tls.for_policy(policy),
        };
        let outgoing = smtp::Message {
            helo: &self.settings.helo,
            mail_from: message.mail_from.as_deref(),
            rcpt_to: rcpts,
            data: &message.stuffed,
        };
        smtp::send(&target, &outgoing, self.settings.smtp_timeout).await
    }

    async fn destination(&self, domain: &str) -> Result<Destination, Reply> {
        let policy = TlsPolicy::for_domain(domain);
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let text = literal
                .get(..5)
                .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
                .map_or(literal, |_| &literal[5..]);
            let ip: IpAddr = text
                .parse()
                .map_err(|_| Reply::new(553, format!("5.1.2 Invalid address literal {domain}")))?;
            return Ok(Destination {
                hosts: vec![Host {
                    name: ip.to_string(),
                    ip: Some(ip),
                }],
                policy,
            });
        }
        let hosts = mx_hosts(domain, self.resolver.mx(domain).await)?;
        Ok(Destination {
            hosts: hosts
                .into_iter()
                .map(|name| Host { name, ip: None })
                .collect(),
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_order() {
        let rcpts: Vec<String> = ["a@x.example", "b@y.example", "c@X.example", "d@[192.0.2.1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            group_by_domain(&rcpts),
            vec![
                ("x.example".to_owned(), vec![0, 2]),
                ("y.example".to_owned(), vec![1]),
                ("[192.0.2.1]".to_owned(), vec![3]),
            ]
        );
    }

    #[test]
    fn lmtp_limit_has_room_for_postfix_additions() {
        assert_eq!(
            lmtp_limits(30 << 20).max_message_size,
            (30 << 20) + (30 << 18)
        );
        assert_eq!(lmtp_limits(1000).max_message_size, 1000 + (1 << 20));
        assert_eq!(lmtp_limits(usize::MAX).max_message_size, usize::MAX);
    }
}
