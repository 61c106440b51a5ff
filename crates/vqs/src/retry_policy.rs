use std::time::Duration;

/// How long to wait before attempt `n + 1` after attempt `n` failed.
///
/// The default is quadratic: attempt `n` (1-based) is retried after `(10 · n)²` seconds,
/// so the schedule is
///
/// | failed attempt | next try after |
/// | --- | --- |
/// | 1 | 100 s (1 min 40 s) |
/// | 2 | 400 s (6 min 40 s) |
/// | 3 | 900 s (15 min) |
/// | 4 | 1 600 s (26 min 40 s) |
/// | 10 | 10 000 s (2 h 46 min 40 s) |
///
/// A job picks another policy by overriding [`crate::Jobbable::retry_policy`].
///
/// ```
/// use std::time::Duration;
/// use vqs::RetryPolicy;
/// assert_eq!(RetryPolicy::default().next_delay(1), Duration::from_secs(100));
/// assert_eq!(RetryPolicy::default().next_delay(2), Duration::from_secs(400));
/// assert_eq!(RetryPolicy::Fixed(Duration::from_secs(5)).next_delay(7), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// `(factor · n)²` seconds after failed attempt `n`; the default factor is 10.
    #[default]
    Quadratic,
    /// `(factor · n)²` seconds with a chosen factor.
    QuadraticWith {
        /// Seconds per attempt before squaring (10 is the default policy).
        factor: u64,
    },
    /// The same delay after every failure.
    Fixed(Duration),
    /// `base · 2^(n-1)`, capped at `max`.
    Exponential {
        /// The delay after the first failure.
        base: Duration,
        /// The longest delay.
        max: Duration,
    },
}

/// The longest delay any policy returns: the longest retention a message can have (7 days).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

impl RetryPolicy {
    /// The delay before the next attempt, after attempt `attempt` (1-based) failed.
    pub fn next_delay(&self, attempt: u32) -> Duration {
        let n = u64::from(attempt.max(1));
        let delay = match *self {
            RetryPolicy::Quadratic => Duration::from_secs((10 * n).saturating_pow(2)),
            RetryPolicy::QuadraticWith { factor } => Duration::from_secs(factor.saturating_mul(n).saturating_pow(2)),
            RetryPolicy::Fixed(d) => d,
            RetryPolicy::Exponential { base, max } => {
                let shift = (n - 1).min(40) as u32;
                base.saturating_mul(1u32 << shift.min(31)).min(max)
            }
        };
        delay.min(MAX_RETRY_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_ten_n_squared() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=4).map(|n| p.next_delay(n).as_secs()).collect();
        assert_eq!(secs, vec![100, 400, 900, 1600]);
    }

    #[test]
    fn delays_are_capped_at_retention() {
        assert_eq!(RetryPolicy::default().next_delay(u32::MAX), MAX_RETRY_DELAY);
        let e = RetryPolicy::Exponential { base: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(e.next_delay(1).as_secs(), 1);
        assert_eq!(e.next_delay(3).as_secs(), 4);
        assert_eq!(e.next_delay(30).as_secs(), 60);
    }
}
