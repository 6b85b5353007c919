//! Building and running the application: what `inlet serve` and the tests both use.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use secrecy::ExposeSecret;

use crate::config::{ConfigError, Settings};
use crate::forms::FormRegistry;
use crate::mail::{Composer, MailError, Mailer, Templates};
use crate::rate_limit::RateLimits;
use crate::routes::{self, Pages};
use crate::store::{LeadStore, StoreError};
use crate::telemetry::Metrics;
use crate::worker::OutboxWorker;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("setting database.url (DATABASE_URL): cannot open the database: {0}")]
    Database(#[source] StoreError),
    #[error("setting server.bind (INLET_BIND): cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(#[source] std::io::Error),
    #[error(transparent)]
    Mail(#[from] MailError),
}

/// Everything a handler needs; owned by the app (no globals), shared through `web::Data`.
pub struct AppState {
    /// What every time-dependent decision reads (see [`crate::clock`]).
    pub clock: crate::clock::Clock,
    pub settings: Arc<Settings>,
    pub forms: FormRegistry,
    pub store: LeadStore,
    pub limits: RateLimits,
    pub metrics: Arc<Metrics>,
    pub templates: Templates,
    pub pages: Pages,
    /// The console's pages.
    pub console: crate::console::ConsolePages,
    /// Form views counted since the last write (see [`crate::views`]).
    pub views: Arc<crate::views::ViewCounter>,
    /// Counts console sign-in attempts (per account, per client IP).
    pub sign_in: crate::console::SignInThrottle,
    /// The embed script, its stylesheet and the demo files, prepared once.
    pub assets: Arc<crate::snippet::Assets>,
    /// Signed links (confirm, download, unsubscribe) and delivery decisions.
    pub links: Arc<crate::consent::Links>,
    /// Each download form's asset.
    pub downloads: crate::consent::ResolvedAssets,
    pub public_url: String,
    /// Wakes the outbox worker as soon as a submission with messages commits.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// The group-commit writer every submission goes through.
    pub writer: crate::store::writer::SubmissionWriter,
    /// Bodies arriving right now, per client (see [`crate::routes::body_deadline`]).
    pub body_reads: crate::routes::BodyReads,
    /// Which supervised background tasks are running (for `/readyz`).
    pub health: crate::supervisor::TaskHealth,
    /// Faults to inject into background tasks (fault tests only).
    #[doc(hidden)]
    pub faults: crate::supervisor::Faults,
    /// Signs and checks forms' proof-of-work challenges.
    pub pow: crate::challenge::PowKey,
    /// Scoring, stages, hand-offs and webhooks (rules built once).
    pub qualifier: Arc<crate::qualify::Qualifier>,
    /// Asks CAPTCHA providers whether a token passed (the one outbound call a request
    /// makes, bounded by `CAPTCHA_TIMEOUT`).
    pub http: reqwest::Client,
    /// Checks the reply addresses and click redirects of sequence mail.
    pub tokens: crate::sequences::Tokens,
}

/// When the report rollup job first runs after startup, and how often after that.
const ROLLUP_DELAY: Duration = Duration::from_secs(60);
const ROLLUP_EVERY: Duration = Duration::from_secs(300);
/// Days back in which a follow-up may still be retried (the default schedule gives up after
/// about five days).
const RETRY_HORIZON_DAYS: i64 = 7;

/// How long a CAPTCHA provider has to answer before the submission is kept as unverified.
pub const CAPTCHA_TIMEOUT: Duration = Duration::from_secs(5);

impl AppState {
    pub fn ip_hash_key(&self) -> &[u8] {
        self.settings
            .privacy
            .ip_hash_key
            .as_ref()
            .map_or(&[][..], |k| k.expose_secret().as_bytes())
    }
}

/// What the settings alone make (no database, no network, nothing written): forms, email
/// templates, the pages, the embed script's assets, each download form's asset, the sender and
/// the DKIM key. Built exactly once at startup; `inlet check-config` builds the same to check a
/// configuration without serving.
pub struct Components {
    pub forms: FormRegistry,
    pub templates: Templates,
    pub pages: Pages,
    pub console: crate::console::ConsolePages,
    pub assets: Arc<crate::snippet::Assets>,
    pub downloads: crate::consent::ResolvedAssets,
    pub default_from: lettre::message::Mailbox,
    pub dkim: Option<Arc<lettre::message::dkim::DkimConfig>>,
    /// Scoring rules, stage rules, owners and routes, webhook endpoints.
    pub qualifier: Arc<crate::qualify::Qualifier>,
}

impl Components {
    /// Builds every part, each checked as it is built; `public_url` is where links point.
    pub fn build(settings: &Settings, public_url: &str) -> Result<Components, StartupError> {
        let forms = FormRegistry::build(settings)?;
        let templates = Templates::build(settings)?;
        let pages = Pages::new().map_err(|e| StartupError::Server(std::io::Error::other(e)))?;
        let console = crate::console::ConsolePages::new()
            .map_err(|e| StartupError::Server(std::io::Error::other(e)))?;
        let default_from = crate::mail::parse_mailbox(&settings.mail.from)
            .map_err(|m| ConfigError::invalid("mail.from (INLET_MAIL_FROM)", m))?;
        let assets = Arc::new(crate::snippet::Assets::load());
        let downloads = crate::consent::ResolvedAssets::resolve(settings, &assets, public_url)?;
        let dkim = settings
            .mail
            .dkim
            .as_ref()
            .map(crate::mail::load_dkim)
            .transpose()?;
        let qualifier = Arc::new(crate::qualify::Qualifier::build(settings)?);
        Ok(Components {
            qualifier,
            forms,
            templates,
            pages,
            console,
            assets,
            downloads,
            default_from,
            dkim,
        })
    }

    /// `inlet check-config`: the values (already checked when loaded) and every built part,
    /// for the address the settings would serve on.
    pub fn check(settings: &Settings) -> Result<Components, StartupError> {
        let public_url = settings.public_url(settings.bind_addr()?);
        Components::build(settings, &public_url)
    }
}

/// Runs one of the worker's loops (`run`) under the supervisor as task `name`: restarted
/// after a panic, stopped by `stop`.
fn supervised_worker<Fut>(
    state: &web::Data<AppState>,
    worker: &OutboxWorker,
    stop: &tokio::sync::watch::Receiver<bool>,
    name: &'static str,
    run: fn(OutboxWorker, tokio::sync::watch::Receiver<bool>) -> Fut,
) -> tokio::task::JoinHandle<()>
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (worker, faults, stop) = (worker.clone(), state.faults.clone(), stop.clone());
    crate::supervisor::supervise(
        name,
        &state.health,
        state.metrics.clone(),
        move || {
            let (worker, faults, stop) = (worker.clone(), faults.clone(), stop.clone());
            async move {
                faults.check(name);
                run(worker, stop).await;
            }
        },
        async {},
    )
}

/// Records the configured sequences' definitions and applies what changed. Instances starting
/// together take turns (a lease on the job): the first applies the change, the next finds its
/// definitions unchanged.
async fn sync_sequences(
    store: &LeadStore,
    qualifier: &crate::qualify::Qualifier,
    clock: &crate::clock::Clock,
    instance: &str,
) -> Result<(), crate::store::StoreError> {
    const JOB: &str = "sequence_definitions";
    let waited = tokio::time::Instant::now();
    while !store
        .take_lease(JOB, instance, clock.now_ms(), JOB_LEASE_MS)
        .await?
    {
        if waited.elapsed() > Duration::from_secs(60) {
            tracing::warn!(
                "another instance held the sequence definitions for a minute; applying them anyway"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = apply_sequences(store, qualifier, clock.now_ms()).await;
    store.release_lease(JOB, instance).await?;
    synced
}

/// Whether this instance holds (took or renewed) the lease on a periodic `job`: with several
/// instances on one database only the holder runs it, and another takes over when the holder
/// stops renewing. A database error counts as not holding it (the next tick tries again).
async fn holds_job(
    store: &LeadStore,
    job: &str,
    instance: &str,
    now_ms: i64,
    lease_ms: i64,
) -> bool {
    match store.take_lease(job, instance, now_ms, lease_ms).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, job, "cannot take the job's lease; will retry");
            false
        }
    }
}

/// How long a job's lease lasts when its holder does not give it back (killed mid-job).
const JOB_LEASE_MS: i64 = 60_000;

/// Records the step order each sequence now runs with; a changed sequence is applied as
/// `inlet sequences plan --apply` would (finished enrolments gain appended steps when the
/// sequence says so), and the change is logged.
async fn apply_sequences(
    store: &LeadStore,
    qualifier: &crate::qualify::Qualifier,
    now_ms: i64,
) -> Result<(), crate::store::StoreError> {
    let sequences = &qualifier.sequences;
    let plans = crate::sequences::plan::plan(store, sequences).await?;
    if plans.iter().all(|p| p.status == "unchanged") {
        return Ok(());
    }
    let reopened =
        crate::sequences::plan::apply(store, sequences, &plans, (qualifier.max_attempts(), now_ms))
            .await?;
    for p in plans.iter().filter(|p| p.status != "unchanged") {
        tracing::info!(sequence = %p.id, status = p.status, steps = ?p.new_steps,
            active = p.active, gains = ?p.gains, loses = ?p.loses, "sequence definition recorded");
    }
    if reopened > 0 {
        tracing::info!(reopened, "finished enrolments re-opened for appended steps");
    }
    Ok(())
}

pub struct Application {
    addr: SocketAddr,
    server: Server,
    state: web::Data<AppState>,
    worker: OutboxWorker,
    worker_task: Option<tokio::task::JoinHandle<()>>,
    qualifier_task: Option<tokio::task::JoinHandle<()>>,
    stop_worker: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Builds every part once (each checked as it is built; the values were checked when the
    /// settings were loaded), opens the database (running migrations), binds the listener.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        Self::build_with_clock(settings, crate::clock::Clock::system()).await
    }

    /// [`Application::build`] on a given clock (tests pass an adjustable one).
    pub async fn build_with_clock(
        settings: Settings,
        clock: crate::clock::Clock,
    ) -> Result<Application, StartupError> {
        settings.validate_scalars()?;
        let store = LeadStore::connect(&settings.database, settings.suppression_key())
            .await
            .map_err(StartupError::Database)?;
        let bind = settings.bind_addr()?;
        let listener =
            TcpListener::bind(bind).map_err(|source| StartupError::Bind { addr: bind, source })?;
        let addr = listener.local_addr().map_err(StartupError::Server)?;
        let public_url = settings.public_url(addr);
        let Components {
            forms,
            templates,
            pages,
            console,
            assets,
            downloads,
            default_from,
            dkim,
            qualifier,
        } = Components::build(&settings, &public_url)?;
        let metrics = Arc::new(Metrics::new());
        let shared_limits = crate::rate_limit::shared::Shared::new(
            &settings.redis,
            store.limiter_secret(),
            metrics.redis.clone(),
        )
        .map_err(|e| StartupError::Server(std::io::Error::other(e)))?
        .map(Arc::new);
        let limits = RateLimits::new(
            &settings.rate_limit,
            forms.len(),
            settings.trusted_proxies()?,
        )
        .with_spam_burst(settings.spam.burst)
        .with_shared(shared_limits.clone());
        let mailer = Mailer::from_settings(&settings.mail)?;
        let generated;
        let secrets: Vec<&[u8]> = if settings.consent.signing_keys.is_empty() {
            generated = store
                .generated_signing_key()
                .await
                .map_err(StartupError::Database)?;
            vec![generated.as_bytes()]
        } else {
            settings
                .consent
                .signing_keys
                .iter()
                .map(|k| k.expose_secret().as_bytes())
                .collect()
        };
        let links = Arc::new(crate::consent::Links::new(
            crate::consent::Signer::new(secrets)
                .with_unsubscribe_key(&store.unsubscribe_link_secret()),
            &public_url,
            &settings.consent,
            default_from.email.domain(),
            clock.clone(),
        ));
        let outbox_wake = Arc::new(tokio::sync::Notify::new());
        let store = store
            .with_events(qualifier.events_needed())
            .with_sequence_exits(qualifier.sequences.exit_forms());
        let tokens = crate::sequences::Tokens::new(store.sequence_secret());
        let instance = uuid::Uuid::new_v4().to_string();
        sync_sequences(&store, &qualifier, &clock, &instance)
            .await
            .map_err(StartupError::Database)?;
        let deliverer = if qualifier.webhooks.is_empty() && qualifier.crms.is_empty() {
            None
        } else {
            Some(
                crate::webhooks::Deliverer::new(
                    store.clone(),
                    qualifier.webhooks.clone(),
                    Arc::new(crate::crm::CrmTargets::new(
                        &qualifier.crms,
                        &store,
                        &qualifier.handoff.owners,
                    )),
                    metrics.clone(),
                )
                .map_err(|e| StartupError::Server(std::io::Error::other(e)))?,
            )
        };
        let worker = OutboxWorker::new(crate::worker::WorkerParts {
            store: store.clone(),
            mailer,
            composer: Composer::new(
                templates.clone(),
                forms.clone(),
                default_from,
                links.clone(),
                dkim,
            )
            .with_sequences(crate::mail::SequenceMail {
                sequences: qualifier.sequences.clone(),
                tokens: tokens.clone(),
                reply_to: settings.replies.address.clone(),
                public_url: public_url.clone(),
            }),
            settings: settings.outbox.clone(),
            metrics: metrics.clone(),
            wake: outbox_wake.clone(),
            console: settings.console.clone(),
            public_url: public_url.clone(),
            qualifier: qualifier.clone(),
            deliverer,
            links: links.clone(),
            send_deadline: Duration::from_secs(settings.mail.timeout_secs.saturating_mul(3).max(1)),
            clock: clock.clone(),
        });
        let writers = match store.backend() {
            crate::store::Backend::Sqlite => 1,
            crate::store::Backend::Postgres => settings.writer.postgres_writers.max(1),
        };
        let health = crate::supervisor::TaskHealth::default();
        let faults = crate::supervisor::Faults::default();
        let writer = crate::store::writer::SubmissionWriter::start(
            store.clone(),
            crate::store::writer::WriterConfig {
                max_batch: settings.writer.max_batch,
                max_wait: Duration::from_micros(settings.writer.max_wait_us),
                queue_capacity: settings.writer.queue_capacity,
                writers,
            },
            metrics.clone(),
            (&health, &faults),
        );
        let settings_console = settings.console.clone();
        let state = web::Data::new(AppState {
            tokens,
            clock,
            health: health.clone(),
            faults: faults.clone(),
            writer,
            body_reads: crate::routes::BodyReads::new(settings.server.max_body_reads_per_client),
            pow: crate::challenge::PowKey::new(&store.challenge_secret()),
            http: reqwest::Client::builder()
                .timeout(CAPTCHA_TIMEOUT)
                .build()
                .map_err(|e| StartupError::Server(std::io::Error::other(e)))?,
            assets,
            links,
            qualifier,
            downloads,
            public_url,
            settings: Arc::new(settings),
            forms,
            store,
            limits,
            metrics,
            templates,
            pages,
            console,
            sign_in: crate::console::SignInThrottle::new(&settings_console)
                .with_shared(shared_limits),
            views: Arc::new(crate::views::ViewCounter::default()),
            outbox_wake,
        });

        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                // Browsers must not guess a type for anything Inlet answers (JSON, PDFs,
                // metrics, pages): added where a handler did not set it.
                .wrap(
                    middleware::DefaultHeaders::new()
                        .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
                )
                .wrap(middleware::from_fn(crate::routes::body_deadline))
                .wrap(middleware::from_fn(crate::telemetry::request_span))
                .configure(routes::configure)
        })
        .shutdown_timeout(15)
        .listen(listener)
        .map_err(StartupError::Server)?;
        if let Some(n) = state.settings.server.workers {
            server = server.workers(n.max(1));
        }
        let server = server.run();

        let evict_state = state.clone();
        let evictor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                evict_state.limits.evict_stale();
                evict_state.sign_in.evict_stale();
            }
        });
        let retention_state = state.clone();
        let retention_instance = instance.clone();
        let retention = tokio::spawn(async move {
            let every =
                Duration::from_secs(retention_state.settings.retention.interval_secs.max(60));
            let mut tick = tokio::time::interval(every);
            let lease_ms = i64::try_from(every.as_millis() * 3 / 2).unwrap_or(i64::MAX);
            loop {
                tick.tick().await;
                let now = retention_state.clock.now_ms();
                if !holds_job(
                    &retention_state.store,
                    "retention",
                    &retention_instance,
                    now,
                    lease_ms,
                )
                .await
                {
                    continue;
                }
                match retention_state
                    .store
                    .apply_retention(now, &retention_state.settings.retention)
                    .await
                {
                    Ok(r) if r != crate::store::RetentionReport::default() => {
                        tracing::info!(?r, "retention job deleted expired data");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention job failed; will retry"),
                }
            }
        });
        let views_state = state.clone();
        let views = tokio::spawn(async move {
            let every = Duration::from_secs(views_state.settings.views.flush_secs.max(1));
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = crate::views::flush(&views_state.views, &views_state.store).await {
                    tracing::warn!(error = %e, "form views not written yet; will retry");
                }
            }
        });
        let rollup_state = state.clone();
        let rollups = tokio::spawn(async move {
            // Counts settled days into the report rollup, paced so a catch-up after a long
            // downtime never holds SQLite's writer for long; a report counts any day still
            // missing itself.
            let start = tokio::time::Instant::now() + ROLLUP_DELAY;
            let mut tick = tokio::time::interval_at(start, ROLLUP_EVERY);
            let lease_ms = i64::try_from(ROLLUP_EVERY.as_millis() * 3 / 2).unwrap_or(i64::MAX);
            loop {
                tick.tick().await;
                let now = rollup_state.clock.now_ms();
                if !holds_job(
                    &rollup_state.store,
                    "report_rollup",
                    &instance,
                    now,
                    lease_ms,
                )
                .await
                {
                    continue;
                }
                let today = now.div_euclid(crate::store::DAY_MS);
                let settled = crate::store::first_live_day(now);
                for day in (today - crate::reports::MAX_DAYS)..settled {
                    // Within the retry horizon a day's follow-ups may still change: counted
                    // again every run; older days only when missing or changed.
                    let counted = if day >= today - RETRY_HORIZON_DAYS {
                        rollup_state.store.roll_up_day(day, now).await.map(|()| 1)
                    } else {
                        rollup_state.store.roll_up_missing(day, day + 1, now).await
                    };
                    match counted {
                        Ok(0) => continue,
                        Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "report rollup failed; will retry");
                            break;
                        }
                    }
                }
            }
        });
        let (stop_worker, stop_rx) = tokio::sync::watch::channel(false);
        let worker_task = state.settings.outbox.worker_enabled.then(|| {
            supervised_worker(&state, &worker, &stop_rx, "outbox_worker", |w, stop| {
                w.run(stop)
            })
        });
        let qualifier_task = (state.settings.outbox.worker_enabled
            && (state.store.events_enabled()
                || !state.qualifier.handoff.owners.is_empty()
                || !state.qualifier.webhooks.is_empty()
                || !state.qualifier.crms.is_empty()))
        .then(|| {
            supervised_worker(&state, &worker, &stop_rx, "qualifier", |w, stop| {
                w.run_qualifier(stop)
            })
        });
        Ok(Application {
            addr,
            server,
            state,
            worker,
            worker_task,
            qualifier_task,
            stop_worker,
            background: vec![evictor, retention, views, rollups],
        })
    }

    /// With no console account yet: a fresh one-time set-up link (printed in the startup
    /// banner, so a newcomer is one click from the console). `None` once someone exists.
    pub async fn console_banner(&self) -> Result<Option<String>, StoreError> {
        let state = &self.state;
        if state.store.user_count().await? > 0 {
            return Ok(None);
        }
        crate::console::issue_link(
            &state.store,
            None,
            state.clock.now_ms(),
            &state.settings.console,
            &state.public_url,
        )
        .await
        .map(Some)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The outbox worker (tests drive it with `run_once` / `drain`).
    pub fn outbox_worker(&self) -> OutboxWorker {
        self.worker.clone()
    }

    /// A handle that stops the server gracefully (in-flight requests finish).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle). Then the HTTP server drains its
    /// in-flight requests, the outbox worker finishes and marks the batch it is sending, and
    /// the database is closed. Unsent messages stay in the outbox for the next start.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        // In-flight requests have their answers; commit anything still queued, then stop.
        self.state.writer.shutdown().await;
        let _ = self.stop_worker.send(true);
        let grace = Duration::from_millis(self.state.settings.outbox.lease_ms.min(30_000));
        for (task, name) in [
            (self.worker_task, "outbox worker"),
            (self.qualifier_task, "qualification worker"),
        ] {
            if let Some(task) = task {
                if tokio::time::timeout(grace, task).await.is_err() {
                    tracing::warn!(
                        worker = name,
                        "worker did not finish in time; leases will expire"
                    );
                }
            }
        }
        for task in &self.background {
            task.abort();
        }
        if let Err(e) = crate::views::flush(&self.state.views, &self.state.store).await {
            tracing::warn!(error = %e, "form views counted since the last write are lost");
        }
        self.state.store.close().await;
        result
    }
}
