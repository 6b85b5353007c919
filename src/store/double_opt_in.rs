//! Double opt-in: a pending submission, and its confirmation (ledger entry, lifted
//! suppression, download link and queued messages in one transaction).

use super::batch::{self, Frame};
use super::ledger::{consent_insert, Actor, ConsentRow};
use super::outbox::{outbox_insert, OutboxRow};
use super::{get, LeadStore, StoreError};
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
        let mut conn = self.writer.acquire().await?;
        fetch_pending(&mut conn, submission_id).await
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
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT lead_id, form_id, email, confirmation, confirm_expires_at \
             FROM submissions WHERE id = $1",
        )
        .bind(submission_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ConfirmOutcome::NotFound);
        };
        let (lead_id, form_id, email, state, expires): (
            String,
            String,
            String,
            String,
            Option<i64>,
        ) = (
            get(&row, 0)?,
            get(&row, 1)?,
            get(&row, 2)?,
            get(&row, 3)?,
            get(&row, 4)?,
        );
        match state.as_str() {
            "confirmed" => return Ok(ConfirmOutcome::AlreadyConfirmed),
            "pending" if expires.is_some_and(|e| e <= now_ms) => {
                return Ok(ConfirmOutcome::Expired)
            }
            "pending" => {}
            _ => return Ok(ConfirmOutcome::NotFound),
        }
        let done = sqlx::query(
            "UPDATE submissions SET confirmation = 'confirmed', confirmed_at = $1 \
             WHERE id = $2 AND confirmation = 'pending'",
        )
        .bind(now_ms)
        .bind(submission_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(ConfirmOutcome::AlreadyConfirmed);
        }
        let mut ledger = vec![ConsentRow {
            submission_id: Some(submission_id),
            form_id: Some(&form_id),
            ..ConsentRow::by(actor, &lead_id, "double_opt_in", now_ms)
        }];
        let lifted = sqlx::query("DELETE FROM suppressions WHERE email_hash = $1")
            .bind(crate::consent::suppression_hash(&email))
            .execute(&mut *tx)
            .await?;
        if lifted.rows_affected() > 0 {
            ledger.push(ConsentRow {
                kind: "resubscribe",
                ..ledger[0]
            });
        }
        if let Some(until) = download_until_ms {
            sqlx::query(
                "INSERT INTO downloads (id, lead_id, form_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(submission_id)
            .bind(&lead_id)
            .bind(&form_id)
            .bind(now_ms)
            .bind(until)
            .execute(&mut *tx)
            .await?;
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
        batch::run(
            &mut tx,
            self.backend,
            &[consent_insert(&ledger), outbox_insert(rows)],
            Frame::Plain,
        )
        .await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Confirmed)
    }
}

async fn fetch_pending(
    conn: &mut sqlx::AnyConnection,
    submission_id: &str,
) -> Result<Option<PendingSubmission>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id AS submission_id, lead_id, form_id, email, confirmation AS state, \
           confirm_expires_at AS expires_at_ms \
         FROM submissions WHERE id = $1",
    )
    .bind(submission_id)
    .fetch_optional(conn)
    .await?)
}
