//! How commands reach the host: SSH (one connection per run) or the local machine.

mod local;
mod ssh;
mod ssh_config;
mod target;

use std::sync::atomic::{AtomicUsize, Ordering};

use facts::{ExecOutput, Remote, RemoteError};

pub use local::Local;
pub use ssh::{Ssh, SshOptions};
pub use target::Target;

/// The connected host, whichever way it is reached.
pub enum Host {
    Ssh(Ssh),
    Local(Local),
}

impl Host {
    pub async fn connect(target: &Target, options: &SshOptions) -> anyhow::Result<Host> {
        Ok(match target {
            Target::Local => Host::Local(Local::default()),
            Target::Ssh { user, host, port } => {
                Host::Ssh(Ssh::connect(user, host, *port, options).await?)
            }
        })
    }

    /// Remote commands run so far (SSH exec sessions, or local shells).
    pub fn exec_count(&self) -> usize {
        match self {
            Host::Ssh(s) => s.exec_count(),
            Host::Local(l) => l.exec_count(),
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
}

/// Counts commands; shared by both transports.
#[derive(Debug, Default)]
struct Counter(AtomicUsize);

impl Counter {
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}
