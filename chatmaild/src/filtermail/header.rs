//! The message header as Postfix's cleanup stores it, and the strict check that makes
//! filtermail's view of it the same as Postfix's and Delta Chat's.
//!
//! filtermail judges the message before Postfix stores it. If the two disagree on where
//! the header ends, filtermail can judge a `Content-Type: multipart/encrypted` that
//! Postfix moves into the body of a `text/plain` message. Postfix (cleanup, `is_header_buf`
//! in `global/is_header.c`, MIME input processing disabled on the relay) reads the header
//! like this:
//!
//! * a field starts with a name of one or more printable ASCII characters other than `:`
//!   (no SP, HT, control or 8-bit byte), optional SP/HT, then `:`; the name must end
//!   within the first `line_length_limit` (2048) bytes of the line, which is the record
//!   that `is_header_buf` sees;
//! * a line starting with SP or HT continues the field before it;
//! * any other line ends the header: an empty line (which is dropped), but also a line
//!   that is not a field (`X-Bad Name: v`, `no colon`, `: v`, an mbox `From ` line, a
//!   `--boundary` line). Then Postfix writes an empty line of its own and stores the rest,
//!   the offending line included, as the body;
//! * a field longer than `header_size_limit` (102400) is cut there (the header goes on);
//! * `name : v` is stored as `name: v`, and a value is stored cut at a NUL byte.
//!
//! (Each point is checked against a real Postfix 3.7 in
//! `tests/filtermail_postfix_header.rs`.)
//!
//! mail-parser and mailparse (the parser of Delta Chat) both read past every such line
//! and find the `Content-Type` after it (mailparse makes `no colon\r` or `--boundary\r` a
//! field name with an empty value), and neither knows Postfix's size limit. So there is no
//! tolerant reading that all three share: [`check`] refuses every header in which Postfix
//! could end or cut anything early, and for the headers it accepts, Postfix and mailparse
//! see the same fields (the fuzz target `filtermail_header` and the unit test
//! `mailparse_agrees_on_accepted_headers` compare them).
//!
//! Besides, [`check`] refuses what the three read differently even though the header goes
//! on: a space before the colon (mailparse keeps it in the name, so filtermail would not
//! see `Content-Type :` as a Content-Type, but Postfix stores it as `Content-Type:` and
//! Delta Chat then does), a whitespace-only
//! line (a continuation for Postfix and mailparse, an empty line for some others), a
//! first line that is a continuation (mailparse fails, Postfix ends the header before it
//! starts), NUL and bare CR bytes.

use std::fmt;

/// Postfix's `line_length_limit`: smtpd hands longer lines to cleanup in pieces of this
/// size, and only the first piece is tested for a field name.
pub const POSTFIX_LINE_LENGTH_LIMIT: usize = 2048;

/// Longest field name accepted. Far below [`POSTFIX_LINE_LENGTH_LIMIT`] (the colon must
/// be in the first piece), and no real field name comes near it.
pub const NAME_LIMIT: usize = 998;

/// Longest logical field (name, colon, value and folds, CRLFs counted) accepted. Postfix
/// cuts a field at `header_size_limit` (the relay pins it to 102400 in main.cf); 32 KiB
/// stays far below it whatever Postfix counts (it stores LF where we count CRLF). The
/// largest real field, an Autocrypt header with a 4096-bit RSA key, is about 4 KiB.
pub const FIELD_LIMIT: usize = 32768;

/// Longest whole header accepted. OpenDKIM, which signs outgoing mail after the
/// re-injection, refuses a header block over its `MaximumHeaders` (64 KiB by default)
/// with a temporary error, so the client would retry forever (seen through the relay at
/// about 170 KB); the room left is for what Postfix adds (Received:).
pub const HEADER_LIMIT: usize = 60000;

/// One header field as Postfix and mailparse both see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    /// Everything after the colon up to the end of the field's last line, folds kept,
    /// the final line break excluded.
    pub value: &'a [u8],
    /// 1-based line number of the field's first line.
    pub line: usize,
}

/// An accepted header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub fields: Vec<Field<'a>>,
    /// Offset of the first body byte (after the empty line), or the input length when
    /// the message has no empty line.
    pub body_start: usize,
}

/// Why a header was refused; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    NotAField { line: usize, why: NotAField },
    FirstLineIsContinuation,
    WhitespaceOnlyLine { line: usize },
    FieldTooLong { line: usize },
    HeaderTooLong,
    Nul { line: usize },
    BareCr { line: usize },
}

/// What is wrong with a line that should start a header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAField {
    NoColon,
    EmptyName,
    SpaceInName,
    SpaceBeforeColon,
    ControlOr8BitInName,
    NameTooLong,
}

impl fmt::Display for NotAField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotAField::NoColon => "no colon",
            NotAField::EmptyName => "empty field name",
            NotAField::SpaceInName => "space in the field name",
            NotAField::SpaceBeforeColon => "space before the colon",
            NotAField::ControlOr8BitInName => "control or 8-bit character in the field name",
            NotAField::NameTooLong => "field name too long",
        })
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotAField { line, why } => {
                write!(f, "header line {line} is not a header field ({why})")
            }
            HeaderError::FirstLineIsContinuation => {
                f.write_str("header line 1 is a continuation line")
            }
            HeaderError::WhitespaceOnlyLine { line } => {
                write!(f, "header line {line} is whitespace only")
            }
            HeaderError::FieldTooLong { line } => write!(
                f,
                "header field at line {line} is longer than {FIELD_LIMIT} bytes"
            ),
            HeaderError::HeaderTooLong => {
                write!(f, "the header is longer than {HEADER_LIMIT} bytes")
            }
            HeaderError::Nul { line } => write!(f, "header line {line} contains a NUL byte"),
            HeaderError::BareCr { line } => write!(f, "header line {line} contains a bare CR"),
        }
    }
}

/// One line: its content without the line break, and where the next line starts.
struct Line<'a> {
    start: usize,
    text: &'a [u8],
    next: usize,
}

fn lines(raw: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= raw.len() {
            return None;
        }
        let start = pos;
        let (end, next) = match raw[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (pos + i, pos + i + 1),
            None => (raw.len(), raw.len()),
        };
        pos = next;
        let text = &raw[start..end];
        Some(Line {
            start,
            text: text.strip_suffix(b"\r").unwrap_or(text),
            next,
        })
    })
}

fn is_space_tab(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Postfix's `is_header_buf` on the first `line_length_limit` bytes of a line: the
/// length of the field name, `None` when the line does not start a field.
pub fn postfix_field_name_len(line: &[u8]) -> Option<usize> {
    let record = &line[..line.len().min(POSTFIX_LINE_LENGTH_LIMIT)];
    let mut name_len = 0;
    let mut after_name = false;
    for &b in record {
        match b {
            b':' => return (name_len > 0).then_some(name_len),
            b' ' | b'\t' if name_len > 0 => after_name = true,
            0x21..=0x7e if !after_name => name_len += 1,
            _ => return None,
        }
    }
    None
}

/// Where Postfix's cleanup ends the header of `raw` (the tolerant reading, not the strict
/// check): the offset of the first line that is not part of the header, i.e. of the
/// empty line or of the line that Postfix makes the first body line.
pub fn postfix_header_end(raw: &[u8]) -> usize {
    let mut in_field = false;
    for line in lines(raw) {
        if line.text.is_empty() {
            return line.start;
        }
        if is_space_tab(line.text[0]) {
            if !in_field {
                return line.start;
            }
        } else if postfix_field_name_len(line.text).is_some() {
            in_field = true;
        } else {
            return line.start;
        }
    }
    raw.len()
}

/// The strict check: the header of `raw`, or why Postfix, mailparse or another reader
/// could see it differently.
pub fn check(raw: &[u8]) -> Result<Header<'_>, HeaderError> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut body_start = raw.len();
    let mut open: Option<OpenField> = None;
    for (index, line) in lines(raw).enumerate() {
        let number = index + 1;
        if line.text.contains(&0) {
            return Err(HeaderError::Nul { line: number });
        }
        if line.text.contains(&b'\r') {
            return Err(HeaderError::BareCr { line: number });
        }
        if line.text.is_empty() {
            body_start = line.next;
            break;
        }
        if line.next > HEADER_LIMIT {
            return Err(HeaderError::HeaderTooLong);
        }
        if is_space_tab(line.text[0]) {
            let Some(field) = open.as_mut() else {
                return Err(HeaderError::FirstLineIsContinuation);
            };
            if line.text.iter().all(|&b| is_space_tab(b)) {
                return Err(HeaderError::WhitespaceOnlyLine { line: number });
            }
            field.end = line.start + line.text.len();
        } else {
            let name_len = field_name(line.text)
                .map_err(|why| HeaderError::NotAField { line: number, why })?;
            if let Some(field) = open.take() {
                fields.push(field.close(raw)?);
            }
            open = Some(OpenField {
                start: line.start,
                name_len,
                end: line.start + line.text.len(),
                line: number,
            });
        }
        if let Some(field) = &open
            && line.next - field.start > FIELD_LIMIT
        {
            return Err(HeaderError::FieldTooLong { line: field.line });
        }
    }
    if let Some(field) = open {
        fields.push(field.close(raw)?);
    }
    Ok(Header { fields, body_start })
}

/// A field whose end is not known yet.
struct OpenField {
    start: usize,
    name_len: usize,
    /// End of the last line seen, without its line break.
    end: usize,
    line: usize,
}

impl OpenField {
    fn close(self, raw: &[u8]) -> Result<Field<'_>, HeaderError> {
        Ok(Field {
            name: &raw[self.start..self.start + self.name_len],
            value: &raw[self.start + self.name_len + 1..self.end],
            line: self.line,
        })
    }
}

/// The name of a line that starts a field, stricter than Postfix: no space before the
/// colon, a bounded length.
fn field_name(line: &[u8]) -> Result<usize, NotAField> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(NotAField::NoColon);
    };
    let name = &line[..colon];
    if name.is_empty() {
        return Err(NotAField::EmptyName);
    }
    if let Some(last_printable) = name.iter().rposition(|&b| !is_space_tab(b))
        && last_printable + 1 < name.len()
        && name[..=last_printable]
            .iter()
            .all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(NotAField::SpaceBeforeColon);
    }
    if name.iter().any(|&b| is_space_tab(b)) {
        return Err(NotAField::SpaceInName);
    }
    if !name.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(NotAField::ControlOr8BitInName);
    }
    if name.len() > NAME_LIMIT {
        return Err(NotAField::NameTooLong);
    }
    Ok(colon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(raw: &str) -> HeaderError {
        check(raw.as_bytes()).unwrap_err()
    }

    #[test]
    fn accepted_header_fields_and_body_start() {
        let raw = b"From: a@b.example\r\nSubject: hi\r\n  there\r\nX-Empty:\r\n\r\nbody\r\n";
        let header = check(raw).unwrap();
        let fields: Vec<_> = header
            .fields
            .iter()
            .map(|f| (f.name, f.value, f.line))
            .collect();
        assert_eq!(
            fields,
            [
                (&b"From"[..], &b" a@b.example"[..], 1),
                (b"Subject", b" hi\r\n  there", 2),
                (b"X-Empty", b"", 4),
            ]
        );
        assert_eq!(&raw[header.body_start..], b"body\r\n");
        // No empty line: all header, no body.
        assert_eq!(check(b"A: b\r\n").unwrap().body_start, 6);
        assert_eq!(check(b"").unwrap().fields, []);
        // LF-only line ends, as Postfix and mailparse take them.
        assert_eq!(check(b"A: b\n c\n\nbody").unwrap().body_start, 9);
        // 8-bit values are fine (RFC 6532).
        assert!(check("X: J\u{f6}rg\r\n\r\n".as_bytes()).is_ok());
    }

    #[test]
    fn lines_that_are_not_fields() {
        let not_a_field = |line: &str, why| {
            assert_eq!(
                error(&format!(
                    "From: a@b\r\n{line}\r\nContent-Type: text/plain\r\n\r\n"
                )),
                HeaderError::NotAField { line: 2, why },
                "{line:?}"
            );
        };
        not_a_field("X-Bad Name: v", NotAField::SpaceInName);
        not_a_field("no colon", NotAField::NoColon);
        not_a_field(": v", NotAField::EmptyName);
        not_a_field("X-B\u{e4}d: v", NotAField::ControlOr8BitInName);
        not_a_field("X-\u{7f}: v", NotAField::ControlOr8BitInName);
        not_a_field(
            "From alice@b Tue Dec  1 10:00:00 2026",
            NotAField::SpaceInName,
        );
        not_a_field("--boundary", NotAField::NoColon);
        not_a_field("X-Obsolete : v", NotAField::SpaceBeforeColon);
        not_a_field("X-Obsolete\t: v", NotAField::SpaceBeforeColon);
        not_a_field(&format!("{}: v", "n".repeat(999)), NotAField::NameTooLong);
        assert!(check(format!("{}: v\r\n", "n".repeat(998)).as_bytes()).is_ok());
    }

    #[test]
    fn other_refusals() {
        assert_eq!(error(" X: v\r\n\r\n"), HeaderError::FirstLineIsContinuation);
        assert_eq!(
            error("\tX: v\r\n\r\n"),
            HeaderError::FirstLineIsContinuation
        );
        assert_eq!(
            error("A: b\r\n   \r\nC: d\r\n\r\n"),
            HeaderError::WhitespaceOnlyLine { line: 2 }
        );
        assert_eq!(error("A: b\0c\r\n\r\n"), HeaderError::Nul { line: 1 });
        assert_eq!(error("A: b\rc\r\n\r\n"), HeaderError::BareCr { line: 1 });
        assert_eq!(error("A: b\r\r\n\r\n"), HeaderError::BareCr { line: 1 });
        // The body is not the header's business.
        assert!(check(b"A: b\r\n\r\nX Y\0\r\r\n").is_ok());
    }

    #[test]
    fn field_length_limit() {
        let field = |len: usize| format!("X: {}\r\n\r\n", "v".repeat(len - 5));
        assert!(check(field(FIELD_LIMIT).as_bytes()).is_ok());
        assert_eq!(
            error(&field(FIELD_LIMIT + 1)),
            HeaderError::FieldTooLong { line: 1 }
        );
        // Folded: the logical field counts.
        let folded = format!("X: a\r\n{}", format!(" {}\r\n", "v".repeat(998)).repeat(70));
        assert_eq!(error(&folded), HeaderError::FieldTooLong { line: 1 });
        // many fields, each short: the whole header counts too
        let many = format!("X-F: {}\r\n", "v".repeat(995)).repeat(HEADER_LIMIT / 1002);
        assert!(check(format!("{many}\r\nbody").as_bytes()).is_ok());
        let more = format!(
            "{many}{}",
            format!("X-G: {}\r\n", "w".repeat(995)).repeat(2)
        );
        assert_eq!(error(&more), HeaderError::HeaderTooLong);
    }

    #[test]
    fn postfix_model_header_end() {
        assert_eq!(postfix_header_end(b"A: b\r\n\r\nbody"), 6);
        assert_eq!(postfix_header_end(b"A: b\r\nX Y: v\r\nC: d\r\n\r\n"), 6);
        assert_eq!(postfix_header_end(b" A: b\r\n\r\n"), 0);
        // Postfix goes on where the strict check refuses.
        assert_eq!(postfix_header_end(b"A: b\r\n \r\nC : d\r\n\r\n"), 16);
        let colon_at = |n: usize| format!("{}: v\r\n\r\n", "n".repeat(n));
        assert_eq!(postfix_header_end(colon_at(2047).as_bytes()), 2052);
        assert_eq!(postfix_header_end(colon_at(2048).as_bytes()), 0);
        assert_eq!(postfix_field_name_len(b"Name \t: v"), Some(4));
        assert_eq!(postfix_field_name_len(b"Na me: v"), None);
    }
}
