//! Spawning the real application on a random port against a fresh database.
//!
//! Every behaviour runs twice through [`both_backends!`]: on a fresh SQLite file and on a fresh
//! PostgreSQL database (created per test, dropped afterwards). PostgreSQL comes from
//! `INLET_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`). When it
//! cannot be reached, the PostgreSQL half is skipped with a loud message — unless
//! `INLET_TEST_REQUIRE_POSTGRES=1` (set by `.ci/run`), where that is a failure.

use std::sync::OnceLock;

use inlet::config::Settings;
use inlet::startup::Application;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::Connection;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates, for each `async fn name(backend: Backend)`, one test per database.
#[macro_export]
macro_rules! both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident : Backend) $body:block)*) => {
        $(
            $(#[$meta])*
            async fn $name($backend: Backend) $body
        )*
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::helpers::postgres_available().await {
                        super::$name($crate::helpers::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

fn postgres_admin_url() -> String {
    std::env::var("INLET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Says loudly that part of the suite did not run: on stderr, and in a file that
/// scripts/test.sh prints in its last lines (the harness captures test output).
pub fn record_skip(notice: &str) {
    eprintln!("\n!!!!! {notice} !!!!!\n");
    let skips = concat!(env!("CARGO_MANIFEST_DIR"), "/target/inlet-test-skips");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skips)
    {
        use std::io::Write;
        let _ = writeln!(f, "{notice}");
    }
}

/// Whether PostgreSQL tests can run; fails the test when it is required but unreachable.
pub async fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    if let Some(a) = AVAILABLE.get() {
        return *a;
    }
    let ok = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::PgConnection::connect(&postgres_admin_url()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let required = std::env::var("INLET_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    if !ok && required {
        panic!(
            "PostgreSQL is required (INLET_TEST_REQUIRE_POSTGRES=1) but {} is unreachable",
            postgres_admin_url()
        );
    }
    if !ok {
        let notice = format!(
            "SKIPPED: every PostgreSQL test ({} is unreachable). Set INLET_TEST_POSTGRES_URL or \
             start PostgreSQL.",
            postgres_admin_url()
        );
        record_skip(&notice);
    }
    *AVAILABLE.get_or_init(|| ok)
}

/// A database made for one test and removed after it.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { name: String },
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::Sqlite(tempfile::tempdir().expect("tempdir")),
            Backend::Postgres => {
                let name = format!("inlet_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                TestDb::Postgres { name }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}", dir.path().join("inlet.db").display()),
            TestDb::Postgres { name } => {
                let admin = postgres_admin_url();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }

    /// Runs SQL as an administrator of the cluster (PostgreSQL only).
    pub async fn admin_sql(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("connect");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name } = self {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // Drop runs inside the test's runtime; use a fresh one on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                        let _ = sqlx::query(&sql).execute(&mut c).await;
                    }
                });
                Ok::<(), std::io::Error>(())
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// The app's outbox worker. The background loop is off in tests unless a test turns it on;
    /// tests drive delivery deterministically with [`TestApp::dispatch`].
    pub worker: inlet::worker::OutboxWorker,
    /// The running application's state (fault tests inject faults through it).
    pub state: actix_web::web::Data<inlet::startup::AppState>,
    /// Stops the HTTP server (gracefully with `stop(true)`).
    pub handle: actix_web::dev::ServerHandle,
    /// The task running the application; finishes after a stop.
    pub running: tokio::task::JoinHandle<std::io::Result<()>>,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    /// The application's clock; [`TestApp::advance`] moves it (no test sleeps for time to pass).
    pub clock: inlet::clock::Clock,
    hand: inlet::clock::ClockHand,
}

/// Runs `inlet` against a database URL (no other configuration).
pub fn cli(args: &[&str], database_url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_inlet"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "error")
        .env_remove("INLET_CONFIG")
        .output()
        .expect("run inlet")
}

/// Starts `inlet serve` and waits (bounded) until `/readyz` answers.
pub async fn spawn_inlet(env: &[(String, String)], dir: &std::path::Path) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inlet"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("inlet.log"))
        .expect("log file");
    cmd.arg("serve")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start inlet");
    let bind = &env.iter().find(|(k, _)| k == "INLET_BIND").unwrap().1;
    let url = format!("http://{bind}/readyz");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status() == 200 {
                return child;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("inlet exited early: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "inlet did not become ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Settings for tests: random port, fresh database, limits off unless a test turns them on.
pub fn test_settings(db: &TestDb, dir: &std::path::Path) -> Settings {
    let mut s = Settings::default_with_demo_forms();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = Some(2);
    s.database.url = SecretString::from(db.url());
    s.database.max_connections = 4;
    s.mail.mail_dir = dir.join("mail");
    s.admin.token = Some(SecretString::from(ADMIN_TOKEN));
    s.rate_limit.enabled = false;
    s.rate_limit.unconfirmed_mail_per_network_per_hour = 0;
    s.rate_limit.unconfirmed_mail_per_recipient_per_hour = 0;
    s.outbox.worker_enabled = false;
    // Tests send many submissions from 127.0.0.1 in a row; the burst signal has its own tests.
    s.spam.burst = 0;
    // Scoring, stages and hand-offs have their own tests (which turn the demo's on): mail to
    // sales would change what every other test counts.
    without_qualification(&mut s);
    s
}

/// Turns the demo's scoring, stage rules and owner off.
pub fn without_qualification(s: &mut Settings) {
    s.scoring = inlet::config::ScoringSettings::default();
    s.stages = inlet::config::StageSettings::default();
    s.handoff = inlet::config::HandoffSettings::default();
    // Sequences come with the demo too; their own tests turn them on.
    s.sequences.clear();
}

/// Turns the demo's scoring, stage rules and owner on.
pub fn with_demo_qualification(s: &mut Settings) {
    s.scoring = inlet::config::demo_scoring();
    s.stages = inlet::config::demo_stages();
    s.handoff = inlet::config::demo_handoff();
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
        if let Ok(level) = std::env::var("INLET_TEST_LOG") {
            inlet::telemetry::init(&inlet::config::LogSettings {
                level,
                ..Default::default()
            });
        }
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(&db, dir.path());
        configure(&mut settings);
        let (clock, hand) = inlet::clock::Clock::adjustable();
        let app = Application::build_with_clock(settings, clock.clone())
            .await
            .expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let worker = app.outbox_worker();
        let state = app.state();
        let handle = app.handle();
        let running = tokio::spawn(app.run_until_stopped());
        TestApp {
            address,
            worker,
            state,
            handle,
            running,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            db,
            dir,
            clock,
            hand,
        }
    }

    /// Sends every message due now, round after round, until none is left.
    pub async fn dispatch(&self) -> inlet::worker::RoundReport {
        self.worker
            .drain(self.clock.now_ms())
            .await
            .expect("dispatch")
    }

    /// A second Inlet instance on this app's database (its own worker, lease owner and
    /// address; its temporary files live in `dir`). Returns its worker and base URL.
    pub async fn second_instance(
        &self,
        dir: &std::path::Path,
        configure: impl FnOnce(&mut Settings),
    ) -> (inlet::worker::OutboxWorker, String) {
        let mut settings = test_settings(&self.db, dir);
        configure(&mut settings);
        let app = Application::build(settings)
            .await
            .expect("the second instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let worker = app.outbox_worker();
        tokio::spawn(app.run_until_stopped());
        (worker, address)
    }

    /// Moves the application's clock forward by `ms`, then dispatches what is due: makes
    /// backed-off retries due.
    pub async fn dispatch_after(&self, ms: i64) -> inlet::worker::RoundReport {
        self.advance(std::time::Duration::from_millis(u64::try_from(ms).unwrap()));
        self.dispatch().await
    }

    /// Moves the application's clock forward (links expire, retries fall due, retention ages).
    pub fn advance(&self, by: std::time::Duration) {
        self.hand.advance(by);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn submissions_url(&self, form: &str) -> String {
        self.url(&format!("/v1/forms/{form}/submissions"))
    }

    pub async fn post_json(&self, form: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.submissions_url(form))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A plain GET of one of the app's paths.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Posts until the answer is 201 or 5 s have passed (waiting for the server to recover,
    /// not a timing assertion); returns the last status.
    pub async fn post_until_created(&self, form: &str, body: &Value) -> u16 {
        let mut status = 0;
        for _ in 0..50 {
            status = self.post_json(form, body).await.status().as_u16();
            if status == 201 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        status
    }

    /// A plain HTML form post (no JavaScript): urlencoded, browser-like Accept.
    pub async fn post_form(&self, form: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.submissions_url(form))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_get(&self, path_and_query: &str) -> Value {
        let resp = self
            .client
            .get(self.url(path_and_query))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "admin GET {path_and_query}");
        resp.json().await.expect("json")
    }

    /// Every lead (non-spam), through the admin API.
    pub async fn leads(&self) -> Vec<Value> {
        self.admin_get("/v1/admin/leads?limit=500").await["leads"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The lead behind a public 201 answer, through the admin API (the public answer carries
    /// no lead id).
    pub async fn lead_of(&self, answer: &Value) -> String {
        let id = answer["submission_id"].as_str().expect("submission_id");
        let subs = self.submissions().await;
        let sub = subs
            .iter()
            .find(|s| s["id"] == id)
            .expect("the submission is listed");
        sub["lead_id"].as_str().expect("lead_id").to_string()
    }

    /// Erases a lead through the admin API (GDPR erasure).
    pub async fn erase(&self, lead_id: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/v1/admin/leads/{lead_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
    }

    /// Every submission, spam included, through the admin API.
    pub async fn submissions(&self) -> Vec<Value> {
        self.admin_get("/v1/admin/submissions?limit=500").await["submissions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// A valid contact submission, with the time-trap satisfied.
pub fn contact(email: &str) -> Value {
    serde_json::json!({
        "name": "Ann Example",
        "email": email,
        "company": "Example Ltd",
        "_elapsed_ms": 5000,
    })
}

/// A connection straight to the test database (not through Inlet).
pub enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

pub async fn raw(db: &TestDb) -> Raw {
    match db {
        TestDb::Sqlite(_) => Raw::Sqlite(sqlx::SqliteConnection::connect(&db.url()).await.unwrap()),
        TestDb::Postgres { .. } => {
            Raw::Postgres(sqlx::PgConnection::connect(&db.url()).await.unwrap())
        }
    }
}

impl Raw {
    pub async fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            Raw::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of every row, as text.
    pub async fn strings(&mut self, sql: &str) -> Vec<String> {
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await.unwrap(),
            Raw::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await.unwrap(),
        }
    }

    pub async fn count(&mut self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(&sql).fetch_one(c).await.unwrap(),
            Raw::Postgres(c) => sqlx::query_scalar(&sql).fetch_one(c).await.unwrap(),
        }
    }
}
