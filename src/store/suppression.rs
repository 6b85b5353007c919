//! The suppression list: hashed addresses that get no marketing mail.

use std::collections::HashSet;

use super::batch::Frame;
use super::ledger::{consent_insert, Actor, ConsentRow};
use super::pools::Exec;
use super::sql::{split, Sql};
use super::{LeadStore, StoreError};

/// Which of these address hashes are suppressed: primary-key lookups.
pub(super) fn suppression_lookup<'a>(hashes: impl IntoIterator<Item = &'a str>) -> Sql {
    let mut sql = Sql::new("SELECT email_hash FROM suppressions WHERE email_hash IN (".into());
    sql.bind_list(hashes);
    sql.push(")");
    sql.once()
}

impl LeadStore {
    /// Suppresses the lead's address and records the withdrawal in the ledger. `None`: no
    /// such lead; `Some(false)`: it was suppressed already.
    pub async fn unsubscribe(
        &self,
        lead_id: &str,
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.pools.begin().await?;
        let Some(email) = lead_email(tx.exec(), lead_id).await? else {
            return Ok(None);
        };
        let added = suppress(tx.exec(), &email, "unsubscribed", now_ms).await?;
        if added {
            let row = ConsentRow::by(actor, lead_id, "unsubscribe", now_ms);
            tx.conn()
                .write(None, &[consent_insert(&[row])], Frame::Plain)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(added))
    }

    /// Which of these suppression hashes are on the list.
    pub async fn suppressed_among(&self, hashes: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for chunk in split(hashes) {
            let sql = suppression_lookup(chunk.iter().map(String::as_str));
            let rows: Vec<(String,)> = self.pools.writer().fetch_all(&sql).await?;
            found.extend(rows.into_iter().map(|(hash,)| hash));
        }
        Ok(found)
    }
}

/// A lead's address, read inside the caller's transaction.
pub(super) async fn lead_email(
    exec: Exec<'_>,
    lead_id: &str,
) -> Result<Option<String>, StoreError> {
    let sql = Sql::fixed("SELECT email FROM leads WHERE id = $1").arg(lead_id);
    let row: Option<(String,)> = exec.fetch_optional(&sql).await?;
    Ok(row.map(|(email,)| email))
}

/// Puts an address on the suppression list (by hash) with its reason; false when it was on it
/// already (the first reason stays).
pub(super) async fn suppress(
    exec: Exec<'_>,
    email: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let sql = Sql::fixed(
        "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (email_hash) DO NOTHING",
    )
    .arg(crate::consent::suppression_hash(email))
    .arg(reason)
    .arg(now_ms);
    Ok(exec.execute(&sql).await? > 0)
}
