//! Nurture sequences, end to end on both engines with an injected clock and a real SMTP
//! server: enrolment on a download, steps in the send window, exits (a demo request, an
//! unsubscribe, a reply through the inbound endpoint) that stop what is left, tracked clicks,
//! an edited live sequence following the plan the CLI printed, two instances sharing the
//! queue, and `kill -9` of a real process mid-sequence.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Timelike};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::both_backends;
use crate::consent::{header, link, post_form_url};
use crate::helpers::{contact, raw, spawn_inlet, Backend, TestApp, TestDb, ADMIN_TOKEN};
use crate::receiver::Receiver;
use crate::smtp::{Received, SmtpServer};
use inlet::config::{
    EnrollConfig, EnrollOn, ExitConfig, Reenroll, SequenceConfig, StepConfig, WindowConfig,
};

const ADA: &str = "ada@analytical.example";
const INBOUND_SECRET: &str = "inbound-secret-for-the-tests-0123456789";

fn step(id: &str, delay: &str, subject: &str, text: &str) -> StepConfig {
    StepConfig {
        id: id.into(),
        delay: delay.into(),
        subject: subject.into(),
        text: text.into(),
        html: None,
        skip_when: None,
    }
}

/// Three steps after a whitepaper download, weekdays 09:00–17:00 UTC, ended by a demo
/// request, with tracked links.
fn nurture() -> SequenceConfig {
    SequenceConfig {
        id: "nurture".into(),
        name: Some("After the whitepaper".into()),
        enroll: EnrollConfig {
            on: EnrollOn::Downloaded,
            form: Some("whitepaper".into()),
            stage: None,
        },
        reenroll: Reenroll::Never,
        window: WindowConfig {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            from: "09:00".into(),
            until: "17:00".into(),
            time_zone: "UTC".into(),
            lead_time_zone_field: None,
        },
        exit: ExitConfig {
            forms: vec!["demo".into()],
            ..ExitConfig::default()
        },
        track_clicks: true,
        reach_finished: false,
        steps: vec![
            step(
                "one",
                "0",
                "Step one",
                "Hello {{ fields.name }},\n\nthe guide: https://example.com/guide\n",
            ),
            step("two", "3d", "Step two", "Step two of {{ step.total }}.\n"),
            step("three", "3d", "Step three", "Step three.\n"),
        ],
    }
}

/// The demo's forms and qualification (with a `demo` hand-raiser form and the demo owner),
/// real SMTP, the nurture sequence and the inbound endpoint.
async fn spawn(
    backend: Backend,
    smtp: &SmtpServer,
    more: impl FnOnce(&mut inlet::config::Settings),
) -> TestApp {
    let receiver = Receiver::start();
    crate::qualification::spawn(backend, smtp, &receiver, |s| {
        s.webhooks.endpoints.clear();
        s.sequences = vec![nurture()];
        s.replies.address = Some("replies@in.example.com".into());
        s.replies.secret = Some(SecretString::from(INBOUND_SECRET));
        more(s);
    })
    .await
}

/// Moves the app's clock to the next `weekday` at `hour`:00 UTC.
fn move_to(app: &TestApp, weekday: chrono::Weekday, hour: u32) -> i64 {
    let now = chrono::Utc
        .timestamp_millis_opt(app.clock.now_ms())
        .unwrap();
    let mut day = now.date_naive() + chrono::Duration::days(1);
    while day.weekday() != weekday {
        day += chrono::Duration::days(1);
    }
    let target = day
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    app.advance(Duration::from_millis(
        u64::try_from(target - app.clock.now_ms()).unwrap(),
    ));
    target
}

const DAY: Duration = Duration::from_secs(86_400);

fn subjects_to(smtp: &SmtpServer, to: &str) -> Vec<String> {
    smtp.received()
        .iter()
        .filter(|m| m.to == [to])
        .map(|m| m.parsed().subject().unwrap_or_default().to_string())
        .collect()
}

fn step_mail(smtp: &SmtpServer, to: &str, subject: &str) -> Received {
    smtp.received()
        .into_iter()
        .find(|m| m.to == [to] && m.parsed().subject() == Some(subject))
        .unwrap_or_else(|| panic!("no '{subject}' to {to}: {:?}", subjects_to(smtp, to)))
}

/// Sends the whitepaper form as `email` and follows the download link in its mail.
async fn download(app: &TestApp, smtp: &SmtpServer, email: &str) -> String {
    let body =
        json!({"email": email, "name": "Ada", "company": "Analytical Engines", "consent": true});
    let created: Value = app
        .post_json("whitepaper", &body)
        .await
        .json()
        .await
        .unwrap();
    let lead = app.lead_of(&created).await;
    app.dispatch().await;
    let mail = smtp.received();
    let follow_up = mail
        .iter()
        .rev()
        .find(|m| m.to == [email] && m.parsed().subject() == Some("Your download is ready"))
        .expect("the whitepaper mail");
    let url = link(follow_up, &format!("{}/v1/downloads/", app.address));
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    app.dispatch().await;
    lead
}

/// 5 points of engagement per click in nurture mail.
fn clicked_rule() -> inlet::config::ScoreRuleConfig {
    let mut rule = inlet::config::demo_scoring()
        .rules
        .into_iter()
        .find(|r| r.event.is_some())
        .expect("an engagement rule in the demo");
    rule.id = "clicked-nurture".into();
    rule.points = 5;
    rule.event = Some(inlet::config::ActivityKind::Clicked);
    rule.form = None;
    rule.max_times = None;
    rule.group = None;
    rule
}

async fn lead_id_of(app: &TestApp, email: &str) -> String {
    app.leads()
        .await
        .iter()
        .find(|l| l["email"] == email)
        .and_then(|l| l["id"].as_str())
        .expect("the lead")
        .to_string()
}

async fn enrolment(app: &TestApp, lead: &str) -> Value {
    let body = app
        .admin_get(&format!("/v1/admin/leads/{lead}/sequences"))
        .await;
    assert_eq!(
        body["enrolments"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    body["enrolments"][0].clone()
}

/// Step id -> status.
fn statuses(e: &Value) -> BTreeMap<String, String> {
    e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn inbound(app: &TestApp, auth: Option<(&str, &str)>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url("/v1/inbound/email")).json(body);
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    req.send().await.unwrap()
}

both_backends! {
    async fn a_download_enrols_step_one_goes_at_once_step_two_waits_for_the_window_and_a_demo_request_stops_step_three(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        let wednesday = move_to(&app, chrono::Weekday::Wed, 10);
        let lead = download(&app, &smtp, ADA).await;

        // Step one at once, personalised (the download proved the address), tracked, with a
        // reply address of its own and a way out.
        let one = step_mail(&smtp, ADA, "Step one");
        let text = one.parsed().body_text(0).unwrap().to_string();
        assert!(text.starts_with("Hello Ada,"), "{text}");
        assert!(text.contains(&format!("{}/v1/r/", app.address)) && !text.contains("https://example.com/guide"), "{text}");
        assert!(header(&one, "List-Unsubscribe").is_some());
        let reply_to = header(&one, "Reply-To").unwrap();
        assert!(reply_to.contains("replies+") && reply_to.contains("@in.example.com"), "{reply_to}");
        let e = enrolment(&app, &lead).await;
        assert_eq!(e["status"], "active");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "pending")]));

        // A step scheduled for later is not a message waiting: no queue alarm for days.
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for line in [
            r#"inlet_outbox_messages{status="scheduled"} 1"#,
            r#"inlet_outbox_messages{status="pending"} 0"#,
            "inlet_outbox_oldest_waiting_seconds 0",
        ] {
            assert!(metrics.contains(line), "{line} in:\n{metrics}");
        }
        // Three days after Wednesday 10:00 is Saturday: step two waits for Monday 09:00.
        let two = e["steps"].as_array().unwrap().iter().find(|s| s["step_id"] == "two").unwrap().clone();
        let due = chrono::DateTime::parse_from_rfc3339(two["due_at"].as_str().unwrap()).unwrap();
        assert_eq!((due.weekday(), due.hour(), due.minute()), (chrono::Weekday::Mon, 9, 0), "{two}");
        assert_eq!((due.timestamp_millis() - wednesday) / 86_400_000, 4);
        app.advance(3 * DAY);
        app.dispatch().await;
        assert_eq!(subjects_to(&smtp, ADA).iter().filter(|s| s.starts_with("Step")).count(), 1, "nothing on Saturday");
        move_to(&app, chrono::Weekday::Mon, 9);
        app.dispatch().await;
        assert!(step_mail(&smtp, ADA, "Step two").parsed().body_text(0).unwrap().contains("Step two of 3."));
        let e = enrolment(&app, &lead).await;
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "sent"), ("three", "pending")]));
        let sent = chrono::DateTime::parse_from_rfc3339(e["steps"][1]["sent_at"].as_str().unwrap()).unwrap();
        assert_eq!((sent.weekday(), sent.hour()), (chrono::Weekday::Mon, 9), "sent inside the window");

        // A demo request between step two and step three ends the sequence in its own
        // transaction: step three is marked skipped before any worker looks.
        let demo = json!({"email": ADA, "name": "Ada", "message": "Can we talk?", "_elapsed_ms": 5000});
        assert_eq!(app.post_json("demo", &demo).await.status(), 201);
        let e = enrolment(&app, &lead).await;
        assert_eq!((e["status"].as_str(), e["exit_reason"].as_str()), (Some("exited"), Some("form")), "{e}");
        assert_eq!(e["exit_detail"], "submitted the 'demo' form");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "sent"), ("three", "skipped")]));
        app.advance(7 * DAY);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ADA).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one", "Step two"], "step three never goes");

        // The counts the console shows.
        let all = app.admin_get("/v1/admin/sequences").await;
        let s = &all["sequences"][0];
        assert_eq!(s["id"], "nurture");
        assert_eq!(s["enrolments"]["exited"], 1);
        assert_eq!(s["exits"]["form"], 1);
        assert_eq!(s["steps"][0]["messages"]["sent"], 1);
        assert_eq!(s["steps"][2]["messages"]["skipped"], 1);
    }

    async fn a_quarantined_post_naming_a_lead_does_not_end_their_sequence(backend: Backend) {
        // A script that fills the honeypot with someone's address must not stop their mail.
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        let lead = download(&app, &smtp, ADA).await;
        let bot = json!({"email": ADA, "name": "Ada", "message": "hi", "_elapsed_ms": 5000, "_gotcha": "x"});
        assert_eq!(app.post_json("demo", &bot).await.status(), 201, "answered like any other");
        let e = enrolment(&app, &lead).await;
        assert_eq!(e["status"], "active", "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "pending")]));
    }

    async fn an_unsubscribe_stops_the_rest_of_the_sequence(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        let lead = download(&app, &smtp, ADA).await;
        let one = step_mail(&smtp, ADA, "Step one");
        let list = header(&one, "List-Unsubscribe").unwrap();
        let url = list.split(['<', '>']).find(|p| p.starts_with("http")).unwrap().to_string();
        assert_eq!(post_form_url(&app, &url, "List-Unsubscribe=One-Click").await.status(), 200);
        let e = enrolment(&app, &lead).await;
        assert_eq!(e["exit_reason"], "unsubscribed", "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped")]));
        app.advance(14 * DAY);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ADA).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one"]);
        // A new download does not enrol an unsubscribed address again.
        let all = app.admin_get("/v1/admin/sequences").await;
        assert_eq!(all["sequences"][0]["exits"]["unsubscribed"], 1);
    }

    async fn a_spam_complaint_from_the_provider_suppresses_the_address_and_stops_the_sequence(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        let lead = download(&app, &smtp, ADA).await;
        let complaint = json!({"RecordType": "SpamComplaint", "Email": "Ada@Analytical.example", "Type": "SpamComplaint"});
        assert_eq!(inbound(&app, Some(("postmark", "wrong")), &complaint).await.status(), 401, "changes nothing");
        assert_eq!(enrolment(&app, &lead).await["status"], "active");
        let r: Value = inbound(&app, Some(("postmark", INBOUND_SECRET)), &complaint).await.json().await.unwrap();
        assert_eq!(r["status"], "recorded", "{r}");
        let r: Value = inbound(&app, Some(("postmark", INBOUND_SECRET)), &complaint).await.json().await.unwrap();
        assert_eq!(r["status"], "duplicate", "{r}");
        let unknown = json!({"event": "complained", "email": "nobody@example.net"});
        let r: Value = inbound(&app, Some(("postmark", INBOUND_SECRET)), &unknown).await.json().await.unwrap();
        assert_eq!(r["status"], "ignored", "{r}");
        let e = enrolment(&app, &lead).await;
        assert_eq!(e["exit_reason"], "complained", "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped")]));
        let export = app.admin_get(&format!("/v1/admin/leads/{lead}/export")).await;
        assert_eq!(export["suppressed"], true);
        app.advance(14 * DAY);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ADA).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one"]);
        // Guessing the secret is throttled: ten wrong tries a minute, then even the right
        // one waits.
        let statuses: Vec<u16> = futures::future::join_all((0..10).map(|_| inbound(&app, Some(("x", "guess")), &complaint)))
            .await.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.contains(&429), "{statuses:?}");
        let right = inbound(&app, Some(("postmark", INBOUND_SECRET)), &complaint).await;
        assert_eq!(right.status(), 429);
        assert!(right.headers().contains_key("retry-after"));
    }

    async fn a_hard_bounce_or_a_handoff_ends_the_sequence(backend: Backend) {
        let smtp = SmtpServer::start();
        // Here the demo request is not an exit form: the hand-off it causes is what ends it.
        let app = spawn(backend, &smtp, |s| s.sequences[0].exit.forms.clear()).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        let ada = download(&app, &smtp, ADA).await;
        let demo = json!({"email": ADA, "name": "Ada", "message": "Can we talk?", "_elapsed_ms": 5000});
        assert_eq!(app.post_json("demo", &demo).await.status(), 201);
        app.dispatch().await;
        let e = enrolment(&app, &ada).await;
        assert_eq!((e["exit_reason"].as_str(), e["exit_detail"].as_str()), (Some("handoff"), Some("handed to sales")), "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped")]));

        // Ben's mailbox does not exist: step two bounces, and nothing more is tried.
        let ben_mail = "ben@example.org";
        let ben = download(&app, &smtp, ben_mail).await;
        smtp.set_mode(crate::smtp::Mode::PermFail);
        app.advance(3 * DAY);
        app.dispatch().await;
        smtp.set_mode(crate::smtp::Mode::Accept);
        let e = enrolment(&app, &ben).await;
        assert_eq!(e["exit_reason"], "bounced", "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "dead")]));
        app.advance(7 * DAY);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ben_mail).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one"]);
        let exits = &app.admin_get("/v1/admin/sequences").await["sequences"][0]["exits"];
        assert_eq!((exits["handoff"].as_i64(), exits["bounced"].as_i64()), (Some(1), Some(1)), "{exits}");
    }

    async fn a_verified_reply_stops_the_rest_and_hands_the_lead_to_sales(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        move_to(&app, chrono::Weekday::Tue, 10);
        let lead = download(&app, &smtp, ADA).await;
        let one = step_mail(&smtp, ADA, "Step one");
        let reply_to = header(&one, "Reply-To").unwrap();
        let address = reply_to.trim_matches(['<', '>', ' ']).to_string();
        let reply = json!({
            "From": format!("Ada Lovelace <{ADA}>"),
            "FromFull": {"Email": ADA},
            "To": address,
            "ToFull": [{"Email": address}],
            "MessageID": "<reply-1@analytical.example>",
            "Subject": "Re: Step one",
            "TextBody": "Yes, let's talk on Thursday.\n\n> Hello Ada",
            "StrippedTextReply": "Yes, let's talk on Thursday.",
        });

        // The provider must authenticate; a wrong secret changes nothing.
        assert_eq!(inbound(&app, None, &reply).await.status(), 401);
        assert_eq!(inbound(&app, Some(("postmark", "wrong")), &reply).await.status(), 401);
        let bearer = app.client.post(app.url("/v1/inbound/email")).bearer_auth("nope").json(&reply).send().await.unwrap();
        assert_eq!(bearer.status(), 401);
        assert_eq!(inbound(&app, Some(("postmark", INBOUND_SECRET)), &json!("not an email")).await.status(), 400);
        // Someone else answering, or a token that is not ours, is read and ignored.
        let mut other = reply.clone();
        other["FromFull"]["Email"] = json!("mallory@example.net");
        other["From"] = json!("mallory@example.net");
        let r: Value = inbound(&app, Some(("postmark", INBOUND_SECRET)), &other).await.json().await.unwrap();
        assert_eq!(r["status"], "ignored", "{r}");
        let mut forged = reply.clone();
        let token = address.split(['+', '@']).nth(1).unwrap();
        let bad = address.replace(token, &format!("{}0000000000000000", &token[..32]));
        forged["To"] = json!(bad);
        forged["ToFull"] = json!([{"Email": bad}]);
        let r: Value = inbound(&app, Some(("postmark", INBOUND_SECRET)), &forged).await.json().await.unwrap();
        assert_eq!(r["status"], "ignored", "{r}");
        assert_eq!(enrolment(&app, &lead).await["status"], "active");

        // The real reply: recorded once, the lead leaves, sales gets it.
        let r: Value = inbound(&app, Some(("postmark", INBOUND_SECRET)), &reply).await.json().await.unwrap();
        assert_eq!(r["status"], "recorded", "{r}");
        let again = app.client.post(app.url("/v1/inbound/email")).bearer_auth(INBOUND_SECRET).json(&reply).send().await.unwrap();
        assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
        let e = enrolment(&app, &lead).await;
        assert_eq!((e["exit_reason"].as_str(), e["exit_detail"].as_str()), (Some("replied"), Some("replied to step 'one'")), "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped")]));
        app.dispatch().await;
        let handoffs = app.admin_get("/v1/admin/handoffs?status=open").await;
        assert_eq!(handoffs["handoffs"].as_array().unwrap().len(), 1, "{handoffs}");
        assert_eq!(handoffs["handoffs"][0]["lead_id"], lead.as_str());
        let stages = app.admin_get(&format!("/v1/admin/leads/{lead}/stages")).await;
        assert_eq!(stages["stage"], "mql");
        assert!(stages["changes"].as_array().unwrap().iter().any(|c| c["reason"] == "replied to a nurture mail"), "{stages}");
        assert!(smtp.received().iter().any(|m| m.to == ["sales@example.com"]), "the owner hears of it");
        app.advance(14 * DAY);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ADA).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one"]);
        assert_eq!(app.admin_get("/v1/admin/sequences").await["sequences"][0]["replies"], 1);
    }

    async fn a_tracked_click_redirects_only_where_the_template_pointed_and_counts_as_engagement(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| {
            s.scoring.rules.push(clicked_rule());
        }).await;
        move_to(&app, chrono::Weekday::Thu, 11);
        let lead = download(&app, &smtp, ADA).await;
        let one = step_mail(&smtp, ADA, "Step one");
        let tracked = link(&one, &format!("{}/v1/r/", app.address));
        // A scanner's HEAD follows but does not count.
        let head = app.client.head(&tracked).send().await.unwrap();
        assert_eq!(head.status(), 302);
        let click = app.client.get(&tracked).send().await.unwrap();
        assert_eq!(click.status(), 302);
        assert_eq!(click.headers()["location"], "https://example.com/guide");
        assert_eq!(app.client.get(&tracked).send().await.unwrap().status(), 302, "again: still redirects");
        // Tampered: never a redirect anywhere else.
        let token = tracked.rsplit('/').next().unwrap();
        let tampered = tracked.replace(token, &token.replace("-0-", "-1-"));
        assert_eq!(app.client.get(&tampered).send().await.unwrap().status(), 404);
        assert_eq!(app.client.get(app.url("/v1/r/nonsense")).send().await.unwrap().status(), 404);
        app.dispatch().await;
        let all = app.admin_get("/v1/admin/sequences").await;
        assert_eq!(all["sequences"][0]["clicks"], 1, "one link clicked: counted once");
        let score = app.admin_get(&format!("/v1/admin/leads/{lead}/score")).await;
        assert!(score["factors"].as_array().unwrap().iter().any(|f| f["rule"] == "clicked-nurture" && f["points"] == 5), "{score}");
    }

    async fn a_skip_condition_skips_a_step_and_the_next_one_follows_on_time(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| {
            // The download alone gives 20 points of engagement (the demo's rules), fading
            // with a 30-day half-life: 19 three days later.
            s.sequences[0].steps[1].skip_when = Some("engagement >= 15".into());
        }).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        let lead = download(&app, &smtp, ADA).await;
        app.advance(3 * DAY);
        app.dispatch().await;
        let e = enrolment(&app, &lead).await;
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped"), ("three", "pending")]));
        let two = &e["steps"][1];
        assert_eq!(two["note"], "skipped: engagement >= 15 held", "{e}");
        // Three days after the skip (Thursday) is a Sunday: step three waits for Monday.
        let due = chrono::DateTime::parse_from_rfc3339(e["steps"][2]["due_at"].as_str().unwrap()).unwrap();
        assert_eq!((due.weekday(), due.hour()), (chrono::Weekday::Mon, 9), "{e}");
        move_to(&app, chrono::Weekday::Mon, 9);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ADA).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one", "Step three"]);
        assert_eq!(enrolment(&app, &lead).await["status"], "finished");
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for line in [
            r#"inlet_sequence_steps_total{outcome="sent",sequence="nurture"} 2"#,
            r#"inlet_sequence_steps_total{outcome="skipped",sequence="nurture"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in:\n{metrics}");
        }
    }

    async fn reaching_sql_or_the_exit_condition_ends_the_sequence(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| {
            // 20 for the download and 5 for a click, faded to 23 three days later.
            s.sequences[0].exit.when = Some("engagement >= 22".into());
            s.scoring.rules.push(clicked_rule());
        }).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        // Ada: sales marks her sales-qualified (the stage move's own transaction ends it).
        let ada = download(&app, &smtp, ADA).await;
        let r = crate::qualification::admin_post(&app, &format!("/v1/admin/leads/{ada}/stage"), &json!({"stage": "sql"})).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let e = enrolment(&app, &ada).await;
        assert_eq!((e["exit_reason"].as_str(), e["exit_detail"].as_str()), (Some("stage"), Some("reached the stage 'sql'")), "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped")]));
        // Ben: a click takes his engagement over 22; the worker's check before step two sees it.
        let ben_mail = "ben@example.org";
        let ben = download(&app, &smtp, ben_mail).await;
        let tracked = link(&step_mail(&smtp, ben_mail, "Step one"), &format!("{}/v1/r/", app.address));
        assert_eq!(app.client.get(&tracked).send().await.unwrap().status(), 302);
        app.dispatch().await;
        app.advance(3 * DAY);
        app.dispatch().await;
        let e = enrolment(&app, &ben).await;
        assert_eq!((e["exit_reason"].as_str(), e["exit_detail"].as_str()), (Some("condition"), Some("engagement >= 22 holds")), "{e}");
        assert_eq!(statuses(&e), map(&[("one", "sent"), ("two", "skipped")]));
        for who in [ADA, ben_mail] {
            let steps: Vec<String> = subjects_to(&smtp, who).into_iter().filter(|s| s.starts_with("Step")).collect();
            assert_eq!(steps, ["Step one"], "{who}");
        }
        let exits = &app.admin_get("/v1/admin/sequences").await["sequences"][0]["exits"];
        assert_eq!((exits["stage"].as_i64(), exits["condition"].as_i64()), (Some(1), Some(1)), "{exits}");
    }

    async fn re_enrolment_follows_the_sequence_policy(backend: Backend) {
        let smtp = SmtpServer::start();
        let once = |id: &str, reenroll| SequenceConfig {
            id: id.into(),
            reenroll,
            window: WindowConfig::default(),
            steps: vec![step("only", "0", &format!("Only {id}"), "x")],
            ..nurture()
        };
        let app = spawn(backend, &smtp, move |s| {
            s.sequences = vec![once("never", Reenroll::Never), once("again", Reenroll::AfterEnd)];
            s.outbox.follow_up_window_secs = 0;
        }).await;
        let lead = download(&app, &smtp, ADA).await;
        // A second download, a day later, from a new submission's own link.
        app.advance(DAY);
        let body = json!({"email": ADA, "name": "Ada", "consent": true});
        let created: Value = app.post_json("whitepaper", &body).await.json().await.unwrap();
        let url = created["download_url"].as_str().expect("a download link").to_string();
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
        app.dispatch().await;
        let body = app.admin_get(&format!("/v1/admin/leads/{lead}/sequences")).await;
        let by: Vec<(String, String)> = body["enrolments"].as_array().unwrap().iter()
            .map(|e| (e["sequence_id"].as_str().unwrap().to_string(), e["status"].as_str().unwrap().to_string())).collect();
        assert_eq!(by, [("never".to_string(), "finished".to_string()), ("again".into(), "finished".into()), ("again".into(), "finished".into())], "{body}");
        assert_eq!(subjects_to(&smtp, ADA).iter().filter(|s| *s == "Only again").count(), 2);
        assert_eq!(subjects_to(&smtp, ADA).iter().filter(|s| *s == "Only never").count(), 1);
    }

    async fn erasing_an_enrolled_lead_removes_the_sequence_and_its_links_stop_working(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        move_to(&app, chrono::Weekday::Mon, 10);
        let lead = download(&app, &smtp, ADA).await;
        let one = step_mail(&smtp, ADA, "Step one");
        let tracked = link(&one, &format!("{}/v1/r/", app.address));
        assert_eq!(app.client.get(&tracked).send().await.unwrap().status(), 302);
        let export = app.admin_get(&format!("/v1/admin/leads/{lead}/export")).await;
        assert_eq!(export["sequences"]["enrolments"][0]["sequence_id"], "nurture", "the access export holds it");
        assert_eq!(export["sequences"]["interactions"][0]["kind"], "click");
        assert_eq!(app.erase(&lead).await.status(), 200);
        let gone = app.client.get(app.url(&format!("/v1/admin/leads/{lead}/sequences"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(gone.status(), 404);
        assert_eq!(app.client.get(&tracked).send().await.unwrap().status(), 404, "the link in the old mail leads nowhere now");
        let all = app.admin_get("/v1/admin/sequences").await;
        assert_eq!(all["sequences"][0]["enrolments"]["active"], 0);
        assert_eq!(all["sequences"][0]["clicks"], 0);
        app.advance(14 * DAY);
        app.dispatch().await;
        let steps: Vec<String> = subjects_to(&smtp, ADA).into_iter().filter(|s| s.starts_with("Step")).collect();
        assert_eq!(steps, ["Step one"]);
    }

    async fn two_instances_never_send_a_step_twice(backend: Backend) {
        let smtp = SmtpServer::start();
        let chain = || SequenceConfig {
            id: "chain".into(),
            enroll: EnrollConfig { on: EnrollOn::Submitted, form: Some("contact".into()), stage: None },
            window: WindowConfig::default(),
            exit: ExitConfig { on_reply: false, ..ExitConfig::default() },
            steps: vec![step("a", "0", "Chain a", "a"), step("b", "0", "Chain b", "b"), step("c", "0", "Chain c", "c")],
            ..nurture()
        };
        let app = spawn(backend, &smtp, |s| s.sequences = vec![chain()]).await;
        let dir = tempfile::tempdir().unwrap();
        let smtp_url = smtp.url();
        let (other, _) = app.second_instance(dir.path(), |s| {
            s.mail.smtp_url = Some(SecretString::from(smtp_url));
            s.mail.from = "Inlet Demo <hello@leads.example.com>".into();
            s.sequences = vec![chain()];
        }).await;
        let people: Vec<String> = (0..12).map(|i| format!("person{i}@example.org")).collect();
        for p in &people {
            assert_eq!(app.post_json("contact", &contact(p)).await.status(), 201);
        }
        let now = app.clock.now_ms();
        let (a, b) = tokio::join!(app.worker.drain(now), other.drain(now));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.sent > 0 && b.sent > 0, "both instances worked: {a:?} {b:?}");
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for m in smtp.received() {
            let subject = m.parsed().subject().unwrap_or_default().to_string();
            if subject.starts_with("Chain") {
                *counts.entry((m.to[0].clone(), subject)).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), people.len() * 3, "every step reached everyone: {counts:?}");
        assert!(counts.values().all(|n| *n == 1), "each step once: {counts:?}");
    }

    async fn a_step_appended_to_a_live_sequence_follows_the_plan_the_cli_printed(backend: Backend) {
        let smtp = SmtpServer::start();
        let v1 = || SequenceConfig {
            id: "grow".into(),
            window: WindowConfig::default(),
            steps: vec![step("a", "0", "Grow a", "a"), step("b", "1d", "Grow b", "b")],
            ..nurture()
        };
        let app = spawn(backend, &smtp, |s| s.sequences = vec![v1()]).await;
        // Ann goes through the whole sequence; Ben is between a and b.
        let ann = "ann@example.org";
        let ben = "ben@example.org";
        download(&app, &smtp, ann).await;
        app.advance(DAY);
        app.dispatch().await;
        download(&app, &smtp, ben).await;
        assert_eq!(subjects_to(&smtp, ann).iter().filter(|s| s.starts_with("Grow")).count(), 2);
        assert_eq!(subjects_to(&smtp, ben).iter().filter(|s| s.starts_with("Grow")).count(), 1);

        // v2 appends step c, and reaches leads who finished.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("v2.toml");
        std::fs::write(&config, r#"
[[sequences]]
id = "grow"
enroll = { on = "downloaded", form = "whitepaper" }
reach_finished = true
[[sequences.steps]]
id = "a"
subject = "Grow a"
text = "a"
[[sequences.steps]]
id = "b"
delay = "1d"
subject = "Grow b"
text = "b"
[[sequences.steps]]
id = "c"
delay = "1d"
subject = "Grow c"
text = "c"
"#).unwrap();
        let run = |apply: bool| {
            let mut args = vec!["--config", config.to_str().unwrap(), "sequences", "plan"];
            if apply {
                args.push("--apply");
            }
            crate::helpers::cli(&args, &app.db.url())
        };
        let out = run(false);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(printed.contains("sequence grow: changed (1 active, 1 finished)"), "{printed}");
        assert!(printed.contains("steps: a, b -> a, b, c"), "{printed}");
        assert!(printed.contains("active enrolments gain: 'c' (1)"), "{printed}");
        assert!(printed.contains("finished enrolments re-open and gain: 'c' (1)"), "{printed}");
        assert_eq!(run(false).stdout, out.stdout, "a plan changes nothing");

        // Inlet restarted with v2 applies it (here: a second instance on the database).
        let smtp_url = smtp.url();
        let (v2, _) = app.second_instance(dir.path(), move |s| {
            s.mail.smtp_url = Some(SecretString::from(smtp_url));
            s.mail.from = "Inlet Demo <hello@leads.example.com>".into();
            s.forms.push({
                let mut demo = s.forms.iter().find(|f| f.id == "contact").unwrap().clone();
                demo.id = "demo".into();
                demo
            });
            s.sequences = vec![SequenceConfig {
                reach_finished: true,
                steps: vec![step("a", "0", "Grow a", "a"), step("b", "1d", "Grow b", "b"), step("c", "1d", "Grow c", "c")],
                ..v1()
            }];
        }).await;
        let printed = String::from_utf8_lossy(&run(false).stdout).to_string();
        assert!(printed.contains("sequence grow: unchanged"), "recorded at startup: {printed}");
        let now = app.clock.now_ms();
        v2.drain(now + 86_400_000 + 60_000).await.unwrap();
        v2.drain(now + 2 * 86_400_000 + 120_000).await.unwrap();
        let grow = |to: &str| -> Vec<String> {
            subjects_to(&smtp, to).into_iter().filter(|s| s.starts_with("Grow")).collect()
        };
        assert_eq!(grow(ann), ["Grow a", "Grow b", "Grow c"], "Ann gains c, as planned");
        assert_eq!(grow(ben), ["Grow a", "Grow b", "Grow c"], "Ben gains c after b, as planned");
        let e = enrolment(&app, &lead_id_of(&app, ann).await).await;
        assert_eq!(e["status"], "finished");
    }
}

/// `kill -9` of a real `inlet serve` while it works through sequences: every enrolled lead
/// still gets every step (duplicates only of what was in flight at a kill).
async fn sigkill_mid_sequence(backend: Backend) {
    let smtp = SmtpServer::start();
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let port = SmtpServer::reserve_port();
    let config = dir.path().join("inlet.toml");
    std::fs::write(
        &config,
        r#"
[[sequences]]
id = "chain"
enroll = { on = "submitted", form = "contact" }
exit = { on_reply = false }
[[sequences.steps]]
id = "a"
subject = "Chain a"
text = "a"
[[sequences.steps]]
id = "b"
subject = "Chain b"
text = "b"
[[sequences.steps]]
id = "c"
subject = "Chain c"
text = "c"
"#,
    )
    .unwrap();
    let env: Vec<(String, String)> = [
        ("INLET_CONFIG", config.to_str().unwrap().to_string()),
        ("DATABASE_URL", db.url()),
        ("INLET_SMTP_URL", smtp.url()),
        ("INLET_BIND", format!("127.0.0.1:{port}")),
        ("INLET_RATE_LIMIT_ENABLED", "false".into()),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR",
            "0".into(),
        ),
        (
            "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR",
            "0".into(),
        ),
        ("INLET_SPAM__BURST", "0".into()),
        ("INLET_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("INLET_OUTBOX_LEASE_MS", "1000".into()),
        ("INLET_MAIL__TIMEOUT_SECS", "1".into()),
        ("INLET_OUTBOX__BATCH_SIZE", "4".into()),
        ("INLET_OUTBOX__CONCURRENCY", "2".into()),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut inlet = spawn_inlet(&env, dir.path()).await;
    let mut people = Vec::new();
    let mut caught = 0;
    for round in 0..3 {
        for i in 0..10 {
            let email = format!("p{round}-{i}@example.org");
            let r = client
                .post(format!("{base}/v1/forms/contact/submissions"))
                .json(&contact(&email))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            people.push(email);
        }
        // Killed while it enrols and sends (somewhere between scheduling and sending).
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 60 + 10)).await;
        inlet.kill().expect("SIGKILL");
        inlet.wait().unwrap();
        let waiting = raw(&db)
            .await
            .count("outbox WHERE kind = 'sequence_step' AND status IN ('pending', 'failed')")
            .await;
        caught += usize::from(waiting > 0);
        inlet = spawn_inlet(&env, dir.path()).await;
    }
    assert!(
        caught > 0,
        "no kill landed between a step's scheduling and its sending"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for m in smtp.received() {
            let subject = m.parsed().subject().unwrap_or_default().to_string();
            if subject.starts_with("Chain") {
                *counts.entry((m.to[0].clone(), subject)).or_default() += 1;
            }
        }
        if counts.len() >= people.len() * 3 || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    inlet.kill().unwrap();
    inlet.wait().unwrap();
    for p in &people {
        for s in ["Chain a", "Chain b", "Chain c"] {
            assert!(
                counts.contains_key(&(p.clone(), s.to_string())),
                "{p} never got '{s}': {} of {} steps arrived\n{}",
                counts.len(),
                people.len() * 3,
                std::fs::read_to_string(dir.path().join("inlet.log"))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 3 * 2 * 2,
        "{duplicates} duplicates: at most what was in flight per kill"
    );
}

mod killed {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_sigkill_between_scheduling_and_sending_loses_no_step() {
        sigkill_mid_sequence(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_sigkill_between_scheduling_and_sending_loses_no_step() {
        if crate::helpers::postgres_available().await {
            sigkill_mid_sequence(Backend::Postgres).await;
        }
    }
}
