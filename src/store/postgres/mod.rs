//! The native PostgreSQL side of the store (`PgPool`, binary protocol, arrays), taking over
//! from the portable `sqlx::Any` code one concern at a time. So far: the write path's insert of
//! people who are new.

use std::collections::HashSet;
use std::fmt::Write;

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};

use super::batch::{Insert, Val};
use super::StoreError;

/// Columns stored as `BIGINT` (milliseconds and counts); every other column is text.
const INT_COLUMNS: &[&str] = &[
    "attempts",
    "confirm_expires_at",
    "confirmed_at",
    "created_at",
    "download_count",
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
    let text = statement(&inserts);
    let mut query: Query<'_, Postgres, PgArguments> = sqlx::query(&text);
    for ins in &inserts {
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
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}

fn statement(inserts: &[&Insert<'_>]) -> String {
    let mut text = String::new();
    let mut param = 0;
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
        let filter = if n > 0 {
            " WHERE lead_id IN (SELECT id FROM w0)"
        } else {
            ""
        };
        let sep = if n == 0 { "WITH" } else { "," };
        let _ = write!(
            text,
            "{sep} w{n} AS (INSERT INTO {t} ({columns}) SELECT * FROM UNNEST({arrays}) \
             AS r({columns}){filter}{tail}) ",
            t = ins.table(),
            arrays = arrays.join(", "),
            tail = ins.tail(),
        );
    }
    text.push_str("SELECT id FROM w0");
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
            statement(&[&leads, &subs]),
            "WITH w0 AS (INSERT INTO leads (id, created_at) SELECT * FROM UNNEST($1::text[], \
             $2::int8[]) AS r(id, created_at) ON CONFLICT DO NOTHING RETURNING id) , \
             w1 AS (INSERT INTO submissions (id, lead_id) SELECT * FROM UNNEST($3::text[], \
             $4::text[]) AS r(id, lead_id) WHERE lead_id IN (SELECT id FROM w0)) SELECT id FROM w0"
        );
        assert_eq!(
            subs.column(1).map(text_value).collect::<Vec<_>>(),
            [Some("l1".to_string())]
        );
    }
}
