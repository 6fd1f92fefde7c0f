use std::future::Future;

/// What one remote command produced.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the command was killed by a signal.
    pub status: Option<u32>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// All of stderr on one line, for an error message: blank lines and repeats dropped,
    /// long lines cut, and of a long output the first lines (often the cause, as apt's
    /// `E: Failed to fetch ...` before `E: Unable to fetch some archives`) and the last ones.
    pub fn error_text(&self) -> String {
        condense(&String::from_utf8_lossy(&self.stderr))
    }

    /// The last non-empty line of stderr: usually the one that says what went wrong.
    pub fn error_line(&self) -> String {
        let err = String::from_utf8_lossy(&self.stderr);
        err.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string()
    }
}

/// Lines kept from the head and the tail of a long stderr, and the longest line kept.
const HEAD_LINES: usize = 4;
const TAIL_LINES: usize = 6;
const LINE_CHARS: usize = 400;

fn condense(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.split(['\n', '\r']).map(str::trim) {
        if line.is_empty() || lines.last().is_some_and(|l| l == line) {
            continue;
        }
        let cut: String = line.chars().take(LINE_CHARS).collect();
        lines.push(if cut.len() < line.len() {
            format!("{cut}...")
        } else {
            cut
        });
    }
    if lines.len() > HEAD_LINES + TAIL_LINES + 1 {
        let left_out = lines.len() - HEAD_LINES - TAIL_LINES;
        let tail = lines.split_off(lines.len() - TAIL_LINES);
        lines.truncate(HEAD_LINES);
        lines.push(format!("[{left_out} lines left out]"));
        lines.extend(tail);
    }
    lines.join(" | ")
}

/// A transport failure (connection lost, channel refused), as opposed to a command that ran
/// and failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// Something that runs shell commands on the target host: SSH, or the local machine.
pub trait Remote: Sync {
    /// Runs `command` with `sh -c` semantics, feeding `stdin` to it.
    fn exec(
        &self,
        command: &str,
        stdin: &[u8],
    ) -> impl Future<Output = Result<ExecOutput, RemoteError>> + Send;

    /// Like [`Remote::exec`], and hands every line of output (stdout or stderr, a `\r` ends
    /// a line too) to `on_line` as it arrives, so that a long step can say what it is doing.
    fn exec_streaming(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: &(dyn Fn(&str) + Sync),
    ) -> impl Future<Output = Result<ExecOutput, RemoteError>> + Send {
        let _ = on_line;
        self.exec(command, stdin)
    }
}

/// Splits a stream of output into lines for [`Remote::exec_streaming`]: bytes are kept until
/// their line ends.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], on_line: &(dyn Fn(&str) + Sync)) {
        for &b in data {
            if b == b'\n' || b == b'\r' {
                self.flush(on_line);
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }

    /// Hands over what is left (output that did not end with a newline).
    pub fn flush(&mut self, on_line: &(dyn Fn(&str) + Sync)) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim();
        if !line.is_empty() {
            on_line(line);
        }
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr(text: &str) -> ExecOutput {
        ExecOutput {
            stderr: text.as_bytes().to_vec(),
            ..ExecOutput::default()
        }
    }

    #[test]
    fn error_text_keeps_the_cause_before_the_summary_line() {
        let out = stderr(
            "W: Some index files failed\n\nE: Failed to fetch http://deb/pool/x.deb  Connection refused\nE: Unable to fetch some archives, maybe run apt-get update\n",
        );
        assert_eq!(
            out.error_text(),
            "W: Some index files failed | E: Failed to fetch http://deb/pool/x.deb  Connection refused | E: Unable to fetch some archives, maybe run apt-get update"
        );
    }

    #[test]
    fn error_text_of_a_long_output_keeps_head_and_tail() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let got = stderr(&text).error_text();
        assert_eq!(
            got,
            "line 1 | line 2 | line 3 | line 4 | [20 lines left out] | line 25 | line 26 | line 27 | line 28 | line 29 | line 30"
        );
        let long = stderr(&"x".repeat(1000)).error_text();
        assert_eq!(long.len(), LINE_CHARS + 3);
    }

    #[test]
    fn lines_are_split_across_chunks_and_at_carriage_returns() {
        let seen = std::sync::Mutex::new(Vec::new());
        let push = |l: &str| seen.lock().unwrap().push(l.to_string());
        let mut s = LineSplitter::default();
        s.push(b"Get:1 nginx", &push);
        s.push(b" [600 kB]\n50%\r60%\rdone", &push);
        s.flush(&push);
        assert_eq!(
            *seen.lock().unwrap(),
            ["Get:1 nginx [600 kB]", "50%", "60%", "done"]
        );
    }
}
