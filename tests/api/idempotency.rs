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
