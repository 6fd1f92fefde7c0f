//! Incoming mode: the before-queue filter of port 25 (and of `/mxdeliv`).
//!
//! Remote senders cannot be rate-limited or authenticated by us, so the rules are: mail
//! must be encrypted unless every recipient opted out (or it is a bounce or a Secure-Join
//! request), and the `From:` domain must have DKIM-signed it.

use std::net::IpAddr;
use std::path::PathBuf;

use super::Direction;

use super::address::{canonical_mailbox, domain_of, has_routing_syntax, ip_literal};
use super::data::unstuff;
use super::dkim::DkimVerifier;
use super::header;
use super::mime::Mail;
use super::reply::Reply;
use super::smtp::client::Relay;
use super::smtp::{Envelope, Handler};
use crate::doveauth::is_valid_localpart;
use crate::user::User;

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

/// The relay's accounts: where per-recipient opt-outs live and which domain is ours.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    /// `mailboxes_dir`: one directory per account, named by its full address.
    pub dir: PathBuf,
    /// The domain part of local addresses (`mail_domain`, `[a.b.c.d]` on IPv4 relays).
    pub domain: String,
}

impl Mailboxes {
    /// The RCPT-time rule: a recipient of our domain whose local part would route
    /// elsewhere (percent hack, bang path, quoted `@`) is refused rather than interpreted,
    /// since Postfix and the content rules might disagree on the mailbox it names.
    pub fn check_recipient(&self, rcpt: &str) -> Result<(), Reply> {
        if self.is_local(&canonical_mailbox(rcpt)) && has_routing_syntax(rcpt) {
            return Err(Reply::new(
                550,
                format!("5.1.3 Routing syntax not allowed in recipient <{rcpt}>"),
            ));
        }
        Ok(())
    }

    /// Cleartext is allowed only for an existing account of this relay without the
    /// marker file, judged on the mailbox the recipient is delivered to. Other domains,
    /// unknown accounts and names no account can have never allow it.
    pub fn allows_cleartext(&self, rcpt: &str) -> bool {
        let mailbox = canonical_mailbox(rcpt);
        if !self.is_local(&mailbox) || has_routing_syntax(rcpt) {
            return false;
        }
        let Some((local, _)) = mailbox.rsplit_once('@') else {
            return false;
        };
        // Only names doveauth creates accounts for; this also keeps the path inside `dir`.
        if !is_valid_localpart(local) {
            return false;
        }
        let user = User::new(self.dir.join(&mailbox), &mailbox);
        let exists = std::fs::metadata(&user.password_path).is_ok_and(|m| m.len() > 0);
        exists && user.is_incoming_cleartext_ok()
    }

    fn is_local(&self, mailbox: &str) -> bool {
        domain_of(mailbox).eq_ignore_ascii_case(&self.domain)
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

    /// All checks, without forwarding, for a message whose delivering peer is unknown.
    pub async fn filter(&self, envelope: &Envelope, message: &[u8]) -> Result<Accepted, Reply> {
        self.filter_from(envelope, message, None).await
    }

    /// All checks, without forwarding: the accepted envelope sender or the refusal.
    /// `client` is the address of the peer that delivered the message to the relay, as
    /// Postfix (XFORWARD) or nginx (`X-Real-IP`) reported it.
    pub async fn filter_from(
        &self,
        envelope: &Envelope,
        message: &[u8],
        client: Option<IpAddr>,
    ) -> Result<Accepted, Reply> {
        let accepted = check(envelope, message, &self.mailboxes)?;
        let domain = domain_of(&accepted.from);
        if let Some(dkim) = &self.dkim
            && !is_own_literal(domain, client)
        {
            dkim.verify(message, domain).await?;
        }
        Ok(accepted)
    }
}

/// IP-only relays cannot DKIM-sign, so a `From:` domain literal stands in for the
/// signature only when it is the very address the message came from. Any other literal
/// (someone else's address, a bogus one, an unknown peer) needs DKIM like a domain, which
/// it cannot have. A loopback or unspecified peer never counts: that is a local proxy
/// (nginx's stream front hands `/mxdeliv` over from 127.0.0.1), not a remote relay.
fn is_own_literal(domain: &str, client: Option<IpAddr>) -> bool {
    match (ip_literal(domain), client.map(|ip| ip.to_canonical())) {
        (Some(claimed), Some(peer)) => {
            !peer.is_loopback() && !peer.is_unspecified() && claimed.to_canonical() == peer
        }
        _ => false,
    }
}

impl Handler for Incoming {
    const XFORWARD: bool = true;

    fn rcpt_to(&self, recipient: &str) -> Result<(), Reply> {
        self.mailboxes.check_recipient(recipient)
    }

    async fn data(&self, envelope: Envelope) -> Reply {
        self.data_from(envelope, None).await
    }

    async fn data_from(&self, envelope: Envelope, client: Option<IpAddr>) -> Reply {
        let message = unstuff(&envelope.data);
        match self.filter_from(&envelope, &message, client).await {
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

    /// A mailboxes dir with an unmarked account `open1234`, a marked one `closed123`
    /// and a directory without password file (`ghost1234`: e.g. left by expiry).
    fn mailboxes(domain: &str) -> (tempfile::TempDir, Mailboxes) {
        let dir = tempfile::tempdir().unwrap();
        let boxes = Mailboxes {
            dir: dir.path().to_owned(),
            domain: domain.to_owned(),
        };
        for (name, marker) in [("open1234", false), ("closed123", true)] {
            let user = User::new(dir.path().join(format!("{name}@{domain}")), "x");
            std::fs::create_dir_all(&user.maildir).unwrap();
            std::fs::write(&user.password_path, b"{SHA512-CRYPT}x").unwrap();
            if marker {
                std::fs::write(&user.enforce_e2ee_path, b"").unwrap();
            }
        }
        std::fs::create_dir_all(dir.path().join(format!("ghost1234@{domain}"))).unwrap();
        (dir, boxes)
    }

    /// What the SMTP server hands the hooks: the RCPT TO argument as parsed.
    fn rcpt(arg: &str) -> String {
        super::super::address::parse_path(arg).unwrap().unwrap()
    }

    #[test]
    fn every_spelling_of_a_marked_mailbox_enforces_encryption() {
        let (_dir, boxes) = mailboxes("x.example");
        for arg in [
            "<closed123@x.example>",
            "<Closed123@X.EXAMPLE>",
            "<closed123+tag@x.example>",
            "<\"closed123\"@x.example>",
            "<\"closed123+x\"@x.example>",
            "<closed123@x.example.>",
            "<@relay.example:closed123@x.example>",
        ] {
            assert!(!boxes.allows_cleartext(&rcpt(arg)), "{arg}");
        }
    }

    #[test]
    fn only_an_existing_unmarked_mailbox_allows_cleartext() {
        let (_dir, boxes) = mailboxes("x.example");
        for arg in [
            "<open1234@x.example>",
            "<OPEN1234+news@x.example>",
            "<\"open1234\"@x.example.>",
        ] {
            assert!(boxes.allows_cleartext(&rcpt(arg)), "{arg}");
        }
        for arg in [
            // No such account, or a directory without password file.
            "<nobody123@x.example>",
            "<ghost1234@x.example>",
            // The same account name at another domain, or our IP literal.
            "<open1234@other.example>",
            "<open1234@x.example.other.example>",
            "<open1234@[203.0.113.7]>",
            // Routing forms and names no account can have.
            "<open1234%x.example@x.example>",
            "<x.example!open1234@x.example>",
            "<\"open1234@x.example\"@x.example>",
            "<+open1234@x.example>",
            "<\"..\"@x.example>",
            "<\"a/b\"@x.example>",
            "<\"open 1234\"@x.example>",
        ] {
            assert!(!boxes.allows_cleartext(&rcpt(arg)), "{arg}");
        }
        for bad in ["", "no-at", "../open1234@x.example", "a/b@x.example"] {
            assert!(!boxes.allows_cleartext(bad), "{bad}");
        }
    }

    #[test]
    fn ipv4_relay_accounts() {
        // Accounts of an IPv4 relay are named user@[ip] inside the (bare-IP) mailboxes dir.
        let (_dir, boxes) = mailboxes("[203.0.113.7]");
        assert!(boxes.allows_cleartext(&rcpt("<open1234+t@[203.0.113.7]>")));
        assert!(!boxes.allows_cleartext(&rcpt("<closed123@[203.0.113.7]>")));
        assert!(!boxes.allows_cleartext(&rcpt("<open1234@203.0.113.7>")));
        assert!(boxes.check_recipient("a%b@[203.0.113.7]").is_err());
    }

    #[test]
    fn routing_forms_are_refused_at_rcpt_for_our_domain_only() {
        let (_dir, boxes) = mailboxes("x.example");
        for arg in [
            "<closed123%other.example@x.example>",
            "<other.example!closed123@x.example>",
            "<\"closed123%other.example\"@X.example.>",
            "<\"closed123@other.example\"@x.example>",
        ] {
            let reply = boxes.check_recipient(&rcpt(arg)).unwrap_err();
            assert_eq!(reply.code, 550, "{arg}");
            assert!(reply.text.starts_with("5.1.3 "), "{reply}");
        }
        for arg in [
            "<closed123+x@x.example>",
            "<\"closed123\"@x.example>",
            "<a%b@other.example>",
        ] {
            assert_eq!(boxes.check_recipient(&rcpt(arg)), Ok(()), "{arg}");
        }
    }

    #[test]
    fn literal_from_skips_dkim_only_for_its_own_peer() {
        let peer = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(is_own_literal("[203.0.113.7]", peer("203.0.113.7")));
        assert!(is_own_literal("[203.0.113.7]", peer("::ffff:203.0.113.7")));
        assert!(is_own_literal("[ipv6:2001:db8::1]", peer("2001:db8::1")));
        assert!(!is_own_literal("[203.0.113.7]", peer("203.0.113.8")));
        assert!(!is_own_literal("[203.0.113.7]", None));
        assert!(!is_own_literal("[999.0.113.7]", peer("203.0.113.7")));
        assert!(!is_own_literal("[foo]", peer("203.0.113.7")));
        assert!(!is_own_literal("203.0.113.7", peer("203.0.113.7")));
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0"] {
            assert!(
                !is_own_literal(&format!("[{local}]"), peer(local)),
                "{local}"
            );
        }
        assert!(!is_own_literal("[ipv6:::1]", peer("::1")));
    }
}
