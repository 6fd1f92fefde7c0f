//! The message-level rules: what is encrypted, which cleartext messages are exceptions,
//! and who the message claims to be from.

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders};

use super::Direction;
use super::address::is_valid_address;
use super::openpgp::{self, NotEncrypted};

/// A parsed message. Parsing never fails on malformed input: broken MIME simply does not
/// have the structure the rules ask for.
pub struct Mail<'a> {
    msg: Message<'a>,
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
        let msg = MessageParser::new().parse(raw).unwrap_or_default();
        Mail { msg }
    }

    /// The single address of the single `From:` header, lower-cased.
    ///
    /// More than one `From:` header or more than one address is refused: the relay's
    /// check would look at one of them and a client might display another.
    pub fn from_address(&self) -> Result<String, String> {
        let raw = self.first_raw_header(HeaderName::From);
        let count = self
            .msg
            .root_part()
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::From)
            .count();
        if count != 1 {
            return Err(raw);
        }
        let Some(address) = self.msg.from() else {
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

    /// The unparsed value of the first header of that name (mail-parser's accessors
    /// return the last one; upstream reports the first).
    fn first_raw_header(&self, name: HeaderName<'_>) -> String {
        let raw = self.msg.raw_message();
        self.msg
            .root_part()
            .headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .unwrap_or_default()
    }

    fn header_text(&self, name: &'static str) -> Option<&str> {
        self.msg.header_raw(name).map(str::trim)
    }

    /// RFC 3156 PGP/MIME with a payload that is really an encrypted OpenPGP message.
    pub fn check_encrypted(&self, direction: Direction) -> Result<(), NotPgpMime> {
        let root = self.msg.root_part();
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
        let Some(parts) = self.sub_parts(self.msg.root_part()) else {
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
        self.msg.subject() == Some("Autocrypt Setup Message")
            && has_type(self.msg.root_part(), "multipart", "mixed")
    }

    /// A delivery status report from a mailer daemon (bounces must reach users even
    /// though they are cleartext).
    pub fn is_mailer_daemon_report(&self, from: &str) -> bool {
        self.header_text("Auto-Submitted")
            .is_some_and(|v| !v.is_empty())
            && from.to_lowercase().starts_with("mailer-daemon@")
            && has_type(self.msg.root_part(), "multipart", "report")
    }

    fn sub_parts(&self, part: &MessagePart<'a>) -> Option<Vec<&MessagePart<'a>>> {
        let ids = part.sub_parts()?;
        ids.iter()
            .map(|&id| self.msg.part(id))
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
