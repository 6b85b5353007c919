//! Spam as a score (issue 14, item 1): a fast human is a lead; only strong evidence
//! quarantines, and a quarantined lead stays visible, exportable on request and restorable.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{cli, contact, Backend, TestApp, ADMIN_TOKEN};
use crate::smtp::SmtpServer;

async fn quarantined(app: &TestApp) -> Vec<Value> {
    app.admin_get("/v1/admin/leads?quarantined=true").await["leads"]
        .as_array()
        .unwrap()
        .clone()
}

async fn restore(app: &TestApp, lead_id: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/admin/leads/{lead_id}/restore")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

both_backends! {
    async fn a_fast_human_is_a_lead_and_the_weak_signal_is_kept(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            s.mail.smtp_url = Some(secrecy::SecretString::from(smtp.url()));
        }).await;
        // Autofill and Enter: 200 ms and 1 s after the page loaded (the time trap is 1.5 s).
        for (who, ms) in [("autofill@example.com", 200), ("quick@example.com", 1000)] {
            let mut body = contact(who);
            body["_elapsed_ms"] = json!(ms);
            assert_eq!(app.post_json("contact", &body).await.status(), 201);
        }
        let leads = app.leads().await;
        assert_eq!(leads.len(), 2, "both are leads: {leads:?}");
        let signals: Vec<(&str, i64)> = leads.iter()
            .map(|l| (l["latest_submission"]["spam_signals"].as_str().unwrap(),
                      l["latest_submission"]["spam_score"].as_i64().unwrap()))
            .collect();
        assert_eq!(signals, [("very_fast", 50), ("too_fast", 30)]);
        assert!(leads.iter().all(|l| l["status"] == "active" && l["latest_submission"]["quarantined"] == false));
        assert_eq!(app.dispatch().await.sent, 2, "each gets the follow-up");
        assert!(quarantined(&app).await.is_empty());
    }

    async fn strong_evidence_quarantines_and_the_lead_stays_visible_and_restorable(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            s.mail.smtp_url = Some(secrecy::SecretString::from(smtp.url()));
            // The burst signal reads the per-IP limiter: on, with room for every post here.
            s.rate_limit.enabled = true;
            s.rate_limit.per_ip_burst = 10;
            s.spam.burst = 2;
        }).await;
        // Two ordinary submissions use up the network's allowance...
        for who in ["one@example.com", "two@example.com"] {
            assert_eq!(app.post_json("contact", &contact(who)).await.status(), 201);
        }
        // ...then very fast in a burst; too fast with a link in the name; a filled honeypot.
        let mut burst = contact("burst@example.com");
        burst["_elapsed_ms"] = json!(100);
        let mut linked = contact("linked@example.com");
        linked["_elapsed_ms"] = json!(1000);
        linked["name"] = json!("Cheap pills https://pills.example");
        let mut honeypot = contact("honey@example.com");
        honeypot["_gotcha"] = json!("x");
        honeypot["_elapsed_ms"] = json!(9000);
        for body in [&burst, &linked, &honeypot] {
            let r = app.post_json("contact", body).await;
            assert_eq!(r.status(), 201, "the same answer a person gets");
        }
        assert_eq!(app.leads().await.len(), 2, "quarantined leads are not ordinary leads");
        let held = quarantined(&app).await;
        let mut seen: Vec<(String, String)> = held.iter()
            .map(|l| (l["email"].as_str().unwrap().to_string(),
                      l["latest_submission"]["spam_reason"].as_str().unwrap().to_string()))
            .collect();
        seen.sort();
        assert_eq!(seen, [
            ("burst@example.com".to_string(), "very_fast+burst".to_string()),
            ("honey@example.com".to_string(), "honeypot+burst".to_string()),
            ("linked@example.com".to_string(), "links+too_fast+burst".to_string()),
        ]);
        assert!(held.iter().all(|l| l["status"] == "quarantined"));
        assert_eq!(app.dispatch().await.sent, 2, "nothing is sent to quarantined submissions");

        // Exports leave them out unless asked for.
        let url = app.db.url();
        let all = cli(&["leads", "export", "--format", "jsonl"], &url);
        assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
        assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 2);
        let out = cli(&["leads", "export", "--format", "csv", "--status", "quarantined"], &url);
        let csv = String::from_utf8_lossy(&out.stdout);
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(csv.contains("burst@example.com") && csv.contains(",quarantined,"), "{csv}");

        // Restore through the admin API: the lead is a lead from now on, its signals kept.
        let burst_id = held.iter().find(|l| l["email"] == "burst@example.com").unwrap()["id"]
            .as_str().unwrap().to_string();
        assert_eq!(restore(&app, &burst_id, "wrong-token-wrong-token-wrong-token").await.status(), 401);
        let r = restore(&app, &burst_id, ADMIN_TOKEN).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!((body["restored"].clone(), body["submissions_restored"].clone()), (json!(true), json!(1)));
        let again: Value = restore(&app, &burst_id, ADMIN_TOKEN).await.json().await.unwrap();
        assert_eq!(again["restored"], false);
        assert_eq!(restore(&app, "0190aaaa-0000-7000-8000-000000000000", ADMIN_TOKEN).await.status(), 404);
        let lead = app.leads().await.into_iter().find(|l| l["email"] == "burst@example.com")
            .expect("restored lead listed");
        assert_eq!(lead["status"], "active");
        let sub = &lead["latest_submission"];
        assert!(sub["restored_at"].is_string(), "{sub}");
        assert_eq!((sub["quarantined"].clone(), sub["spam_signals"].clone()), (json!(false), json!("very_fast+burst")));
        assert_eq!(app.dispatch().await.sent, 0, "restoring sends nothing after the fact");

        // And through the CLI.
        let out = cli(&["leads", "restore", "honey@example.com"], &url);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 submissions restored"));
        assert_eq!(quarantined(&app).await.len(), 1);
        assert_eq!(app.leads().await.len(), 4);
    }

    async fn a_quarantined_post_shows_what_was_held_and_spends_no_cap(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            s.mail.smtp_url = Some(secrecy::SecretString::from(smtp.url()));
            s.forms[1].notify = vec!["owner@example.com".into()];
            s.rate_limit.unconfirmed_mail_per_recipient_per_hour = 2;
        }).await;
        // A script fills the honeypot with someone's address, more often than the cap allows.
        for _ in 0..3 {
            let mut bot = contact("victim@example.com");
            bot["_gotcha"] = json!("x");
            assert_eq!(app.post_json("contact", &bot).await.status(), 201);
        }
        let lead = quarantined(&app).await[0]["id"].as_str().unwrap().to_string();
        let export = app.admin_get(&format!("/v1/admin/leads/{lead}/export")).await;
        let messages = export["messages"].as_array().unwrap();
        // What a person would have been sent, each kept as not sent and why (the marketer's
        // timeline shows it); nothing for the worker to send.
        assert_eq!(messages.len(), 6, "{export}");
        for m in messages {
            assert_eq!(m["status"], "skipped", "{m}");
            assert_eq!(m["last_error"], "not sent: the submission was quarantined as spam", "{m}");
        }
        let kinds: Vec<&str> = messages.iter().map(|m| m["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "follow_up").count(), 3, "{kinds:?}");
        assert_eq!(app.dispatch().await.sent, 0);
        // The per-recipient cap (2) was not spent by the bot's three posts: the person gets
        // their follow-up.
        assert_eq!(app.post_json("contact", &contact("victim@example.com")).await.status(), 201);
        app.dispatch().await;
        let to_victim = smtp.received().into_iter().filter(|m| m.to[0] == "victim@example.com").count();
        assert_eq!(to_victim, 1);
    }

    async fn the_owner_notification_says_what_was_quarantined(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            s.mail.smtp_url = Some(secrecy::SecretString::from(smtp.url()));
            s.forms[1].notify = vec!["owner@example.com".into()];
        }).await;
        for bot in ["bot1@example.com", "bot2@example.com"] {
            let mut body = contact(bot);
            body["_gotcha"] = json!("x");
            app.post_json("contact", &body).await;
        }
        app.post_json("contact", &contact("real@example.com")).await;
        app.dispatch().await;
        let owner = smtp.received().into_iter().find(|m| m.to[0] == "owner@example.com")
            .expect("the owner's notification");
        let text = owner.parsed().body_text(0).unwrap().into_owned();
        assert!(text.contains("2 submissions to this form in the 24 hours before this one were quarantined"), "{text}");
        assert!(text.contains("inlet leads restore"), "{text}");
    }
}
