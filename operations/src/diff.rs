//! Unified diffs of file contents for the plan.

use similar::TextDiff;

/// Text files up to this size get a line diff; others a one-line summary.
pub(crate) const MAX_DIFF_BYTES: usize = 1 << 20;

pub(crate) fn unified(path: &str, old: &[u8], new: &[u8]) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(o), Ok(n)) if old.len() <= MAX_DIFF_BYTES && new.len() <= MAX_DIFF_BYTES => {
            let diff = TextDiff::from_lines(o, n);
            let mut out = diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("a{path}"), &format!("b{path}"))
                .to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out
        }
        _ => format!(
            "Binary or large file {path}: {} bytes -> {} bytes\n",
            old.len(),
            new.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_lines_with_headers() {
        let d = unified("/etc/x.conf", b"a\nb\nc\n", b"a\nB\nc\n");
        assert!(d.starts_with("--- a/etc/x.conf\n+++ b/etc/x.conf\n"), "{d}");
        assert!(d.contains("-b\n+B\n"), "{d}");
    }

    #[test]
    fn binary_content_gets_a_summary() {
        let d = unified("/x", &[0xff, 0xfe], b"text");
        assert!(d.starts_with("Binary or large file /x: 2 bytes -> 4 bytes"));
    }
}
