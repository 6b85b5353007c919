//! The search keys' index, kept off the request path: each submission carries its name and
//! company keys (written with it), and a background job copies them into `search_keys` in
//! sorted batches. Submissions newer than `search_progress.indexed_to` are searched directly.

use super::sql::Sql;
use super::{LeadStore, StoreError};

/// Submissions are indexed once this old: a batch stamped at its request commits within
/// milliseconds, so a minute is far on the safe side (one stamped earlier but committed after
/// the job passed its time would never be indexed).
pub const SEARCH_SETTLE_MS: i64 = 60_000;
/// The most submission time one batch covers (a catch-up after downtime goes a day at a time).
const CHUNK_MS: i64 = 86_400_000;

impl LeadStore {
    /// Indexes the next settled stretch of submissions (at most a day of them) and moves the
    /// progress mark past it; false when it was caught up already.
    pub async fn index_search_keys(&self, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin().await?;
        let (mark,): (i64,) = tx
            .exec()
            .fetch_one(&Sql::fixed(
                "SELECT indexed_to FROM search_progress WHERE id = 1",
            ))
            .await?;
        let settled = now_ms - SEARCH_SETTLE_MS;
        // Straight to the next submission there is (a fresh database, a quiet week).
        let sql =
            Sql::fixed("SELECT MIN(created_at) FROM submissions WHERE created_at >= $1").arg(mark);
        let (next,): (Option<i64>,) = tx.exec().fetch_one(&sql).await?;
        let from = next.unwrap_or(settled).max(mark);
        let to = settled.min(from.saturating_add(CHUNK_MS));
        if to <= mark {
            return Ok(false);
        }
        for sql in index_range(from, to) {
            tx.exec().execute(&sql).await?;
        }
        let sql = Sql::fixed("UPDATE search_progress SET indexed_to = $1 WHERE id = 1").arg(to);
        // (`from..to` may be empty: then only the mark moves, past a stretch with nothing in it.)
        tx.exec().execute(&sql).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Indexes the submissions created in `[from, to)` whatever the progress mark says (a
    /// seeded history, written in the past).
    pub(super) async fn index_search_range(&self, from: i64, to: i64) -> Result<(), StoreError> {
        for sql in index_range(from, to) {
            self.pools.writer().execute(&sql).await?;
        }
        Ok(())
    }
}

/// The two statements that copy a time range's keys (through the submissions' time index).
fn index_range(from: i64, to: i64) -> [Sql; 2] {
    ["name_key", "company_key"].map(|column| {
        Sql::fixed(format!(
            "INSERT INTO search_keys (key, submission_id, lead_id) \
             SELECT {column}, id, lead_id FROM submissions \
             WHERE created_at >= $1 AND created_at < $2 AND {column} IS NOT NULL \
             ORDER BY {column} \
             ON CONFLICT DO NOTHING"
        ))
        .arg(from)
        .arg(to)
    })
}
