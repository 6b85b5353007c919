//! API keys: made with `inlet keys create`, sent as `Authorization: Bearer`, held to their
//! scopes, revocable, their last use recorded; the admin token stays a full-access key.

use std::time::Duration;

use crate::both_backends;
use crate::helpers::{cli, contact, Backend, TestApp, ADMIN_TOKEN};

/// `inlet keys create` against the app's database; the printed secret.
fn create_key(app: &TestApp, name: &str, scope: &str) -> String {
    let out = cli(
        &["keys", "create", "--name", name, "--scope", scope],
        &app.db.url(),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("only time it is shown"), "{text}");
    text.lines()
        .find(|l| l.starts_with("inlet_"))
        .expect("the key is printed")
        .trim()
        .to_string()
}

async fn status(app: &TestApp, method: reqwest::Method, path: &str, key: &str) -> (u16, String) {
    let resp = app
        .client
        .request(method, app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

both_backends! {
    async fn a_key_opens_only_what_its_scopes_allow(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let answer = app.post_json("contact", &contact("scoped@example.com")).await;
        assert_eq!(answer.status(), 201);
        let lead = app.leads().await[0]["id"].as_str().unwrap().to_string();
        let reader = create_key(&app, "dashboard", "leads:read,stats:read");
        let get = reqwest::Method::GET;

        let (code, body) = status(&app, get.clone(), "/v1/admin/leads", &reader).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("scoped@example.com"));
        assert_eq!(status(&app, get.clone(), &format!("/v1/admin/leads/{lead}"), &reader).await.0, 200);
        assert_eq!(status(&app, get.clone(), "/v1/admin/submissions", &reader).await.0, 200);
        assert_eq!(status(&app, get.clone(), "/v1/admin/stats", &reader).await.0, 200);

        // Export, restore and erase need scopes this key lacks: 403 naming the scope, and
        // nothing changes.
        for (method, path, scope) in [
            (get.clone(), format!("/v1/admin/leads/{lead}/export"), "leads:export"),
            (reqwest::Method::POST, format!("/v1/admin/leads/{lead}/restore"), "leads:write"),
            (reqwest::Method::DELETE, format!("/v1/admin/leads/{lead}"), "leads:erase"),
        ] {
            let (code, body) = status(&app, method, &path, &reader).await;
            assert_eq!(code, 403, "{path}: {body}");
            assert!(body.contains("\"error\":\"insufficient_scope\""), "{body}");
            assert!(body.contains(scope), "{body}");
            assert!(!body.contains("scoped@example.com"));
        }
        assert_eq!(app.leads().await.len(), 1, "the lead is still there");

        // The scope is checked before the parameters: a key without it learns nothing.
        let stats_only = create_key(&app, "stats", "stats:read");
        let (code, _) = status(&app, get.clone(), "/v1/admin/leads?limit=abc", &stats_only).await;
        assert_eq!(code, 403);

        let eraser = create_key(&app, "gdpr desk", "leads:erase, leads:export");
        let (code, body) = status(&app, get.clone(), &format!("/v1/admin/leads/{lead}/export"), &eraser).await;
        assert_eq!(code, 200, "{body}");
        let (code, _) = status(&app, reqwest::Method::DELETE, &format!("/v1/admin/leads/{lead}"), &eraser).await;
        assert_eq!(code, 200);
        assert!(app.leads().await.is_empty());

        // The admin token is a full-access key.
        let (code, _) = status(&app, get, "/v1/admin/stats", ADMIN_TOKEN).await;
        assert_eq!(code, 200);
    }

    async fn a_revoked_key_stops_working_at_once_and_the_list_keeps_its_record(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let key = create_key(&app, "CRM sync", "leads:read");
        let other = create_key(&app, "spare", "stats:read");
        let get = reqwest::Method::GET;
        assert_eq!(status(&app, get.clone(), "/v1/admin/leads", &key).await.0, 200);

        let list = cli(&["keys", "list"], &app.db.url());
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        assert!(list.status.success());
        assert!(!text.contains(&key), "a list never shows a secret: {text}");
        let row = text.lines().find(|l| l.contains("CRM sync")).expect("listed");
        assert!(row.contains(&key[..14]) && row.contains("leads:read"), "{row}");
        assert!(row.contains("\tlive\t"), "{row}");
        assert!(!row.contains("never"), "its use is recorded: {row}");
        let spare = text.lines().find(|l| l.contains("spare")).expect("listed");
        assert!(spare.contains("\tnever\t"), "{spare}");

        let out = cli(&["keys", "revoke", &key[..14]], &app.db.url());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (code, body) = status(&app, get.clone(), "/v1/admin/leads", &key).await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(status(&app, get.clone(), "/v1/admin/stats", &other).await.0, 200, "others keep working");

        let out = cli(&["keys", "revoke", &key[..14]], &app.db.url());
        assert_eq!(out.status.code(), Some(1), "revoking twice says so");
        let list = cli(&["keys", "list"], &app.db.url());
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        let row = text.lines().find(|l| l.contains("CRM sync")).expect("still listed");
        assert!(row.contains("revoked"), "{row}");
    }

    async fn last_use_is_recorded_at_most_once_a_minute(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let key = create_key(&app, "poller", "stats:read");
        let used = || async {
            let mut raw = crate::helpers::raw(&app.db).await;
            raw.strings("SELECT CAST(last_used_at AS TEXT) FROM api_keys").await[0].clone()
        };
        assert_eq!(status(&app, reqwest::Method::GET, "/v1/admin/stats", &key).await.0, 200);
        let first = used().await;
        app.advance(Duration::from_secs(30));
        status(&app, reqwest::Method::GET, "/v1/admin/stats", &key).await;
        assert_eq!(used().await, first, "within a minute: no write");
        app.advance(Duration::from_secs(31));
        status(&app, reqwest::Method::GET, "/v1/admin/stats", &key).await;
        let later: i64 = used().await.parse().unwrap();
        assert!(later - first.parse::<i64>().unwrap() >= 61_000, "recorded again after a minute");
    }

    async fn guessing_keys_is_throttled_like_the_admin_token(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let key = create_key(&app, "real", "leads:read");
        let mut last = 0;
        for i in 0..40 {
            let guess = format!("inlet_{:0>43}", i);
            last = status(&app, reqwest::Method::GET, "/v1/admin/leads", &guess).await.0;
            if last == 429 {
                break;
            }
            assert_eq!(last, 401);
        }
        assert_eq!(last, 429, "a client that keeps guessing is refused");
        assert_eq!(
            status(&app, reqwest::Method::GET, "/v1/admin/leads", &key).await.0,
            429,
            "for a while, even with a real key"
        );
    }
}

#[test]
fn keys_create_refuses_unknown_scopes_and_empty_names() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/keys.db?mode=rwc", dir.path().display());
    let out = cli(
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "leads:read,leads:delete",
        ],
        &url,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scope 'leads:delete'") && err.contains("stats:read"),
        "{err}"
    );
    let out = cli(&["keys", "create", "--name", " ", "--scope", "all"], &url);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name"));
}
