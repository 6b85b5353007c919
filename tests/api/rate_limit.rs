//! Rate limits: per client IP and per form, 429 with Retry-After, nothing stored when refused.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{contact, header, Backend, TestApp};

both_backends! {
    async fn the_per_ip_limit_answers_429_with_retry_after(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.rate_limit.enabled = true;
            s.rate_limit.per_ip_per_minute = 1;
            s.rate_limit.per_ip_burst = 3;
        }).await;
        for i in 0..3 {
            let r = app.post_json("contact", &contact(&format!("r{i}@example.com"))).await;
            assert_eq!(r.status(), 201, "request {i} is within the burst");
        }
        let limited = app.post_json("contact", &contact("r9@example.com")).await;
        assert_eq!(limited.status(), 429);
        let retry: u64 = header(limited.headers(), "retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(app.submissions().await.len(), 3, "the refused request stored nothing");
    }

    async fn forwarded_for_counts_only_through_a_trusted_proxy(backend: Backend) {
        let untrusted = TestApp::spawn_with(backend, |s| {
            s.rate_limit.enabled = true;
            s.rate_limit.per_ip_per_minute = 1;
            s.rate_limit.per_ip_burst = 1;
        }).await;
        let send = |app: &TestApp, ip: &str, email: &str| {
            app.client
                .post(app.submissions_url("contact"))
                .header("x-forwarded-for", ip)
                .json(&contact(email))
                .send()
        };
        assert_eq!(send(&untrusted, "198.51.100.1", "a@example.com").await.unwrap().status(), 201);
        assert_eq!(
            send(&untrusted, "198.51.100.2", "b@example.com").await.unwrap().status(),
            429,
            "a spoofed X-Forwarded-For from an untrusted peer does not buy a new bucket"
        );

        let trusted = TestApp::spawn_with(backend, |s| {
            s.rate_limit.enabled = true;
            s.rate_limit.per_ip_per_minute = 1;
            s.rate_limit.per_ip_burst = 1;
            s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
            s.privacy.ip = inlet::domain::IpPrivacy::Full;
        }).await;
        assert_eq!(send(&trusted, "198.51.100.1", "a@example.com").await.unwrap().status(), 201);
        assert_eq!(send(&trusted, "198.51.100.2", "b@example.com").await.unwrap().status(), 201);
        assert_eq!(send(&trusted, "198.51.100.1", "c@example.com").await.unwrap().status(), 429);
        let ips: Vec<Value> = trusted.submissions().await.iter().map(|s| s["client_ip"].clone()).collect();
        assert_eq!(ips, ["198.51.100.1", "198.51.100.2"], "the client IP behind the proxy is recorded");
    }

    async fn the_per_form_limit_protects_each_form_separately(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.rate_limit.enabled = true;
            s.rate_limit.per_form_per_second = 1;
            s.rate_limit.per_form_burst = 2;
            s.rate_limit.per_ip_per_minute = 1000;
            s.rate_limit.per_ip_burst = 1000;
        }).await;
        let statuses: Vec<u16> = futures::future::join_all(
            (0..5).map(|i| {
                let app = &app;
                let body = contact(&format!("f{i}@example.com"));
                async move { app.post_json("contact", &body).await }
            }),
        )
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
        assert!(statuses.contains(&429), "{statuses:?}");
        let other = app.post_json("newsletter", &serde_json::json!({"email": "n@example.com"})).await;
        assert_eq!(other.status(), 201, "another form has its own budget");
    }
}
