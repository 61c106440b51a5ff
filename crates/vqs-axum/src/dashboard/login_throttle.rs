//! Repeated failed sign-ins are slowed down, per client IP and for the whole process.
//!
//! The first [`FREE_PER_IP`] failures from one IP (and [`FREE_GLOBAL`] from everyone) cost
//! nothing; after that, each failure makes the next sign-in from there wait twice as long as
//! the last (2 s, 4 s, 8 s … up to [`MAX_WAIT`]): an attempt during the wait is answered 429
//! without its token being checked, so guessing runs at a few tries a minute. A success
//! clears its IP's count; a count is forgotten after [`FORGET_AFTER`] without failures.
//! Memory is bounded: at most [`MAX_TRACKED_IPS`] IPs are tracked, and the global count
//! still applies to the IPs beyond them. The count is per process (a deployment of N
//! processes allows N times the rate), and the IP is the connection's peer (behind a proxy,
//! every client shares the proxy's count).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one IP before sign-ins from it are slowed down.
pub const FREE_PER_IP: u32 = 5;
/// Failures from all IPs together before every sign-in is slowed down.
pub const FREE_GLOBAL: u32 = 100;
/// The longest wait between two sign-ins.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// A count with no failure for this long starts again from zero.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// IPs tracked at most.
pub const MAX_TRACKED_IPS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// How long after the last failure the next attempt must wait, past `free` failures.
    fn wait(&self, free: u32, now: Instant) -> Option<Duration> {
        if self.count < free || now.duration_since(self.last) >= FORGET_AFTER {
            return None;
        }
        let wait = Duration::from_secs(1u64 << (self.count - free + 1).min(6)).min(MAX_WAIT);
        let until = self.last + wait;
        (now < until).then(|| until - now)
    }

    fn add(entry: &mut Failures, now: Instant) {
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }
}

/// The sign-in throttle of one process (see the module docs).
#[derive(Debug)]
pub struct LoginThrottle {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_ip: HashMap<IpAddr, Failures>,
    global: Failures,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            inner: Mutex::new(Inner { per_ip: HashMap::new(), global: Failures { count: 0, last: Instant::now() } }),
        }
    }
}

impl LoginThrottle {
    /// `Some(wait)` when a sign-in from `ip` must wait this much longer before its token is
    /// even looked at.
    pub fn wait(&self, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let own = ip.and_then(|ip| inner.per_ip.get(&ip)).and_then(|f| f.wait(FREE_PER_IP, now));
        let global = inner.global.wait(FREE_GLOBAL, now);
        own.max(global)
    }

    /// Count a failed sign-in from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Failures::add(&mut inner.global, now);
        let Some(ip) = ip else { return };
        if !inner.per_ip.contains_key(&ip) && inner.per_ip.len() >= MAX_TRACKED_IPS {
            inner.per_ip.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if inner.per_ip.len() >= MAX_TRACKED_IPS {
                return; // the global count covers it
            }
        }
        let entry = inner.per_ip.entry(ip).or_insert(Failures { count: 0, last: now });
        Failures::add(entry, now);
    }

    /// A successful sign-in from `ip` clears its count.
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.inner.lock().unwrap_or_else(|e| e.into_inner()).per_ip.remove(&ip);
        }
    }

    /// IPs tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(n.to_be_bytes()))
    }

    #[test]
    fn an_ip_is_slowed_after_its_free_failures_and_its_waits_double_up_to_the_cap() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_PER_IP - 1 {
            t.failed(ip(1), now);
            assert_eq!(t.wait(ip(1), now), None);
        }
        t.failed(ip(1), now);
        assert_eq!(t.wait(ip(1), now), Some(Duration::from_secs(2)));
        assert_eq!(t.wait(ip(2), now), None, "another IP is not slowed");
        t.failed(ip(1), now);
        assert_eq!(t.wait(ip(1), now), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            t.failed(ip(1), now);
        }
        assert_eq!(t.wait(ip(1), now), Some(MAX_WAIT));
        assert_eq!(t.wait(ip(1), now + MAX_WAIT), None, "one more try after the wait");
        assert_eq!(t.wait(ip(1), now + FORGET_AFTER), None);
        t.succeeded(ip(1));
        assert_eq!(t.wait(ip(1), now), None);
    }

    #[test]
    fn many_ips_together_slow_everyone_and_memory_stays_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for n in 0..(MAX_TRACKED_IPS as u32 + 500) {
            t.failed(ip(n), now);
        }
        assert_eq!(t.tracked(), MAX_TRACKED_IPS);
        assert_eq!(t.wait(ip(u32::MAX), now), Some(MAX_WAIT), "past the global free failures");
        assert_eq!(t.wait(None, now), Some(MAX_WAIT));
    }
}
