//! Small shared state of transport mode: hosts known to lack `/mxdeliv`, and the
//! per-destination concurrency limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Entries beyond this trigger a sweep of expired/idle entries, bounding memory when many
/// different hosts are contacted over time.
const SWEEP_ABOVE: usize = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Host names remembered for a fixed time.
pub struct HostCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Instant>>,
}

impl HostCache {
    pub fn new(ttl: Duration) -> HostCache {
        HostCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn contains(&self, host: &str) -> bool {
        lock(&self.entries)
            .get(host)
            .is_some_and(|until| *until > Instant::now())
    }

    pub fn insert(&self, host: &str) {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        if entries.len() > SWEEP_ABOVE {
            entries.retain(|_, until| *until > now);
        }
        entries.insert(host.to_owned(), now + self.ttl);
    }

    pub fn remove(&self, host: &str) {
        lock(&self.entries).remove(host);
    }
}

/// At most `per_destination` deliveries to one destination at a time.
pub struct Slots {
    per_destination: usize,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Slots {
    pub fn new(per_destination: usize) -> Slots {
        Slots {
            per_destination,
            destinations: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `destination`, held until the permit is dropped; `None` when all are
    /// taken (the caller defers instead of queueing behind a slow destination).
    pub fn try_acquire(&self, destination: &str) -> Option<OwnedSemaphorePermit> {
        let mut destinations = lock(&self.destinations);
        if destinations.len() > SWEEP_ABOVE {
            let idle = self.per_destination;
            destinations.retain(|_, s| s.available_permits() < idle);
        }
        let semaphore = destinations
            .entry(destination.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone();
        drop(destinations);
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_forgets() {
        let cache = HostCache::new(Duration::from_secs(60));
        assert!(!cache.contains("mx.example"));
        cache.insert("mx.example");
        assert!(cache.contains("mx.example"));
        cache.remove("mx.example");
        assert!(!cache.contains("mx.example"));
        let expired = HostCache::new(Duration::ZERO);
        expired.insert("mx.example");
        assert!(!expired.contains("mx.example"));
    }

    #[test]
    fn slots_per_destination() {
        let slots = Slots::new(2);
        let a1 = slots.try_acquire("a.example").unwrap();
        let _a2 = slots.try_acquire("a.example").unwrap();
        assert!(slots.try_acquire("a.example").is_none());
        assert!(slots.try_acquire("b.example").is_some());
        drop(a1);
        assert!(slots.try_acquire("a.example").is_some());
    }
}
