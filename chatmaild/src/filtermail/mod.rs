//! filtermail: the SMTP filter that makes a mail server a chatmail relay.
//!
//! * [`outgoing`]: before-queue filter for submissions: sender = `From:`, rate limit,
//!   encryption required.
//! * [`incoming`]: before-queue filter for port 25: encryption required unless every
//!   recipient opted out, DKIM signature of the `From:` domain required.
//! * [`header`]: the message header as Postfix stores it; headers it could read
//!   differently are refused.
//! * [`mime`] and [`openpgp`]: what counts as encrypted.
//! * [`smtp`]: the embedded SMTP server and the re-injection client.
//!
//! * [`http`]: the HTTP `/mxdeliv` listener of incoming mode (relay-to-relay delivery).
//!
//! * [`transport`]: Postfix's `default_transport` (LMTP), delivering to remote relays over
//!   HTTPS `/mxdeliv` or SMTP.

pub mod address;
pub mod data;
// DKIM verification and MX lookups need mail-auth, which Apple targets do not build
// (Cargo.toml): there only the parts the deploy tool uses are built, not the server.
#[cfg(not(target_vendor = "apple"))]
pub mod dkim;
pub mod header;
pub mod http;
#[cfg(not(target_vendor = "apple"))]
pub mod incoming;
pub mod mime;
pub mod openpgp;
pub mod outgoing;
pub mod ratelimit;
pub mod reply;
pub mod smtp;
pub mod transport;

use std::net::SocketAddr;

#[cfg(not(target_vendor = "apple"))]
use {
    crate::activation::Passed,
    crate::config::Config,
    crate::shutdown::Shutdown,
    dkim::DkimVerifier,
    incoming::{Incoming, Mailboxes},
    outgoing::Outgoing,
    smtp::client::Relay,
    smtp::server::{Limits, serve_until},
    std::net::IpAddr,
    std::sync::Arc,
    std::time::Duration,
    tokio::net::TcpListener,
};

/// Per-query timeout with a test name server (the system resolver keeps its own).
#[cfg(not(target_vendor = "apple"))]
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Which side of the relay a message is on; a few armor rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Outgoing,
    Incoming,
    Transport,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "outgoing" => Ok(Mode::Outgoing),
            "incoming" => Ok(Mode::Incoming),
            "transport" => Ok(Mode::Transport),
            other => Err(format!(
                "unknown mode {other:?} (expected outgoing, incoming or transport)"
            )),
        }
    }
}

/// Everything filtermail takes from `chatmail.ini` and the environment.
#[cfg(not(target_vendor = "apple"))]
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_host: IpAddr,
    /// Re-injection host, resolved once in [`run`].
    pub postfix_host: String,
    pub outgoing_port: u16,
    pub incoming_port: u16,
    pub incoming_http_port: u16,
    pub transport_port: u16,
    /// The raw `mail_domain` value: transport mode's EHLO name.
    pub mail_domain: String,
    pub reinject_port: u16,
    pub reinject_port_incoming: u16,
    pub max_message_size: usize,
    pub max_user_send_per_minute: u32,
    pub max_user_send_burst_size: u32,
    pub mailboxes: Mailboxes,
    pub skip_dkim: bool,
    /// Test hook: resolve through this one name server instead of the system resolver,
    /// so that a test's DKIM keys and MX records come from a server on loopback.
    pub dns_server: Option<SocketAddr>,
}

/// Test hook naming a DNS server (`ip:port`) to use instead of the system resolver; read
/// only by builds with the `test-hooks` feature (see [`crate::test_hooks`]).
pub const DNS_SERVER_ENV: &str = "FILTERMAIL_TEST_DNS_SERVER";

#[cfg(not(target_vendor = "apple"))]
impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let skip_dkim = crate::test_hooks::skip_dkim();
        let dns_server = match crate::test_hooks::var(DNS_SERVER_ENV) {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| format!("{DNS_SERVER_ENV}={v:?} is not an ip:port address"))?,
            ),
            None => None,
        };
        Ok(Settings {
            listen_host: config.filtermail_host,
            postfix_host: config.postfix_host.clone(),
            outgoing_port: config.filtermail_smtp_port,
            incoming_port: config.filtermail_smtp_port_incoming,
            incoming_http_port: config.filtermail_http_port_incoming,
            transport_port: config.filtermail_lmtp_port_transport,
            mail_domain: config.mail_domain_bare.clone(),
            reinject_port: config.postfix_reinject_port,
            reinject_port_incoming: config.postfix_reinject_port_incoming,
            max_message_size: usize::try_from(config.max_message_size).unwrap_or(usize::MAX),
            max_user_send_per_minute: config.max_user_send_per_minute,
            max_user_send_burst_size: config.max_user_send_burst_size,
            mailboxes: Mailboxes {
                dir: config.mailboxes_dir.clone(),
                domain: config.mail_domain.clone(),
            },
            skip_dkim,
            dns_server,
        })
    }
}

/// Take the mode's listeners (passed by systemd, else bound here) and serve until
/// `shutdown`; then stop accepting and return once the sessions finished.
#[cfg(not(target_vendor = "apple"))]
pub async fn run(settings: Settings, mode: Mode, shutdown: Shutdown) -> Result<(), String> {
    let mut passed = Passed::from_env()?;
    serve_mode(settings, mode, &mut passed, shutdown).await
}

#[cfg(not(target_vendor = "apple"))]
async fn serve_mode(
    settings: Settings,
    mode: Mode,
    passed: &mut Passed,
    shutdown: Shutdown,
) -> Result<(), String> {
    let limits = Limits::new(settings.max_message_size);
    match mode {
        Mode::Outgoing => {
            let listener = listen(passed, settings.listen_host, settings.outgoing_port)?;
            let relay =
                Relay::to(resolve_once(&settings.postfix_host, settings.reinject_port).await?);
            let handler = Outgoing::new(
                settings.max_user_send_per_minute,
                settings.max_user_send_burst_size,
                relay,
            );
            log::info!("outgoing: entering serving loop on {}", local(&listener));
            warn_unused(passed);
            serve_until(listener, Arc::new(handler), limits, shutdown).await;
        }
        Mode::Incoming => {
            let dkim = if settings.skip_dkim {
                log::warn!("DKIM verification DISABLED!");
                None
            } else {
                Some(match settings.dns_server {
                    Some(server) => DkimVerifier::with_name_server(server, DNS_TIMEOUT)?,
                    None => DkimVerifier::from_system_conf()?,
                })
            };
            let listener = listen(passed, settings.listen_host, settings.incoming_port)?;
            let http_listener = listen(passed, settings.listen_host, settings.incoming_http_port)?;
            let relay = Relay::to(
                resolve_once(&settings.postfix_host, settings.reinject_port_incoming).await?,
            );
            let handler = Arc::new(Incoming::new(settings.mailboxes.clone(), dkim, relay));
            log::info!(
                "incoming: entering serving loop on {} (SMTP) and {} (HTTP)",
                local(&listener),
                local(&http_listener)
            );
            warn_unused(passed);
            tokio::join!(
                serve_until(listener, handler.clone(), limits, shutdown.clone()),
                http::serve_until(http_listener, handler, settings.max_message_size, shutdown),
            );
        }
        Mode::Transport => {
            let resolver = match settings.dns_server {
                Some(server) => {
                    transport::resolve::DnsResolver::with_name_server(server, DNS_TIMEOUT)?
                }
                None => transport::resolve::DnsResolver::from_system_conf()?,
            };
            let delivery = transport::TransportSettings::new(&settings.mail_domain);
            let handler = transport::Transport::new(delivery, Arc::new(resolver))?;
            let listener = listen(passed, settings.listen_host, settings.transport_port)?;
            log::info!("transport: entering serving loop on {}", local(&listener));
            let limits = transport::lmtp_limits(settings.max_message_size);
            warn_unused(passed);
            serve_until(listener, Arc::new(handler), limits, shutdown).await;
        }
    }
    Ok(())
}

/// The listener for `host:port`: the socket systemd passed for it, else one bound here
/// (a manual start, a test, or a port changed before the socket unit was).
#[cfg(not(target_vendor = "apple"))]
fn listen(passed: &mut Passed, host: IpAddr, port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::new(host, port);
    let std_listener = match passed.take_tcp(addr) {
        Some((listener, name)) => {
            log::info!("{addr}: socket passed by systemd ({name})");
            listener
        }
        None => std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
    };
    std_listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(std_listener))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// A passed socket nothing listens on would queue connections nobody accepts.
#[cfg(not(target_vendor = "apple"))]
fn warn_unused(passed: &Passed) {
    let unused = passed.unused();
    if !unused.is_empty() {
        log::warn!(
            "sockets passed by systemd that the config does not listen on: {}",
            unused.join(", ")
        );
    }
}

/// Resolve the re-injection target once: Postfix does not move while filtermail runs, and
/// a DNS hiccup must not fail accepted mail later.
pub async fn resolve_once(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve postfix_host {host:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("postfix_host {host:?} has no address"))
}

#[cfg(not(target_vendor = "apple"))]
fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reinjection_host_is_resolved_to_an_address() {
        assert_eq!(
            resolve_once("127.0.0.1", 10025).await.unwrap(),
            "127.0.0.1:10025".parse().unwrap()
        );
        assert_eq!(
            resolve_once("::1", 10026).await.unwrap(),
            "[::1]:10026".parse().unwrap()
        );
        // `localhost` comes from /etc/hosts, no DNS query leaves the machine.
        assert!(
            resolve_once("localhost", 25)
                .await
                .unwrap()
                .ip()
                .is_loopback()
        );
        assert!(resolve_once("", 25).await.is_err());
    }

    #[test]
    fn settings_take_hosts_from_the_ini() {
        let config = Config::parse(
            "[params]\nmail_domain = x.org\nfiltermail_host = 127.0.0.2\npostfix_host = 127.0.0.3\n",
            "t.ini",
        )
        .unwrap();
        let s = Settings::from_config(&config).unwrap();
        assert_eq!(s.listen_host, IpAddr::from([127, 0, 0, 2]));
        assert_eq!(s.postfix_host, "127.0.0.3");
    }
}
