//! Multi-row inserts in one round trip.
//!
//! On both engines the write path pays per statement, not per row: on SQLite every statement is
//! a hand-off between the async task and sqlx's SQLite thread (and back), on PostgreSQL a network
//! round trip plus parsing and planning. So the rows a batch writes are collected as
//! [`Insert`]s and sent together:
//! - **SQLite:** one multi-statement command. Each insert goes in chunks of at most
//!   [`LARGE`] rows, padded with NULL rows up to [`SMALL`] or [`LARGE`] that
//!   `WHERE column1 IS NOT NULL` drops, so only a few statement texts ever occur and they stay
//!   prepared. Anonymous `?` placeholders bind in order across the statements.
//! - **PostgreSQL:** one statement (people who are new: the native driver with arrays, see
//!   `store::postgres`). Each table's rows travel as one JSON parameter that
//!   `json_populate_recordset` expands; several inserts are chained as data-modifying CTEs. The
//!   text depends only on which tables have rows, so it stays prepared too, and the planner sees
//!   one parameter per table instead of thousands.

use std::borrow::Cow;
use std::fmt::Write;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Executor};

use super::sql::Sql;
use super::{Backend, StoreError};

/// Padding sizes for SQLite chunks (rows).
const SMALL: usize = 8;
const LARGE: usize = 64;

/// One value of an inserted row.
#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Null,
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Val::Text(Cow::Owned(v))
    }
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Val::Null, Val::from)
    }
}

impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}

/// Rows for one table.
#[derive(Debug)]
pub(super) struct Insert<'a> {
    table: &'static str,
    /// The first column must never be NULL: it tells a row from padding.
    columns: &'static [&'static str],
    /// `ON CONFLICT …` and/or `RETURNING …`, appended to each statement.
    tail: &'static str,
    values: Vec<Val<'a>>,
}

impl<'a> Insert<'a> {
    pub(super) fn new(
        table: &'static str,
        columns: &'static [&'static str],
        tail: &'static str,
    ) -> Insert<'a> {
        Insert {
            table,
            columns,
            tail,
            values: Vec::new(),
        }
    }

    /// Appends one row, its values in column order.
    pub(super) fn row<const N: usize>(&mut self, row: [Val<'a>; N]) {
        debug_assert_eq!(N, self.columns.len(), "{}: wrong column count", self.table);
        debug_assert!(!matches!(row.first(), Some(Val::Null)));
        self.values.extend(row);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(super) fn table(&self) -> &'static str {
        self.table
    }

    pub(super) fn columns(&self) -> &'static [&'static str] {
        self.columns
    }

    pub(super) fn tail(&self) -> &'static str {
        self.tail
    }

    /// The values of column `c`, one per row.
    pub(super) fn column(&self, c: usize) -> impl Iterator<Item = &Val<'a>> {
        self.values.iter().skip(c).step_by(self.columns.len())
    }
}

/// What to do around the inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// Just the inserts (the caller manages any transaction).
    Plain,
    /// Open the write transaction first.
    Begin,
    /// Commit the open transaction after the inserts.
    Commit,
}

/// Runs `inserts` in one round trip (PostgreSQL: plus `BEGIN` or `COMMIT` when asked) and
/// returns the rows their `RETURNING` clauses produced, in order. On error the transaction, if
/// one is open, is left to the caller to roll back.
pub(super) async fn run(
    conn: &mut AnyConnection,
    backend: Backend,
    inserts: &[Insert<'_>],
    frame: Frame,
) -> Result<Vec<AnyRow>, StoreError> {
    run_probed(conn, backend, None, inserts, frame).await
}

/// [`run`], with a query (`probe`, anonymous placeholders) that SQLite runs first in the same
/// command, right after `BEGIN IMMEDIATE`, so it reads under the write lock; its rows come
/// first. PostgreSQL takes no probe.
pub(super) async fn run_probed(
    conn: &mut AnyConnection,
    backend: Backend,
    probe: Option<&Sql>,
    inserts: &[Insert<'_>],
    frame: Frame,
) -> Result<Vec<AnyRow>, StoreError> {
    let inserts: Vec<&Insert<'_>> = inserts.iter().filter(|i| !i.is_empty()).collect();
    match backend {
        Backend::Sqlite => {
            let (text, binds) = sqlite_command(&inserts, frame, probe.map(Sql::text));
            if text.is_empty() {
                return Ok(Vec::new());
            }
            let query = sqlx::query(&text);
            let query = match probe {
                Some(p) => p.bind_to(query),
                None => query,
            };
            let query = binds.iter().fold(query, |q, v| match v {
                Val::Text(s) => q.bind(s.as_ref()),
                Val::Int(i) => q.bind(*i),
                Val::Null => q.bind(None::<&str>),
            });
            Ok(query.fetch_all(&mut *conn).await?)
        }
        Backend::Postgres => {
            debug_assert!(probe.is_none(), "PostgreSQL batches take no probe");
            if frame == Frame::Begin {
                conn.execute("BEGIN").await?;
            }
            let rows = if inserts.is_empty() {
                Vec::new()
            } else {
                postgres_fetch(conn, &inserts).await?
            };
            if frame == Frame::Commit {
                conn.execute("COMMIT").await?;
            }
            Ok(rows)
        }
    }
}

/// PostgreSQL (portable path): the inserts chained as data-modifying CTEs, each table's rows
/// one JSON parameter; the last insert's `RETURNING` answers. (People who are new are written
/// by the native driver instead: [`super::postgres::insert_new_people`].)
async fn postgres_fetch(
    conn: &mut AnyConnection,
    inserts: &[&Insert<'_>],
) -> Result<Vec<AnyRow>, StoreError> {
    let (text, params) = postgres_statement(inserts);
    Ok(params
        .iter()
        .fold(sqlx::query(&text), |q, p| q.bind(p.as_str()))
        .fetch_all(&mut *conn)
        .await?)
}

/// The SQLite command and its parameters, padding included.
fn sqlite_command<'v, 'a>(
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
        let width = ins.columns.len();
        for chunk in ins.values.chunks(LARGE * width) {
            let rows = chunk.len() / width;
            let padded = if rows <= SMALL { SMALL } else { LARGE };
            let _ = write!(
                text,
                "INSERT INTO {} ({}) SELECT * FROM (VALUES ",
                ins.table,
                ins.columns.join(", ")
            );
            for r in 0..padded {
                text.push_str(if r == 0 { "(?" } else { ", (?" });
                for _ in 1..width {
                    text.push_str(", ?");
                }
                text.push(')');
            }
            let _ = write!(text, ") WHERE column1 IS NOT NULL{}; ", ins.tail);
            binds.extend(chunk);
            binds.extend(std::iter::repeat_n(NULL, (padded - rows) * width));
        }
    }
    if frame == Frame::Commit {
        text.push_str("COMMIT;");
    }
    (text, binds)
}

/// The PostgreSQL statement and its JSON parameters, one per insert.
fn postgres_statement(inserts: &[&Insert<'_>]) -> (String, Vec<String>) {
    let mut text = String::new();
    let last = inserts.len() - 1;
    for (n, ins) in inserts.iter().enumerate() {
        let insert = postgres_insert(ins, n + 1);
        if n == last {
            text.push_str(&insert);
        } else {
            let sep = if n == 0 { "WITH" } else { "," };
            let _ = write!(text, "{sep} w{n} AS ({insert}) ");
        }
    }
    let params = inserts.iter().map(|ins| json_rows(ins)).collect();
    (text, params)
}

/// `INSERT INTO t (…) SELECT … FROM json_populate_recordset(NULL::t, $param::json) tail`
fn postgres_insert(ins: &Insert<'_>, param: usize) -> String {
    let columns = ins.columns.join(", ");
    format!(
        "INSERT INTO {t} ({columns}) SELECT {columns} \
         FROM json_populate_recordset(NULL::{t}, ${param}::json){tail}",
        t = ins.table,
        tail = ins.tail,
    )
}

/// `[{"column": value, …}, …]`
fn json_rows(ins: &Insert<'_>) -> String {
    let width = ins.columns.len();
    let mut out = Vec::with_capacity(ins.values.len() * 24);
    out.push(b'[');
    for (r, row) in ins.values.chunks(width).enumerate() {
        if r > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (c, (name, v)) in ins.columns.iter().zip(row).enumerate() {
            if c > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match v {
                Val::Text(s) => {
                    // Writing a string into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut out, s.as_ref());
                }
                Val::Int(i) => {
                    let _ = std::io::Write::write_fmt(&mut out, format_args!("{i}"));
                }
                Val::Null => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    // Only valid UTF-8 went in.
    String::from_utf8(out).unwrap_or_default()
}

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
    fn sqlite_pads_to_a_few_statement_sizes() {
        let ins = two_rows();
        let (text, binds) = sqlite_command(&[&ins], Frame::Begin, None);
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
        let (text, binds) = sqlite_command(&[&big], Frame::Commit, None);
        assert_eq!(text.matches("INSERT").count(), 2);
        assert_eq!(binds.len(), 2 * LARGE);
        assert!(text.ends_with("COMMIT;"));
    }

    #[test]
    fn postgres_sends_one_json_parameter_per_table() {
        let (a, b) = (two_rows(), two_rows());
        let (text, params) = postgres_statement(&[&a, &b]);
        assert_eq!(
            text,
            "WITH w0 AS (INSERT INTO t (id, n) SELECT id, n FROM json_populate_recordset(NULL::t, $1::json) RETURNING id) \
             INSERT INTO t (id, n) SELECT id, n FROM json_populate_recordset(NULL::t, $2::json) RETURNING id"
        );
        assert_eq!(params[0], r#"[{"id":"a\"\n","n":1},{"id":"b","n":null}]"#);
    }
}
