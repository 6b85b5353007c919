//! The signing key generated when none is configured, shared by every instance on a database.

use super::{get, LeadStore, StoreError};

impl LeadStore {
    /// The signing key generated for this database (created on first use, shared by every
    /// instance on it).
    pub async fn generated_signing_key(&self) -> Result<String, StoreError> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        sqlx::query(
            "INSERT INTO signing_keys (id, secret, created_at) VALUES ('generated', $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(hex::encode(bytes))
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&self.writer)
        .await?;
        let row = sqlx::query("SELECT secret FROM signing_keys WHERE id = 'generated'")
            .fetch_one(&self.writer)
            .await?;
        get(&row, 0)
    }
}
