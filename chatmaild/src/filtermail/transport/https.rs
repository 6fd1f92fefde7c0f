//! Delivery over HTTPS: `POST https://<mx-host>/mxdeliv` to the remote relay's nginx,
//! which hands it to that relay's incoming filter (see [`crate::filtermail::http`]).
//!
//! One request carries the envelope in headers (`X-MAIL-FROM`, one `X-MAIL-TO` per
//! recipient) and the raw message as body; the answer body is an SMTP reply line.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;

use super::resolve::{ForReqwest, Resolve};
use super::tls::TlsPolicy;
use crate::filtermail::reply::Reply;

/// What one POST achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The remote relay accepted the message for all recipients.
    Delivered,
    /// The remote filter answered with an SMTP reply (check failure, size, re-injection
    /// trouble): final for this message, SMTP would get the same verdict.
    Refused(Reply),
    /// No `/mxdeliv` there (not a chatmail relay, endpoint missing, proxy error,
    /// connection or certificate trouble): use SMTP.
    Unavailable(String),
}

pub struct MxDeliv {
    verify: reqwest::Client,
    encrypt: reqwest::Client,
    port: u16,
}

impl MxDeliv {
    pub fn new(
        resolver: Arc<dyn Resolve>,
        port: u16,
        timeout: Duration,
    ) -> Result<MxDeliv, String> {
        let build = |accept_invalid: bool| {
            reqwest::Client::builder()
                .dns_resolver(Arc::new(ForReqwest(resolver.clone())))
                .danger_accept_invalid_certs(accept_invalid)
                .https_only(true)
                // The endpoint answers directly; a redirect means it is not a relay's /mxdeliv.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("cannot build HTTPS client: {e}"))
        };
        Ok(MxDeliv {
            verify: build(false)?,
            encrypt: build(true)?,
            port,
        })
    }

    /// POST `message` (unstuffed) for `rcpt_to`. `TlsPolicy::None` never uses HTTPS.
    pub async fn post(
        &self,
        host: &str,
        policy: TlsPolicy,
        mail_from: Option<&str>,
        rcpt_to: &[String],
        message: Bytes,
    ) -> Outcome {
        let client = match policy {
            TlsPolicy::Verify => &self.verify,
            TlsPolicy::Encrypt => &self.encrypt,
            TlsPolicy::None => return Outcome::Unavailable("no TLS for this domain".into()),
        };
        let mut request = client.post(url(host, self.port)).body(message);
        if let Some(sender) = mail_from {
            request = request.header("X-MAIL-FROM", sender);
        }
        for rcpt in rcpt_to {
            request = request.header("X-MAIL-TO", rcpt.as_str());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Unavailable(error_chain(&e)),
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        interpret(status.as_u16(), &body)
    }
}

/// The endpoint on `host` (a DNS name or a bare IP address).
fn url(host: &str, port: u16) -> String {
    // IPv6 addresses need brackets in URLs.
    let authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == 443 {
        format!("https://{authority}/mxdeliv")
    } else {
        format!("https://{authority}:{port}/mxdeliv")
    }
}

/// Map an answer to an outcome. Only filtermail's own answers (200, 400, 413 with an SMTP
/// reply as body) are verdicts; anything else comes from something that is not filtermail.
pub fn interpret(status: u16, body: &str) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Delivered;
    }
    if matches!(status, 400 | 413)
        && let Some(reply) = parse_reply(body)
    {
        return Outcome::Refused(reply);
    }
    Outcome::Unavailable(format!("HTTP {status}"))
}

/// `"523 Encryption Needed: ..."` → reply; only 4xx/5xx codes count as refusals.
fn parse_reply(body: &str) -> Option<Reply> {
    let line = body.lines().next()?.trim();
    let code: u16 = line.get(..3)?.parse().ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    match line.as_bytes().get(3) {
        None => Some(Reply::new(code, "")),
        Some(b' ') => Some(Reply::new(code, line[4..].trim())),
        Some(_) => None,
    }
}

/// reqwest's top-level error text hides the cause (certificate, refused connection).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(interpret(200, "250 OK"), Outcome::Delivered);
        assert_eq!(
            interpret(400, "523 Encryption Needed: Invalid Unencrypted Mail"),
            Outcome::Refused(Reply::encryption_needed())
        );
        assert_eq!(
            interpret(413, "552 Message exceeds maximum size"),
            Outcome::Refused(Reply::message_too_big())
        );
        assert_eq!(
            interpret(400, "451 Timeout re-injecting mail"),
            Outcome::Refused(Reply::new(451, "Timeout re-injecting mail"))
        );
        // nginx pages and non-filtermail services mean "no /mxdeliv here".
        for (status, body) in [
            (404, "<html>404 Not Found</html>"),
            (405, "Method Not Allowed"),
            (502, "<html>Bad Gateway</html>"),
            (400, "<html>400 Bad Request</html>"),
            (400, "250 OK"),
            (301, ""),
        ] {
            assert!(
                matches!(interpret(status, body), Outcome::Unavailable(_)),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn urls() {
        assert_eq!(url("mx.example.org", 443), "https://mx.example.org/mxdeliv");
        assert_eq!(url("192.0.2.1", 443), "https://192.0.2.1/mxdeliv");
        assert_eq!(url("2001:db8::1", 443), "https://[2001:db8::1]/mxdeliv");
        assert_eq!(url("_relay.test", 8443), "https://_relay.test:8443/mxdeliv");
    }
}
