//! The small SMTP/LMTP server filtermail listens with, and the client it re-injects with.
//!
//! Only trusted local peers talk to it (Postfix), so it implements what Postfix's proxy
//! filter and LMTP client use, strictly and with bounded memory.

pub mod client;
pub mod command;
pub mod server;

use std::future::Future;
use std::net::IpAddr;

use super::reply::Reply;

/// One mail transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `None` is the null sender `<>`.
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    /// The DATA bytes as transmitted (dot-stuffed, CRLF), without the final `.` line.
    pub data: Vec<u8>,
}

/// What a filtermail mode decides at each step of a transaction.
pub trait Handler: Send + Sync + 'static {
    /// Announce XFORWARD in the EHLO reply, so that Postfix's `smtpd_proxy_filter` tells
    /// the address of the client it is talking to (`XFORWARD ADDR=...`), which reaches
    /// [`Handler::data_from`]. Only handlers whose rules depend on it ask for it.
    const XFORWARD: bool = false;

    fn mail_from(&self, _sender: Option<&str>) -> Result<(), Reply> {
        Ok(())
    }

    fn rcpt_to(&self, _recipient: &str) -> Result<(), Reply> {
        Ok(())
    }

    /// Check and forward a complete message; the reply goes back to the client.
    fn data(&self, envelope: Envelope) -> impl Future<Output = Reply> + Send;

    /// The same, knowing the address of the peer that delivered the message to the relay
    /// (Postfix's XFORWARD `ADDR`, nginx's `X-Real-IP`). Only a handler whose rules
    /// depend on it overrides this.
    fn data_from(
        &self,
        envelope: Envelope,
        _client: Option<IpAddr>,
    ) -> impl Future<Output = Reply> + Send {
        self.data(envelope)
    }

    /// The same in an LMTP session (RFC 2033): one reply per recipient, in RCPT order.
    /// A filter decides per message, so by default every recipient gets its one reply;
    /// a handler that delivers per recipient overrides this.
    fn lmtp_data(&self, envelope: Envelope) -> impl Future<Output = Vec<Reply>> + Send {
        async move {
            let recipients = envelope.rcpt_to.len();
            vec![self.data(envelope).await; recipients]
        }
    }
}
