//! Incoming mode: the before-queue filter of port 25 (and of `/mxdeliv`).
//!
//! Remote senders cannot be rate-limited or authenticated by us, so the rules are: mail
//! must be encrypted unless every recipient opted out (or it is a bounce or a Secure-Join
//! request), and the `From:` domain must have DKIM-signed it.

use std::path::PathBuf;

use super::Direction;
use super::address::{domain_of, is_ip_literal_domain};
use super::data::unstuff;
use super::dkim::DkimVerifier;
use super::header;
use super::mime::Mail;
use super::reply::Reply;
use super::smtp::client::Relay;
use super::smtp::{Envelope, Handler};

/// Name of the marker file in a mailbox directory that forbids cleartext mail.
pub const ENFORCE_E2EE_FILE: &str = "enforceE2EEincoming";

/// What the content rules decided for an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The address in `From:`.
    pub from: String,
    /// The envelope sender differs from `From:` (forwarding, SRS, or forgery): re-inject
    /// with the null sender so that no bounce goes to a possibly forged address.
    pub blank_sender: bool,
}

/// Where per-recipient opt-outs live.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    pub dir: PathBuf,
}

impl Mailboxes {
    /// Cleartext is allowed for a recipient without the marker file. Addresses that could
    /// not name a mailbox directory never allow it.
    pub fn allows_cleartext(&self, rcpt: &str) -> bool {
        if rcpt.is_empty() || !rcpt.contains('@') || rcpt.contains('/') || rcpt.starts_with('.') {
            return false;
        }
        !self.dir.join(rcpt).join(ENFORCE_E2EE_FILE).exists()
    }
}

/// The content rules for one incoming message (unstuffed bytes).
pub fn check(
    envelope: &Envelope,
    message: &[u8],
    mailboxes: &Mailboxes,
) -> Result<Accepted, Reply> {
    header::check(message).map_err(|e| Reply::invalid_header(&e))?;
    let mail = Mail::parse(message);
    let from = mail
        .from_address()
        .map_err(|raw| Reply::invalid_from_header(&raw))?;
    let blank_sender = envelope
        .mail_from
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case(&from));
    let accepted = Accepted { from, blank_sender };

    if mail.is_encrypted(Direction::Incoming) || mail.is_securejoin() {
        log::info!("Incoming: Filtering encrypted mail.");
        return Ok(accepted);
    }
    log::info!("Incoming: Filtering unencrypted mail.");
    if mail.is_mailer_daemon_report(&accepted.from) {
        log::info!(
            "Incoming: Filtering mailer-daemon message from {}",
            accepted.from
        );
        return Ok(accepted);
    }
    if envelope
        .rcpt_to
        .iter()
        .all(|rcpt| mailboxes.allows_cleartext(rcpt))
    {
        return Ok(accepted);
    }
    log::warn!("Rejected unencrypted mail from: {}", accepted.from);
    Err(mail.encryption_needed())
}

pub struct Incoming {
    mailboxes: Mailboxes,
    /// `None` disables DKIM verification (tests only: `FILTERMAIL_SKIP_DKIM`).
    dkim: Option<DkimVerifier>,
    relay: Relay,
}

impl Incoming {
    pub fn new(mailboxes: Mailboxes, dkim: Option<DkimVerifier>, relay: Relay) -> Incoming {
        Incoming {
            mailboxes,
            dkim,
            relay,
        }
    }

    /// All checks, without forwarding: the accepted envelope sender or the refusal.
    pub async fn filter(&self, envelope: &Envelope, message: &[u8]) -> Result<Accepted, Reply> {
        let accepted = check(envelope, message, &self.mailboxes)?;
        let domain = domain_of(&accepted.from);
        if let Some(dkim) = &self.dkim
            && !is_ip_literal_domain(domain)
        {
            dkim.verify(message, domain).await?;
        }
        Ok(accepted)
    }
}

impl Handler for Incoming {
    async fn data(&self, envelope: Envelope) -> Reply {
        let message = unstuff(&envelope.data);
        match self.filter(&envelope, &message).await {
            Err(reply) => reply,
            Ok(accepted) => {
                let sender = if accepted.blank_sender {
                    None
                } else {
                    envelope.mail_from.as_deref()
                };
                self.relay
                    .send(sender, &envelope.rcpt_to, &envelope.data)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_file_decides() {
        let dir = tempfile::tempdir().unwrap();
        let boxes = Mailboxes {
            dir: dir.path().to_owned(),
        };
        let user = dir.path().join("a@x.example");
        std::fs::create_dir_all(&user).unwrap();
        assert!(boxes.allows_cleartext("a@x.example"));
        std::fs::write(user.join(ENFORCE_E2EE_FILE), b"").unwrap();
        assert!(!boxes.allows_cleartext("a@x.example"));
        assert!(boxes.allows_cleartext("nobody@x.example"));
        for bad in ["", "no-at", "../a@x.example", "a/b@x.example", "..@x"] {
            assert!(!boxes.allows_cleartext(bad), "{bad}");
        }
    }
}
