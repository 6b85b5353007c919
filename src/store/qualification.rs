//! Qualification's storage: integration events (written with the fact they record), each
//! lead's stage and the append-only stage ledger, hand-offs with their ledger, and mail to
//! staff. One unit of work ([`Qualification`]) writes a stage move, a hand-off, new events,
//! staff mail and webhook deliveries in one transaction, guarded so two instances cannot
//! move one lead twice.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};
use uuid::Uuid;

use super::batch::{Insert, Val};
use super::models::BatchItem;
use super::pools::{Exec, Tx};
use super::sql::Sql;
use super::{LeadStore, StoreError};
use crate::config::ActivityKind;
use crate::scoring::{Activity, Factor, LeadFacts, Stage, StageView};

/// An event claimed by the dispatcher.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedEvent {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub lead_id: String,
    pub data: String,
    pub attempts: i64,
    pub created_at: i64,
}

impl ClaimedEvent {
    pub fn data(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub lead_id: String,
    pub data: Value,
}

/// A lead's stored stage and cached score.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StageRecord {
    pub stage: String,
    pub reason: Option<String>,
    pub score: i64,
    pub fit: i64,
    pub engagement: i64,
    pub ruleset: String,
    #[sqlx(rename = "recycled_at")]
    pub recycled_at_ms: Option<i64>,
    #[sqlx(rename = "changed_at")]
    pub changed_at_ms: i64,
}

impl StageRecord {
    pub fn view(&self) -> Option<StageView> {
        Some(StageView {
            stage: self.stage.parse().ok()?,
            recycled_at_ms: self.recycled_at_ms,
        })
    }
}

/// One entry of the stage ledger.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StageChange {
    pub id: String,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub cause: String,
    pub actor: String,
    pub reason: Option<String>,
    pub score: i64,
    pub ruleset: String,
    #[sqlx(rename = "factors")]
    #[serde(skip)]
    pub factors_json: String,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
}

impl StageChange {
    /// The score's factors frozen at the change.
    pub fn factors(&self) -> Vec<Factor> {
        serde_json::from_str(&self.factors_json).unwrap_or_default()
    }
}

/// A hand-off to sales.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HandoffRecord {
    pub id: String,
    pub lead_id: String,
    pub owner_id: Option<String>,
    pub status: String,
    /// Why this owner (the routing decision).
    pub route: String,
    pub reason: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "updated_at")]
    pub updated_at_ms: i64,
    #[sqlx(rename = "sla_due_at")]
    pub sla_due_at_ms: i64,
    #[sqlx(rename = "escalated_at")]
    pub escalated_at_ms: Option<i64>,
    #[sqlx(rename = "accepted_at")]
    pub accepted_at_ms: Option<i64>,
    #[sqlx(rename = "closed_at")]
    pub closed_at_ms: Option<i64>,
    /// The lead's address (joined in lists).
    #[sqlx(default)]
    pub email: Option<String>,
}

/// One entry of a hand-off's ledger.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HandoffChange {
    pub from_status: Option<String>,
    pub to_status: String,
    pub cause: String,
    pub actor: String,
    pub reason: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
}

/// A stage move inside a [`Qualification`].
#[derive(Debug, Clone)]
pub struct StageMove {
    /// The stage it must be at now (none: no stage yet); otherwise nothing is written.
    pub from: Option<Stage>,
    pub to: Stage,
    pub cause: &'static str,
    pub actor: String,
    pub reason: Option<String>,
    /// A step back: rules wait for new activity before moving it forward again.
    pub recycle: bool,
}

/// A new hand-off inside a [`Qualification`].
#[derive(Debug, Clone)]
pub struct NewHandoff {
    pub id: String,
    pub owner_id: Option<String>,
    pub route: String,
    pub sla_due_at_ms: i64,
}

/// A hand-off's status change inside a [`Qualification`].
#[derive(Debug, Clone)]
pub struct HandoffMove {
    pub id: String,
    /// Allowed current statuses; otherwise nothing is written.
    pub from: Vec<&'static str>,
    pub to: &'static str,
    pub cause: &'static str,
    pub actor: String,
    pub reason: Option<String>,
}

/// Mail to a member of staff.
#[derive(Debug, Clone)]
pub struct NewStaffMail {
    /// `handoff`, `escalation` or `endpoint_disabled`.
    pub kind: &'static str,
    pub recipient: String,
    pub subject_id: String,
}

/// A webhook delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_id: String,
    pub endpoint_id: String,
    pub kind: String,
    pub lead_id: Option<String>,
    pub payload: String,
    pub event_at_ms: i64,
}

/// A score to cache with the lead's stage.
#[derive(Debug, Clone)]
pub struct ScoreCache {
    pub score: i64,
    pub fit: i64,
    pub engagement: i64,
    pub ruleset: String,
    pub factors: Vec<Factor>,
}

/// One unit of qualification work, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Qualification {
    pub lead_id: String,
    pub now_ms: i64,
    pub score: Option<ScoreCache>,
    pub stage: Option<StageMove>,
    pub handoff: Option<NewHandoff>,
    pub handoff_move: Option<HandoffMove>,
    pub events: Vec<NewEvent>,
    pub staff_mail: Vec<NewStaffMail>,
    pub deliveries: Vec<NewDelivery>,
    /// The claimed event this finishes (id, lease owner).
    pub done_event: Option<(String, String)>,
    /// Sequences the lead leaves (in this transaction: a hand-off or a stage move ends them).
    pub exits: Vec<super::Exit>,
    /// Sequences the lead enters.
    pub enrolments: Vec<super::NewEnrolment>,
}

/// A claimed message to staff.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaffMail {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject_id: String,
    pub attempts: i64,
}

/// What became of a [`Qualification`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The stage or hand-off was not where the work expected (another instance or person
    /// moved it first): nothing was written.
    Moved,
}

/// Everything scoring reads about one lead.
#[derive(Debug, Clone, Default)]
pub struct LeadActivity {
    pub facts: LeadFacts,
    pub activity: Vec<Activity>,
}

pub(super) const EVENT_COLUMNS: &[&str] = &[
    "id",
    "type",
    "lead_id",
    "data",
    "status",
    "next_attempt_at",
    "created_at",
];

/// The batch's `submission.created` events (a new person's first one says so). A quarantined
/// submission is nobody's activity: it gets a `submission.quarantined` event written as `done`,
/// which nothing dispatches or scores (the queue's log of it, pruned with the other finished
/// events), so a caught bot's answer costs the same writes as a person's.
pub(super) fn batch_events<'a>(
    items: &[BatchItem<'a>],
    writes: &[usize],
    rows: &'a [(String, String)],
    existing: &HashSet<&str>,
) -> Insert<'a> {
    let mut insert = Insert::new("events", EVENT_COLUMNS, "");
    let mut seen: HashSet<&str> = HashSet::new();
    for (&i, (submission_id, lead_id)) in writes.iter().zip(rows) {
        let sub = items[i].sub;
        let real = !sub.quarantined();
        let new_lead =
            real && !existing.contains(lead_id.as_str()) && seen.insert(lead_id.as_str());
        let data = json!({
            "submission_id": submission_id,
            "form_id": sub.form_id,
            "new_lead": new_lead,
        });
        let (kind, status) = if real {
            ("submission.created", "pending")
        } else {
            ("submission.quarantined", "done")
        };
        insert.row([
            Uuid::now_v7().to_string().into(),
            kind.into(),
            lead_id.as_str().into(),
            data.to_string().into(),
            status.into(),
            sub.received_at_ms.into(),
            sub.received_at_ms.into(),
        ]);
    }
    insert
}

/// `INSERT INTO events …` for one event, due now.
pub(super) fn event_sql(e: &NewEvent, now_ms: i64) -> Sql {
    Sql::fixed(
        "INSERT INTO events (id, type, lead_id, data, status, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
    )
    .arg(Uuid::now_v7().to_string())
    .arg(e.kind)
    .arg(e.lead_id.as_str())
    .arg(e.data.to_string())
    .arg(now_ms)
}

/// Records an event inside a transaction when events are on.
pub(super) async fn record_event(
    store: &LeadStore,
    exec: Exec<'_>,
    event: NewEvent,
    now_ms: i64,
) -> Result<(), StoreError> {
    if store.events {
        exec.execute(&event_sql(&event, now_ms)).await?;
    }
    Ok(())
}

/// Removes everything qualification holds about the leads `gone` selects (a subquery of
/// lead ids): erasure and retention.
pub(super) async fn forget(tx: &mut Tx, gone: &str, binds: &[&str]) -> Result<(), StoreError> {
    let statements = [
        format!(
            "DELETE FROM staff_mail WHERE subject_id IN (SELECT id FROM handoffs WHERE lead_id IN {gone})"
        ),
        format!(
            "DELETE FROM handoff_changes WHERE handoff_id IN (SELECT id FROM handoffs WHERE lead_id IN {gone})"
        ),
        format!("DELETE FROM handoffs WHERE lead_id IN {gone}"),
        format!("DELETE FROM stage_changes WHERE lead_id IN {gone}"),
        format!("DELETE FROM lead_stages WHERE lead_id IN {gone}"),
        format!("DELETE FROM events WHERE lead_id IN {gone}"),
        format!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE lead_id IN {gone})"
        ),
        format!("DELETE FROM webhook_deliveries WHERE lead_id IN {gone}"),
        format!("DELETE FROM crm_links WHERE lead_id IN {gone}"),
    ];
    for text in statements {
        let sql = binds
            .iter()
            .fold(Sql::fixed(text), |sql, b| sql.arg(*b))
            .once();
        tx.exec().execute(&sql).await?;
    }
    Ok(())
}

/// A lead's real submissions, through `submissions_lead (lead_id, created_at)`.
pub(super) const ACTIVITY_SUBMISSIONS: &str = "SELECT form_id, created_at, confirmed_at, fields \
     FROM submissions WHERE lead_id = $1 AND spam_reason IS NULL ORDER BY created_at, id";

/// A lead's used downloads, through `downloads_lead`.
pub(super) const ACTIVITY_DOWNLOADS: &str = "SELECT form_id, \
     COALESCE(first_download_at, last_download_at) FROM downloads \
     WHERE lead_id = $1 AND download_count > 0";

/// A lead's stage, by primary key.
pub(super) const STAGE_OF: &str = "SELECT stage, reason, score, fit, engagement, ruleset, \
     recycled_at, changed_at FROM lead_stages WHERE lead_id = $1";

/// The lead's open hand-off, if any, through `handoffs_lead`.
pub(super) fn open_handoff_sql(lead_id: &str) -> Sql {
    let mut sql = Sql::new("SELECT id FROM handoffs WHERE lead_id = ".into());
    sql.bind_text(lead_id).push(" AND status IN (");
    sql.bind_list(OPEN_HANDOFF);
    sql.push(") LIMIT 1");
    sql
}

/// New hand-offs past their SLA, through the partial index `handoffs_sla`.
pub(super) fn overdue_sql(now_ms: i64, limit: u32) -> Sql {
    Sql::fixed(format!(
        "SELECT {HANDOFF_COLUMNS}, l.email FROM handoffs h \
         LEFT JOIN leads l ON l.id = h.lead_id \
         WHERE h.status = 'new' AND h.escalated_at IS NULL AND h.sla_due_at <= $1 \
         ORDER BY h.sla_due_at LIMIT $2"
    ))
    .arg(now_ms)
    .arg(i64::from(limit))
}

const HANDOFF_COLUMNS: &str = "h.id, h.lead_id, h.owner_id, h.status, h.route, h.reason, \
     h.created_at, h.updated_at, h.sla_due_at, h.escalated_at, h.accepted_at, h.closed_at";

/// Open hand-off statuses (counted against an owner's load).
pub const OPEN_HANDOFF: [&str; 3] = ["new", "attempting", "connected"];

impl LeadStore {
    /// Turns integration events on: facts write events in their transaction from now on.
    #[must_use]
    pub fn with_events(mut self, on: bool) -> LeadStore {
        self.events = on;
        self
    }

    /// Submissions of these forms end these sequences, in the submission's transaction.
    #[must_use]
    pub fn with_sequence_exits(
        mut self,
        exits: std::collections::BTreeMap<String, Vec<String>>,
    ) -> LeadStore {
        self.sequence_exits = std::sync::Arc::new(exits);
        self
    }

    pub fn events_enabled(&self) -> bool {
        self.events
    }

    /// Records an event on its own (a fact that has no transaction of its own here).
    pub async fn add_event(&self, event: NewEvent, now_ms: i64) -> Result<(), StoreError> {
        record_event(self, self.pools.writer(), event, now_ms).await
    }

    /// Claims up to `limit` due events for `owner` for `lease_ms`.
    pub async fn claim_events(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        self.claim_rows(
            (
                "events",
                "('pending', 'failed')",
                "id, type, lead_id, data, attempts, created_at",
            ),
            (now_ms, lease_ms, owner, limit),
        )
        .await
    }

    /// An event failed: retried at `next_ms` (or given up when `dead`).
    pub async fn fail_event(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        next_ms: i64,
        dead: bool,
    ) -> Result<(), StoreError> {
        let sql = Sql::fixed(
            "UPDATE events SET status = $1, last_error = $2, next_attempt_at = $3, \
               lease_until = NULL WHERE id = $4 AND lease_owner = $5",
        )
        .arg(if dead { "dead" } else { "failed" })
        .arg(error)
        .arg(next_ms)
        .arg(id)
        .arg(owner);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// Events still waiting to be dispatched (metrics, tests).
    pub async fn pending_events(&self) -> Result<i64, StoreError> {
        let sql = Sql::fixed("SELECT COUNT(*) FROM events WHERE status IN ('pending', 'failed')");
        let (n,): (i64,) = self.pools.reader().fetch_one(&sql).await?;
        Ok(n)
    }

    /// What scoring reads about a lead: its address, the newest value of each field it typed
    /// (real submissions only), and its activity. `None`: no such lead.
    pub async fn lead_activity(&self, lead_id: &str) -> Result<Option<LeadActivity>, StoreError> {
        let sql = Sql::fixed("SELECT email FROM leads WHERE id = $1").arg(lead_id);
        let Some((email,)): Option<(String,)> = self.pools.reader().fetch_optional(&sql).await?
        else {
            return Ok(None);
        };
        let sql = Sql::fixed(ACTIVITY_SUBMISSIONS).arg(lead_id);
        let subs: Vec<(String, i64, Option<i64>, String)> =
            self.pools.reader().fetch_all(&sql).await?;
        let mut out = LeadActivity {
            facts: LeadFacts {
                email,
                fields: BTreeMap::new(),
            },
            activity: Vec::with_capacity(subs.len() + 2),
        };
        for (form_id, at, confirmed, fields) in subs {
            let fields: BTreeMap<String, crate::domain::FieldValue> =
                serde_json::from_str(&fields).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for (k, v) in fields {
                let text = v.as_text();
                if !text.trim().is_empty() && k != "email" {
                    out.facts.fields.insert(k, text);
                }
            }
            if let Some(c) = confirmed {
                out.activity.push(Activity {
                    kind: ActivityKind::Confirmed,
                    form_id: form_id.clone(),
                    at_ms: c,
                });
            }
            out.activity.push(Activity {
                kind: ActivityKind::Submitted,
                form_id,
                at_ms: at,
            });
        }
        let sql = Sql::fixed(ACTIVITY_DOWNLOADS).arg(lead_id);
        let downloads: Vec<(String, Option<i64>)> = self.pools.reader().fetch_all(&sql).await?;
        for (form_id, at) in downloads {
            if let Some(at_ms) = at {
                out.activity.push(Activity {
                    kind: ActivityKind::Downloaded,
                    form_id,
                    at_ms,
                });
            }
        }
        for (kind, form_id, at_ms, _) in self.lead_interactions(lead_id).await? {
            out.activity.push(Activity {
                kind: if kind == "reply" {
                    ActivityKind::Replied
                } else {
                    ActivityKind::Clicked
                },
                form_id,
                at_ms,
            });
        }
        out.activity.sort_by_key(|a| a.at_ms);
        Ok(Some(out))
    }

    pub async fn lead_stage(&self, lead_id: &str) -> Result<Option<StageRecord>, StoreError> {
        let sql = Sql::fixed(STAGE_OF).arg(lead_id);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// The lead's stage ledger, oldest first.
    pub async fn stage_changes(&self, lead_id: &str) -> Result<Vec<StageChange>, StoreError> {
        let sql = Sql::fixed(
            "SELECT id, from_stage, to_stage, cause, actor, reason, score, ruleset, factors, \
               created_at FROM stage_changes WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .arg(lead_id);
        self.pools.reader().fetch_all(&sql).await
    }

    /// Stage counts (the console's overview).
    pub async fn stage_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = Sql::fixed("SELECT stage, COUNT(*) FROM lead_stages GROUP BY stage");
        self.pools.reader().fetch_all(&sql).await
    }

    /// Leads with at least one real submission, by id after `after` (`inlet scoring plan`
    /// walks them all in pages, on the primary key).
    pub async fn lead_ids_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let sql = Sql::fixed(
            "SELECT id FROM leads WHERE id > $1 AND real_submission_count > 0 \
             ORDER BY id LIMIT $2",
        )
        .arg(after.unwrap_or(""))
        .arg(i64::from(limit));
        let rows: Vec<(String,)> = self.pools.reader().fetch_all(&sql).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn handoff(&self, id: &str) -> Result<Option<HandoffRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {HANDOFF_COLUMNS}, l.email FROM handoffs h \
             LEFT JOIN leads l ON l.id = h.lead_id WHERE h.id = $1"
        ))
        .arg(id);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// A lead's hand-offs, newest first.
    pub async fn lead_handoffs(&self, lead_id: &str) -> Result<Vec<HandoffRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {HANDOFF_COLUMNS}, l.email FROM handoffs h \
             LEFT JOIN leads l ON l.id = h.lead_id WHERE h.lead_id = $1 \
             ORDER BY h.created_at DESC, h.id DESC"
        ))
        .arg(lead_id);
        self.pools.reader().fetch_all(&sql).await
    }

    /// Hand-offs, newest first: of one owner and/or status (open ones: `open`), before `before`
    /// (an id) for paging.
    pub async fn list_handoffs(
        &self,
        owner: Option<&str>,
        status: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HandoffRecord>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {HANDOFF_COLUMNS}, l.email FROM handoffs h \
             LEFT JOIN leads l ON l.id = h.lead_id WHERE 1 = 1"
        ));
        // `open` is three statuses; any other status is itself.
        let status = match status {
            Some("open") => {
                sql.push(" AND h.status IN (");
                sql.bind_list(OPEN_HANDOFF);
                sql.push(")");
                None
            }
            other => other,
        };
        let sql = super::sql::newest_first(
            sql,
            &[("h.owner_id", owner), ("h.status", status)],
            "h.id",
            before,
            limit,
        );
        self.pools.reader().fetch_all(&sql).await
    }

    pub async fn handoff_changes(&self, id: &str) -> Result<Vec<HandoffChange>, StoreError> {
        let sql = Sql::fixed(
            "SELECT from_status, to_status, cause, actor, reason, created_at \
             FROM handoff_changes WHERE handoff_id = $1 ORDER BY created_at, id",
        )
        .arg(id);
        self.pools.reader().fetch_all(&sql).await
    }

    /// Open hand-offs per owner (routing's load).
    pub async fn open_handoffs_by_owner(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut sql = Sql::new(
            "SELECT owner_id, COUNT(*) FROM handoffs WHERE owner_id IS NOT NULL AND status IN ("
                .into(),
        );
        sql.bind_list(OPEN_HANDOFF);
        sql.push(") GROUP BY owner_id");
        let rows: Vec<(String, i64)> = self.pools.reader().fetch_all(&sql).await?;
        Ok(rows.into_iter().collect())
    }

    /// Whether the lead has an open hand-off.
    pub async fn has_open_handoff(&self, lead_id: &str) -> Result<bool, StoreError> {
        let sql = open_handoff_sql(lead_id);
        let row: Option<(String,)> = self.pools.reader().fetch_optional(&sql).await?;
        Ok(row.is_some())
    }

    /// New hand-offs past their SLA and not escalated yet.
    pub async fn overdue_handoffs(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<HandoffRecord>, StoreError> {
        self.pools
            .reader()
            .fetch_all(&overdue_sql(now_ms, limit))
            .await
    }

    /// Marks a hand-off escalated (once) and queues the escalation mail; false when another
    /// instance did it first.
    pub async fn escalate_handoff(
        &self,
        id: &str,
        now_ms: i64,
        reason: &str,
        mail: &[NewStaffMail],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed(
            "UPDATE handoffs SET escalated_at = $1 WHERE id = $2 AND escalated_at IS NULL \
             AND status = 'new'",
        )
        .arg(now_ms)
        .arg(id);
        if tx.exec().execute(&sql).await? != 1 {
            return Ok(false);
        }
        handoff_change(
            &mut tx,
            id,
            (Some("new"), "new"),
            ("sla", "inlet"),
            Some(reason),
            now_ms,
        )
        .await?;
        for m in mail {
            tx.exec().execute(&staff_mail_sql(m, now_ms)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The lead's record in each CRM (`crm` -> remote id).
    pub async fn crm_links(&self, lead_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let sql =
            Sql::fixed("SELECT crm, remote_id FROM crm_links WHERE lead_id = $1").arg(lead_id);
        let rows: Vec<(String, String)> = self.pools.reader().fetch_all(&sql).await?;
        Ok(rows.into_iter().collect())
    }

    /// Remembers the lead's record in a CRM.
    pub async fn link_crm(
        &self,
        crm: &str,
        lead_id: &str,
        remote_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = Sql::fixed(
            "INSERT INTO crm_links (crm, lead_id, remote_id, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (crm, lead_id) DO UPDATE SET remote_id = $3, updated_at = $4",
        )
        .arg(crm)
        .arg(lead_id)
        .arg(remote_id)
        .arg(now_ms);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// Claims up to `limit` due staff messages for `owner` for `lease_ms`.
    pub async fn claim_staff_mail(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<StaffMail>, StoreError> {
        self.claim_rows(
            (
                "staff_mail",
                "('pending')",
                "id, kind, recipient, subject_id, attempts",
            ),
            (now_ms, lease_ms, owner, limit),
        )
        .await
    }

    pub async fn finish_staff_mail(
        &self,
        id: &str,
        owner: &str,
        outcome: &super::ConsoleMailOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = super::console_mail::finish_sql("staff_mail", id, owner, outcome, now_ms);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// Writes one unit of qualification work in one transaction.
    pub async fn apply_qualification(&self, q: &Qualification) -> Result<Applied, StoreError> {
        let done = self.apply_qualifications(std::slice::from_ref(q)).await?;
        Ok(done.into_iter().next().unwrap_or(Applied::Moved))
    }

    /// Writes many units of work in one transaction (the dispatcher's round: one commit, one
    /// turn of SQLite's writer, however many events). Each unit is guarded on its own: one
    /// whose event lease was lost, or whose lead or hand-off moved meanwhile, writes nothing
    /// (its event is made due again in a second) and the others go ahead.
    pub async fn apply_qualifications(
        &self,
        units: &[Qualification],
    ) -> Result<Vec<Applied>, StoreError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pools.begin().await?;
        let mut out = Vec::with_capacity(units.len());
        for q in units {
            let applied = apply_one(&mut tx, q).await?;
            if applied == Applied::Moved {
                if let Some((id, owner)) = &q.done_event {
                    // Guarded after the event was marked done: due again shortly.
                    let sql = Sql::fixed(
                        "UPDATE events SET status = 'failed', done_at = NULL, \
                           next_attempt_at = $1, last_error = 'the lead changed meanwhile' \
                         WHERE id = $2 AND lease_owner = $3",
                    )
                    .arg(q.now_ms + 1_000)
                    .arg(id.as_str())
                    .arg(owner.as_str());
                    tx.exec().execute(&sql).await?;
                }
            }
            out.push(applied);
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// One unit inside the round's transaction: its guards first (the event still ours, the
/// lead's stage and the hand-off still where the work found them), then its writes.
async fn apply_one(tx: &mut Tx, q: &Qualification) -> Result<Applied, StoreError> {
    let now = q.now_ms;
    if let Some((id, owner)) = &q.done_event {
        let sql = Sql::fixed(
            "UPDATE events SET status = 'done', done_at = $1, last_error = NULL, \
               lease_until = NULL WHERE id = $2 AND lease_owner = $3",
        )
        .arg(now)
        .arg(id.as_str())
        .arg(owner.as_str());
        if tx.exec().execute(&sql).await? != 1 {
            // The lease ran out and another worker holds the event now: it does the work.
            return Ok(Applied::Moved);
        }
    }
    if let Some(m) = &q.stage {
        let score = q.score.as_ref();
        let moved = match m.from {
            None => {
                let sql = Sql::fixed(
                    "INSERT INTO lead_stages (lead_id, stage, reason, score, fit, engagement, \
                       ruleset, recycled_at, changed_at, scored_at) \
                     VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, NULL, $8, $8) \
                     ON CONFLICT (lead_id) DO NOTHING",
                )
                .arg(q.lead_id.as_str())
                .arg(m.to.as_str())
                .arg(m.reason.clone().unwrap_or_default())
                .arg(score.map_or(0, |s| s.score))
                .arg(score.map_or(0, |s| s.fit))
                .arg(score.map_or(0, |s| s.engagement))
                .arg(score.map_or("", |s| s.ruleset.as_str()))
                .arg(now);
                tx.exec().execute(&sql).await?
            }
            Some(from) => {
                let recycle = if m.recycle { "$1" } else { "recycled_at" };
                let sql = Sql::fixed(format!(
                    "UPDATE lead_stages SET stage = $2, reason = NULLIF($3, ''), changed_at = $1, \
                       recycled_at = {recycle} WHERE lead_id = $4 AND stage = $5"
                ))
                .arg(now)
                .arg(m.to.as_str())
                .arg(m.reason.clone().unwrap_or_default())
                .arg(q.lead_id.as_str())
                .arg(from.as_str());
                tx.exec().execute(&sql).await?
            }
        };
        if moved != 1 {
            return Ok(Applied::Moved);
        }
        let factors = score.map_or_else(|| "[]".to_string(), |s| json!(s.factors).to_string());
        let sql = Sql::fixed(
            "INSERT INTO stage_changes (id, lead_id, from_stage, to_stage, cause, actor, \
               reason, score, ruleset, factors, created_at) \
             VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, NULLIF($7, ''), $8, $9, $10, $11)",
        )
        .arg(Uuid::now_v7().to_string())
        .arg(q.lead_id.as_str())
        .arg(m.from.map_or("", Stage::as_str))
        .arg(m.to.as_str())
        .arg(m.cause)
        .arg(m.actor.as_str())
        .arg(m.reason.clone().unwrap_or_default())
        .arg(score.map_or(0, |s| s.score))
        .arg(score.map_or("", |s| s.ruleset.as_str()))
        .arg(factors)
        .arg(now);
        tx.exec().execute(&sql).await?;
    }
    if let Some(s) = &q.score {
        let sql = Sql::fixed(
            "UPDATE lead_stages SET score = $1, fit = $2, engagement = $3, ruleset = $4, \
               scored_at = $5 WHERE lead_id = $6",
        )
        .arg(s.score)
        .arg(s.fit)
        .arg(s.engagement)
        .arg(s.ruleset.as_str())
        .arg(now)
        .arg(q.lead_id.as_str());
        tx.exec().execute(&sql).await?;
    }
    if let Some(h) = &q.handoff_move {
        let mut sql = Sql::new("UPDATE handoffs SET status = ".into());
        sql.bind_text(h.to).push(", updated_at = ").bind_int(now);
        if h.to == "attempting" {
            sql.push(", accepted_at = ").bind_int(now);
        }
        if matches!(h.to, "qualified" | "disqualified" | "rejected") {
            sql.push(", closed_at = ").bind_int(now);
        }
        if let Some(r) = &h.reason {
            sql.push(", reason = ").bind_text(r);
        }
        sql.push(" WHERE id = ")
            .bind_text(&h.id)
            .push(" AND status IN (");
        sql.bind_list(h.from.iter().copied());
        sql.push(")");
        let prior: Option<(String,)> = tx
            .exec()
            .fetch_optional(
                &Sql::fixed("SELECT status FROM handoffs WHERE id = $1").arg(h.id.as_str()),
            )
            .await?;
        if tx.exec().execute(&sql.once()).await? != 1 {
            return Ok(Applied::Moved);
        }
        handoff_change(
            tx,
            &h.id,
            (prior.as_ref().map(|(s,)| s.as_str()), h.to),
            (h.cause, &h.actor),
            h.reason.as_deref(),
            now,
        )
        .await?;
    }
    if let Some(h) = &q.handoff {
        let sql = Sql::fixed(
            "INSERT INTO handoffs (id, lead_id, owner_id, status, route, created_at, \
               updated_at, sla_due_at) VALUES ($1, $2, NULLIF($3, ''), 'new', $4, $5, $5, $6)",
        )
        .arg(h.id.as_str())
        .arg(q.lead_id.as_str())
        .arg(h.owner_id.clone().unwrap_or_default())
        .arg(h.route.as_str())
        .arg(now)
        .arg(h.sla_due_at_ms);
        tx.exec().execute(&sql).await?;
        handoff_change(
            tx,
            &h.id,
            (None, "new"),
            ("rule", "inlet"),
            Some(&h.route),
            now,
        )
        .await?;
    }
    for e in &q.exits {
        super::sequences::exit(&mut tx.exec(), &q.lead_id, e, false, now).await?;
    }
    for e in &q.enrolments {
        super::sequences::enrol(&mut tx.exec(), &q.lead_id, e, now).await?;
    }
    for e in &q.events {
        tx.exec().execute(&event_sql(e, now)).await?;
    }
    for m in &q.staff_mail {
        tx.exec().execute(&staff_mail_sql(m, now)).await?;
    }
    if !q.deliveries.is_empty() {
        tx.conn()
            .write(
                None,
                &[delivery_insert(&q.deliveries, now)],
                super::batch::Frame::Plain,
            )
            .await?;
    }
    Ok(Applied::Done)
}

async fn handoff_change(
    tx: &mut Tx,
    id: &str,
    (from, to): (Option<&str>, &str),
    (cause, actor): (&str, &str),
    reason: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let sql = Sql::fixed(
        "INSERT INTO handoff_changes (id, handoff_id, from_status, to_status, cause, actor, \
           reason, created_at) VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, NULLIF($7, ''), $8)",
    )
    .arg(Uuid::now_v7().to_string())
    .arg(id)
    .arg(from.unwrap_or(""))
    .arg(to)
    .arg(cause)
    .arg(actor)
    .arg(reason.unwrap_or(""))
    .arg(now_ms);
    tx.exec().execute(&sql).await.map(drop)
}

pub(super) fn staff_mail_sql(m: &NewStaffMail, now_ms: i64) -> Sql {
    Sql::fixed(
        "INSERT INTO staff_mail (id, kind, recipient, subject_id, status, next_attempt_at, \
           created_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
    )
    .arg(Uuid::now_v7().to_string())
    .arg(m.kind)
    .arg(m.recipient.as_str())
    .arg(m.subject_id.as_str())
    .arg(now_ms)
}

pub(super) fn delivery_insert(d: &[NewDelivery], now_ms: i64) -> Insert<'_> {
    let mut insert = Insert::new(
        "webhook_deliveries",
        &[
            "id",
            "message_id",
            "endpoint_id",
            "type",
            "lead_id",
            "payload",
            "status",
            "next_attempt_at",
            "created_at",
            "event_at",
        ],
        "",
    );
    for x in d {
        insert.row([
            Uuid::now_v7().to_string().into(),
            x.message_id.as_str().into(),
            x.endpoint_id.as_str().into(),
            x.kind.as_str().into(),
            Val::from(x.lead_id.as_deref()),
            x.payload.as_str().into(),
            "pending".into(),
            now_ms.into(),
            now_ms.into(),
            x.event_at_ms.into(),
        ]);
    }
    insert
}
