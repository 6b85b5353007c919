//! Leases on jobs that must not run on two instances at once (retention, the report rollup,
//! applying sequence definitions at startup). A lease is one row per job; taking it is one
//! upsert that succeeds only when the row is free, expired, or already the caller's, so
//! instances never need to know about each other and a killed holder's lease just runs out.

use super::sql::Sql;
use super::{LeadStore, StoreError};

impl LeadStore {
    /// Takes (or renews) the lease on `job` for `owner` until `now_ms + ttl_ms`. `true`: the
    /// caller holds it and may run the job; `false`: another instance does.
    pub async fn take_lease(
        &self,
        job: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = Sql::fixed(
            "INSERT INTO job_leases (name, owner, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
             WHERE job_leases.until_ms <= $4 OR job_leases.owner = excluded.owner \
             RETURNING owner",
        )
        .arg(job)
        .arg(owner)
        .arg(now_ms.saturating_add(ttl_ms))
        .arg(now_ms);
        let taken: Option<(String,)> = self.pools.writer().fetch_optional(&sql).await?;
        Ok(taken.is_some())
    }

    /// Gives the lease on `job` back if `owner` holds it, so the next instance need not wait
    /// for it to expire.
    pub async fn release_lease(&self, job: &str, owner: &str) -> Result<(), StoreError> {
        let sql = Sql::fixed("DELETE FROM job_leases WHERE name = $1 AND owner = $2")
            .arg(job)
            .arg(owner);
        self.pools.writer().execute(&sql).await?;
        Ok(())
    }
}
