//! Email throughput: queue N follow-ups, then time the outbox worker delivering them through
//! the pooled lettre transport to a local SMTP sink (mailin-embedded on 127.0.0.1).
//!
//!   cargo run --release --example email_bench -- [sqlite|postgres] [messages]
//!
//! PostgreSQL comes from INLET_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1/postgres;
//! a fresh database is created and dropped).

use std::net::TcpListener;
#[path = "common/sink.rs"]
mod sink;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use inlet::config::Settings;
use inlet::domain::{
    Attribution, EmailAddress, FieldValue, MessageKind, NewOutboxMessage, NewSubmission,
};
use inlet::startup::Application;
use secrecy::SecretString;
use sqlx::Connection;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map_or("sqlite", String::as_str).to_string();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);

    let received = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let smtp_port = listener.local_addr()?.port();
    let sink_count = received.clone();
    std::thread::spawn(move || {
        let _ = sink::serve(listener, sink_count);
    });

    let dir = tempfile::tempdir()?;
    let (db_url, pg_admin) = match backend.as_str() {
        "postgres" => {
            let admin = std::env::var("INLET_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("inlet_bench_{}", uuid::Uuid::new_v4().simple());
            let mut c = sqlx::PgConnection::connect(&admin).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await?;
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(b, _)| b)
                .to_string();
            (format!("{base}/{name}"), Some((admin, name)))
        }
        _ => (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        ),
    };

    let mut settings = Settings::default_with_demo_forms();
    settings.server.bind = "127.0.0.1:0".into();
    settings.database.url = SecretString::from(db_url);
    settings.mail.smtp_url = Some(SecretString::from(format!("smtp://127.0.0.1:{smtp_port}")));
    settings.outbox.worker_enabled = false;
    settings.outbox.batch_size = 256;
    settings.outbox.concurrency = 32;
    let app = Application::build(settings).await?;
    let store = app.state().store.clone();
    let worker = app.outbox_worker();

    let queued = Instant::now();
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..n {
        let email = EmailAddress::parse(&format!("bench{i}@example.com"))?;
        let sub = NewSubmission {
            // contact: mails at once (newsletter waits for double opt-in).
            form_id: "contact".into(),
            email: email.clone(),
            fields: [("name".to_string(), FieldValue::Text(format!("Reader {i}")))].into(),
            extra: Default::default(),
            attribution: Attribution::default(),
            client_ip: None,
            spam: inlet::domain::SpamSignals::default(),
            idempotency_key: None,
            received_at_ms: now,
            consents: Vec::new(),
            confirmation: Default::default(),
            download_until_ms: None,
        };
        let msg = NewOutboxMessage {
            kind: MessageKind::FollowUp,
            recipient: email,
            max_attempts: 8,
            dedupe_window_ms: None,
            held: None,
        };
        store.record_submission(&sub, &[msg]).await?;
    }
    eprintln!(
        "queued {n} messages in {:.1} s",
        queued.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let report = worker.drain(chrono::Utc::now().timestamp_millis()).await?;
    let secs = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!(
        "backend={backend} messages={n} sent={} failed={} received_by_sink={got} seconds={secs:.2} messages_per_second={:.0}",
        report.sent, report.failed, got as f64 / secs
    );
    store.close().await;
    if let Some((admin, name)) = pg_admin {
        let mut c = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await?;
    }
    if got != n as u64 {
        return Err(format!("the sink received {got} of {n} messages").into());
    }
    Ok(())
}
