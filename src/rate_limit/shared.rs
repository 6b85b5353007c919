//! The second tier of every limit: a GCRA (generic cell rate algorithm, the one `governor`
//! runs in memory) kept in Redis, so several instances share one budget per client, form,
//! recipient or account. A Lua script checks all the limits a request is subject to and takes
//! a cell from each only if all of them pass: atomic, with Redis's own clock (the instances'
//! clocks never matter). Each key is a theoretical arrival time that expires when its limit is
//! full again, so Redis holds only clients seen recently.
//!
//! Checks are **grouped like the database writer groups commits**: one task per instance
//! sends whatever checks are waiting as one script call (each request's group decided on its
//! own, in order), so under load a round trip and Redis's per-call cost are shared by many
//! requests instead of paid by each.
//!
//! Redis is a helper, never a dependency of a request: when it fails or answers later than
//! `redis.timeout_ms`, the caller's local decision stands (fail open to the in-process
//! limiter), the fallback is counted, and Redis is left alone for `redis.retry_ms` so a dead
//! server costs one timeout per period rather than one per request. The switch between
//! shared and local limits is logged once each way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::Quota;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use crate::config::RedisSettings;

/// Groups of limits, each decided on its own and in order (a key in two groups sees the first
/// group's cell taken). ARGV: the number of groups, then per group its number of keys, the
/// group it depends on (1-based in this call, 0: none; skipped when that one was refused) and
/// per key its emission interval (µs) and burst; KEYS: every group's keys in order. Per group
/// a cell is taken from every key or from none. Returns per group `{0, 0, used}` when all pass
/// (`used`: cells of the group's first limit in use after this one), `{i, wait_us, 0}` for the
/// first limit `i` (1-based) that refuses and how long until it would pass, or `{-1, 0, 0}`
/// when skipped.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local failed = {}
local k = 0
local a = 2
for g = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  local dep = tonumber(ARGV[a + 1])
  a = a + 2
  local refused, wait, used = 0, 0, 0
  if dep > 0 and failed[dep] then
    refused = -1
    a = a + 2 * n
  else
    local tats = {}
    for i = 1, n do
      local interval = tonumber(ARGV[a])
      local burst = tonumber(ARGV[a + 1])
      a = a + 2
      if refused == 0 then
        local tat = tonumber(redis.call('GET', KEYS[k + i])) or now
        if tat < now then tat = now end
        local next_tat = tat + interval
        local allow_at = next_tat - interval * burst
        if now < allow_at then
          refused = i
          wait = allow_at - now
        else
          tats[i] = next_tat
          if i == 1 then used = math.ceil((next_tat - now) / interval) end
        end
      end
    end
    if refused == 0 then
      for i = 1, n do
        redis.call('SET', KEYS[k + i], string.format('%d', tats[i]), 'PX',
          math.floor((tats[i] - now) / 1000) + 1)
      end
    end
  end
  failed[g] = refused ~= 0
  out[#out + 1] = refused
  out[#out + 1] = math.floor(wait)
  out[#out + 1] = used
  k = k + n
end
return out
";

/// Most requests' checks sent in one script call.
const MAX_GROUPS: usize = 128;
/// Script calls in flight at once (pipelined on the one connection).
const IN_FLIGHT: usize = 4;
/// Checks waiting for the batching task; past it a check is decided locally (counted as a
/// fallback), so a stalled Redis never queues requests without bound.
const QUEUE: usize = 4096;

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

/// Limits checked together (a cell from each, or from none), optionally only if the request's
/// first group passed.
#[derive(Debug, Clone)]
pub struct Group {
    pub limits: Vec<Limit>,
    /// Decided only when the request's first group passed (e.g. mail caps, which must not
    /// spend a cell for a request its rate limit refuses).
    pub after_first: bool,
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
    core: Arc<Core>,
    queue: mpsc::Sender<Pending>,
    prefix: String,
    secret: [u8; 32],
}

/// A request's limits waiting for the batching task, and where its decision goes.
struct Pending {
    groups: Vec<Group>,
    reply: oneshot::Sender<Option<Vec<Option<Decision>>>>,
}

/// The connection and its health, shared by requests and the batching task.
struct Core {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    retry: Duration,
    /// Microseconds after `epoch` before which Redis is not tried (after a failure).
    resting_until_us: AtomicU64,
    epoch: Instant,
    /// Whether the last attempt succeeded (for the log line on each change).
    healthy: AtomicBool,
    metrics: SharedMetrics,
}

impl Shared {
    /// A client for `settings.url` (none: `None`), and its batching task (so this runs inside
    /// the runtime). Connects lazily: Redis being down at startup is a fallback like any
    /// other, not a failed start.
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
        let core = Arc::new(Core {
            conn,
            script: redis::Script::new(GCRA),
            timeout,
            retry: Duration::from_millis(settings.retry_ms),
            resting_until_us: AtomicU64::new(0),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
            metrics,
        });
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(batches(core.clone(), waiting));
        Ok(Some(Shared {
            core,
            queue,
            prefix: settings.key_prefix.clone(),
            secret,
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
        let group = Group {
            limits: limits.to_vec(),
            after_first: false,
        };
        self.check_groups(vec![group]).await?.pop().flatten()
    }

    /// Checks a request's `groups` in one go: a decision per group (`None` for a group that
    /// depended on a refused first group), or `None` when Redis could not decide.
    pub async fn check_groups(&self, groups: Vec<Group>) -> Option<Vec<Option<Decision>>> {
        let core = &self.core;
        if core.resting() {
            core.metrics.fallbacks.inc();
            return None;
        }
        let (reply, decision) = oneshot::channel();
        if self.queue.try_send(Pending { groups, reply }).is_err() {
            core.metrics.fallbacks.inc();
            return None;
        }
        // The task answers within its own timeout (and counts its own fallbacks); this bound
        // covers a check that waited behind busy calls, or a task that died.
        match tokio::time::timeout(core.timeout * 4, decision).await {
            Ok(Ok(decisions)) => decisions,
            Ok(Err(_)) | Err(_) => {
                core.metrics.fallbacks.inc();
                None
            }
        }
    }

    /// Marks `key` for `ttl` (a refusal that outlives its limit, e.g. a client out of admin
    /// guesses). `false` when Redis could not be told.
    pub async fn mark(&self, key: &str, ttl: Duration) -> bool {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("PX").arg(ms);
        self.core.run::<()>(&cmd).await.is_some()
    }

    /// How long `key` (set by [`Shared::mark`]) still stands; `None` when it does not, or
    /// when Redis cannot say.
    pub async fn marked(&self, key: &str) -> Option<Duration> {
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key);
        let ms: i64 = self.core.run(&cmd).await?;
        u64::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }
}

/// The batching task: takes every check waiting (up to [`MAX_GROUPS`]), sends them as one
/// script call, hands each its decision. Ends when the limiter is dropped.
async fn batches(core: Arc<Core>, mut waiting: mpsc::Receiver<Pending>) {
    let calls = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        // A call slot first, then whatever waits: while all slots are busy, checks pile up
        // into the next (larger) batch.
        let Ok(slot) = calls.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_GROUPS);
        if waiting.recv_many(&mut batch, MAX_GROUPS).await == 0 {
            return;
        }
        let core = core.clone();
        tokio::spawn(async move {
            let decisions = if core.resting() {
                None
            } else {
                core.decide(&batch).await
            };
            drop(slot);
            let mut decisions = decisions.map(Vec::into_iter);
            for pending in batch {
                let decision = decisions
                    .as_mut()
                    .map(|d| d.by_ref().take(pending.groups.len()).collect::<Vec<_>>());
                if decision.is_none() {
                    core.metrics.fallbacks.inc();
                }
                let _ = pending.reply.send(decision);
            }
        });
    }
}

impl Core {
    /// One script call for `batch`; a decision per group of each entry, in order (`None`
    /// for a skipped group), or `None` when Redis failed.
    async fn decide(&self, batch: &[Pending]) -> Option<Vec<Option<Decision>>> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(batch.iter().map(|p| p.groups.len()).sum::<usize>());
        let mut index = 0;
        for pending in batch {
            let first = index + 1;
            for (i, group) in pending.groups.iter().enumerate() {
                index += 1;
                let has_first = pending.groups.first().is_some_and(|g| !g.after_first);
                let dep = if group.after_first && i > 0 && has_first {
                    first
                } else {
                    0
                };
                invocation.arg(group.limits.len()).arg(dep);
                for l in &group.limits {
                    invocation.key(&l.key).arg(l.interval_us).arg(l.burst);
                }
            }
        }
        let mut conn = self.conn.clone();
        let flat = self
            .guarded(invocation.invoke_async::<Vec<i64>>(&mut conn))
            .await?;
        Some(
            flat.chunks_exact(3)
                .map(|r| match *r {
                    [0, _, used] => Some(Decision::Allowed {
                        used: u32::try_from(used).unwrap_or(u32::MAX),
                    }),
                    [-1, _, _] => None,
                    [first, wait_us, _] => Some(Decision::Refused {
                        index: usize::try_from(first - 1).unwrap_or(0),
                        wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
                    }),
                    _ => unreachable!("chunks_exact(3)"),
                })
                .collect(),
        )
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
