//! `@local`: the deploy runs on the server itself, without SSH.

use std::process::Stdio;
use std::time::Duration;

use facts::{ExecOutput, LineSplitter, RemoteError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::lock::HEARTBEAT_SECS;
use super::{Gate, Held, HeldStart};

/// Like the SSH transport, at most 4 commands at once.
#[derive(Debug)]
pub struct Local {
    gate: Gate,
}

impl Default for Local {
    fn default() -> Self {
        Local { gate: Gate::new(4) }
    }
}

fn shell(command: &str) -> Result<tokio::process::Child, RemoteError> {
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // a step given up on (its deadline passed) must not run on behind the run's back
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RemoteError(format!("cannot start sh: {e}")))
}

/// Reads `pipe` to its end into `into`, handing each line to `on_line`.
async fn drain(
    mut pipe: impl AsyncRead + Unpin,
    into: &mut Vec<u8>,
    on_line: &(dyn Fn(&str) + Sync),
) -> std::io::Result<()> {
    let mut lines = LineSplitter::default();
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            lines.flush(on_line);
            return Ok(());
        }
        lines.push(&buf[..n], on_line);
        into.extend_from_slice(&buf[..n]);
    }
}

impl Local {
    pub fn exec_count(&self) -> usize {
        self.gate.exec_count()
    }

    pub fn uploaded_bytes(&self) -> usize {
        self.gate.uploaded_bytes()
    }

    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, RemoteError> {
        self.exec_streaming(command, stdin, &|_| {}).await
    }

    pub async fn exec_streaming(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<ExecOutput, RemoteError> {
        let _slot = self.gate.enter(stdin.len()).await?;
        let mut child = shell(command)?;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let (stdout, stderr) = (
            child.stdout.take().expect("stdout is piped"),
            child.stderr.take().expect("stderr is piped"),
        );
        // write while the child runs, or a large input and a chatty child block each other
        let write = async {
            let _ = pipe.write_all(stdin).await;
            drop(pipe);
        };
        let mut out = ExecOutput::default();
        let (_, read_out, read_err) = tokio::join!(
            write,
            drain(stdout, &mut out.stdout, on_line),
            drain(stderr, &mut out.stderr, on_line)
        );
        read_out
            .and(read_err)
            .map_err(|e| RemoteError(format!("sh: {e}")))?;
        let status = child
            .wait()
            .await
            .map_err(|e| RemoteError(format!("sh: {e}")))?;
        out.status = status.code().map(|c| c as u32);
        Ok(out)
    }

    /// See `Ssh::exec_held`: the shell keeps running, fed heartbeats, until released or
    /// until this process dies (its stdin pipe closes with it).
    pub async fn exec_held(&self, command: &str, marker: &str) -> Result<HeldStart, RemoteError> {
        self.gate.count.bump(0);
        let mut child = shell(command)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        // stderr is read on the side, so that a chatty command never blocks on a full pipe
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut out = ExecOutput::default();
        let mut buf = [0u8; 8192];
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|e| RemoteError(format!("sh: {e}")))?;
            if n == 0 {
                break;
            }
            out.stdout.extend_from_slice(&buf[..n]);
            if out.stdout.ends_with(marker.as_bytes()) {
                out.stderr = stderr.lock().unwrap().clone();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let lock_lost = self.gate.lock_lost.clone();
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
                    tick.tick().await;
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {
                                if stdin.write_all(b"\n").await.is_err() {
                                    lock_lost.set();
                                    return;
                                }
                            }
                            ended = child.wait() => {
                                drop(ended);
                                lock_lost.set();
                                return;
                            }
                            _ = &mut stopped => break,
                        }
                    }
                    drop(stdin);
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                });
                return Ok(HeldStart::Holding(out, Held { stop, task }));
            }
        }
        drop(stdin);
        let _ = stderr_task.await;
        out.stderr = std::mem::take(&mut *stderr.lock().unwrap());
        let status = child
            .wait()
            .await
            .map_err(|e| RemoteError(format!("sh: {e}")))?;
        out.status = status.code().map(|c| c as u32);
        Ok(HeldStart::Ended(out))
    }
}
