//! Slows password guessing across connections: failed logins are counted per user and per
//! client address, and each further failure is answered later (1 s, 2 s, 4 s ... up to a cap).
//! Counts are forgotten after a quiet window and the table is bounded. Loopback clients are
//! counted per user only, so local tools and tests are not slowed by each other.

use petrel_core::WallClock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// After this long without a failure, a key starts again from zero.
const WINDOW_SECS: i64 = 15 * 60;
/// The longest delay imposed.
const MAX_DELAY: Duration = Duration::from_secs(16);
/// Keys remembered at most; the oldest are dropped beyond that.
const MAX_KEYS: usize = 100_000;

/// Failure counts per user and per client address.
#[derive(Debug)]
pub struct AuthThrottle {
    clock: Arc<dyn WallClock>,
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl AuthThrottle {
    /// An empty table.
    pub fn new(clock: Arc<dyn WallClock>) -> Self {
        AuthThrottle {
            clock,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, client_ip: &str, loopback: bool) -> Vec<String> {
        let mut keys = vec![format!("user:{}", user.to_lowercase())];
        if !loopback && !client_ip.is_empty() {
            keys.push(format!("ip:{client_ip}"));
        }
        keys
    }

    /// Records a failed login and returns how long to wait before answering it.
    pub fn failed(&self, user: &str, client_ip: &str, loopback: bool) -> Duration {
        let now = self.clock.unix_seconds();
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_KEYS {
            map.retain(|_, (_, last)| now - *last <= WINDOW_SECS);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let mut worst = 0;
        for key in Self::keys(user, client_ip, loopback) {
            let entry = map.entry(key).or_insert((0, now));
            if now - entry.1 > WINDOW_SECS {
                entry.0 = 0;
            }
            entry.0 = entry.0.saturating_add(1);
            entry.1 = now;
            worst = worst.max(entry.0);
        }
        let shift = worst.saturating_sub(1).min(10);
        Duration::from_secs(1u64 << shift).min(MAX_DELAY)
    }

    /// A successful login clears the user's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&format!("user:{}", user.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct At(std::sync::atomic::AtomicI64);
    impl WallClock for At {
        fn unix_seconds(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[test]
    fn delays_grow_per_user_and_address_then_reset() {
        let clock = Arc::new(At(std::sync::atomic::AtomicI64::new(1000)));
        let t = AuthThrottle::new(clock.clone());
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(t.failed("a@x", "192.0.2.1", false)), 1);
        assert_eq!(secs(t.failed("a@x", "192.0.2.1", false)), 2);
        // Another user from the same address is slowed by the address's count.
        assert_eq!(secs(t.failed("b@x", "192.0.2.1", false)), 4);
        // Another address guessing the same user is slowed by the user's count.
        assert_eq!(secs(t.failed("a@x", "198.51.100.7", false)), 4);
        for _ in 0..10 {
            t.failed("a@x", "192.0.2.1", false);
        }
        assert_eq!(t.failed("a@x", "192.0.2.1", false), MAX_DELAY);
        t.succeeded("A@x");
        assert_eq!(
            secs(t.failed("a@x", "127.0.0.1", true)),
            1,
            "loopback counts per user only"
        );
        clock.0.store(
            1000 + WINDOW_SECS + 60,
            std::sync::atomic::Ordering::Relaxed,
        );
        assert_eq!(
            secs(t.failed("b@x", "192.0.2.1", false)),
            1,
            "forgotten after the window"
        );
    }
}
