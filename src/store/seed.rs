//! Synthetic history for benchmarks and query-plan tests: leads, their submissions (each with an
//! idempotency key and attribution, as the embed script sends them) and a sent follow-up each,
//! generated inside the database in chunks (`generate_series` on PostgreSQL, a recursive CTE
//! on SQLite), so a million rows take seconds to minutes instead of hours over HTTP.
//!
//! Every seeded row is recognisable: lead emails end in `@seed.invalid` (a reserved domain no
//! mail can reach) and ids carry `5eed` in their second group.

use super::sql::Sql;
use super::{LeadStore, StoreError};

/// Rows per transaction.
const CHUNK: u64 = 50_000;

/// One year, spread over the seeded rows' creation times.
const SPAN_MS: i64 = 365 * 24 * 3600 * 1000;

impl LeadStore {
    /// Adds `count` synthetic leads, each with one submission of `form_id` and one sent
    /// follow-up, created over the year before `now_ms`. `progress` is called after each chunk
    /// with the number of leads written so far. Refreshes the planner's statistics at the end
    /// (PostgreSQL: and vacuums).
    pub async fn seed_history(
        &self,
        count: u64,
        form_id: &str,
        now_ms: i64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        // A tag per run keeps ids and emails of two runs apart.
        let tag = format!("{:08x}", (now_ms / 1000) & 0xffff_ffff);
        let step = (SPAN_MS / i64::try_from(count.max(1)).unwrap_or(i64::MAX)).max(1);
        let start = now_ms - SPAN_MS;
        // Stored IPs only where the retention job (default `retention.ip_days`) would have left
        // them: the steady state of a database that has been running.
        let ip_days = i64::from(crate::config::RetentionSettings::default().ip_days);
        let ips_since = now_ms - ip_days * 24 * 3600 * 1000;
        let mut done = 0u64;
        while done < count {
            let n = CHUNK.min(count - done);
            let first = i64::try_from(done).unwrap_or(i64::MAX);
            let last = i64::try_from(done + n - 1).unwrap_or(i64::MAX);
            let mut tx = self.pools.begin().await?;
            for text in self.dialect().seed {
                let sql = Sql::fixed(text)
                    .arg(first)
                    .arg(last)
                    .arg(tag.as_str())
                    .arg(start)
                    .arg(step)
                    .arg(form_id)
                    .arg(ips_since);
                tx.exec().execute(&sql).await?;
            }
            tx.commit().await?;
            done += n;
            progress(done);
        }
        self.pools.writer().raw(self.dialect().analyze).await?;
        Ok(())
    }
}
