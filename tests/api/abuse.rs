//! What a script could do with the public endpoints and the admin API, tried as an attacker
//! would. Engine-independent (the HTTP edge), so each runs on SQLite.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{contact, header, Backend, TestApp, ADMIN_TOKEN};

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn invented_http_methods_do_not_grow_the_metrics_registry() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..200 {
        let method = Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
        let r = app
            .client
            .request(method, app.url("/v1/forms"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = metrics(&app).await;
    assert!(
        !text.contains("PROBE"),
        "a client's method token became a label"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("inlet_http_request_duration_seconds_count"))
        .count();
    assert!(
        series < 10,
        "{series} series after 200 invented methods:\n{text}"
    );
    assert!(
        text.contains("method=\"other\""),
        "they are counted, as `other`"
    );
}

/// A proxy that adds its own `X-Forwarded-For` line (HAProxy's `option forwardfor`) instead of
/// appending to the client's.
#[tokio::test]
async fn a_spoofed_first_forwarded_for_line_does_not_win_over_the_proxys_own() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.trusted_proxies = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
        s.privacy.ip = inlet::domain::IpPrivacy::Full;
        s.rate_limit.enabled = true;
        s.rate_limit.per_ip_per_minute = 1;
        s.rate_limit.per_ip_burst = 1;
    })
    .await;
    let send = |lines: &'static [&'static str], email: &str| {
        let mut req = app
            .client
            .post(app.submissions_url("contact"))
            .json(&contact(email));
        for line in lines {
            req = req.header("x-forwarded-for", *line);
        }
        req.send()
    };
    // The client forged the first line; the (trusted) proxy appended the real address as a
    // second line.
    let r = send(&["203.0.113.66", "198.51.100.7"], "one@example.com")
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Two proxies, each adding a line: the right-most address that is not a trusted proxy is
    // the client's, so a new forged first line buys no new bucket.
    let r = send(
        &["203.0.113.99", "198.51.100.7", "10.1.2.3"],
        "two@example.com",
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        429,
        "same client behind two proxies: one bucket"
    );
    let ips: Vec<Value> = app
        .submissions()
        .await
        .iter()
        .map(|s| s["client_ip"].clone())
        .collect();
    assert_eq!(
        ips,
        ["198.51.100.7"],
        "the proxy's entry, not the forged one, is recorded"
    );
}

#[tokio::test]
async fn the_admin_api_checks_the_credential_before_anything_else() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // A bad parameter tells an unauthenticated caller nothing: 401, not 400.
    for query in ["limit=abc", "since=yesterday", "nope=1", "cursor=%ff"] {
        let r = app
            .client
            .get(app.url(&format!("/v1/admin/leads?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{query}");
        let r = app
            .client
            .get(app.url(&format!("/v1/admin/submissions?{query}")))
            .bearer_auth("wrong-token-of-a-decent-length")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{query} with a wrong token");
    }
    // With the credential, the parameter error is reported.
    let r = app
        .client
        .get(app.url("/v1/admin/leads?limit=abc"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = app
            .client
            .get(app.url("/v1/admin/leads"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = app
        .client
        .get(app.url("/v1/admin/leads"))
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "another scheme is not a bearer token");
}

#[tokio::test]
async fn guessing_the_admin_token_is_throttled_per_client() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let try_token = |token: String| {
        app.client
            .get(app.url("/v1/admin/leads"))
            .bearer_auth(token)
            .send()
    };
    for i in 0..inlet::rate_limit::ADMIN_FAILURES_PER_MINUTE {
        let r = try_token(format!("guess-number-{i:04}-of-many"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = try_token("guess-number-after-the-quota".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = header(r.headers(), "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Refused for a while: the right token does not tell a lucky guess apart now.
    let r = try_token(ADMIN_TOKEN.into()).await.unwrap();
    assert_eq!(
        r.status(),
        429,
        "the right token is refused too while the client is throttled"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
}

#[tokio::test]
async fn a_form_that_requires_an_origin_refuses_scripts_that_send_none() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        let contact = s.forms.iter_mut().find(|f| f.id == "contact").unwrap();
        contact.allowed_origins = vec!["https://shop.example.com".into()];
        contact.require_origin = true;
        let newsletter = s.forms.iter_mut().find(|f| f.id == "newsletter").unwrap();
        newsletter.allowed_origins = vec!["https://shop.example.com".into()];
    })
    .await;
    let post = |form: &str, headers: &[(&str, &str)], email: &str| {
        let mut req = app
            .client
            .post(app.submissions_url(form))
            .json(&contact(email));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for (headers, what) in [
        (&[][..], "neither Origin nor Referer"),
        (
            &[("referer", "https://evil.example.net/shop.example.com")][..],
            "another site's page",
        ),
        (&[("referer", "not a url")][..], "a Referer that is no URL"),
    ] {
        let r = post("contact", headers, "script@example.com")
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "origin_not_allowed", "{what}");
    }
    assert!(app.submissions().await.is_empty(), "nothing stored");
    let from_page = [("referer", "https://shop.example.com/pricing?utm_source=x")];
    assert_eq!(
        post("contact", &from_page, "page@example.com")
            .await
            .unwrap()
            .status(),
        201
    );
    let with_origin = [("origin", "https://shop.example.com")];
    assert_eq!(
        post("contact", &with_origin, "browser@example.com")
            .await
            .unwrap()
            .status(),
        201
    );
    // Without require_origin (the default), a listed origin is enforced only when one is sent.
    assert_eq!(
        post("newsletter", &[], "plain@example.com")
            .await
            .unwrap()
            .status(),
        201
    );
    let other = [("origin", "https://evil.example.net")];
    assert_eq!(
        post("newsletter", &other, "x@example.com")
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn every_answer_tells_browsers_not_to_sniff_its_type() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let created = app
        .post_json("contact", &contact("sniff@example.com"))
        .await;
    assert_eq!(
        header(created.headers(), "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    for path in [
        "/metrics",
        "/v1/forms",
        "/healthz",
        "/v1/admin/leads",
        "/nowhere",
        "/inlet.js",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            header(r.headers(), "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path} ({})",
            r.status()
        );
    }
}

#[tokio::test]
async fn metrics_can_require_their_own_token() {
    const METRICS_TOKEN: &str = "metrics-scraper-token-0123456789";
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.admin.metrics_token = Some(secrecy::SecretString::from(METRICS_TOKEN));
    })
    .await;
    let get = |token: Option<&str>| {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for token in [
        None,
        Some("wrong-token-of-a-decent-length"),
        Some(ADMIN_TOKEN),
    ] {
        let r = get(token).await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        assert!(
            !r.text().await.unwrap().contains("inlet_"),
            "no metric leaks to {token:?}"
        );
    }
    let r = get(Some(METRICS_TOKEN)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("inlet_outbox_messages"));
    // Open by default (a scraper on a private network).
    let open = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(
        open.client
            .get(open.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Sends a request head and the start of its body, then nothing; returns the server's answer.
async fn trickle(
    app: &TestApp,
    path: &str,
    head_extra: &str,
    first: &str,
    declared: usize,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head_extra}Content-Length: {declared}\r\n\r\n{first}"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server held the connection without answering"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_trickles_or_stops_gets_408_and_stores_nothing() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.body_timeout_ms = 300).await;
    let answer = trickle(
        &app,
        "/v1/forms/contact/submissions",
        "Content-Type: application/json\r\n",
        "{\"email\": \"slow",
        400,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(app.submissions().await.is_empty());
    // Another endpoint that takes a body answers without waiting for the rest of it.
    let answer = trickle(
        &app,
        "/v1/unsubscribe/some-token",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "List-Unsub",
        300,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

/// What the public answer shows, minus what differs on every request anyway.
async fn public_answer(resp: reqwest::Response) -> (u16, Vec<String>, Value) {
    let status = resp.status().as_u16();
    let mut headers: Vec<String> = resp
        .headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k != "date" && k != "content-length")
        .collect();
    headers.sort();
    let mut body: Value = resp.json().await.unwrap();
    let id = body["submission_id"].take();
    assert!(id.is_string(), "every answer names its submission");
    (status, headers, body)
}

/// Item 2: a script posting an address cannot learn whether it is new, already a lead,
/// unsubscribed/erased, or whether the post was taken for spam.
#[tokio::test]
async fn the_public_answer_does_not_tell_who_is_a_lead() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // A known lead, and an erased one (erasure puts the address on the suppression list).
    app.post_json("contact", &contact("known@example.com"))
        .await;
    let gone = app.post_json("contact", &contact("gone@example.com")).await;
    let gone_lead = app.lead_of(&gone.json().await.unwrap()).await;
    assert_eq!(app.erase(&gone_lead).await.status(), 200);

    let new = public_answer(app.post_json("contact", &contact("new@example.com")).await).await;
    let known = public_answer(
        app.post_json("contact", &contact("known@example.com"))
            .await,
    )
    .await;
    let suppressed =
        public_answer(app.post_json("contact", &contact("gone@example.com")).await).await;
    let mut bot = contact("bot@example.com");
    bot["_gotcha"] = serde_json::json!("http://spam.example");
    let spam = public_answer(app.post_json("contact", &bot).await).await;

    assert_eq!(new.0, 201);
    assert!(new.2.get("lead_id").is_none(), "no lead id: {:?}", new.2);
    for (what, other) in [
        ("known", &known),
        ("suppressed", &suppressed),
        ("spam", &spam),
    ] {
        assert_eq!(&new, other, "a {what} address is answered differently");
    }
    // The writes did happen, and the admin API tells them apart.
    let subs = app.submissions().await;
    assert_eq!(
        subs.len(),
        5,
        "known twice, new, gone again, the bot (erasure took the first)"
    );
    assert_eq!(subs.iter().filter(|s| s["spam"] == true).count(), 1);
}

/// A post from `client` (behind the trusted local proxy).
async fn post_from(app: &TestApp, client: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.submissions_url("contact"))
        .header("x-forwarded-for", client)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Item 1, the attacker's script: a form without double opt-in, a thousand strangers'
/// addresses from one IPv6 /64 (a different address for each), and an advert in the name.
#[tokio::test]
async fn the_follow_up_is_no_mail_relay_for_strangers_text() {
    use futures::StreamExt;
    let smtp = crate::smtp::SmtpServer::start();
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        crate::consent::with_smtp(s, &smtp);
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        s.rate_limit.unconfirmed_mail_per_network_per_hour = 5;
        s.rate_limit.unconfirmed_mail_per_recipient_per_hour = 3;
        s.outbox.follow_up_window_secs = 0;
    })
    .await;
    let advert = "Cheap pills at http://spam.example";
    let answers: Vec<u16> = futures::stream::iter(0..1000)
        .map(|i| {
            let app = &app;
            async move {
                let mut body = contact(&format!("victim{i}@example.net"));
                body["name"] = serde_json::json!(advert);
                body["message"] = serde_json::json!(advert);
                post_from(app, &format!("2001:db8:7:7:{i:x}::1"), &body)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers.iter().all(|s| *s == 201),
        "every lead is still taken"
    );
    app.dispatch().await;
    let got = smtp.received();
    assert_eq!(got.len(), 5, "the network's cap, not a thousand mails");
    for m in &got {
        let text = m.text();
        assert!(
            !text.contains("spam.example") && !text.contains("pills"),
            "{text}"
        );
    }
    // Every lead is kept, and what happened to each message is visible.
    assert_eq!(
        crate::helpers::raw(&app.db).await.count("leads").await,
        1000
    );
    let metrics = metrics(&app).await;
    assert!(metrics.contains("scope=\"mail_network\"} 995"), "{metrics}");
    let mailed: Vec<String> = got.iter().flat_map(|m| m.to.clone()).collect();
    let held = app
        .submissions()
        .await
        .into_iter()
        .find(|s| !mailed.iter().any(|m| s["email"] == m.as_str()))
        .unwrap();
    let lead = app
        .lead_of(&serde_json::json!({"submission_id": held["id"]}))
        .await;
    let record = app.admin_get(&format!("/v1/admin/leads/{lead}")).await;
    assert_eq!(record["emails"][0]["status"], "skipped", "{record}");
    let reason = record["emails"][0]["last_error"].as_str().unwrap();
    assert!(
        reason.contains("unconfirmed_mail_per_network_per_hour"),
        "{reason}"
    );

    // One victim from many networks: the recipient's own cap.
    for n in 0..5 {
        let r = post_from(
            &app,
            &format!("198.51.{n}.1"),
            &contact("target@example.org"),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    app.dispatch().await;
    let to_target = smtp
        .received()
        .iter()
        .filter(|m| m.to == vec!["target@example.org"])
        .count();
    assert_eq!(to_target, 3);
}

/// Item 1: the person's name reaches an unconfirmed address only when the form opts in.
#[tokio::test]
async fn unconfirmed_follow_ups_carry_no_typed_text_unless_the_form_opts_in() {
    for opt_in in [false, true] {
        let smtp = crate::smtp::SmtpServer::start();
        let app = TestApp::spawn_with(Backend::Sqlite, |s| {
            crate::consent::with_smtp(s, &smtp);
            let contact = s.forms.iter_mut().find(|f| f.id == "contact").unwrap();
            contact.personalize_unconfirmed = opt_in;
        })
        .await;
        let mut body = contact("zed@example.com");
        body["name"] = serde_json::json!("Zed Quixote");
        assert_eq!(app.post_json("contact", &body).await.status(), 201);
        app.dispatch().await;
        let got = smtp.received();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].text().contains("Zed Quixote"),
            opt_in,
            "{}",
            got[0].text()
        );
    }
}

/// Item 1: the per-client limit counts an IPv6 /64 as one client.
#[tokio::test]
async fn rotating_addresses_inside_one_ipv6_64_is_still_one_client() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        s.rate_limit.enabled = true;
        s.rate_limit.per_ip_per_minute = 1;
        s.rate_limit.per_ip_burst = 1;
    })
    .await;
    let first = post_from(&app, "2001:db8:1:2::1", &contact("a@example.com")).await;
    assert_eq!(first.status(), 201);
    let same_64 = post_from(
        &app,
        "2001:db8:1:2:ffff:ffff:ffff:fffe",
        &contact("b@example.com"),
    )
    .await;
    assert_eq!(same_64.status(), 429);
    let other_64 = post_from(&app, "2001:db8:1:3::1", &contact("c@example.com")).await;
    assert_eq!(other_64.status(), 201);
}

/// Item 8: one client cannot hold more than its share of connections by trickling bodies.
#[tokio::test]
async fn one_client_may_trickle_only_a_few_bodies_at_once() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.body_timeout_ms = 1500;
        s.server.max_body_reads_per_client = 2;
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = "POST /v1/forms/contact/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                    Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"email\"";
        conn.write_all(head.as_bytes()).await.unwrap();
        held.push(conn);
    }
    // Let the server read both heads (a wait for it to catch up, not a timing assertion).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let third = trickle(
        &app,
        "/v1/forms/contact/submissions",
        "Content-Type: application/json\r\n",
        "{\"email\"",
        400,
    )
    .await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    let text = metrics(&app).await;
    assert!(text.contains("scope=\"body_reads\"} 1"), "{text}");
    // Once the held bodies time out (or their connections close), the client may send again.
    drop(held);
    assert_eq!(
        app.post_until_created("contact", &contact("after@example.com"))
            .await,
        201
    );
}
