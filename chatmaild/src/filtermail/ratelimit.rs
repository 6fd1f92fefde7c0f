//! Per-sender send rate limit (GCRA, the "virtual scheduling" form of a token bucket).
//!
//! Each sender has a theoretical arrival time (TAT). A message at time `t` is allowed if
//! `TAT - t <= (burst - 1) * interval`, and then moves the TAT one interval further. With
//! `per_minute = 60, burst = 10` a sender can send 10 messages back-to-back and then one
//! per second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    tat: HashMap<String, Instant>,
    checks_since_sweep: usize,
}

impl RateLimiter {
    /// Zero values are treated as 1: upstream refuses to start with them, and a limiter that
    /// allows nothing would silently stop all mail.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        RateLimiter {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            tat: HashMap::new(),
            checks_since_sweep: 0,
        }
    }

    /// Record one message from `key` at `now`; `Err(wait)` tells how long until the next
    /// message would be allowed.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        self.maybe_sweep(now);
        let tat = self.tat.get(key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        self.tat.insert(key.to_owned(), tat + self.interval);
        Ok(())
    }

    /// Number of senders currently remembered.
    pub fn tracked(&self) -> usize {
        self.tat.len()
    }

    // Entries whose TAT lies in the past carry no information (a fresh entry behaves the
    // same), so dropping them bounds memory by the number of recently active senders.
    fn maybe_sweep(&mut self, now: Instant) {
        self.checks_since_sweep += 1;
        if self.checks_since_sweep >= 1024 || self.checks_since_sweep > self.tat.len() {
            self.tat.retain(|_, tat| *tat > now);
            self.checks_since_sweep = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut rl = RateLimiter::new(60, 10);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(rl.check("a@x", t0), Ok(()), "message {i}");
        }
        let wait = rl.check("a@x", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Other senders are unaffected.
        assert_eq!(rl.check("b@x", t0), Ok(()));
        // One interval later exactly one more message is allowed.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(rl.check("a@x", t1), Ok(()));
        assert!(rl.check("a@x", t1).is_err());
        // After a long pause the full burst is available again.
        let t2 = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(rl.check("a@x", t2), Ok(()));
        }
        assert!(rl.check("a@x", t2).is_err());
    }

    #[test]
    fn steady_rate_is_sustainable() {
        let mut rl = RateLimiter::new(30, 1);
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(rl.check("a@x", t0 + Duration::from_secs(2 * i)), Ok(()));
        }
        assert!(rl.check("a@x", t0 + Duration::from_secs(199)).is_err());
    }

    #[test]
    fn rejected_attempts_do_not_consume() {
        let mut rl = RateLimiter::new(60, 1);
        let t0 = Instant::now();
        assert!(rl.check("a@x", t0).is_ok());
        for _ in 0..50 {
            assert!(rl.check("a@x", t0).is_err());
        }
        assert!(rl.check("a@x", t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_config_values_do_not_block_everything() {
        let mut rl = RateLimiter::new(0, 0);
        assert!(rl.check("a@x", Instant::now()).is_ok());
    }

    #[test]
    fn idle_senders_are_forgotten() {
        let mut rl = RateLimiter::new(60, 10);
        let t0 = Instant::now();
        for i in 0..100 {
            rl.check(&format!("u{i}@x"), t0).unwrap();
        }
        assert_eq!(rl.tracked(), 100);
        let later = t0 + Duration::from_secs(10);
        for _ in 0..200 {
            rl.check("active@x", later).ok();
        }
        assert_eq!(rl.tracked(), 1);
    }
}
