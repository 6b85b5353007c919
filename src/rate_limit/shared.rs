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
//! Most requests do not wait for the round trip at all ([`Shared::decide`]): one whose
//! budgets are, by Redis's last answers, far from spent is admitted at once and its cells are
//! taken in Redis while it is written; only a client near a limit waits for Redis's verdict.
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
/// when skipped; then per key how long (µs) until its budget is full again (-1: skipped).
/// After the groups: the number of budgets spent by requests already admitted (see
/// [`Shared::decide`]), and per budget its interval and the cells taken, unconditionally (the
/// requests went through; a budget they overran refuses the next ones for longer); KEYS: those
/// budgets' keys after the groups'. Returns per budget how long until it is full again.
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
  if dep > 0 and failed[dep] then
    failed[g] = true
    out[#out + 1] = -1
    out[#out + 1] = 0
    out[#out + 1] = 0
    for i = 1, n do out[#out + 1] = -1 end
    a = a + 2 * n
  else
    local refused, wait, used = 0, 0, 0
    local tats, intervals = {}, {}
    for i = 1, n do
      local interval = tonumber(ARGV[a])
      local burst = tonumber(ARGV[a + 1])
      a = a + 2
      local tat = tonumber(redis.call('GET', KEYS[k + i])) or now
      if tat < now then tat = now end
      tats[i] = tat
      intervals[i] = interval
      if refused == 0 then
        local allow_at = tat + interval - interval * burst
        if now < allow_at then
          refused = i
          wait = allow_at - now
        end
      end
    end
    if refused == 0 then
      for i = 1, n do
        tats[i] = tats[i] + intervals[i]
        redis.call('SET', KEYS[k + i], string.format('%d', tats[i]), 'PX',
          math.floor((tats[i] - now) / 1000) + 1)
      end
      used = math.ceil((tats[1] - now) / intervals[1])
    end
    failed[g] = refused ~= 0
    out[#out + 1] = refused
    out[#out + 1] = math.floor(wait)
    out[#out + 1] = used
    for i = 1, n do out[#out + 1] = tats[i] - now end
  end
  k = k + n
end
for j = 1, tonumber(ARGV[a]) do
  local interval = tonumber(ARGV[a + 1])
  local cells = tonumber(ARGV[a + 2])
  a = a + 2
  local tat = tonumber(redis.call('GET', KEYS[k + j])) or now
  if tat < now then tat = now end
  tat = tat + interval * cells
  redis.call('SET', KEYS[k + j], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
  out[#out + 1] = tat - now
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
/// Budgets whose state an instance remembers from Redis's answers (for admitting early, see
/// [`Shared::decide`]); when full, a budget it does not know is checked the slow way.
const MAX_KNOWN: usize = 65_536;
/// How long a call of cells taken early waits for more to join it.
const EARLY_LINGER: Duration = Duration::from_millis(1);
/// At most this often (µs) the memory of budgets that are full again is swept.
const SWEEP_EVERY_US: u64 = 100_000;

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
    /// Requests admitted before Redis answered, their budgets being far from spent.
    pub early: prometheus::IntCounter,
    /// Budgets Redis found overrun when it took those requests' cells (other instances had
    /// spent them meanwhile).
    pub late_refusals: prometheus::IntCounter,
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
    reply: Reply,
}

/// Where a check's outcome goes.
enum Reply {
    /// A request waiting for Redis's decision.
    Decision(oneshot::Sender<Option<Vec<Option<Decision>>>>),
    /// A request admitted already ([`Shared::decide`]): its cells are spent in Redis, the
    /// answer teaches the instance its budgets' state, and this is told once that is done.
    Spent(oneshot::Sender<()>),
}

impl Pending {
    fn early(&self) -> bool {
        matches!(self.reply, Reply::Spent(_))
    }
}

/// A request's cells being spent in Redis after it was admitted early; [`Receipt::settled`]
/// waits for that, so a client that has its answer has spent its budget everywhere.
#[derive(Debug)]
pub struct Receipt {
    done: oneshot::Receiver<()>,
    within: Duration,
}

impl Receipt {
    /// Waits until Redis has taken the cells (or could not: never longer than the time a
    /// check may take).
    pub async fn settled(self) {
        let _ = tokio::time::timeout(self.within, self.done).await;
    }
}

/// Cells that admitted requests took from one budget, summed over a call.
struct Spend<'a> {
    limit: &'a Limit,
    cells: u32,
}

/// The cells taken by the early requests of `batch`, one entry per budget.
fn spends(batch: &[Pending]) -> Vec<Spend<'_>> {
    let mut out: Vec<Spend<'_>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for limit in batch
        .iter()
        .filter(|p| p.early())
        .flat_map(|p| &p.groups)
        .flat_map(|g| &g.limits)
    {
        match index.get(limit.key.as_str()) {
            Some(&i) => out[i].cells += 1,
            None => {
                index.insert(&limit.key, out.len());
                out.push(Spend { limit, cells: 1 });
            }
        }
    }
    out
}

/// Whether a budget with `used` cells in use (Redis's last answer), `pending` cells taken
/// early and unanswered, may give `taken` more early: half of its burst at most, and of a small
/// burst one early cell at a time (a quarter of a large one), so what other instances spent
/// meanwhile can overrun it by little.
fn early_room(used: u64, pending: u64, taken: u64, burst: u32) -> bool {
    let burst = u64::from(burst);
    (used + pending + taken) * 2 <= burst && (pending == 0 || (pending + taken) * 4 <= burst)
}

/// What one instance knows of the budgets it has asked Redis about.
#[derive(Default)]
struct Known {
    budgets: std::collections::HashMap<String, Budget>,
    swept_at_us: u64,
}

/// One budget as Redis last reported it.
#[derive(Clone, Copy)]
struct Budget {
    /// When (µs after [`Core::epoch`]) every cell is free again, as of Redis's last answer.
    full_at_us: u64,
    /// Cells this instance took early whose answer has not come back.
    pending: u32,
}

impl Budget {
    fn used(&self, now_us: u64, interval_us: u64) -> u64 {
        self.full_at_us.saturating_sub(now_us).div_ceil(interval_us)
    }
}

impl Known {
    /// Records that `key`'s budget is full again at `full_at_us` (while there is room).
    fn set(&mut self, key: &str, full_at_us: u64) {
        if let Some(budget) = self.budgets.get_mut(key) {
            budget.full_at_us = full_at_us;
        } else if self.budgets.len() < MAX_KNOWN {
            self.budgets.insert(
                key.to_string(),
                Budget {
                    full_at_us,
                    pending: 0,
                },
            );
        }
    }

    /// Forgets budgets that are full again and have nothing pending, at most every
    /// [`SWEEP_EVERY_US`].
    fn sweep(&mut self, now_us: u64) {
        if now_us.saturating_sub(self.swept_at_us) >= SWEEP_EVERY_US {
            self.budgets
                .retain(|_, b| b.pending > 0 || b.full_at_us > now_us);
            self.swept_at_us = now_us;
        }
    }
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
    known: std::sync::Mutex<Known>,
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
            known: std::sync::Mutex::new(Known::default()),
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

    /// [`Shared::check_groups`], without waiting when every budget the request spends is far
    /// from spent as far as this instance knows: at most half of its burst in use by Redis's
    /// last answer about it (a budget never asked about counts as unused) and few of its
    /// cells taken early still unanswered (see [`early_room`]). Such a request is admitted at
    /// once and its cells are taken in Redis behind it, unconditionally and summed per budget
    /// over the grouped script call; the answer updates what the instance knows. So most
    /// requests (first visits, clients far from their limits) wait for no round trip, while a
    /// client near a limit is decided by Redis before it is admitted.
    /// The cost: another instance's spending since the last answer is not seen, so a budget
    /// can be overrun by requests admitted early at the moment it runs out, at most one per
    /// instance until Redis's answer (counted in `inlet_redis_late_refusals_total`) tells it.
    ///
    /// An early decision comes with a [`Receipt`]: the caller answers its client only once it
    /// has settled, so the round trip runs beside the request's other work (the database
    /// commit) instead of before it, and a client's next request sees this one's cells.
    pub async fn decide(
        &self,
        groups: Vec<Group>,
    ) -> (Option<Vec<Option<Decision>>>, Option<Receipt>) {
        if let Some(decisions) = self.admit_early(&groups) {
            let (spent, done) = oneshot::channel();
            let pending = Pending {
                groups,
                reply: Reply::Spent(spent),
            };
            match self.queue.try_send(pending) {
                Ok(()) => {
                    self.core.metrics.early.inc();
                    let receipt = Receipt {
                        done,
                        within: self.core.timeout * 4,
                    };
                    return (Some(decisions), Some(receipt));
                }
                Err(e) => {
                    // The queue is full: undo the marks; the slow path counts the fallback.
                    let pending = match e {
                        mpsc::error::TrySendError::Full(p)
                        | mpsc::error::TrySendError::Closed(p) => p,
                    };
                    self.core.unmark(&pending.groups);
                    return (self.check_groups(pending.groups).await, None);
                }
            }
        }
        (self.check_groups(groups).await, None)
    }

    /// The decisions for `groups` if they may be admitted early (see [`Shared::decide`]),
    /// with their cells marked pending; `None` otherwise.
    fn admit_early(&self, groups: &[Group]) -> Option<Vec<Option<Decision>>> {
        let core = &self.core;
        if core.resting() {
            return None;
        }
        let now = core.now_us();
        let mut known = core.known.lock().unwrap_or_else(|e| e.into_inner());
        known.sweep(now);
        // Each key with its cells in use and the cells this request takes from it.
        let mut asks: Vec<(&str, u64)> = Vec::new();
        let mut first_used = 0;
        for (g, group) in groups.iter().enumerate() {
            for (i, limit) in group.limits.iter().enumerate() {
                let (used, pending) = match known.budgets.get(&limit.key) {
                    Some(b) => (b.used(now, limit.interval_us), u64::from(b.pending)),
                    None => (0, 0),
                };
                if g == 0 && i == 0 {
                    first_used = used;
                }
                let taken = match asks.iter_mut().find(|(k, _)| *k == limit.key) {
                    Some(ask) => {
                        ask.1 += 1;
                        ask.1
                    }
                    None => {
                        asks.push((&limit.key, 1));
                        1
                    }
                };
                if !early_room(used, pending, taken, limit.burst) {
                    return None;
                }
            }
        }
        let new = asks
            .iter()
            .filter(|(k, _)| !known.budgets.contains_key(*k))
            .count();
        if known.budgets.len() + new > MAX_KNOWN {
            return None;
        }
        for (key, taken) in asks {
            let budget = known.budgets.entry(key.to_string()).or_insert(Budget {
                full_at_us: now,
                pending: 0,
            });
            budget.pending = budget
                .pending
                .saturating_add(u32::try_from(taken).unwrap_or(u32::MAX));
        }
        let used = u32::try_from(first_used + 1).unwrap_or(u32::MAX);
        Some(
            groups
                .iter()
                .map(|_| Some(Decision::Allowed { used }))
                .collect(),
        )
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
        let pending = Pending {
            groups,
            reply: Reply::Decision(reply),
        };
        if self.queue.try_send(pending).is_err() {
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
        // Nobody waits for cells taken early: let more gather into this call (Redis's cost
        // is mostly per call), unless a request is waiting for its answer.
        if batch.len() < MAX_GROUPS && batch.iter().all(Pending::early) {
            tokio::time::sleep(EARLY_LINGER).await;
            while batch.len() < MAX_GROUPS {
                match waiting.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let core = core.clone();
        tokio::spawn(async move {
            let spends = spends(&batch);
            let answer = if core.resting() {
                None
            } else {
                core.decide(&batch, &spends).await
            };
            drop(slot);
            let (groups, spent) = match answer {
                Some((groups, spent)) => (Some(groups), Some(spent)),
                None => (None, None),
            };
            core.learn_spends(&spends, spent.as_deref());
            let mut groups = groups.map(Vec::into_iter);
            for pending in batch {
                let reply = match pending.reply {
                    Reply::Decision(reply) => reply,
                    Reply::Spent(spent) => {
                        if groups.is_none() {
                            core.metrics.fallbacks.inc();
                        }
                        let _ = spent.send(());
                        continue;
                    }
                };
                let answer = groups
                    .as_mut()
                    .map(|d| d.by_ref().take(pending.groups.len()).collect::<Vec<_>>());
                if answer.is_none() {
                    core.metrics.fallbacks.inc();
                }
                core.learn(&pending.groups, answer.as_deref());
                let decision = answer.map(|a| a.into_iter().map(|(d, _)| d).collect());
                let _ = reply.send(decision);
            }
        });
    }
}

/// A group's decision and, per key, how long (µs) until its budget is full again.
type GroupAnswer = (Option<Decision>, Vec<Option<u64>>);

/// The script's flat answer cut into groups of `sizes` keys; `None` if it does not fit.
fn parse_answers(flat: &[i64], sizes: impl Iterator<Item = usize>) -> Option<Vec<GroupAnswer>> {
    let mut rest = flat;
    let mut out = Vec::new();
    for n in sizes {
        let (head, tail) = rest.split_at_checked(3 + n)?;
        rest = tail;
        let decision = match head[..3] {
            [0, _, used] => Some(Decision::Allowed {
                used: u32::try_from(used).unwrap_or(u32::MAX),
            }),
            [-1, _, _] => None,
            [first, wait_us, _] => Some(Decision::Refused {
                index: usize::try_from(first - 1).unwrap_or(0),
                wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
            }),
            _ => return None,
        };
        let full_in = head[3..].iter().map(|&us| u64::try_from(us).ok()).collect();
        out.push((decision, full_in));
    }
    rest.is_empty().then_some(out)
}

impl Core {
    /// Takes in Redis's answer about a waiting request's `groups`: each budget's state.
    fn learn(&self, groups: &[Group], answer: Option<&[GroupAnswer]>) {
        let Some(answer) = answer else { return };
        let now = self.now_us();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (group, (_, full_in)) in groups.iter().zip(answer) {
            for (limit, full_in) in group.limits.iter().zip(full_in) {
                if let Some(us) = full_in {
                    known.set(&limit.key, now.saturating_add(*us));
                }
            }
        }
    }

    /// Takes in Redis's answer about the cells admitted requests took (`None`: it gave none):
    /// each budget's state, and those cells are no longer pending. A budget they overran is
    /// counted in `inlet_redis_late_refusals_total`.
    fn learn_spends(&self, spends: &[Spend<'_>], full_in: Option<&[u64]>) {
        let now = self.now_us();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (i, spend) in spends.iter().enumerate() {
            let full_in = full_in.and_then(|f| f.get(i)).copied();
            let limit = spend.limit;
            if let Some(us) = full_in {
                if us > limit.interval_us.saturating_mul(u64::from(limit.burst)) {
                    self.metrics.late_refusals.inc();
                }
            }
            if let Some(budget) = known.budgets.get_mut(&limit.key) {
                budget.pending = budget.pending.saturating_sub(spend.cells);
                if let Some(us) = full_in {
                    budget.full_at_us = now.saturating_add(us);
                }
            }
        }
    }

    /// Gives back the cells [`Shared::admit_early`] marked pending for `groups`.
    fn unmark(&self, groups: &[Group]) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for limit in groups.iter().flat_map(|g| &g.limits) {
            if let Some(budget) = known.budgets.get_mut(&limit.key) {
                budget.pending = budget.pending.saturating_sub(1);
            }
        }
    }

    /// One script call for the waiting requests of `batch` and the `spends` of its early
    /// ones: per group of each waiting request, in order, its decision (`None` for a skipped
    /// group) and how long until each key's budget is full again (`None`: not read); then
    /// the same per spent budget. `None` when Redis failed.
    async fn decide(
        &self,
        batch: &[Pending],
        spends: &[Spend<'_>],
    ) -> Option<(Vec<GroupAnswer>, Vec<u64>)> {
        let waiting = || batch.iter().filter(|p| !p.early());
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(waiting().map(|p| p.groups.len()).sum::<usize>());
        let mut index = 0;
        for pending in waiting() {
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
        invocation.arg(spends.len());
        for spend in spends {
            invocation
                .key(&spend.limit.key)
                .arg(spend.limit.interval_us)
                .arg(spend.cells);
        }
        let mut conn = self.conn.clone();
        let flat = self
            .guarded(invocation.invoke_async::<Vec<i64>>(&mut conn))
            .await?;
        let sizes = waiting().flat_map(|p| p.groups.iter().map(|g| g.limits.len()));
        let answers = flat.len().checked_sub(spends.len()).and_then(|at| {
            let (groups, spent) = flat.split_at(at);
            let spent = spent.iter().map(|&us| u64::try_from(us).unwrap_or(0));
            Some((parse_answers(groups, sizes)?, spent.collect()))
        });
        if answers.is_none() {
            self.failed("the limit script answered in an unexpected shape");
        }
        answers
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_budget_gives_one_early_cell_at_a_time_and_only_while_half_free() {
        // A burst of 5: unknown (0 used) takes one early, not a second before its answer.
        assert!(early_room(0, 0, 1, 5));
        assert!(!early_room(0, 1, 1, 5));
        assert!(early_room(1, 0, 1, 5));
        assert!(!early_room(2, 0, 1, 5), "past half: Redis decides first");
        // A burst of 1 or 2 caps mail: never early at 1; the first of 2 may be.
        assert!(!early_room(0, 0, 1, 1));
        assert!(early_room(0, 0, 1, 2));
        assert!(!early_room(1, 0, 1, 2));
        // A large budget (the form's) takes up to a quarter of its burst pending.
        assert!(early_room(10, 24, 1, 100));
        assert!(!early_room(10, 25, 1, 100));
        assert!(!early_room(40, 10, 1, 100));
    }

    #[test]
    fn the_scripts_answer_is_cut_per_group_and_refuses_a_wrong_shape() {
        let flat = [0, 0, 2, 1_000, 5, -1, 0, 0, -1, 2, 7, 0, 30, 40];
        let answers = parse_answers(&flat, [2, 1, 2].into_iter()).unwrap();
        assert_eq!(
            answers[0],
            (
                Some(Decision::Allowed { used: 2 }),
                vec![Some(1_000), Some(5)]
            )
        );
        assert_eq!(answers[1], (None, vec![None]));
        assert_eq!(
            answers[2],
            (
                Some(Decision::Refused {
                    index: 1,
                    wait: Duration::from_micros(7)
                }),
                vec![Some(30), Some(40)]
            )
        );
        assert!(
            parse_answers(&flat, [2, 1].into_iter()).is_none(),
            "left over"
        );
        assert!(
            parse_answers(&flat[..4], [2].into_iter()).is_none(),
            "short"
        );
    }
}
