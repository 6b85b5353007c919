//! Nurture sequences' storage: enrolments, the steps (outbox rows keyed by enrolment and step),
//! exits recorded in the transaction of what caused them, the step order each sequence last
//! ran with, and clicks and replies.

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use super::pools::Exec;
use super::sql::Sql;
use super::{LeadStore, StoreError};

/// A lead to enrol (written with the unit of qualification work that found the trigger).
#[derive(Debug, Clone)]
pub struct NewEnrolment {
    pub sequence_id: String,
    /// The first step, due at `due_at_ms` (inside the send window).
    pub step_id: String,
    pub due_at_ms: i64,
    /// The submission the trigger was about; default: the lead's newest.
    pub submission_id: Option<String>,
    /// Enrol again after an earlier enrolment ended (otherwise: once per lead, ever).
    pub again: bool,
    pub max_attempts: i64,
}

/// Enrolments to end: the lead's active ones in these sequences (empty: none).
#[derive(Debug, Clone)]
pub struct Exit {
    pub sequences: Vec<String>,
    pub reason: &'static str,
    pub detail: Option<String>,
}

/// An enrolment as lists and the lead page show it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct EnrolmentRecord {
    pub id: String,
    pub sequence_id: String,
    pub lead_id: String,
    pub submission_id: String,
    pub status: String,
    pub exit_reason: Option<String>,
    pub exit_detail: Option<String>,
    #[sqlx(rename = "enrolled_at")]
    pub enrolled_at_ms: i64,
    #[sqlx(rename = "ended_at")]
    pub ended_at_ms: Option<i64>,
}

/// One step's row for a lead (the lead page's timeline).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StepRecord {
    pub id: String,
    pub enrolment_id: String,
    pub step_id: String,
    pub status: String,
    pub attempts: i64,
    #[sqlx(rename = "next_attempt_at")]
    pub due_at_ms: i64,
    pub last_error: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "sent_at")]
    pub sent_at_ms: Option<i64>,
}

/// What the worker reads about an enrolment right before sending one of its steps.
#[derive(Debug, Clone, Default)]
pub struct EnrolmentState {
    pub sequence_id: String,
    pub status: String,
    pub exit_reason: Option<String>,
    pub enrolled_at_ms: i64,
    /// Steps with a row (sent, skipped or waiting).
    pub steps: Vec<String>,
    pub stage: Option<String>,
    pub fit: i64,
    pub engagement: i64,
    pub score: i64,
    pub open_handoff: bool,
    /// Forms the lead submitted since enrolling (real submissions only).
    pub forms_since: HashSet<String>,
    pub replied: bool,
    /// The newest value of each field the lead typed (for the lead's own time zone).
    pub fields: BTreeMap<String, String>,
}

/// How a claimed step ends.
#[derive(Debug, Clone)]
pub enum StepEnd {
    Sent,
    Skipped(String),
}

/// The step that follows one that ended (none: the enrolment is finished).
#[derive(Debug, Clone)]
pub struct NextStep {
    pub step_id: String,
    pub due_at_ms: i64,
}

/// Per sequence: enrolments by status, exits by reason, step rows by step and status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SequenceCounts {
    pub enrolments: BTreeMap<String, i64>,
    pub exits: BTreeMap<String, i64>,
    pub steps: BTreeMap<String, BTreeMap<String, i64>>,
    pub clicks: i64,
    pub replies: i64,
}

/// One enrolment's rows, for `inlet sequences plan`.
#[derive(Debug, Clone)]
pub struct EnrolmentSteps {
    pub id: String,
    pub lead_id: String,
    pub status: String,
    pub exit_reason: Option<String>,
    pub steps: Vec<String>,
    /// The step waiting to be sent, if any.
    pub waiting: Option<String>,
}

/// A click or a reply, as the lead page shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct InteractionRecord {
    pub kind: String,
    pub step_id: String,
    pub detail: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
}

/// A message of a sequence, found from a reply or click token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SequenceMessage {
    pub id: String,
    pub lead_id: String,
    pub enrolment_id: String,
    pub step_id: String,
    pub sequence_id: String,
    pub lead_email: String,
}

/// An enrolment's steps with a row, through `outbox_step`.
pub(super) const ENROLMENT_STEPS: &str = "SELECT step_id FROM outbox WHERE enrolment_id = $1";

/// A lead's enrolments in one sequence, through `enrolments_lead`.
pub(super) const EARLIER_ENROLMENTS: &str =
    "SELECT status, exit_reason FROM enrolments WHERE lead_id = $1 AND sequence_id = $2";

/// A lead's step rows, through `outbox_lead (lead_id, …)`.
pub(super) const LEAD_STEPS: &str = "SELECT id, enrolment_id, step_id, status, attempts, \
     next_attempt_at, last_error, created_at, sent_at FROM outbox \
     WHERE lead_id = $1 AND kind = 'sequence_step' ORDER BY created_at, id";

/// A sequence message with its enrolment and lead, by primary keys.
pub(super) const SEQUENCE_MESSAGE: &str = "SELECT o.id, o.lead_id, o.enrolment_id, o.step_id, \
     e.sequence_id, l.email AS lead_email FROM outbox o \
     JOIN enrolments e ON e.id = o.enrolment_id JOIN leads l ON l.id = o.lead_id \
     WHERE o.id = $1 AND o.kind = 'sequence_step'";

/// A page of a sequence's enrolments, through `enrolments_sequence (sequence_id, id)`.
pub(super) const SEQUENCE_ENROLMENTS: &str = "SELECT id, lead_id, status, exit_reason \
     FROM enrolments WHERE sequence_id = $1 AND id > $2 ORDER BY id LIMIT $3";

/// One sequence's counts: enrolments by status and exit reason, step rows by step and status,
/// clicks and replies.
pub(super) fn counts_sql(sequence_id: &str) -> [Sql; 3] {
    [
        Sql::fixed(
            "SELECT status, exit_reason, COUNT(*) FROM enrolments WHERE sequence_id = $1 \
             GROUP BY status, exit_reason",
        )
        .arg(sequence_id),
        Sql::fixed(
            "SELECT o.step_id, o.status, COUNT(*) FROM enrolments e \
             JOIN outbox o ON o.enrolment_id = e.id WHERE e.sequence_id = $1 \
             GROUP BY o.step_id, o.status",
        )
        .arg(sequence_id),
        Sql::fixed(
            "SELECT i.kind, COUNT(*) FROM enrolments e \
             JOIN sequence_interactions i ON i.enrolment_id = e.id WHERE e.sequence_id = $1 \
             GROUP BY i.kind",
        )
        .arg(sequence_id),
    ]
}

/// `INSERT` of one step's outbox row (nothing when the enrolment already has that step).
fn step_row_sql(
    (enrolment_id, step_id): (&str, &str),
    (lead_id, submission_id, form_id, recipient): (&str, &str, &str, &str),
    (due_at_ms, max_attempts, now_ms): (i64, i64, i64),
) -> Sql {
    Sql::fixed(
        "INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, \
           attempts, max_attempts, next_attempt_at, created_at, enrolment_id, step_id) \
         VALUES ($1, $2, $3, $4, 'sequence_step', $5, 'pending', 0, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING",
    )
    .arg(Uuid::now_v7().to_string())
    .arg(lead_id)
    .arg(submission_id)
    .arg(form_id)
    .arg(recipient)
    .arg(max_attempts)
    .arg(due_at_ms)
    .arg(now_ms)
    .arg(enrolment_id)
    .arg(step_id)
}

/// Enrols a lead inside a transaction, unless the sequence's re-enrolment rule says no:
/// once per lead ever, or (with `again`) whenever no enrolment is active and none ended with
/// an unsubscribe, a bounce or a complaint. Returns the enrolment's id when it was written.
pub(super) async fn enrol(
    exec: &mut Exec<'_>,
    lead_id: &str,
    e: &NewEnrolment,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let sql = Sql::fixed(EARLIER_ENROLMENTS)
        .arg(lead_id)
        .arg(e.sequence_id.as_str());
    let earlier: Vec<(String, Option<String>)> = exec.again().fetch_all(&sql).await?;
    let refused = if e.again {
        earlier.iter().any(|(status, reason)| {
            status == "active"
                || reason
                    .as_deref()
                    .is_some_and(|r| crate::sequences::reason::FINAL.contains(&r))
        })
    } else {
        !earlier.is_empty()
    };
    if refused {
        return Ok(None);
    }
    let mut sql = Sql::new(
        "SELECT s.id, s.form_id, l.email FROM submissions s JOIN leads l ON l.id = s.lead_id \
         WHERE s.lead_id = "
            .into(),
    );
    sql.bind_text(lead_id).push(" AND s.spam_reason IS NULL");
    if let Some(id) = &e.submission_id {
        sql.push(" AND s.id = ").bind_text(id);
    }
    sql.push(" ORDER BY s.created_at DESC LIMIT 1");
    let Some((submission_id, form_id, email)): Option<(String, String, String)> =
        exec.again().fetch_optional(&sql.once()).await?
    else {
        return Ok(None);
    };
    let id = Uuid::now_v7().to_string();
    let sql = Sql::fixed(
        "INSERT INTO enrolments (id, sequence_id, lead_id, submission_id, status, enrolled_at) \
         VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT DO NOTHING",
    )
    .arg(id.as_str())
    .arg(e.sequence_id.as_str())
    .arg(lead_id)
    .arg(submission_id.as_str())
    .arg(now_ms);
    if exec.again().execute(&sql).await? != 1 {
        return Ok(None); // another instance enrolled them a moment ago
    }
    let sql = step_row_sql(
        (&id, &e.step_id),
        (lead_id, &submission_id, &form_id, &email),
        (e.due_at_ms, e.max_attempts, now_ms),
    );
    exec.again().execute(&sql).await?;
    Ok(Some(id))
}

/// Ends a lead's active enrolments (all, or those in `exit.sequences`) inside a transaction:
/// their waiting steps are marked skipped with the reason, then the enrolments exited.
/// Returns how many enrolments ended.
pub(super) async fn exit(
    exec: &mut Exec<'_>,
    lead_id: &str,
    exit: &Exit,
    all: bool,
    now_ms: i64,
) -> Result<u64, StoreError> {
    if !all && exit.sequences.is_empty() {
        return Ok(0);
    }
    let [steps, enrolments] = exit_sqls(lead_id, exit, all, now_ms);
    exec.again().execute(&steps).await?;
    exec.again().execute(&enrolments).await
}

/// [`exit`]'s statements: the waiting steps of the lead's active enrolments (all, or in
/// `exit.sequences`) marked skipped, then the enrolments exited. Both find the enrolments
/// through `enrolments_lead`, and their steps through `outbox_step`.
pub(super) fn exit_sqls(lead_id: &str, exit: &Exit, all: bool, now_ms: i64) -> [Sql; 2] {
    let scope = |sql: &mut Sql| {
        sql.push("SELECT id FROM enrolments WHERE lead_id = ")
            .bind_text(lead_id)
            .push(" AND status = 'active'");
        if !all {
            sql.push(" AND sequence_id IN (");
            sql.bind_list(exit.sequences.iter().map(String::as_str));
            sql.push(")");
        }
    };
    let mut steps =
        Sql::new("UPDATE outbox SET status = 'skipped', lease_until = NULL, last_error = ".into());
    steps
        .bind_text(&format!(
            "not sent: the lead left the sequence ({})",
            crate::sequences::exit_words(exit.reason)
        ))
        .push(" WHERE status IN ('pending', 'failed') AND enrolment_id IN (");
    scope(&mut steps);
    steps.push(")");
    let mut enrolments = Sql::new("UPDATE enrolments SET status = 'exited', exit_reason = ".into());
    enrolments
        .bind_text(exit.reason)
        .push(", exit_detail = ")
        .bind_text(exit.detail.as_deref().unwrap_or(""))
        .push(", ended_at = ")
        .bind_int(now_ms)
        .push(" WHERE id IN (");
    scope(&mut enrolments);
    enrolments.push(")");
    [steps.once(), enrolments.once()]
}

/// Ends, for each lead of a batch, the enrolments its form ends (`exits`: form -> sequences).
/// `submitted`: (lead, form, real); a submission that is not real (quarantined) runs the same
/// statements for no sequence, so its answer takes as long as a real one's.
pub(super) async fn exit_on_forms(
    mut exec: Exec<'_>,
    exits: &BTreeMap<String, Vec<String>>,
    submitted: &[(&str, &str, bool)],
    now_ms: i64,
) -> Result<(), StoreError> {
    for (lead_id, form_id, real) in submitted {
        if let Some(sequences) = exits.get(*form_id) {
            let e = Exit {
                sequences: if *real {
                    sequences.clone()
                } else {
                    vec![String::new()]
                },
                reason: crate::sequences::reason::FORM,
                detail: Some(format!("submitted the '{form_id}' form")),
            };
            exit(&mut exec, lead_id, &e, false, now_ms).await?;
        }
    }
    Ok(())
}

impl LeadStore {
    /// What the worker checks right before sending a step of enrolment `id`.
    pub async fn enrolment_state(&self, id: &str) -> Result<Option<EnrolmentState>, StoreError> {
        let sql = Sql::fixed(
            "SELECT sequence_id, lead_id, status, exit_reason, enrolled_at FROM enrolments \
             WHERE id = $1",
        )
        .arg(id);
        let Some((sequence_id, lead_id, status, exit_reason, enrolled_at)): Option<(
            String,
            String,
            String,
            Option<String>,
            i64,
        )> = self.pools.reader().fetch_optional(&sql).await?
        else {
            return Ok(None);
        };
        let steps: Vec<(String,)> = self
            .pools
            .reader()
            .fetch_all(&Sql::fixed(ENROLMENT_STEPS).arg(id))
            .await?;
        let stage: Option<(String, i64, i64, i64)> = self
            .pools
            .reader()
            .fetch_optional(
                &Sql::fixed(
                    "SELECT stage, fit, engagement, score FROM lead_stages WHERE lead_id = $1",
                )
                .arg(lead_id.as_str()),
            )
            .await?;
        let open_handoff = self
            .pools
            .reader()
            .fetch_optional::<(String,)>(&super::qualification::open_handoff_sql(&lead_id).once())
            .await?
            .is_some();
        let subs: Vec<(String, i64, String)> = self
            .pools
            .reader()
            .fetch_all(
                &Sql::fixed(
                    "SELECT form_id, created_at, fields FROM submissions \
                     WHERE lead_id = $1 AND spam_reason IS NULL ORDER BY created_at, id",
                )
                .arg(lead_id.as_str()),
            )
            .await?;
        let mut fields = BTreeMap::new();
        let mut forms_since = HashSet::new();
        for (form, at, data) in subs {
            if at > enrolled_at {
                forms_since.insert(form);
            }
            if let Ok(map) =
                serde_json::from_str::<BTreeMap<String, crate::domain::FieldValue>>(&data)
            {
                for (k, v) in map {
                    fields.insert(k, v.as_text());
                }
            }
        }
        let replied = self
            .pools
            .reader()
            .fetch_optional::<(String,)>(
                &Sql::fixed(
                    "SELECT id FROM sequence_interactions WHERE lead_id = $1 \
                     AND enrolment_id = $2 AND kind = 'reply' LIMIT 1",
                )
                .arg(lead_id.as_str())
                .arg(id),
            )
            .await?
            .is_some();
        let (stage, fit, engagement, score) = match stage {
            Some((s, f, e, sc)) => (Some(s), f, e, sc),
            None => (None, 0, 0, 0),
        };
        Ok(Some(EnrolmentState {
            sequence_id,
            status,
            exit_reason,
            enrolled_at_ms: enrolled_at,
            steps: steps.into_iter().map(|(s,)| s).collect(),
            stage,
            fit,
            engagement,
            score,
            open_handoff,
            forms_since,
            replied,
            fields,
        }))
    }

    /// Records how a claimed step ended and schedules the next one (or finishes the
    /// enrolment), in one transaction, only while `owner` holds the step. False: the lease
    /// was lost and nothing was written.
    pub async fn end_step(
        &self,
        (message_id, owner): (&str, &str),
        end: &StepEnd,
        next: Option<&NextStep>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin().await?;
        let mut exec = tx.exec();
        let sql = match end {
            StepEnd::Sent => Sql::fixed(
                "UPDATE outbox SET status = 'sent', last_error = NULL, sent_at = $1, \
                   lease_until = NULL WHERE id = $2 AND lease_owner = $3",
            )
            .arg(now_ms)
            .arg(message_id)
            .arg(owner),
            StepEnd::Skipped(why) => Sql::fixed(
                "UPDATE outbox SET status = 'skipped', last_error = $1, lease_until = NULL \
                 WHERE id = $2 AND lease_owner = $3",
            )
            .arg(why.as_str())
            .arg(message_id)
            .arg(owner),
        };
        if exec.again().execute(&sql).await? != 1 {
            return Ok(false);
        }
        let row: Option<(String, String, String, String, String)> = exec
            .again()
            .fetch_optional(
                &Sql::fixed(
                    "SELECT o.enrolment_id, o.lead_id, o.submission_id, o.form_id, o.recipient \
                     FROM outbox o JOIN enrolments e ON e.id = o.enrolment_id \
                     WHERE o.id = $1 AND e.status = 'active'",
                )
                .arg(message_id),
            )
            .await?;
        if let Some((enrolment, lead, submission, form, recipient)) = row {
            match next {
                Some(n) => {
                    let max: Option<(i64,)> = exec
                        .again()
                        .fetch_optional(
                            &Sql::fixed("SELECT max_attempts FROM outbox WHERE id = $1")
                                .arg(message_id),
                        )
                        .await?;
                    let sql = step_row_sql(
                        (&enrolment, &n.step_id),
                        (&lead, &submission, &form, &recipient),
                        (n.due_at_ms, max.map_or(8, |(m,)| m), now_ms),
                    );
                    exec.again().execute(&sql).await?;
                }
                None => {
                    let sql = Sql::fixed(
                        "UPDATE enrolments SET status = 'finished', ended_at = $1 \
                         WHERE id = $2 AND status = 'active'",
                    )
                    .arg(now_ms)
                    .arg(enrolment.as_str());
                    exec.again().execute(&sql).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Puts a claimed step back until `at_ms` (its send window opens then), giving back the
    /// attempt it was claimed with.
    pub async fn postpone(&self, id: &str, owner: &str, at_ms: i64) -> Result<bool, StoreError> {
        let sql = Sql::fixed(
            "UPDATE outbox SET next_attempt_at = $1, lease_until = NULL, \
               attempts = attempts - 1 WHERE id = $2 AND lease_owner = $3",
        )
        .arg(at_ms)
        .arg(id)
        .arg(owner);
        Ok(self.pools.writer().execute(&sql).await? == 1)
    }

    /// Ends one enrolment for `reason` (the worker's check found an exit rule holding).
    pub async fn exit_enrolment(
        &self,
        enrolment_id: &str,
        reason: &'static str,
        detail: Option<String>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pools.begin().await?;
        let lead: Option<(String, String)> = tx
            .exec()
            .fetch_optional(
                &Sql::fixed("SELECT lead_id, sequence_id FROM enrolments WHERE id = $1")
                    .arg(enrolment_id),
            )
            .await?;
        let Some((lead, sequence)) = lead else {
            return Ok(0);
        };
        let e = Exit {
            sequences: vec![sequence],
            reason,
            detail,
        };
        let n = exit(&mut tx.exec(), &lead, &e, false, now_ms).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// A lead's enrolments, oldest first, and every step row they have.
    pub async fn lead_enrolments(
        &self,
        lead_id: &str,
    ) -> Result<(Vec<EnrolmentRecord>, Vec<StepRecord>), StoreError> {
        let enrolments = self
            .pools
            .reader()
            .fetch_all(
                &Sql::fixed(
                    "SELECT id, sequence_id, lead_id, submission_id, status, exit_reason, \
                       NULLIF(exit_detail, '') AS exit_detail, enrolled_at, ended_at \
                     FROM enrolments WHERE lead_id = $1 ORDER BY enrolled_at, id",
                )
                .arg(lead_id),
            )
            .await?;
        let steps = self
            .pools
            .reader()
            .fetch_all(&Sql::fixed(LEAD_STEPS).arg(lead_id))
            .await?;
        Ok((enrolments, steps))
    }

    /// Each of these sequences' counts: every statement reads one sequence's range of the
    /// `enrolments_sequence` index and probes the outbox and interactions by enrolment.
    pub async fn sequence_counts(
        &self,
        ids: &[&str],
    ) -> Result<BTreeMap<String, SequenceCounts>, StoreError> {
        let mut out: BTreeMap<String, SequenceCounts> = BTreeMap::new();
        for id in ids {
            let c = out.entry((*id).to_string()).or_default();
            let [enrolments, steps, interactions] = counts_sql(id);
            let rows: Vec<(String, Option<String>, i64)> =
                self.pools.reader().fetch_all(&enrolments).await?;
            for (status, reason, n) in rows {
                *c.enrolments.entry(status).or_default() += n;
                if let Some(reason) = reason {
                    *c.exits.entry(reason).or_default() += n;
                }
            }
            let rows: Vec<(String, String, i64)> = self.pools.reader().fetch_all(&steps).await?;
            for (step, status, n) in rows {
                *c.steps.entry(step).or_default().entry(status).or_default() += n;
            }
            let rows: Vec<(String, i64)> = self.pools.reader().fetch_all(&interactions).await?;
            for (kind, n) in rows {
                match kind.as_str() {
                    "click" => c.clicks += n,
                    "reply" => c.replies += n,
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Every enrolment of a sequence that is active or finished, with its step rows (for
    /// `inlet sequences plan`), `limit` at a time after `after` (an enrolment id).
    pub async fn sequence_enrolments(
        &self,
        sequence_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<EnrolmentSteps>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>)> = self
            .pools
            .reader()
            .fetch_all(
                &Sql::fixed(SEQUENCE_ENROLMENTS)
                    .arg(sequence_id)
                    .arg(after)
                    .arg(i64::from(limit)),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, lead_id, status, exit_reason) in rows {
            let steps: Vec<(String, String)> = self
                .pools
                .reader()
                .fetch_all(
                    &Sql::fixed(
                        "SELECT step_id, status FROM outbox WHERE enrolment_id = $1 \
                         ORDER BY created_at, id",
                    )
                    .arg(id.as_str()),
                )
                .await?;
            let waiting = steps
                .iter()
                .find(|(_, s)| s == "pending" || s == "failed")
                .map(|(id, _)| id.clone());
            out.push(EnrolmentSteps {
                id,
                lead_id,
                status,
                exit_reason,
                steps: steps.into_iter().map(|(s, _)| s).collect(),
                waiting,
            });
        }
        Ok(out)
    }

    /// Re-opens a finished enrolment with a step appended since (the sequence reaches leads
    /// who finished). False: it was not finished any more (another instance did it).
    pub async fn reopen_enrolment(
        &self,
        enrolment_id: &str,
        next: &NextStep,
        (max_attempts, now_ms): (i64, i64),
    ) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin().await?;
        let mut exec = tx.exec();
        let reopened = exec
            .again()
            .execute(
                &Sql::fixed(
                    "UPDATE enrolments SET status = 'active', ended_at = NULL \
                     WHERE id = $1 AND status = 'finished'",
                )
                .arg(enrolment_id),
            )
            .await?;
        if reopened != 1 {
            return Ok(false);
        }
        let row: Option<(String, String, String, String)> = exec
            .again()
            .fetch_optional(
                &Sql::fixed(
                    "SELECT e.lead_id, e.submission_id, s.form_id, l.email FROM enrolments e \
                     JOIN submissions s ON s.id = e.submission_id \
                     JOIN leads l ON l.id = e.lead_id WHERE e.id = $1",
                )
                .arg(enrolment_id),
            )
            .await?;
        let Some((lead, submission, form, email)) = row else {
            return Ok(false);
        };
        let sql = step_row_sql(
            (enrolment_id, &next.step_id),
            (&lead, &submission, &form, &email),
            (next.due_at_ms, max_attempts, now_ms),
        );
        exec.again().execute(&sql).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The step order each sequence last ran with.
    pub async fn sequence_definitions(&self) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let rows: Vec<(String, String)> = self
            .pools
            .reader()
            .fetch_all(&Sql::fixed(
                "SELECT sequence_id, steps FROM sequence_definitions",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, steps)| (id, serde_json::from_str(&steps).unwrap_or_default()))
            .collect())
    }

    /// Records the step order a sequence runs with from now on.
    pub async fn save_sequence_definition(
        &self,
        sequence_id: &str,
        steps: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = Sql::fixed(
            "INSERT INTO sequence_definitions (sequence_id, steps, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sequence_id) DO UPDATE SET steps = excluded.steps, \
               updated_at = excluded.updated_at",
        )
        .arg(sequence_id)
        .arg(serde_json::json!(steps).to_string())
        .arg(now_ms);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// The sequence message `id` (from a reply or click token), with its lead's address.
    pub async fn sequence_message(&self, id: &str) -> Result<Option<SequenceMessage>, StoreError> {
        let sql = Sql::fixed(SEQUENCE_MESSAGE).arg(id);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// Records a click or a reply once per message and (`external_id`), with its integration
    /// event, and for a reply ends the enrolment when `exit` says so, all in one transaction.
    /// False: already recorded.
    pub async fn record_interaction(
        &self,
        m: &SequenceMessage,
        (kind, external_id, detail): (&str, &str, Option<&str>),
        exit: Option<&Exit>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin().await?;
        let mut exec = tx.exec();
        let sql = Sql::fixed(
            "INSERT INTO sequence_interactions (id, kind, lead_id, enrolment_id, message_id, \
               step_id, external_id, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), $9) ON CONFLICT DO NOTHING",
        )
        .arg(Uuid::now_v7().to_string())
        .arg(kind)
        .arg(m.lead_id.as_str())
        .arg(m.enrolment_id.as_str())
        .arg(m.id.as_str())
        .arg(m.step_id.as_str())
        .arg(external_id)
        .arg(detail.unwrap_or(""))
        .arg(now_ms);
        if exec.again().execute(&sql).await? != 1 {
            return Ok(false);
        }
        if let Some(e) = exit {
            self::exit(&mut exec, &m.lead_id, e, false, now_ms).await?;
        }
        let event = super::NewEvent {
            kind: if kind == "reply" {
                "sequence.replied"
            } else {
                "sequence.clicked"
            },
            lead_id: m.lead_id.clone(),
            data: serde_json::json!({
                "sequence_id": m.sequence_id,
                "step_id": m.step_id,
                "message_id": m.id,
            }),
        };
        super::qualification::record_event(self, exec.again(), event, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A lead's clicks and replies, oldest first.
    pub async fn lead_interaction_records(
        &self,
        lead_id: &str,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        let sql = Sql::fixed(
            "SELECT kind, step_id, detail, created_at FROM sequence_interactions \
             WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .arg(lead_id);
        self.pools.reader().fetch_all(&sql).await
    }

    /// A lead's clicks and replies (scoring's activity): (kind, enrolling form, at, detail).
    pub async fn lead_interactions(
        &self,
        lead_id: &str,
    ) -> Result<Vec<(String, String, i64, Option<String>)>, StoreError> {
        let sql = Sql::fixed(
            "SELECT i.kind, s.form_id, i.created_at, i.detail FROM sequence_interactions i \
             JOIN enrolments e ON e.id = i.enrolment_id \
             JOIN submissions s ON s.id = e.submission_id WHERE i.lead_id = $1 \
             ORDER BY i.created_at, i.id",
        )
        .arg(lead_id);
        self.pools.reader().fetch_all(&sql).await
    }
}
