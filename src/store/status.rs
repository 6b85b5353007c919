//! What a lead's consent state is, for exports and the admin API: a marketer who imports an
//! export must be able to tell who may be mailed.

use std::collections::{HashMap, HashSet};

use super::sql::{split, Sql};
use super::{LeadRecord, LeadStore, StoreError};

/// A lead's state, from its submissions and the suppression list.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LeadStatus {
    /// Signed up on a form without double opt-in, and not suppressed.
    Active,
    /// Only unconfirmed double opt-in sign-ups: do not mail.
    Pending,
    /// Confirmed a double opt-in at least once, and not suppressed.
    Confirmed,
    /// Unsubscribed: do not mail.
    Unsubscribed,
    /// Mail to the address bounced (no such mailbox): do not mail.
    Bounced,
    /// Erased before (GDPR) and submitted again since: the address stays suppressed.
    Erased,
    /// Every submission was quarantined as spam (strong evidence): not mailed, not exported
    /// unless asked for, restorable (`inlet leads restore`).
    Quarantined,
}

impl LeadStatus {
    /// The rule: quarantined if the newest submission is (every one is); then the
    /// suppression list's reason; then confirmed if any submission was; pending if the newest
    /// waits for confirmation; else active.
    pub fn decide(
        latest: &crate::store::SubmissionRecord,
        suppression_reason: Option<&str>,
        ever_confirmed: bool,
    ) -> LeadStatus {
        match suppression_reason {
            _ if latest.spam => LeadStatus::Quarantined,
            Some("bounced") => LeadStatus::Bounced,
            Some("erased") => LeadStatus::Erased,
            Some(_) => LeadStatus::Unsubscribed,
            None if ever_confirmed => LeadStatus::Confirmed,
            None if latest.confirmation == "pending" => LeadStatus::Pending,
            None => LeadStatus::Active,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Active => "active",
            LeadStatus::Pending => "pending",
            LeadStatus::Confirmed => "confirmed",
            LeadStatus::Unsubscribed => "unsubscribed",
            LeadStatus::Bounced => "bounced",
            LeadStatus::Erased => "erased",
            LeadStatus::Quarantined => "quarantined",
        }
    }
}

impl LeadStore {
    /// Each lead's status (two indexed lookups per page, however long the page).
    pub async fn lead_statuses(
        &self,
        leads: &[LeadRecord],
    ) -> Result<HashMap<String, LeadStatus>, StoreError> {
        let hashes: Vec<String> = leads
            .iter()
            .map(|l| self.suppression_hash(&l.email))
            .collect();
        let reasons = self.suppression_reasons(&hashes).await?;
        let ids: Vec<String> = leads.iter().map(|l| l.id.clone()).collect();
        let mut confirmed: HashSet<String> = HashSet::new();
        for chunk in split(&ids) {
            let mut sql = Sql::new(
                "SELECT DISTINCT lead_id FROM submissions \
                 WHERE confirmation = 'confirmed' AND lead_id IN ("
                    .into(),
            );
            sql.bind_list(chunk.iter().map(String::as_str));
            sql.push(")");
            let rows: Vec<(String,)> = self.pools.reader().fetch_all(&sql.once()).await?;
            confirmed.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(leads
            .iter()
            .zip(&hashes)
            .map(|(lead, hash)| {
                let status = LeadStatus::decide(
                    &lead.latest_submission,
                    reasons.get(hash).map(String::as_str),
                    confirmed.contains(&lead.id),
                );
                (lead.id.clone(), status)
            })
            .collect())
    }
}
