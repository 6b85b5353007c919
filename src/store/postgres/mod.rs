//! PostgreSQL, natively (`PgPool`, binary protocol): every batch insert sends one array
//! parameter per column (`UNNEST($n::text[], …)`), so PostgreSQL parses no JSON, the planner
//! sees a handful of parameters however many rows there are, and the statement text depends
//! only on which tables have rows: it stays prepared. People who are new are written in one
//! autocommitted statement ([`insert_new_people`]); claims lock with `FOR UPDATE SKIP LOCKED`.

use std::collections::HashSet;
use std::fmt::Write;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Executor, PgConnection, Postgres, Row};

use super::batch::{Frame, Insert, Val};
use super::dialect::Dialect;
use super::engine::{native_statements, Engine, Record, Returned};
use super::sql::Sql;
use super::{Backend, StoreError};
use crate::config::DatabaseSettings;

pub(super) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// One pool for reads and writes; connecting fails at once when the server is unreachable.
pub(super) async fn connect(settings: &DatabaseSettings, url: &str) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections.max(2))
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect(url)
        .await?;
    Ok(pool)
}

/// The PostgreSQL implementation of [`Engine`].
pub(super) struct PgEngine;

impl Engine for PgEngine {
    type Db = Postgres;
    const DIALECT: Dialect = Dialect {
        backend: Backend::Postgres,
        anonymous_placeholders: false,
        claim_lock: " FOR UPDATE SKIP LOCKED",
        now_ms: "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        probe_in_transaction: false,
        new_people_first: true,
        seed: SEED,
        // Vacuumed too, as autovacuum would have left a database that has been running, so
        // the first minutes of a benchmark do not share the cores with it.
        analyze: "VACUUM (ANALYZE) leads, submissions, outbox",
        refresh_stats: "ANALYZE leads, submissions",
    };

    native_statements!(Postgres, PgRow);

    /// `EXPLAIN`: each row is one plan line.
    async fn explain<'e, E>(ex: E, sql: &'e str) -> Result<Vec<String>, StoreError>
    where
        E: Executor<'e, Database = Postgres> + 'e,
    {
        let text = format!("EXPLAIN {sql}");
        let rows: Vec<(String,)> = sqlx::query_as(&text)
            .persistent(false)
            .fetch_all(ex)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// `BEGIN` and `COMMIT` are round trips of their own; the inserts are one statement,
    /// chained as data-modifying CTEs, the last one's `RETURNING` answering. PostgreSQL takes
    /// no probe: its idempotency lookup runs before the transaction.
    async fn write<'c>(
        conn: &'c mut PgConnection,
        probe: Option<&'c Sql>,
        inserts: &'c [&'c Insert<'c>],
        frame: Frame,
    ) -> Result<Vec<Returned>, StoreError> {
        debug_assert!(probe.is_none(), "PostgreSQL batches take no probe");
        if frame == Frame::Begin {
            conn.execute("BEGIN").await?;
        }
        let rows = if inserts.is_empty() {
            Vec::new()
        } else {
            let text = statement(inserts, Chain::All);
            bind_columns(sqlx::query(&text), inserts)
                .try_map(|r: PgRow| Returned::decode(&r))
                .fetch_all(&mut *conn)
                .await?
        };
        if frame == Frame::Commit {
            conn.execute("COMMIT").await?;
        }
        Ok(rows)
    }
}

/// Columns stored as `BIGINT` (milliseconds and counts); every other column is text.
const INT_COLUMNS: &[&str] = &[
    "attempts",
    "spam_score",
    "confirm_expires_at",
    "confirmed_at",
    "created_at",
    "download_count",
    "event_at",
    "expires_at",
    "last_download_at",
    "lease_until",
    "max_attempts",
    "next_attempt_at",
    "real_submission_count",
    "resent_at",
    "sent_at",
    "submission_count",
    "updated_at",
];

/// One autocommitted statement that inserts `leads` (whose tail must be `ON CONFLICT …
/// DO NOTHING RETURNING id`) and, of `rest`, only the rows whose `lead_id` is a lead it just
/// created; answers the created leads' ids. Each column travels as one array parameter
/// (`UNNEST($n::text[], …)`), so PostgreSQL parses no JSON and the statement text depends only
/// on which tables have rows: it stays prepared.
pub(super) async fn insert_new_people(
    conn: &mut PgConnection,
    leads: &Insert<'_>,
    rest: &[Insert<'_>],
) -> Result<HashSet<String>, StoreError> {
    let mut inserts = vec![leads];
    inserts.extend(rest.iter().filter(|i| !i.is_empty()));
    let text = statement(&inserts, Chain::NewPeople);
    bind_columns(sqlx::query(&text), &inserts)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}

/// Binds each insert's columns, one array per column, in order.
fn bind_columns<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    inserts: &[&Insert<'_>],
) -> Query<'q, Postgres, PgArguments> {
    for ins in inserts {
        for (c, name) in ins.columns().iter().enumerate() {
            query = if INT_COLUMNS.contains(name) {
                query.bind(ins.column(c).map(int).collect::<Vec<Option<i64>>>())
            } else {
                query.bind(
                    ins.column(c)
                        .map(text_value)
                        .collect::<Vec<Option<String>>>(),
                )
            };
        }
    }
    query
}

/// How [`statement`] chains its inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// Every insert, in order; the last one's `RETURNING` answers.
    All,
    /// The first insert is the leads' (`… DO NOTHING RETURNING id`); the others keep only
    /// rows of the leads it created, which answer.
    NewPeople,
}

fn statement(inserts: &[&Insert<'_>], chain: Chain) -> String {
    let mut text = String::new();
    let mut param = 0;
    let last = inserts.len() - 1;
    for (n, ins) in inserts.iter().enumerate() {
        let columns = ins.columns().join(", ");
        let arrays: Vec<String> = ins
            .columns()
            .iter()
            .map(|name| {
                param += 1;
                let ty = if INT_COLUMNS.contains(name) {
                    "int8"
                } else {
                    "text"
                };
                format!("${param}::{ty}[]")
            })
            .collect();
        let filter = if n > 0 && chain == Chain::NewPeople {
            " WHERE lead_id IN (SELECT id FROM w0)"
        } else {
            ""
        };
        let insert = format!(
            "INSERT INTO {t} ({columns}) SELECT * FROM UNNEST({arrays}) AS r({columns}){filter}{tail}",
            t = ins.table(),
            arrays = arrays.join(", "),
            tail = ins.tail(),
        );
        if n == last && chain == Chain::All {
            text.push_str(&insert);
        } else {
            let sep = if n == 0 { "WITH" } else { "," };
            let _ = write!(text, "{sep} w{n} AS ({insert}) ");
        }
    }
    if chain == Chain::NewPeople {
        text.push_str("SELECT id FROM w0");
    }
    text
}

fn int(v: &Val<'_>) -> Option<i64> {
    match v {
        Val::Int(i) => Some(*i),
        Val::Text(_) | Val::Null => None,
    }
}

fn text_value(v: &Val<'_>) -> Option<String> {
    match v {
        Val::Text(s) => Some(s.to_string()),
        Val::Int(i) => Some(i.to_string()),
        Val::Null => None,
    }
}

/// The seed's rows: `i` from `$1` to `$2`, and `p`, three letters of `i` (each address, name and company starts with them, so the seed's keys spread over
/// the alphabet as real ones do).
macro_rules! seed_rows {
    () => {
        "FROM generate_series($1::bigint, $2::bigint) AS i, LATERAL (SELECT chr(97 + (i % 26)::int) || \
         chr(97 + (i / 26 % 26)::int) || chr(97 + (i / 676 % 26)::int) AS p) AS x"
    };
}

/// [`Dialect::seed`].
const SEED: [&str; 3] = [
    concat!(
        "INSERT INTO leads (id, email, created_at, updated_at, submission_count, \
       real_submission_count) \
     SELECT format('%s-5eed-7000-8000-%s', $3::text, lpad(to_hex(i), 12, '0')), \
       format('%s.reader-%s-%s@seed.invalid', p, $3::text, i), $4 + i * $5, $4 + i * $5, 1, 1 ",
        seed_rows!()
    ),
    concat!(
        "INSERT INTO submissions (id, lead_id, form_id, email, fields, extra, \
       idempotency_key, utm_source, utm_medium, utm_campaign, landing_page, user_agent, \
       attribution, client_ip, created_at, source, campaign, name_key, company_key) \
     SELECT format('%s-5eed-7000-8001-%s', $3::text, lpad(to_hex(i), 12, '0')), \
       format('%s-5eed-7000-8000-%s', $3::text, lpad(to_hex(i), 12, '0')), $6::text, \
       format('%s.reader-%s-%s@seed.invalid', p, $3::text, i), \
       format('{\"company\":\"%s Example %s Ltd\",\"message\":\"Please send the report.\",\
\"name\":\"%s Reader %s\"}', p, i % 5000, p, i), '{}', md5(random()::text || i::text), \
       'newsletter', 'email', format('campaign-%s', i % 40), \
       'https://example.com/landing', 'Mozilla/5.0 (seed)', \
       format('{\"landing_page\":\"https://example.com/landing\",\"utm_campaign\":\
\"campaign-%s\",\"utm_medium\":\"email\",\"utm_source\":\"newsletter\"}', i % 40), \
       CASE WHEN $4 + i * $5 >= $7 THEN format('192.0.2.%s', i % 250) END, $4 + i * $5, \
       'newsletter', format('campaign-%s', i % 40), format('%s reader %s', p, i), \
       format('%s example %s ltd', p, i % 5000) ",
        seed_rows!()
    ),
    concat!(
        "INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, \
       attempts, max_attempts, next_attempt_at, created_at, sent_at) \
     SELECT format('%s-5eed-7000-8002-%s', $3::text, lpad(to_hex(i), 12, '0')), \
       format('%s-5eed-7000-8000-%s', $3::text, lpad(to_hex(i), 12, '0')), \
       format('%s-5eed-7000-8001-%s', $3::text, lpad(to_hex(i), 12, '0')), $6::text, \
       'follow_up', format('%s.reader-%s-%s@seed.invalid', p, $3::text, i), 'sent', 1, 8, \
       $4 + i * $5, $4 + i * $5, $4 + i * $5 + 1000 ",
        seed_rows!()
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_array_parameter_per_column_and_only_the_created_leads_rows() {
        let mut leads = Insert::new(
            "leads",
            &["id", "created_at"],
            " ON CONFLICT DO NOTHING RETURNING id",
        );
        leads.row(["l1".into(), 5.into()]);
        let mut subs = Insert::new("submissions", &["id", "lead_id"], "");
        subs.row(["s1".into(), "l1".into()]);
        assert_eq!(
            statement(&[&leads, &subs], Chain::NewPeople),
            "WITH w0 AS (INSERT INTO leads (id, created_at) SELECT * FROM UNNEST($1::text[], \
             $2::int8[]) AS r(id, created_at) ON CONFLICT DO NOTHING RETURNING id) , \
             w1 AS (INSERT INTO submissions (id, lead_id) SELECT * FROM UNNEST($3::text[], \
             $4::text[]) AS r(id, lead_id) WHERE lead_id IN (SELECT id FROM w0)) SELECT id FROM w0"
        );
        assert_eq!(
            subs.column(1).map(text_value).collect::<Vec<_>>(),
            [Some("l1".to_string())]
        );
        assert_eq!(
            statement(&[&subs, &subs], Chain::All),
            "WITH w0 AS (INSERT INTO submissions (id, lead_id) SELECT * FROM \
             UNNEST($1::text[], $2::text[]) AS r(id, lead_id)) INSERT INTO submissions (id, \
             lead_id) SELECT * FROM UNNEST($3::text[], $4::text[]) AS r(id, lead_id)"
        );
    }
}
