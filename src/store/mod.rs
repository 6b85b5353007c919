//! Lead storage: the only place SQL lives.
//!
//! One implementation serves SQLite and PostgreSQL through `sqlx::Any`: the SQL is portable
//! (`$1` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT millisecond timestamps), and what
//! differs per engine (connection set-up, migrations, lock clauses) lives in [`Backend`].
//! A contract test suite runs every behaviour against both engines.

mod backend;
mod batch;
mod double_opt_in;
mod downloads;
mod gdpr;
mod leads;
mod ledger;
mod models;
mod outbox;
mod plans;
mod postgres;
mod retention;
mod seed;
mod signing_keys;
mod sql;
mod suppression;
pub mod writer;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use backend::Backend;
pub use double_opt_in::{ConfirmOutcome, PendingSubmission};
pub use downloads::{DownloadRecord, ResendOutcome};
pub use leads::WriteConn;
pub use ledger::Actor;
pub use models::{
    BatchItem, Cursor, LeadQuery, LeadRecord, Page, Recorded, SubmissionQuery, SubmissionRecord,
};
pub use outbox::{ClaimedMessage, OutboxRecord, OutboxStats, RetryTarget};
pub use plans::QueryPlan;
pub use retention::RetentionReport;

use crate::config::DatabaseSettings;
use secrecy::ExposeSecret;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("a concurrent request committed the same idempotency key first")]
    Conflict,
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// An equivalent error (driver errors are not `Clone`), for answering each request of a
    /// batch that failed as a whole.
    pub fn replicate(&self) -> StoreError {
        match self {
            StoreError::Unavailable(inner) => {
                StoreError::Unavailable(sqlx::Error::Protocol(format!("batch failed: {inner}")))
            }
            StoreError::Conflict => StoreError::Conflict,
            other => StoreError::Corrupt(format!("batch failed: {other}")),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Other(e)
        }
    }
}

/// Errors that mean "the database cannot be reached or is overloaded right now" (503), as
/// opposed to a bug (500).
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), insufficient resources (53), operator
            // intervention (57: admin shutdown, cannot connect now), database gone (3D000),
            // database not accepting connections (55000), authentication failed (28).
            // SQLite: BUSY (5) and LOCKED (6), and their extended codes.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code.starts_with("28")
                || code == "3D000"
                || code == "55000"
                || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// The lead store. Cheap to clone (pools are reference-counted).
#[derive(Clone, Debug)]
pub struct LeadStore {
    backend: Backend,
    /// All writes go here. On SQLite this pool has exactly one connection: SQLite has one
    /// writer at a time, and queueing in the pool is cheaper than spinning on SQLITE_BUSY.
    writer: AnyPool,
    /// Reads. On SQLite a separate pool so readers never wait behind the writer (WAL).
    reader: AnyPool,
    /// PostgreSQL's native pool, for what has moved off `sqlx::Any` (see [`postgres`]).
    pg: Option<sqlx::PgPool>,
}

impl LeadStore {
    /// Connects (creating the SQLite file if needed) and, if asked, runs migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<LeadStore, StoreError> {
        sqlx::any::install_default_drivers();
        let url = settings.url.expose_secret();
        let backend = Backend::from_url(url)
            .map_err(|m| StoreError::Unavailable(sqlx::Error::Configuration(m.into())))?;
        let acquire = Duration::from_millis(settings.acquire_timeout_ms);
        let url = backend::connect_url(backend, url);
        let store = match backend {
            Backend::Sqlite => {
                let sync = settings.sqlite_synchronous.clone();
                let busy_ms = settings.acquire_timeout_ms;
                let pragmas = move || {
                    format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                         PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; \
                         PRAGMA temp_store = MEMORY;"
                    )
                };
                // The writer gets a larger page cache (32 MiB); readers keep SQLite's default so
                // memory stays bounded however many readers there are.
                let p1 = {
                    let pragmas = pragmas.clone();
                    move || format!("{} PRAGMA cache_size = -32000;", pragmas())
                };
                let writer = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(acquire)
                    .after_connect(move |conn, _| {
                        let sql = p1();
                        Box::pin(async move {
                            conn.execute(sql.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                let reader = AnyPoolOptions::new()
                    .max_connections(settings.max_connections.max(1))
                    .acquire_timeout(acquire)
                    .after_connect(move |conn, _| {
                        let sql = pragmas();
                        Box::pin(async move {
                            conn.execute(sql.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy(&url)?;
                LeadStore {
                    backend,
                    writer,
                    reader,
                    pg: None,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(settings.max_connections.max(2))
                    .acquire_timeout(acquire)
                    .connect(&url)
                    .await?;
                // The writers' native connections: no ping on acquire (a dead connection fails
                // its statement, which the writer answers 503 and retries on a fresh one).
                let pg = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(settings.max_connections.max(2))
                    .acquire_timeout(acquire)
                    .test_before_acquire(false)
                    .connect_lazy(&url)?;
                LeadStore {
                    backend,
                    writer: pool.clone(),
                    reader: pool,
                    pg: Some(pg),
                }
            }
        };
        if settings.migrate_on_start {
            store.migrate().await?;
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        backend::migrator(self.backend).run(&self.writer).await?;
        Ok(())
    }

    /// Readiness: can we run a query right now?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }
}

fn get<'r, T>(row: &'r AnyRow, idx: usize) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(idx).map_err(StoreError::from)
}
