//! GDPR access and erasure: everything held about one person, and its removal.

use serde_json::Value;
use uuid::Uuid;

use super::retention::{delete_submissions, Doomed};
use super::sql::Sql;
use super::suppression::{lead_email, suppress};
use super::{LeadStore, StoreError};

/// A consent ledger entry as the access export shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ConsentEntry {
    pub id: String,
    pub submission_id: Option<String>,
    pub form_id: Option<String>,
    pub kind: String,
    pub field: Option<String>,
    pub text: Option<String>,
    pub text_version: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at_ms: i64,
}

/// A download link as the access export shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DownloadEntry {
    pub submission_id: String,
    pub form_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub download_count: i64,
    pub last_download_at_ms: Option<i64>,
}

/// The lead's own row, as the access export shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeadSummary {
    pub id: String,
    pub email: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub submission_count: i64,
}

/// The address's entry on the suppression list.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SuppressionEntry {
    /// `unsubscribed`, `bounced` or `erased`.
    pub reason: String,
    pub created_at_ms: i64,
}

impl LeadHistory {
    /// The lead's status, by the rule the lists use ([`LeadStatus::decide`]): from its newest
    /// real submission (the newest quarantined one if it has only those).
    pub fn status(&self) -> Option<crate::store::LeadStatus> {
        let latest = self
            .submissions
            .iter()
            .rev()
            .find(|s| !s.spam)
            .or_else(|| self.submissions.last())?;
        Some(crate::store::LeadStatus::decide(
            latest,
            self.suppression.as_ref().map(|s| s.reason.as_str()),
            self.submissions
                .iter()
                .any(|s| s.confirmation == "confirmed"),
        ))
    }
}

/// Everything held about one person (GDPR access; the console's lead page).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeadHistory {
    pub lead: LeadSummary,
    pub suppressed: bool,
    pub suppression: Option<SuppressionEntry>,
    pub submissions: Vec<crate::store::SubmissionRecord>,
    pub consents: Vec<ConsentEntry>,
    pub downloads: Vec<DownloadEntry>,
    pub messages: Vec<crate::store::OutboxRecord>,
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
        let Some(history) = self.lead_history(lead_id).await? else {
            return Ok(None);
        };
        let mut value =
            serde_json::to_value(history).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Nurture: enrolments, each step's delivery, and clicks and replies (a reply's text
        // is personal data too).
        let (enrolments, steps) = self.lead_enrolments(lead_id).await?;
        let interactions = self.lead_interaction_records(lead_id).await?;
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "sequences".into(),
                serde_json::json!({
                    "enrolments": enrolments,
                    "steps": steps,
                    "interactions": interactions,
                }),
            );
        }
        Ok(Some(value))
    }

    /// [`LeadStore::export_lead`], typed.
    pub async fn lead_history(&self, lead_id: &str) -> Result<Option<LeadHistory>, StoreError> {
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
        let sql = Sql::fixed(
            "SELECT reason, created_at AS created_at_ms FROM suppressions WHERE email_hash = $1",
        )
        .arg(self.suppression.hash(&email));
        let suppression: Option<SuppressionEntry> =
            self.pools.reader().fetch_optional(&sql).await?;
        Ok(Some(LeadHistory {
            lead: LeadSummary {
                id: lead_id.to_string(),
                email,
                created_at_ms: created,
                updated_at_ms: updated,
                submission_count: count,
            },
            suppressed: suppression.is_some(),
            suppression,
            submissions,
            consents,
            downloads,
            messages,
        }))
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
        // The lead's CRM records, so the CRMs can erase them too (the links go with the rest).
        let sql =
            Sql::fixed("SELECT crm, remote_id FROM crm_links WHERE lead_id = $1").arg(lead_id);
        let crm: Vec<(String, String)> = tx.exec().fetch_all(&sql).await?;
        let crm: serde_json::Map<String, Value> = crm
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let (removed, _) =
            delete_submissions(&mut tx, self.dialect(), &Doomed::Lead(lead_id.into())).await?;
        suppress(tx.exec(), &self.suppression, &email, "erased", now_ms).await?;
        // Receivers (a CRM) hear of it so they can erase too; the event names the id only.
        let event = super::NewEvent {
            kind: "lead.erased",
            lead_id: lead_id.to_string(),
            data: serde_json::json!({ "crm": crm }),
        };
        super::qualification::record_event(self, tx.exec(), event, now_ms).await?;
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
