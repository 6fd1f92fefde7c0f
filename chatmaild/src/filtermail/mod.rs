//! filtermail: the SMTP filter that makes a mail server a chatmail relay.
//!
//! * [`outgoing`]: before-queue filter for submissions: sender = `From:`, rate limit,
//!   encryption required.
//! * [`incoming`]: before-queue filter for port 25: encryption required unless every
//!   recipient opted out, DKIM signature of the `From:` domain required.
//! * [`mime`] and [`openpgp`]: what counts as encrypted.
//! * [`smtp`]: the embedded SMTP server and the re-injection client.
//!
//! * [`http`]: the HTTP `/mxdeliv` listener of incoming mode (relay-to-relay delivery).
//!
//! * [`transport`]: Postfix's `default_transport` (LMTP), delivering to remote relays over
//!   HTTPS `/mxdeliv` or SMTP.

pub mod address;
pub mod data;
pub mod dkim;
pub mod http;
pub mod incoming;
pub mod mime;
pub mod openpgp;
pub mod outgoing;
pub mod ratelimit;
pub mod reply;
pub mod smtp;
pub mod transport;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Config;
use dkim::DkimVerifier;
use incoming::{Incoming, Mailboxes};
use outgoing::Outgoing;
use smtp::client::Relay;
use smtp::server::{Limits, serve};

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
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_host: String,
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
}

impl Settings {
    /// `filtermail_host`/`postfix_host` are not read by the shared config module; the
    /// upstream default (loopback) is used for both.
    pub fn from_config(config: &Config) -> Settings {
        let skip_dkim = std::env::var("FILTERMAIL_SKIP_DKIM")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        Settings {
            listen_host: "127.0.0.1".into(),
            postfix_host: "127.0.0.1".into(),
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
            },
            skip_dkim,
        }
    }
}

/// Bind the mode's listener and serve until the process is stopped.
pub async fn run(settings: Settings, mode: Mode) -> Result<(), String> {
    let limits = Limits::new(settings.max_message_size);
    match mode {
        Mode::Outgoing => {
            let listener = bind(&settings.listen_host, settings.outgoing_port).await?;
            let relay = Relay::new(&settings.postfix_host, settings.reinject_port);
            let handler = Outgoing::new(
                settings.max_user_send_per_minute,
                settings.max_user_send_burst_size,
                relay,
            );
            log::info!("outgoing: entering serving loop on {}", local(&listener));
            serve(listener, Arc::new(handler), limits).await;
        }
        Mode::Incoming => {
            let dkim = if settings.skip_dkim {
                log::warn!("DKIM verification DISABLED!");
                None
            } else {
                Some(DkimVerifier::from_system_conf()?)
            };
            let listener = bind(&settings.listen_host, settings.incoming_port).await?;
            let http_listener = bind(&settings.listen_host, settings.incoming_http_port).await?;
            let relay = Relay::new(&settings.postfix_host, settings.reinject_port_incoming);
            let handler = Arc::new(Incoming::new(settings.mailboxes.clone(), dkim, relay));
            log::info!(
                "incoming: entering serving loop on {} (SMTP) and {} (HTTP)",
                local(&listener),
                local(&http_listener)
            );
            tokio::join!(
                serve(listener, handler.clone(), limits),
                http::serve(http_listener, handler, settings.max_message_size),
            );
        }
        Mode::Transport => {
            let resolver = transport::resolve::DnsResolver::from_system_conf()?;
            let delivery = transport::TransportSettings::new(&settings.mail_domain);
            let handler = transport::Transport::new(delivery, Arc::new(resolver))?;
            let listener = bind(&settings.listen_host, settings.transport_port).await?;
            log::info!("transport: entering serving loop on {}", local(&listener));
            let limits = transport::lmtp_limits(settings.max_message_size);
            serve(listener, Arc::new(handler), limits).await;
        }
    }
    Ok(())
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}
