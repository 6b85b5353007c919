//! Challenges (issue 13, item 12): Inlet's own proof of work, and CAPTCHA tokens verified with
//! the provider. Cloudflare and hCaptcha cannot be reached from the tests, so their
//! `siteverify` endpoint is played by a local stand-in that speaks the same protocol (a form
//! post of secret, response and remoteip; a JSON answer with `success`).

use std::sync::{Arc, Mutex};

use base64::Engine;
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::Digest;

use crate::both_backends;
use crate::helpers::{contact, Backend, TestApp};

fn pow(s: &mut inlet::config::Settings, difficulty: u64) {
    let form = s.forms.iter_mut().find(|f| f.id == "contact").unwrap();
    form.challenge = Some(inlet::config::ChallengeConfig::Pow { difficulty });
}

/// Solves a challenge the way the embed script does: try every number.
fn solve(c: &Value) -> String {
    let salt = c["salt"].as_str().unwrap();
    let target = c["challenge"].as_str().unwrap();
    let number = (0..=c["maxnumber"].as_u64().unwrap())
        .find(|n| hex::encode(sha2::Sha256::digest(format!("{salt}{n}").as_bytes())) == target)
        .expect("solvable");
    let solution = json!({"algorithm": c["algorithm"], "challenge": target, "number": number,
        "salt": salt, "signature": c["signature"]});
    base64::engine::general_purpose::STANDARD.encode(solution.to_string())
}

async fn challenge(app: &TestApp, form: &str) -> Value {
    let r = app
        .client
        .get(app.url(&format!("/v1/forms/{form}/challenge")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

both_backends! {
    async fn a_proof_of_work_form_takes_each_solved_challenge_once(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| pow(s, 5_000)).await;
        let missing = app.post_json("contact", &contact("pow@example.com")).await;
        assert_eq!(missing.status(), 422);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["error"], "challenge_required");
        assert_eq!(body["challenge"]["kind"], "pow");
        assert_eq!(body["challenge"]["url"], "/v1/forms/contact/challenge");
        let forms: Value = app.client.get(app.url("/v1/forms")).send().await.unwrap().json().await.unwrap();
        let listed = forms["forms"].as_array().unwrap().iter().find(|f| f["id"] == "contact").unwrap();
        assert_eq!(listed["challenge"]["kind"], "pow", "the embed script can know before posting");

        let c = challenge(&app, "contact").await;
        assert_eq!((c["algorithm"].as_str(), c["maxnumber"].as_u64()), (Some("SHA-256"), Some(5_000)));
        let answer = solve(&c);

        // A mistyped field does not spend the challenge.
        let mut bad = contact("not an address");
        bad["_altcha"] = json!(answer);
        let r = app.post_json("contact", &bad).await;
        assert_eq!(r.status(), 422);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "validation_failed");

        let mut good = contact("pow@example.com");
        good["_altcha"] = json!(answer);
        assert_eq!(app.post_json("contact", &good).await.status(), 201);
        let stored = &app.submissions().await[0];
        assert!(stored["extra"].get("_altcha").is_none(), "{stored}");

        // The same solution again, for someone else: refused, nothing stored.
        let mut replay = contact("replay@example.com");
        replay["_altcha"] = json!(answer);
        let r = app.post_json("contact", &replay).await;
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "challenge_failed");
        assert!(body["message"].as_str().unwrap().contains("used before"), "{body}");
        assert_eq!(app.submissions().await.len(), 1);
    }
}

#[tokio::test]
async fn a_proof_of_work_solution_is_refused_when_forged_foreign_or_edited() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        pow(s, 3_000);
        let other = s.forms.iter_mut().find(|f| f.id == "newsletter").unwrap();
        other.challenge = Some(inlet::config::ChallengeConfig::Pow { difficulty: 3_000 });
    })
    .await;
    let encode = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let c = challenge(&app, "contact").await;
    let mut solution: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(solve(&c))
            .unwrap(),
    )
    .unwrap();
    let mut cases = vec![("garbage", "%%%".to_string())];
    // Solved, but for the other form.
    cases.push((
        "another form's",
        solve(&challenge(&app, "newsletter").await),
    ));
    // A challenge the client made up (its own salt, hash and signature).
    let salt = "00?expires=9999999999&form=contact&";
    let own = hex::encode(sha2::Sha256::digest(format!("{salt}1").as_bytes()));
    cases.push((
        "self-made",
        encode(
            &json!({"algorithm": "SHA-256", "challenge": own, "number": 1,
        "salt": salt, "signature": "00"}),
        ),
    ));
    // The issued one with its expiry pushed out.
    solution["salt"] = json!(c["salt"].as_str().unwrap().replace("expires=", "expires=9"));
    cases.push(("edited", encode(&solution)));
    for (what, answer) in cases {
        let mut body = contact("forger@example.com");
        body["_altcha"] = json!(answer);
        let r = app.post_json("contact", &body).await;
        assert_eq!(r.status(), 422, "{what}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "challenge_failed",
            "{what}"
        );
    }
    assert!(app.submissions().await.is_empty());
    let none = app
        .client
        .get(app.url("/v1/forms/whitepaper/challenge"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        none.status(),
        404,
        "a form without a proof of work hands out none"
    );
}

/// The provider's `siteverify`, played locally: accepts `good-token` for `s3cret`.
struct StandIn {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    handle: actix_web::dev::ServerHandle,
}

async fn stand_in() -> StandIn {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().route(
            "/siteverify",
            web::post().to(move |form: web::Form<Vec<(String, String)>>| {
                let log = log.clone();
                async move {
                    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    log.lock()
                        .unwrap()
                        .push(get("remoteip").unwrap_or_default());
                    let ok = get("secret").as_deref() == Some("s3cret")
                        && get("response").as_deref() == Some("good-token");
                    HttpResponse::Ok().json(json!({"success": ok, "error-codes": []}))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    StandIn {
        url: format!("http://127.0.0.1:{port}/siteverify"),
        seen,
        handle,
    }
}

#[tokio::test]
async fn turnstile_and_hcaptcha_tokens_are_verified_with_the_provider() {
    let provider = stand_in().await;
    for (kind, field) in [
        ("turnstile", "cf-turnstile-response"),
        ("hcaptcha", "h-captcha-response"),
    ] {
        let url = provider.url.clone();
        let app = TestApp::spawn_with(Backend::Sqlite, |s| {
            let form = s.forms.iter_mut().find(|f| f.id == "contact").unwrap();
            let c = inlet::config::CaptchaConfig {
                site_key: "site-key-1".into(),
                secret: SecretString::from("s3cret"),
                verify_url: Some(url),
            };
            form.challenge = Some(match kind {
                "turnstile" => inlet::config::ChallengeConfig::Turnstile(c),
                _ => inlet::config::ChallengeConfig::Hcaptcha(c),
            });
        })
        .await;
        let r = app
            .post_json("contact", &contact("human@example.com"))
            .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["error"].as_str(), body["challenge"]["kind"].as_str()),
            (Some("challenge_required"), Some(kind))
        );
        assert_eq!(body["challenge"]["site_key"], "site-key-1");
        assert!(!body.to_string().contains("s3cret"));

        let mut bad = contact("bot@example.com");
        bad[field] = json!("bad-token");
        let r = app.post_json("contact", &bad).await;
        assert_eq!(r.status(), 422, "{kind}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "challenge_failed"
        );

        let mut good = contact("human@example.com");
        good[field] = json!("good-token");
        assert_eq!(
            app.post_json("contact", &good).await.status(),
            201,
            "{kind}"
        );
        let subs = app.submissions().await;
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0]["spam"], false);
        assert!(
            subs[0]["extra"].get(field).is_none(),
            "the token is not kept as a field"
        );
    }
    assert!(
        provider
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|ip| ip == "127.0.0.1"),
        "the client's IP is passed on"
    );
    provider.handle.stop(true).await;
}

/// The provider unreachable: the lead is kept (never lost) but treated as spam, and mailed nothing.
#[tokio::test]
async fn an_unreachable_provider_keeps_the_lead_as_unverified_spam() {
    let closed = crate::smtp::SmtpServer::reserve_port();
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        let form = s.forms.iter_mut().find(|f| f.id == "contact").unwrap();
        form.challenge = Some(inlet::config::ChallengeConfig::Turnstile(
            inlet::config::CaptchaConfig {
                site_key: "k".into(),
                secret: SecretString::from("s3cret"),
                verify_url: Some(format!("http://127.0.0.1:{closed}/siteverify")),
            },
        ));
    })
    .await;
    let mut body = contact("maybe@example.com");
    body["cf-turnstile-response"] = json!("some-token");
    assert_eq!(app.post_json("contact", &body).await.status(), 201);
    let subs = app.admin_get("/v1/admin/submissions?spam=true").await;
    assert_eq!(
        subs["submissions"][0]["spam_reason"],
        "challenge_unverified"
    );
    assert_eq!(app.dispatch().await.sent, 0);
}
