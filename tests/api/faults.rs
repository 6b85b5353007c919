//! Fault tests (issue 14): the durability contract — a 2xx means the lead is committed and
//! every follow-up it queued is sent — through the faults real deployments meet: the process
//! killed with SIGKILL under load, PostgreSQL stopped and started under load, SQLite's disk
//! filling up. Real processes, a real PostgreSQL server, a real (size-limited) file system.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{
    contact, raw, record_skip, spawn_inlet, test_settings, Backend, TestDb, ADMIN_TOKEN,
};
use crate::smtp::SmtpServer;

/// What clients submitting continuously saw.
#[derive(Default)]
pub struct Seen {
    /// Addresses whose submission got a 2xx.
    pub acknowledged: Vec<String>,
    /// Every HTTP status, in order, with whether a 503 carried `Retry-After`.
    pub statuses: Vec<(u16, bool)>,
    /// Requests that got no HTTP answer (connection refused or reset).
    pub unanswered: usize,
}

/// `clients` tasks submitting to `bases` in turn (a fresh address and idempotency key each
/// time, as the embed script does) until `stop`.
pub fn load(
    bases: Vec<String>,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let tasks = (0..clients)
        .map(|c| {
            let (http, bases, stop, seen) =
                (http.clone(), bases.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let base = &bases[(c + n) % bases.len()];
                    let email = format!("c{c}n{n}.{}@example.com", uuid::Uuid::new_v4().simple());
                    let mut body = contact(&email);
                    body["_idem"] = json!(uuid::Uuid::now_v7().simple().to_string());
                    let answer = http
                        .post(format!("{base}/v1/forms/contact/submissions"))
                        .json(&body)
                        .send()
                        .await;
                    // A client that just failed backs off a little, as the embed script does.
                    let pause = if matches!(&answer, Ok(r) if r.status().is_success()) {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(20)
                    };
                    {
                        let mut seen = seen.lock().unwrap();
                        match answer {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                seen.statuses
                                    .push((status, r.headers().contains_key("retry-after")));
                                if r.status().is_success() {
                                    seen.acknowledged.push(email);
                                }
                            }
                            Err(_) => seen.unanswered += 1,
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    (seen, tasks)
}

pub async fn finish(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
}

/// Nothing half-written: no submission without its lead, no message without its submission,
/// no lead whose count disagrees with its submissions, no submission without its follow-up.
pub async fn assert_consistent(db: &TestDb) {
    let mut db = raw(db).await;
    for broken in [
        "submissions s WHERE NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = s.lead_id)",
        "outbox o WHERE NOT EXISTS (SELECT 1 FROM submissions s WHERE s.id = o.submission_id)",
        "leads l WHERE l.submission_count <> (SELECT COUNT(*) FROM submissions s WHERE s.lead_id = l.id)",
        "submissions s WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.submission_id = s.id)",
    ] {
        assert_eq!(db.count(broken).await, 0, "half-written: {broken}");
    }
}

pub fn assert_none_lost(acknowledged: &[String], stored: &BTreeSet<String>) {
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|e| !stored.contains(*e))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// Every lead's address in the database at `url`.
/// Waits (up to a minute) until `expected` distinct recipients got mail; returns how many
/// messages arrived and to whom.
pub async fn wait_mailed(smtp: &SmtpServer, expected: usize) -> (usize, BTreeSet<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = smtp.received();
        let unique: BTreeSet<String> = got.iter().map(|m| m.to[0].clone()).collect();
        if unique.len() >= expected || tokio::time::Instant::now() > deadline {
            return (got.len(), unique);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn stored_emails(url: &str) -> BTreeSet<String> {
    use sqlx::Connection;
    let sql = "SELECT email FROM leads";
    let emails: Vec<String> = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    };
    emails.into_iter().collect()
}

both_backends! {
    async fn sigkill_at_random_moments_under_load_loses_no_acknowledged_lead_or_follow_up(backend: Backend) {
        let smtp = SmtpServer::start();
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let port = SmtpServer::reserve_port();
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", db.url()),
            ("INLET_SMTP_URL", smtp.url()),
            ("INLET_BIND", format!("127.0.0.1:{port}")),
            ("INLET_RATE_LIMIT_ENABLED", "false".into()),
            ("INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR", "0".into()),
            ("INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR", "0".into()),
            ("INLET_SPAM__BURST", "0".into()),
            ("INLET_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            // Leases of (8 / 4 + 1) x 3 s: a killed instance's messages come free in 9 s.
            ("INLET_OUTBOX_LEASE_MS", "1000".into()),
            ("INLET_MAIL__TIMEOUT_SECS", "1".into()),
            ("INLET_OUTBOX__BATCH_SIZE", "8".into()),
            ("INLET_OUTBOX__CONCURRENCY", "4".into()),
            ("RUST_LOG", "warn".into()),
        ].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let base = format!("http://127.0.0.1:{port}");
        let mut inlet = spawn_inlet(&env, dir.path()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, tasks) = load(vec![base.clone()], 8, stop.clone());
        let kills = 3;
        for _ in 0..kills {
            let wait = rand::thread_rng().gen_range(300..1200);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            inlet.kill().expect("SIGKILL");
            inlet.wait().unwrap();
            inlet = spawn_inlet(&env, dir.path()).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        finish(&stop, tasks).await;
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        assert!(seen.acknowledged.len() > 50, "the load ran: {}", seen.acknowledged.len());
        let odd: Vec<_> = seen.statuses.iter().filter(|(s, _)| *s != 201).collect();
        assert!(odd.is_empty(), "answered requests were all 201: {:?}", &odd[..odd.len().min(5)]);

        // Every acknowledged lead is stored, whole.
        let stored = stored_emails(&db.url()).await;
        assert_none_lost(&seen.acknowledged, &stored);
        assert_consistent(&db).await;

        // Every stored lead gets its follow-up: once, apart from what was in flight at a kill.
        let (received, unique) = wait_mailed(&smtp, stored.len()).await;
        inlet.kill().unwrap();
        inlet.wait().unwrap();
        let unmailed: Vec<_> = stored.difference(&unique).take(5).collect();
        let strangers: Vec<_> = unique.difference(&stored).take(5).collect();
        assert!(unmailed.is_empty() && strangers.is_empty(),
                "{} stored, {} mailed: not mailed {unmailed:?}, not stored {strangers:?}\n{}",
                stored.len(), unique.len(),
                std::fs::read_to_string(dir.path().join("inlet.log")).unwrap_or_default()
                    .lines().rev().take(30).collect::<Vec<_>>().join("\n"));
        let duplicates = received - unique.len();
        assert!(duplicates <= kills * 2 * 4, "{duplicates} duplicates: at most the messages in flight per kill");
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, its own port), so
/// the test can stop and start it. Runs as the `postgres` user when the tests run as root.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> Result<PrivatePostgres, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL server binaries in /usr/lib/postgresql: {e}"))?
            .filter_map(Result::ok)
            .map(|d| d.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = SmtpServer::reserve_port();
        let pg = PrivatePostgres { dir, bin, port };
        if pg.as_root() {
            let chown = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err("cannot hand the data directory to the postgres user".into());
            }
        }
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        pg.up()?;
        Ok(pg)
    }

    fn as_root(&self) -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                action,
            ],
        )
    }

    fn up(&self) -> Result<(), String> {
        self.pg_ctl("start")
    }

    fn down(&self) -> Result<(), String> {
        self.pg_ctl("stop")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_under_load_answers_only_503_and_recovers_losing_nothing() {
    let pg = match PrivatePostgres::start() {
        Ok(pg) => pg,
        Err(why) => {
            record_skip(&format!(
                "SKIPPED: the PostgreSQL restart fault test ({why})"
            ));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let scratch = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&scratch, dir.path());
    settings.database.url = SecretString::from(pg.url());
    settings.database.acquire_timeout_ms = 500;
    settings.rate_limit.unconfirmed_mail_per_network_per_hour = 0;
    let app = inlet::startup::Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(vec![base.clone()], 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = seen.lock().unwrap().statuses.len();
    tokio::task::block_in_place(|| pg.down()).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz tells the load balancer");
    tokio::task::block_in_place(|| pg.up()).unwrap();
    let restarted = seen.lock().unwrap().statuses.len();
    // Recovery without restarting Inlet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Inlet did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    finish(&stop, tasks).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    assert_eq!(seen.unanswered, 0, "every request got an answer");
    let odd: Vec<_> = seen
        .statuses
        .iter()
        .filter(|(s, _)| *s != 201 && *s != 503)
        .collect();
    assert!(odd.is_empty(), "only 201 and 503: {odd:?}");
    assert!(
        seen.statuses.iter().all(|(s, retry)| *s != 503 || *retry),
        "every 503 says when to retry"
    );
    let unavailable = seen.statuses.iter().filter(|(s, _)| *s == 503).count();
    assert!(
        unavailable > 0,
        "the outage was seen ({before} requests before it)"
    );
    let after: Vec<u16> = seen.statuses[restarted..].iter().map(|(s, _)| *s).collect();
    assert!(
        after.iter().rev().take(20).all(|s| *s == 201),
        "201 again after recovery: {after:?}"
    );

    let stored = stored_emails(&pg.url()).await;
    assert_none_lost(&seen.acknowledged, &stored);
}

/// A size-limited tmpfs mounted for the test (needs root; unmounted, lazily, on drop).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_answers_503_keeps_its_data_and_recovers_when_space_returns() {
    let disk = match SmallDisk::mount("3m") {
        Ok(d) => d,
        Err(why) => {
            record_skip(&format!("SKIPPED: the full-disk fault test ({why})"));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let scratch = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&scratch, dir.path());
    let url = format!("sqlite://{}/inlet.db?mode=rwc", disk.dir.path().display());
    settings.database.url = SecretString::from(url.clone());
    let app = inlet::startup::Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let submit = |i: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut body = contact(&format!("disk{i}@example.com"));
            body["message"] =
                json!("A long enough message to fill a small disk quickly. ".repeat(30));
            let r = http
                .post(format!("{base}/v1/forms/contact/submissions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }
    };
    // Fill the disk: submit until the answers turn to 503.
    let mut acknowledged = Vec::new();
    let mut full = 0;
    let mut i = 0;
    while full < 5 {
        i += 1;
        assert!(i < 20_000, "the disk never filled");
        match submit(i).await {
            (201, _) => acknowledged.push(format!("disk{i}@example.com")),
            (503, true) => full += 1,
            other => panic!("a full disk answers 503 with Retry-After, not {other:?}"),
        }
    }
    assert!(acknowledged.len() > 10, "{}", acknowledged.len());

    // Space returns: capture resumes by itself.
    disk.resize("64m");
    let mut recovered = false;
    for j in 0..50 {
        match submit(100_000 + j).await {
            (201, _) => {
                acknowledged.push(format!("disk{}@example.com", 100_000 + j));
                recovered = true;
                break;
            }
            (503, true) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    }
    assert!(recovered, "capture resumed once space returned");
    handle.stop(true).await;

    // No corruption, nothing acknowledged lost.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let stored = stored_emails(&url).await;
    assert_none_lost(&acknowledged, &stored);
}
