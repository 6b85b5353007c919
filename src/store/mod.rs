//! Lead storage: the only place SQL lives.
//!
//! The seam: `engine::Engine` is what each database implements natively on its own sqlx
//! driver, `sqlite/` (`SqlitePool`: one writer, readers beside it, padded multi-statement
//! batches) and `postgres/` (`PgPool`: array parameters, `FOR UPDATE SKIP LOCKED`). The
//! engine is chosen once, from the URL, in [`LeadStore::connect`]; the concerns above it
//! (leads and the write path, outbox, consent ledger, double opt-in, downloads, suppression,
//! GDPR, retention, signing keys) are written once, rows decoded by name with `FromRow`. One
//! contract test suite runs every behaviour against both engines.

mod batch;
mod challenges;
mod console_mail;
mod dialect;
mod double_opt_in;
mod downloads;
mod engine;
mod gdpr;
mod imports;
mod keys;
mod leads;
mod leases;
mod ledger;
mod models;
mod outbox;
mod plans;
mod pools;
mod postgres;
mod qualification;
mod quarantine;
mod retention;
mod seed;
mod sequences;
mod signing_keys;
mod sql;
mod sqlite;
mod stats;
mod status;
mod suppression;
mod users;
mod views;
mod webhooks;
pub mod writer;

pub use crate::config::Engine as Backend;
pub use console_mail::{ConsoleMail, ConsoleMailOutcome};
pub use double_opt_in::{ConfirmOutcome, PendingSubmission};
pub use downloads::{DownloadRecord, ResendOutcome};
pub use gdpr::{ConsentEntry, DownloadEntry, LeadHistory, LeadSummary, SuppressionEntry};
pub use imports::{ImportedConsent, ImportedState};
pub use keys::{ApiKeyRecord, NewApiKey};
pub use leads::WriteConn;
pub use ledger::Actor;
pub use models::{
    BatchItem, Cursor, LeadQuery, LeadRecord, Page, Recorded, SubmissionQuery, SubmissionRecord,
};
pub use outbox::{ClaimedMessage, OutboxRecord, OutboxStats, RetryTarget};
pub use plans::QueryPlan;
pub use qualification::{
    Applied, ClaimedEvent, HandoffChange, HandoffMove, HandoffRecord, LeadActivity, NewDelivery,
    NewEvent, NewHandoff, NewStaffMail, Qualification, ScoreCache, StaffMail, StageChange,
    StageMove, StageRecord, OPEN_HANDOFF,
};
pub use retention::RetentionReport;
pub use sequences::{
    EnrolmentRecord, EnrolmentState, EnrolmentSteps, Exit, InteractionRecord, NewEnrolment,
    NextStep, SequenceCounts, SequenceMessage, StepEnd, StepRecord,
};
pub use stats::{first_live_day, DayFigures, Delivery, GroupBy, DAY_MS};
pub use status::LeadStatus;
pub use users::{LinkUse, SessionRecord, UserRecord};
pub use webhooks::{
    Attempt, AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryRecord, EndpointState,
    ReplayTarget, MAX_REPLAY,
};

use crate::config::DatabaseSettings;
use pools::Pools;
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
    #[error("the idempotency key was used before for a different submission")]
    KeyReused,
    #[error(
        "the suppression list was keyed with another key (fingerprint {recorded}, this one \
         {configured}): restore privacy.suppression_key (INLET_SUPPRESSION_KEY), or addresses \
         that unsubscribed would be mailed again"
    )]
    SuppressionKeyChanged {
        recorded: String,
        configured: String,
    },
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
            StoreError::KeyReused => StoreError::KeyReused,
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
            // SQLite: BUSY (5) and LOCKED (6), a full disk (FULL 13, or IOERR 10 when a
            // write fails for want of space), and their extended codes.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code.starts_with("28")
                || code == "3D000"
                || code == "55000"
                || code
                    .parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
        }
        _ => false,
    }
}

/// The lead store. Cheap to clone (pools are reference-counted).
#[derive(Clone, Debug)]
pub struct LeadStore {
    pools: Pools,
    /// Keys the suppression list (resolved once, at connect).
    suppression: crate::consent::SuppressionKey,
    /// Facts write integration events (see [`qualification`]): on when anything consumes
    /// them (scoring, stage rules, webhooks).
    events: bool,
    /// Form id -> the sequences a submission of it ends (see [`sequences`]).
    sequence_exits: std::sync::Arc<std::collections::BTreeMap<String, Vec<String>>>,
}

impl LeadStore {
    /// Connects to the engine the URL names (creating the SQLite file if needed), runs
    /// migrations if asked, and keys the suppression list: with `suppression_key`, or with a
    /// key generated once and kept in the database (see [`suppression`]).
    pub async fn connect(
        settings: &DatabaseSettings,
        suppression_key: Option<&[u8]>,
    ) -> Result<LeadStore, StoreError> {
        let url = settings.url.expose_secret();
        let backend = Backend::from_url(url)
            .map_err(|m| StoreError::Unavailable(sqlx::Error::Configuration(m.into())))?;
        let pools = match backend {
            Backend::Sqlite => {
                let (writer, reader) = sqlite::connect(settings, url).await?;
                Pools::Sqlite { writer, reader }
            }
            Backend::Postgres => Pools::Postgres(postgres::connect(settings, url).await?),
        };
        if settings.migrate_on_start {
            pools.migrate().await?;
        }
        let suppression = suppression::resolve_key(&pools, suppression_key).await?;
        Ok(LeadStore {
            pools,
            suppression,
            events: false,
            sequence_exits: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.pools.dialect().backend
    }

    fn dialect(&self) -> &'static dialect::Dialect {
        self.pools.dialect()
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.pools.migrate().await
    }

    /// Readiness: can we run a query right now?
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pools.reader().raw("SELECT 1").await
    }

    pub async fn close(&self) {
        self.pools.close().await;
    }
}
