//! Webhook delivery against a real HTTP receiver on loopback that fails, redirects, times out,
//! asks to retry later and answers 410 on cue; signatures checked with the Standard Webhooks
//! reference library (Rust crate `standardwebhooks`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, ADMIN_TOKEN};
use crate::qualification::{admin_post, SECRET};
use crate::receiver::{Answer, Got, Receiver};
use crate::smtp::SmtpServer;

/// Webhooks only (no scoring): one endpoint that gets `submission.created`.
async fn spawn(
    backend: Backend,
    smtp: &SmtpServer,
    receiver: &Receiver,
    more: impl FnOnce(&mut inlet::config::Settings),
) -> TestApp {
    crate::qualification::spawn(backend, smtp, receiver, |s| {
        crate::helpers::without_qualification(s);
        s.webhooks.endpoints[0].events = vec!["submission.created".into()];
        more(s);
    })
    .await
}

async fn submit(app: &TestApp, email: &str) {
    let resp = app
        .post_json("contact", &crate::helpers::contact(email))
        .await;
    assert_eq!(resp.status(), 201);
}

async fn log(app: &TestApp) -> Vec<Value> {
    app.admin_get("/v1/admin/webhooks/deliveries").await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn attempts(app: &TestApp, delivery: &str) -> Vec<Value> {
    app.admin_get(&format!("/v1/admin/webhooks/deliveries/{delivery}"))
        .await["attempts"]
        .as_array()
        .unwrap()
        .clone()
}

/// The signature the reference library computes for a received message (its own check
/// also wants the timestamp within five minutes of the wall clock, which a test that moves
/// the application's clock forward leaves behind).
fn signed_as_the_reference_would(g: &Got) -> bool {
    let hook = standardwebhooks::Webhook::new(SECRET).unwrap();
    let ts: i64 = g.header("webhook-timestamp").parse().unwrap();
    let expected = hook.sign(&g.header("webhook-id"), ts, &g.body).unwrap();
    g.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

both_backends! {
    async fn failures_are_retried_with_one_webhook_id_redirects_fail_and_retry_after_is_honoured(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        receiver.script([Answer::Status(500), Answer::Redirect, Answer::RetryAfter(120)]);
        submit(&app, "ann@example.com").await;
        let first = app.dispatch().await.qualification.webhooks;
        assert_eq!((first.claimed, first.failed), (1, 1), "{first:?}");
        receiver.got()[0].verify(SECRET).expect("verified by the reference library");
        assert_eq!(app.dispatch().await.qualification.webhooks.claimed, 0, "not due again at once");
        assert_eq!(app.dispatch_after(5_000).await.qualification.webhooks.failed, 1, "the redirect is a failure");
        assert_eq!(app.dispatch_after(300_000).await.qualification.webhooks.failed, 1);
        let d = log(&app).await[0].clone();
        assert_eq!(d["status"], "failed");
        let wait = d["next_attempt_at_ms"].as_i64().unwrap() - app.clock.now_ms();
        assert!((119_000..=120_000).contains(&wait), "Retry-After: 120, not the schedule's 30 minutes: {wait}");
        assert_eq!(app.dispatch_after(119_000).await.qualification.webhooks.claimed, 0);
        assert_eq!(app.dispatch_after(1_000).await.qualification.webhooks.delivered, 1);

        let got = receiver.got();
        assert_eq!(got.len(), 4);
        let ids: Vec<String> = got.iter().map(|g| g.header("webhook-id")).collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "one webhook-id across retries: {ids:?}");
        assert!(got.iter().all(signed_as_the_reference_would));
        assert!(got.iter().all(|g| g.body == got[0].body), "the same body every time");
        let body = got[0].json();
        assert_eq!(body["type"], "submission.created");
        assert_eq!(body["data"]["email"], "ann@example.com");
        assert_eq!(body["data"]["form_id"], "contact");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

        let d = log(&app).await[0].clone();
        assert_eq!((d["status"].clone(), d["attempts"].clone(), d["last_status"].clone()), (json!("delivered"), json!(4), json!(204)));
        let tries = attempts(&app, d["id"].as_str().unwrap()).await;
        let codes: Vec<i64> = tries.iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
        assert_eq!(codes, [204, 503, 302, 500], "newest first");
        assert!(tries[3]["response"].as_str().unwrap().contains("answer 500"), "the start of the response is kept");
        assert!(tries[2]["error"].as_str().unwrap().contains("redirect"));
    }

    async fn a_410_disables_the_endpoint_tells_its_contact_and_a_replay_catches_up(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        let start = chrono::DateTime::from_timestamp_millis(app.clock.now_ms() - 1000).unwrap().to_rfc3339();
        receiver.script([Answer::Status(410)]);
        submit(&app, "a@example.com").await;
        let r = app.dispatch().await.qualification;
        assert_eq!((r.webhooks.dead, r.staff_sent), (1, 1), "{r:?}");
        let told = smtp.received();
        assert_eq!(told.len(), 2, "the contact form's owner mail is off; the follow-up and the notice");
        let notice = told.iter().find(|m| m.to == ["ops@example.com"]).expect("the endpoint's contact hears");
        assert_eq!(notice.parsed().subject().unwrap(), "Inlet stopped sending webhooks to 'crm'");
        let endpoints = app.admin_get("/v1/admin/webhooks").await;
        assert_eq!(endpoints[0]["state"]["disabled_reason"], "the endpoint answered 410 Gone");
        assert_eq!(endpoints[0]["host"], "127.0.0.1");

        // Disabled: nothing more is queued for it.
        submit(&app, "b@example.com").await;
        app.dispatch().await;
        assert_eq!(receiver.got().len(), 1);
        assert_eq!(log(&app).await.len(), 1);

        let on = app.client.post(app.url("/v1/admin/webhooks/crm/enable")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(on.status(), 200);
        assert!(on.json::<Value>().await.unwrap()["state"]["disabled_at_ms"].is_null());
        let replay = admin_post(&app, "/v1/admin/webhooks/replay", &json!({"endpoint": "crm", "since": start})).await;
        assert_eq!(replay.status(), 200);
        assert_eq!(replay.json::<Value>().await.unwrap()["queued"], 1, "the one message that was sent before");
        assert_eq!(app.dispatch().await.qualification.webhooks.delivered, 1);
        let got = receiver.got();
        assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"), "a replay is the same message");
        got[1].verify(SECRET).unwrap();
        let one = admin_post(&app, "/v1/admin/webhooks/replay", &json!({"delivery_id": log(&app).await[0]["id"]})).await;
        assert_eq!(one.json::<Value>().await.unwrap()["queued"], 1);
        // The same from the command line.
        let id = log(&app).await[0]["id"].as_str().unwrap().to_string();
        let out = crate::helpers::cli(&["webhooks", "replay", &id], &app.db.url());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 deliveries queued again (same webhook-id)"));
        let listed = crate::helpers::cli(&["webhooks", "deliveries", "--endpoint", "crm"], &app.db.url());
        assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1 + 4, "a header and four deliveries");
        let nothing = crate::helpers::cli(&["webhooks", "replay", "--endpoint", "crm", "--since", "not-a-time"], &app.db.url());
        assert_eq!(nothing.status.code(), Some(1));
        for (body, status) in [
            (json!({"delivery_id": "nope"}), 404),
            (json!({"endpoint": "nope", "since": start}), 400),
            (json!({"endpoint": "crm"}), 400),
            (json!({"endpoint": "crm", "since": "yesterday"}), 400),
            (json!({}), 400),
        ] {
            assert_eq!(admin_post(&app, "/v1/admin/webhooks/replay", &body).await.status(), status, "{body}");
        }
    }

    async fn a_receiver_slower_than_the_timeout_is_a_failure_that_is_retried(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |s| s.webhooks.timeout_ms = 300).await;
        receiver.script([Answer::Slow(Duration::from_secs(3))]);
        submit(&app, "slow@example.com").await;
        assert_eq!(app.dispatch().await.qualification.webhooks.failed, 1);
        let d = log(&app).await[0].clone();
        assert!(d["last_error"].as_str().unwrap().contains("timed out"), "{d}");
        assert_eq!(app.dispatch_after(5_000).await.qualification.webhooks.delivered, 1);
    }

    async fn an_endpoint_failing_for_days_is_disabled_and_deliveries_give_up_after_the_window(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |s| {
            s.webhooks.retry_hours = 1;
            s.webhooks.disable_after_hours = 2;
        }).await;
        receiver.script(std::iter::repeat_n(Answer::Status(503), 20));
        submit(&app, "x@example.com").await;
        app.dispatch().await;
        app.dispatch_after(5_000).await;
        app.dispatch_after(300_000).await;
        let last = app.dispatch_after(1_800_000).await.qualification.webhooks;
        assert_eq!(last.dead, 1, "the next wait (2 h) would end after the 1-hour window: {last:?}");
        assert_eq!(log(&app).await[0]["status"], "dead");
        // Another message fails more than two hours after the first failure: disabled.
        app.advance(Duration::from_secs(2 * 3600));
        submit(&app, "y@example.com").await;
        let r = app.dispatch().await.qualification;
        assert_eq!(r.webhooks.failed, 1);
        let endpoints = app.admin_get("/v1/admin/webhooks").await;
        let reason = endpoints[0]["state"]["disabled_reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.starts_with("every delivery failed for 2 hours"), "{endpoints}");
        assert_eq!(r.staff_sent, 1, "the contact hears");
        submit(&app, "z@example.com").await;
        app.dispatch_after(10_000).await;
        let statuses: Vec<String> = log(&app).await.iter().map(|d| d["status"].as_str().unwrap().to_string()).collect();
        assert_eq!(statuses, ["cancelled", "dead"], "the retry after disabling is not sent: {statuses:?}");
    }

    async fn endpoints_that_resolve_to_private_addresses_are_refused_unless_allow_listed(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let by_name = receiver.url.replace("127.0.0.1", "localhost");
        let app = spawn(backend, &smtp, &receiver, |s| {
            s.webhooks.allow_private.clear();
            s.webhooks.endpoints[0].url = by_name;
        }).await;
        submit(&app, "p@example.com").await;
        assert_eq!(app.dispatch().await.qualification.webhooks.failed, 1);
        assert!(receiver.got().is_empty(), "nothing reached the loopback receiver");
        let d = log(&app).await[0].clone();
        let tries = attempts(&app, d["id"].as_str().unwrap()).await;
        assert!(tries[0]["error"].as_str().unwrap().contains("localhost resolves only to private, loopback or link-local addresses"), "{tries:?}");
        // A literal private address does not even start.
        let db = crate::helpers::TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::helpers::test_settings(&db, dir.path());
        s.webhooks.endpoints = vec![inlet::config::WebhookEndpointConfig {
            id: "inside".into(),
            url: "http://169.254.169.254/latest/meta-data".into(),
            secrets: vec![secrecy::SecretString::from(SECRET)],
            events: Vec::new(),
            contact: None,
        }];
        let err = inlet::startup::Application::build(s).await.err().expect("refused").to_string();
        assert!(err.contains("169.254.169.254, a private, loopback or link-local address"), "{err}");
    }

    async fn the_delivery_log_needs_its_scope(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        let key = app.state.store.clone();
        let (_, secret) = inlet::keys::create(&key, &inlet::keys::KeyName::parse("reader").unwrap(), inlet::keys::Scopes::parse("leads:read").unwrap(), "test", app.clock.now_ms()).await.unwrap();
        let resp = app.client.get(app.url("/v1/admin/webhooks/deliveries")).bearer_auth(&secret).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "insufficient_scope");
        let anon = app.client.post(app.url("/v1/admin/webhooks/replay")).json(&json!({})).send().await.unwrap();
        assert_eq!(anon.status(), 401);
        let bad = app.client.get(app.url("/v1/admin/webhooks/deliveries?status=lost")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(bad.status(), 400);
    }
    async fn the_delivery_log_is_counted_in_metrics_and_kept_for_log_days(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        receiver.script([Answer::Status(500)]);
        submit(&app, "m@example.com").await;
        app.dispatch().await;
        app.dispatch_after(5_000).await;
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(metrics.contains("inlet_webhook_deliveries_total{endpoint=\"crm\",outcome=\"failed\"} 1"), "{metrics}");
        assert!(metrics.contains("inlet_webhook_deliveries_total{endpoint=\"crm\",outcome=\"delivered\"} 1"), "{metrics}");
        assert!(metrics.contains("inlet_events_waiting 0"), "{metrics}");
        let settings = inlet::config::RetentionSettings::default();
        let kept = app.state.store.apply_retention(app.clock.now_ms() + 29 * 86_400_000, &settings).await.unwrap();
        assert_eq!(kept.log_rows_deleted, 0, "younger than 30 days");
        let gone = app.state.store.apply_retention(app.clock.now_ms() + 31 * 86_400_000, &settings).await.unwrap();
        assert_eq!(gone.log_rows_deleted, 4, "one event, one delivery and its two attempts: {gone:?}");
        let mut raw = crate::helpers::raw(&app.db).await;
        for table in ["events", "webhook_deliveries", "webhook_attempts"] {
            assert_eq!(raw.count(table).await, 0, "{table}");
        }
    }
}
