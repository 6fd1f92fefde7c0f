//! Outgoing mode: the before-queue filter of submission (587/465).
//!
//! Authenticated users may only send mail under their own address, only encrypted (with
//! the two cleartext exceptions), and not faster than the configured rate.

use std::sync::Mutex;
use std::time::Instant;

use super::Direction;
use super::address::canonical_mailbox;
use super::data::unstuff;
use super::header;
use super::mime::{Mail, canonical_address};
use super::ratelimit::RateLimiter;
use super::reply::Reply;
use super::smtp::client::Relay;
use super::smtp::{Envelope, Handler};

pub struct Outgoing {
    limiter: Mutex<RateLimiter>,
    relay: Relay,
}

impl Outgoing {
    pub fn new(per_minute: u32, burst: u32, relay: Relay) -> Outgoing {
        Outgoing {
            limiter: Mutex::new(RateLimiter::new(per_minute, burst)),
            relay,
        }
    }

    fn check_sender(&self, sender: Option<&str>, now: Instant) -> Result<(), Reply> {
        let sender = sender.unwrap_or("");
        if sender.matches('@').count() != 1 {
            return Err(Reply::new(500, format!("Invalid from address <{sender}>")));
        }
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.check(sender, now).map_err(|wait| {
            log::info!("rate limit exceeded for <{sender}>");
            Reply::new(
                450,
                format!(
                    "4.7.1: Too much mail from <{sender}>, rate limited for {} s",
                    wait.as_secs_f64().ceil() as u64
                ),
            )
        })
    }
}

/// The content rules for one outgoing message (unstuffed bytes).
pub fn check(envelope: &Envelope, message: &[u8]) -> Result<(), Reply> {
    header::check(message).map_err(|e| Reply::invalid_header(&e))?;
    let mail = Mail::parse(message);
    let mail_from = envelope.mail_from.as_deref().unwrap_or("");
    let from = mail
        .from_address()
        .map_err(|raw| Reply::invalid_from_header(&raw))?;
    if from != canonical_address(mail_from) {
        return Err(Reply::new(
            500,
            format!("Invalid FROM <{from}> for <{mail_from}>"),
        ));
    }
    if mail.is_encrypted(Direction::Outgoing) || mail.is_securejoin() {
        log::info!("Outgoing: Filtering encrypted mail.");
        return Ok(());
    }
    log::info!("Outgoing: Filtering unencrypted mail.");
    // "To oneself" means the same mailbox, whichever spelling the client chose.
    if envelope.rcpt_to.len() == 1
        && canonical_mailbox(&envelope.rcpt_to[0]) == canonical_mailbox(mail_from)
        && mail.is_autocrypt_setup_message()
    {
        return Ok(());
    }
    log::warn!("Rejected unencrypted mail from: {mail_from}");
    Err(mail.encryption_needed())
}

impl Handler for Outgoing {
    fn mail_from(&self, sender: Option<&str>) -> Result<(), Reply> {
        self.check_sender(sender, Instant::now())
    }

    async fn data(&self, envelope: Envelope) -> Reply {
        if let Err(reply) = check(&envelope, &unstuff(&envelope.data)) {
            return reply;
        }
        self.relay
            .send(
                envelope.mail_from.as_deref(),
                &envelope.rcpt_to,
                &envelope.data,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing() -> Outgoing {
        Outgoing::new(60, 3, Relay::new("127.0.0.1", 1))
    }

    #[test]
    fn sender_must_be_one_address() {
        let o = outgoing();
        let now = Instant::now();
        assert_eq!(
            o.check_sender(None, now).unwrap_err().to_string(),
            "500 Invalid from address <>"
        );
        assert_eq!(
            o.check_sender(Some("\"a@b\"@c.example"), now)
                .unwrap_err()
                .code,
            500
        );
        assert!(o.check_sender(Some("a@c.example"), now).is_ok());
    }

    #[test]
    fn rate_limit_reply() {
        let o = outgoing();
        let now = Instant::now();
        for _ in 0..3 {
            o.check_sender(Some("a@c.example"), now).unwrap();
        }
        let reply = o.check_sender(Some("a@c.example"), now).unwrap_err();
        assert_eq!(reply.code, 450);
        assert!(
            reply
                .text
                .starts_with("4.7.1: Too much mail from <a@c.example>"),
            "{reply}"
        );
    }
}
