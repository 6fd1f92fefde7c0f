//! The DATA section as received: validity rules and dot-unstuffing.
//!
//! filtermail keeps the bytes exactly as transmitted (dot-stuffed, CRLF) so that the
//! accepted message can be re-sent verbatim; only the copy used for parsing and DKIM is
//! unstuffed.

/// Rules upstream applies after the final dot: the data ends with CRLF, has no bare CR or
/// LF, and no line consisting of a single unescaped dot.
pub fn is_valid(data: &[u8]) -> bool {
    if !data.ends_with(b"\r\n") {
        return false;
    }
    let mut prev = 0u8;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => return false,
            b'\r' if data.get(i + 1) != Some(&b'\n') => return false,
            _ => {}
        }
        prev = b;
    }
    !data
        .split(|&b| b == b'\n')
        .any(|line| line == b".\r" || line == b".")
}

/// Undo SMTP transparency (RFC 5321 §4.5.2): a leading dot on a line is removed.
pub fn unstuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at_line_start = true;
    for &b in data {
        if !(at_line_start && b == b'.') {
            out.push(b);
        }
        at_line_start = b == b'\n';
    }
    out
}

/// Apply SMTP transparency to a raw message (used when the message arrives unstuffed, e.g.
/// over HTTP, and has to be sent on by SMTP). Also terminates a last line without CRLF.
pub fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        if out.ends_with(b"\n") {
            out.pop();
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        assert!(is_valid(b"Subject: x\r\n\r\nbody\r\n"));
        assert!(is_valid(b"a\r\n..\r\n"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"no final newline"));
        assert!(!is_valid(b"bare\nlf\r\n"));
        assert!(!is_valid(b"bare\rcr\r\n"));
        assert!(!is_valid(b"a\r\n.\r\nb\r\n"));
        assert!(!is_valid(b"a\r\n.\n\r\n"));
        assert!(!is_valid(b"ends with cr\r"));
    }

    #[test]
    fn stuffing_round_trip() {
        let raw = b".leading\r\nmiddle\r\n..two\r\n.\r\n";
        let stuffed = stuff(raw);
        assert_eq!(stuffed, b"..leading\r\nmiddle\r\n...two\r\n..\r\n");
        assert_eq!(unstuff(&stuffed), raw);
        assert!(is_valid(&stuffed));
    }

    #[test]
    fn stuff_terminates_last_line() {
        assert_eq!(stuff(b"a"), b"a\r\n");
        assert_eq!(stuff(b"a\n"), b"a\r\n");
        assert_eq!(stuff(b""), b"");
    }
}
