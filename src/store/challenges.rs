//! Proof-of-work challenges already spent: each may buy one submission.

use super::sql::Sql;
use super::{LeadStore, StoreError};

impl LeadStore {
    /// Spends `challenge` (valid until `expires_at_ms`); false if it was spent before. Spent
    /// challenges that have expired are dropped on the way (they could not verify anyway).
    pub async fn spend_challenge(
        &self,
        challenge: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = Sql::fixed("DELETE FROM challenge_uses WHERE expires_at < $1").arg(now_ms);
        self.pools.writer().execute(&sql).await?;
        let sql = Sql::fixed(
            "INSERT INTO challenge_uses (challenge, expires_at) VALUES ($1, $2) \
             ON CONFLICT (challenge) DO NOTHING",
        )
        .arg(challenge)
        .arg(expires_at_ms);
        Ok(self.pools.writer().execute(&sql).await? == 1)
    }
}
