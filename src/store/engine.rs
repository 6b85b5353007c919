//! The seam between the store's shared logic and the two databases: [`Engine`] is what each
//! database implements natively, on its own sqlx driver and pool (`store/sqlite`,
//! `store/postgres`): running a built statement and decoding its rows by name, explaining a
//! plan, and writing a batch of multi-row inserts the fastest way that engine allows. The
//! concerns above it (leads, outbox, ledger, …) are written once against `store::pools`, which
//! hands each call to the implementation chosen once, from the URL, at startup.

use std::future::Future;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Decode, Executor, FromRow, Row, Type};

use super::batch::{Frame, Insert};
use super::dialect::Dialect;
use super::sql::Sql;
use super::StoreError;

/// A row type both engines can decode (by column name, or by position for tuples).
pub(super) trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// What a write batch's `RETURNING` clauses and probe produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Returned {
    /// A stored submission that an idempotency key names (SQLite's in-transaction probe).
    Replay {
        form_id: String,
        idempotency_key: String,
        id: String,
        lead_id: String,
        payload_hash: Option<String>,
    },
    /// A lead upsert's `RETURNING id, email`.
    Lead { id: String, email: String },
    /// A `RETURNING id`.
    Id(String),
}

impl Returned {
    /// Tells the rows apart by their width: 5 columns (probe), 2 (lead upsert), 1 (id).
    pub(super) fn decode<'r, R>(r: &'r R) -> Result<Returned, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database>,
    {
        Ok(match r.len() {
            5 => Returned::Replay {
                form_id: r.try_get(0)?,
                idempotency_key: r.try_get(1)?,
                id: r.try_get(2)?,
                lead_id: r.try_get(3)?,
                payload_hash: r.try_get(4)?,
            },
            2 => Returned::Lead {
                id: r.try_get(0)?,
                email: r.try_get(1)?,
            },
            _ => Returned::Id(r.try_get(0)?),
        })
    }
}

/// What each database implements natively.
pub(super) trait Engine {
    type Db: sqlx::Database;
    const DIALECT: Dialect;

    /// Every row of `sql`, decoded as `T`.
    fn fetch_all<'e, E, T>(
        ex: E,
        sql: &'e Sql,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send + 'e
    where
        E: Executor<'e, Database = Self::Db> + 'e,
        T: Record + 'e;

    /// The first row of `sql`, if any.
    fn fetch_optional<'e, E, T>(
        ex: E,
        sql: &'e Sql,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send + 'e
    where
        E: Executor<'e, Database = Self::Db> + 'e,
        T: Record + 'e;

    /// Runs `sql`; the number of rows it changed.
    fn execute<'e, E>(
        ex: E,
        sql: &'e Sql,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'e
    where
        E: Executor<'e, Database = Self::Db> + 'e;

    /// Runs statements without parameters (transaction control, maintenance).
    fn raw<'e, E>(ex: E, text: &'e str) -> impl Future<Output = Result<(), StoreError>> + Send + 'e
    where
        E: Executor<'e, Database = Self::Db> + 'e;

    /// The plan the engine chooses for `sql` (values inlined), one line per node.
    fn explain<'e, E>(
        ex: E,
        sql: &'e str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send + 'e
    where
        E: Executor<'e, Database = Self::Db> + 'e;

    /// Writes `inserts` (with `probe` first, where the engine takes one) in as few round trips
    /// as the engine allows, opening or committing the transaction as `frame` says; answers
    /// the rows returned. On error an open transaction is left to the caller to roll back.
    fn write<'c>(
        conn: &'c mut <Self::Db as sqlx::Database>::Connection,
        probe: Option<&'c Sql>,
        inserts: &'c [&'c Insert<'c>],
        frame: Frame,
    ) -> impl Future<Output = Result<Vec<Returned>, StoreError>> + Send + 'c;
}

/// The part of [`Engine`] that is the same on every sqlx driver but for its types: running a
/// [`Sql`] bound natively for `$db` and decoding rows by name.
macro_rules! native_statements {
    ($db:ty, $row:ty) => {
        async fn fetch_all<'e, E, T>(ex: E, sql: &'e Sql) -> Result<Vec<T>, StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
            T: Record + 'e,
        {
            Ok(sql
                .query::<$db>()
                .try_map(|r: $row| T::from_row(&r))
                .fetch_all(ex)
                .await?)
        }

        async fn fetch_optional<'e, E, T>(ex: E, sql: &'e Sql) -> Result<Option<T>, StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
            T: Record + 'e,
        {
            Ok(sql
                .query::<$db>()
                .try_map(|r: $row| T::from_row(&r))
                .fetch_optional(ex)
                .await?)
        }

        async fn execute<'e, E>(ex: E, sql: &'e Sql) -> Result<u64, StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
        {
            Ok(sql.query::<$db>().execute(ex).await?.rows_affected())
        }

        async fn raw<'e, E>(ex: E, text: &'e str) -> Result<(), StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
        {
            ex.execute(text).await?;
            Ok(())
        }
    };
}
pub(super) use native_statements;
