//! SMTP replies as filtermail sends them.
//!
//! The texts are part of the relay's observable behaviour: Postfix passes them to the
//! submitting client, the test suites match on substrings, and `/mxdeliv` returns them as
//! HTTP bodies. Keep them byte-identical to upstream.

use std::fmt;

/// One SMTP reply: a three-digit code and a single-line text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        // A CR or LF inside the text would let a peer-controlled string (an address, an
        // upstream error) inject extra reply lines.
        let text = text.into().replace(['\r', '\n'], " ");
        Reply { code, text }
    }

    pub fn ok() -> Reply {
        Reply::new(250, "OK")
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent_failure(&self) -> bool {
        self.code >= 500
    }

    /// The reply as sent on the wire, CRLF-terminated.
    pub fn to_line(&self) -> String {
        format!("{self}\r\n")
    }

    pub fn encryption_needed() -> Reply {
        Reply::new(523, "Encryption Needed: Invalid Unencrypted Mail")
    }

    pub fn message_too_big() -> Reply {
        Reply::new(552, "Message exceeds maximum size")
    }

    /// The encryption refusal for a message whose MIME structure readers could see
    /// differently: upstream's text, then why.
    pub fn encryption_needed_ambiguous(why: &impl fmt::Display) -> Reply {
        Reply::new(
            523,
            format!("Encryption Needed: Invalid Unencrypted Mail (ambiguous MIME: {why})"),
        )
    }

    /// A header that Postfix would end or cut early, or that readers see differently
    /// (see `header`).
    pub fn invalid_header(why: &impl fmt::Display) -> Reply {
        Reply::new(554, format!("5.6.0 Invalid message header: {why}"))
    }

    pub fn invalid_data() -> Reply {
        Reply::new(500, "Invalid DATA")
    }

    pub fn invalid_from_header(header: &str) -> Reply {
        Reply::new(500, format!("Invalid FROM header: {header}"))
    }

    pub fn no_dkim_signature() -> Reply {
        Reply::new(554, "5.7.1 No DKIM signature found")
    }

    pub fn no_valid_dkim_signature() -> Reply {
        Reply::new(554, "5.7.1 No valid DKIM signature found")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(Reply::ok().to_line(), "250 OK\r\n");
        assert_eq!(
            Reply::encryption_needed().to_string(),
            "523 Encryption Needed: Invalid Unencrypted Mail"
        );
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(500, "a\r\n250 OK");
        assert_eq!(r.to_line(), "500 a  250 OK\r\n");
    }

    #[test]
    fn classes() {
        assert!(Reply::ok().is_positive());
        assert!(!Reply::new(450, "x").is_positive());
        assert!(!Reply::new(450, "x").is_permanent_failure());
        assert!(Reply::encryption_needed().is_permanent_failure());
    }
}
