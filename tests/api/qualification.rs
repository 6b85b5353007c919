//! Qualification and hand-off, end to end on both engines: scores whose factors add up,
//! lifecycle stages with their ledger, hand-offs routed to an owner who answers by email
//! (a real SMTP server), SLA escalation, and signed webhooks received by a real HTTP server
//! and verified with the Standard Webhooks reference library.

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::both_backends;
use crate::consent::{link, post_form_url, with_smtp};
use crate::helpers::{with_demo_qualification, Backend, TestApp, ADMIN_TOKEN};
use crate::receiver::Receiver;
use crate::smtp::SmtpServer;

/// A `whsec_` secret (24 bytes, base64), as `inlet webhooks secret` makes.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The demo's forms and rules, plus a `demo` request form that raises a hand, the real SMTP
/// server, and a webhook endpoint on the receiver.
pub async fn spawn(
    backend: Backend,
    smtp: &SmtpServer,
    receiver: &Receiver,
    more: impl FnOnce(&mut inlet::config::Settings),
) -> TestApp {
    let url = receiver.url.clone();
    TestApp::spawn_with(backend, move |s| {
        with_smtp(s, smtp);
        with_demo_qualification(s);
        let mut demo = s.forms.iter().find(|f| f.id == "contact").unwrap().clone();
        demo.id = "demo".into();
        s.forms.push(demo);
        s.stages.hand_raisers = vec!["demo".into()];
        s.webhooks.endpoints = vec![inlet::config::WebhookEndpointConfig {
            id: "crm".into(),
            url,
            secrets: vec![SecretString::from(SECRET)],
            events: Vec::new(),
            contact: Some("ops@example.com".into()),
        }];
        s.webhooks.allow_private = vec!["127.0.0.0/8".into()];
        more(s);
    })
    .await
}

pub async fn admin_post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn ada() -> Value {
    json!({
        "email": "ada@analytical.example",
        "name": "Ada Lovelace",
        "company": "Analytical Engines",
        "job_title": "Head of Research",
        "consent": true,
    })
}

fn sum(factors: &Value) -> i64 {
    factors
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["points"].as_i64().unwrap())
        .sum()
}

/// Downloads the whitepaper through the link in its follow-up, as Ada.
async fn download_whitepaper(app: &TestApp, smtp: &SmtpServer) -> String {
    let created: Value = app
        .post_json("whitepaper", &ada())
        .await
        .json()
        .await
        .unwrap();
    let lead = app.lead_of(&created).await;
    app.dispatch().await;
    let mail = smtp.received();
    let follow_up = mail
        .iter()
        .find(|m| m.to == ["ada@analytical.example"])
        .expect("the whitepaper mail");
    let url = link(follow_up, &format!("{}/v1/downloads/", app.address));
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    app.dispatch().await;
    lead
}

both_backends! {
    async fn a_lead_who_downloads_and_asks_for_a_demo_becomes_an_mql_is_accepted_by_email_and_a_signed_handoff_accepted_arrives(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        let lead = download_whitepaper(&app, &smtp).await;

        // After the download: a good fit, engaged, but not yet sales-ready.
        let score = app.admin_get(&format!("/v1/admin/leads/{lead}/score")).await;
        assert_eq!(score["stage"], "lead", "{score}");
        assert_eq!((score["fit"].as_i64(), score["engagement"].as_i64()), (Some(35), Some(20)), "{score}");
        assert_eq!(sum(&score["factors"]), score["score"].as_i64().unwrap());

        // The demo request raises a hand.
        let resp = app.post_json("demo", &json!({"email": "ada@analytical.example", "name": "Ada Lovelace", "company": "Analytical Engines", "message": "Can we talk?", "_elapsed_ms": 5000})).await;
        assert_eq!(resp.status(), 201);
        let report = app.dispatch().await;
        assert_eq!(report.qualification.staff_sent, 1, "{report:?}");

        let score = app.admin_get(&format!("/v1/admin/leads/{lead}/score")).await;
        assert_eq!(score["stage"], "mql");
        assert_eq!(sum(&score["factors"]), score["score"].as_i64().unwrap(), "the factors add up to the score: {score}");
        let rules: Vec<&str> = score["factors"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
        assert_eq!(rules, ["company-address", "names-a-company", "senior-title", "downloaded-whitepaper"]);

        // The ledger: lead, then mql because of the demo form, each with frozen factors.
        let stages = app.admin_get(&format!("/v1/admin/leads/{lead}/stages")).await;
        let changes = stages["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2, "{stages}");
        assert_eq!((changes[0]["from"].clone(), changes[0]["to"].clone(), changes[0]["cause"].clone()), (Value::Null, json!("lead"), json!("rule")));
        assert_eq!((changes[1]["from"].clone(), changes[1]["to"].clone()), (json!("lead"), json!("mql")));
        assert_eq!(changes[1]["reason"], "asked to talk to sales (form 'demo')");
        assert_eq!(sum(&changes[1]["factors"]), changes[1]["score"].as_i64().unwrap());

        // Routed to the demo's owner, who gets the mail with the why and the links.
        let handoffs = app.admin_get("/v1/admin/handoffs?status=open").await;
        let handoff = &handoffs["handoffs"][0];
        assert_eq!(handoff["owner_id"], "sam");
        assert_eq!(handoff["status"], "new");
        assert!(handoff["route"].as_str().unwrap().contains("least-loaded in the pool: Sam Seller"), "{handoff}");
        let mail = smtp.received();
        let notice = mail.iter().find(|m| m.to == ["sales@example.com"]).expect("the owner's mail");
        let parsed = notice.parsed();
        assert_eq!(parsed.subject().unwrap(), format!("New sales-ready lead: Ada Lovelace (Analytical Engines) (score {})", score["score"]));
        let text = parsed.body_text(0).unwrap().to_string();
        assert!(text.starts_with("Hello Sam Seller,"), "{text}");
        assert!(text.contains("+20  downloaded from form 'whitepaper' 1 time (newest today) (downloaded-whitepaper)"), "{text}");
        let accept = link(notice, &format!("{}/v1/handoffs/", app.address));
        assert!(accept.ends_with("?action=accept"));

        // The link's page shows the lead and the why; looking changes nothing.
        let page = app.client.get(&accept).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("Accept this lead") && html.contains("downloaded from form &#x27;whitepaper&#x27;"), "{html}");
        assert_eq!(app.admin_get("/v1/admin/handoffs?status=new").await["handoffs"].as_array().unwrap().len(), 1);
        let action = accept.split('?').next().unwrap().to_string();
        let answered = post_form_url(&app, &action, "action=accept").await;
        assert_eq!(answered.status(), 200);
        assert!(answered.text().await.unwrap().contains("Accepted. The lead is yours"));
        let again = post_form_url(&app, &action, "action=accept").await;
        assert_eq!(again.status(), 200);
        assert!(again.text().await.unwrap().contains("Already done: nothing changed."), "a second click changes nothing");

        app.dispatch().await;
        let accepted = receiver.of_type("handoff.accepted");
        assert_eq!(accepted.len(), 1);
        accepted[0].verify(SECRET).expect("the reference library verifies the signature");
        let body = accepted[0].json();
        assert_eq!(body["data"]["handoff_id"], handoff["id"]);
        assert_eq!(body["data"]["status"], "attempting");
        assert_eq!(body["data"]["email"], "ada@analytical.example");
        assert!(accepted[0].header("webhook-id").starts_with("msg_"));
        // Everything sent to the endpoint verifies, and says what happened, in order.
        let got = receiver.got();
        for g in &got {
            g.verify(SECRET).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&g.body)));
        }
        let kinds: Vec<String> = got.iter().map(|g| g.json()["type"].as_str().unwrap().to_string()).collect();
        for k in ["submission.created", "lead.created", "download.used", "lead.stage_changed", "lead.mql", "handoff.created", "handoff.accepted"] {
            assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
        }
        assert_eq!(kinds.iter().filter(|k| *k == "lead.created").count(), 1);
        let one = app.admin_get(&format!("/v1/admin/handoffs/{}", handoff["id"].as_str().unwrap())).await;
        let statuses: Vec<&str> = one["changes"].as_array().unwrap().iter().map(|c| c["to_status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["new", "attempting"]);
        assert_eq!(one["changes"][1]["actor"], "sam (email link)");
    }

    async fn a_rejected_handoff_needs_a_reason_and_sends_the_lead_back_to_nurture(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        let created: Value = app.post_json("demo", &json!({"email": "bo@firm.example", "name": "Bo", "_elapsed_ms": 5000})).await.json().await.unwrap();
        let lead = app.lead_of(&created).await;
        app.dispatch().await;
        let handoff = app.admin_get("/v1/admin/handoffs").await["handoffs"][0].clone();
        let path = format!("/v1/admin/handoffs/{}", handoff["id"].as_str().unwrap());
        let no_reason = admin_post(&app, &path, &json!({"action": "reject"})).await;
        assert_eq!(no_reason.status(), 400);
        assert_eq!(no_reason.json::<Value>().await.unwrap()["error"], "reason_required");
        let bad = admin_post(&app, &path, &json!({"action": "teleport"})).await;
        assert_eq!(bad.status(), 400);
        let rejected = admin_post(&app, &path, &json!({"action": "reject", "reason": "a student project", "actor": "sam"})).await;
        assert_eq!(rejected.status(), 200);
        assert_eq!(rejected.json::<Value>().await.unwrap()["handoff"]["status"], "rejected");
        app.dispatch().await;
        let stages = app.admin_get(&format!("/v1/admin/leads/{lead}/stages")).await;
        assert_eq!(stages["stage"], "lead");
        let last = stages["changes"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["from"].clone(), last["to"].clone(), last["cause"].clone()), (json!("mql"), json!("lead"), json!("handoff")));
        assert_eq!(last["reason"], "hand-off rejected: a student project");
        let rejected = receiver.of_type("handoff.rejected");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].json()["data"]["reason"], "a student project");

        // Recycled: the old hand-raise does not bounce it straight back; a new one does.
        app.post_json("newsletter", &json!({"email": "bo@firm.example"})).await;
        app.dispatch().await;
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{lead}/score")).await["stage"], "lead");
        app.post_json("demo", &json!({"email": "bo@firm.example", "name": "Bo", "message": "Really, let us talk", "_elapsed_ms": 5000})).await;
        app.dispatch().await;
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{lead}/score")).await["stage"], "mql");
        assert_eq!(app.admin_get("/v1/admin/handoffs?status=open").await["handoffs"].as_array().unwrap().len(), 1);
    }

    async fn stages_set_by_hand_need_a_reason_to_go_back_and_keep_a_ledger(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |s| s.handoff.owners.clear()).await;
        let created: Value = app.post_json("contact", &json!({"email": "cy@corp.example", "name": "Cy", "company": "Corp", "_elapsed_ms": 5000})).await.json().await.unwrap();
        let lead = app.lead_of(&created).await;
        app.dispatch().await;
        let path = format!("/v1/admin/leads/{lead}/stage");
        let up = admin_post(&app, &path, &json!({"stage": "opportunity", "actor": "dana"})).await;
        assert_eq!(up.status(), 200);
        let back = admin_post(&app, &path, &json!({"stage": "lead"})).await;
        assert_eq!(back.status(), 400, "a step back needs a reason");
        assert_eq!(admin_post(&app, &path, &json!({"stage": "disqualified"})).await.status(), 400);
        assert_eq!(admin_post(&app, &path, &json!({"stage": "won"})).await.status(), 400);
        assert_eq!(admin_post(&app, &path, &json!({"stage": "lead", "extra": 1})).await.status(), 400);
        let out = admin_post(&app, &path, &json!({"stage": "disqualified", "reason": "competitor"})).await;
        assert_eq!(out.status(), 200);
        let body: Value = out.json().await.unwrap();
        assert_eq!(body["stage"], "disqualified");
        let causes: Vec<(String, String, String)> = body["changes"].as_array().unwrap().iter().map(|c| (c["to"].as_str().unwrap().into(), c["cause"].as_str().unwrap().into(), c["actor"].as_str().unwrap().into())).collect();
        assert_eq!(causes, [("lead".into(), "rule".into(), "inlet".into()), ("opportunity".into(), "api".into(), "dana".into()), ("disqualified".into(), "api".into(), "api".into())]);
        // Rules leave a disqualified lead alone.
        app.post_json("contact", &json!({"email": "cy@corp.example", "name": "Cy", "company": "Corp", "message": "hello again", "_elapsed_ms": 5000})).await;
        app.dispatch().await;
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{lead}/score")).await["stage"], "disqualified");
        assert_eq!(admin_post(&app, "/v1/admin/leads/nobody/stage", &json!({"stage": "mql"})).await.status(), 404);
        // Every stage change reached the endpoint.
        let changed = receiver.of_type("lead.stage_changed");
        assert_eq!(changed.len(), 3);
    }

    async fn a_handoff_nobody_accepts_in_time_is_escalated_once(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |s| {
            s.handoff.sla_hours = 4;
            s.handoff.escalate_to = vec!["head-of-sales@example.com".into()];
        }).await;
        app.post_json("demo", &json!({"email": "di@firm.example", "name": "Di", "_elapsed_ms": 5000})).await;
        app.dispatch().await;
        assert_eq!(smtp.received().iter().filter(|m| m.to == ["sales@example.com"]).count(), 1);
        app.advance(std::time::Duration::from_secs(3 * 3600));
        assert_eq!(app.dispatch().await.qualification.escalated, 0, "not yet due");
        app.advance(std::time::Duration::from_secs(3600 + 1));
        assert_eq!(app.dispatch().await.qualification.escalated, 1);
        assert_eq!(app.dispatch().await.qualification.escalated, 0, "once");
        let mail = smtp.received();
        let escalations: Vec<_> = mail.iter().filter(|m| m.parsed().subject().unwrap_or_default().starts_with("Not accepted yet: Di")).collect();
        let mut to: Vec<String> = escalations.iter().flat_map(|m| m.to.clone()).collect();
        to.sort();
        assert_eq!(to, ["head-of-sales@example.com", "sales@example.com"]);
        let id = app.admin_get("/v1/admin/handoffs").await["handoffs"][0]["id"].as_str().unwrap().to_string();
        let h = app.admin_get(&format!("/v1/admin/handoffs/{id}")).await;
        assert_eq!(h["handoff"]["status"], "new");
        assert!(h["handoff"]["escalated_at_ms"].is_i64());
        assert_eq!(h["changes"][1]["cause"], "sla");
    }

    async fn owners_are_routed_by_rule_then_least_loaded_and_away_owners_are_passed_over(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |s| {
            let owner = |id: &str, name: &str| inlet::config::OwnerConfig { id: id.into(), name: name.into(), email: format!("{id}@sales.example"), pool: true, max_open: None, away: Vec::new(), crm_ids: Default::default() };
            let mut away = owner("eve", "Eve");
            let today = chrono::Utc::now().date_naive();
            away.away = vec![inlet::config::AwayConfig { from: today.to_string(), until: today.to_string() }];
            s.handoff.owners = vec![owner("kim", "Kim"), owner("lee", "Lee"), away];
            s.handoff.routes = vec![inlet::config::RouteConfig { owner: "eve".into(), forms: vec!["whitepaper".into()], field: None, equals: Vec::new() }];
        }).await;
        for (i, email) in ["a@one.example", "b@two.example", "c@three.example"].iter().enumerate() {
            app.post_json("demo", &json!({"email": email, "name": format!("P{i}"), "_elapsed_ms": 5000})).await;
            app.dispatch().await;
        }
        let list = app.admin_get("/v1/admin/handoffs").await;
        let mut owners: Vec<&str> = list["handoffs"].as_array().unwrap().iter().map(|h| h["owner_id"].as_str().unwrap()).collect();
        owners.sort_unstable();
        assert_eq!(owners, ["kim", "kim", "lee"], "least-loaded first, ties to the first listed");
        assert!(list["handoffs"].as_array().unwrap().iter().all(|h| h["route"].as_str().unwrap().contains("Eve is away")), "{list}");
        assert_eq!(app.admin_get("/v1/admin/handoffs?owner=lee").await["handoffs"].as_array().unwrap().len(), 1);
        let bad = app.client.get(app.url("/v1/admin/handoffs?status=lost")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(bad.status(), 400);
    }

    async fn the_handoff_page_refuses_altered_links_and_never_changes_anything_on_get(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        app.post_json("demo", &json!({"email": "fi@firm.example", "name": "<script>alert(1)</script>", "_elapsed_ms": 5000})).await;
        app.dispatch().await;
        let mail = smtp.received();
        let notice = mail.iter().find(|m| m.to == ["sales@example.com"]).unwrap();
        let reject = link(notice, &format!("{}/v1/handoffs/", app.address));
        let url = reject.split('?').next().unwrap().to_string();
        let altered = format!("{}x", url);
        assert_eq!(app.client.get(&altered).send().await.unwrap().status(), 400);
        assert_eq!(post_form_url(&app, &altered, "action=accept").await.status(), 400);
        for _ in 0..3 {
            let page = app.client.get(&reject).send().await.unwrap();
            assert_eq!(page.status(), 200);
            let html = page.text().await.unwrap();
            assert!(!html.contains("<script>alert"), "escaped");
        }
        assert_eq!(post_form_url(&app, &url, "action=reject").await.status(), 422, "a reason is required");
        assert_eq!(post_form_url(&app, &url, "action=explode").await.status(), 400);
        let no_action = post_form_url(&app, &url, "reason=x").await;
        assert_eq!(no_action.status(), 400);
        assert_eq!(no_action.json::<Value>().await.unwrap()["error"], "invalid_form");
        assert_eq!(app.admin_get("/v1/admin/handoffs?status=new").await["handoffs"].as_array().unwrap().len(), 1, "nothing changed");
        // Links expire.
        app.advance(std::time::Duration::from_secs(15 * 86_400));
        assert_eq!(app.client.get(&reject).send().await.unwrap().status(), 410);
    }

    async fn erasure_tells_receivers_and_leaves_no_score_stage_or_delivery_behind(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        let created: Value = app.post_json("demo", &json!({"email": "gus@firm.example", "name": "Gus", "_elapsed_ms": 5000})).await.json().await.unwrap();
        let lead = app.lead_of(&created).await;
        app.dispatch().await;
        assert_eq!(app.erase(&lead).await.status(), 200);
        app.dispatch().await;
        let erased = receiver.of_type("lead.erased");
        assert_eq!(erased.len(), 1);
        assert_eq!(erased[0].json()["data"], json!({"lead_id": lead}));
        let mut raw = crate::helpers::raw(&app.db).await;
        for table in ["lead_stages", "stage_changes", "handoffs", "handoff_changes"] {
            assert_eq!(raw.count(table).await, 0, "{table}");
        }
        let payloads = raw.strings("SELECT payload FROM webhook_deliveries").await;
        assert!(payloads.iter().all(|p| !p.contains("gus@firm.example")), "{payloads:?}");
        let resp = app.client.get(app.url(&format!("/v1/admin/leads/{lead}/score"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(resp.status(), 404);
    }
    async fn a_scoring_plan_shows_what_a_rule_change_would_do_and_applies_it_without_handoffs(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        let ada = download_whitepaper(&app, &smtp).await;
        let created: Value = app.post_json("contact", &json!({"email": "bob@gmail.com", "name": "Bob", "_elapsed_ms": 5000})).await.json().await.unwrap();
        let bob = app.lead_of(&created).await;
        app.dispatch().await;
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{ada}/score")).await["stage"], "lead");

        let rules = app.dir.path().join("new.toml");
        std::fs::write(&rules, r#"
[scoring]
version = "2026-12-b"
[[scoring.rules]]
id = "downloaded-whitepaper"
event = "downloaded"
form = "whitepaper"
points = 40

[stages]
mql_when = "engagement >= 30"
"#).unwrap();
        let config = rules.to_str().unwrap();
        let dry = crate::helpers::cli(&["--config", config, "scoring", "plan"], &app.db.url());
        let out = String::from_utf8_lossy(&dry.stdout).to_string();
        assert!(dry.status.success(), "{out}{}", String::from_utf8_lossy(&dry.stderr));
        assert!(out.starts_with("rule set 2026-12-b against the stored scores of r-"), "{out}");
        assert!(out.contains("leads: 2; scores up: 0, down: 2"), "{out}");
        assert!(out.contains("stage changes:\n  lead -> mql: 1\n"), "{out}");
        assert!(out.contains(&format!("  {ada}: lead -> mql, score 55 -> 40 (fit 0 + engagement 40)")), "{out}");
        assert!(out.contains("+40  downloaded from form 'whitepaper' 1 time"), "{out}");
        assert!(out.ends_with("nothing was changed: --apply records these moves (no hand-offs unless --handoffs)\n"), "{out}");
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{ada}/score")).await["stage"], "lead", "a plan changes nothing");

        let applied = crate::helpers::cli(&["--config", config, "scoring", "plan", "--apply"], &app.db.url());
        let out = String::from_utf8_lossy(&applied.stdout).to_string();
        assert!(applied.status.success(), "{out}");
        assert!(out.contains("applied: 2 leads updated") && out.contains("no hand-offs created"), "{out}");
        let stages = app.admin_get(&format!("/v1/admin/leads/{ada}/stages")).await;
        let last = stages["changes"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["to"].clone(), last["cause"].clone(), last["actor"].clone(), last["ruleset"].clone()), (json!("mql"), json!("cli"), json!("scoring plan"), json!("2026-12-b")));
        assert!(app.admin_get("/v1/admin/handoffs").await["handoffs"].as_array().unwrap().is_empty(), "no hand-off unless asked");

        // A stage by hand from the command line; going back needs a reason.
        let refused = crate::helpers::cli(&["leads", "stage", &bob, "disqualified"], &app.db.url());
        assert_eq!(refused.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("needs --reason"));
        let done = crate::helpers::cli(&["leads", "stage", &bob, "disqualified", "--reason", "a student"], &app.db.url());
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{bob}/score")).await["stage"], "disqualified");
        let secret = crate::helpers::cli(&["webhooks", "secret"], &app.db.url());
        let secret = String::from_utf8_lossy(&secret.stdout).trim().to_string();
        assert!(standardwebhooks::Webhook::new(&secret).is_ok() && secret.starts_with("whsec_"), "{secret}");
    }
    async fn a_sales_account_sees_only_its_own_handoffs_and_answers_them_in_the_console(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |s| {
            let mut kim = s.handoff.owners[0].clone();
            kim.id = "kim".into();
            kim.name = "Kim Closer".into();
            kim.email = "kim@example.com".into();
            s.handoff.owners.push(kim);
        }).await;
        let mut leads = Vec::new();
        for email in ["one@firm.example", "two@firm.example", "three@firm.example"] {
            let created: Value = app.post_json("demo", &json!({"email": email, "name": "Pat", "company": "Firm", "_elapsed_ms": 5000})).await.json().await.unwrap();
            leads.push(app.lead_of(&created).await);
            app.dispatch().await;
        }
        let kims_list = app.admin_get("/v1/admin/handoffs?owner=kim").await;
        assert!(kims_list["handoffs"].as_array().unwrap().iter().any(|h| h["lead_id"] == leads[1].as_str()), "the second goes to the less-loaded Kim");
        let (sams, kims) = (&leads[0], &leads[1]);

        let mut sam = crate::console::account(&app, "sales@example.com", "sales").await;
        let queue = sam.get("/console/handoffs").await;
        assert_eq!(queue.status, 200);
        assert!(queue.body.contains("Your hand-offs") && queue.body.contains("one@firm.example") && queue.body.contains("three@firm.example"), "{}", queue.body);
        assert!(!queue.body.contains("two@firm.example"), "not Kim's");
        assert!(!queue.body.contains("href=\"/console/leads\""), "no lead list in a sales account's menu");
        for (path, status) in [("/console/leads", 303), ("/console/overview", 303), ("/console/forms", 403), ("/console/deliveries", 403), ("/console/leads/export.csv", 403), ("/console/people", 403)] {
            assert_eq!(sam.get(path).await.status, status, "{path}");
        }
        assert_eq!(sam.get(&format!("/console/leads/{kims}")).await.status, 404, "Kim's lead is not Sam's to see");
        let page = sam.get(&format!("/console/leads/{sams}")).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Why ") && page.body.contains("a company address (@firm.example)"), "{}", page.body);
        assert!(page.body.contains("Hand-off to Sam Seller: waiting to be accepted"), "{}", page.body);
        assert!(!page.body.contains("Set the stage"), "sales does not set stages");
        let csrf = crate::console::hidden(&page.body, "_csrf");
        let kim_handoff = app.admin_get("/v1/admin/handoffs?owner=kim").await["handoffs"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(sam.post(&format!("/console/handoffs/{kim_handoff}"), &[("_csrf", &csrf), ("action", "accept")]).await.status, 404);
        let sam_handoff = app.admin_get(&format!("/v1/admin/leads/{sams}/stages")).await;
        assert_eq!(sam_handoff["stage"], "mql");
        let mine = app.admin_get("/v1/admin/handoffs?owner=sam&status=new").await["handoffs"].as_array().unwrap().iter().find(|h| h["lead_id"] == sams.as_str()).unwrap()["id"].as_str().unwrap().to_string();
        let accepted = sam.post(&format!("/console/handoffs/{mine}"), &[("_csrf", &csrf), ("action", "accept")]).await;
        assert_eq!(accepted.status, 303);
        let page = sam.get(&format!("/console/leads/{sams}")).await;
        assert!(page.body.contains("accepted: reaching out"), "{}", page.body);
        let no_reason = sam.post(&format!("/console/handoffs/{mine}"), &[("_csrf", &csrf), ("action", "disqualified")]).await;
        assert_eq!(no_reason.status, 400);
        let forged = sam.post(&format!("/console/handoffs/{mine}"), &[("_csrf", "forged"), ("action", "qualified")]).await;
        assert_eq!(forged.status, 403);
        assert_eq!(sam.post(&format!("/console/handoffs/{mine}"), &[("_csrf", &csrf), ("action", "qualified")]).await.status, 303);
        assert_eq!(app.admin_get(&format!("/v1/admin/leads/{sams}/score")).await["stage"], "sql", "qualified by sales: sales-qualified");

        // A viewer sees every hand-off and answers none; a marketer sets stages.
        let mut viewer = crate::console::account(&app, "vi@example.com", "viewer").await;
        let all = viewer.get("/console/handoffs?status=all").await;
        assert!(all.body.contains("two@firm.example") && all.body.contains("one@firm.example"));
        let page = viewer.get(&format!("/console/leads/{kims}")).await;
        assert!(!page.body.contains(">Accept</button>"));
        let csrf = crate::console::hidden(&page.body, "_csrf");
        assert_eq!(viewer.post(&format!("/console/handoffs/{kim_handoff}"), &[("_csrf", &csrf), ("action", "accept")]).await.status, 403);
        let mut marketer = crate::console::account(&app, "ma@example.com", "marketer").await;
        let page = marketer.get(&format!("/console/leads/{kims}")).await;
        assert!(page.body.contains("Set the stage"));
        let csrf = crate::console::hidden(&page.body, "_csrf");
        assert_eq!(marketer.post(&format!("/console/leads/{kims}/stage"), &[("_csrf", &csrf), ("stage", "lead"), ("reason", "")]).await.status, 400);
        assert_eq!(marketer.post(&format!("/console/leads/{kims}/stage"), &[("_csrf", &csrf), ("stage", "customer"), ("reason", "")]).await.status, 303);
        let page = marketer.get(&format!("/console/leads/{kims}")).await;
        assert!(page.body.contains("<strong>Customer</strong> (score") && page.body.contains("console by ma@example.com"), "{}", page.body);
        assert_eq!(marketer.get("/console/handoffs?status=lost").await.status, 400);
    }

    async fn confirmations_unsubscribes_and_closed_handoffs_reach_the_endpoint_too(backend: Backend) {
        let (smtp, receiver) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &receiver, |_| {}).await;
        // A newsletter sign-up, confirmed through the link in its mail.
        app.post_json("newsletter", &json!({"email": "nia@letters.example"})).await;
        app.dispatch().await;
        let confirm = link(&smtp.received()[0], &format!("{}/v1/confirm/", app.address));
        assert_eq!(post_form_url(&app, &confirm, "").await.status(), 200);
        app.dispatch().await;
        let confirmed = receiver.of_type("lead.confirmed");
        assert_eq!(confirmed.len(), 1);
        assert_eq!(confirmed[0].json()["data"]["email"], "nia@letters.example");
        assert_eq!(confirmed[0].json()["data"]["form_id"], "newsletter");
        // Her welcome mail's one-click unsubscribe.
        let mail = smtp.received();
        let welcome = mail.iter().rev().find(|m| m.to == ["nia@letters.example"]).unwrap();
        let leave = link(welcome, &format!("{}/v1/unsubscribe/", app.address));
        assert_eq!(post_form_url(&app, &leave, "List-Unsubscribe=One-Click").await.status(), 200);
        app.dispatch().await;
        let left = receiver.of_type("lead.unsubscribed");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].json()["data"]["reason"], "unsubscribed");
        // A hand-off qualified by sales closes.
        app.post_json("demo", &json!({"email": "oz@firm.example", "name": "Oz", "_elapsed_ms": 5000})).await;
        app.dispatch().await;
        let h = app.admin_get("/v1/admin/handoffs").await["handoffs"][0]["id"].as_str().unwrap().to_string();
        for action in ["accept", "connected", "qualified"] {
            assert_eq!(admin_post(&app, &format!("/v1/admin/handoffs/{h}"), &json!({"action": action, "source": "crm", "actor": "salesforce"})).await.status(), 200);
        }
        app.dispatch().await;
        let closed = receiver.of_type("handoff.closed");
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].json()["data"]["status"].clone(), closed[0].json()["data"]["actor"].clone()), (json!("qualified"), json!("salesforce")));
        let changes = app.admin_get(&format!("/v1/admin/handoffs/{h}")).await["changes"].clone();
        assert!(changes.as_array().unwrap().iter().skip(1).all(|c| c["cause"] == "crm"), "{changes}");
        for g in receiver.got() {
            g.verify(SECRET).unwrap();
        }
    }
}
