//! The seam between the store's shared logic and the two databases.
//!
//! [`Engine`] is what each database implements natively, on its own sqlx driver and pool
//! (`store/sqlite`, `store/postgres`): running a built statement and decoding its rows by name,
//! and writing a batch of multi-row inserts the fastest way that engine allows. Everything
//! above it (leads, outbox, ledger, …) is written once against [`Exec`], [`Conn`] and [`Tx`],
//! which hand each call to the implementation chosen once, from the URL, at startup.

use std::future::Future;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ColumnIndex, Decode, Executor, FromRow, Postgres, Row, Sqlite, Transaction, Type};

use super::batch::{Frame, Insert};
use super::postgres::PgEngine;
use super::sql::Sql;
use super::sqlite::SqliteEngine;
use super::{Backend, StoreError};

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
    },
    /// A lead upsert's `RETURNING id, email`.
    Lead { id: String, email: String },
    /// A `RETURNING id`.
    Id(String),
}

impl Returned {
    /// Tells the rows apart by their width: 4 columns (probe), 2 (lead upsert), 1 (id).
    pub(super) fn decode<'r, R>(r: &'r R) -> Result<Returned, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(match r.len() {
            4 => Returned::Replay {
                form_id: r.try_get(0)?,
                idempotency_key: r.try_get(1)?,
                id: r.try_get(2)?,
                lead_id: r.try_get(3)?,
            },
            2 => Returned::Lead {
                id: r.try_get(0)?,
                email: r.try_get(1)?,
            },
            _ => Returned::Id(r.try_get(0)?),
        })
    }
}

/// Where an engine's SQL and write path differ, as plain data.
#[derive(Debug)]
pub(super) struct Dialect {
    pub backend: Backend,
    /// Placeholders bind by position as anonymous `?` (SQLite: binding `$n` is a lookup by
    /// name per parameter, which turns a multi-row statement's binding quadratic).
    pub anonymous_placeholders: bool,
    /// Appended to the outbox claim's inner `SELECT` (`FOR UPDATE SKIP LOCKED`).
    pub claim_lock: &'static str,
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
/// [`Sql`] (bound by the module's own `query` function) and decoding rows by name.
macro_rules! native_statements {
    ($db:ty, $row:ty) => {
        async fn fetch_all<'e, E, T>(ex: E, sql: &'e Sql) -> Result<Vec<T>, StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
            T: Record + 'e,
        {
            Ok(query(sql)
                .try_map(|r: $row| T::from_row(&r))
                .fetch_all(ex)
                .await?)
        }

        async fn fetch_optional<'e, E, T>(ex: E, sql: &'e Sql) -> Result<Option<T>, StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
            T: Record + 'e,
        {
            Ok(query(sql)
                .try_map(|r: $row| T::from_row(&r))
                .fetch_optional(ex)
                .await?)
        }

        async fn execute<'e, E>(ex: E, sql: &'e Sql) -> Result<u64, StoreError>
        where
            E: Executor<'e, Database = $db> + 'e,
        {
            Ok(query(sql).execute(ex).await?.rows_affected())
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

/// Where a statement runs: a pool (any free connection) or one connection.
pub(super) enum Exec<'c> {
    SqlitePool(&'c SqlitePool),
    SqliteConn(&'c mut SqliteConnection),
    PgPool(&'c PgPool),
    PgConn(&'c mut PgConnection),
}

macro_rules! dispatch {
    ($exec:expr, $method:ident($($arg:expr),*)) => {
        match $exec {
            Exec::SqlitePool(p) => SqliteEngine::$method(p, $($arg),*).await,
            Exec::SqliteConn(c) => SqliteEngine::$method(c, $($arg),*).await,
            Exec::PgPool(p) => PgEngine::$method(p, $($arg),*).await,
            Exec::PgConn(c) => PgEngine::$method(c, $($arg),*).await,
        }
    };
}

impl Exec<'_> {
    pub(super) async fn fetch_all<T: Record>(self, sql: &Sql) -> Result<Vec<T>, StoreError> {
        dispatch!(self, fetch_all(sql))
    }

    pub(super) async fn fetch_optional<T: Record>(
        self,
        sql: &Sql,
    ) -> Result<Option<T>, StoreError> {
        dispatch!(self, fetch_optional(sql))
    }

    pub(super) async fn fetch_one<T: Record>(self, sql: &Sql) -> Result<T, StoreError> {
        self.fetch_optional(sql)
            .await?
            .ok_or_else(|| StoreError::Other(sqlx::Error::RowNotFound))
    }

    pub(super) async fn execute(self, sql: &Sql) -> Result<u64, StoreError> {
        dispatch!(self, execute(sql))
    }

    pub(super) async fn raw(self, text: &str) -> Result<(), StoreError> {
        dispatch!(self, raw(text))
    }

    pub(super) async fn explain(self, sql: &str) -> Result<Vec<String>, StoreError> {
        dispatch!(self, explain(sql))
    }
}

/// One connection, for what needs a connection of its own: a batch write.
pub(super) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl<'c> Conn<'c> {
    pub(super) fn exec(self) -> Exec<'c> {
        match self {
            Conn::Sqlite(c) => Exec::SqliteConn(c),
            Conn::Postgres(c) => Exec::PgConn(c),
        }
    }

    pub(super) async fn write(
        self,
        probe: Option<&Sql>,
        inserts: &[Insert<'_>],
        frame: Frame,
    ) -> Result<Vec<Returned>, StoreError> {
        let inserts: Vec<&Insert<'_>> = inserts.iter().filter(|i| !i.is_empty()).collect();
        match self {
            Conn::Sqlite(c) => SqliteEngine::write(c, probe, &inserts, frame).await,
            Conn::Postgres(c) => PgEngine::write(c, probe, &inserts, frame).await,
        }
    }
}

/// The store's pools, on the engine the URL named.
#[derive(Clone, Debug)]
pub(super) enum Pools {
    /// SQLite has one writer at a time: the writer pool has exactly one connection (queueing
    /// in the pool is cheaper than spinning on SQLITE_BUSY); readers get their own pool so
    /// they never wait behind it (WAL).
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

impl Pools {
    pub(super) fn dialect(&self) -> &'static Dialect {
        match self {
            Pools::Sqlite { .. } => &SqliteEngine::DIALECT,
            Pools::Postgres(_) => &PgEngine::DIALECT,
        }
    }

    pub(super) fn reader(&self) -> Exec<'_> {
        match self {
            Pools::Sqlite { reader, .. } => Exec::SqlitePool(reader),
            Pools::Postgres(p) => Exec::PgPool(p),
        }
    }

    pub(super) fn writer(&self) -> Exec<'_> {
        match self {
            Pools::Sqlite { writer, .. } => Exec::SqlitePool(writer),
            Pools::Postgres(p) => Exec::PgPool(p),
        }
    }

    /// A transaction on a writer connection.
    pub(super) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Pools::Sqlite { writer, .. } => Tx::Sqlite(writer.begin().await?),
            Pools::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A writer connection to hold.
    pub(super) async fn acquire(&self) -> Result<Pooled, StoreError> {
        Ok(match self {
            Pools::Sqlite { writer, .. } => Pooled::Sqlite(writer.acquire().await?),
            Pools::Postgres(p) => Pooled::Postgres(p.acquire().await?),
        })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Pools::Sqlite { writer, .. } => super::sqlite::MIGRATIONS.run(writer).await?,
            Pools::Postgres(p) => super::postgres::MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    pub(super) async fn close(&self) {
        match self {
            Pools::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

/// A writer connection taken from its pool.
pub(super) enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    pub(super) fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }

    pub(super) fn exec(&mut self) -> Exec<'_> {
        self.conn().exec()
    }

    /// Closes the connection when dropped instead of returning it to the pool.
    pub(super) fn close_on_drop(&mut self) {
        match self {
            Pooled::Sqlite(c) => c.close_on_drop(),
            Pooled::Postgres(c) => c.close_on_drop(),
        }
    }
}

/// An open transaction; rolled back when dropped uncommitted.
pub(super) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub(super) fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(t) => Conn::Sqlite(t),
            Tx::Postgres(t) => Conn::Postgres(t),
        }
    }

    pub(super) fn exec(&mut self) -> Exec<'_> {
        self.conn().exec()
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}
