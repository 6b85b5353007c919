//! What an import adds beside the submissions it writes through the ordinary write path:
//! which addresses are leads already, and each imported person's consent state (a ledger entry
//! saying where it came from, and the suppression list for people who unsubscribed or
//! bounced elsewhere).

use std::collections::HashSet;

use super::batch::Frame;
use super::ledger::{consent_insert, ConsentRow};
use super::sql::{split, Sql};
use super::suppression::suppress;
use super::{LeadStore, StoreError};

/// A person's consent as the imported file states it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ImportedState {
    /// Agreed to be mailed (e.g. a subscribed Mailchimp member).
    Subscribed,
    /// Not known to have agreed: stored, never mailed.
    Pending,
    /// Unsubscribed elsewhere: suppressed here too.
    Unsubscribed,
    /// The address bounced elsewhere (Mailchimp's "cleaned"): suppressed.
    Bounced,
}

impl ImportedState {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportedState::Subscribed => "subscribed",
            ImportedState::Pending => "pending",
            ImportedState::Unsubscribed => "unsubscribed",
            ImportedState::Bounced => "bounced",
        }
    }
}

/// One imported person's consent entry.
pub struct ImportedConsent<'a> {
    pub lead_id: &'a str,
    pub submission_id: &'a str,
    pub form_id: &'a str,
    pub email: &'a str,
    pub state: ImportedState,
    /// Where it came from, in words (the ledger keeps it), e.g. "subscribed in a Mailchimp
    /// export (audience.csv), opted in 2024-03-01".
    pub note: &'a str,
}

impl LeadStore {
    /// Which of these (normalised) addresses are leads already.
    pub async fn existing_lead_emails(
        &self,
        emails: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for chunk in split(emails) {
            let mut sql = Sql::new("SELECT email FROM leads WHERE email IN (".into());
            sql.bind_list(chunk.iter().map(String::as_str));
            sql.push(")");
            let rows: Vec<(String,)> = self.pools.reader().fetch_all(&sql.once()).await?;
            found.extend(rows.into_iter().map(|(e,)| e));
        }
        Ok(found)
    }

    /// Refreshes the planner's statistics of the tables a bulk load grows (see
    /// `Dialect::refresh_stats`).
    pub async fn refresh_planner_stats(&self) -> Result<(), StoreError> {
        match self.dialect().refresh_stats {
            "" => Ok(()),
            sql => self.pools.writer().raw(sql).await,
        }
    }

    /// Records each imported person's consent state in one transaction: a ledger entry of
    /// kind `import` (subscribed or pending), or the address suppressed with an `unsubscribe`
    /// or `bounce` entry. Nothing here removes a suppression: a person who unsubscribed from
    /// Inlet stays unsubscribed whatever a file says.
    pub async fn record_imported_consent(
        &self,
        entries: &[ImportedConsent<'_>],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pools.begin().await?;
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let kind = match e.state {
                ImportedState::Subscribed | ImportedState::Pending => "import",
                ImportedState::Unsubscribed => {
                    suppress(
                        tx.exec(),
                        &self.suppression,
                        e.email,
                        "unsubscribed",
                        now_ms,
                    )
                    .await?;
                    "unsubscribe"
                }
                ImportedState::Bounced => {
                    suppress(tx.exec(), &self.suppression, e.email, "bounced", now_ms).await?;
                    "bounce"
                }
            };
            rows.push(ConsentRow {
                lead_id: e.lead_id,
                submission_id: Some(e.submission_id),
                form_id: Some(e.form_id),
                kind,
                field: None,
                text: Some(e.note),
                version: Some(e.state.as_str()),
                client_ip: None,
                user_agent: None,
                at_ms: now_ms,
            });
        }
        for chunk in rows.chunks(200) {
            tx.conn()
                .write(None, &[consent_insert(chunk)], Frame::Plain)
                .await?;
        }
        tx.commit().await
    }
}
