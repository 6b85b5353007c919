//! The signing key generated when none is configured, shared by every instance on a database.

use super::sql::Sql;
use super::{LeadStore, StoreError};

impl LeadStore {
    /// The signing key generated for this database (created on first use, shared by every
    /// instance on it).
    pub async fn generated_signing_key(&self) -> Result<String, StoreError> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let sql = Sql::fixed(
            "INSERT INTO signing_keys (id, secret, created_at) VALUES ('generated', $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .arg(hex::encode(bytes))
        .arg(chrono::Utc::now().timestamp_millis());
        self.pools.writer().execute(&sql).await?;
        let sql = Sql::fixed("SELECT secret FROM signing_keys WHERE id = 'generated'");
        let (secret,): (String,) = self.pools.writer().fetch_one(&sql).await?;
        Ok(secret)
    }
}
