//! SQLite, natively (`SqlitePool`): one writer connection with a large page cache, a pool of
//! readers beside it (WAL), and batches sent as one multi-statement command.
//!
//! A batch's inserts go in chunks of at most [`LARGE`] rows, padded with NULL rows up to
//! [`SMALL`] or [`LARGE`] that `WHERE column1 IS NOT NULL` drops, so only a few statement texts
//! ever occur and they stay prepared. Anonymous `?` placeholders bind in order across the
//! statements; the idempotency probe rides right after `BEGIN IMMEDIATE`, under the write lock.

use std::fmt::Write;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Executor, Sqlite};

use super::batch::{Frame, Insert, Val};
use super::dialect::Dialect;
use super::engine::{native_statements, Engine, Record, Returned};
use super::sql::Sql;
use super::{Backend, StoreError};
use crate::config::DatabaseSettings;

pub(super) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Padding sizes for chunks (rows).
const SMALL: usize = 8;
const LARGE: usize = 64;

/// Opens the writer (exactly one connection: SQLite has one writer at a time) and, lazily, the
/// readers: `(writer, reader)`. The file is created if it does not exist (unless the URL sets
/// `mode=`).
pub(super) async fn connect(
    settings: &DatabaseSettings,
    url: &str,
) -> Result<(SqlitePool, SqlitePool), StoreError> {
    let mut options = SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .foreign_keys(true)
        .pragma("synchronous", settings.sqlite_synchronous.clone())
        .pragma("temp_store", "MEMORY");
    if !url.contains("mode=") {
        options = options.create_if_missing(true);
    }
    let acquire = Duration::from_millis(settings.acquire_timeout_ms);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire)
        .connect_with(
            options
                .clone()
                // Negative: KiB. The hot part of the indexes stays in memory.
                .pragma(
                    "cache_size",
                    format!("-{}", u64::from(settings.sqlite_cache_mib.max(1)) * 1024),
                ),
        )
        .await?;
    // Readers keep SQLite's default cache, so memory stays bounded however many there are.
    let reader = SqlitePoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(acquire)
        .connect_lazy_with(options);
    Ok((writer, reader))
}

/// The SQLite implementation of [`Engine`].
pub(super) struct SqliteEngine;

impl Engine for SqliteEngine {
    type Db = Sqlite;
    const DIALECT: Dialect = Dialect {
        backend: Backend::Sqlite,
        anonymous_placeholders: true,
        // One writer connection: the claim's single `UPDATE … RETURNING` is atomic.
        claim_lock: "",
        now_ms: "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
        probe_in_transaction: true,
        new_people_first: false,
        seed: SEED,
        analyze: "ANALYZE",
        // SQLite probes `UNIQUE (form_id, idempotency_key)` for an `IN` list without statistics.
        refresh_stats: "",
    };

    native_statements!(Sqlite, SqliteRow);

    /// `EXPLAIN QUERY PLAN`: the plan line is the fourth column.
    async fn explain<'e, E>(ex: E, sql: &'e str) -> Result<Vec<String>, StoreError>
    where
        E: Executor<'e, Database = Sqlite> + 'e,
    {
        let text = format!("EXPLAIN QUERY PLAN {sql}");
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&text)
            .persistent(false)
            .fetch_all(ex)
            .await?;
        Ok(rows.into_iter().map(|r| r.3).collect())
    }

    async fn write<'c>(
        conn: &'c mut sqlx::SqliteConnection,
        probe: Option<&'c Sql>,
        inserts: &'c [&'c Insert<'c>],
        frame: Frame,
    ) -> Result<Vec<Returned>, StoreError> {
        let (text, binds) = command(inserts, frame, probe.map(Sql::text));
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let q = sqlx::query(&text);
        let q = match probe {
            Some(p) => p.bind_into(q),
            None => q,
        };
        let q = binds.iter().fold(q, |q, v| match v {
            Val::Text(s) => q.bind(s.as_ref()),
            Val::Int(i) => q.bind(*i),
            Val::Null => q.bind(None::<&str>),
        });
        Ok(q.try_map(|r: SqliteRow| Returned::decode(&r))
            .fetch_all(conn)
            .await?)
    }
}

/// The command and its parameters, padding included.
fn command<'v, 'a>(
    inserts: &[&'v Insert<'a>],
    frame: Frame,
    probe: Option<&str>,
) -> (String, Vec<&'v Val<'a>>) {
    const NULL: &Val<'static> = &Val::Null;
    let mut text = String::new();
    let mut binds = Vec::new();
    if frame == Frame::Begin {
        text.push_str("BEGIN IMMEDIATE; ");
    }
    if let Some(probe) = probe {
        text.push_str(probe);
        text.push_str("; ");
    }
    for ins in inserts {
        let width = ins.columns().len();
        for chunk in ins.values().chunks(LARGE * width) {
            let rows = chunk.len() / width;
            let padded = if rows <= SMALL { SMALL } else { LARGE };
            let _ = write!(
                text,
                "INSERT INTO {} ({}) SELECT * FROM (VALUES ",
                ins.table(),
                ins.columns().join(", ")
            );
            for r in 0..padded {
                text.push_str(if r == 0 { "(?" } else { ", (?" });
                for _ in 1..width {
                    text.push_str(", ?");
                }
                text.push(')');
            }
            let _ = write!(text, ") WHERE column1 IS NOT NULL{}; ", ins.tail());
            binds.extend(chunk);
            binds.extend(std::iter::repeat_n(NULL, (padded - rows) * width));
        }
    }
    if frame == Frame::Commit {
        text.push_str("COMMIT;");
    }
    (text, binds)
}

/// The seed's rows: `i` from the recursive `seq`, and `p`, three letters of `i` (each address, name and company starts with them, so the seed's keys spread over
/// the alphabet as real ones do).
macro_rules! seed_rows {
    () => {
        "FROM (SELECT i, char(97 + i % 26, 97 + (i / 26) % 26, 97 + (i / 676) % 26) AS p FROM seq)"
    };
}

/// [`Dialect::seed`].
const SEED: [&str; 3] = [
    concat!("WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2) \
     INSERT INTO leads (id, email, created_at, updated_at, submission_count, \
       real_submission_count) \
     SELECT printf('%s-5eed-7000-8000-%012x', $3, i), \
       printf('%s.reader-%s-%d@seed.invalid', p, $3, i), $4 + i * $5, $4 + i * $5, 1, 1 ", seed_rows!()),
    concat!("WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2) \
     INSERT INTO submissions (id, lead_id, form_id, email, fields, extra, \
       idempotency_key, utm_source, utm_medium, utm_campaign, landing_page, user_agent, \
       attribution, client_ip, created_at, source, campaign, name_key, company_key) \
     SELECT printf('%s-5eed-7000-8001-%012x', $3, i), \
       printf('%s-5eed-7000-8000-%012x', $3, i), $6, \
       printf('%s.reader-%s-%d@seed.invalid', p, $3, i), \
       printf('{\"company\":\"%s Example %d Ltd\",\"message\":\"Please send the report.\",\
\"name\":\"%s Reader %d\"}', p, i % 5000, p, i), '{}', lower(hex(randomblob(16))), \
       'newsletter', 'email', printf('campaign-%d', i % 40), \
       'https://example.com/landing', 'Mozilla/5.0 (seed)', \
       printf('{\"landing_page\":\"https://example.com/landing\",\"utm_campaign\":\
\"campaign-%d\",\"utm_medium\":\"email\",\"utm_source\":\"newsletter\"}', i % 40), \
       CASE WHEN $4 + i * $5 >= $7 THEN printf('192.0.2.%d', i % 250) END, $4 + i * $5, \
       'newsletter', printf('campaign-%d', i % 40), printf('%s reader %d', p, i), \
       printf('%s example %d ltd', p, i % 5000) ", seed_rows!()),
    concat!("WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2) \
     INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, \
       attempts, max_attempts, next_attempt_at, created_at, sent_at) \
     SELECT printf('%s-5eed-7000-8002-%012x', $3, i), \
       printf('%s-5eed-7000-8000-%012x', $3, i), \
       printf('%s-5eed-7000-8001-%012x', $3, i), $6, 'follow_up', \
       printf('%s.reader-%s-%d@seed.invalid', p, $3, i), 'sent', 1, 8, $4 + i * $5, $4 + i * $5, $4 + i * $5 + 1000 ", seed_rows!()),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn two_rows() -> Insert<'static> {
        let mut ins = Insert::new("t", &["id", "n"], " RETURNING id");
        ins.row(["a\"\n".into(), 1.into()]);
        ins.row(["b".into(), Val::Null]);
        ins
    }

    #[test]
    fn batches_pad_to_a_few_statement_sizes() {
        let ins = two_rows();
        let (text, binds) = command(&[&ins], Frame::Begin, None);
        assert!(text.starts_with(
            "BEGIN IMMEDIATE; INSERT INTO t (id, n) SELECT * FROM (VALUES (?, ?), (?, ?)"
        ));
        assert!(text.ends_with(") WHERE column1 IS NOT NULL RETURNING id; "));
        assert_eq!(binds.len(), SMALL * 2);
        assert_eq!(text.matches('?').count(), binds.len());

        let mut big = Insert::new("t", &["id"], "");
        for i in 0..(LARGE + SMALL + 1) {
            big.row([Val::from(i.to_string())]);
        }
        let (text, binds) = command(&[&big], Frame::Commit, None);
        assert_eq!(text.matches("INSERT").count(), 2);
        assert_eq!(binds.len(), 2 * LARGE);
        assert!(text.ends_with("COMMIT;"));
    }
}
