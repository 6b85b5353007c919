//! GDPR access and erasure: everything held about one person, and its removal.

use serde_json::{json, Value};
use uuid::Uuid;

use super::retention::{delete_submissions, Doomed};
use super::suppression::{lead_email, suppress};
use super::{get, LeadStore, StoreError};

/// A consent ledger entry as the access export shows it.
#[derive(serde::Serialize, sqlx::FromRow)]
struct ConsentEntry {
    id: String,
    submission_id: Option<String>,
    form_id: Option<String>,
    kind: String,
    field: Option<String>,
    text: Option<String>,
    text_version: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    created_at_ms: i64,
}

/// A download link as the access export shows it.
#[derive(serde::Serialize, sqlx::FromRow)]
struct DownloadEntry {
    submission_id: String,
    form_id: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    download_count: i64,
    last_download_at_ms: Option<i64>,
}

impl LeadStore {
    pub async fn lead_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT id FROM leads WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| get(&r, 0)).transpose()
    }

    /// Everything held about one person (GDPR access): the lead, every submission (spam
    /// included), the consent ledger, messages, downloads and suppression status.
    pub async fn export_lead(&self, lead_id: &str) -> Result<Option<Value>, StoreError> {
        let Some((email, created, updated, count)) = self.get_lead(lead_id).await? else {
            return Ok(None);
        };
        let submissions = self
            .list_submissions(&crate::store::SubmissionQuery {
                lead_id: Some(lead_id.to_string()),
                limit: u32::MAX - 1,
                ..Default::default()
            })
            .await?
            .items;
        let consents: Vec<ConsentEntry> = sqlx::query_as(
            "SELECT id, submission_id, form_id, kind, field, text, text_version, client_ip, \
               user_agent, created_at AS created_at_ms \
             FROM consents WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&self.reader)
        .await?;
        let downloads: Vec<DownloadEntry> = sqlx::query_as(
            "SELECT id AS submission_id, form_id, created_at AS created_at_ms, \
               expires_at AS expires_at_ms, download_count, \
               last_download_at AS last_download_at_ms \
             FROM downloads WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&self.reader)
        .await?;
        let messages = self.lead_messages(lead_id).await?;
        let suppressed = !self
            .suppressed_among(&[crate::consent::suppression_hash(&email)])
            .await?
            .is_empty();
        Ok(Some(json!({
            "lead": { "id": lead_id, "email": email, "created_at_ms": created,
                      "updated_at_ms": updated, "submission_count": count },
            "suppressed": suppressed,
            "submissions": submissions,
            "consents": consents,
            "downloads": downloads,
            "messages": messages,
        })))
    }

    /// Erases a person (GDPR): every submission, message, download and ledger entry, and the
    /// lead itself. What stays: the address's suppression hash (so it is never mailed again)
    /// and an anonymous count. Returns the number of submissions removed, or `None`.
    pub async fn erase_lead(&self, lead_id: &str, now_ms: i64) -> Result<Option<u64>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let Some(email) = lead_email(&mut tx, lead_id).await? else {
            return Ok(None);
        };
        let forms: Vec<String> = sqlx::query(
            "SELECT DISTINCT form_id FROM submissions WHERE lead_id = $1 ORDER BY form_id",
        )
        .bind(lead_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<_, _>>()?;
        let (removed, _) =
            delete_submissions(&mut tx, self.backend, &Doomed::Lead(lead_id.into())).await?;
        suppress(&mut tx, &email, "erased", now_ms).await?;
        sqlx::query(
            "INSERT INTO erasures (id, erased_at, submissions, forms) VALUES ($1, $2, $3, $4)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(now_ms)
        .bind(i64::try_from(removed).unwrap_or(i64::MAX))
        .bind(forms.join(","))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(removed))
    }
}
