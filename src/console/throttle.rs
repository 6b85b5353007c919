//! Sign-in throttling: every attempt costs an Argon2id hash (~20 MiB and tens of ms), so
//! attempts are counted per account and per client IP, successful or not, before the
//! password is checked. Memory stays bounded: accounts are kept as 64-bit keyed hashes and
//! keys whose limiter is full again are evicted on the application's timer. With Redis
//! (`redis.url`) the same quotas are also counted there, so a guesser spreading attempts over
//! several instances gets no more of them.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::ConsoleSettings;
use crate::rate_limit::shared::{Decision, Limit, Shared};
use std::sync::Arc;

/// The window the quotas are counted over.
const WINDOW: Duration = Duration::from_secs(15 * 60);

pub struct SignInThrottle {
    per_account: Option<(DefaultKeyedRateLimiter<u64>, Quota)>,
    per_ip: Option<(DefaultKeyedRateLimiter<IpAddr>, Quota)>,
    hasher: std::collections::hash_map::RandomState,
    shared: Option<Arc<Shared>>,
}

fn limiter<K: Hash + Eq + Clone>(per_window: u32) -> Option<(DefaultKeyedRateLimiter<K>, Quota)> {
    let n = NonZeroU32::new(per_window)?;
    let quota = Quota::with_period(WINDOW / per_window)?.allow_burst(n);
    Some((RateLimiter::keyed(quota), quota))
}

impl SignInThrottle {
    pub fn new(settings: &ConsoleSettings) -> SignInThrottle {
        SignInThrottle {
            per_account: limiter(settings.sign_in_attempts_per_account),
            per_ip: limiter(settings.sign_in_attempts_per_ip),
            hasher: std::collections::hash_map::RandomState::new(),
            shared: None,
        }
    }

    /// Counts attempts in Redis too (see [`crate::rate_limit::shared`]).
    #[must_use]
    pub fn with_shared(mut self, shared: Option<Arc<Shared>>) -> Self {
        self.shared = shared;
        self
    }

    /// Counts one attempt for `account` (a normalised address) from `client`. `Err` carries
    /// how long to wait when either quota is spent.
    pub async fn attempt(&self, account: &str, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        let mut limits = Vec::with_capacity(2);
        if let (Some((limiter, quota)), Some(ip)) = (&self.per_ip, client) {
            limiter
                .check_key(&ip)
                .map_err(|not_until| not_until.wait_time_from(now))?;
            if let Some(shared) = &self.shared {
                limits.push(Limit::new(shared.key("signin-ip", ip), *quota));
            }
        }
        if let Some((limiter, quota)) = &self.per_account {
            limiter
                .check_key(&self.hasher.hash_one(account))
                .map_err(|not_until| not_until.wait_time_from(now))?;
            if let Some(shared) = &self.shared {
                limits.push(Limit::new(shared.hashed_key("signin", account), *quota));
            }
        }
        if let Some(shared) = &self.shared {
            if let Some(Decision::Refused { wait, .. }) = shared.check(&limits).await {
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Drops keys whose limiter is back to full.
    pub fn evict_stale(&self) {
        if let Some((l, _)) = &self.per_account {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some((l, _)) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_are_counted_per_account_and_per_ip() {
        let t = SignInThrottle::new(&ConsoleSettings {
            sign_in_attempts_per_account: 3,
            sign_in_attempts_per_ip: 5,
            ..ConsoleSettings::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.attempt("ann@example.com", Some(a)).await.is_ok());
        }
        // The account is spent, from any address.
        assert!(t.attempt("ann@example.com", Some(b)).await.is_err());
        // Another account from the first address: the IP has 5.
        assert!(t.attempt("bob@example.com", Some(a)).await.is_ok());
        assert!(t.attempt("cat@example.com", Some(a)).await.is_ok());
        let wait = t.attempt("dan@example.com", Some(a)).await.unwrap_err();
        assert!(wait > Duration::from_secs(60), "{wait:?}");
    }
}
