//! The rows a write batch inserts, collected per table as [`Insert`]s, so each engine can send
//! them together.
//!
//! On both engines the write path pays per statement, not per row: on SQLite every statement is
//! a hand-off between the async task and sqlx's SQLite thread (and back), on PostgreSQL a network
//! round trip plus parsing and planning. How each engine sends a batch is its own
//! (`Engine::write`): SQLite as one multi-statement command of
//! padded multi-row inserts, PostgreSQL as one statement with one array parameter per column.

use std::borrow::Cow;

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

impl From<Option<String>> for Val<'_> {
    fn from(v: Option<String>) -> Self {
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

    /// The values, row after row.
    pub(super) fn values(&self) -> &[Val<'a>] {
        &self.values
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
