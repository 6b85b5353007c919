//! Idempotency keys: a repeat returns the first response and stores nothing new, also when
//! the repeats arrive at the same moment.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{contact, header, Backend, TestApp};

both_backends! {
    async fn a_repeated_key_returns_the_first_response_and_stores_nothing_new(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let send = || {
            app.client
                .post(app.submissions_url("contact"))
                .header("idempotency-key", "attempt-1")
                .json(&contact("idem@example.com"))
                .send()
        };
        let first = send().await.unwrap();
        assert_eq!(first.status(), 201);
        assert!(header(first.headers(), "idempotent-replayed").is_none());
        let first: Value = first.json().await.unwrap();
        let again = send().await.unwrap();
        assert_eq!(again.status(), 201);
        assert_eq!(header(again.headers(), "idempotent-replayed").as_deref(), Some("true"));
        let again: Value = again.json().await.unwrap();
        assert_eq!(first, again);
        assert_eq!(app.submissions().await.len(), 1);
        assert_eq!(app.leads().await[0]["submission_count"], 1);
    }

    async fn the_idem_field_works_like_the_header(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = contact("field@example.com");
        body["_idem"] = json!("from-field");
        let a: Value = app.post_json("contact", &body).await.json().await.unwrap();
        let b: Value = app.post_json("contact", &body).await.json().await.unwrap();
        assert_eq!(a["submission_id"], b["submission_id"]);
        assert_eq!(app.submissions().await.len(), 1);
    }

    async fn the_same_key_on_another_form_is_another_submission(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = contact("forms@example.com");
        body["_idem"] = json!("shared-key");
        app.post_json("contact", &body).await;
        app.post_json("newsletter", &json!({"email": "forms@example.com", "_idem": "shared-key"})).await;
        assert_eq!(app.submissions().await.len(), 2);
    }

    async fn a_key_reused_for_another_payload_is_refused_and_stores_nothing(backend: Backend) {
        // Stripe's rule: a key names one request. Reusing it for someone else's submission must
        // not replay the first person's answer (their download link included) nor drop the
        // second submission silently.
        let app = TestApp::spawn_with(backend, |s| s.writer.max_wait_us = 100_000).await;
        let send = |email: &str, company: &str| {
            let mut body = contact(email);
            body["company"] = json!(company);
            body["_idem"] = json!("reused-key");
            let app = &app;
            async move { app.post_json("contact", &body).await }
        };
        let first = send("first@example.com", "Acme").await;
        assert_eq!(first.status(), 201);
        let first: Value = first.json().await.unwrap();
        for (email, company, what) in [
            ("second@example.com", "Acme", "another person"),
            ("first@example.com", "Other Ltd", "the same person, other fields"),
        ] {
            let r = send(email, company).await;
            assert_eq!(r.status(), 422, "{what}");
            assert!(header(r.headers(), "idempotent-replayed").is_none(), "{what}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "idempotency_key_reused", "{what}");
            assert!(body.get("submission_id").is_none() && body.get("download_url").is_none(), "{what}");
        }
        // A true retry still replays.
        let retry = send("first@example.com", "Acme").await;
        assert_eq!(header(retry.headers(), "idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(retry.json::<Value>().await.unwrap(), first);
        // Two different payloads under one new key in the same batch: the first is stored, the
        // other refused.
        let (a, b) = tokio::join!(send("a@example.com", "A"), send("b@example.com", "B"));
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        // Both carry "reused-key", which is stored already: neither is this key's first payload.
        assert_eq!(statuses, [422, 422]);
        let fresh = |email: &'static str| {
            let mut body = contact(email);
            body["_idem"] = json!("batch-key");
            let app = &app;
            async move { app.post_json("contact", &body).await.status().as_u16() }
        };
        let (x, y) = tokio::join!(fresh("x@example.com"), fresh("y@example.com"));
        let mut statuses = [x, y];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 422], "one key, two payloads at once: one stored, one refused");
        assert_eq!(app.submissions().await.len(), 2, "first@ and one of x@/y@; nothing else");
    }

    async fn concurrent_duplicate_keys_store_one_row(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let requests = (0..20).map(|_| {
            app.client
                .post(app.submissions_url("contact"))
                .header("idempotency-key", "race-key-1")
                .json(&contact("race@example.com"))
                .send()
        });
        let responses = futures::future::join_all(requests).await;
        let mut ids = Vec::new();
        for r in responses {
            let r = r.unwrap();
            assert_eq!(r.status(), 201);
            let body: Value = r.json().await.unwrap();
            ids.push(body["submission_id"].as_str().unwrap().to_string());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "every answer names the same submission");
        assert_eq!(app.submissions().await.len(), 1);
        assert_eq!(app.leads().await[0]["submission_count"], 1);
    }

    async fn concurrent_submissions_by_one_person_make_one_lead(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let body = contact("many@example.com");
        let requests = (0..20).map(|_| app.post_json("contact", &body));
        for r in futures::future::join_all(requests).await {
            assert_eq!(r.status(), 201);
        }
        let leads = app.leads().await;
        assert_eq!(leads.len(), 1);
        assert_eq!(leads[0]["submission_count"], 20);
        assert_eq!(app.submissions().await.len(), 20);
    }
}
