//! Mail to the console's people (a sign-in link asked for by email), queued in
//! `console_mail` the way the outbox queues mail to leads: claimed with a lease on the
//! database's clock, so one instance sends each; retried with backoff; given up after the
//! last attempt. Rows name the account only; the link is made at send time.

use uuid::Uuid;

use super::sql::Sql;
use super::{LeadStore, StoreError};

/// A claimed message: the account it goes to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsoleMail {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub attempts: i64,
    /// The account's address (none: the account was removed since).
    pub email: Option<String>,
}

/// What became of a claimed message.
#[derive(Debug, Clone)]
pub enum ConsoleMailOutcome {
    Sent,
    /// Try again at this time.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// No attempt left.
    Dead {
        error: String,
    },
    /// Nobody to send it to any more.
    Skipped,
}

impl LeadStore {
    /// Queues a sign-in link to the account, due now.
    pub async fn queue_sign_in_mail(&self, user_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let sql = Sql::fixed(
            "INSERT INTO console_mail (id, user_id, kind, status, next_attempt_at, created_at) \
             VALUES ($1, $2, 'sign_in_link', 'pending', $3, $3)",
        )
        .arg(Uuid::now_v7().to_string())
        .arg(user_id)
        .arg(now_ms);
        self.pools.writer().execute(&sql).await.map(drop)
    }

    /// Claims up to `limit` due messages for `owner` for `lease_ms` (by the database's clock).
    pub async fn claim_console_mail(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ConsoleMail>, StoreError> {
        let claim = super::outbox::claim_sql(
            self.dialect(),
            "console_mail",
            "('pending')",
            (now_ms, lease_ms, owner, limit),
        );
        let ids: Vec<(String,)> = self.pools.writer().fetch_all(&claim).await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for (id,) in ids {
            let sql = Sql::fixed(
                "SELECT m.id, m.user_id, m.kind, m.attempts, u.email \
                 FROM console_mail m LEFT JOIN users u ON u.id = m.user_id WHERE m.id = $1",
            )
            .arg(id.as_str());
            claimed.extend(
                self.pools
                    .writer()
                    .fetch_optional::<ConsoleMail>(&sql)
                    .await?,
            );
        }
        Ok(claimed)
    }

    /// Records what became of a message this owner holds.
    pub async fn finish_console_mail(
        &self,
        id: &str,
        owner: &str,
        outcome: &ConsoleMailOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = finish_sql("console_mail", id, owner, outcome, now_ms);
        self.pools.writer().execute(&sql).await.map(drop)
    }
}

/// Records what became of a message of a mail queue (`console_mail`, `staff_mail`) that
/// `owner` holds.
pub(super) fn finish_sql(
    table: &str,
    id: &str,
    owner: &str,
    outcome: &ConsoleMailOutcome,
    now_ms: i64,
) -> Sql {
    let sql = match outcome {
        ConsoleMailOutcome::Sent => Sql::fixed(format!(
            "UPDATE {table} SET status = 'sent', sent_at = $1, last_error = NULL, \
               lease_until = NULL WHERE id = $2 AND lease_owner = $3"
        ))
        .arg(now_ms),
        ConsoleMailOutcome::Retry { at_ms, error } => Sql::fixed(format!(
            "UPDATE {table} SET next_attempt_at = $1, last_error = $2, \
               lease_until = NULL WHERE id = $3 AND lease_owner = $4"
        ))
        .arg(*at_ms)
        .arg(error.as_str()),
        ConsoleMailOutcome::Dead { error } => Sql::fixed(format!(
            "UPDATE {table} SET status = 'dead', last_error = $1, lease_until = NULL \
             WHERE id = $2 AND lease_owner = $3"
        ))
        .arg(error.as_str()),
        ConsoleMailOutcome::Skipped => Sql::fixed(format!(
            "UPDATE {table} SET status = 'skipped', lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2"
        )),
    };
    sql.arg(id).arg(owner)
}
