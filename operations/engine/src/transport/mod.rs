//! How commands reach the host: SSH (one connection per run) or the local machine.

mod local;
pub mod lock;
mod ssh;
mod ssh_config;
mod target;

use std::sync::atomic::{AtomicUsize, Ordering};

use facts::{ExecOutput, Remote, RemoteError};

pub use local::Local;
pub use ssh::{Ssh, SshOptions};
pub use target::{Hop, Keys, Target};

/// The connected host, whichever way it is reached.
pub enum Host {
    Ssh(Ssh),
    Local(Local),
}

impl Host {
    pub async fn connect(target: &Target, options: &SshOptions) -> Result<Host, crate::Error> {
        Ok(match target {
            Target::Local => Host::Local(Local::default()),
            Target::Ssh { .. } => Host::Ssh(Ssh::connect(&target.route(), options).await?),
        })
    }

    /// Remote commands run so far (SSH exec sessions, or local shells).
    pub fn exec_count(&self) -> usize {
        match self {
            Host::Ssh(s) => s.exec_count(),
            Host::Local(l) => l.exec_count(),
        }
    }

    /// Bytes sent to the remote commands' stdin so far: what the run uploaded.
    pub fn uploaded_bytes(&self) -> usize {
        match self {
            Host::Ssh(s) => s.uploaded_bytes(),
            Host::Local(l) => l.uploaded_bytes(),
        }
    }

    /// Starts a command that answers up to `marker` and then keeps running for the rest of
    /// the run (the run lock); see [`Ssh::exec_held`].
    pub async fn exec_held(&self, command: &str, marker: &str) -> Result<HeldStart, RemoteError> {
        match self {
            Host::Ssh(s) => s.exec_held(command, marker).await,
            Host::Local(l) => l.exec_held(command, marker).await,
        }
    }

    pub async fn close(self) {
        if let Host::Ssh(s) = self {
            s.close().await;
        }
    }
}

impl Remote for Host {
    async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, RemoteError> {
        match self {
            Host::Ssh(s) => s.exec(command, stdin).await,
            Host::Local(l) => l.exec(command, stdin).await,
        }
    }

    async fn exec_streaming(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<ExecOutput, RemoteError> {
        match self {
            Host::Ssh(s) => s.exec_streaming(command, stdin, on_line).await,
            Host::Local(l) => l.exec_streaming(command, stdin, on_line).await,
        }
    }
}

/// How a held command began: it reached its marker and keeps running, or it ended first.
pub enum HeldStart {
    /// The output up to and with the marker.
    Holding(ExecOutput, Held),
    Ended(ExecOutput),
}

/// A command still running on the host for this run; it ends with [`Held::release`], or by
/// itself when this process dies or the link is lost.
pub struct Held {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Closes the command's stdin and waits (a few seconds at most) for it to end.
    pub async fn release(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Set when the run lock's command ended while the run still needed it (the host let the
/// lock go after missing heartbeats, or someone killed it): from then on another run may
/// take the host, so this one runs no further command.
#[derive(Debug, Default, Clone)]
struct LockLost(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl LockLost {
    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), RemoteError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(RemoteError(format!(
                "the run lock on the host ended while this run still held it (no heartbeat for {} s, or the lock command was killed): stopped before the next command, as another run may hold the host now",
                lock::SILENCE_SECS
            )));
        }
        Ok(())
    }
}

/// What every command passes on its way to the host, whichever transport carries it: one
/// of a few slots, the run lock still held, and the count of commands and uploaded bytes.
#[derive(Debug)]
struct Gate {
    slots: tokio::sync::Semaphore,
    count: Counter,
    lock_lost: LockLost,
}

impl Gate {
    fn new(slots: usize) -> Gate {
        Gate {
            slots: tokio::sync::Semaphore::new(slots),
            count: Counter::default(),
            lock_lost: LockLost::default(),
        }
    }

    /// Waits for a slot; refused once the run lock is lost. The slot is held while the
    /// permit lives.
    async fn enter(&self, stdin: usize) -> Result<tokio::sync::SemaphorePermit<'_>, RemoteError> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| RemoteError(e.to_string()))?;
        self.lock_lost.check()?;
        self.count.bump(stdin);
        Ok(slot)
    }

    fn exec_count(&self) -> usize {
        self.count.get()
    }

    fn uploaded_bytes(&self) -> usize {
        self.count.stdin_bytes()
    }
}

/// Counts commands and the bytes sent to their stdin (the uploads).
#[derive(Debug, Default)]
struct Counter {
    commands: AtomicUsize,
    stdin_bytes: AtomicUsize,
}

impl Counter {
    fn bump(&self, stdin: usize) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.stdin_bytes.fetch_add(stdin, Ordering::Relaxed);
    }

    fn get(&self) -> usize {
        self.commands.load(Ordering::Relaxed)
    }

    fn stdin_bytes(&self) -> usize {
        self.stdin_bytes.load(Ordering::Relaxed)
    }
}
