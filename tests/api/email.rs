//! Follow-up email through the transactional outbox, delivered by lettre to a real SMTP server
//! over TCP (see smtp.rs). Each behaviour on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{cli, contact, spawn_inlet, Backend, TestApp, ADMIN_TOKEN};
use crate::smtp::{Mode, SmtpServer};

fn with_smtp(s: &mut inlet::config::Settings, url: &str) {
    s.mail.smtp_url = Some(SecretString::from(url.to_string()));
    s.mail.from = "Inlet Demo <hello@leads.example.com>".into();
    s.mail.timeout_secs = 5;
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address().map(String::from))
            .collect()
    })
    .unwrap_or_default()
}

both_backends! {
    async fn follow_up_and_owner_notification_arrive_complete_and_escaped(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.forms[1].notify = vec!["sales@example.com".into(), "ceo@example.com".into()];
            s.forms[1].reply_to = Some("Team <team@example.com>".into());
            // Typed text in the follow-up (to check its escaping) needs the form's opt-in.
            s.forms[1].personalize_unconfirmed = true;
        }).await;
        let mut body = contact("Lead.Person@Example.com");
        body["name"] = json!("<b>Ann</b> & \"Co\"");
        body["message"] = json!("<script>alert(1)</script>");
        assert_eq!(app.post_json("contact", &body).await.status(), 201);
        assert!(smtp.received().is_empty(), "nothing is sent inside the request");

        let report = app.dispatch().await;
        assert_eq!((report.sent, report.failed), (3, 0));
        let got = smtp.received();
        assert_eq!(got.len(), 3);
        let by_rcpt: HashMap<String, _> = got.iter().map(|r| (r.to[0].clone(), r)).collect();

        let follow = by_rcpt.get("lead.person@example.com").expect("follow-up to the lead").parsed();
        assert_eq!(follow.subject(), Some("Thanks for getting in touch"));
        assert_eq!(by_rcpt["lead.person@example.com"].from, "hello@leads.example.com", "envelope sender");
        assert_eq!(addresses(follow.from()), ["hello@leads.example.com"]);
        assert_eq!(addresses(follow.reply_to()), ["team@example.com"]);
        assert!(follow.message_id().unwrap().ends_with("@leads.example.com"), "{:?}", follow.message_id());
        assert!(follow.date().is_some());
        let text = follow.body_text(0).unwrap();
        assert!(text.contains("Hello <b>Ann</b> & \"Co\""), "text part is plain: {text}");
        let html = follow.body_html(0).unwrap();
        assert!(html.contains("&lt;b&gt;Ann&lt;") && html.contains("&amp; &quot;Co&quot;"), "HTML part escapes lead data: {html}");
        assert!(!html.contains("<b>Ann"));

        for owner in ["sales@example.com", "ceo@example.com"] {
            let n = by_rcpt.get(owner).expect("owner notification").parsed();
            assert_eq!(n.subject(), Some("New lead from the contact form"));
            assert_eq!(addresses(n.reply_to()), ["lead.person@example.com"]);
            let html = n.body_html(0).unwrap();
            assert!(html.contains("&lt;script&gt;alert(1)&lt;") && !html.contains("<script>"), "{html}");
            assert!(n.body_text(0).unwrap().contains("<script>alert(1)</script>"));
        }
        // Headers hold no user-typed text at all.
        for r in &got {
            let head = r.text().split("\r\n\r\n").next().unwrap().to_string();
            assert!(!head.contains("Ann") && !head.contains("script"), "{head}");
        }
    }

    async fn smtp_down_every_submission_still_2xx_and_each_email_arrives_once_later(backend: Backend) {
        let port = SmtpServer::reserve_port();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &crate::smtp::smtp_url_for_port(port));
            s.outbox.concurrency = 8;
        }).await;
        let statuses = futures::future::join_all((0..200).map(|i| {
            let app = &app;
            let body = contact(&format!("down{i}@example.com"));
            async move { app.post_json("contact", &body).await.status().as_u16() }
        }))
        .await;
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");

        let first = app.dispatch().await;
        assert_eq!((first.claimed, first.failed, first.sent), (200, 200, 0));
        let lead = &app.leads().await[0];
        let detail = app.admin_get(&format!("/v1/admin/leads/{}", lead["id"].as_str().unwrap())).await;
        let email = &detail["emails"][0];
        assert_eq!(email["status"], "failed");
        assert_eq!(email["attempts"], 1);
        assert!(email["last_error"].as_str().unwrap().contains("refused"), "{email}");

        let smtp = SmtpServer::start_at(port);
        let second = app.dispatch_after(3_600_000).await;
        assert_eq!(second.sent, 200);
        let got = smtp.received();
        assert_eq!(got.len(), 200);
        let mut rcpts: Vec<String> = got.iter().map(|r| r.to[0].clone()).collect();
        rcpts.sort();
        rcpts.dedup();
        assert_eq!(rcpts.len(), 200, "every message exactly once");
        assert_eq!(app.dispatch_after(3_600_000).await.claimed, 0, "nothing left");
    }

    async fn a_temporary_4xx_is_retried_then_delivered(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::TempFail(2));
        let app = TestApp::spawn_with(backend, |s| with_smtp(s, &smtp.url())).await;
        app.post_json("contact", &contact("retry@example.com")).await;
        assert_eq!(app.dispatch().await.failed, 1);
        assert_eq!(app.dispatch().await.claimed, 0, "backoff: not due again at once");
        assert_eq!(app.dispatch_after(3_600_000).await.failed, 1);
        assert_eq!(app.dispatch_after(7_200_000).await.sent, 1);
        assert_eq!(smtp.received().len(), 1);
        assert_eq!(smtp.rejected(), 2);
        let lead = &app.leads().await[0];
        let detail = app.admin_get(&format!("/v1/admin/leads/{}", lead["id"].as_str().unwrap())).await;
        assert_eq!(detail["emails"][0]["status"], "sent");
        assert_eq!(detail["emails"][0]["attempts"], 3);
    }

    async fn a_refusal_of_the_message_goes_dead_at_once_and_can_be_revived(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::PolicyReject);
        let app = TestApp::spawn_with(backend, |s| with_smtp(s, &smtp.url())).await;
        app.post_json("contact", &contact("dead@example.com")).await;
        let mut dead = 0;
        for _hour in 0..5 {
            dead += app.dispatch_after(7_200_000).await.dead;
        }
        assert_eq!(dead, 1);
        assert_eq!(smtp.rejected(), 1, "a 554 is final: not retried, no reputation burnt");

        let url = app.db.url();
        let list = cli(&["outbox", "list", "--status", "dead"], &url);
        assert!(list.status.success());
        let out = String::from_utf8_lossy(&list.stdout);
        assert!(out.contains("dead@example.com") && out.contains("554"), "{out}");

        let retry = cli(&["outbox", "retry", "--dead"], &url);
        assert!(retry.status.success(), "{}", String::from_utf8_lossy(&retry.stderr));
        smtp.set_mode(Mode::Accept);
        assert_eq!(app.dispatch().await.sent, 1);
        assert_eq!(smtp.received().len(), 1);
        assert!(!cli(&["outbox", "retry", "--dead"], &url).status.success(), "nothing left to revive");
    }

    async fn a_mail_servers_reply_naming_the_recipient_is_stored_and_logged_without_the_address(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::PermFailNamingRecipient);
        let app = TestApp::spawn_with(backend, |s| with_smtp(s, &smtp.url())).await;
        app.post_json("contact", &contact("echoed.person@example.com")).await;
        assert_eq!(app.dispatch().await.dead, 1, "user unknown is final");
        assert_eq!(smtp.rejected(), 1, "the server did name the recipient in its refusal");
        let lead = &app.leads().await[0];
        let detail = app.admin_get(&format!("/v1/admin/leads/{}", lead["id"].as_str().unwrap())).await;
        let error = detail["emails"][0]["last_error"].as_str().unwrap().to_string();
        assert!(error.contains("550") && error.contains("Recipient address rejected"), "{error}");
        assert!(error.contains("<address>"), "{error}");
        assert!(!error.contains("echoed.person"), "the stored error keeps no address: {error}");
    }

    async fn mail_survives_72_hours_of_provider_trouble_with_the_default_schedule(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::TempFail(u32::MAX));
        let app = TestApp::spawn_with(backend, |s| with_smtp(s, &smtp.url())).await;
        app.post_json("contact", &contact("patient@example.com")).await;
        // The worker's clock is injected: step through 72 simulated hours, a round every
        // 10 minutes, with the server answering 451 throughout.
        let mut dead = 0;
        let mut attempts = 0;
        for _step in 0..=(72 * 6) {
            let r = app.dispatch_after(600_000).await;
            dead += r.dead;
            attempts += r.failed;
        }
        assert_eq!(dead, 0, "nothing dies within 72 hours");
        assert!((10..20).contains(&attempts), "{attempts} attempts, spread out rather than hammered");
        smtp.set_mode(Mode::Accept);
        let mut sent = 0;
        for _step in 0..=(24 * 6) {
            sent += app.dispatch_after(600_000).await.sent;
        }
        assert_eq!(sent, 1, "delivered once the provider is back");
    }

    async fn a_worker_whose_clock_runs_ahead_cannot_take_a_leased_message(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| with_smtp(s, &smtp.url())).await;
        app.post_json("contact", &contact("leased@example.com")).await;
        // Another instance has claimed the message (a ten-minute lease) and not sent it yet.
        let held = app.state.store
            .claim_due(app.clock.now_ms(), 600_000, "another-instance", 10).await.unwrap();
        assert_eq!(held.len(), 1);
        // This instance's clock runs an hour ahead: by its own clock that lease is long over.
        let r = app.dispatch_after(3_600_000).await;
        assert_eq!(r.claimed, 0, "leases are judged by the database's clock: {r:?}");
        assert!(smtp.received().is_empty());
    }

    async fn a_round_slower_than_the_configured_lease_keeps_its_messages(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::Slow(Duration::from_millis(700)));
        let configure = |s: &mut inlet::config::Settings| {
            with_smtp(s, &smtp.url());
            s.outbox.lease_ms = 500;
            s.outbox.batch_size = 3;
            s.outbox.concurrency = 1;
        };
        let app = TestApp::spawn_with(backend, configure).await;
        for i in 0..3 {
            assert_eq!(app.post_json("contact", &contact(&format!("slow{i}@example.com"))).await.status(), 201);
        }
        let dir = tempfile::tempdir().unwrap();
        let (other, _) = app.second_instance(dir.path(), configure).await;
        let worker = app.worker.clone();
        let now = app.clock.now_ms();
        let round = tokio::spawn(async move { worker.run_once(now).await.unwrap() });
        smtp.wait_started(1, Duration::from_secs(10)).await;
        // The round takes about 2.1 s, four times the configured lease; the other instance
        // keeps asking for work all along.
        let mut taken = 0;
        while !round.is_finished() {
            taken += other.run_once(now).await.unwrap().claimed;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let report = round.await.unwrap();
        assert_eq!((report.sent, taken), (3, 0), "the lease covers the whole round: {report:?}");
        assert_eq!(smtp.received().len(), 3, "each message once");
    }

    async fn a_worker_that_lost_its_lease_does_not_send(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::Slow(Duration::from_millis(1500)));
        let configure = |s: &mut inlet::config::Settings| {
            with_smtp(s, &smtp.url());
            s.outbox.batch_size = 2;
            s.outbox.concurrency = 1;
        };
        let app = TestApp::spawn_with(backend, configure).await;
        for who in ["first@example.com", "second@example.com"] {
            assert_eq!(app.post_json("contact", &contact(who)).await.status(), 201);
        }
        let dir = tempfile::tempdir().unwrap();
        let (other, _) = app.second_instance(dir.path(), configure).await;
        let worker = app.worker.clone();
        let now = app.clock.now_ms();
        let stalled = tokio::spawn(async move { worker.run_once(now).await.unwrap() });
        smtp.wait_started(1, Duration::from_secs(10)).await;
        let mut db = crate::helpers::raw(&app.db).await;
        // The first worker stalls past its lease (a frozen VM, say) while sending the first
        // message: the database's clock says its leases are over, and the other instance
        // takes both messages.
        db.exec("UPDATE outbox SET lease_until = 0").await;
        let taken = other.drain(now).await.unwrap();
        assert_eq!((taken.claimed, taken.sent), (2, 2));
        let report = stalled.await.unwrap();
        assert_eq!(report.lease_lost, 1, "checked before its next send: {report:?}");
        let mut to: Vec<String> = smtp.received().iter().map(|m| m.to[0].clone()).collect();
        to.sort();
        // The message in flight during the stall goes twice (the documented bound); the one
        // not yet started goes once.
        assert_eq!(to, ["first@example.com", "first@example.com", "second@example.com"]);
    }

    async fn a_hard_bounce_suppresses_the_address_and_nothing_more_is_sent(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::PermFail);
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.outbox.follow_up_window_secs = 0;
            s.forms[1].notify = vec!["owner@example.com".into()];
        }).await;
        app.post_json("contact", &contact("nobody@example.com")).await;
        let r = app.dispatch().await;
        assert_eq!(r.dead, 2, "the follow-up and the owner's notification, both refused 550");
        let lead = app.leads().await[0]["id"].as_str().unwrap().to_string();
        let record = app.admin_get(&format!("/v1/admin/leads/{lead}/export")).await;
        assert_eq!(record["suppressed"], true, "{record}");
        assert!(record["consents"].as_array().unwrap().iter().any(|c| c["kind"] == "bounce"));
        smtp.set_mode(Mode::Accept);
        app.post_json("contact", &contact("nobody@example.com")).await;
        app.dispatch().await;
        let got = smtp.received();
        assert!(got.iter().all(|m| m.to[0] == "owner@example.com"), "no more mail to a mailbox that does not exist");
        assert_eq!(got.len(), 1);
    }

    async fn ten_submissions_in_a_minute_get_one_follow_up(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.forms[1].notify = vec!["owner@example.com".into()];
        }).await;
        for _ in 0..10 {
            assert_eq!(app.post_json("contact", &contact("eager@example.com")).await.status(), 201);
        }
        app.dispatch().await;
        let got = smtp.received();
        let to_lead = got.iter().filter(|r| r.to[0] == "eager@example.com").count();
        let to_owner = got.iter().filter(|r| r.to[0] == "owner@example.com").count();
        assert_eq!((to_lead, to_owner), (1, 10), "one follow-up; one notification per submission");
        let skipped = cli(&["outbox", "list", "--status", "skipped"], &app.db.url());
        assert_eq!(String::from_utf8_lossy(&skipped.stdout).matches("eager@example.com").count(), 9);
    }

    async fn messages_are_dkim_signed_when_a_key_is_configured(backend: Backend) {
        let smtp = SmtpServer::start();
        let keys = tempfile::tempdir().unwrap();
        let key_file = keys.path().join("dkim.key");
        // RFC 8032 test vector 1's secret key, base64 (Ed25519 seed).
        std::fs::write(&key_file, "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n").unwrap();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.mail.dkim = Some(inlet::config::DkimSettings {
                selector: "inlet".into(),
                domain: "leads.example.com".into(),
                private_key_file: key_file.clone(),
                algorithm: inlet::config::DkimAlgorithm::Ed25519,
            });
        }).await;
        app.post_json("contact", &contact("signed@example.com")).await;
        assert_eq!(app.dispatch().await.sent, 1);
        let raw = smtp.received()[0].text();
        let head = raw.split("\r\n\r\n").next().unwrap();
        let sig = head.split("DKIM-Signature:").nth(1).expect("a DKIM-Signature header");
        for part in ["v=1", "a=ed25519-sha256", "d=leads.example.com", "s=inlet", "bh=", "b="] {
            assert!(sig.contains(part), "{part} missing in {sig}");
        }
    }

    async fn spam_sends_no_email(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.forms[1].notify = vec!["owner@example.com".into()];
        }).await;
        let mut body = contact("spammy@example.com");
        body["_gotcha"] = json!("filled");
        app.post_json("contact", &body).await;
        assert_eq!(app.dispatch().await.claimed, 0);
        assert!(smtp.received().is_empty());
    }

    async fn an_idempotent_replay_sends_no_second_email(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.outbox.follow_up_window_secs = 0;
        }).await;
        let mut body = contact("once@example.com");
        body["_idem"] = json!("k1");
        app.post_json("contact", &body).await;
        app.post_json("contact", &body).await;
        app.dispatch().await;
        assert_eq!(smtp.received().len(), 1);
    }

    async fn the_background_worker_wakes_when_a_submission_commits(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| {
            with_smtp(s, &smtp.url());
            s.outbox.worker_enabled = true;
            s.outbox.poll_interval_ms = 600_000; // only the wake-up can deliver in time
        }).await;
        // Let the worker finish its first (empty) round and go to sleep.
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post_json("contact", &contact("wake@example.com")).await;
        let got = smtp.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "delivered without waiting for a poll");
    }

    async fn metrics_show_queue_depth_sends_and_failures(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::TempFail(1));
        let app = TestApp::spawn_with(backend, |s| with_smtp(s, &smtp.url())).await;
        app.post_json("contact", &contact("m1@example.com")).await;
        app.post_json("contact", &contact("m2@example.com")).await;
        let metrics = || async {
            app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
        };
        assert!(metrics().await.contains("inlet_outbox_messages{status=\"pending\"} 2"));
        app.dispatch().await;
        let m = metrics().await;
        assert!(m.contains("inlet_emails_sent_total{kind=\"follow_up\"} 1"), "{m}");
        assert!(m.contains("inlet_email_failures_total{kind=\"follow_up\"} 1"), "{m}");
        assert!(m.contains("inlet_outbox_messages{status=\"failed\"} 1"), "{m}");
        assert!(m.contains("inlet_outbox_oldest_waiting_seconds"), "{m}");
        assert!(!m.contains("m1@example.com") && !m.contains("m2@example.com"));
    }

    async fn sigkill_with_messages_in_flight_loses_no_acknowledged_email(backend: Backend) {
        let smtp = SmtpServer::start();
        smtp.set_mode(Mode::Slow(Duration::from_millis(150)));
        let db = crate::helpers::TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let concurrency = 4;
        let config = dir.path().join("inlet.toml");
        // A worker's lease lasts its worst round ((batch / concurrency + 1) x 3 x the mail
        // timeout): one wave of four and a one-second timeout make it 6 s, so the messages the
        // killed instance held come free while the test waits.
        std::fs::write(&config, format!("[outbox]\nconcurrency = {concurrency}\nbatch_size = {concurrency}\n")).unwrap();
        let env = |port: u16| -> Vec<(String, String)> {
            vec![
                ("INLET_CONFIG".into(), config.display().to_string()),
                ("DATABASE_URL".into(), db.url()),
                ("INLET_SMTP_URL".into(), smtp.url()),
                ("INLET_BIND".into(), format!("127.0.0.1:{port}")),
                ("INLET_OUTBOX_LEASE_MS".into(), "1500".into()),
                ("INLET_MAIL__TIMEOUT_SECS".into(), "1".into()),
                ("INLET_OUTBOX_BACKOFF_BASE_MS".into(), "100".into()),
                ("INLET_RATE_LIMIT_ENABLED".into(), "false".into()),
                // Forty strangers' addresses from one network would meet the mail cap.
                ("INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR".into(), "0".into()),
                ("INLET_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
                ("RUST_LOG".into(), "warn".into()),
            ]
        };
        let first_port = SmtpServer::reserve_port();
        let mut first = spawn_inlet(&env(first_port), dir.path()).await;
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{first_port}");
        let mut acknowledged = Vec::new();
        for i in 0..40 {
            let email = format!("kill{i}@example.com");
            let r = client
                .post(format!("{base}/v1/forms/contact/submissions"))
                .json(&contact(&email))
                .send()
                .await
                .unwrap();
            if r.status() == 201 {
                acknowledged.push(email);
            }
        }
        assert_eq!(acknowledged.len(), 40);
        // Kill it hard while the worker is mid-way through the queue.
        smtp.wait_for(3, Duration::from_secs(20)).await;
        first.kill().expect("SIGKILL");
        let _ = first.wait();
        let before_restart = smtp.received().len();
        assert!(before_restart < 40, "the kill came while messages were still queued");

        let second_port = SmtpServer::reserve_port();
        let mut second = spawn_inlet(&env(second_port), dir.path()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut unique: Vec<String>;
        loop {
            unique = smtp.received().iter().map(|r| r.to[0].clone()).collect();
            unique.sort();
            unique.dedup();
            if unique.len() >= 40 || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = second.kill();
        let _ = second.wait();
        acknowledged.sort();
        if unique != acknowledged {
            eprintln!("{}", std::fs::read_to_string(dir.path().join("inlet.log")).unwrap_or_default());
        }
        assert_eq!(unique, acknowledged, "every acknowledged lead got its email");
        // In flight at the kill: sends under way plus sent-but-unmarked (one group).
        let duplicates = smtp.received().len() - unique.len();
        assert!(duplicates <= 2 * concurrency, "duplicates ({duplicates}) are at most the messages in flight");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_drain_1000_messages_without_a_double_send() {
    if !crate::helpers::postgres_available().await {
        return;
    }
    let smtp = SmtpServer::start();
    let a = TestApp::spawn_with(Backend::Postgres, |s| with_smtp(s, &smtp.url())).await;
    let b_dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(&a.db, b_dir.path());
    with_smtp(&mut settings, &smtp.url());
    let b = inlet::startup::Application::build(settings).await.unwrap();
    let b_worker = b.outbox_worker();
    let b_address = format!("http://127.0.0.1:{}", b.port());
    tokio::spawn(b.run_until_stopped());

    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(chunk.iter().map(|i| {
            let target = if i % 2 == 0 {
                a.address.clone()
            } else {
                b_address.clone()
            };
            let client = a.client.clone();
            async move {
                let r = client
                    .post(format!("{target}/v1/forms/newsletter/submissions"))
                    .json(&json!({"email": format!("pair{i}@example.com")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }))
        .await;
    }
    let now = a.clock.now_ms();
    let (ra, rb) = tokio::join!(a.worker.drain(now), b_worker.drain(now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.sent + rb.sent, 1000, "a: {ra:?} b: {rb:?}");
    let got = smtp.received();
    assert_eq!(got.len(), 1000, "no message sent twice");
    let mut rcpts: Vec<&str> = got.iter().map(|r| r.to[0].as_str()).collect();
    rcpts.sort_unstable();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 1000);
    let leads: Value = a.admin_get("/v1/admin/leads?limit=1").await;
    assert!(leads["next_cursor"].is_string());
}
