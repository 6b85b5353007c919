//! What differs between the engines' SQL and write paths, as plain data each engine declares
//! (`Engine::DIALECT`).

use super::Backend;

/// Where an engine's SQL and write path differ, as plain data.
#[derive(Debug)]
pub(super) struct Dialect {
    pub backend: Backend,
    /// Placeholders bind by position as anonymous `?` (SQLite: binding `$n` is a lookup by
    /// name per parameter, which turns a multi-row statement's binding quadratic).
    pub anonymous_placeholders: bool,
    /// Appended to the outbox claim's inner `SELECT` (`FOR UPDATE SKIP LOCKED`).
    pub claim_lock: &'static str,
    /// The database server's clock in Unix milliseconds, as an SQL expression. Leases compare
    /// this clock, which every instance shares, never an application's own.
    pub now_ms: &'static str,
    /// The idempotency lookup rides inside the write transaction, under its lock (one
    /// writer), instead of running before it.
    pub probe_in_transaction: bool,
    /// People who are new are written by one autocommitted statement before the transaction
    /// for returning people.
    pub new_people_first: bool,
    /// Synthetic history (see `seed`): leads, submissions, outbox, each over rows `$1..=$2`
    /// with `$3` tag, `$4` start, `$5` step, `$6` form, `$7` the time from which IPs are kept.
    pub seed: [&'static str; 3],
    /// After seeding: fresh planner statistics.
    pub analyze: &'static str,
    /// During a bulk load (an import): fresh statistics for the tables it grows, so the
    /// planner keeps probing the idempotency index instead of scanning a form's rows
    /// (PostgreSQL without autovacuum would otherwise plan for the empty tables it saw);
    /// empty where the engine plans well without.
    pub refresh_stats: &'static str,
}
