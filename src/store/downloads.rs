//! Signed downloads: one row per submission that earned one; counted, and re-sent from an
//! expired link to the lead (never to whoever clicked).

use super::batch::{Frame, Insert};
use super::outbox::{outbox_insert, OutboxRow};
use super::sql::Sql;
use super::{LeadStore, StoreError};
use crate::domain::NewOutboxMessage;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DownloadRecord {
    pub lead_id: String,
    pub form_id: String,
    pub expires_at_ms: i64,
    pub download_count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendOutcome {
    /// A fresh link is on its way.
    Queued,
    /// One was sent within the window already.
    TooSoon,
    NotFound,
}

pub(super) fn download_insert<'a>() -> Insert<'a> {
    Insert::new(
        "downloads",
        &["id", "lead_id", "form_id", "created_at", "expires_at"],
        "",
    )
}

impl LeadStore {
    pub async fn download(&self, id: &str) -> Result<Option<DownloadRecord>, StoreError> {
        let sql = Sql::fixed(
            "SELECT lead_id, form_id, expires_at AS expires_at_ms, download_count \
             FROM downloads WHERE id = $1",
        )
        .arg(id);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// Counts one download of `id` (its first use is activity: an integration event).
    pub async fn record_download(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed(
            "UPDATE downloads SET download_count = download_count + 1, last_download_at = $1, \
               first_download_at = COALESCE(first_download_at, $1) \
             WHERE id = $2 RETURNING lead_id, form_id, download_count",
        )
        .arg(now_ms)
        .arg(id);
        let row: Option<(String, String, i64)> = tx.exec().fetch_optional(&sql).await?;
        if let Some((lead_id, form_id, 1)) = row {
            let event = super::NewEvent {
                kind: "download.used",
                lead_id,
                data: serde_json::json!({ "submission_id": id, "form_id": form_id }),
            };
            super::qualification::record_event(self, tx.exec(), event, now_ms).await?;
        }
        tx.commit().await?;
        // A download used for the first time changes its day's report.
        self.pools
            .writer()
            .execute(&super::stats::dirty_day_of_submission(id))
            .await?;
        Ok(())
    }

    /// From an expired link: extends the download to `until_ms` and mails a fresh link to the
    /// lead (never to whoever clicked), at most once per `window_ms`.
    pub async fn resend_download(
        &self,
        id: &str,
        now_ms: i64,
        until_ms: i64,
        window_ms: i64,
        max_attempts: u32,
    ) -> Result<ResendOutcome, StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed(
            "SELECT d.lead_id, d.form_id, d.resent_at, l.email FROM downloads d \
             JOIN leads l ON l.id = d.lead_id WHERE d.id = $1",
        )
        .arg(id);
        let row: Option<(String, String, Option<i64>, String)> =
            tx.exec().fetch_optional(&sql).await?;
        let Some((lead_id, form_id, resent, email)) = row else {
            return Ok(ResendOutcome::NotFound);
        };
        if resent.is_some_and(|t| t > now_ms - window_ms) {
            return Ok(ResendOutcome::TooSoon);
        }
        let recipient = crate::domain::EmailAddress::parse(&email)
            .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?;
        let sql = Sql::fixed("UPDATE downloads SET expires_at = $1, resent_at = $2 WHERE id = $3")
            .arg(until_ms)
            .arg(now_ms)
            .arg(id);
        tx.exec().execute(&sql).await?;
        let message = NewOutboxMessage {
            kind: crate::domain::MessageKind::DownloadLink,
            recipient,
            max_attempts,
            dedupe_window_ms: None,
            held: None,
        };
        let row = outbox_insert(vec![OutboxRow {
            lead_id: &lead_id,
            submission_id: id,
            form_id: &form_id,
            message: &message,
            now_ms,
            skipped: None,
        }]);
        tx.conn().write(None, &[row], Frame::Plain).await?;
        tx.commit().await?;
        Ok(ResendOutcome::Queued)
    }
}
