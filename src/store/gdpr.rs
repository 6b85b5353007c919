//! GDPR access and erasure: everything held about one person, and its removal.

use serde_json::{json, Value};
use uuid::Uuid;

use super::retention::{delete_submissions, Doomed};
use super::suppression::{lead_email, suppress};
use super::{get, LeadStore, StoreError};

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
        let consents = sqlx::query(
            "SELECT id, submission_id, form_id, kind, field, text, text_version, client_ip, \
               user_agent, created_at FROM consents WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| -> Result<Value, StoreError> {
            Ok(json!({
                "id": get::<String>(r, 0)?, "submission_id": get::<Option<String>>(r, 1)?,
                "form_id": get::<Option<String>>(r, 2)?, "kind": get::<String>(r, 3)?,
                "field": get::<Option<String>>(r, 4)?, "text": get::<Option<String>>(r, 5)?,
                "text_version": get::<Option<String>>(r, 6)?,
                "client_ip": get::<Option<String>>(r, 7)?,
                "user_agent": get::<Option<String>>(r, 8)?, "created_at_ms": get::<i64>(r, 9)?,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
        let downloads = sqlx::query(
            "SELECT id, form_id, created_at, expires_at, download_count, last_download_at \
             FROM downloads WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| -> Result<Value, StoreError> {
            Ok(json!({
                "submission_id": get::<String>(r, 0)?, "form_id": get::<String>(r, 1)?,
                "created_at_ms": get::<i64>(r, 2)?, "expires_at_ms": get::<i64>(r, 3)?,
                "download_count": get::<i64>(r, 4)?,
                "last_download_at_ms": get::<Option<i64>>(r, 5)?,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
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
