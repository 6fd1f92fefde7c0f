//! Graceful shutdown: SIGTERM/SIGINT as a value listeners and sessions wait on, and the
//! count of sessions still in flight, so a service can stop accepting, let what it
//! accepted finish, and exit 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Whether shutdown was requested; cheap to clone into every session.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Requests the shutdown its [`Shutdown`]s wait for.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// A trigger and the shutdown it fires.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// A shutdown that is never requested (for servers that run until the process dies).
    pub fn never() -> Shutdown {
        channel().1
    }

    /// Fired by the first SIGTERM or SIGINT. Must be called within a tokio runtime.
    pub fn on_signals() -> Result<Shutdown, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let (trigger, shutdown) = channel();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM: shutting down"),
                _ = int.recv() => log::info!("SIGINT: shutting down"),
            }
            trigger.fire();
        });
        Ok(shutdown)
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested; never, if the trigger is gone unfired.
    pub async fn requested(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|requested| *requested).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The sessions a listener started; each holds a [`SessionGuard`] until it ends.
pub struct Sessions {
    tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
    count: Arc<AtomicUsize>,
}

/// Held by one session for as long as it runs.
pub struct SessionGuard {
    _tx: mpsc::Sender<()>,
    count: Arc<AtomicUsize>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}

impl Sessions {
    pub fn new() -> Sessions {
        let (tx, rx) = mpsc::channel(1);
        Sessions {
            tx,
            rx,
            count: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn guard(&self) -> SessionGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        SessionGuard {
            _tx: self.tx.clone(),
            count: self.count.clone(),
        }
    }

    /// Wait until every session ended, at most `limit`; the number still running then
    /// (0: all finished).
    pub async fn drained(self, limit: Duration) -> usize {
        let Sessions { tx, mut rx, count } = self;
        drop(tx);
        // recv() gives None once the last guard's sender is dropped
        let _ = tokio::time::timeout(limit, rx.recv()).await;
        count.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_is_seen_by_every_clone() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        assert!(!shutdown.is_requested());
        trigger.fire();
        shutdown.requested().await;
        other.requested().await;
        assert!(other.is_requested());
        assert!(!Shutdown::never().is_requested());
    }

    #[tokio::test]
    async fn drained_waits_for_the_last_session() {
        let sessions = Sessions::new();
        let guard = sessions.guard();
        let (started, release) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = release.await;
            drop(guard);
        });
        let left = tokio::spawn(sessions.drained(Duration::from_secs(600)));
        started.send(()).unwrap();
        assert_eq!(left.await.unwrap(), 0);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn drained_gives_up_after_the_limit() {
        let sessions = Sessions::new();
        let _stuck = sessions.guard();
        assert_eq!(sessions.drained(Duration::from_millis(10)).await, 1);
    }
}
