//! The message-level rules: what is encrypted, which cleartext messages are exceptions,
//! and who the message claims to be from.

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders};

use super::Direction;
use super::address::is_valid_address;
use super::openpgp::{self, NotEncrypted};

/// A parsed message. Parsing never fails on malformed input: broken MIME simply does not
/// have the structure the rules ask for.
pub struct Mail<'a> {
    raw: &'a [u8],
    /// `None` when mail-parser finds no message at all (e.g. empty input); mail-parser's
    /// accessors index the root part unchecked, so an empty `Message` must never be used.
    msg: Option<Message<'a>>,
}

/// Why a message is not PGP/MIME (RFC 3156) encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPgpMime {
    NotMultipartEncrypted,
    /// Two top-level `Content-Type` headers: readers may disagree on which one counts.
    DuplicateContentType,
    PartCount(usize),
    NestedMultipart,
    FirstPartType,
    FirstPartBody,
    SecondPartType,
    Payload(NotEncrypted),
}

impl<'a> Mail<'a> {
    pub fn parse(raw: &'a [u8]) -> Mail<'a> {
        let msg = MessageParser::new()
            .parse(raw)
            .filter(|m| !m.parts.is_empty());
        Mail { raw, msg }
    }

    /// The single address of the single `From:` header, lower-cased.
    ///
    /// More than one `From:` header or more than one address is refused: the relay's
    /// check would look at one of them and a client might display another.
    pub fn from_address(&self) -> Result<String, String> {
        let raw = self.first_raw_header(HeaderName::From);
        let Some(msg) = &self.msg else {
            return Err(raw);
        };
        let count = msg
            .root_part()
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::From)
            .count();
        if count != 1 {
            return Err(raw);
        }
        let Some(address) = msg.from() else {
            return Err(raw);
        };
        let mut addrs = address.iter();
        let (Some(first), None) = (addrs.next(), addrs.next()) else {
            return Err(raw);
        };
        let Some(addr) = first.address() else {
            return Err(raw);
        };
        let addr = addr.trim().to_lowercase();
        if is_valid_address(&addr) {
            Ok(addr)
        } else {
            Err(raw)
        }
    }

    fn root(&self) -> Option<&MessagePart<'a>> {
        self.msg.as_ref().and_then(|m| m.parts.first())
    }

    /// The unparsed value of the first header of that name (mail-parser's accessors
    /// return the last one; upstream reports the first).
    fn first_raw_header(&self, name: HeaderName<'_>) -> String {
        self.root()
            .and_then(|root| root.headers.iter().find(|h| h.name == name))
            .and_then(|h| self.raw.get(h.offset_start as usize..h.offset_end as usize))
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .unwrap_or_default()
    }

    fn header_text(&self, name: &'static str) -> Option<&str> {
        self.msg.as_ref()?.header_raw(name).map(str::trim)
    }

    /// RFC 3156 PGP/MIME with a payload that is really an encrypted OpenPGP message.
    pub fn check_encrypted(&self, direction: Direction) -> Result<(), NotPgpMime> {
        let root = self.root().ok_or(NotPgpMime::NotMultipartEncrypted)?;
        let content_types = root
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::ContentType)
            .count();
        if content_types > 1 {
            return Err(NotPgpMime::DuplicateContentType);
        }
        if !has_type(root, "multipart", "encrypted") {
            return Err(NotPgpMime::NotMultipartEncrypted);
        }
        let parts = self
            .sub_parts(root)
            .ok_or(NotPgpMime::NotMultipartEncrypted)?;
        if parts.len() != 2 {
            return Err(NotPgpMime::PartCount(parts.len()));
        }
        if parts.iter().any(|p| p.sub_parts().is_some()) {
            return Err(NotPgpMime::NestedMultipart);
        }
        let (control, payload) = (parts[0], parts[1]);
        if !has_type(control, "application", "pgp-encrypted") {
            return Err(NotPgpMime::FirstPartType);
        }
        if control.contents().trim_ascii() != b"Version: 1" {
            return Err(NotPgpMime::FirstPartBody);
        }
        if !has_type(payload, "application", "octet-stream") {
            return Err(NotPgpMime::SecondPartType);
        }
        openpgp::check_armored(payload.contents(), direction).map_err(NotPgpMime::Payload)
    }

    pub fn is_encrypted(&self, direction: Direction) -> bool {
        self.check_encrypted(direction).is_ok()
    }

    /// The first message of the Secure-Join (QR code) protocol, which is cleartext by
    /// necessity: the header and a one-part body both naming a vc/vg request.
    pub fn is_securejoin(&self) -> bool {
        if !matches!(
            self.header_text("Secure-Join"),
            Some("vc-request" | "vg-request")
        ) {
            return false;
        }
        let Some(parts) = self.root().and_then(|root| self.sub_parts(root)) else {
            return false;
        };
        let [part] = parts[..] else {
            return false;
        };
        if part.sub_parts().is_some() || !has_type(part, "text", "plain") {
            return false;
        }
        let body = String::from_utf8_lossy(part.contents())
            .trim()
            .to_lowercase();
        body == "secure-join: vc-request" || body == "secure-join: vg-request"
    }

    /// Autocrypt Setup Message shape (the caller checks it is sent to oneself).
    pub fn is_autocrypt_setup_message(&self) -> bool {
        self.msg.as_ref().and_then(|m| m.subject()) == Some("Autocrypt Setup Message")
            && self
                .root()
                .is_some_and(|r| has_type(r, "multipart", "mixed"))
    }

    /// A delivery status report from a mailer daemon (bounces must reach users even
    /// though they are cleartext).
    pub fn is_mailer_daemon_report(&self, from: &str) -> bool {
        self.header_text("Auto-Submitted")
            .is_some_and(|v| !v.is_empty())
            && from.to_lowercase().starts_with("mailer-daemon@")
            && self
                .root()
                .is_some_and(|r| has_type(r, "multipart", "report"))
    }

    fn sub_parts(&self, part: &MessagePart<'a>) -> Option<Vec<&MessagePart<'a>>> {
        let msg = self.msg.as_ref()?;
        part.sub_parts()?
            .iter()
            .map(|&id| msg.part(id))
            .collect::<Option<Vec<_>>>()
    }
}

fn has_type(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    match part.content_type() {
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case(ctype)
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
        }
        // RFC 2045 default.
        None => ctype == "text" && subtype == "plain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mail-parser yields no message for these; its accessors would index an empty part
    /// list (found by the mutation test).
    #[test]
    fn inputs_without_a_message() {
        for raw in [&b""[..], b"\r\n", b" ", b"\r\n\r\n"] {
            let mail = Mail::parse(raw);
            assert!(mail.from_address().is_err());
            assert!(!mail.is_encrypted(Direction::Incoming));
            assert!(!mail.is_securejoin());
            assert!(!mail.is_autocrypt_setup_message());
            assert!(!mail.is_mailer_daemon_report("mailer-daemon@x.example"));
        }
    }

    #[test]
    fn from_header_forms() {
        let from = |h: &str| Mail::parse(format!("{h}\r\n\r\nbody\r\n").as_bytes()).from_address();
        assert_eq!(from("From: A@Example.org"), Ok("a@example.org".into()));
        assert_eq!(
            from("From: \"Alice, B.\" <alice@example.org>"),
            Ok("alice@example.org".into())
        );
        assert_eq!(
            from("From: =?utf-8?q?J=C3=B6rg?= <j@example.org>"),
            Ok("j@example.org".into())
        );
        assert!(from("From: undisclosed").is_err());
        assert!(from("From: <a@b.example>, <c@d.example>").is_err());
        assert!(from("From: group: a@b.example, c@d.example;").is_err());
        assert!(from("Sender: a@b.example").is_err());
    }
}
