//! The suppression list: hashed addresses that get no marketing mail.

use std::collections::HashSet;

use sqlx::AnyConnection;

use super::batch::{self, Frame};
use super::ledger::{consent_insert, Actor, ConsentRow};
use super::sql::{split, Sql};
use super::{get, LeadStore, StoreError};

/// Which of these address hashes are suppressed: primary-key lookups.
pub(super) fn suppression_lookup<'a>(hashes: impl IntoIterator<Item = &'a str>) -> Sql {
    let mut sql = Sql::new("SELECT email_hash FROM suppressions WHERE email_hash IN (".into());
    sql.bind_list(hashes);
    sql.push(")");
    sql
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
        let mut tx = self.writer.begin().await?;
        let Some(email) = lead_email(&mut tx, lead_id).await? else {
            return Ok(None);
        };
        let added = suppress(&mut tx, &email, "unsubscribed", now_ms).await?;
        if added {
            let row = ConsentRow::by(actor, lead_id, "unsubscribe", now_ms);
            batch::run(
                &mut tx,
                self.backend,
                &[consent_insert(&[row])],
                Frame::Plain,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(added))
    }

    /// Which of these suppression hashes are on the list.
    pub async fn suppressed_among(&self, hashes: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for chunk in split(hashes) {
            for r in suppression_lookup(chunk.iter().map(String::as_str))
                .query()
                .persistent(false)
                .fetch_all(&self.writer)
                .await?
            {
                found.insert(get(&r, 0)?);
            }
        }
        Ok(found)
    }
}

/// A lead's address, read inside the caller's transaction.
pub(super) async fn lead_email(
    conn: &mut AnyConnection,
    lead_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT email FROM leads WHERE id = $1")
        .bind(lead_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| get(&r, 0)).transpose()
}

/// Puts an address on the suppression list (by hash) with its reason; false when it was on it
/// already (the first reason stays).
pub(super) async fn suppress(
    conn: &mut AnyConnection,
    email: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let added = sqlx::query(
        "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (email_hash) DO NOTHING",
    )
    .bind(crate::consent::suppression_hash(email))
    .bind(reason)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(added > 0)
}
