//! Consent and delivery, end to end with a real SMTP server: double opt-in, signed downloads,
//! one-click unsubscribe (RFC 8058), suppression, GDPR export and erasure, retention, and
//! header injection. Links are always taken from the received messages.

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, ADMIN_TOKEN};
use crate::smtp::{Received, SmtpServer};

pub fn with_smtp(s: &mut inlet::config::Settings, smtp: &SmtpServer) {
    s.mail.smtp_url = Some(SecretString::from(smtp.url()));
    s.mail.from = "Inlet Demo <hello@leads.example.com>".into();
    s.mail.timeout_secs = 5;
}

async fn spawn(
    backend: Backend,
    smtp: &SmtpServer,
    more: impl FnOnce(&mut inlet::config::Settings),
) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        with_smtp(s, smtp);
        more(s);
    })
    .await
}

/// The first link in a message's text part that starts with `prefix`.
pub fn link(m: &Received, prefix: &str) -> String {
    let parsed = m.parsed();
    let text = parsed.body_text(0).expect("a text part").into_owned();
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"));
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .next()
        .unwrap()
        .to_string()
}

fn subject(m: &Received) -> String {
    m.parsed().subject().unwrap_or_default().to_string()
}

pub fn header(m: &Received, name: &str) -> Option<String> {
    m.parsed()
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| {
            let raw = h.value().as_text().map(String::from).unwrap_or_else(|| {
                String::from_utf8_lossy(&m.data[h.offset_start() as usize..h.offset_end() as usize])
                    .to_string()
            });
            // Unfold (RFC 5322: a long header may continue on lines starting with whitespace).
            raw.split_whitespace().collect::<Vec<_>>().join(" ")
        })
}

async fn export(app: &TestApp, lead_id: &str) -> Value {
    app.admin_get(&format!("/v1/admin/leads/{lead_id}/export"))
        .await
}

pub async fn post_form_url(app: &TestApp, url: &str, body: &str) -> reqwest::Response {
    app.client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "ConsentTest/1.0")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn tamper(url: &str) -> String {
    let last = url.chars().last().unwrap();
    let swapped = if last == 'A' { 'B' } else { 'A' };
    format!("{}{swapped}", &url[..url.len() - 1])
}

/// What a suppression entry was before the list was keyed: a plain SHA-256 anyone can
/// compute for an address they want to test.
fn unkeyed(email: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        format!("inlet-suppression:{email}").as_bytes(),
    ))
}

const SIGNING_KEY: &str = "link signing key for the tests 0123456789";

const SUPPRESSION_KEY: &str = "suppression key for the tests 0123456789";

both_backends! {
    async fn double_opt_in_sends_nothing_but_the_link_until_the_person_confirms(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        let body = json!({"email": "dee@example.com", "name": "Dee, visit http://spam.example NOW"});
        let resp = app.post_json("newsletter", &body).await;
        assert_eq!(resp.status(), 201);
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["confirmation_required"], true);
        let lead_id = app.lead_of(&created).await;
        app.dispatch().await;
        let got = smtp.received();
        assert_eq!(got.len(), 1, "only the confirmation");
        assert_eq!(got[0].to, vec!["dee@example.com"]);
        assert_eq!(subject(&got[0]), "Please confirm your address");
        let text = got[0].text();
        assert!(text.contains("dee@example.com"));
        assert!(!text.contains("spam.example") && !text.contains("Dee,"), "nothing the person typed but the address");
        assert!(header(&got[0], "List-Unsubscribe").is_none(), "a confirmation is not marketing");
        let confirm = link(&got[0], &format!("{}/v1/confirm/", app.address));

        // Following the link (as a mail scanner would) shows a button and confirms nothing.
        let page = app.client.get(&confirm).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("method=\"post\"") && html.contains("Yes, confirm"), "{html}");
        let record = export(&app, &lead_id).await;
        assert_eq!(record["submissions"][0]["confirmation"], "pending");
        assert_eq!(app.dispatch().await.sent, 0, "no follow-up before confirmation");

        // Signing up again while pending does not re-send within the window.
        assert_eq!(app.post_json("newsletter", &json!({"email": "dee@example.com"})).await.status(), 201);
        app.dispatch().await;
        assert_eq!(smtp.received().len(), 1, "confirmation re-sent at most once per window");

        // The button: confirmed, recorded, and now the follow-up goes out.
        let done = post_form_url(&app, &confirm, "").await;
        assert_eq!(done.status(), 200);
        let html = done.text().await.unwrap();
        assert!(html.contains("you are confirmed") && html.contains("you are subscribed"), "{html}");
        assert!(!html.contains("Please confirm"), "the page no longer asks to confirm: {html}");
        app.dispatch().await;
        let got = smtp.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].to, vec!["dee@example.com"]);
        assert_eq!(subject(&got[1]), "Welcome aboard");
        assert!(!got[1].text().contains("Please confirm"), "{}", got[1].text());
        assert!(got[1].text().contains("you are subscribed"), "{}", got[1].text());
        assert!(header(&got[1], "List-Unsubscribe").is_some());
        let record = export(&app, &lead_id).await;
        let first = record["submissions"].as_array().unwrap().iter()
            .find(|s| s["confirmation"] == "confirmed").expect("a confirmed submission").clone();
        assert!(first["confirmed_at_ms"].as_i64().unwrap() > 0);
        let ledger = record["consents"].as_array().unwrap();
        let optin = ledger.iter().find(|c| c["kind"] == "double_opt_in").expect("ledger entry");
        assert_eq!(optin["user_agent"], "ConsentTest/1.0");
        assert_eq!(optin["client_ip"], "127.0.0.0", "IP kept as the privacy setting says (truncated)");

        // Reused, tampered: refused with a clear page; nothing sent twice.
        let again = post_form_url(&app, &confirm, "").await;
        assert_eq!(again.status(), 409);
        assert!(again.text().await.unwrap().contains("already used"));
        for bad in [tamper(&confirm), confirm.replace("/v1/confirm/c.", "/v1/confirm/d.")] {
            let r = post_form_url(&app, &bad, "").await;
            assert_eq!(r.status(), 400, "{bad}");
            assert!(r.text().await.unwrap().contains("This link is not valid"));
            assert_eq!(app.client.get(&bad).send().await.unwrap().status(), 400);
        }
        app.dispatch().await;
        assert_eq!(smtp.received().len(), 2);
    }

    async fn an_expired_confirmation_link_confirms_nothing(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| s.consent.confirm_ttl_secs = 1).await;
        assert_eq!(app.post_json("newsletter", &json!({"email": "late@example.com"})).await.status(), 201);
        app.dispatch().await;
        let confirm = link(&smtp.received()[0], &format!("{}/v1/confirm/", app.address));
        app.advance(std::time::Duration::from_secs(2));
        let page = app.client.get(&confirm).send().await.unwrap();
        assert_eq!(page.status(), 410);
        assert!(page.text().await.unwrap().contains("expired"));
        assert_eq!(post_form_url(&app, &confirm, "").await.status(), 410);
        assert_eq!(app.dispatch().await.sent, 0);
        let subs = app.submissions().await;
        assert_eq!(subs[0]["confirmation"], "pending");
    }

    async fn the_download_link_from_the_email_serves_the_exact_file_with_ranges_and_is_counted(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |_| {}).await;
        let pdf = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/snippet/demo/whitepaper.pdf")).unwrap();
        let resp = app.post_json("whitepaper", &json!({"email": "reader@example.com", "name": "Reader", "consent": true})).await;
        assert_eq!(resp.status(), 201);
        let created: Value = resp.json().await.unwrap();
        let lead_id = app.lead_of(&created).await;
        assert!(created["download_url"].as_str().unwrap().starts_with(&format!("{}/v1/downloads/", app.address)));
        app.dispatch().await;
        let got = smtp.received();
        assert_eq!(got.len(), 1);
        assert!(header(&got[0], "List-Unsubscribe-Post").is_some());
        let url = link(&got[0], &format!("{}/v1/downloads/", app.address));

        let full = app.client.get(&url).send().await.unwrap();
        assert_eq!(full.status(), 200);
        assert_eq!(full.headers()["content-type"], "application/pdf");
        assert_eq!(full.headers()["content-disposition"], "attachment; filename=\"whitepaper.pdf\"");
        assert_eq!(full.bytes().await.unwrap().to_vec(), pdf);
        let head = app.client.get(&url).header("range", "bytes=0-99").send().await.unwrap();
        assert_eq!(head.status(), 206);
        assert_eq!(head.headers()["content-range"], format!("bytes 0-99/{}", pdf.len()));
        assert_eq!(head.bytes().await.unwrap().to_vec(), pdf[..100].to_vec());
        let rest = app.client.get(&url).header("range", "bytes=100-").send().await.unwrap();
        assert_eq!(rest.status(), 206);
        assert_eq!(rest.bytes().await.unwrap().to_vec(), pdf[100..].to_vec());
        let bad = app.client.get(&url).header("range", "bytes=99999-").send().await.unwrap();
        assert_eq!(bad.status(), 416);

        let record = export(&app, &lead_id).await;
        assert_eq!(record["downloads"][0]["download_count"], 2, "the full GET and the range from 0; the continuation is not another download");
        let checkbox = record["consents"].as_array().unwrap().iter().find(|c| c["kind"] == "checkbox").unwrap().clone();
        assert_eq!(checkbox["field"], "consent");
        assert_eq!(checkbox["text"], "I agree to receive the whitepaper and related emails");
        assert!(checkbox["text_version"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(app.client.get(tamper(&url)).send().await.unwrap().status(), 400);
    }

    async fn download_assets_come_from_the_downloads_folder_or_redirect_to_a_url(backend: Backend) {
        let smtp = SmtpServer::start();
        let files = tempfile::tempdir().unwrap();
        let ebook: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(files.path().join("ebook.pdf"), &ebook).unwrap();
        let folder = files.path().to_path_buf();
        let app = spawn(backend, &smtp, move |s| {
            s.consent.downloads_dir = Some(folder);
            let mut ebook_form = s.forms[2].clone();
            ebook_form.id = "ebook".into();
            ebook_form.download_file = Some("ebook.pdf".into());
            let mut cdn = s.forms[2].clone();
            cdn.id = "cdn".into();
            cdn.download_file = None;
            cdn.download_url = Some("https://cdn.example.com/guide.pdf".into());
            s.forms.extend([ebook_form, cdn]);
        }).await;
        let body = json!({"email": "files@example.com", "name": "F", "consent": true});
        let url = app.post_json("ebook", &body).await.json::<Value>().await.unwrap()["download_url"].as_str().unwrap().to_string();
        let full = app.client.get(&url).send().await.unwrap();
        assert_eq!(full.status(), 200);
        assert_eq!(full.headers()["content-type"], "application/pdf");
        assert!(full.headers()["content-disposition"].to_str().unwrap().contains("ebook.pdf"));
        assert_eq!(full.bytes().await.unwrap().to_vec(), ebook);
        let part = app.client.get(&url).header("range", "bytes=4000-4999").send().await.unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.bytes().await.unwrap().to_vec(), ebook[4000..].to_vec());

        let url = app.post_json("cdn", &body).await.json::<Value>().await.unwrap()["download_url"].as_str().unwrap().to_string();
        let redirect = app.client.get(&url).send().await.unwrap();
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.headers()["location"], "https://cdn.example.com/guide.pdf");
        let lead = app.leads().await[0]["id"].as_str().unwrap().to_string();
        let counts: Vec<i64> = export(&app, &lead).await["downloads"].as_array().unwrap().iter().map(|d| d["download_count"].as_i64().unwrap()).collect();
        assert_eq!(counts, vec![1, 1], "the file (its continuation range not counted) and the redirect");
    }

    async fn an_expired_download_link_offers_a_fresh_one_by_email_within_a_window(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| {
            s.consent.signing_keys = vec![SecretString::from(SIGNING_KEY)];
        })
        .await;
        let resp = app.post_json("whitepaper", &json!({"email": "slow@example.com", "name": "Slow", "consent": true})).await;
        let submission = resp.json::<Value>().await.unwrap()["submission_id"].as_str().unwrap().to_string();
        // Links as Inlet signed them, expired two days and a hundred days ago (no sleeping).
        let expired = |days: u64| {
            let when = app.clock.now_secs() - days * 86_400;
            let token = inlet::consent::Signer::new([SIGNING_KEY.as_bytes()])
                .sign(inlet::consent::LinkKind::Download, &submission, when);
            format!("{}/v1/downloads/{token}", app.address)
        };
        let (url, too_old) = (expired(2), expired(100));

        let page = app.client.get(&too_old).send().await.unwrap();
        assert_eq!(page.status(), 410);
        let html = page.text().await.unwrap();
        assert!(html.contains("too old to renew") && !html.contains("resend"), "{html}");
        let refused = post_form_url(&app, &format!("{too_old}/resend"), "").await;
        assert_eq!(refused.status(), 410, "past the renewal window nothing is mailed");

        let page = app.client.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 410);
        let html = page.text().await.unwrap();
        assert!(html.contains("Send me a fresh link") && html.contains("resend\""), "{html}");
        let resend = post_form_url(&app, &format!("{url}/resend"), "").await;
        assert_eq!(resend.status(), 202);
        assert_eq!(post_form_url(&app, &format!("{url}/resend"), "").await.status(), 429, "once per window");
        app.dispatch().await;
        let got = smtp.received();
        let fresh = got.iter().find(|m| subject(m) == "Your new download link").expect("the fresh link");
        assert_eq!(fresh.to, vec!["slow@example.com"], "to the lead, not whoever clicked");
        assert!(header(fresh, "List-Unsubscribe").is_some());
        let fresh_url = link(fresh, &format!("{}/v1/downloads/", app.address));
        assert_ne!(fresh_url, url);
        assert_eq!(app.client.get(&fresh_url).send().await.unwrap().status(), 200);
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 410, "the old link stays expired");
    }

    async fn unsubscribe_links_in_sent_mail_survive_rotating_every_signing_key(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| {
            s.consent.signing_keys = vec![SecretString::from(SIGNING_KEY)];
        })
        .await;
        let resp = app.post_json("contact", &crate::helpers::contact("rotate@example.com")).await;
        let lead_id = app.lead_of(&resp.json::<Value>().await.unwrap()).await;
        app.dispatch().await;
        let path = link(&smtp.received()[0], &format!("{}/v1/unsubscribe/", app.address))
            .replace(&app.address, "");

        // The same database served with a new key only: the old key is gone from the config.
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::helpers::test_settings(&app.db, dir.path());
        with_smtp(&mut settings, &smtp);
        settings.consent.signing_keys = vec![SecretString::from("a brand new signing key 0123456789abc")];
        let rotated = inlet::startup::Application::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", rotated.port());
        let handle = rotated.handle();
        tokio::spawn(rotated.run_until_stopped());

        let done = post_form_url(&app, &format!("{base}{path}"), "List-Unsubscribe=One-Click").await;
        assert_eq!(done.status(), 200, "the way out in an old mail still works");
        assert_eq!(export(&app, &lead_id).await["suppressed"], true);
        // A link of another kind signed with the removed key does not.
        let token = inlet::consent::Signer::new([SIGNING_KEY.as_bytes()])
            .sign(inlet::consent::LinkKind::Download, "anything", 0);
        let old = app.client.get(format!("{base}/v1/downloads/{token}")).send().await.unwrap();
        assert_eq!(old.status(), 400, "{}", old.text().await.unwrap());
        handle.stop(true).await;
    }

    async fn one_click_unsubscribe_suppresses_and_get_does_not(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| s.outbox.follow_up_window_secs = 0).await;
        let resp = app.post_json("contact", &crate::helpers::contact("leave@example.com")).await;
        let lead_id = app.lead_of(&resp.json::<Value>().await.unwrap()).await;
        app.dispatch().await;
        let got = smtp.received();
        assert_eq!(got.len(), 1);
        let list = header(&got[0], "List-Unsubscribe").expect("List-Unsubscribe");
        let https = format!("{}/v1/unsubscribe/", app.address);
        assert!(list.starts_with(&format!("<{https}")), "{list}");
        assert!(list.contains(", <mailto:unsubscribe@leads.example.com?subject=unsubscribe%20u."), "{list}");
        assert_eq!(header(&got[0], "List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        let url = link(&got[0], &https);
        assert!(list.contains(&url), "the body's link is the header's link");
        let html = got[0].parsed().body_html(0).unwrap().into_owned();
        assert!(html.contains("Unsubscribe</a>"), "a visible link in the HTML part");

        let page = app.client.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Nothing changes until you click"));
        assert_eq!(export(&app, &lead_id).await["suppressed"], false, "GET does not unsubscribe");

        // Exactly what a mailbox provider sends (RFC 8058).
        let done = post_form_url(&app, &url, "List-Unsubscribe=One-Click").await;
        assert_eq!(done.status(), 200);
        assert!(done.headers().get("location").is_none() && done.headers().get("set-cookie").is_none());
        let record = export(&app, &lead_id).await;
        assert_eq!(record["suppressed"], true);
        assert!(record["consents"].as_array().unwrap().iter().any(|c| c["kind"] == "unsubscribe"));
        assert_eq!(post_form_url(&app, &url, "List-Unsubscribe=One-Click").await.status(), 200, "idempotent");

        // Later submissions by the address are stored but not mailed.
        assert_eq!(app.post_json("contact", &crate::helpers::contact("leave@example.com")).await.status(), 201);
        assert_eq!(app.post_json("whitepaper", &json!({"email": "leave@example.com", "name": "L", "consent": true})).await.status(), 201);
        app.dispatch().await;
        assert_eq!(smtp.received().len(), 1, "nothing more sent");
        let messages = export(&app, &lead_id).await["messages"].as_array().unwrap().clone();
        let skipped: Vec<_> = messages.iter().filter(|m| m["status"] == "skipped").collect();
        assert_eq!(skipped.len(), 2);
        assert!(skipped.iter().all(|m| m["last_error"].as_str().unwrap().contains("suppression list")));
        assert_eq!(app.leads().await.len(), 1, "still stored");
    }

    async fn erasure_leaves_no_trace_of_the_address_and_keeps_it_suppressed(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| {
            s.outbox.follow_up_window_secs = 0;
            s.forms[1].notify = vec!["sales@example.com".into()];
        }).await;
        let email = "xyzzy.plugh@example.com";
        let r = app.post_json("newsletter", &json!({"email": email, "name": "Xyzzy Plugh"})).await;
        let lead_id = app.lead_of(&r.json::<Value>().await.unwrap()).await;
        app.dispatch().await;
        let confirm = link(&smtp.received()[0], &format!("{}/v1/confirm/", app.address));
        assert_eq!(post_form_url(&app, &confirm, "").await.status(), 200);
        let mut contact = crate::helpers::contact(email);
        contact["name"] = json!("Xyzzy Plugh");
        contact["message"] = json!("Please call xyzzy at home");
        assert_eq!(app.post_json("contact", &contact).await.status(), 201);
        let dl = app.post_json("whitepaper", &json!({"email": email, "name": "Xyzzy", "consent": true})).await;
        let dl_url = dl.json::<Value>().await.unwrap()["download_url"].as_str().unwrap().to_string();
        assert_eq!(app.client.get(&dl_url).send().await.unwrap().status(), 200);
        app.dispatch().await;
        assert!(scan(&app, "xyzzy").await > 0, "the scan finds the data before erasure");

        let erased = app.client.delete(app.url(&format!("/v1/admin/leads/{lead_id}"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(erased.status(), 200);
        let body: Value = erased.json().await.unwrap();
        assert_eq!(body["submissions_removed"], 3);
        assert_eq!(scan(&app, "xyzzy").await, 0, "no trace in any text column of any table");
        let gone = app.client.get(app.url(&format!("/v1/admin/leads/{lead_id}/export"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(gone.status(), 404);
        assert_eq!(app.client.get(&dl_url).send().await.unwrap().status(), 404, "the download went with it");
        let again = app.client.delete(app.url(&format!("/v1/admin/leads/{lead_id}"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(again.status(), 404);

        // The address stays suppressed: a new submission is stored, not mailed (the owner still
        // hears about it).
        let before = smtp.received().len();
        assert_eq!(app.post_json("contact", &crate::helpers::contact(email)).await.status(), 201);
        app.dispatch().await;
        let after = smtp.received();
        assert_eq!(after.len(), before + 1);
        assert_eq!(after.last().unwrap().to, vec!["sales@example.com"]);
    }

    async fn header_injection_in_any_field_that_reaches_an_email_never_adds_a_header(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| s.forms[1].notify = vec!["sales@example.com".into()]).await;
        let attacks = ["x\r\nBcc: evil@example.net", "x\nBcc: evil@example.net", "x\rSubject: pwned", "x\u{2028}Bcc: evil@example.net"];
        for field in ["name", "company", "phone", "email"] {
            for attack in attacks {
                let mut body = crate::helpers::contact("victim@example.com");
                body[field] = json!(attack);
                let r = app.post_json("contact", &body).await;
                assert_eq!(r.status(), 422, "{field}: {attack:?}");
            }
        }
        // The same through a urlencoded body.
        let r = app.post_form("contact", "name=x%0D%0ABcc%3A+evil%40example.net&email=v%40example.com&_elapsed_ms=5000").await;
        assert_eq!(r.status(), 422);
        // Multi-line fields may hold line breaks: they reach a body, never a header.
        let mut body = crate::helpers::contact("victim@example.com");
        body["message"] = json!("hello\r\nBcc: evil@example.net\r\nSubject: pwned\r\n\r\nbye");
        assert_eq!(app.post_json("contact", &body).await.status(), 201);
        for form in ["newsletter", "whitepaper"] {
            let r = app.post_json(form, &json!({"email": "victim@example.com", "name": "x\r\nBcc: evil@example.net", "consent": true})).await;
            assert_eq!(r.status(), 422, "{form}");
        }
        app.dispatch().await;
        let got = smtp.received();
        assert_eq!(got.len(), 2, "follow-up and owner notification");
        for m in &got {
            assert!(!m.to.iter().any(|t| t.contains("evil")), "envelope: {:?}", m.to);
            let parsed = m.parsed();
            assert!(parsed.bcc().is_none(), "no Bcc header");
            assert!(!subject(m).contains("pwned"));
            let headers = String::from_utf8_lossy(&m.data[..m.data.windows(4).position(|w| w == b"\r\n\r\n").unwrap()]).to_string();
            assert!(!headers.contains("evil@example.net"), "{headers}");
        }
    }

    async fn retention_deletes_old_spam_and_unconfirmed_sign_ups_and_clears_ips(backend: Backend) {
        let smtp = SmtpServer::start();
        let app = spawn(backend, &smtp, |s| s.privacy.ip = inlet::domain::IpPrivacy::Full).await;
        let mut spam = crate::helpers::contact("bot@example.com");
        spam["_gotcha"] = json!("http://spam.example");
        assert_eq!(app.post_json("contact", &spam).await.status(), 201);
        assert_eq!(app.post_json("newsletter", &json!({"email": "never@example.com"})).await.status(), 201);
        assert_eq!(app.post_json("contact", &crate::helpers::contact("kept@example.com")).await.status(), 201);
        assert_eq!(app.submissions().await.len(), 3);

        let store = inlet::store::LeadStore::connect(&inlet::config::DatabaseSettings {
            url: SecretString::from(app.db.url()),
            ..Default::default()
        }, None).await.unwrap();
        let day = 86_400_000;
        let now = app.clock.now_ms();
        let settings = inlet::config::RetentionSettings::default();
        let r = store.apply_retention(now + day, &settings).await.unwrap();
        assert_eq!(r, inlet::store::RetentionReport::default(), "nothing is due after a day");
        let r = store.apply_retention(now + 31 * day, &settings).await.unwrap();
        assert_eq!((r.spam_submissions_deleted, r.unconfirmed_submissions_deleted, r.leads_deleted), (1, 1, 2));
        let left = app.submissions().await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["email"], "kept@example.com");
        assert_eq!(left[0]["client_ip"], "127.0.0.1");
        let r = store.apply_retention(now + 91 * day, &settings).await.unwrap();
        assert_eq!(r.ips_cleared, 1);
        assert!(app.submissions().await[0]["client_ip"].is_null());
        assert_eq!(scan(&app, "bot@example.com").await + scan(&app, "never@example.com").await, 0);
        store.close().await;
    }

    async fn the_suppression_list_is_keyed_migrated_and_its_key_cannot_silently_change(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.privacy.suppression_key = Some(SecretString::from(SUPPRESSION_KEY));
        })
        .await;
        let mut db = crate::helpers::raw(&app.db).await;

        // A list written before keying: one plain hash, no key recorded yet.
        let old = app.post_json("contact", &crate::helpers::contact("old@example.com")).await;
        let old_lead = app.lead_of(&old.json().await.unwrap()).await;
        db.exec(&format!(
            "DELETE FROM signing_keys WHERE id = 'suppression-fingerprint'; \
             INSERT INTO suppressions (email_hash, reason, created_at) \
             VALUES ('{}', 'unsubscribed', 0)",
            unkeyed("old@example.com")
        ))
        .await;
        let store = inlet::store::LeadStore::connect(
            &inlet::config::DatabaseSettings { url: SecretString::from(app.db.url()), ..Default::default() },
            Some(SUPPRESSION_KEY.as_bytes()),
        )
        .await
        .unwrap();
        let record = store.export_lead(&old_lead).await.unwrap().unwrap();
        assert_eq!(record["suppressed"], true, "the old entry still matches after re-keying");
        assert_eq!(
            db.strings("SELECT email_hash FROM suppressions").await,
            vec![store.suppression_hash("old@example.com")]
        );
        store.close().await;

        // New entries are keyed: a dump of the list does not answer "is this address on it".
        let gone = app.post_json("contact", &crate::helpers::contact("gone@example.com")).await;
        let gone_lead = app.lead_of(&gone.json().await.unwrap()).await;
        assert_eq!(app.erase(&gone_lead).await.status(), 200);
        let hashes = db.strings("SELECT email_hash FROM suppressions").await;
        assert_eq!(hashes.len(), 2);
        for email in ["old@example.com", "gone@example.com"] {
            assert!(!hashes.contains(&unkeyed(email)), "{email} is testable from a dump");
        }

        // Another key would silently unsuppress everyone: refused, naming the setting.
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::helpers::test_settings(&app.db, dir.path());
        settings.privacy.suppression_key = Some(SecretString::from("a different key, 0123456789abcdef"));
        let err = inlet::startup::Application::build(settings).await.err().expect("refused");
        assert!(err.to_string().contains("INLET_SUPPRESSION_KEY"), "{err}");
    }
}

/// How many text cells, in every table of the database, contain `needle` (case-insensitive).
async fn scan(app: &TestApp, needle: &str) -> i64 {
    let pattern = format!("%{}%", needle.to_lowercase());
    // The same count on either driver's pool, for every (table, column).
    macro_rules! count_hits {
        ($pool:expr, $columns:expr) => {{
            let columns: Vec<(String, String)> = $columns;
            assert!(columns.len() > 20, "the scan sees the schema: {columns:?}");
            let mut hits = 0;
            for (table, column) in columns {
                let sql = format!(
                    "SELECT COUNT(*) FROM {table} WHERE LOWER(CAST({column} AS TEXT)) LIKE $1"
                );
                let (n,): (i64,) = sqlx::query_as(&sql)
                    .bind(&pattern)
                    .fetch_one(&$pool)
                    .await
                    .unwrap();
                hits += n;
            }
            $pool.close().await;
            hits
        }};
    }
    if app.db.url().starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
        let columns = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        count_hits!(pool, columns)
    } else {
        let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&pool)
                .await
                .unwrap();
        let mut columns = Vec::new();
        for (t,) in tables {
            let cols: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{t}')"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            // Every column: SQLite stores any value in any column.
            columns.extend(cols.into_iter().map(|(c,)| (t.clone(), c)));
        }
        count_hits!(pool, columns)
    }
}
