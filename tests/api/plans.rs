//! The write path's statements use an index on both engines, on a database large enough for
//! the planner to choose honestly (seeded history, statistics refreshed).

use inlet::store::LeadStore;

use crate::both_backends;
use crate::helpers::{test_settings, Backend, TestDb};

/// Enough rows that a full scan costs the planner far more than an index probe.
const HISTORY: u64 = 20_000;

async fn seeded_store(backend: Backend) -> (LeadStore, TestDb, tempfile::TempDir) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&db, dir.path());
    let store = LeadStore::connect(&settings.database, settings.suppression_key())
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    store
        .seed_history(HISTORY, "contact", now, |_| {})
        .await
        .unwrap();
    (store, db, dir)
}

/// Every plan probes an index: none reads a whole table.
fn assert_no_full_scan(plans: &[inlet::store::QueryPlan]) {
    for p in plans {
        assert!(!p.plan.is_empty(), "{}: no plan", p.statement);
        assert!(
            p.full_scans().is_empty(),
            "{} scans a whole table:\n{}\nplan:\n{}",
            p.statement,
            p.sql,
            p.plan.join("\n")
        );
    }
}

both_backends! {
    async fn no_write_path_statement_scans_a_growing_table(backend: Backend) {
        let (store, _db, _dir) = seeded_store(backend).await;
        let plans = store.explain_write_path().await.unwrap();
        assert!(plans.len() >= 8, "every write-path statement is explained");
        assert_no_full_scan(&plans);
        store.close().await;
    }

    async fn no_qualification_statement_scans_a_growing_table(backend: Backend) {
        let (store, db, _dir) = seeded_store(backend).await;
        // A history of events, deliveries, hand-offs, downloads and stages, nearly all of it finished.
        let mut raw = crate::helpers::raw(&db).await;
        let numbers = match backend {
            Backend::Sqlite => format!("(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {HISTORY}) SELECT i FROM n)"),
            Backend::Postgres => format!("(SELECT generate_series(1, {HISTORY}) AS i)"),
        };
        let id = |prefix: &str| match backend {
            Backend::Sqlite => format!("'{prefix}-' || printf('%012d', i)"),
            Backend::Postgres => format!("'{prefix}-' || lpad(i::text, 12, '0')"),
        };
        for sql in [
            format!("INSERT INTO events (id, type, lead_id, data, status, next_attempt_at, created_at) \
                     SELECT {}, 'submission.created', {}, '{{}}', CASE WHEN i % 1000 = 0 THEN 'pending' ELSE 'done' END, i, i FROM {numbers} AS s",
                    id("e"), id("l")),
            format!("INSERT INTO webhook_deliveries (id, message_id, endpoint_id, type, lead_id, payload, status, next_attempt_at, created_at, event_at) \
                     SELECT {}, 'msg', 'crm', 'lead.mql', {}, '{{}}', CASE WHEN i % 1000 = 0 THEN 'failed' ELSE 'delivered' END, i, i, i FROM {numbers} AS s",
                    id("d"), id("l")),
            format!("INSERT INTO handoffs (id, lead_id, owner_id, status, route, created_at, updated_at, sla_due_at) \
                     SELECT {}, l.id, 'sam', CASE WHEN i % 1000 = 0 THEN 'new' ELSE 'qualified' END, 'pool', i, i, i \
                     FROM {numbers} AS s JOIN (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS r FROM leads) l ON l.r = s.i",
                    id("h")),
            "INSERT INTO downloads (id, lead_id, form_id, created_at, expires_at, download_count) \
             SELECT id, lead_id, form_id, created_at, created_at + 1, 1 FROM submissions".to_string(),
            "INSERT INTO lead_stages (lead_id, stage, score, fit, engagement, ruleset, changed_at, scored_at) \
             SELECT id, 'lead', 10, 10, 0, 'r-plan', created_at, created_at FROM leads".to_string(),
            "ANALYZE".to_string(),
        ] {
            raw.exec(&sql).await;
        }
        let plans = store.explain_qualification().await.unwrap();
        assert_eq!(plans.len(), 7);
        assert_no_full_scan(&plans);
        store.close().await;
    }

    async fn no_sequence_statement_scans_a_growing_table(backend: Backend) {
        let (store, db, _dir) = seeded_store(backend).await;
        // Every lead enrolled in one of three sequences, each with a sent step, a waiting
        // one, and a click.
        let mut raw = crate::helpers::raw(&db).await;
        let seq = match backend {
            Backend::Sqlite => "'seq-' || (abs(random()) % 3)",
            Backend::Postgres => "'seq-' || floor(random() * 3)::int",
        };
        for sql in [
            format!("INSERT INTO enrolments (id, sequence_id, lead_id, submission_id, status, enrolled_at) \
                     SELECT 'en-' || s.lead_id, {seq}, s.lead_id, MIN(s.id), 'active', MIN(s.created_at) \
                     FROM submissions s GROUP BY s.lead_id"),
            "INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, attempts, max_attempts, next_attempt_at, created_at, enrolment_id, step_id) \
             SELECT 'o1-' || e.id, e.lead_id, e.submission_id, 'contact', 'sequence_step', 'x@example.org', 'sent', 1, 8, e.enrolled_at, e.enrolled_at, e.id, 'one' FROM enrolments e".to_string(),
            "INSERT INTO outbox (id, lead_id, submission_id, form_id, kind, recipient, status, attempts, max_attempts, next_attempt_at, created_at, enrolment_id, step_id) \
             SELECT 'o2-' || e.id, e.lead_id, e.submission_id, 'contact', 'sequence_step', 'x@example.org', 'pending', 0, 8, e.enrolled_at, e.enrolled_at, e.id, 'two' FROM enrolments e".to_string(),
            "INSERT INTO sequence_interactions (id, kind, lead_id, enrolment_id, message_id, step_id, external_id, created_at) \
             SELECT 'i-' || e.id, 'click', e.lead_id, e.id, 'o1-' || e.id, 'one', '0', e.enrolled_at FROM enrolments e".to_string(),
            "ANALYZE".to_string(),
        ] {
            raw.exec(&sql).await;
        }
        let plans = store.explain_sequences().await.unwrap();
        assert_eq!(plans.len(), 10);
        assert_no_full_scan(&plans);
        store.close().await;
    }

    async fn the_plan_check_sees_a_full_scan_when_there_is_one(backend: Backend) {
        // The control: no index covers the user agent, so this reads every submission.
        let (store, _db, _dir) = seeded_store(backend).await;
        let p = store
            .explain(
                "unindexed control",
                "SELECT id FROM submissions WHERE user_agent IN ('a', 'b')",
            )
            .await
            .unwrap();
        assert!(!p.full_scans().is_empty(), "plan:\n{}", p.plan.join("\n"));
        store.close().await;
    }

    async fn seeded_history_is_readable_through_the_admin_queries(backend: Backend) {
        let (store, _db, _dir) = seeded_store(backend).await;
        let page = store
            .list_leads(&inlet::store::LeadQuery {
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 5);
        assert!(page.items[0].email.ends_with("@seed.invalid"));
        assert_eq!(page.items[0].latest_submission.form_id, "contact");
        store.close().await;
    }
}
