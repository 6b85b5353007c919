//! Statements built from optional filters and lists, with the placeholder style each engine
//! binds fastest, and the chunking that keeps multi-row statements to a few repeating sizes.

use super::dialect::Dialect;

/// Most rows in one multi-row statement (keeps bind counts far below both engines' limits and
/// the number of distinct statement texts small).
pub(super) const ROWS_PER_STATEMENT: usize = 64;

/// A query built from optional filters, with numbered `$n` placeholders that both engines
/// accept.
pub(super) struct Sql {
    text: String,
    binds: Vec<Bind>,
    /// Anonymous `?` placeholders (SQLite): binding by name is a linear lookup per parameter
    /// in SQLite, which turns a multi-row statement's binding quadratic.
    anonymous: bool,
    /// Kept prepared in the connection's statement cache (texts that vary with a list's
    /// length are not).
    persistent: bool,
}

/// Splits `n` rows into power-of-two pieces of at most [`ROWS_PER_STATEMENT`], so a handful of
/// statement texts repeat and stay in the prepared-statement cache.
pub(super) fn pieces(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n >= ROWS_PER_STATEMENT {
        out.push(ROWS_PER_STATEMENT);
        n -= ROWS_PER_STATEMENT;
    }
    let mut p = ROWS_PER_STATEMENT / 2;
    while p > 0 {
        if n >= p {
            out.push(p);
            n -= p;
        }
        p /= 2;
    }
    out
}

/// Applies `pieces` to a slice.
pub(super) fn split<T>(rows: &[T]) -> Vec<&[T]> {
    let mut rest = rows;
    pieces(rows.len())
        .into_iter()
        .map(|n| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        })
        .collect()
}

/// A list's page, newest first: `AND column = value` for each filter given, then keyset paging
/// on `id_column` (time-ordered ids: the primary key serves any size) below `before`.
pub(super) fn newest_first(
    mut sql: Sql,
    filters: &[(&str, Option<&str>)],
    id_column: &str,
    before: Option<&str>,
    limit: u32,
) -> Sql {
    for (column, value) in filters {
        if let Some(v) = value {
            sql.push(&format!(" AND {column} = ")).bind_text(v);
        }
    }
    if let Some(b) = before {
        sql.push(&format!(" AND {id_column} < ")).bind_text(b);
    }
    sql.push(&format!(" ORDER BY {id_column} DESC LIMIT "))
        .bind_int(i64::from(limit));
    sql
}

#[derive(Debug, Clone)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

impl From<&str> for Bind {
    fn from(v: &str) -> Self {
        Bind::Text(v.to_string())
    }
}

impl From<&String> for Bind {
    fn from(v: &String) -> Self {
        Bind::Text(v.clone())
    }
}

impl From<String> for Bind {
    fn from(v: String) -> Self {
        Bind::Text(v)
    }
}

impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Bind::Int(v)
    }
}

impl Sql {
    pub(super) fn new(text: String) -> Sql {
        Sql {
            text,
            binds: Vec::new(),
            anonymous: false,
            persistent: true,
        }
    }

    /// A fixed statement text; its values follow with [`Sql::arg`].
    pub(super) fn fixed(text: impl Into<String>) -> Sql {
        Sql::new(text.into())
    }

    /// Adds the value of the statement's next `$n` placeholder.
    pub(super) fn arg(mut self, v: impl Into<Bind>) -> Sql {
        self.binds.push(v.into());
        self
    }

    /// Not kept prepared: for texts that vary with a list's length.
    pub(super) fn once(mut self) -> Sql {
        self.persistent = false;
        self
    }

    /// A statement with the placeholder style that binds fastest on the engine.
    pub(super) fn for_dialect(dialect: &Dialect, text: String) -> Sql {
        Sql {
            anonymous: dialect.anonymous_placeholders,
            ..Sql::new(text)
        }
    }

    /// A fixed statement text with its values.
    pub(super) fn with_binds(text: impl Into<String>, binds: Vec<Bind>) -> Sql {
        Sql {
            binds,
            ..Sql::new(text.into())
        }
    }

    /// The statement with every placeholder replaced by its value as a SQL literal: what
    /// `EXPLAIN` needs to plan exactly as for these values (see [`super::plans`]).
    pub(super) fn inlined(&self) -> String {
        let literal = |b: &Bind| match b {
            Bind::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Bind::Int(i) => i.to_string(),
        };
        let mut out = String::with_capacity(self.text.len());
        let mut chars = self.text.chars().peekable();
        let (mut quoted, mut next) = (false, 0usize);
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted && self.anonymous => {
                    out.push_str(&self.binds.get(next).map(literal).unwrap_or_default());
                    next += 1;
                }
                '$' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                    let mut n = 0usize;
                    while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                        n = n * 10 + d as usize;
                        chars.next();
                    }
                    let bind = n.checked_sub(1).and_then(|i| self.binds.get(i));
                    out.push_str(&bind.map(literal).unwrap_or_default());
                }
                _ => out.push(c),
            }
        }
        out
    }

    pub(super) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub(super) fn bind_text(&mut self, v: &str) -> &mut Self {
        self.binds.push(Bind::Text(v.to_string()));
        self.placeholder()
    }

    /// Binds each value, comma-separated (the inside of an `IN (…)` list).
    pub(super) fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for (j, v) in values.into_iter().enumerate() {
            if j > 0 {
                self.push(", ");
            }
            self.bind_text(v);
        }
        self
    }

    pub(super) fn bind_int(&mut self, v: i64) -> &mut Self {
        self.binds.push(Bind::Int(v));
        self.placeholder()
    }

    fn placeholder(&mut self) -> &mut Self {
        use std::fmt::Write;
        if self.anonymous {
            self.text.push('?');
        } else {
            let n = self.binds.len();
            let _ = write!(self.text, "${n}");
        }
        self
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// Binds this statement's values, in order, to `query` on any engine.
    pub(super) fn bind_into<'q, DB>(
        &'q self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
    where
        DB: sqlx::Database,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        self.binds.iter().fold(query, |q, b| match b {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Int(i) => q.bind(*i),
        })
    }

    /// The statement with its values, ready to run on `DB`.
    pub(super) fn query<'q, DB>(
        &'q self,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
    where
        DB: sqlx::Database + sqlx::database::HasStatementCache,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        self.bind_into(sqlx::query(&self.text).persistent(self.persistent))
    }
}

#[cfg(test)]
mod tests {
    use super::{pieces, ROWS_PER_STATEMENT};

    #[test]
    fn batches_split_into_few_repeating_statement_sizes() {
        for n in 0..600 {
            let p = pieces(n);
            assert_eq!(p.iter().sum::<usize>(), n);
            assert!(p
                .iter()
                .all(|s| s.is_power_of_two() && *s <= ROWS_PER_STATEMENT));
        }
        assert_eq!(pieces(75), [64, 8, 2, 1]);
    }
}
