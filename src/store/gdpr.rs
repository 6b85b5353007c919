//! GDPR access and erasure: everything held about one person, and its removal.

use serde_json::{json, Value};
use uuid::Uuid;

use super::retention::{delete_submissions, Doomed};
use super::sql::Sql;
use super::suppression::{lead_email, suppress};
use super::{LeadStore, StoreError};

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
        let sql = Sql::fixed("SELECT id FROM leads WHERE email = $1").arg(email);
        let row: Option<(String,)> = self.pools.reader().fetch_optional(&sql).await?;
        Ok(row.map(|(id,)| id))
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
        let sql = Sql::fixed(
            "SELECT id, submission_id, form_id, kind, field, text, text_version, client_ip, \
               user_agent, created_at AS created_at_ms \
             FROM consents WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .arg(lead_id);
        let consents: Vec<ConsentEntry> = self.pools.reader().fetch_all(&sql).await?;
        let sql = Sql::fixed(
            "SELECT id AS submission_id, form_id, created_at AS created_at_ms, \
               expires_at AS expires_at_ms, download_count, \
               last_download_at AS last_download_at_ms \
             FROM downloads WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .arg(lead_id);
        let downloads: Vec<DownloadEntry> = self.pools.reader().fetch_all(&sql).await?;
        let messages = self.lead_messages(lead_id).await?;
        let suppressed = !self
            .suppressed_among(&[self.suppression.hash(&email)])
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
        let mut tx = self.pools.begin().await?;
        let Some(email) = lead_email(tx.exec(), lead_id).await? else {
            return Ok(None);
        };
        let sql = Sql::fixed(
            "SELECT DISTINCT form_id FROM submissions WHERE lead_id = $1 ORDER BY form_id",
        )
        .arg(lead_id);
        let forms: Vec<(String,)> = tx.exec().fetch_all(&sql).await?;
        let forms: Vec<String> = forms.into_iter().map(|(f,)| f).collect();
        let (removed, _) =
            delete_submissions(&mut tx, self.dialect(), &Doomed::Lead(lead_id.into())).await?;
        suppress(tx.exec(), &self.suppression, &email, "erased", now_ms).await?;
        let sql = Sql::fixed(
            "INSERT INTO erasures (id, erased_at, submissions, forms) VALUES ($1, $2, $3, $4)",
        )
        .arg(Uuid::now_v7().to_string())
        .arg(now_ms)
        .arg(i64::try_from(removed).unwrap_or(i64::MAX))
        .arg(forms.join(","));
        tx.exec().execute(&sql).await?;
        tx.commit().await?;
        Ok(Some(removed))
    }
}
