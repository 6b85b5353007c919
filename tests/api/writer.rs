//! The group-commit writer: functional behaviour, not timings.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::both_backends;
use crate::helpers::{contact, Backend, TestApp, TestDb};

async fn post_many(app: &TestApp, bodies: Vec<(&'static str, Value)>) -> Vec<(u16, Value)> {
    futures::future::join_all(bodies.into_iter().map(|(form, body)| async move {
        let r = app.post_json(form, &body).await;
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }))
    .await
}

/// A connection straight to the test database (not through Inlet).
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn raw(db: &TestDb) -> Raw {
    match db {
        TestDb::Sqlite(_) => Raw::Sqlite(sqlx::SqliteConnection::connect(&db.url()).await.unwrap()),
        TestDb::Postgres { .. } => {
            Raw::Postgres(sqlx::PgConnection::connect(&db.url()).await.unwrap())
        }
    }
}

impl Raw {
    async fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            Raw::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&mut self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(&sql).fetch_one(c).await.unwrap(),
            Raw::Postgres(c) => sqlx::query_scalar(&sql).fetch_one(c).await.unwrap(),
        }
    }
}

both_backends! {
    async fn many_concurrent_submissions_are_each_stored_exactly_once_in_shared_batches(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 2000).await;
        let bodies = (0..300).map(|i| ("contact", contact(&format!("c{i}@example.com")))).collect();
        let answers = post_many(&app, bodies).await;
        assert!(answers.iter().all(|(s, _)| *s == 201));
        let mut ids: Vec<&str> = answers.iter().map(|(_, b)| b["submission_id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 300);
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("submissions").await, 300);
        assert_eq!(db.count("leads").await, 300);
        assert_eq!(db.count("outbox").await, 300);
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let single: f64 = metric(&metrics, "inlet_write_batch_size_bucket{le=\"1\"}");
        let total: f64 = metric(&metrics, "inlet_write_batch_size_count");
        assert!(total < 300.0 && single < total, "batches formed: {total} transactions for 300 submissions");
    }

    async fn duplicates_inside_one_batch_keep_idempotency_and_one_lead(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 200_000).await;
        let mut bodies = Vec::new();
        for _ in 0..8 {
            let mut b = contact("same-key@example.com");
            b["_idem"] = json!("one-attempt");
            bodies.push(("contact", b));
        }
        for i in 0..8 {
            bodies.push(("newsletter", json!({"email": "SAME.person@example.com", "name": format!("n{i}")})));
        }
        let answers = post_many(&app, bodies).await;
        assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
        let keyed: Vec<&Value> = answers[..8].iter().map(|(_, b)| &b["submission_id"]).collect();
        assert!(keyed.iter().all(|id| *id == keyed[0]), "one submission for one key");
        let people: Vec<&Value> = answers[8..].iter().map(|(_, b)| &b["lead_id"]).collect();
        assert!(people.iter().all(|id| *id == people[0]), "one lead for one person");
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("submissions").await, 1 + 8);
        assert_eq!(db.count("leads").await, 2);
        let leads = app.leads().await;
        let same = leads.iter().find(|l| l["email"] == "same.person@example.com").unwrap();
        assert_eq!(same["submission_count"], 8);
    }

    async fn a_row_that_fails_does_not_fail_its_neighbours(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 100_000).await;
        let mut db = raw(&app.db).await;
        match backend {
            Backend::Sqlite => db.exec(
                "CREATE TRIGGER poison BEFORE INSERT ON submissions WHEN NEW.email = 'poison@example.com' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
            ).await,
            Backend::Postgres => db.exec(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                   IF NEW.email = 'poison@example.com' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
                   RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER poison BEFORE INSERT ON submissions FOR EACH ROW EXECUTE FUNCTION poison();",
            ).await,
        }
        let mut bodies: Vec<(&str, Value)> = (0..20).map(|i| ("contact", contact(&format!("ok{i}@example.com")))).collect();
        bodies.insert(7, ("contact", contact("poison@example.com")));
        let answers = post_many(&app, bodies).await;
        let (bad, good): (Vec<_>, Vec<_>) = answers.iter().enumerate().partition(|(i, _)| *i == 7);
        assert!(good.iter().all(|(_, (s, _))| *s == 201), "{answers:?}");
        assert_eq!(bad[0].1 .0, 500, "the poisoned row alone fails");
        assert_eq!(db.count("submissions").await, 20);
        assert_eq!(db.count("leads").await, 20, "the failed row left no half-written lead");
    }

    async fn shutdown_with_a_half_full_batch_commits_it_before_exiting(backend: Backend) {
        let mut app = TestApp::spawn_with(backend, |s| {
            s.writer.max_wait_us = 400_000;
            s.writer.max_batch = 1000;
        }).await;
        let sending = post_many(&app, (0..6).map(|i| ("contact", contact(&format!("s{i}@example.com")))).collect());
        let stopping = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.handle.stop(true).await;
        };
        let (answers, ()) = tokio::join!(sending, stopping);
        assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
        (&mut app.running).await.unwrap().expect("the application stops cleanly");
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("submissions").await, 6);
    }

    async fn a_full_queue_answers_503_with_retry_after_at_once(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.writer.queue_capacity = 1;
            s.writer.postgres_writers = 1;
            s.database.acquire_timeout_ms = 10_000;
        }).await;
        // Stall the writer behind a lock held by another connection.
        let mut blocker = raw(&app.db).await;
        match backend {
            Backend::Sqlite => blocker.exec("BEGIN EXCLUSIVE").await,
            Backend::Postgres => blocker.exec("BEGIN; LOCK TABLE leads IN EXCLUSIVE MODE").await,
        }
        let sending = post_many(&app, (0..12).map(|i| ("contact", contact(&format!("q{i}@example.com")))).collect());
        let release = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            blocker.exec("ROLLBACK").await;
        };
        let (answers, ()) = tokio::join!(sending, release);
        let overloaded: Vec<_> = answers.iter().filter(|(s, b)| *s == 503 && b["error"] == "overloaded").collect();
        let created = answers.iter().filter(|(s, _)| *s == 201).count();
        assert!(!overloaded.is_empty(), "{answers:?}");
        assert_eq!(overloaded.len() + created, 12, "only 201 or 503 overloaded: {answers:?}");
        assert!(created >= 1);
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("submissions").await, i64::try_from(created).unwrap());
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no metric {name}"))
}
