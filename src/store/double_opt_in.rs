//! Double opt-in: a pending submission, and its confirmation (ledger entry, lifted
//! suppression, download link and queued messages in one transaction).

use super::batch::Frame;
use super::ledger::{consent_insert, Actor, ConsentRow};
use super::outbox::{outbox_insert, OutboxRow};
use super::sql::Sql;
use super::{LeadStore, StoreError};
use crate::domain::NewOutboxMessage;

/// A double opt-in submission as a confirmation link finds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingSubmission {
    pub submission_id: String,
    pub lead_id: String,
    pub form_id: String,
    pub email: String,
    /// `pending`, `confirmed` (or `none`: not a double opt-in submission).
    pub state: String,
    pub expires_at_ms: Option<i64>,
}

/// What following a confirmation link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed,
    /// The link was used before: nothing happens twice.
    AlreadyConfirmed,
    Expired,
    NotFound,
}

impl LeadStore {
    pub async fn pending_submission(
        &self,
        submission_id: &str,
    ) -> Result<Option<PendingSubmission>, StoreError> {
        let sql = Sql::fixed(
            "SELECT id AS submission_id, lead_id, form_id, email, confirmation AS state, \
               confirm_expires_at AS expires_at_ms \
             FROM submissions WHERE id = $1",
        )
        .arg(submission_id);
        // From the writer: a confirmation that just committed is seen at once.
        self.pools.writer().fetch_optional(&sql).await
    }

    /// Confirms a pending submission: records the confirmation in the ledger, lifts a
    /// suppression (confirming is an explicit opt-in again), creates the download link and
    /// queues `messages`, all in one transaction. Idempotent: a second call changes nothing.
    pub async fn confirm(
        &self,
        submission_id: &str,
        now_ms: i64,
        actor: &Actor,
        messages: &[NewOutboxMessage],
        download_until_ms: Option<i64>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed(
            "SELECT lead_id, form_id, email, confirmation, confirm_expires_at \
             FROM submissions WHERE id = $1",
        )
        .arg(submission_id);
        let row: Option<(String, String, String, String, Option<i64>)> =
            tx.exec().fetch_optional(&sql).await?;
        let Some((lead_id, form_id, email, state, expires)) = row else {
            return Ok(ConfirmOutcome::NotFound);
        };
        match state.as_str() {
            "confirmed" => return Ok(ConfirmOutcome::AlreadyConfirmed),
            "pending" if expires.is_some_and(|e| e <= now_ms) => {
                return Ok(ConfirmOutcome::Expired)
            }
            "pending" => {}
            _ => return Ok(ConfirmOutcome::NotFound),
        }
        let sql = Sql::fixed(
            "UPDATE submissions SET confirmation = 'confirmed', confirmed_at = $1 \
             WHERE id = $2 AND confirmation = 'pending'",
        )
        .arg(now_ms)
        .arg(submission_id);
        if tx.exec().execute(&sql).await? != 1 {
            return Ok(ConfirmOutcome::AlreadyConfirmed);
        }
        tx.exec()
            .execute(&super::stats::dirty_day_of_submission(submission_id))
            .await?;
        let mut ledger = vec![ConsentRow {
            submission_id: Some(submission_id),
            form_id: Some(&form_id),
            ..ConsentRow::by(actor, &lead_id, "double_opt_in", now_ms)
        }];
        let sql = Sql::fixed("DELETE FROM suppressions WHERE email_hash = $1")
            .arg(self.suppression.hash(&email));
        if tx.exec().execute(&sql).await? > 0 {
            ledger.push(ConsentRow {
                kind: "resubscribe",
                ..ledger[0]
            });
        }
        if let Some(until) = download_until_ms {
            let sql = Sql::fixed(
                "INSERT INTO downloads (id, lead_id, form_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .arg(submission_id)
            .arg(&lead_id)
            .arg(&form_id)
            .arg(now_ms)
            .arg(until);
            tx.exec().execute(&sql).await?;
        }
        let rows: Vec<OutboxRow<'_>> = messages
            .iter()
            .map(|m| OutboxRow {
                lead_id: &lead_id,
                submission_id,
                form_id: &form_id,
                message: m,
                now_ms,
                skipped: None,
            })
            .collect();
        tx.conn()
            .write(
                None,
                &[consent_insert(&ledger), outbox_insert(rows)],
                Frame::Plain,
            )
            .await?;
        let event = super::NewEvent {
            kind: "lead.confirmed",
            lead_id: lead_id.clone(),
            data: serde_json::json!({ "submission_id": submission_id, "form_id": form_id }),
        };
        super::qualification::record_event(self, tx.exec(), event, now_ms).await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Confirmed)
    }
}
