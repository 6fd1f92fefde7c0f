//! The message-level rules: what is encrypted, which cleartext messages are exceptions,
//! and who the message claims to be from.
//!
//! The MIME structure is read with `mailparse`, the parser Delta Chat core reads mail
//! with, so that "encrypted" here means encrypted in the client's view. Where `mailparse`
//! and other readers (mail-parser, RFC 2045/2231 parsers) would read a part differently,
//! the message is [`Ambiguity`]: never encrypted and never one of the cleartext
//! exceptions. The differences found (mailparse 0.18):
//!
//! * two `boundary=` (or any) parameters: mailparse takes the last, mail-parser the first;
//! * an encoded word in `Content-Type`: mailparse decodes the whole value before it splits
//!   parameters, so `=?utf-8?q?;_boundary=3DB?=` is a `boundary=B` for it and part of
//!   another value (or junk) for mail-parser;
//! * RFC 2231 forms (`boundary*=utf-8''B`, `boundary*0=`): decoded by some readers only;
//! * 8-bit bytes in `Content-Type`: mailparse falls back to Latin-1 and then looks for the
//!   boundary's UTF-8 bytes, which are not the bytes in the message;
//! * a backslash in a quoted value or an unbalanced quote, a parameter value that is not
//!   a token or quoted string (comments, spaces): unquoted and split differently;
//! * two `Content-Type` or `Content-Transfer-Encoding` fields in one part: mailparse
//!   takes the first, mail-parser the last;
//! * a line that starts with a part's delimiter but is not one (`--B` followed by other
//!   text): mailparse splits there (it matches line prefixes), RFC 2046 readers do not;
//! * a part header line that is not a field ([`header::check`] for every part).
//!
//! mailparse finds a boundary only at a line start, so boundaries such as `B`, `E` or
//! `BEG` are not found inside `-----BEGIN PGP MESSAGE-----` (mail-parser did find them).

use mailparse::{MailAddr, MailHeader, MailHeaderMap, ParsedMail};

use super::Direction;
use super::address::is_valid_address;
use super::header;
use super::openpgp::{self, NotEncrypted};
use super::reply::Reply;

/// A parsed message. Parsing never fails on malformed input: broken MIME simply does not
/// have the structure the rules ask for.
pub struct Mail<'a> {
    /// `None` when mailparse refuses the input (e.g. a bare CR ending a part header).
    parsed: Option<ParsedMail<'a>>,
    ambiguity: Option<Ambiguity>,
}

/// Why a message is not PGP/MIME (RFC 3156) encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPgpMime {
    NotMultipartEncrypted,
    /// Readers may disagree on the MIME structure.
    Ambiguous(Ambiguity),
    PartCount(usize),
    NestedMultipart,
    FirstPartType,
    FirstPartBody,
    SecondPartType,
    Payload(NotEncrypted),
}

/// A MIME construct that readers (mailparse, mail-parser, RFC parsers) see differently.
/// `part` numbers parts depth-first, the message itself being part 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ambiguity {
    DuplicateField {
        part: usize,
        name: &'static str,
    },
    DuplicateParameter {
        part: usize,
        name: String,
    },
    EncodedWordInContentType {
        part: usize,
    },
    Rfc2231Parameter {
        part: usize,
        name: String,
    },
    NonAsciiContentType {
        part: usize,
    },
    MalformedParameter {
        part: usize,
    },
    DelimiterPrefix {
        part: usize,
    },
    PartHeader {
        part: usize,
        error: header::HeaderError,
    },
    /// mailparse refuses the message; Delta Chat could not read it either.
    Unparsable,
}

impl std::fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ambiguity::DuplicateField { part, name } => {
                write!(f, "two {name} fields in part {part}")
            }
            Ambiguity::DuplicateParameter { part, name } => {
                write!(f, "two {name} parameters in part {part}")
            }
            Ambiguity::EncodedWordInContentType { part } => {
                write!(f, "encoded word in Content-Type of part {part}")
            }
            Ambiguity::Rfc2231Parameter { part, name } => {
                write!(f, "RFC 2231 parameter {name} in part {part}")
            }
            Ambiguity::NonAsciiContentType { part } => {
                write!(f, "8-bit Content-Type in part {part}")
            }
            Ambiguity::MalformedParameter { part } => {
                write!(f, "malformed Content-Type parameter in part {part}")
            }
            Ambiguity::DelimiterPrefix { part } => {
                write!(f, "line starting with the boundary of part {part}")
            }
            Ambiguity::PartHeader { part, error } => write!(f, "part {part}: {error}"),
            Ambiguity::Unparsable => f.write_str("unparsable MIME"),
        }
    }
}

impl<'a> Mail<'a> {
    pub fn parse(raw: &'a [u8]) -> Mail<'a> {
        // mailparse asserts internal invariants of its RFC 2231 decoding; should one ever
        // fail on hostile input, that is an unreadable message, not a crashed filter.
        let parsed = std::panic::catch_unwind(|| mailparse::parse_mail(raw));
        match parsed.unwrap_or(Err(mailparse::MailParseError::Generic("parser panic"))) {
            Ok(parsed) => {
                let ambiguity = find_ambiguity(&parsed);
                Mail {
                    parsed: Some(parsed),
                    ambiguity,
                }
            }
            Err(_) => Mail {
                parsed: None,
                ambiguity: Some(Ambiguity::Unparsable),
            },
        }
    }

    /// What readers might see differently in this message, if anything.
    pub fn ambiguity(&self) -> Option<&Ambiguity> {
        self.ambiguity.as_ref()
    }

    /// The refusal of a cleartext message: upstream's reply, with the reason when the
    /// message was not judged because its MIME is ambiguous.
    pub fn encryption_needed(&self) -> Reply {
        match &self.ambiguity {
            Some(why) => Reply::encryption_needed_ambiguous(why),
            None => Reply::encryption_needed(),
        }
    }

    /// The single address of the single `From:` header as mailparse reads it,
    /// lower-cased, a quoted local part unquoted when it needs no quotes
    /// ([`canonical_address`]).
    ///
    /// More than one `From:` header or more than one address is refused: the relay's
    /// check would look at one of them and a client might display another. The error is
    /// the raw value of the first `From:` header, for the reply.
    pub fn from_address(&self) -> Result<String, String> {
        let Some(parsed) = &self.parsed else {
            return Err(String::new());
        };
        let froms = parsed.headers.get_all_headers("From");
        let raw = froms
            .first()
            .map(|h| String::from_utf8_lossy(h.get_value_raw()).trim().to_owned())
            .unwrap_or_default();
        let [from] = froms[..] else {
            return Err(raw);
        };
        let addr = single_address(from).ok_or_else(|| raw.clone())?;
        let addr = canonical_address(&addr);
        if is_valid_address(&addr) {
            Ok(addr)
        } else {
            Err(raw)
        }
    }

    fn root(&self) -> Option<&ParsedMail<'a>> {
        self.parsed.as_ref()
    }

    /// The decoded value of a root header that occurs exactly once.
    fn single_header(&self, name: &str) -> Option<String> {
        let headers = self.root()?.headers.get_all_headers(name);
        let [header] = headers[..] else {
            return None;
        };
        Some(header.get_value().trim().to_owned())
    }

    /// RFC 3156 PGP/MIME with a payload that is really an encrypted OpenPGP message.
    pub fn check_encrypted(&self, direction: Direction) -> Result<(), NotPgpMime> {
        if let Some(ambiguity) = &self.ambiguity {
            return Err(NotPgpMime::Ambiguous(ambiguity.clone()));
        }
        let root = self.root().ok_or(NotPgpMime::NotMultipartEncrypted)?;
        if !has_type(root, "multipart/encrypted") || root.subparts.is_empty() {
            return Err(NotPgpMime::NotMultipartEncrypted);
        }
        let parts = &root.subparts;
        if parts.len() != 2 {
            return Err(NotPgpMime::PartCount(parts.len()));
        }
        if parts.iter().any(is_multipart) {
            return Err(NotPgpMime::NestedMultipart);
        }
        let (control, payload) = (&parts[0], &parts[1]);
        if !has_type(control, "application/pgp-encrypted") {
            return Err(NotPgpMime::FirstPartType);
        }
        let version = control
            .get_body_raw()
            .map_err(|_| NotPgpMime::FirstPartBody)?;
        if version.trim_ascii() != b"Version: 1" {
            return Err(NotPgpMime::FirstPartBody);
        }
        if !has_type(payload, "application/octet-stream") {
            return Err(NotPgpMime::SecondPartType);
        }
        let armored = payload
            .get_body_raw()
            .map_err(|_| NotPgpMime::Payload(NotEncrypted::Base64))?;
        openpgp::check_armored(&armored, direction).map_err(NotPgpMime::Payload)
    }

    pub fn is_encrypted(&self, direction: Direction) -> bool {
        self.check_encrypted(direction).is_ok()
    }

    /// The first message of the Secure-Join (QR code) protocol, which is cleartext by
    /// necessity: the header and a one-part body both naming a vc/vg request.
    pub fn is_securejoin(&self) -> bool {
        if self.ambiguity.is_some()
            || !matches!(
                self.single_header("Secure-Join").as_deref(),
                Some("vc-request" | "vg-request")
            )
        {
            return false;
        }
        let Some(root) = self.root() else {
            return false;
        };
        let [part] = &root.subparts[..] else {
            return false;
        };
        if is_multipart(part) || !has_type(part, "text/plain") {
            return false;
        }
        let Ok(body) = part.get_body_raw() else {
            return false;
        };
        let body = String::from_utf8_lossy(&body).trim().to_lowercase();
        body == "secure-join: vc-request" || body == "secure-join: vg-request"
    }

    /// Autocrypt Setup Message shape (the caller checks it is sent to oneself).
    pub fn is_autocrypt_setup_message(&self) -> bool {
        self.ambiguity.is_none()
            && self.single_header("Subject").as_deref() == Some("Autocrypt Setup Message")
            && self.root().is_some_and(|r| has_type(r, "multipart/mixed"))
    }

    /// A delivery status report from a mailer daemon (bounces must reach users even
    /// though they are cleartext).
    pub fn is_mailer_daemon_report(&self, from: &str) -> bool {
        self.ambiguity.is_none()
            && self
                .single_header("Auto-Submitted")
                .is_some_and(|v| !v.is_empty())
            && from.to_lowercase().starts_with("mailer-daemon@")
            && self.root().is_some_and(|r| has_type(r, "multipart/report"))
    }
}

/// The one mailbox of a `From:` value, as mailparse reads it. mailparse refuses a bare
/// quoted local part (`"x"@domain`, RFC 5322 valid); the same text in angle brackets
/// is read, so a value without any address-list syntax gets a second try that way.
fn single_address(from: &MailHeader<'_>) -> Option<String> {
    let list = match mailparse::addrparse_header(from) {
        Ok(list) => list,
        Err(_) => {
            let value = from.get_value();
            let value = value.trim();
            if value.is_empty() || value.contains(['<', '>', ',', ';', '(']) {
                return None;
            }
            mailparse::addrparse(&format!("<{value}>")).ok()?
        }
    };
    let mut addrs = list.iter();
    let (Some(MailAddr::Single(info)), None) = (addrs.next(), addrs.next()) else {
        return None;
    };
    Some(info.addr.clone())
}

/// The form addresses are compared in: trimmed, lower-cased, and a quoted local part
/// whose content is a plain dot-atom unquoted (`"x"@d` and `x@d` are one mailbox). A
/// local part that needs its quotes keeps them.
pub fn canonical_address(addr: &str) -> String {
    let addr = addr.trim().to_lowercase();
    if let Some((local, domain)) = addr.rsplit_once('@')
        && let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"'))
        && is_dot_atom(inner)
    {
        return format!("{inner}@{domain}");
    }
    addr
}

/// RFC 5322 dot-atom: atext runs separated by single dots.
fn is_dot_atom(s: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    !s.is_empty() && s.split('.').all(|a| !a.is_empty() && a.chars().all(atext))
}

fn is_multipart(part: &ParsedMail<'_>) -> bool {
    part.ctype.mimetype.starts_with("multipart/")
}

/// mailparse lower-cases the type and defaults to `text/plain` (RFC 2045).
fn has_type(part: &ParsedMail<'_>, mimetype: &str) -> bool {
    part.ctype.mimetype == mimetype
}

/// The first ambiguity in `root` and its parts, depth-first.
fn find_ambiguity(root: &ParsedMail<'_>) -> Option<Ambiguity> {
    root.parts()
        .enumerate()
        .find_map(|(part, p)| part_ambiguity(part, p))
}

fn part_ambiguity(part: usize, p: &ParsedMail<'_>) -> Option<Ambiguity> {
    // The message's own header was checked by the caller against Postfix's rules; the
    // same rules make the part headers read alike everywhere.
    if part > 0
        && let Err(error) = header::check(p.raw_bytes)
    {
        return Some(Ambiguity::PartHeader { part, error });
    }
    for name in ["Content-Type", "Content-Transfer-Encoding"] {
        if p.headers.get_all_headers(name).len() > 1 {
            return Some(Ambiguity::DuplicateField { part, name });
        }
    }
    if let Some(ct) = p.headers.get_first_header("Content-Type")
        && let Err(a) = check_content_type(part, ct.get_value_raw())
    {
        return Some(a);
    }
    if is_multipart(p)
        && let Some(boundary) = p.ctype.params.get("boundary")
        && has_delimiter_prefix(p, boundary)
    {
        return Some(Ambiguity::DelimiterPrefix { part });
    }
    None
}

/// The raw `Content-Type` value: `type/subtype` then `; name=value` parameters, each
/// name once, each value a token or a quoted string without backslashes.
fn check_content_type(part: usize, raw: &[u8]) -> Result<(), Ambiguity> {
    if !raw.is_ascii() {
        return Err(Ambiguity::NonAsciiContentType { part });
    }
    let value = String::from_utf8_lossy(raw);
    if value.contains("=?") {
        return Err(Ambiguity::EncodedWordInContentType { part });
    }
    let malformed = Ambiguity::MalformedParameter { part };
    let mut seen: Vec<String> = Vec::new();
    for param in split_parameters(&value).ok_or(malformed.clone())?.skip(1) {
        let param = param.trim_matches(is_fws);
        if param.is_empty() {
            // `type/subtype;` with nothing after the last semicolon.
            continue;
        }
        let (name, value) = param.split_once('=').ok_or(malformed.clone())?;
        let name = name.trim_matches(is_fws).to_ascii_lowercase();
        let value = value.trim_matches(is_fws);
        if name.contains('*') {
            return Err(Ambiguity::Rfc2231Parameter { part, name });
        }
        if !is_token(&name) || !(is_token(value) || is_plain_quoted(value)) {
            return Err(malformed);
        }
        if seen.contains(&name) {
            return Err(Ambiguity::DuplicateParameter { part, name });
        }
        seen.push(name);
    }
    Ok(())
}

fn is_fws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Split on semicolons outside quotes; `None` for an unbalanced quote or a backslash
/// inside quotes (readers unescape differently).
fn split_parameters(value: &str) -> Option<std::vec::IntoIter<&str>> {
    let mut params = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => return None,
            ';' if !quoted => {
                params.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    params.push(&value[start..]);
    Some(params.into_iter())
}

/// RFC 2045 token: printable ASCII without SP and tspecials.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// A quoted string of printable ASCII (and SP) without quotes or backslashes inside.
fn is_plain_quoted(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with('"')
        && s.ends_with('"')
        && s[1..s.len() - 1]
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// A body line that mailparse takes for a delimiter of `boundary` (it matches the line
/// prefix) but that RFC 2046 does not: anything but `--` and blanks after `--boundary`.
fn has_delimiter_prefix(p: &ParsedMail<'_>, boundary: &str) -> bool {
    let header_len = p.get_headers().get_raw_bytes().len();
    let body = &p.raw_bytes[header_len.min(p.raw_bytes.len())..];
    let delimiter = format!("--{boundary}");
    body.split(|&b| b == b'\n').any(|line| {
        line.strip_prefix(delimiter.as_bytes()).is_some_and(|rest| {
            let rest = rest.strip_prefix(b"--").unwrap_or(rest);
            !rest.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_without_a_message() {
        for raw in [&b""[..], b"\r\n", b" ", b"\r\n\r\n", b"\r"] {
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
        assert_eq!(from("From: \"x\"@Example.org"), Ok("x@example.org".into()));
        assert_eq!(
            from("From: X <\"x.y\"@example.org>"),
            Ok("x.y@example.org".into())
        );
        assert!(from("From: undisclosed").is_err());
        assert!(from("From: <a@b.example>, <c@d.example>").is_err());
        assert!(from("From: group: a@b.example, c@d.example;").is_err());
        assert!(from("From: group: a@b.example;").is_err());
        assert!(from("Sender: a@b.example").is_err());
        assert!(from("From: a@b.example\r\nFrom: a@b.example").is_err());
    }

    #[test]
    fn canonical_addresses() {
        assert_eq!(canonical_address(" \"X\"@D.example"), "x@d.example");
        assert_eq!(canonical_address("\"a.b\"@d"), "a.b@d");
        // Quotes that are needed stay.
        assert_eq!(canonical_address("\"a b\"@d"), "\"a b\"@d");
        assert_eq!(canonical_address("\"a..b\"@d"), "\"a..b\"@d");
        assert_eq!(canonical_address("\"a@b\"@d"), "\"a@b\"@d");
        assert_eq!(canonical_address("\"\"@d"), "\"\"@d");
    }

    fn ambiguity(content_type: &str) -> Option<Ambiguity> {
        let msg = format!(
            "From: a@b.example\r\nContent-Type: {content_type}\r\n\r\n--B\r\n\r\nx\r\n--B--\r\n"
        );
        Mail::parse(msg.as_bytes()).ambiguity().cloned()
    }

    #[test]
    fn content_type_parameters_read_one_way() {
        assert_eq!(ambiguity("multipart/mixed; boundary=B"), None);
        assert_eq!(
            ambiguity("multipart/mixed; charset=\"utf-8\";\r\n boundary=\"B\";"),
            None
        );
        assert_eq!(
            ambiguity("multipart/mixed; boundary=A; BOUNDARY=B"),
            Some(Ambiguity::DuplicateParameter {
                part: 0,
                name: "boundary".into()
            })
        );
        assert_eq!(
            ambiguity("multipart/mixed; boundary=A =?utf-8?q?;_boundary=3DB?="),
            Some(Ambiguity::EncodedWordInContentType { part: 0 })
        );
        for rfc2231 in ["boundary*=utf-8''B", "boundary*0=B"] {
            assert!(
                matches!(
                    ambiguity(&format!("multipart/mixed; {rfc2231}")),
                    Some(Ambiguity::Rfc2231Parameter { .. })
                ),
                "{rfc2231}"
            );
        }
        for malformed in [
            "multipart/mixed; boundary=\"B",
            "multipart/mixed; boundary=\"B\\\"\"",
            "multipart/mixed; boundary=B (comment)",
            "multipart/mixed; boundary",
            "multipart/mixed; =B",
        ] {
            assert_eq!(
                ambiguity(malformed),
                Some(Ambiguity::MalformedParameter { part: 0 }),
                "{malformed}"
            );
        }
        assert_eq!(
            ambiguity("multipart/mixed; boundary=B\u{e4}"),
            Some(Ambiguity::NonAsciiContentType { part: 0 })
        );
    }

    #[test]
    fn duplicate_fields_in_a_part() {
        let msg = "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
                   --B\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
                   x\r\n--B--\r\n";
        assert_eq!(
            Mail::parse(msg.as_bytes()).ambiguity(),
            Some(&Ambiguity::DuplicateField {
                part: 1,
                name: "Content-Transfer-Encoding"
            })
        );
    }

    #[test]
    fn delimiter_prefix_lines() {
        let msg = |line: &str| {
            format!(
                "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
                 --B\r\n\r\nx\r\n{line}\r\n--B--\r\n"
            )
        };
        assert_eq!(Mail::parse(msg("--B  ").as_bytes()).ambiguity(), None);
        assert_eq!(
            Mail::parse(msg("--Bx").as_bytes()).ambiguity(),
            Some(&Ambiguity::DelimiterPrefix { part: 0 })
        );
    }

    #[test]
    fn part_headers_follow_the_header_rules() {
        let msg = "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
                   --B\r\nX-Bad Name: v\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n";
        assert!(matches!(
            Mail::parse(msg.as_bytes()).ambiguity(),
            Some(Ambiguity::PartHeader { part: 1, .. })
        ));
    }
}
