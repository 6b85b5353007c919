//! The second tier of every limit: a GCRA (generic cell rate algorithm, the one `governor`
//! runs in memory) kept in Redis, so several instances share one budget per client, form,
//! recipient or account. One Lua script checks all the limits a request is subject to and
//! takes a cell from each only if all of them pass: one round trip, atomic, with Redis's own
//! clock (the instances' clocks never matter). Each key is a theoretical arrival time that
//! expires when its limit is full again, so Redis holds only clients seen recently.
//!
//! Redis is a helper, never a dependency of a request: when it fails or answers later than
//! `redis.timeout_ms`, the caller's local decision stands (fail open to the in-process
//! limiter), the fallback is counted, and Redis is left alone for `redis.retry_ms` so a dead
//! server costs one timeout per period rather than one per request. The switch between
//! shared and local limits is logged once each way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::Quota;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::RedisSettings;

/// All the limits one request is subject to, checked together: a cell is taken from every
/// key, or from none. Returns `{0, 0, used}` when all pass (`used`: cells of the first limit's
/// burst in use after this one), or `{i, wait_us, 0}` for the first limit `i` (1-based) that
/// refuses and how long until it would pass.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local used = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allow_at = next_tat - interval * burst
  if now < allow_at then
    return {i, math.floor(allow_at - now), 0}
  end
  tats[i] = next_tat
  if i == 1 then used = math.ceil((next_tat - now) / interval) end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.max(1, math.ceil((tats[i] - now) / 1000)))
end
return {0, 0, used}
";

/// One limit as Redis counts it: a key and its quota.
#[derive(Debug, Clone)]
pub struct Limit {
    pub key: String,
    interval_us: u64,
    burst: u32,
}

impl Limit {
    pub fn new(key: String, quota: Quota) -> Limit {
        Limit {
            key,
            interval_us: u64::try_from(quota.replenish_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
            burst: quota.burst_size().get(),
        }
    }
}

/// What Redis decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every limit passed; cells of the first limit's burst now in use.
    Allowed { used: u32 },
    /// Limit number `index` (0-based) refused; it passes again after `wait`.
    Refused { index: usize, wait: Duration },
}

/// Counters the shared tier reports to `/metrics`.
#[derive(Clone)]
pub struct SharedMetrics {
    /// Decisions made by the local limiter alone because Redis failed or was slow.
    pub fallbacks: prometheus::IntCounter,
    /// 1 while Redis answers, 0 while instances limit on their own.
    pub up: prometheus::IntGauge,
}

pub struct Shared {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    retry: Duration,
    /// Microseconds after `epoch` before which Redis is not tried (after a failure).
    resting_until_us: AtomicU64,
    epoch: Instant,
    /// Whether the last attempt succeeded (for the log line on each change).
    healthy: AtomicBool,
    secret: [u8; 32],
    metrics: SharedMetrics,
}

impl Shared {
    /// A client for `settings.url` (none: `None`). Connects lazily: Redis being down at
    /// startup is a fallback like any other, not a failed start.
    pub fn new(
        settings: &RedisSettings,
        secret: [u8; 32],
        metrics: SharedMetrics,
    ) -> Result<Option<Shared>, redis::RedisError> {
        let Some(url) = &settings.url else {
            return Ok(None);
        };
        let client = redis::Client::open(url.expose_secret())?;
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(settings.retry_ms.max(1)));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        metrics.up.set(1);
        Ok(Some(Shared {
            conn,
            script: redis::Script::new(GCRA),
            prefix: settings.key_prefix.clone(),
            timeout,
            retry: Duration::from_millis(settings.retry_ms),
            resting_until_us: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
            secret,
            metrics,
        }))
    }

    /// The Redis key for `kind` and `id` (an IP, a network or a form id).
    pub fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The Redis key for an address (a recipient, an account): a keyed hash of it, the same
    /// on every instance, never the address.
    pub fn hashed_key(&self, kind: &str, address: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(address.as_bytes());
        let digest = mac.finalize().into_bytes();
        self.key(kind, hex::encode(&digest[..16]))
    }

    /// Checks `limits` together. `None`: Redis could not decide (down, slow, resting after a
    /// failure); the caller's local decision stands.
    pub async fn check(&self, limits: &[Limit]) -> Option<Decision> {
        if limits.is_empty() {
            return Some(Decision::Allowed { used: 0 });
        }
        if self.resting() {
            self.metrics.fallbacks.inc();
            return None;
        }
        let mut invocation = self.script.prepare_invoke();
        for l in limits {
            invocation.key(&l.key).arg(l.interval_us).arg(l.burst);
        }
        let mut conn = self.conn.clone();
        let (first, wait_us, used) = self
            .guarded(invocation.invoke_async::<(i64, i64, i64)>(&mut conn))
            .await?;
        Some(if first == 0 {
            Decision::Allowed {
                used: u32::try_from(used).unwrap_or(u32::MAX),
            }
        } else {
            Decision::Refused {
                index: usize::try_from(first - 1).unwrap_or(0),
                wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
            }
        })
    }

    /// Marks `key` for `ttl` (a refusal that outlives its limit, e.g. a client out of admin
    /// guesses). `false` when Redis could not be told.
    pub async fn mark(&self, key: &str, ttl: Duration) -> bool {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("PX").arg(ms);
        self.run::<()>(&cmd).await.is_some()
    }

    /// How long `key` (set by [`Shared::mark`]) still stands; `None` when it does not, or
    /// when Redis cannot say.
    pub async fn marked(&self, key: &str) -> Option<Duration> {
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key);
        let ms: i64 = self.run(&cmd).await?;
        u64::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        if self.resting() {
            self.metrics.fallbacks.inc();
            return None;
        }
        let mut conn = self.conn.clone();
        self.guarded(cmd.query_async::<T>(&mut conn)).await
    }

    /// Redis's answer within `redis.timeout_ms`, or `None` (and a rest) when it fails.
    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("no answer within redis.timeout_ms");
                None
            }
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn resting(&self) -> bool {
        self.now_us() < self.resting_until_us.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            self.metrics.up.set(1);
            tracing::warn!("Redis answers again: limits are shared across instances again");
        }
    }

    fn failed(&self, error: &str) {
        self.metrics.fallbacks.inc();
        let retry = u64::try_from(self.retry.as_micros()).unwrap_or(u64::MAX);
        self.resting_until_us
            .store(self.now_us().saturating_add(retry), Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            self.metrics.up.set(0);
            tracing::error!(
                error = %crate::domain::redact_addresses(error),
                "Redis unavailable: each instance limits on its own until it answers"
            );
        }
    }
}
