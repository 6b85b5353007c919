//! The suppression list: addresses that get no marketing mail, kept as keyed hashes
//! ([`SuppressionKey`]).
//!
//! The key comes from `privacy.suppression_key` or, when none is configured, is generated once
//! and kept in the database. Its fingerprint is recorded beside the list: a store opened with
//! a different key refuses to start rather than let the list silently stop matching. Entries
//! written before the list was keyed (plain SHA-256) are re-keyed the first time a key is
//! recorded.

use std::collections::HashSet;

use crate::consent::SuppressionKey;

use super::batch::Frame;
use super::ledger::{consent_insert, Actor, ConsentRow};
use super::pools::{Exec, Pools};
use super::signing_keys::generated_secret;
use super::sql::{split, Sql};
use super::{LeadStore, StoreError};

/// Where the key's fingerprint is recorded (`signing_keys.secret` holds the fingerprint, not
/// a secret).
const FINGERPRINT_ID: &str = "suppression-fingerprint";

/// The suppression list's key: the configured one or the database's own; checks it against
/// the recorded fingerprint, and re-keys legacy entries when none is recorded yet.
pub(super) async fn resolve_key(
    pools: &Pools,
    configured: Option<&[u8]>,
) -> Result<SuppressionKey, StoreError> {
    let key = match configured {
        Some(secret) => SuppressionKey::new(secret),
        None => SuppressionKey::new(generated_secret(pools, "suppression").await?.as_bytes()),
    };
    let fingerprint = key.fingerprint();
    let mut tx = pools.begin().await?;
    // The fingerprint goes in first: of two instances starting at once, one re-keys and the
    // other waits for it, then finds the fingerprint recorded.
    let sql = Sql::fixed(
        "INSERT INTO signing_keys (id, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .arg(FINGERPRINT_ID)
    .arg(fingerprint.as_str())
    .arg(chrono::Utc::now().timestamp_millis());
    if tx.exec().execute(&sql).await? == 0 {
        drop(tx);
        let sql = Sql::fixed("SELECT secret FROM signing_keys WHERE id = $1").arg(FINGERPRINT_ID);
        let (recorded,): (String,) = pools.writer().fetch_one(&sql).await?;
        return if recorded == fingerprint {
            Ok(key)
        } else {
            Err(StoreError::SuppressionKeyChanged {
                recorded,
                configured: fingerprint,
            })
        };
    }
    let legacy: Vec<(String,)> = tx
        .exec()
        .fetch_all(&Sql::fixed("SELECT email_hash FROM suppressions"))
        .await?;
    for (old,) in &legacy {
        let sql = Sql::fixed("UPDATE suppressions SET email_hash = $1 WHERE email_hash = $2")
            .arg(key.rekey(old))
            .arg(old.as_str());
        tx.exec().execute(&sql).await?;
    }
    tx.commit().await?;
    if !legacy.is_empty() {
        tracing::info!(entries = legacy.len(), "suppression list re-keyed");
    }
    Ok(key)
}

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
        self.suppress_lead(lead_id, ("unsubscribed", "unsubscribe"), now_ms, actor)
            .await
    }

    /// A hard bounce of mail to the lead: their address is suppressed (reason `bounced`) and
    /// the ledger says so. `Some(false)`: it was suppressed already.
    pub async fn record_bounce(
        &self,
        lead_id: &str,
        now_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        self.suppress_lead(lead_id, ("bounced", "bounce"), now_ms, &Actor::default())
            .await
    }

    /// The lead marked a mail as spam (a provider's complaint report): their address is
    /// suppressed (reason `complained`) and every sequence ends. `Some(false)`: suppressed
    /// already.
    pub async fn record_complaint(
        &self,
        lead_id: &str,
        now_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        self.suppress_lead(
            lead_id,
            ("complained", "complaint"),
            now_ms,
            &Actor::default(),
        )
        .await
    }

    /// Puts the lead's address on the list with `reason`, and a `ledger_kind` entry in the
    /// ledger, in one transaction.
    async fn suppress_lead(
        &self,
        lead_id: &str,
        (reason, ledger_kind): (&str, &'static str),
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.pools.begin().await?;
        let Some(email) = lead_email(tx.exec(), lead_id).await? else {
            return Ok(None);
        };
        let added = suppress(tx.exec(), &self.suppression, &email, reason, now_ms).await?;
        if added {
            let row = ConsentRow::by(actor, lead_id, ledger_kind, now_ms);
            tx.conn()
                .write(None, &[consent_insert(&[row])], Frame::Plain)
                .await?;
            let event = super::NewEvent {
                kind: "lead.unsubscribed",
                lead_id: lead_id.to_string(),
                data: serde_json::json!({ "reason": reason }),
            };
            super::qualification::record_event(self, tx.exec(), event, now_ms).await?;
        }
        // Nurture stops in the same transaction: no step is sent after this commits.
        let exit = super::Exit {
            sequences: Vec::new(),
            reason: match reason {
                "bounced" => crate::sequences::reason::BOUNCED,
                "complained" => crate::sequences::reason::COMPLAINED,
                _ => crate::sequences::reason::UNSUBSCRIBED,
            },
            detail: None,
        };
        super::sequences::exit(&mut tx.exec(), lead_id, &exit, true, now_ms).await?;
        tx.commit().await?;
        Ok(Some(added))
    }

    /// Why each of these address hashes is suppressed (absent: not suppressed).
    pub async fn suppression_reasons(
        &self,
        hashes: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut reasons = std::collections::HashMap::new();
        for chunk in split(hashes) {
            let mut sql = Sql::new(
                "SELECT email_hash, reason FROM suppressions WHERE email_hash IN (".into(),
            );
            sql.bind_list(chunk.iter().map(String::as_str));
            sql.push(")");
            let rows: Vec<(String, String)> = self.pools.reader().fetch_all(&sql.once()).await?;
            reasons.extend(rows);
        }
        Ok(reasons)
    }

    /// The secret unsubscribe links are signed with: derived from the suppression key, so it
    /// never rotates (see [`crate::consent::Signer`]).
    pub fn unsubscribe_link_secret(&self) -> [u8; 32] {
        self.suppression.derive("unsubscribe-links")
    }

    /// The key proof-of-work challenges are signed with: derived from the suppression key, so
    /// every instance on the database shares it.
    pub fn challenge_secret(&self) -> [u8; 32] {
        self.suppression.derive("pow-challenges")
    }

    /// The key of reply addresses and click redirects in sequence mail: derived from the
    /// suppression key, so every instance shares it and it never rotates.
    pub fn sequence_secret(&self) -> [u8; 32] {
        self.suppression.derive("sequence-mail")
    }

    /// The key shared limits hash account and recipient addresses with before they become
    /// Redis keys: derived from the suppression key, so every instance makes the same key
    /// and Redis never holds an address.
    pub fn limiter_secret(&self) -> [u8; 32] {
        self.suppression.derive("shared-limits")
    }

    /// The suppression list's entry for an address.
    pub fn suppression_hash(&self, email: &str) -> String {
        self.suppression.hash(email)
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
    key: &SuppressionKey,
    email: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let sql = Sql::fixed(
        "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (email_hash) DO NOTHING",
    )
    .arg(key.hash(email))
    .arg(reason)
    .arg(now_ms);
    Ok(exec.execute(&sql).await? > 0)
}
