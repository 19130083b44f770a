//! Fixed-window counters for the refund page's form posts, per link and per client address.
//!
//! They live in this process's memory: several ebb processes behind one load balancer each count on
//! their own, so the effective limit is the configured one times the processes a client reaches. That
//! bounds abuse well enough for a form whose every step is also checked by the database; a shared
//! limiter would cost a write per attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

/// Beyond this many tracked keys, finished windows are dropped before counting.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    /// Counts one attempt for `key`; false when it is over `limit` in the current window.
    pub fn allow(&self, key: &str, limit: u32, window: Duration, now_ms: u64) -> bool {
        let window_ms = window.as_millis().max(1) as u64;
        let current = now_ms / window_ms;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, (w, _)| *w == current);
        }
        let entry = windows.entry(key.to_owned()).or_insert((current, 0));
        if entry.0 != current {
            *entry = (current, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_per_window_then_refuses_until_the_next() {
        let l = RateLimiter::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.allow("ip:1", 3, w, 1_000));
        }
        assert!(!l.allow("ip:1", 3, w, 2_000));
        assert!(l.allow("ip:2", 3, w, 2_000), "another key has its own count");
        assert!(l.allow("ip:1", 3, w, 61_000), "a new window starts afresh");
    }
}
