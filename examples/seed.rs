//! Preloads a database with synthetic history for benchmarks: leads, each with a submission
//! (idempotency key, attribution) and a sent follow-up, written by the store's bulk seeding
//! (`LeadStore::seed_history`), then `ANALYZE`d. Migrates first.
//!
//!   cargo run --release --example seed -- sqlite://bench.db 1000000 [form_id]

use std::time::Instant;

use inlet::config::Settings;
use inlet::store::LeadStore;
use secrecy::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(count)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: seed <database-url> <leads> [form_id]");
    };
    let count: u64 = count.parse()?;
    let form = args.next().unwrap_or_else(|| "contact".into());
    let mut settings = Settings::default_with_demo_forms();
    settings.database.url = SecretString::from(url);
    settings.database.migrate_on_start = true;
    let store = LeadStore::connect(&settings.database, settings.suppression_key()).await?;
    let started = Instant::now();
    let now = chrono::Utc::now().timestamp_millis();
    store
        .seed_history(count, &form, now, |done| {
            eprintln!("seed: {done} of {count} leads ({:.0?})", started.elapsed());
        })
        .await?;
    store.close().await;
    eprintln!("seed: done in {:.1?}", started.elapsed());
    Ok(())
}
