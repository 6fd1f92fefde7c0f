//! The `appversions` server attribute: an operator-editable JSON file, sent to clients as
//! one compact line (the dict protocol is line based).

use std::io::ErrorKind;
use std::path::Path;

/// File name next to `chatmail.ini` on a relay.
pub const FILE_NAME: &str = "appversions.json";

/// Default content shipped with chatmaild.
pub const DEFAULT_CONTENT: &str = include_str!("../../defaults/appversions.json");

/// Read and re-encode compactly; `None` if missing (silently) or unreadable/invalid (logged).
/// Read on every lookup so that edits take effect without a restart.
pub fn read_compact(path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            log::error!("failed to read {}: {e}", path.display());
            return None;
        }
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
        log::error!("failed to read {}: invalid JSON: {e}", path.display());
        return None;
    }
    Some(minify(&text))
}

/// Drop insignificant whitespace of valid JSON text and escape non-ASCII characters, keeping
/// key order as written (a parsed map would reorder keys).
pub fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_content_is_one_compact_line() {
        let compact = minify(DEFAULT_CONTENT);
        assert!(!compact.contains(['\n', ' ']));
        assert!(compact.starts_with(r#"{"clients":[{"clientId":"deltachat","sources":[{"sourceId":"gplay","versionInteger":754,"#));
        let a: serde_json::Value = serde_json::from_str(&compact).unwrap();
        let b: serde_json::Value = serde_json::from_str(DEFAULT_CONTENT).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn strings_keep_spaces_and_escapes_non_ascii() {
        assert_eq!(
            minify("{ \"a b\" : [ 1 , \"x \\\" y\" ],\n \"é😀\": \"\\n\" }"),
            r#"{"a b":[1,"x \" y"],"\u00e9\ud83d\ude00":"\n"}"#
        );
    }

    #[test]
    fn read_compact_cases() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join(FILE_NAME);
        assert_eq!(read_compact(&p), None);
        std::fs::write(&p, "{ \"clients\": [] }\n").unwrap();
        assert_eq!(read_compact(&p).as_deref(), Some(r#"{"clients":[]}"#));
        std::fs::write(&p, "{ broken").unwrap();
        assert_eq!(read_compact(&p), None);
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert_eq!(read_compact(&p), None);
    }
}
