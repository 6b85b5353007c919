//! The admin API: bearer token, pagination, filters.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{contact, Backend, TestApp};

both_backends! {
    async fn admin_api_without_a_valid_token_answers_401_with_no_data(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.post_json("contact", &contact("secret@example.com")).await;
        for auth in [None, Some("Bearer wrong"), Some("Basic dGVzdA=="), Some("Bearer ")] {
            let mut req = app.client.get(app.url("/v1/admin/leads"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{auth:?}");
            let text = resp.text().await.unwrap();
            assert!(!text.contains("secret@example.com"));
            assert!(text.contains("\"error\":\"unauthorized\""));
        }
    }

    async fn admin_api_is_closed_when_no_token_is_configured(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.admin.token = None).await;
        let resp = app.client.get(app.url("/v1/admin/leads")).bearer_auth("").send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }

    async fn leads_are_paginated_with_a_cursor(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for i in 0..7 {
            app.post_json("contact", &contact(&format!("p{i}@example.com"))).await;
        }
        let mut seen = Vec::new();
        let mut url = "/v1/admin/leads?limit=3".to_string();
        loop {
            let page = app.admin_get(&url).await;
            for l in page["leads"].as_array().unwrap() {
                seen.push(l["email"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/v1/admin/leads?limit=3&cursor={c}"),
                None => break,
            }
        }
        let want: Vec<String> = (0..7).map(|i| format!("p{i}@example.com")).collect();
        assert_eq!(seen, want, "every lead exactly once, oldest first");
    }

    async fn leads_filter_by_form_and_time(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.post_json("contact", &contact("c@example.com")).await;
        app.post_json("newsletter", &json!({"email": "n@example.com"})).await;
        let only_news = app.admin_get("/v1/admin/leads?form=newsletter").await;
        let emails: Vec<&str> = only_news["leads"].as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["n@example.com"]);

        let future = "2999-01-01T00:00:00Z";
        assert!(app.admin_get(&format!("/v1/admin/leads?since={future}")).await["leads"].as_array().unwrap().is_empty());
        assert_eq!(app.admin_get(&format!("/v1/admin/leads?until={future}")).await["leads"].as_array().unwrap().len(), 2);
        assert_eq!(app.admin_get("/v1/admin/leads?since=0").await["leads"].as_array().unwrap().len(), 2);
    }

    async fn bad_admin_queries_answer_400(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for q in ["limit=0", "limit=abc", "limit=501", "since=yesterday", "cursor=zzz", "bogus=1", "order=sideways"] {
            let resp = app.client.get(app.url(&format!("/v1/admin/leads?{q}"))).bearer_auth(crate::helpers::ADMIN_TOKEN).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{q}");
            let body: Value = resp.json().await.unwrap();
            let code = body["error"].as_str().unwrap();
            assert!(code.starts_with("invalid_"), "{q}: {body}");
            // The message says what is wrong, in words (not the code again).
            let message = body["message"].as_str().unwrap();
            assert_ne!(message, code, "{q}: {body}");
            assert!(message.contains(' '), "{q}: {body}");
        }
        let body: Value = app.client.get(app.url("/v1/admin/leads?limit=0")).bearer_auth(crate::helpers::ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["message"], "limit must be 1 to 500");
    }
}
