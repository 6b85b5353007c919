//! The transactional outbox: enqueue inside the submission's transaction, claim with a lease,
//! mark the outcome. Nothing is ever deleted on failure.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::batch::{Insert, Val};
use super::dialect::Dialect;
use super::models::BatchItem;
use super::pools::Exec;
use super::sql::{split, Bind, Sql};
use super::{LeadStore, StoreError};
use crate::domain::{FieldValue, MessageKind, NewOutboxMessage};
use std::collections::{HashMap, HashSet};

/// A message claimed by a worker, with what it needs to compose it.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: String,
    pub lead_id: String,
    pub submission_id: String,
    pub form_id: String,
    pub kind: String,
    pub recipient: String,
    /// Including this one.
    pub attempts: i64,
    pub max_attempts: i64,
    pub lead_email: String,
    pub fields: BTreeMap<String, FieldValue>,
    /// When the submission arrived (its confirmation link's lifetime counts from here).
    pub submitted_at_ms: i64,
    /// Download forms: until when the lead's download link works.
    pub download_expires_at_ms: Option<i64>,
    /// Owner notifications: submissions to the form quarantined in the 24 hours before this
    /// one (filled in by the worker right before composing).
    pub quarantined_before: i64,
    /// Sequence steps: the sequence, the enrolment and the step.
    pub sequence_id: Option<String>,
    pub enrolment_id: Option<String>,
    pub step_id: Option<String>,
    /// Whether the address is proven (a confirmed sign-up, or a used download link): mail
    /// may then carry what the person typed.
    pub confirmed: bool,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct OutboxRecord {
    pub id: String,
    pub lead_id: String,
    pub submission_id: String,
    pub form_id: String,
    pub kind: String,
    pub recipient: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    #[sqlx(rename = "next_attempt_at")]
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "sent_at")]
    pub sent_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub failed: i64,
    pub dead: i64,
    /// Sequence steps scheduled for later (not due yet: not waiting).
    pub scheduled: i64,
    /// When the message waiting longest fell due.
    pub oldest_waiting_ms: Option<i64>,
}

/// What `inlet outbox retry` revives.
#[derive(Debug, Clone)]
pub enum RetryTarget {
    One(String),
    AllDead,
}

/// The queue's counts: messages due and waiting, retrying or dead, through `outbox_due
/// (status, …)`; a message waits since it fell due (a sequence step is created days before
/// that). Sent ones are left out: counting them would read the whole history on every metrics
/// scrape. Steps scheduled for later are counted apart ([`SCHEDULED_STATS`]).
pub(super) const OUTBOX_STATS: &str = "SELECT status, COUNT(*), \
     MIN(CASE WHEN status = 'pending' THEN next_attempt_at ELSE created_at END) FROM outbox \
     WHERE status IN ('pending', 'failed', 'dead') \
       AND (status <> 'pending' OR next_attempt_at <= $1) GROUP BY status";

/// Messages scheduled for later (sequence steps waiting for their day), a range of
/// `outbox_due`.
pub(super) const SCHEDULED_STATS: &str =
    "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND next_attempt_at > $1";

const RECORD_COLUMNS: &str = "id, lead_id, submission_id, form_id, kind, recipient, status, \
     attempts, max_attempts, next_attempt_at, last_error, created_at, sent_at";

/// Each lead's newest non-skipped message per form and kind (the follow-up window), through
/// `outbox_lead (lead_id, …)`.
pub(super) fn window_lookup<'a>(lead_ids: impl IntoIterator<Item = &'a str>) -> Sql {
    let mut sql = Sql::new(
        "SELECT lead_id, form_id, kind, MAX(created_at) FROM outbox \
         WHERE status <> 'skipped' AND lead_id IN ("
            .into(),
    );
    sql.bind_list(lead_ids);
    sql.push(") GROUP BY lead_id, form_id, kind");
    sql.once()
}

/// Due messages leased to `owner`, oldest due first, through `outbox_due (status,
/// next_attempt_at)`. What is due follows the application's clock (`now_ms`: the schedule);
/// whether a lease has run out follows the database's clock, so instances whose clocks disagree
/// cannot take each other's messages. PostgreSQL skips rows another instance's claim holds.
pub(super) fn claim_due_sql(
    dialect: &Dialect,
    now_ms: i64,
    lease_ms: i64,
    owner: &str,
    limit: u32,
) -> Sql {
    claim_sql(
        dialect,
        "outbox",
        "('pending', 'failed')",
        (now_ms, lease_ms, owner, limit),
    )
}

/// Leases up to `limit` due rows of a mail queue (`outbox`, `console_mail`) in `statuses`
/// to `owner` for `lease_ms` (the database's clock), counting an attempt; answers their ids.
pub(super) fn claim_sql(
    dialect: &Dialect,
    table: &str,
    statuses: &str,
    (now_ms, lease_ms, owner, limit): (i64, i64, &str, u32),
) -> Sql {
    let (lock, db_now) = (dialect.claim_lock, dialect.now_ms);
    Sql::with_binds(
        format!(
            "UPDATE {table} SET lease_until = {db_now} + $1, lease_owner = $2, \
               attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM {table} WHERE status IN {statuses} \
               AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < {db_now}) \
               ORDER BY next_attempt_at, id LIMIT $4{lock}) \
             RETURNING id"
        ),
        vec![
            Bind::Int(lease_ms),
            Bind::Text(owner.to_string()),
            Bind::Int(now_ms),
            Bind::Int(i64::from(limit)),
        ],
    )
}

impl LeadStore {
    /// Leases due rows of a queue (see [`claim_sql`]) and reads `columns` of each, in the
    /// order they fell due.
    pub(super) async fn claim_rows<T: super::engine::Record>(
        &self,
        (table, statuses, columns): (&str, &str, &str),
        lease: (i64, i64, &str, u32),
    ) -> Result<Vec<T>, StoreError> {
        let claim = claim_sql(self.dialect(), table, statuses, lease);
        let ids: Vec<(String,)> = self.pools.writer().fetch_all(&claim).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(format!("SELECT {columns} FROM {table} WHERE id IN ("));
        sql.bind_list(ids.iter().map(|(id,)| id.as_str()));
        sql.push(") ORDER BY next_attempt_at, id");
        self.pools.writer().fetch_all(&sql.once()).await
    }
}

/// Whether `owner` still holds the lease on message `id` for at least `margin_ms` more, by
/// the database's clock.
pub(super) fn lease_held_sql(dialect: &Dialect, id: &str, owner: &str, margin_ms: i64) -> Sql {
    Sql::with_binds(
        format!(
            "SELECT id FROM outbox WHERE id = $1 AND lease_owner = $2 \
               AND lease_until > {} + $3",
            dialect.now_ms
        ),
        vec![
            Bind::Text(id.into()),
            Bind::Text(owner.into()),
            Bind::Int(margin_ms),
        ],
    )
}

/// A row of [`claimed_rows`].
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: String,
    lead_id: String,
    submission_id: String,
    form_id: String,
    kind: String,
    recipient: String,
    attempts: i64,
    max_attempts: i64,
    lead_email: String,
    fields: String,
    submitted_at: i64,
    download_expires_at: Option<i64>,
    sequence_id: Option<String>,
    enrolment_id: Option<String>,
    step_id: Option<String>,
    confirmed_at: Option<i64>,
    downloaded: Option<i64>,
}

/// What a worker needs to compose each claimed message: primary-key lookups only.
pub(super) fn claimed_rows<'a>(ids: impl IntoIterator<Item = &'a str>) -> Sql {
    let mut sql = Sql::new(
        "SELECT o.id, o.lead_id, o.submission_id, o.form_id, o.kind, o.recipient, o.attempts, \
           o.max_attempts, s.email AS lead_email, s.fields, s.created_at AS submitted_at, \
           d.expires_at AS download_expires_at, o.enrolment_id, o.step_id, s.confirmed_at, \
           d.download_count AS downloaded, e.sequence_id \
         FROM outbox o JOIN submissions s ON s.id = o.submission_id \
         LEFT JOIN downloads d ON d.id = o.submission_id \
         LEFT JOIN enrolments e ON e.id = o.enrolment_id \
         WHERE o.id IN ("
            .into(),
    );
    sql.bind_list(ids);
    sql.push(") ORDER BY o.next_attempt_at, o.id");
    sql.once()
}

/// `UPDATE outbox SET <set>, lease_until = NULL` for claimed ids this owner holds.
pub(super) fn update_claimed_sql<'a>(
    dialect: &Dialect,
    ids: impl IntoIterator<Item = &'a str>,
    owner: &str,
    set: impl Fn(&mut Sql),
) -> Sql {
    let mut sql = Sql::for_dialect(dialect, "UPDATE outbox SET ".into());
    set(&mut sql);
    sql.push(", lease_until = NULL WHERE lease_owner = ");
    sql.bind_text(owner).push(" AND id IN (");
    sql.bind_list(ids);
    sql.push(")");
    sql
}

/// One failed attempt: retried later, or dead.
pub(super) fn mark_failed_sql(
    status: &str,
    error: &str,
    next_ms: i64,
    id: &str,
    owner: &str,
) -> Sql {
    Sql::with_binds(
        "UPDATE outbox SET status = $1, last_error = $2, next_attempt_at = $3, lease_until = NULL \
         WHERE id = $4 AND lease_owner = $5",
        vec![
            Bind::Text(status.into()),
            Bind::Text(error.into()),
            Bind::Int(next_ms),
            Bind::Text(id.into()),
            Bind::Text(owner.into()),
        ],
    )
}

/// The batch's messages, for its transaction: a follow-up to a person who already got one for
/// the same form within its window (earlier, or earlier in this batch) is stored as `skipped`,
/// so what happened stays visible. Only leads that existed before the batch can have earlier
/// messages, so only they are looked up (one query, and none at all for a batch of new people)
/// unless `everyone` asks for every lead of the batch (a small batch: equal timing).
pub(super) async fn batch_messages<'a>(
    exec: Exec<'_>,
    items: &[BatchItem<'a>],
    writes: &[usize],
    rows: &'a [(String, String)],
    (existing, everyone): (&HashSet<&str>, bool),
) -> Result<Insert<'a>, StoreError> {
    // (lead, form, kind) -> newest non-skipped message time, for the windowed kinds.
    let mut last_sent: HashMap<(String, String, &'static str), i64> = HashMap::new();
    // `everyone`: every lead of the batch is looked up, whatever it sends (equal timing).
    let windowed_leads: Vec<&str> = writes
        .iter()
        .zip(rows)
        .filter(|(&i, (_, lead_id))| {
            everyone
                || existing.contains(lead_id.as_str())
                    && items[i]
                        .messages
                        .iter()
                        .any(|m| m.dedupe_window_ms.is_some())
        })
        .map(|(_, (_, lead_id))| lead_id.as_str())
        .collect();
    if !windowed_leads.is_empty() {
        let sql = window_lookup(windowed_leads.iter().copied());
        let rows: Vec<(String, String, String, i64)> = exec.fetch_all(&sql).await?;
        for (lead, form, kind, at) in rows {
            if let Some(kind) = MessageKind::parse(&kind) {
                last_sent.insert((lead, form, kind.as_str()), at);
            }
        }
    }
    let mut out: Vec<OutboxRow<'a>> = Vec::new();
    for (&i, (submission_id, lead_id)) in writes.iter().zip(rows) {
        let item = items[i];
        let sub = item.sub;
        for m in item.messages {
            let mut skipped = m.held.map(String::from);
            if let (Some(window), None) = (m.dedupe_window_ms, &skipped) {
                let key = (lead_id.clone(), sub.form_id.clone(), m.kind.as_str());
                match last_sent.get(&key) {
                    Some(&t) if t > sub.received_at_ms - window => {
                        skipped = Some(format!(
                            "not sent: this person already got a follow-up for this form in the last {} s",
                            window / 1000
                        ));
                    }
                    _ => {
                        last_sent.insert(key, sub.received_at_ms);
                    }
                }
            }
            out.push(OutboxRow {
                lead_id,
                submission_id,
                form_id: &sub.form_id,
                message: m,
                now_ms: sub.received_at_ms,
                skipped,
            });
        }
    }
    Ok(outbox_insert(out))
}

/// One outbox row about to be written.
pub(super) struct OutboxRow<'a> {
    pub lead_id: &'a str,
    pub submission_id: &'a str,
    pub form_id: &'a str,
    pub message: &'a NewOutboxMessage,
    pub now_ms: i64,
    /// Stored as `skipped` with this reason instead of being sent.
    pub skipped: Option<String>,
}

/// The outbox rows as one multi-row insert.
pub(super) fn outbox_insert(out: Vec<OutboxRow<'_>>) -> Insert<'_> {
    let mut insert = Insert::new(
        "outbox",
        &[
            "id",
            "lead_id",
            "submission_id",
            "form_id",
            "kind",
            "recipient",
            "status",
            "attempts",
            "max_attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
        ],
        "",
    );
    for r in out {
        let status = if r.skipped.is_some() {
            "skipped"
        } else {
            "pending"
        };
        insert.row([
            Uuid::now_v7().to_string().into(),
            r.lead_id.into(),
            r.submission_id.into(),
            r.form_id.into(),
            r.message.kind.as_str().into(),
            r.message.recipient.as_str().into(),
            status.into(),
            Val::Int(0),
            i64::from(r.message.max_attempts).into(),
            r.now_ms.into(),
            r.skipped.map_or(Val::Null, Val::from),
            r.now_ms.into(),
        ]);
    }
    insert
}

impl LeadStore {
    /// Claims up to `limit` due messages for `owner` until `now + lease`. On PostgreSQL, rows
    /// locked by another instance's claim are skipped (`FOR UPDATE SKIP LOCKED`); on SQLite the
    /// single `UPDATE … RETURNING` is atomic.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let claim = claim_due_sql(self.dialect(), now_ms, lease_ms, owner, limit);
        let ids: Vec<(String,)> = self.pools.writer().fetch_all(&claim).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = claimed_rows(ids.iter().map(|(id,)| id.as_str()));
        let rows: Vec<ClaimedRow> = self.pools.writer().fetch_all(&sql).await?;
        rows.into_iter()
            .map(|row| {
                Ok(ClaimedMessage {
                    fields: serde_json::from_str(&row.fields)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    id: row.id,
                    lead_id: row.lead_id,
                    submission_id: row.submission_id,
                    form_id: row.form_id,
                    kind: row.kind,
                    recipient: row.recipient,
                    attempts: row.attempts,
                    max_attempts: row.max_attempts,
                    lead_email: row.lead_email,
                    submitted_at_ms: row.submitted_at,
                    download_expires_at_ms: row.download_expires_at,
                    quarantined_before: 0,
                    sequence_id: row.sequence_id,
                    enrolment_id: row.enrolment_id,
                    step_id: row.step_id,
                    confirmed: row.confirmed_at.is_some() || row.downloaded.unwrap_or(0) > 0,
                })
            })
            .collect()
    }

    /// Marks many claimed messages sent in one statement (only those this owner still holds).
    /// Whether `owner` still holds message `id` for at least `margin_ms` more (checked right
    /// before each send: a worker that stalled past its lease must not send what another
    /// worker has taken over since).
    pub async fn lease_held(
        &self,
        id: &str,
        owner: &str,
        margin_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = lease_held_sql(self.dialect(), id, owner, margin_ms);
        let row: Option<(String,)> = self.pools.reader().fetch_optional(&sql).await?;
        Ok(row.is_some())
    }

    pub async fn mark_sent_many(
        &self,
        ids: &[String],
        owner: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.update_claimed(ids, owner, |sql| {
            sql.push("status = 'sent', last_error = NULL, sent_at = ")
                .bind_int(now_ms);
        })
        .await
    }

    /// Marks claimed messages `skipped` with the reason (e.g. the address is suppressed).
    pub async fn mark_skipped_many(
        &self,
        ids: &[String],
        owner: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        self.update_claimed(ids, owner, |sql| {
            sql.push("status = 'skipped', last_error = ")
                .bind_text(reason);
        })
        .await
    }

    /// `UPDATE outbox SET <set>, lease_until = NULL` for the claimed ids this owner holds.
    async fn update_claimed(
        &self,
        ids: &[String],
        owner: &str,
        set: impl Fn(&mut Sql),
    ) -> Result<u64, StoreError> {
        let mut done = 0;
        for chunk in split(ids) {
            let sql = update_claimed_sql(
                self.dialect(),
                chunk.iter().map(String::as_str),
                owner,
                &set,
            );
            done += self.pools.writer().execute(&sql).await?;
        }
        Ok(done)
    }

    /// Records a failed attempt: retried at `next_attempt_at_ms`, or dead.
    pub async fn mark_failed(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        next_attempt_at_ms: i64,
        dead: bool,
    ) -> Result<bool, StoreError> {
        let status = if dead { "dead" } else { "failed" };
        let sql = mark_failed_sql(status, error, next_attempt_at_ms, id, owner);
        Ok(self.pools.writer().execute(&sql).await? == 1)
    }

    /// Messages, newest first, optionally of one status.
    ///
    /// Newest first by id (UUIDv7: the order they were queued in), so the primary key serves
    /// the list at any size; `before` (an id) pages on.
    pub async fn list_outbox(
        &self,
        status: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let sql = super::sql::newest_first(
            Sql::new(format!("SELECT {RECORD_COLUMNS} FROM outbox WHERE 1 = 1")),
            &[("status", status)],
            "id",
            before,
            limit,
        );
        self.pools.reader().fetch_all(&sql).await
    }

    /// Every message for one lead, oldest first (the admin API's per-lead email status).
    pub async fn lead_messages(&self, lead_id: &str) -> Result<Vec<OutboxRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {RECORD_COLUMNS} FROM outbox WHERE lead_id = $1 ORDER BY created_at, id"
        ))
        .arg(lead_id);
        self.pools.reader().fetch_all(&sql).await
    }

    /// Makes dead (or failed) messages due again with a fresh set of attempts.
    pub async fn retry_outbox(&self, target: &RetryTarget, now_ms: i64) -> Result<u64, StoreError> {
        let base = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                    lease_until = NULL WHERE ";
        let sql = match target {
            RetryTarget::AllDead => Sql::fixed(format!("{base}status = 'dead'")).arg(now_ms),
            RetryTarget::One(id) => {
                Sql::fixed(format!("{base}id = $2 AND status IN ('dead', 'failed')"))
                    .arg(now_ms)
                    .arg(id)
            }
        };
        self.pools.writer().execute(&sql).await
    }

    /// The queue at `now_ms`.
    pub async fn outbox_stats(&self, now_ms: i64) -> Result<OutboxStats, StoreError> {
        let sql = Sql::fixed(OUTBOX_STATS).arg(now_ms);
        let rows: Vec<(String, i64, Option<i64>)> = self.pools.reader().fetch_all(&sql).await?;
        let (scheduled,): (i64,) = self
            .pools
            .reader()
            .fetch_one(&Sql::fixed(SCHEDULED_STATS).arg(now_ms))
            .await?;
        let mut stats = OutboxStats {
            scheduled,
            ..OutboxStats::default()
        };
        for (status, count, oldest) in rows {
            match status.as_str() {
                "pending" => stats.pending = count,
                "failed" => stats.failed = count,
                "dead" => stats.dead = count,
                _ => {}
            }
            if matches!(status.as_str(), "pending" | "failed") {
                stats.oldest_waiting_ms = match (stats.oldest_waiting_ms, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(stats)
    }
}
