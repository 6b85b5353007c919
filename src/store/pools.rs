//! The store's pools and connections on the engine chosen at startup, handing each call to
//! that engine's native implementation ([`Engine`]).

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Postgres, Sqlite, Transaction};

use super::batch::{Frame, Insert};
use super::dialect::Dialect;
use super::engine::{Engine, Record, Returned};
use super::postgres::PgEngine;
use super::sql::Sql;
use super::sqlite::SqliteEngine;
use super::StoreError;

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
    /// The same place for one more statement (a connection is reborrowed, not given away).
    pub(super) fn again(&mut self) -> Exec<'_> {
        match self {
            Exec::SqlitePool(p) => Exec::SqlitePool(p),
            Exec::SqliteConn(c) => Exec::SqliteConn(c),
            Exec::PgPool(p) => Exec::PgPool(p),
            Exec::PgConn(c) => Exec::PgConn(c),
        }
    }

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
