//! Synthetic history for benchmarks and query-plan tests: leads, their submissions (each with an
//! idempotency key and attribution, as the embed script sends them) and a sent follow-up each,
//! generated inside the database in chunks (`generate_series` on PostgreSQL, a recursive CTE
//! on SQLite), so a million rows take seconds to minutes instead of hours over HTTP.
//!
//! Every seeded row is recognisable: lead emails end in `@seed.invalid` (a reserved domain no
//! mail can reach) and ids carry `5eed` in their second group.

use super::{Backend, LeadStore, StoreError};

/// Rows per transaction.
const CHUNK: u64 = 50_000;

/// One year, spread over the seeded rows' creation times.
const SPAN_MS: i64 = 365 * 24 * 3600 * 1000;

impl LeadStore {
    /// Adds `count` synthetic leads, each with one submission of `form_id` and one sent
    /// follow-up, created over the year before `now_ms`. `progress` is called after each chunk
    /// with the number of leads written so far. Refreshes the planner's statistics at the end
    /// (PostgreSQL: and vacuums).
    pub async fn seed_history(
        &self,
        count: u64,
        form_id: &str,
        now_ms: i64,
        mut progress: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        // A tag per run keeps ids and emails of two runs apart.
        let tag = format!("{:08x}", (now_ms / 1000) & 0xffff_ffff);
        let step = (SPAN_MS / i64::try_from(count.max(1)).unwrap_or(i64::MAX)).max(1);
        let start = now_ms - SPAN_MS;
        // Stored IPs only where the retention job (default `retention.ip_days`) would have left
        // them: the steady state of a database that has been running.
        let ip_days = i64::from(crate::config::RetentionSettings::default().ip_days);
        let ips_since = now_ms - ip_days * 24 * 3600 * 1000;
        let mut done = 0u64;
        while done < count {
            let n = CHUNK.min(count - done);
            let first = i64::try_from(done).unwrap_or(i64::MAX);
            let last = i64::try_from(done + n - 1).unwrap_or(i64::MAX);
            let mut tx = self.writer.begin().await?;
            for sql in statements(self.backend) {
                sqlx::query(sql)
                    .bind(first)
                    .bind(last)
                    .bind(tag.as_str())
                    .bind(start)
                    .bind(step)
                    .bind(form_id)
                    .bind(ips_since)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            done += n;
            progress(done);
        }
        // PostgreSQL: vacuumed too, as autovacuum would have left a database that has been
        // running, so the first minutes of a benchmark do not share the cores with it.
        let analyze = match self.backend {
            Backend::Sqlite => "ANALYZE",
            Backend::Postgres => "VACUUM (ANALYZE) leads, submissions, outbox",
        };
        sqlx::raw_sql(analyze).execute(&self.writer).await?;
        Ok(())
    }
}

/// The three inserts, each over rows `$1..=$2` with `$3` tag, `$4` start, `$5` step, `$6` form,
/// `$7` the time from which submissions keep their IP.
fn statements(backend: Backend) -> [&'static str; 3] {
    match backend {
        Backend::Sqlite => [
            "WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2) \
             INSERT INTO leads (id, email, created_at, updated_at, submission_count, \
               real_submission_count) \
             SELECT printf('%s-5eed-7000-8000-%012x', $3, i), \
               printf('reader-%s-%d@seed.invalid', $3, i), $4 + i * $5, $4 + i * $5, 1, 1 \
             FROM seq",
            "WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2) \
             INSERT INTO submissions (id, lead_id, form_id, email, fields, extra, \
               idempotency_key, utm_source, utm_medium, utm_campaign, landing_page, user_agent, \
               attribution, client_ip, created_at) \
             SELECT printf('%s-5eed-7000-8001-%012x', $3, i), \
               printf('%s-5eed-7000-8000-%012x', $3, i), $6, \
               printf('reader-%s-%d@seed.invalid', $3, i), \
               printf('{\"company\":\"Example %d Ltd\",\"message\":\"Please send the report.\",\
\"name\":\"Reader %d\"}', i % 5000, i), '{}', lower(hex(randomblob(16))), \
               'newsletter', 'email', printf('campaign-%d', i % 40), \
               'https://example.com/landing', 'Mozilla/5.0 (seed)', \
               printf('{\"landing_page\":\"https://example.com/landing\",\"utm_campaign\":\
\"campaign-%d\",\"utm_medium\":\"email\",\"utm_source\":\"newsletter\"}', i % 40), \
               CASE WHEN $4 + i * $5 >= $7 THEN printf('192.0.2.%d', i % 250) END, $4 + i * $5 \
             FROM seq",
            "WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2) \
             INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, \
               attempts, max_attempts, next_attempt_at, created_at, sent_at) \
             SELECT printf('%s-5eed-7000-8002-%012x', $3, i), \
               printf('%s-5eed-7000-8000-%012x', $3, i), \
               printf('%s-5eed-7000-8001-%012x', $3, i), $6, 'follow_up', \
               printf('reader-%s-%d@seed.invalid', $3, i), 'sent', 1, 8, $4 + i * $5, $4 + i * $5, $4 + i * $5 + 1000 \
             FROM seq",
        ],
        Backend::Postgres => [
            "INSERT INTO leads (id, email, created_at, updated_at, submission_count, \
               real_submission_count) \
             SELECT format('%s-5eed-7000-8000-%s', $3::text, lpad(to_hex(i), 12, '0')), \
               format('reader-%s-%s@seed.invalid', $3::text, i), $4 + i * $5, $4 + i * $5, 1, 1 \
             FROM generate_series($1::bigint, $2::bigint) AS i",
            "INSERT INTO submissions (id, lead_id, form_id, email, fields, extra, \
               idempotency_key, utm_source, utm_medium, utm_campaign, landing_page, user_agent, \
               attribution, client_ip, created_at) \
             SELECT format('%s-5eed-7000-8001-%s', $3::text, lpad(to_hex(i), 12, '0')), \
               format('%s-5eed-7000-8000-%s', $3::text, lpad(to_hex(i), 12, '0')), $6::text, \
               format('reader-%s-%s@seed.invalid', $3::text, i), \
               format('{\"company\":\"Example %s Ltd\",\"message\":\"Please send the report.\",\
\"name\":\"Reader %s\"}', i % 5000, i), '{}', md5(random()::text || i::text), \
               'newsletter', 'email', format('campaign-%s', i % 40), \
               'https://example.com/landing', 'Mozilla/5.0 (seed)', \
               format('{\"landing_page\":\"https://example.com/landing\",\"utm_campaign\":\
\"campaign-%s\",\"utm_medium\":\"email\",\"utm_source\":\"newsletter\"}', i % 40), \
               CASE WHEN $4 + i * $5 >= $7 THEN format('192.0.2.%s', i % 250) END, $4 + i * $5 \
             FROM generate_series($1::bigint, $2::bigint) AS i",
            "INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, \
               attempts, max_attempts, next_attempt_at, created_at, sent_at) \
             SELECT format('%s-5eed-7000-8002-%s', $3::text, lpad(to_hex(i), 12, '0')), \
               format('%s-5eed-7000-8000-%s', $3::text, lpad(to_hex(i), 12, '0')), \
               format('%s-5eed-7000-8001-%s', $3::text, lpad(to_hex(i), 12, '0')), $6::text, \
               'follow_up', format('reader-%s-%s@seed.invalid', $3::text, i), 'sent', 1, 8, \
               $4 + i * $5, $4 + i * $5, $4 + i * $5 + 1000 \
             FROM generate_series($1::bigint, $2::bigint) AS i",
        ],
    }
}
