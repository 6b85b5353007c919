//! How long capture waits while the retention job clears a large backlog (issue 14, item 4).
//! Driven by `bench/retention.sh`; figures in BENCHMARKS.md.
//!
//!   cargo run --release --example retention_pause -- DATABASE_URL [LEADS] [SPAM_PERCENT] [CLIENTS]
//!
//! Seeds LEADS (1,000,000) leads over a year (the store's bulk seeding), flags SPAM_PERCENT (30)
//! of them as spam, starts Inlet in this process on the database, and keeps CLIENTS (16)
//! clients submitting the way the embed script does (an idempotency key and attribution on
//! every submit). After a baseline phase it runs the retention job (spam older than 30 days:
//! about 92 % of the flagged rows, with their leads, consents and outbox rows) and reports
//! each phase's submissions/s, p50/p99/max latency and non-2xx answers. The worst pause is
//! the max latency during the job, set against the baseline's max.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inlet::config::Settings;
use inlet::startup::Application;
use inlet::store::LeadStore;
use secrecy::SecretString;

const BASELINE: Duration = Duration::from_secs(8);

/// One answered submit: when it started (since the run began), how long it took, its status.
struct Sample {
    at: Duration,
    took: Duration,
    status: u16,
}

fn body(client: usize, n: u64) -> String {
    let landing = "https://example.com/landing?utm_source=newsletter&utm_medium=email&utm_campaign=launch-2026";
    let touch = serde_json::json!({"utm_source": "newsletter", "utm_medium": "email",
        "utm_campaign": "launch-2026", "referrer": "https://news.example.org/issue/42",
        "landing_page": landing, "at": "2026-11-30T09:12:44.120Z"});
    serde_json::json!({
        "name": format!("Bench Reader {n}"),
        "email": format!("r{client}x{n}.{}@bench.example.com", uuid::Uuid::new_v4().simple()),
        "company": "Example Industries Ltd",
        "phone": "+44 20 7946 0958",
        "message": "Hello, we would like a demo of your product for our marketing team next week.",
        "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "launch-2026",
        "referrer": "https://news.example.org/issue/42",
        "landing_page": landing,
        "page_title": "Launch 2026 | Example",
        "first_touch": touch.to_string(),
        "last_touch": touch.to_string(),
        "_elapsed_ms": 6000 + n % 5000,
        "_idem": uuid::Uuid::now_v7().simple().to_string(),
    })
    .to_string()
}

async fn flag_spam(url: &str, percent: u32) -> anyhow::Result<u64> {
    let sql = format!(
        "UPDATE submissions SET spam_reason = 'honeypot' WHERE (created_at / 1000) % 100 < {percent}"
    );
    Ok(if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let n = sqlx::query(&sql).execute(&pool).await?.rows_affected();
        sqlx::query("UPDATE leads SET real_submission_count = 0 WHERE id IN (SELECT lead_id FROM submissions WHERE spam_reason IS NOT NULL)")
            .execute(&pool).await?;
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let n = sqlx::query(&sql).execute(&pool).await?.rows_affected();
        sqlx::query("UPDATE leads SET real_submission_count = 0 WHERE id IN (SELECT lead_id FROM submissions WHERE spam_reason IS NOT NULL)")
            .execute(&pool).await?;
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        pool.close().await;
        n
    })
}

fn summary(name: &str, samples: &[&Sample], span: Duration) -> Duration {
    let mut took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    took.sort_unstable();
    let pick = |q: f64| {
        took.get(((took.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let bad = samples
        .iter()
        .filter(|s| !(200..300).contains(&s.status))
        .count();
    let max = took.last().copied().unwrap_or_default();
    println!(
        "{name:<22} {:>7} submits {:>8.0}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>8.1} ms  non-2xx {bad}",
        samples.len(),
        samples.len() as f64 / span.as_secs_f64().max(0.001),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
    );
    max
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        anyhow::bail!("usage: retention_pause <database-url> [leads] [spam-percent] [clients]");
    };
    let leads: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let percent: u32 = args.next().map_or(Ok(30), |a| a.parse())?;
    let clients: usize = args.next().map_or(Ok(16), |a| a.parse())?;

    let mut settings = Settings::default_with_demo_forms();
    // RUST_LOG=sqlx=debug shows each statement with its time.
    settings.log.level = "error".into();
    inlet::telemetry::init(&settings.log);
    settings.database.url = SecretString::from(url.clone());
    settings.database.migrate_on_start = true;
    let store = LeadStore::connect(&settings.database, settings.suppression_key()).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    store
        .seed_history(leads, "contact", now, |done| {
            if done % 200_000 == 0 || done == leads {
                eprintln!("seed: {done} of {leads} leads ({:.0?})", started.elapsed());
            }
        })
        .await?;
    store.close().await;
    let flagged = flag_spam(&url, percent).await?;
    eprintln!("flagged {flagged} submissions as spam");

    let dir = tempfile::tempdir()?;
    settings.server.bind = "127.0.0.1:0".into();
    settings.rate_limit.enabled = false;
    settings.outbox.worker_enabled = false;
    settings.mail.mail_dir = dir.path().join("mail");
    // The app's own job must not run: this program runs it, once, at a known moment.
    settings.retention.spam_days = 0;
    settings.retention.ip_days = 0;
    let app = Application::build(settings).await?;
    let target = format!(
        "http://127.0.0.1:{}/v1/forms/contact/submissions",
        app.port()
    );
    let state = app.state();
    tokio::spawn(app.run_until_stopped());

    let begun = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let load: Vec<_> = (0..clients)
        .map(|c| {
            let (http, target, stop) = (http.clone(), target.clone(), stop.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let at = begun.elapsed();
                    let status = http
                        .post(&target)
                        .header("Content-Type", "application/json")
                        .header("Origin", "https://example.com")
                        .body(body(c, n))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    samples.push(Sample {
                        at,
                        took: begun.elapsed() - at,
                        status,
                    });
                }
                samples
            })
        })
        .collect();
    tokio::time::sleep(BASELINE).await;
    let job_start = begun.elapsed();
    let retention = inlet::config::RetentionSettings::default();
    let report = state
        .store
        .apply_retention(state.clock.now_ms(), &retention)
        .await?;
    let job_end = begun.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for task in load {
        samples.extend(task.await?);
    }

    println!(
        "retention job: {:.1} s, {} spam submissions and {} leads deleted in {} steps",
        (job_end - job_start).as_secs_f64(),
        report.spam_submissions_deleted,
        report.leads_deleted,
        report.steps
    );
    let warm = Duration::from_secs(1);
    let baseline: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= warm && s.at < job_start)
        .collect();
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= job_start && s.at < job_end)
        .collect();
    let base_max = summary("baseline", &baseline, job_start - warm);
    let worst = summary("during retention", &during, job_end - job_start);
    println!(
        "worst pause during retention: {:.1} ms (baseline max {:.1} ms, ratio {:.2})",
        worst.as_secs_f64() * 1e3,
        base_max.as_secs_f64() * 1e3,
        worst.as_secs_f64() / base_max.as_secs_f64().max(1e-9)
    );
    Ok(())
}
