//! Failed sign-ins, counted per username and per client address in a
//! sliding window. Only failures count and a success clears the username's
//! count, which is why this is a small window of our own rather than a
//! request-rate limiter like governor's.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at once; past this, stale keys are dropped first and then
/// the oldest, so a flood of names cannot grow the map without bound.
const MAX_KEYS: usize = 100_000;

pub struct Limiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Limiter {
            max_failures,
            window,
            failures: Mutex::default(),
        }
    }

    /// `Some(wait)` when any key has used up its failures: how long until
    /// the oldest of them leaves the window.
    pub fn refused(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| {
                let times = failures.get_mut(key)?;
                prune(times, now, self.window);
                (times.len() >= self.max_failures)
                    .then(|| self.window.saturating_sub(now - times[0]))
            })
            .max()
    }

    pub fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, times| {
                prune(times, now, self.window);
                !times.is_empty()
            });
        }
        for key in keys {
            if failures.len() >= MAX_KEYS && !failures.contains_key(key) {
                continue;
            }
            let times = failures.entry(key.clone()).or_default();
            prune(times, now, self.window);
            times.push_back(now);
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_attempt_after_five_failures_is_refused() {
        let limiter = Limiter::new(5, Duration::from_secs(900));
        let keys = ["user:ada".to_owned(), "addr:10.0.0.1".to_owned()];
        for _ in 0..5 {
            assert_eq!(limiter.refused(&keys), None);
            limiter.record_failure(&keys);
        }
        let wait = limiter.refused(&keys).unwrap();
        assert!(wait > Duration::from_secs(890), "{wait:?}");
        // The address stays blocked for another user too.
        assert!(
            limiter
                .refused(&["user:bob".into(), "addr:10.0.0.1".into()])
                .is_some()
        );
        // A success clears the username, not the address.
        limiter.clear("user:ada");
        assert!(limiter.refused(&["user:ada".into()]).is_none());
        assert!(limiter.refused(&["addr:10.0.0.1".into()]).is_some());
    }

    #[test]
    fn failures_leave_the_window() {
        let limiter = Limiter::new(2, Duration::from_millis(50));
        let keys = ["user:x".to_owned()];
        limiter.record_failure(&keys);
        limiter.record_failure(&keys);
        assert!(limiter.refused(&keys).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.refused(&keys).is_none());
    }
}
