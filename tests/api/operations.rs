//! Health, readiness, metrics, request ids, and what happens when the database goes away.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{contact, header, Backend, TestApp};

both_backends! {
    async fn health_and_readiness_answer(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let h = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(h.status(), 200);
        let r: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["status"], "ready");
        assert_eq!(r["database"], if backend == Backend::Sqlite { "sqlite" } else { "postgres" });
    }

    async fn metrics_count_submissions_by_form_and_outcome_without_personal_data(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.post_json("contact", &contact("metrics.person@example.com")).await;
        app.post_json("contact", &serde_json::json!({"email": "bad"})).await;
        let mut spam = contact("bot@example.com");
        spam["_gotcha"] = "x".into();
        app.post_json("contact", &spam).await;
        app.post_json("nope", &contact("x@example.com")).await;
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for line in [
            "inlet_submissions_total{form=\"contact\",outcome=\"accepted\"} 1",
            "inlet_submissions_total{form=\"contact\",outcome=\"invalid\"} 1",
            "inlet_submissions_total{form=\"contact\",outcome=\"spam\"} 1",
            "inlet_submissions_total{form=\"unknown\",outcome=\"rejected\"} 1",
            "inlet_spam_total{form=\"contact\",reason=\"honeypot\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(!text.contains("metrics.person"), "no email addresses in metrics");
        assert!(!text.contains("form=\"nope\""), "unknown form ids never become labels");
    }

    async fn every_response_carries_a_request_id(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let r = app.client.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
        assert_eq!(header(r.headers(), "x-request-id").as_deref(), Some("abc-123"));
        let r = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(header(r.headers(), "x-request-id").unwrap().len(), 36);
    }

    async fn unknown_routes_answer_404_json(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let r = app.client.get(app.url("/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
        let r = app.client.get(app.submissions_url("contact")).send().await.unwrap();
        assert!(r.status().is_client_error(), "GET on the submissions endpoint is a 4xx");
    }

    async fn an_unavailable_database_answers_503_and_stores_nothing(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.database.acquire_timeout_ms = 300).await;
        // Take the database away in the way each engine loses it in production.
        let sqlite_lock = match backend {
            Backend::Sqlite => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&app.db.url()).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await.unwrap();
                Some(c)
            }
            Backend::Postgres => {
                let crate::helpers::TestDb::Postgres { name } = &app.db else { unreachable!() };
                app.db.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
                app.db.admin_sql(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                )).await;
                None
            }
        };
        let resp = app.post_json("contact", &contact("down@example.com")).await;
        assert_eq!(resp.status(), 503);
        assert!(header(resp.headers(), "retry-after").is_some());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "database_unavailable");
        if backend == Backend::Postgres {
            let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
            assert_eq!(ready.status(), 503);
        }

        // Bring it back: the service recovers by itself, and nothing was half-written.
        match (backend, sqlite_lock) {
            (Backend::Sqlite, Some(mut c)) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
            _ => {
                let crate::helpers::TestDb::Postgres { name } = &app.db else { unreachable!() };
                app.db.admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
            }
        }
        assert!(app.submissions().await.is_empty());
        let again = app.post_json("contact", &contact("up@example.com")).await;
        assert_eq!(again.status(), 201);
    }

    async fn retention_clears_a_large_backlog_in_short_steps_while_capture_goes_on(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let now = app.clock.now_ms();
        // A year of history, two thousand leads, every one of them flagged as spam.
        app.state.store.seed_history(2000, "contact", now, |_| {}).await.unwrap();
        let mut db = crate::helpers::raw(&app.db).await;
        db.exec("UPDATE submissions SET spam_reason = 'honeypot'").await;
        let cutoff = now - 30 * 86_400_000;
        let due = db.count(&format!("submissions WHERE created_at < {cutoff}")).await;
        assert!(due > 1500, "{due}");
        // Capture goes on throughout.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = {
            let (client, url, done) = (app.client.clone(), app.submissions_url("contact"), done.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || i < 20 {
                    let body = contact(&format!("during{i}@example.com"));
                    statuses.push(client.post(&url).json(&body).send().await.unwrap().status().as_u16());
                    i += 1;
                }
                statuses
            })
        };
        let settings = inlet::config::RetentionSettings::default();
        let r = app.state.store.apply_retention(now, &settings).await.unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let statuses = load.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
        let due = u64::try_from(due).unwrap();
        assert_eq!((r.spam_submissions_deleted, r.leads_deleted), (due, due), "{r:?}");
        assert!(r.steps >= due.div_ceil(256), "one short transaction per 256 rows at most: {r:?}");
        assert_eq!(db.count(&format!("submissions WHERE created_at < {cutoff}")).await, 0);
        for orphans in ["outbox WHERE lead_id NOT IN (SELECT id FROM leads)",
                        "submissions WHERE lead_id NOT IN (SELECT id FROM leads)"] {
            assert_eq!(db.count(orphans).await, 0, "{orphans}");
        }
        assert_eq!(db.count("submissions WHERE spam_reason IS NULL").await,
                   i64::try_from(statuses.len()).unwrap(), "every lead captured meanwhile is kept");
        // A second run finds nothing to do.
        assert_eq!(app.state.store.apply_retention(now, &settings).await.unwrap(),
                   inlet::store::RetentionReport::default());
    }

    async fn the_index_page_lists_every_form_as_a_plain_html_form(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let page = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
        for id in ["newsletter", "contact", "whitepaper"] {
            assert!(page.contains(&format!("action=\"/v1/forms/{id}/submissions\" method=\"post\"")), "{id}");
        }
    }
}

/// Issue 14, item 5: a writer or the outbox worker that panics is restarted and counted; one
/// that keeps panicking is given up and `/readyz` says so.
#[tokio::test]
async fn panicking_background_tasks_are_restarted_and_a_crash_loop_shows_in_readyz() {
    let smtp = crate::smtp::SmtpServer::start();
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        crate::consent::with_smtp(s, &smtp);
        s.outbox.worker_enabled = true;
    })
    .await;
    let state = app.state.clone();

    // One writer panic: the batch it held gets 503 (retryable), the next request is taken.
    state.faults.inject("writer", 1);
    let failed = app
        .post_json("contact", &contact("first@example.com"))
        .await;
    assert_eq!(failed.status(), 503);
    assert_eq!(
        app.post_until_created("contact", &contact("second@example.com"))
            .await,
        201,
        "the writer was restarted"
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("inlet_task_restarts_total{task=\"writer\"} 1"),
        "{text}"
    );
    assert_eq!(app.get("/readyz").await.status(), 200);

    // A crash loop: given up, /readyz turns red, and submissions get 503 at once (not a hang).
    state.faults.inject("writer", u32::MAX);
    for _ in 0..=inlet::supervisor::MAX_RESTARTS + 1 {
        let r = app.post_json("contact", &contact("loop@example.com")).await;
        assert_eq!(r.status(), 503);
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["stopped"], serde_json::json!(["writer"]));
}

/// The API's description is served, is OpenAPI 3.1, and lists every public and admin
/// operation with the scope each admin one needs (schemathesis checks it against the running
/// server in `scripts/api-fuzz.sh`).
#[tokio::test]
async fn the_openapi_document_describes_every_operation() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let resp = app.get("/v1/openapi.json").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(resp.headers(), "content-type").as_deref(),
        Some("application/json")
    );
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method, scope) in [
        ("/v1/forms/{form_id}/submissions", "post", None),
        ("/v1/forms/{form_id}/views", "post", None),
        ("/v1/forms", "get", None),
        ("/v1/admin/leads", "get", Some("leads:read")),
        ("/v1/admin/leads/{lead_id}", "delete", Some("leads:erase")),
        (
            "/v1/admin/leads/{lead_id}/export",
            "get",
            Some("leads:export"),
        ),
        ("/v1/admin/leads/import", "post", Some("leads:import")),
        ("/v1/admin/stats", "get", Some("stats:read")),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is described");
        assert_eq!(
            op["security"][0]["bearer"][0].as_str(),
            scope,
            "{method} {path}"
        );
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["required"];
    assert_eq!(error, &serde_json::json!(["error", "message"]));
}
