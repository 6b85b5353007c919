//! The console's people: accounts, server-side sessions and one-time sign-in links. Secrets
//! are never stored as given: sessions and links are kept as SHA-256 hashes of their tokens,
//! passwords as Argon2id hashes (made by `console`, not here).

use uuid::Uuid;

use super::sql::Sql;
use super::{LeadStore, StoreError};

/// A console account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "last_sign_in_at")]
    pub last_sign_in_at_ms: Option<i64>,
}

/// A live session with the account it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub csrf: String,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "last_seen_at")]
    pub last_seen_at_ms: i64,
    pub has_password: i64,
}

/// What following a one-time link led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// A sign-in link for this account (now used up).
    User(String),
    /// The set-up link (now used up): the first admin was created with this id.
    Setup(String),
    /// Unknown, used before, or expired.
    Invalid,
}

const USER_COLUMNS: &str = "id, email, role, password_hash, created_at, last_sign_in_at";

impl LeadStore {
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = self
            .pools
            .reader()
            .fetch_one(&Sql::fixed("SELECT COUNT(*) FROM users"))
            .await?;
        Ok(n)
    }

    /// Creates an account; `None` if the address has one already.
    pub async fn create_user(
        &self,
        email: &str,
        role: &str,
        now_ms: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "INSERT INTO users (id, email, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO NOTHING RETURNING {USER_COLUMNS}"
        ))
        .arg(Uuid::now_v7().to_string())
        .arg(email)
        .arg(role)
        .arg(now_ms);
        self.pools.writer().fetch_optional(&sql).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql =
            Sql::fixed(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1")).arg(email);
        self.pools.reader().fetch_optional(&sql).await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"
        ));
        self.pools.reader().fetch_all(&sql).await
    }

    /// Removes an account with its sessions and links; false if there was none.
    pub async fn remove_user(&self, email: &str) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed("SELECT id FROM users WHERE email = $1").arg(email);
        let Some((id,)): Option<(String,)> = tx.exec().fetch_optional(&sql).await? else {
            return Ok(false);
        };
        for table in ["console_sessions", "sign_in_links", "console_mail"] {
            let sql = Sql::fixed(format!("DELETE FROM {table} WHERE user_id = $1")).arg(&id);
            tx.exec().execute(&sql).await?;
        }
        tx.exec()
            .execute(&Sql::fixed("DELETE FROM users WHERE id = $1").arg(&id))
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets an account's password hash and ends its other sessions (a changed password signs
    /// out every other browser). `keep` is the session that changed it.
    pub async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        keep: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed("UPDATE users SET password_hash = $1 WHERE id = $2")
            .arg(hash)
            .arg(user_id);
        tx.exec().execute(&sql).await?;
        let sql = Sql::fixed("DELETE FROM console_sessions WHERE user_id = $1 AND id_hash <> $2")
            .arg(user_id)
            .arg(keep.unwrap_or(""));
        tx.exec().execute(&sql).await?;
        tx.commit().await
    }

    /// Stores a one-time sign-in link (`user_id` `None`: the set-up link).
    pub async fn create_sign_in_link(
        &self,
        token_hash: &str,
        user_id: Option<&str>,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = match user_id {
            Some(id) => Sql::fixed(
                "INSERT INTO sign_in_links (token_hash, user_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .arg(token_hash)
            .arg(id),
            None => Sql::fixed(
                "INSERT INTO sign_in_links (token_hash, user_id, created_at, expires_at) \
                 VALUES ($1, NULL, $2, $3)",
            )
            .arg(token_hash),
        }
        .arg(now_ms)
        .arg(expires_at_ms);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// Whether a link would work now (for the page that asks to confirm; nothing is used up).
    pub async fn sign_in_link_valid(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        let sql = Sql::fixed(
            "SELECT user_id FROM sign_in_links \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .arg(token_hash)
        .arg(now_ms);
        let row: Option<(Option<String>,)> = self.pools.reader().fetch_optional(&sql).await?;
        Ok(row.map(|(u,)| u))
    }

    /// Uses a sign-in link up (at most once, even with two requests at the same moment).
    /// The set-up link creates the first admin with `setup`'s `(email, password hash)`, and
    /// only while no account exists.
    pub async fn use_sign_in_link(
        &self,
        token_hash: &str,
        setup: Option<(&str, &str)>,
        now_ms: i64,
    ) -> Result<LinkUse, StoreError> {
        let mut tx = self.pools.begin().await?;
        let sql = Sql::fixed(
            "UPDATE sign_in_links SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
        )
        .arg(now_ms)
        .arg(token_hash);
        let used: Option<(Option<String>,)> = tx.exec().fetch_optional(&sql).await?;
        let outcome = match (used, setup) {
            (Some((Some(user),)), None) => LinkUse::User(user),
            (Some((None,)), Some((email, hash))) => {
                let (n,): (i64,) = tx
                    .exec()
                    .fetch_one(&Sql::fixed("SELECT COUNT(*) FROM users"))
                    .await?;
                if n > 0 {
                    return Ok(LinkUse::Invalid);
                }
                let id = Uuid::now_v7().to_string();
                let sql = Sql::fixed(
                    "INSERT INTO users (id, email, role, password_hash, created_at) \
                     VALUES ($1, $2, 'admin', $3, $4)",
                )
                .arg(id.as_str())
                .arg(email)
                .arg(hash)
                .arg(now_ms);
                tx.exec().execute(&sql).await?;
                LinkUse::Setup(id)
            }
            // A set-up link followed as a sign-in link (or the reverse) uses nothing up.
            _ => return Ok(LinkUse::Invalid),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Starts a session (and forgets sessions that have ended: idle since `idle_before` or
    /// started before `started_before`), recording the sign-in.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        csrf: &str,
        now_ms: i64,
        ended: (i64, i64),
    ) -> Result<(), StoreError> {
        let (idle_before, started_before) = ended;
        let mut tx = self.pools.begin().await?;
        let sql =
            Sql::fixed("DELETE FROM console_sessions WHERE last_seen_at < $1 OR created_at < $2")
                .arg(idle_before)
                .arg(started_before);
        tx.exec().execute(&sql).await?;
        let sql = Sql::fixed(
            "INSERT INTO console_sessions (id_hash, user_id, csrf, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .arg(id_hash)
        .arg(user_id)
        .arg(csrf)
        .arg(now_ms);
        tx.exec().execute(&sql).await?;
        let sql = Sql::fixed("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
            .arg(now_ms)
            .arg(user_id);
        tx.exec().execute(&sql).await?;
        tx.commit().await
    }

    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = Sql::fixed(
            "SELECT s.id_hash, s.user_id, u.email, u.role, s.csrf, s.created_at, \
               s.last_seen_at, CAST(CASE WHEN u.password_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_password \
             FROM console_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .arg(id_hash);
        self.pools.reader().fetch_optional(&sql).await
    }

    pub async fn touch_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        let sql = Sql::fixed("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .arg(now_ms)
            .arg(id_hash);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    pub async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let sql = Sql::fixed("DELETE FROM console_sessions WHERE id_hash = $1").arg(id_hash);
        self.pools.writer().execute(&sql).await.map(drop)
    }
}
