//! Push notifications: for every new message, POST each device token of the recipient to
//! the notification proxy, with a crash-safe on-disk queue and exponential back-off.
//!
//! Each pending notification is a file `<queue dir>/<random hex>` holding
//! `<addr>\n<start_ts>\n<token>`. Attempts happen immediately, then 8, 64, 512 and 4096 s
//! after the previous failure; anything that would be retried more than 5 hours after the
//! first attempt is dropped. Tokens are opaque (encrypted for the proxy).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::fsutil::random_bytes;
use crate::metadata::tokens::TokenStore;
use crate::user::{now_secs, with_suffix};

pub const NOTIFY_URL: &str = "https://notifications.delta.chat/notify";
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Give up on a notification this long after the first attempt.
pub const DROP_DEADLINE: i64 = 5 * 3600;
pub const BASE_DELAY: u64 = 8;
/// Number of attempts: enough levels for the back-off to reach the deadline
/// (floor(log8(18000)) + 1).
pub const MAX_TRIES: usize = 5;

/// One persisted pending notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    pub path: PathBuf,
    pub addr: String,
    pub start_ts: i64,
    pub token: String,
}

impl QueueItem {
    /// Persist a new item (temp file + rename so a crash never leaves half an item).
    pub fn create(queue_dir: &Path, addr: &str, start_ts: i64, token: &str) -> Result<QueueItem> {
        let mut id = [0u8; 16];
        random_bytes(&mut id);
        let path = queue_dir.join(hex::encode(id));
        let tmp = with_suffix(&path, ".tmp");
        std::fs::write(&tmp, format!("{addr}\n{start_ts}\n{token}"))
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(QueueItem {
            path,
            addr: addr.to_owned(),
            start_ts,
            token: token.to_owned(),
        })
    }

    /// Parse a queue file; `None` if it is not a well-formed item.
    pub fn read(path: &Path) -> Option<QueueItem> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut parts = text.splitn(3, '\n');
        let addr = parts.next()?.to_owned();
        let start_ts = parts.next()?.trim().parse().ok()?;
        let token = parts.next()?.to_owned();
        Some(QueueItem {
            path: path.to_owned(),
            addr,
            start_ts,
            token,
        })
    }

    pub fn delete(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::error!("cannot delete queue item {}: {e}", self.path.display());
        }
    }
}

/// Seconds to wait before attempt number `level` (0-based).
pub fn retry_delay(level: usize, base: u64) -> u64 {
    if level == 0 {
        0
    } else {
        base.saturating_pow(level as u32)
    }
}

/// When to make attempt `level`, or `None` if the item must be dropped.
pub fn schedule_time(level: usize, now: i64, start_ts: i64, base: u64) -> Option<i64> {
    let when = now.saturating_add(retry_delay(level, base) as i64);
    (level < MAX_TRIES && when <= start_ts + DROP_DEADLINE).then_some(when)
}

/// Tunables, overridable for tests.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub url: String,
    pub base_delay: u64,
    /// Concurrent requests for first attempts and for each retry level.
    pub first_try_concurrency: usize,
    pub retry_concurrency: usize,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        NotifierSettings {
            url: NOTIFY_URL.to_owned(),
            base_delay: BASE_DELAY,
            first_try_concurrency: 16,
            retry_concurrency: 4,
        }
    }
}

/// Cheap to clone; all clones share the queue.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    queue_dir: PathBuf,
    settings: NotifierSettings,
    tokens: TokenStore,
    client: reqwest::Client,
    runtime: Handle,
    limits: Vec<Semaphore>,
}

impl Notifier {
    /// Must be called within a tokio runtime; attempts run as tasks on it.
    pub fn new(
        queue_dir: PathBuf,
        tokens: TokenStore,
        settings: NotifierSettings,
    ) -> Result<Notifier> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::io(&queue_dir, std::io::Error::other(e)))?;
        let limits = (0..MAX_TRIES)
            .map(|level| {
                Semaphore::new(if level == 0 {
                    settings.first_try_concurrency
                } else {
                    settings.retry_concurrency
                })
            })
            .collect();
        Ok(Notifier {
            inner: Arc::new(Inner {
                queue_dir,
                settings,
                tokens,
                client,
                runtime: Handle::current(),
                limits,
            }),
        })
    }

    pub fn queue_dir(&self) -> &Path {
        &self.inner.queue_dir
    }

    /// A message arrived for `addr`: queue one notification per valid token.
    /// Blocking (file I/O); call from a blocking context.
    pub fn new_message_for_addr(&self, addr: &str) -> Result<()> {
        let start_ts = now_secs();
        for token in self.inner.tokens.tokens(addr)? {
            let item = QueueItem::create(&self.inner.queue_dir, addr, start_ts, &token)?;
            self.schedule(item, 0);
        }
        Ok(())
    }

    /// Re-schedule items persisted by a previous run; remove leftovers that are not items.
    pub fn requeue_persisted(&self) -> Result<usize> {
        let dir = &self.inner.queue_dir;
        let mut count = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let is_tmp = path.to_string_lossy().ends_with(".tmp");
            match QueueItem::read(&path).filter(|_| !is_tmp) {
                Some(item) => {
                    self.schedule(item, 0);
                    count += 1;
                }
                None => {
                    log::warn!(
                        "removing spurious queue item: {:?}",
                        path.display().to_string()
                    );
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(count)
    }

    /// Plan attempt `level` of `item`, or drop it if past its deadline.
    fn schedule(&self, item: QueueItem, level: usize) {
        let now = now_secs();
        let Some(when) = schedule_time(level, now, item.start_ts, self.inner.settings.base_delay)
        else {
            item.delete();
            log::error!("notification exceeded deadline: {:?}", item.token);
            return;
        };
        let this = self.clone();
        let wait = Duration::from_secs((when - now).max(0) as u64);
        self.inner.runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            this.attempt(item, level).await;
        });
    }

    async fn attempt(&self, item: QueueItem, level: usize) {
        let outcome = {
            let _permit = self.inner.limits[level].acquire().await;
            self.inner
                .client
                .post(&self.inner.settings.url)
                .body(item.token.clone())
                .send()
                .await
        };
        let failure = match outcome {
            Ok(resp) if resp.status().as_u16() == 200 => None,
            Ok(resp) if resp.status().as_u16() == 410 => {
                // The token is permanently invalid: forget it.
                let tokens = self.inner.tokens.clone();
                let (addr, token) = (item.addr.clone(), item.token.clone());
                let removed =
                    tokio::task::spawn_blocking(move || tokens.remove(&addr, &token)).await;
                if let Ok(Err(e)) = removed {
                    log::error!("cannot remove expired token of {:?}: {e}", item.addr);
                }
                None
            }
            Ok(resp) => Some(format!("HTTP status {}", resp.status())),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                let item2 = item.clone();
                let _ = tokio::task::spawn_blocking(move || item2.delete()).await;
            }
            Some(reason) => {
                log::warn!("Notification request failed: {reason}");
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.schedule(item, level + 1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_and_levels() {
        let delays: Vec<u64> = (0..MAX_TRIES).map(|l| retry_delay(l, BASE_DELAY)).collect();
        assert_eq!(delays, [0, 8, 64, 512, 4096]);
        // floor(log8(5 h)) + 1
        assert_eq!(
            MAX_TRIES,
            ((DROP_DEADLINE as f64).ln() / 8f64.ln()) as usize + 1
        );
    }

    #[test]
    fn schedule_deadline_rules() {
        let start = 1_000_000;
        assert_eq!(schedule_time(0, start, start, 8), Some(start));
        assert_eq!(
            schedule_time(4, start + 100, start, 8),
            Some(start + 100 + 4096)
        );
        assert_eq!(schedule_time(5, start, start, 8), None, "no sixth attempt");
        // Items persisted long ago are dropped when requeued.
        assert_eq!(schedule_time(0, start + DROP_DEADLINE + 1, start, 8), None);
        assert_eq!(
            schedule_time(0, start + DROP_DEADLINE, start, 8),
            Some(start + DROP_DEADLINE)
        );
        assert_eq!(
            schedule_time(4, start + DROP_DEADLINE - 4000, start, 8),
            None
        );
    }

    #[test]
    fn queue_item_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let item = QueueItem::create(tmp.path(), "a@x.org", 1234, "tok\nwith\nnewlines").unwrap();
        assert_eq!(item.path.file_name().unwrap().len(), 32);
        assert_eq!(
            std::fs::read_to_string(&item.path).unwrap(),
            "a@x.org\n1234\ntok\nwith\nnewlines"
        );
        assert_eq!(QueueItem::read(&item.path).unwrap(), item);
        item.delete();
        assert!(!item.path.exists());
        item.delete();
    }

    #[test]
    fn malformed_queue_files() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, content) in [
            ("a", "only-addr"),
            ("b", "a@x\nnot-a-number\ntok"),
            ("c", "a@x\n12"),
        ] {
            let p = tmp.path().join(name);
            std::fs::write(&p, content).unwrap();
            assert_eq!(QueueItem::read(&p), None, "{content:?}");
        }
        let p = tmp.path().join("d");
        std::fs::write(&p, "a@x\n12\n").unwrap();
        assert_eq!(QueueItem::read(&p).unwrap().token, "");
    }
}
