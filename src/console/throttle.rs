//! Sign-in throttling: every attempt costs an Argon2id hash (~20 MiB and tens of ms), so
//! attempts are counted per account and per client IP, successful or not, before the
//! password is checked. Memory stays bounded: accounts are kept as 64-bit keyed hashes and
//! keys whose limiter is full again are evicted on the application's timer.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::ConsoleSettings;

/// The window the quotas are counted over.
const WINDOW: Duration = Duration::from_secs(15 * 60);

pub struct SignInThrottle {
    per_account: Option<DefaultKeyedRateLimiter<u64>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    hasher: std::collections::hash_map::RandomState,
}

fn limiter<K: Hash + Eq + Clone>(per_window: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let n = NonZeroU32::new(per_window)?;
    let quota = Quota::with_period(WINDOW / per_window)?.allow_burst(n);
    Some(RateLimiter::keyed(quota))
}

impl SignInThrottle {
    pub fn new(settings: &ConsoleSettings) -> SignInThrottle {
        SignInThrottle {
            per_account: limiter(settings.sign_in_attempts_per_account),
            per_ip: limiter(settings.sign_in_attempts_per_ip),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Counts one attempt for `account` (a normalised address) from `client`. `Err` carries
    /// how long to wait when either quota is spent.
    pub fn attempt(&self, account: &str, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        if let (Some(limiter), Some(ip)) = (&self.per_ip, client) {
            limiter
                .check_key(&ip)
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        if let Some(limiter) = &self.per_account {
            limiter
                .check_key(&self.hasher.hash_one(account))
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        Ok(())
    }

    /// Drops keys whose limiter is back to full.
    pub fn evict_stale(&self) {
        if let Some(l) = &self.per_account {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_per_account_and_per_ip() {
        let t = SignInThrottle::new(&ConsoleSettings {
            sign_in_attempts_per_account: 3,
            sign_in_attempts_per_ip: 5,
            ..ConsoleSettings::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.attempt("ann@example.com", Some(a)).is_ok());
        }
        // The account is spent, from any address.
        assert!(t.attempt("ann@example.com", Some(b)).is_err());
        // Another account from the first address: the IP has 5.
        assert!(t.attempt("bob@example.com", Some(a)).is_ok());
        assert!(t.attempt("cat@example.com", Some(a)).is_ok());
        let wait = t.attempt("dan@example.com", Some(a)).unwrap_err();
        assert!(wait > Duration::from_secs(60), "{wait:?}");
    }
}
