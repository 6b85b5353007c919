//! API keys: only a SHA-256 of each key's secret is kept, with its scopes and when it was
//! last used. Revoking marks a key; it is never deleted, so the list keeps the record.

use uuid::Uuid;

use super::sql::Sql;
use super::{LeadStore, StoreError};

/// A key as lists show it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created_by: String,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "last_used_at")]
    pub last_used_at_ms: Option<i64>,
    #[sqlx(rename = "revoked_at")]
    pub revoked_at_ms: Option<i64>,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at";

/// What a new key is stored with.
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a str,
    pub scopes: &'a str,
    pub created_by: &'a str,
}

impl LeadStore {
    pub async fn create_api_key(
        &self,
        key: &NewApiKey<'_>,
        now_ms: i64,
    ) -> Result<ApiKeyRecord, StoreError> {
        let sql = Sql::fixed(format!(
            "INSERT INTO api_keys (id, name, prefix, token_hash, scopes, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}"
        ))
        .arg(Uuid::now_v7().to_string())
        .arg(key.name)
        .arg(key.prefix)
        .arg(key.token_hash)
        .arg(key.scopes)
        .arg(key.created_by)
        .arg(now_ms);
        self.pools.writer().fetch_one(&sql).await
    }

    /// Every key, live ones first, newest first within each.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys \
             ORDER BY CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id DESC"
        ));
        self.pools.reader().fetch_all(&sql).await
    }

    /// The live (unrevoked) key with this secret's hash.
    pub async fn live_api_key(&self, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .arg(token_hash);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// Records a use (callers skip this when the last one is recent, to spare the writer).
    pub async fn touch_api_key(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let sql = Sql::fixed("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .arg(now_ms)
            .arg(id);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// Revokes the live key whose id or shown prefix is `which`; the key revoked, if any.
    /// A prefix that more than one live key shares revokes nothing (`Err` names how many).
    pub async fn revoke_api_key(
        &self,
        which: &str,
        now_ms: i64,
    ) -> Result<Result<Option<ApiKeyRecord>, usize>, StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed(
            "SELECT id FROM api_keys WHERE (id = $1 OR prefix = $1) AND revoked_at IS NULL",
        )
        .arg(which);
        let ids: Vec<(String,)> = tx.exec().fetch_all(&sql).await?;
        let id = match ids.as_slice() {
            [] => return Ok(Ok(None)),
            [(id,)] => id.clone(),
            more => return Ok(Err(more.len())),
        };
        let sql = Sql::fixed(format!(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 RETURNING {KEY_COLUMNS}"
        ))
        .arg(now_ms)
        .arg(id.as_str());
        let key: ApiKeyRecord = tx.exec().fetch_one(&sql).await?;
        tx.commit().await?;
        Ok(Ok(Some(key)))
    }
}
