//! Scale-out (issue 18): several real `inlet` processes on one PostgreSQL database and one
//! Redis, a client spreading requests over them as a load balancer would. The limits hold
//! globally, idempotency holds across instances, every message is sent once, a killed
//! instance loses nothing, and a stopped Redis costs no request its answer. Each test starts
//! its own `redis-server` on a free port (so stopping it disturbs nobody else).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::faults::{
    assert_consistent, assert_none_lost, finish, load, stored_emails, wait_mailed,
};
use crate::helpers::{
    contact, postgres_available, record_skip, spawn_inlet, Backend, TestDb, ADMIN_TOKEN,
};
use crate::smtp::SmtpServer;

/// A private `redis-server` on loopback that a test can stop and start again on its port.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` (recorded as a loud skip) when there is no `redis-server` to run, unless
    /// `INLET_TEST_REQUIRE_REDIS=1` (CI), where that fails the test.
    fn start() -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            let required = std::env::var("INLET_TEST_REQUIRE_REDIS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "redis-server is required (INLET_TEST_REQUIRE_REDIS=1) but not installed"
            );
            record_skip(
                "SKIPPED: the scale-out tests (no redis-server; scripts/test.sh installs it)",
            );
            return None;
        }
        let mut server = RedisServer {
            port: SmtpServer::reserve_port(),
            child: None,
        };
        server.up();
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.down();
    }
}

/// Instances of one deployment: the same database, Redis and settings, each on its own port.
struct Cluster {
    db: TestDb,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    instances: Vec<(String, Child)>,
}

impl Cluster {
    /// `n` instances on a fresh PostgreSQL database, behind a "proxy" at 127.0.0.1 (trusted:
    /// the client is the `X-Forwarded-For` a test sends), with `extra` settings.
    async fn start(n: usize, redis: Option<&RedisServer>, extra: &[(&str, &str)]) -> Cluster {
        let db = TestDb::new(Backend::Postgres).await;
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", db.url()),
            ("INLET_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("INLET_TRUSTED_PROXIES", "127.0.0.1/32".into()),
            ("INLET_SPAM__BURST", "0".into()),
            (
                "INLET_MAIL_DIR",
                dir.path().join("mail").display().to_string(),
            ),
            ("INLET_REDIS__RETRY_MS", "200".into()),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(redis) = redis {
            env.push(("INLET_REDIS_URL".into(), redis.url()));
        }
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let mut cluster = Cluster {
            db,
            dir,
            env,
            instances: Vec::new(),
        };
        for _ in 0..n {
            cluster.add().await;
        }
        cluster
    }

    async fn add(&mut self) {
        let port = SmtpServer::reserve_port();
        let mut env = self.env.clone();
        env.push(("INLET_BIND".into(), format!("127.0.0.1:{port}")));
        let child = spawn_inlet(&env, self.dir.path()).await;
        self.instances
            .push((format!("http://127.0.0.1:{port}"), child));
    }

    fn bases(&self) -> Vec<String> {
        self.instances.iter().map(|(b, _)| b.clone()).collect()
    }

    fn kill(&mut self, i: usize) {
        let (_, child) = &mut self.instances[i];
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("inlet.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.instances {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One contact submission for `email` to the instance at `base`, as client `ip` (through the
/// trusted proxy); returns the status.
async fn submit(http: &reqwest::Client, base: &str, ip: &str, email: &str) -> u16 {
    http.post(format!("{base}/v1/forms/contact/submissions"))
        .header("x-forwarded-for", ip)
        .json(&contact(email))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Submits `n` times as client `ip` (a fresh address each time), request `i` to instance
/// `i % instances`; returns the statuses.
async fn submit_as(http: &reqwest::Client, bases: &[String], ip: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        let email = format!("p{i}.{}@example.com", uuid::Uuid::new_v4().simple());
        statuses.push(submit(http, &bases[i % bases.len()], ip, &email).await);
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Five submissions a minute per client (one refilled a minute: the test never sees a refill).
const LIMITS: &[(&str, &str)] = &[
    ("INLET_RATE_LIMIT__PER_IP_PER_MINUTE", "1"),
    ("INLET_RATE_LIMIT__PER_IP_BURST", "5"),
    ("INLET_RATE_LIMIT__VIEWS_PER_IP_PER_MINUTE", "4"),
    ("INLET_OUTBOX_WORKER_ENABLED", "false"),
];

async fn ready() -> Option<RedisServer> {
    if !postgres_available().await {
        return None;
    }
    RedisServer::start()
}

#[tokio::test]
async fn the_per_ip_limit_holds_across_three_instances_and_redis_keys_expire() {
    let Some(redis) = ready().await else { return };
    let http = reqwest::Client::new();

    // Without Redis, each instance counts alone: three instances let 3 x 5 through.
    let alone = Cluster::start(3, None, LIMITS).await;
    let statuses = submit_as(&http, &alone.bases(), "203.0.113.7", 30).await;
    assert_eq!(
        (count(&statuses, 201), count(&statuses, 429)),
        (15, 15),
        "{statuses:?}"
    );
    drop(alone);

    // With Redis, the budget is the client's, whichever instance answers.
    let shared = Cluster::start(3, Some(&redis), LIMITS).await;
    let statuses = submit_as(&http, &shared.bases(), "203.0.113.7", 30).await;
    assert_eq!(
        (count(&statuses, 201), count(&statuses, 429)),
        (5, 25),
        "{statuses:?}"
    );
    // Another client has a budget of its own; an IPv6 client is its /64.
    let statuses = submit_as(&http, &shared.bases(), "198.51.100.9", 9).await;
    assert_eq!(count(&statuses, 201), 5, "{statuses:?}");
    let mut v6 = Vec::new();
    for i in 0..9 {
        let ip = format!("2001:db8:7:7::{i:x}");
        v6.extend(submit_as(&http, &shared.bases()[i % 3..=i % 3], &ip, 1).await);
    }
    assert_eq!(count(&v6, 201), 5, "{v6:?}");
    // Form views have their own budget, shared too.
    let mut views = Vec::new();
    for i in 0..12 {
        let r = http
            .post(format!("{}/v1/forms/contact/views", shared.bases()[i % 3]))
            .header("x-forwarded-for", "203.0.113.7")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("utm_source=news")
            .send()
            .await
            .unwrap();
        views.push(r.status().as_u16());
    }
    assert_eq!(
        (count(&views, 204), count(&views, 429)),
        (4, 8),
        "{views:?}"
    );
    let db_leads = stored_emails(&shared.db.url()).await.len();
    assert_eq!(db_leads, 15, "only what was answered 201 is stored");

    // Redis holds no address and no key without an expiry.
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("inlet:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k == "inlet:ip:203.0.113.7"), "{keys:?}");
    assert!(
        keys.iter().any(|k| k == "inlet:ip:2001:db8:7:7::"),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| !k.contains('@')), "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
}

#[tokio::test]
async fn a_burst_admitted_before_redis_answers_overruns_the_budget_by_at_most_one_per_instance() {
    let Some(redis) = ready().await else { return };
    let http = reqwest::Client::new();
    let cluster = Cluster::start(3, Some(&redis), LIMITS).await;
    let bases = cluster.bases();
    let sum = |name: &'static str| {
        let (http, bases) = (&http, &bases);
        async move {
            let mut total = 0.0;
            for base in bases {
                total += metric(http, base, name).await;
            }
            total
        }
    };
    // A first visit, far from its budget, is admitted at once: its cells are taken in Redis
    // while it is written, and its answer waits for both.
    assert_eq!(
        submit(&http, &bases[0], "198.51.100.20", "first@example.com").await,
        201
    );
    assert_eq!(sum("inlet_redis_early_admits_total ").await, 1.0);

    // 30 requests at once from one client (a budget of 5) over three instances: each
    // instance admits early only while it knows the budget to be at most half spent and
    // one early cell at a time, so other instances' spending it has not yet heard of can
    // overrun the budget by at most one request per instance.
    let burst = (0..30).map(|i| {
        let (http, base) = (&http, bases[i % 3].clone());
        async move { submit(http, &base, "203.0.113.99", &format!("b{i}@example.com")).await }
    });
    let statuses = futures::future::join_all(burst).await;
    let admitted = count(&statuses, 201);
    assert!((5..=5 + 3).contains(&admitted), "{statuses:?}");
    assert_eq!(admitted + count(&statuses, 429), 30, "{statuses:?}");
    if admitted > 5 {
        // An overrun is seen, and counted, when Redis takes the early cells.
        assert!(sum("inlet_redis_late_refusals_total ").await >= 1.0);
    }
    // Redis counted every admitted request: the client's budget is spent on every instance.
    let after = submit_as(&http, &bases, "203.0.113.99", 6).await;
    assert_eq!(count(&after, 429), 6, "{after:?}");
    let stored = stored_emails(&cluster.db.url()).await.len();
    assert_eq!(stored, 1 + admitted, "only what was answered 201 is stored");
}

#[tokio::test]
async fn mail_caps_and_admin_guesses_are_counted_across_instances() {
    let Some(redis) = ready().await else { return };
    let http = reqwest::Client::new();
    let caps = [
        ("INLET_RATE_LIMIT_ENABLED", "false"),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR",
            "2",
        ),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR",
            "100",
        ),
        ("INLET_OUTBOX_WORKER_ENABLED", "false"),
        // Every submission asks for a follow-up (no one-per-window de-duplication).
        ("INLET_OUTBOX__FOLLOW_UP_WINDOW_SECS", "0"),
    ];
    let cluster = Cluster::start(2, Some(&redis), &caps).await;
    let bases = cluster.bases();
    // One stranger's address typed six times, through both instances: two messages at most.
    for i in 0..6 {
        let ip = format!("192.0.2.{}", 10 + i);
        assert_eq!(
            submit(&http, &bases[i % 2], &ip, "stranger@example.net").await,
            201
        );
    }
    let mut db = crate::helpers::raw(&cluster.db).await;
    assert_eq!(db.count("outbox WHERE recipient = 'stranger@example.net' AND kind = 'follow_up' AND status <> 'skipped'").await, 2);
    assert_eq!(
        db.count("outbox WHERE recipient = 'stranger@example.net' AND status = 'skipped'")
            .await,
        4
    );

    // Ten wrong admin tokens spread over both instances: the eleventh guess is refused
    // everywhere, the right token included.
    let mut statuses = Vec::new();
    for i in 0..11 {
        let r = http
            .get(format!("{}/v1/admin/leads", bases[i % 2]))
            .header("x-forwarded-for", "198.18.0.1")
            .bearer_auth(format!("wrong-token-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (10, 1),
        "{statuses:?}"
    );
    for base in &bases {
        let r = http
            .get(format!("{base}/v1/admin/leads"))
            .header("x-forwarded-for", "198.18.0.1")
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "refused on every instance");
    }
}

#[tokio::test]
async fn a_submission_the_shared_limit_refuses_spends_none_of_the_mail_caps() {
    let Some(redis) = ready().await else { return };
    let http = reqwest::Client::new();
    let mut settings = LIMITS.to_vec();
    settings.extend([
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR",
            "3",
        ),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR",
            "1000",
        ),
        ("INLET_OUTBOX__FOLLOW_UP_WINDOW_SECS", "0"),
    ]);
    let cluster = Cluster::start(2, Some(&redis), &settings).await;
    let bases = cluster.bases();
    let post =
        |i: usize, ip: &'static str, email: &'static str| submit(&http, &bases[i % 2], ip, email);
    // One client spends its five, spread over both instances (neither sees five itself)...
    for i in 0..5 {
        assert_eq!(post(i, "203.0.113.80", "spent@example.net").await, 201);
    }
    // ...so Redis refuses its next three to target@: 429, and no cap cell taken for them.
    for i in 0..3 {
        assert_eq!(post(i, "203.0.113.80", "target@example.net").await, 429);
    }
    // Another client's three submissions for target@ all get their follow-up.
    for i in 0..3 {
        assert_eq!(post(i, "198.51.100.80", "target@example.net").await, 201);
    }
    let mut db = crate::helpers::raw(&cluster.db).await;
    assert_eq!(
        db.count("outbox WHERE recipient = 'target@example.net' AND status = 'pending'")
            .await,
        3
    );
    assert_eq!(
        db.count("outbox WHERE recipient = 'target@example.net' AND status = 'skipped'")
            .await,
        0
    );
    assert_eq!(
        db.count("outbox WHERE recipient = 'spent@example.net' AND status = 'skipped'")
            .await,
        2,
        "the cap itself holds"
    );
}

#[tokio::test]
async fn console_sign_in_attempts_are_counted_across_instances() {
    let Some(redis) = ready().await else { return };
    let http = reqwest::Client::new();
    let settings = [
        ("INLET_CONSOLE__SIGN_IN_ATTEMPTS_PER_ACCOUNT", "4"),
        ("INLET_OUTBOX_WORKER_ENABLED", "false"),
    ];
    let attempt = async |base: &str, ip: &str| {
        http.post(format!("{base}/console/login"))
            .header("x-forwarded-for", ip)
            .header("cookie", "inlet_login=t0ken")
            .form(&[
                ("email", "ann@example.com"),
                ("password", "a guess"),
                ("_login", "t0ken"),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Without Redis each instance gives the account its own four guesses; with Redis the
    // account has four, whichever instance (and address) a guess comes to.
    for (shared, expected) in [(None, (8, 2)), (Some(&redis), (4, 6))] {
        let cluster = Cluster::start(2, shared, &settings).await;
        let mut statuses = Vec::new();
        for i in 0..10 {
            statuses.push(attempt(&cluster.bases()[i % 2], &format!("192.0.2.{i}")).await);
        }
        assert_eq!(
            (count(&statuses, 401), count(&statuses, 429)),
            expected,
            "{statuses:?}"
        );
    }
}

#[tokio::test]
async fn one_idempotency_key_sent_to_two_instances_at_once_stores_one_lead() {
    let Some(redis) = ready().await else { return };
    let cluster = Cluster::start(
        2,
        Some(&redis),
        &[
            ("INLET_RATE_LIMIT_ENABLED", "false"),
            ("INLET_OUTBOX_WORKER_ENABLED", "false"),
        ],
    )
    .await;
    let bases = cluster.bases();
    let http = reqwest::Client::new();
    let keys = 60;
    let http = &http;
    let answers = futures::future::join_all((0..keys).flat_map(|k| {
        let mut body = contact(&format!("idem{k}@example.com"));
        body["_idem"] = json!(format!("key-{k}-{}", uuid::Uuid::new_v4().simple()));
        bases
            .iter()
            .map(move |base| {
                let body = body.clone();
                async move {
                    let r = http
                        .post(format!("{base}/v1/forms/contact/submissions"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    (k, r.status().as_u16(), r.json::<Value>().await.unwrap())
                }
            })
            .collect::<Vec<_>>()
    }))
    .await;
    for k in 0..keys {
        let pair: Vec<&(usize, u16, Value)> = answers.iter().filter(|a| a.0 == k).collect();
        assert!(pair.iter().all(|a| a.1 == 200 || a.1 == 201), "{pair:?}");
        assert_eq!(
            pair[0].2["submission_id"], pair[1].2["submission_id"],
            "one answer per key: {pair:?}"
        );
    }
    let mut db = crate::helpers::raw(&cluster.db).await;
    assert_eq!(db.count("submissions").await, keys as i64);
    assert_eq!(db.count("leads").await, keys as i64);
    assert_eq!(
        db.count("outbox").await,
        keys as i64,
        "one follow-up per key"
    );
}

#[tokio::test]
async fn every_message_is_sent_once_by_three_instances_and_a_killed_ones_leases_pass_on() {
    let Some(redis) = ready().await else { return };
    let smtp = SmtpServer::start();
    let smtp_url = smtp.url();
    let settings = [
        ("INLET_SMTP_URL", smtp_url.as_str()),
        ("INLET_RATE_LIMIT_ENABLED", "false"),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR",
            "0",
        ),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR",
            "0",
        ),
        // Short leases: a killed instance's claimed messages come free within seconds.
        ("INLET_OUTBOX_LEASE_MS", "1000"),
        ("INLET_MAIL__TIMEOUT_SECS", "1"),
        ("INLET_OUTBOX__BATCH_SIZE", "8"),
        ("INLET_OUTBOX__CONCURRENCY", "4"),
    ];
    let mut cluster = Cluster::start(3, Some(&redis), &settings).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(cluster.bases(), 9, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL under load, with messages claimed and in flight.
    smtp.wait_started(1, Duration::from_secs(10)).await;
    cluster.kill(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    finish(&stop, tasks).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.acknowledged.len() > 100,
        "the load ran: {}",
        seen.acknowledged.len()
    );
    let odd: Vec<_> = seen.statuses.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        odd.is_empty(),
        "every answered request was 201: {:?}",
        &odd[..odd.len().min(5)]
    );

    let stored = stored_emails(&cluster.db.url()).await;
    assert_none_lost(&seen.acknowledged, &stored);
    assert_consistent(&cluster.db).await;

    let (received, unique) = wait_mailed(&smtp, stored.len()).await;
    let unmailed: Vec<_> = stored.difference(&unique).take(5).collect();
    assert!(
        unmailed.is_empty(),
        "{} stored, {} mailed: not mailed {unmailed:?}\n{}",
        stored.len(),
        unique.len(),
        cluster.log()
    );
    // Only what the killed instance had in flight may go twice (one round: 8 claimed).
    let duplicates = received - unique.len();
    assert!(duplicates <= 8, "{duplicates} duplicates");
}

#[tokio::test]
async fn with_redis_stopped_under_load_nothing_fails_the_local_limiter_takes_over_and_sharing_resumes(
) {
    let Some(mut redis) = ready().await else {
        return;
    };
    let http = reqwest::Client::new();
    let cluster = Cluster::start(2, Some(&redis), LIMITS).await;
    let bases = cluster.bases();

    // Load from many clients (one request each: never limited) the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let load_tasks: Vec<_> = (0..6)
        .map(|c| {
            let (http, bases, stop) = (http.clone(), bases.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let ip = format!("10.{c}.{}.{}", n / 250, n % 250);
                    statuses.extend(
                        submit_as(&http, &bases[(n as usize) % 2..=(n as usize) % 2], &ip, 1).await,
                    );
                }
                statuses
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric(&http, &bases[0], "inlet_redis_up").await, 1.0);
    redis.down();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each instance limits on its own now: one client gets 5 per instance.
    let statuses = submit_as(&http, &bases, "203.0.113.50", 20).await;
    assert_eq!(
        count(&statuses, 201),
        10,
        "local limits while Redis is down: {statuses:?}"
    );
    for base in &bases {
        assert_eq!(metric(&http, base, "inlet_redis_up").await, 0.0);
        assert!(metric(&http, base, "inlet_redis_fallbacks_total").await >= 1.0);
    }

    redis.up();
    // After redis.retry_ms the instances try Redis again; shared limits resume.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let _ = submit_as(&http, &bases, "198.51.100.200", 2).await;
        let mut up = 0.0;
        for base in &bases {
            up += metric(&http, base, "inlet_redis_up").await;
        }
        if up == 2.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instances did not return to Redis\n{}",
            cluster.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = submit_as(&http, &bases, "203.0.113.51", 20).await;
    assert_eq!(count(&statuses, 201), 5, "shared again: {statuses:?}");

    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in load_tasks {
        all.extend(t.await.unwrap());
    }
    assert!(all.len() > 50, "the load ran: {}", all.len());
    let failed: Vec<_> = all.iter().filter(|s| **s != 201).collect();
    assert!(
        failed.is_empty(),
        "no request failed while Redis was away: {:?}",
        &failed[..failed.len().min(10)]
    );
    let log = cluster.log();
    assert!(log.contains("Redis unavailable"), "the switch is logged");
    assert!(log.contains("Redis answers again"), "and the way back");
}

crate::both_backends! {
    /// The lease that makes retention, the report rollup and applying sequence definitions
    /// run on one instance at a time: held by one owner until it expires or is given back.
    async fn a_job_lease_has_one_holder_until_it_expires_or_is_released(backend: Backend) {
        let db = TestDb::new(backend).await;
        let settings = inlet::config::DatabaseSettings {
            url: secrecy::SecretString::from(db.url()),
            ..inlet::config::DatabaseSettings::default()
        };
        let a = inlet::store::LeadStore::connect(&settings, None).await.unwrap();
        let b = inlet::store::LeadStore::connect(&settings, None).await.unwrap();
        let t = 1_000_000;
        assert!(a.take_lease("retention", "a", t, 60_000).await.unwrap());
        assert!(!b.take_lease("retention", "b", t + 1, 60_000).await.unwrap(), "held by a");
        assert!(b.take_lease("report_rollup", "b", t + 1, 60_000).await.unwrap(), "another job is free");
        assert!(a.take_lease("retention", "a", t + 30_000, 60_000).await.unwrap(), "renewed by its holder");
        assert!(!b.take_lease("retention", "b", t + 60_000, 60_000).await.unwrap(), "the renewal counts");
        assert!(b.take_lease("retention", "b", t + 90_000, 60_000).await.unwrap(), "expired: b takes over");
        assert!(!a.take_lease("retention", "a", t + 90_001, 60_000).await.unwrap());
        b.release_lease("retention", "a").await.unwrap();
        assert!(!a.take_lease("retention", "a", t + 90_002, 60_000).await.unwrap(), "only the holder releases");
        b.release_lease("retention", "b").await.unwrap();
        assert!(a.take_lease("retention", "a", t + 90_003, 60_000).await.unwrap(), "released: free at once");
    }
}
