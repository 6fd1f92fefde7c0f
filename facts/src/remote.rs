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
}
