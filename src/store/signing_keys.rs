//! Secrets generated when none is configured (the link-signing key, the suppression list's
//! key), kept in the database and so shared by every instance on it.

use super::pools::Pools;
use super::sql::Sql;
use super::{LeadStore, StoreError};

impl LeadStore {
    /// The signing key generated for this database (created on first use, shared by every
    /// instance on it).
    pub async fn generated_signing_key(&self) -> Result<String, StoreError> {
        generated_secret(&self.pools, "generated").await
    }
}

/// The secret stored under `id`, created (32 random bytes, hex) on first use. Two instances
/// starting at once agree: the first insert wins and both read it back.
pub(super) async fn generated_secret(pools: &Pools, id: &str) -> Result<String, StoreError> {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let sql = Sql::fixed(
        "INSERT INTO signing_keys (id, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .arg(id)
    .arg(hex::encode(bytes))
    .arg(chrono::Utc::now().timestamp_millis());
    pools.writer().execute(&sql).await?;
    let sql = Sql::fixed("SELECT secret FROM signing_keys WHERE id = $1").arg(id);
    let (secret,): (String,) = pools.writer().fetch_one(&sql).await?;
    Ok(secret)
}
