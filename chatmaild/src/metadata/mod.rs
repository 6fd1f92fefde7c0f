//! chatmail-metadata: Dovecot's IMAP METADATA backend (`mail_attribute_dict`).
//!
//! Serves the server attributes Delta Chat asks for (iroh relay, TURN credentials, SMTP
//! recipient limit, app versions), stores push device tokens, and triggers push
//! notifications when the LMTP Lua hook writes `messagenew`.

pub mod appversions;
pub mod notifier;
pub mod tokens;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::dict::{DictHandler, LookupResult};
use notifier::Notifier;
use tokens::{DEVICETOKEN_KEY, TokenStore};

/// Where Dovecot stores server attributes (`GETMETADATA "" /shared/...`).
const SERVER_PREFIX: &str = "vendor/vendor.dovecot/pvt/server/vendor/deltachat/";
/// Postfix's default `smtpd_recipient_limit`.
const MAX_SMTP_RECIPIENTS: &str = "1000";
const TURN_TIMEOUT: Duration = Duration::from_secs(5);
pub const QUEUE_DIR_NAME: &str = "pending_notifications";

pub struct MetadataDict {
    tokens: TokenStore,
    notifier: Notifier,
    iroh_relay: String,
    turn_hostname: String,
    turn_socket_path: PathBuf,
    appversions_path: PathBuf,
}

impl MetadataDict {
    pub fn new(config: &Config, notifier: Notifier, appversions_path: PathBuf) -> MetadataDict {
        MetadataDict {
            tokens: TokenStore::new(&config.mailboxes_dir),
            notifier,
            iroh_relay: config.iroh_relay.clone(),
            turn_hostname: config.mail_domain.clone(),
            turn_socket_path: config.turn_socket_path.clone(),
            appversions_path,
        }
    }

    fn server_attribute(&self, name: &str) -> Option<String> {
        match name {
            "irohrelay" if !self.iroh_relay.is_empty() => Some(self.iroh_relay.clone()),
            "turn" => match turn_credentials(&self.turn_socket_path) {
                Ok(creds) => Some(format!("{}:3478:{creds}", self.turn_hostname)),
                Err(e) => {
                    log::error!("failed to get TURN credentials: {e}");
                    None
                }
            },
            "maxsmtprecipients" => Some(MAX_SMTP_RECIPIENTS.to_owned()),
            "appversions" => appversions::read_compact(&self.appversions_path),
            _ => None,
        }
    }
}

/// One line `<username>:<password>` from the TURN server's credential socket.
pub fn turn_credentials(socket: &Path) -> std::io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(TURN_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(stream.take(4096)).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

impl DictHandler for MetadataDict {
    fn lookup(&self, key: &str, user: Option<&str>) -> LookupResult {
        let mut parts = key.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("priv"), Some(_), Some(DEVICETOKEN_KEY)) => {
                let Some(addr) = user else {
                    log::warn!("devicetoken lookup without user: {key:?}");
                    return LookupResult::NotFound;
                };
                match self.tokens.tokens(addr) {
                    Ok(tokens) => return LookupResult::Found(tokens.join(" ")),
                    Err(e) => {
                        log::error!("cannot read tokens of {addr:?}: {e}");
                        return LookupResult::Failed;
                    }
                }
            }
            (Some("shared"), Some(_), Some(name)) => {
                if let Some(value) = name
                    .strip_prefix(SERVER_PREFIX)
                    .and_then(|attr| self.server_attribute(attr))
                {
                    return LookupResult::Found(value);
                }
            }
            _ => {}
        }
        log::warn!("lookup ignored: {key:?}");
        LookupResult::NotFound
    }

    fn set(&self, user: &str, key: &str, value: Option<&str>) -> bool {
        let parts: Vec<&str> = key.split('/').collect();
        let result = match parts[..] {
            ["priv", _, DEVICETOKEN_KEY] => self.tokens.add(user, value.unwrap_or_default()),
            ["priv", _, "messagenew"] => self.notifier.new_message_for_addr(user),
            _ => return false,
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                log::error!("metadata set {key:?} for {user:?} failed: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
