//! `@local`: the deploy runs on the server itself, without SSH.

use std::process::Stdio;

use facts::{ExecOutput, RemoteError};
use tokio::io::AsyncWriteExt;

use super::Counter;

/// Like the SSH transport, at most 4 commands at once.
#[derive(Debug)]
pub struct Local {
    count: Counter,
    slots: tokio::sync::Semaphore,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            count: Counter::default(),
            slots: tokio::sync::Semaphore::new(4),
        }
    }
}

impl Local {
    pub fn exec_count(&self) -> usize {
        self.count.get()
    }

    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, RemoteError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| RemoteError(e.to_string()))?;
        self.count.bump();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RemoteError(format!("cannot start sh: {e}")))?;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = stdin.to_vec();
        // write while the child runs, or a large input and a chatty child block each other
        let writer = tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| RemoteError(format!("sh: {e}")))?;
        let _ = writer.await;
        Ok(ExecOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            status: out.status.code().map(|c| c as u32),
        })
    }
}
