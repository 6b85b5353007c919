//! Counting form views (the embed script's beacon) and the report a marketer decides with:
//! `GET /v1/admin/stats`, exact counts from a history made through the public endpoints on
//! the app's clock.

use serde_json::{json, Value};

use crate::both_backends;
use crate::consent::{link, post_form_url, with_smtp};
use crate::helpers::{contact, header, Backend, TestApp, ADMIN_TOKEN};
use crate::smtp::SmtpServer;

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// A beacon as `navigator.sendBeacon` sends it: urlencoded, no preflight.
async fn view(
    app: &TestApp,
    form: &str,
    body: &str,
    ip: &str,
    ua: &str,
    gpc: bool,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/v1/forms/{form}/views")))
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .header("user-agent", ua)
        .header("x-forwarded-for", ip)
        .header("origin", "https://landing.example")
        .body(body.to_string());
    if gpc {
        req = req.header("sec-gpc", "1");
    }
    req.send().await.unwrap()
}

async fn flush(app: &TestApp) {
    inlet::views::flush(&app.state.views, &app.state.store)
        .await
        .unwrap();
}

async fn stats(app: &TestApp, query: &str) -> Value {
    app.admin_get(&format!("/v1/admin/stats?{query}")).await
}

fn today(app: &TestApp) -> String {
    inlet::reports::date(app.clock.now_ms().div_euclid(86_400_000))
}

fn group<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {report}"))
}

both_backends! {
    async fn views_are_counted_daily_unique_and_private_without_storing_visitors(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
        let google = "utm_source=Google&utm_campaign=Spring%20Sale&referrer=https%3A%2F%2Fwww.google.com%2F";
        // One visitor three times, another once, a third from a referring site, two private.
        for _ in 0..3 {
            assert_eq!(view(&app, "contact", google, "198.51.100.7", "UA-1", false).await.status(), 204);
        }
        assert_eq!(view(&app, "contact", google, "198.51.101.8", "UA-1", false).await.status(), 204);
        view(&app, "contact", "referrer=https%3A%2F%2Fnews.example%2Fpost", "203.0.113.1", "UA-2", false).await;
        view(&app, "contact", google, "203.0.113.2", "UA-3", true).await;
        view(&app, "contact", google, "203.0.113.2", "UA-3", true).await;
        // The same visitor on another form is another unique view.
        view(&app, "newsletter", "", "198.51.100.7", "UA-1", false).await;
        flush(&app).await;

        let r = stats(&app, "group_by=source").await;
        let g = group(&r, "google");
        assert_eq!((g["views"].as_i64(), g["unique_views"].as_i64(), g["private_views"].as_i64()), (Some(6), Some(2), Some(2)), "{g}");
        let news = group(&r, "news.example");
        assert_eq!(news["views"], 1);
        assert_eq!(group(&r, "direct")["views"], 1);
        let by_campaign = stats(&app, "group_by=utm_campaign").await;
        assert_eq!(group(&by_campaign, "spring sale")["views"], 6);
        let by_form = stats(&app, "").await;
        assert_eq!(group(&by_form, "contact")["views"], 7);
        assert_eq!(group(&by_form, "newsletter")["unique_views"], 1);

        // What is stored: counters only (no address, agent or hash column exists).
        let mut raw = crate::helpers::raw(&app.db).await;
        let rows = raw.strings("SELECT form_id || '|' || source || '|' || campaign FROM form_views ORDER BY 1").await;
        assert_eq!(rows, ["contact|google|spring sale", "contact|news.example|", "newsletter|direct|"]);

        // Abuse: unknown form 404, another site's origin on a restricted form 403, too big 413,
        // and nothing more is counted.
        assert_eq!(view(&app, "nope", "", "198.51.100.9", "x", false).await.status(), 404);
        let big = format!("utm_source={}", "a".repeat(5000));
        assert_eq!(view(&app, "contact", &big, "198.51.100.9", "x", false).await.status(), 413);
        flush(&app).await;
        assert_eq!(group(&stats(&app, "").await, "contact")["views"], 7);
    }

    async fn views_are_rate_limited_per_network(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.server.trusted_proxies = vec!["127.0.0.1".into()];
            s.rate_limit.enabled = true;
            s.rate_limit.views_per_ip_per_minute = 5;
        })
        .await;
        for i in 0..5 {
            assert_eq!(view(&app, "contact", "", &format!("2001:db8::{i}"), "UA", false).await.status(), 204);
        }
        // Another address in the same /64 is the same network.
        let limited = view(&app, "contact", "", "2001:db8::ff", "UA", false).await;
        assert_eq!(limited.status(), 429);
        assert!(header(limited.headers(), "retry-after").is_some());
        assert_eq!(view(&app, "contact", "", "2001:db8:1::1", "UA", false).await.status(), 204);
        flush(&app).await;
        assert_eq!(group(&stats(&app, "").await, "contact")["views"], 6);
    }

    async fn the_report_counts_exactly_what_happened(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp);
            s.server.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .await;
        let first_day = today(&app);
        // Day 1: 10 views by 5 visitors from google; 3 contact leads from google, one spam.
        for i in 0..10 {
            view(&app, "contact", "utm_source=google", &format!("198.51.{}.7", i % 5), "UA", false).await;
        }
        for i in 0..3 {
            let mut body = contact(&format!("lead{i}@example.com"));
            body["utm_source"] = json!("google");
            assert_eq!(app.post_json("contact", &body).await.status(), 201);
        }
        let mut spam = contact("bot@example.com");
        spam["_gotcha"] = json!("x");
        assert_eq!(app.post_json("contact", &spam).await.status(), 201);
        flush(&app).await;
        app.dispatch().await;

        // Day 2: two double opt-in sign-ups, one confirms; a whitepaper download used.
        app.advance(DAY);
        for email in ["dee@example.com", "eve@example.com"] {
            assert_eq!(app.post_json("newsletter", &json!({"email": email})).await.status(), 201);
        }
        app.dispatch().await;
        let confirm = link(&smtp.received()[3], &format!("{}/v1/confirm/", app.address));
        assert!(post_form_url(&app, &confirm, "").await.status().is_success());
        let resp = app.post_json("whitepaper", &json!({"email": "wen@example.com", "name": "Wen", "consent": true})).await;
        assert_eq!(resp.status(), 201);
        let created: Value = resp.json().await.unwrap();
        let download = created["download_url"].as_str().unwrap().to_string();
        assert_eq!(app.client.get(&download).send().await.unwrap().status(), 200);
        app.dispatch().await;
        let last_day = today(&app);

        let r = stats(&app, &format!("from={first_day}&to={last_day}")).await;
        let t = &r["totals"];
        assert_eq!(t["views"], 10);
        assert_eq!(t["unique_views"], 5);
        assert_eq!(t["submissions"], 3 + 2 + 1);
        assert_eq!(t["spam"], 1);
        assert_eq!(t["confirmed"], 1);
        assert_eq!(t["confirmation_pending"], 1);
        assert_eq!(t["confirmation_rate"], 0.5);
        assert_eq!(t["downloads_used"], 1);
        assert_eq!(t["spam_share"], 1.0 / 7.0);
        assert_eq!(r["conversion_is"], "valid submissions ÷ daily-unique views");
        let c = group(&r, "contact");
        assert_eq!((c["submissions"].as_i64(), c["spam"].as_i64()), (Some(3), Some(1)));
        assert_eq!(c["conversion"], 3.0 / 5.0);
        assert!(group(&r, "newsletter")["conversion"].is_null(), "no views: no conversion");
        // Follow-ups: three contact leads and one whitepaper sent; the confirmed one's too.
        assert_eq!(t["follow_ups_sent"], 5, "{r}");
        assert_eq!((r["outbox"]["waiting"].as_i64(), r["outbox"]["retrying"].as_i64(), r["outbox"]["dead"].as_i64()), (Some(0), Some(0), Some(0)));
        assert!(r["outbox"]["oldest_waiting_at"].is_null());
        // Two days, each present; the day series splits them.
        let periods = r["periods"].as_array().unwrap();
        assert_eq!(periods.len(), 2);
        assert_eq!(periods[0]["period"], first_day.as_str());
        assert_eq!(periods[0]["submissions"], 3);
        assert_eq!(periods[1]["submissions"], 3);
        let by_source = stats(&app, &format!("from={first_day}&to={last_day}&group_by=source")).await;
        assert_eq!(group(&by_source, "google")["submissions"], 3);
        assert_eq!(group(&by_source, "direct")["submissions"], 3);
        let weekly = stats(&app, &format!("from={first_day}&to={last_day}&granularity=week")).await;
        assert_eq!(weekly["totals"]["submissions"], 6);
        // Days later both days are settled: the report reads them from the rollup (counted on
        // demand) and says the same. Restoring the quarantined lead changes its day: counted again.
        app.advance(DAY * 5);
        let later = stats(&app, &format!("from={first_day}&to={last_day}")).await;
        assert_eq!(later["totals"], r["totals"]);
        let mut raw = crate::helpers::raw(&app.db).await;
        assert_eq!(raw.count("rollup_days").await, 2);
        let spam_lead = app.submissions().await.iter().find(|s| s["email"] == "bot@example.com").unwrap()["lead_id"].as_str().unwrap().to_string();
        let restored = app.client.post(app.url(&format!("/v1/admin/leads/{spam_lead}/restore"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(restored.status(), 200);
        assert_eq!(raw.count("rollup_days").await, 1, "the restored lead's day is counted again");
        let after = stats(&app, &format!("from={first_day}&to={last_day}")).await;
        assert_eq!(after["totals"]["submissions"], 7);
        assert_eq!(after["totals"]["spam"], 0);
        assert_eq!(after["periods"][0]["submissions"], 4);

        // A range before anything happened is all zeros, not an error.
        let empty = stats(&app, "from=2020-01-01&to=2020-01-31").await;
        assert_eq!(empty["totals"]["submissions"], 0);
        assert_eq!(empty["periods"].as_array().unwrap().len(), 31);
    }

    async fn bad_report_requests_are_refused_plainly(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for q in ["from=2026-12-08&to=2026-12-01", "from=2020-01-01&to=2026-01-01", "from=yesterday", "group_by=colour", "granularity=hour", "limit=3"] {
            let resp = app.client.get(app.url(&format!("/v1/admin/stats?{q}"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{q}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "invalid_query", "{q}: {body}");
        }
        let resp = app.client.get(app.url("/v1/admin/stats")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }
}
