//! Quarantine: submissions held back on strong evidence of spam stay stored and visible, and
//! an operator can restore them (`inlet leads restore`, `POST /v1/admin/leads/{id}/restore`).

use super::sql::Sql;
use super::suppression::lead_email;
use super::{LeadStore, StoreError};

impl LeadStore {
    /// Takes every quarantined submission of a lead out of quarantine: it counts as a real
    /// submission from now on (listed, exported), keeps its spam signals and score, and records
    /// when it was restored. Nothing is sent: a restored lead is not mailed after the fact.
    /// Returns how many submissions were restored, or `None` for an unknown lead.
    pub async fn restore_lead(
        &self,
        lead_id: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pools.begin().await?;
        if lead_email(tx.exec(), lead_id).await?.is_none() {
            return Ok(None);
        }
        let sql = Sql::fixed(
            "UPDATE submissions SET spam_reason = NULL, restored_at = $1 \
             WHERE lead_id = $2 AND spam_reason IS NOT NULL",
        )
        .arg(now_ms)
        .arg(lead_id);
        let restored = tx.exec().execute(&sql).await?;
        tx.exec()
            .execute(&super::stats::dirty_days_of_lead(lead_id))
            .await?;
        let sql = Sql::fixed(
            "UPDATE leads SET real_submission_count = (SELECT COUNT(*) FROM submissions s \
               WHERE s.lead_id = leads.id AND s.spam_reason IS NULL), updated_at = $1 \
             WHERE id = $2",
        )
        .arg(now_ms)
        .arg(lead_id);
        tx.exec().execute(&sql).await?;
        tx.commit().await?;
        Ok(Some(restored))
    }

    /// How many submissions to `form_id` were quarantined at or after `since_ms` (told to the
    /// form's owners in their notifications), through `submissions_form_created`.
    pub async fn quarantined_since(&self, form_id: &str, since_ms: i64) -> Result<i64, StoreError> {
        let sql = Sql::fixed(
            "SELECT COUNT(*) FROM submissions \
             WHERE form_id = $1 AND created_at >= $2 AND spam_reason IS NOT NULL",
        )
        .arg(form_id)
        .arg(since_ms);
        let (n,): (i64,) = self.pools.reader().fetch_one(&sql).await?;
        Ok(n)
    }
}
