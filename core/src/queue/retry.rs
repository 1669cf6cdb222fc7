//! When to try a queued message again, when to warn the sender, and when to give up.
//!
//! The schedule follows what Postfix does by default: the first retry within minutes, the
//! interval doubling up to a ceiling, a delay warning after some hours, and expiry (a bounce)
//! after days. All times are Unix seconds, passed in.

use std::time::Duration;

/// The retry policy (`[relay]` keys configure it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt.
    pub first_retry: Duration,
    /// Longest wait between attempts (the doubling stops here).
    pub max_retry: Duration,
    /// Age at which undelivered recipients are bounced.
    pub max_age: Duration,
    /// Age at which the sender is told once that delivery is delayed; `None` for never.
    pub delay_warning: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_retry: Duration::from_secs(5 * 60),
            max_retry: Duration::from_secs(4 * 3600),
            max_age: Duration::from_secs(5 * 86_400),
            delay_warning: Some(Duration::from_secs(4 * 3600)),
        }
    }
}

/// What to do with recipients still undelivered after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time.
    RetryAt(i64),
    /// The message is too old: bounce what is left.
    Expired,
}

impl RetryPolicy {
    /// The wait after `failed_attempts` failed attempts (1 = after the first).
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(30);
        let wait = self
            .first_retry
            .saturating_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX));
        wait.min(self.max_retry)
    }

    /// After an attempt at `now` (the `failed_attempts`-th that left recipients undelivered) of
    /// a message queued at `queued`: when to retry, or that it expired. A retry is never
    /// scheduled past the expiry time; the last attempt happens at expiry.
    pub fn after_failure(&self, queued: i64, failed_attempts: u32, now: i64) -> Next {
        let expiry = queued.saturating_add(secs(self.max_age));
        if now >= expiry {
            return Next::Expired;
        }
        let next = now.saturating_add(secs(self.backoff(failed_attempts)));
        Next::RetryAt(next.min(expiry))
    }

    /// True when a delay warning is due now for a message queued at `queued` that has not had
    /// one yet.
    pub fn warning_due(&self, queued: i64, already_warned: bool, now: i64) -> bool {
        match self.delay_warning {
            Some(after) if !already_warned => now.saturating_sub(queued) >= secs(after),
            _ => false,
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let p = RetryPolicy::default();
        let mins: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs() / 60).collect();
        assert_eq!(mins, [5, 10, 20, 40, 80, 160, 240, 240]);
        assert_eq!(p.backoff(u32::MAX), p.max_retry);
    }

    #[test]
    fn retries_until_expiry_then_bounces() {
        let p = RetryPolicy::default();
        let q = 1_000_000;
        assert_eq!(p.after_failure(q, 1, q), Next::RetryAt(q + 300));
        assert_eq!(
            p.after_failure(q, 3, q + 1000),
            Next::RetryAt(q + 1000 + 1200)
        );
        let expiry = q + 5 * 86_400;
        // The last retry is clamped to the expiry instant, then the message expires.
        assert_eq!(p.after_failure(q, 50, expiry - 60), Next::RetryAt(expiry));
        assert_eq!(p.after_failure(q, 51, expiry), Next::Expired);
    }

    #[test]
    fn one_delay_warning_after_four_hours() {
        let p = RetryPolicy::default();
        assert!(!p.warning_due(0, false, 4 * 3600 - 1));
        assert!(p.warning_due(0, false, 4 * 3600));
        assert!(!p.warning_due(0, true, 10 * 3600));
        let never = RetryPolicy {
            delay_warning: None,
            ..RetryPolicy::default()
        };
        assert!(!never.warning_due(0, false, 86_400));
    }
}
