//! The group-commit writer: functional behaviour, not timings.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{contact, raw, Backend, Raw, TestApp};

async fn post_many(app: &TestApp, bodies: Vec<(&'static str, Value)>) -> Vec<(u16, Value)> {
    futures::future::join_all(bodies.into_iter().map(|(form, body)| async move {
        let r = app.post_json(form, &body).await;
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }))
    .await
}

impl Raw {
    /// Makes every insert of a submission by `email` fail, as a constraint would.
    async fn poison_submissions_of(&mut self, email: &str, backend: Backend) {
        let sql = match backend {
            Backend::Sqlite => format!(
                "CREATE TRIGGER poison BEFORE INSERT ON submissions WHEN NEW.email = '{email}' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;"
            ),
            Backend::Postgres => format!(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                   IF NEW.email = '{email}' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
                   RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER poison BEFORE INSERT ON submissions FOR EACH ROW EXECUTE FUNCTION poison();"
            ),
        };
        self.exec(&sql).await;
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
        let mut people = Vec::new();
        for (_, b) in &answers[8..] {
            people.push(app.lead_of(b).await);
        }
        assert!(people.iter().all(|id| *id == people[0]), "one lead for one person");
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("submissions").await, 1 + 8);
        assert_eq!(db.count("leads").await, 2);
        let leads = app.leads().await;
        let same = leads.iter().find(|l| l["email"] == "same.person@example.com").unwrap();
        assert_eq!(same["submission_count"], 8);
    }

    async fn a_batch_mixing_stored_keys_and_new_submissions_answers_both_and_writes_once(backend: Backend) {
        // Keys committed by an earlier batch, retried inside a batch of new submissions: the
        // retries get the first answers, the new ones are stored once each (on SQLite the key
        // lookup rides in the batch's transaction and a hit rolls it back and writes again).
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 200_000).await;
        let keyed = |i: usize| {
            let mut b = contact(&format!("retry{i}@example.com"));
            b["_idem"] = json!(format!("retry-key-{i}"));
            ("contact", b)
        };
        let first = post_many(&app, (0..3).map(keyed).collect()).await;
        assert!(first.iter().all(|(s, _)| *s == 201), "{first:?}");
        let mut bodies: Vec<(&str, Value)> = (0..12)
            .map(|i| {
                let mut b = contact(&format!("new{i}@example.com"));
                b["_idem"] = json!(format!("new-key-{i}"));
                ("contact", b)
            })
            .collect();
        for i in 0..3 {
            bodies.insert(i * 4, keyed(i));
        }
        let answers = post_many(&app, bodies).await;
        assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
        for i in 0..3 {
            assert_eq!(answers[i * 4].1["submission_id"], first[i].1["submission_id"], "retry {i}");
        }
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("submissions").await, 3 + 12);
        assert_eq!(db.count("leads").await, 3 + 12);
        let retried = app.leads().await;
        let one = retried.iter().find(|l| l["email"] == "retry1@example.com").unwrap();
        assert_eq!(one["submission_count"], 1, "a replay does not count as a submission");
    }

    async fn a_row_that_fails_does_not_fail_its_neighbours(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 100_000).await;
        let mut db = raw(&app.db).await;
        db.poison_submissions_of("poison@example.com", backend).await;
        let mut bodies: Vec<(&str, Value)> = (0..20).map(|i| ("contact", contact(&format!("ok{i}@example.com")))).collect();
        bodies.insert(7, ("contact", contact("poison@example.com")));
        let answers = post_many(&app, bodies).await;
        let (bad, good): (Vec<_>, Vec<_>) = answers.iter().enumerate().partition(|(i, _)| *i == 7);
        assert!(good.iter().all(|(_, (s, _))| *s == 201), "{answers:?}");
        assert_eq!(bad[0].1 .0, 500, "the poisoned row alone fails");
        assert_eq!(db.count("submissions").await, 20);
        assert_eq!(db.count("leads").await, 20, "the failed row left no half-written lead");
    }

    async fn a_batch_of_new_and_returning_people_keeps_each_returning_persons_follow_up_window(backend: Backend) {
        // On PostgreSQL new people take the one-statement path and returning people the
        // transactional one; both kinds, and a new person twice, share this batch.
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 200_000).await;
        for i in 0..4 {
            assert_eq!(app.post_json("contact", &contact(&format!("back{i}@example.com"))).await.status(), 201);
        }
        let mut bodies: Vec<(&str, Value)> = (0..4).map(|i| ("contact", contact(&format!("back{i}@example.com")))).collect();
        bodies.extend((0..4).map(|i| ("contact", contact(&format!("new{i}@example.com")))));
        bodies.push(("contact", contact("new0@example.com")));
        let answers = post_many(&app, bodies).await;
        assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
        assert_eq!(app.lead_of(&answers[8].1).await, app.lead_of(&answers[4].1).await, "one lead for a new person twice in a batch");
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("leads").await, 8);
        assert_eq!(db.count("submissions").await, 4 + 9);
        assert_eq!(db.count("outbox WHERE status = 'pending'").await, 4 + 4, "first follow-ups only");
        assert_eq!(db.count("outbox WHERE status = 'skipped'").await, 4 + 1, "within the window: skipped");
        let leads = app.leads().await;
        for l in &leads {
            let want = if l["email"] == "new1@example.com" || l["email"] == "new2@example.com" || l["email"] == "new3@example.com" { 1 } else { 2 };
            assert_eq!(l["submission_count"], want, "{l}");
        }
    }

    async fn a_batch_of_different_people_checks_each_returning_persons_window_in_the_database(backend: Backend) {
        // Every person once in the batch: on SQLite the whole batch is one command and the
        // outbox insert decides from what is stored whether a follow-up is inside its window.
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 200_000).await;
        for i in 0..3 {
            assert_eq!(app.post_json("contact", &contact(&format!("again{i}@example.com"))).await.status(), 201);
        }
        // Another form's follow-up is no reason to skip this one.
        assert_eq!(app.post_json("newsletter", &json!({"email": "elsewhere@example.com"})).await.status(), 201);
        let mut bodies: Vec<(&str, Value)> = (0..3).map(|i| ("contact", contact(&format!("again{i}@example.com")))).collect();
        bodies.push(("contact", contact("elsewhere@example.com")));
        bodies.extend((0..3).map(|i| ("contact", contact(&format!("first{i}@example.com")))));
        let answers = post_many(&app, bodies).await;
        assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("leads").await, 7);
        assert_eq!(
            db.count("outbox WHERE status = 'skipped' AND last_error LIKE 'not sent: this person already got a follow-up%'").await,
            3,
            "the three returning contacts' follow-ups are inside the window"
        );
        let kinds_pending = db.count("outbox WHERE status = 'pending' AND form_id = 'contact'").await;
        assert_eq!(kinds_pending, 3 + 1 + 3, "first contact follow-ups: the earlier ones, elsewhere's and the new people's");
        let leads = app.leads().await;
        for l in &leads {
            let back = l["email"].as_str().unwrap().starts_with("again") || l["email"] == "elsewhere@example.com";
            assert_eq!(l["submission_count"], if back { 2 } else { 1 }, "{l}");
        }
        let again0 = leads.iter().find(|l| l["email"] == "again0@example.com").unwrap();
        assert_eq!(app.lead_of(&answers[0].1).await, again0["id"].as_str().unwrap(), "a returning person keeps their lead");
    }

    async fn a_failing_returning_person_does_not_fail_the_new_people_in_its_batch(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 100_000).await;
        assert_eq!(app.post_json("contact", &contact("poison@example.com")).await.status(), 201);
        let mut db = raw(&app.db).await;
        db.poison_submissions_of("poison@example.com", backend).await;
        let mut bodies: Vec<(&str, Value)> = (0..10).map(|i| ("contact", contact(&format!("fresh{i}@example.com")))).collect();
        bodies.insert(3, ("contact", contact("poison@example.com")));
        let answers = post_many(&app, bodies).await;
        assert_eq!(answers[3].0, 500, "{answers:?}");
        assert!(answers.iter().enumerate().all(|(i, (s, _))| i == 3 || *s == 201), "{answers:?}");
        assert_eq!(db.count("submissions").await, 1 + 10, "each new person stored once");
        assert_eq!(db.count("leads").await, 11);
        let poisoned = app.leads().await.into_iter().find(|l| l["email"] == "poison@example.com").unwrap();
        assert_eq!(poisoned["submission_count"], 1, "the failed submission left its lead as it was");
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
