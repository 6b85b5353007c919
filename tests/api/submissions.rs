//! The submission endpoint's happy paths and the behaviours around them.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{contact, header, Backend, TestApp};

both_backends! {
    async fn json_submission_returns_201_with_ids_and_stores_the_lead(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.post_json("contact", &contact("Ann@Example.COM")).await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        assert!(body["submission_id"].is_string());
        assert!(body.get("lead_id").is_none(), "the public answer names no lead");
        let lead_id = app.lead_of(&body).await;

        let leads = app.leads().await;
        assert_eq!(leads.len(), 1);
        assert_eq!(leads[0]["id"], lead_id);
        assert_eq!(leads[0]["email"], "ann@example.com", "email is normalised");
        let sub = &leads[0]["latest_submission"];
        assert_eq!(sub["form_id"], "contact");
        assert_eq!(sub["fields"]["name"], "Ann Example");
        assert_eq!(sub["fields"]["company"], "Example Ltd");
        assert_eq!(sub["spam"], false);
    }

    async fn a_lead_is_unique_per_normalised_email(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let a: Value = app.post_json("contact", &contact("ann@example.com")).await.json().await.unwrap();
        let b: Value = app
            .post_json("newsletter", &json!({"email": "  ANN@example.com ", "_elapsed_ms": 9000}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(app.lead_of(&a).await, app.lead_of(&b).await);
        assert_ne!(a["submission_id"], b["submission_id"]);
        let leads = app.leads().await;
        assert_eq!(leads.len(), 1);
        assert_eq!(leads[0]["submission_count"], 2);
        assert_eq!(leads[0]["latest_submission"]["form_id"], "newsletter");
        assert_eq!(app.submissions().await.len(), 2);
    }

    async fn internationalised_domains_are_stored_as_a_labels(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.post_json("newsletter", &json!({"email": "jo@Bücher.de"})).await;
        assert_eq!(resp.status(), 201);
        assert_eq!(app.leads().await[0]["email"], "jo@xn--bcher-kva.de");
    }

    async fn plain_form_post_redirects_303_to_the_thank_you_page(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.post_form("contact", "name=Bob+Smith&email=bob%40example.org&message=Hi%0D%0Athere").await;
        assert_eq!(resp.status(), 303);
        let location = header(resp.headers(), "location").unwrap();
        assert_eq!(location, "/thanks?form=contact");
        let page = app.client.get(app.url(&location)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("We will get back to you"));
        let leads = app.leads().await;
        assert_eq!(leads[0]["latest_submission"]["fields"]["message"], "Hi\nthere");
    }

    async fn the_thank_you_page_links_back_to_the_page_the_form_was_on_and_nowhere_else(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let landing = "https://landing.example.com/offer?utm_source=news&x=1";
        let resp = app.client.post(app.submissions_url("contact"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .header("referer", landing)
            .body("name=Bob&email=bob%40example.org&_elapsed_ms=5000")
            .send().await.unwrap();
        assert_eq!(resp.status(), 303);
        let location = header(resp.headers(), "location").unwrap();
        assert!(location.starts_with("/thanks?form=contact&back="), "{location}");
        let page = app.client.get(app.url(&location)).send().await.unwrap().text().await.unwrap();
        // minijinja escapes `/` too; a browser reads the same URL.
        let href = "href=\"https:&#x2f;&#x2f;landing.example.com&#x2f;offer?utm_source=news&amp;x=1\"";
        assert!(page.contains(href), "{page}");
        assert!(page.contains("Back to the page"));
        // A crafted link names another page, or reuses a signature for another page: no link.
        let sig = location.split("&sig=").nth(1).unwrap();
        for forged in [
            "/thanks?form=contact&back=https%3A%2F%2Fevil.example%2F&sig=0000.AAAA".to_string(),
            format!("/thanks?form=contact&back=https%3A%2F%2Fevil.example%2F&sig={sig}"),
            "/thanks?form=contact&back=https%3A%2F%2Fevil.example%2F".to_string(),
        ] {
            let page = app.client.get(app.url(&forged)).send().await.unwrap().text().await.unwrap();
            assert!(!page.contains("evil.example") && !page.contains("Back to the page"), "{forged}: {page}");
        }
    }

    async fn the_no_js_error_page_names_fields_by_their_labels(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.post_form("whitepaper", "email=nope&name=N&_elapsed_ms=5000").await;
        assert_eq!(resp.status(), 422);
        let page = resp.text().await.unwrap();
        assert!(page.contains("<strong>Work email</strong>: is not a valid email address"), "{page}");
        assert!(page.contains("<strong>I agree to receive the whitepaper and related emails</strong>: must be checked"), "{page}");
        assert!(!page.contains("<strong>consent</strong>") && !page.contains("<strong>email</strong>"), "{page}");
    }

    async fn plain_form_post_uses_the_forms_redirect_url(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.forms[1].redirect_url = Some("https://example.com/thanks".into());
        }).await;
        let resp = app.post_form("contact", "name=Bob&email=bob%40example.org").await;
        assert_eq!(resp.status(), 303);
        assert_eq!(header(resp.headers(), "location").unwrap(), "https://example.com/thanks");
    }

    async fn plain_form_post_with_errors_gets_a_readable_page_not_json(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app
            .client
            .post(app.submissions_url("contact"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .header("referer", "https://landing.example.com/page?x=\"><script>")
            .body("name=%3Cscript%3Ealert(1)%3C%2Fscript%3E%0A&email=nope")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422);
        assert!(header(resp.headers(), "content-type").unwrap().starts_with("text/html"));
        let page = resp.text().await.unwrap();
        assert!(page.contains("Please check the form"));
        assert!(page.contains("is not a valid email address"));
        assert!(!page.contains("<script>"), "user data is escaped in HTML");
        assert!(page.contains("Go back and try again"));
        assert!(app.submissions().await.is_empty());
    }

    async fn urlencoded_with_accept_json_gets_json_answers(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app
            .client
            .post(app.submissions_url("newsletter"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body("email=carol%40example.net&_idem=k-1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        assert!(body["submission_id"].is_string());
    }

    async fn attribution_and_truncated_ip_are_stored(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = contact("utm@example.com");
        for (k, v) in [
            ("utm_source", "newsletter"), ("utm_medium", "email"), ("utm_campaign", "launch"),
            ("utm_term", "crm"), ("utm_content", "hero"), ("referrer", "https://news.example/"),
            ("landing_page", "https://example.com/lp?utm_source=newsletter"), ("gclid", "abc123"),
        ] {
            body[k] = json!(v);
        }
        let resp = app
            .client
            .post(app.submissions_url("contact"))
            .header("user-agent", "TestBrowser/1.0")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let sub = &app.leads().await[0]["latest_submission"];
        let a = &sub["attribution"];
        assert_eq!(a["utm_source"], "newsletter");
        assert_eq!(a["utm_medium"], "email");
        assert_eq!(a["utm_campaign"], "launch");
        assert_eq!(a["utm_term"], "crm");
        assert_eq!(a["utm_content"], "hero");
        assert_eq!(a["referrer"], "https://news.example/");
        assert_eq!(a["landing_page"], "https://example.com/lp?utm_source=newsletter");
        assert_eq!(a["user_agent"], "TestBrowser/1.0");
        assert_eq!(a["more"]["gclid"], "abc123");
        assert_eq!(sub["client_ip"], "127.0.0.0", "IPs are truncated by default");
        assert!(sub["fields"].get("utm_source").is_none(), "attribution is not a field");
    }

    async fn full_ip_is_kept_only_when_the_operator_opts_in(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.privacy.ip = inlet::domain::IpPrivacy::Full).await;
        app.post_json("contact", &contact("ip@example.com")).await;
        assert_eq!(app.leads().await[0]["latest_submission"]["client_ip"], "127.0.0.1");
    }

    async fn unknown_fields_are_kept_under_extra(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = contact("extra@example.com");
        body["budget"] = json!("10k");
        body["_internal"] = json!("ignored");
        assert_eq!(app.post_json("contact", &body).await.status(), 201);
        let sub = &app.leads().await[0]["latest_submission"];
        assert_eq!(sub["extra"], json!({"budget": "10k"}));
    }

    async fn a_filled_honeypot_gets_the_same_2xx_but_is_stored_as_spam(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = contact("bot@example.com");
        body["_gotcha"] = json!("http://spam.example");
        let resp = app.post_json("contact", &body).await;
        assert_eq!(resp.status(), 201);
        let answer: Value = resp.json().await.unwrap();
        assert!(answer["submission_id"].is_string() && answer.get("lead_id").is_none());
        assert!(app.leads().await.is_empty(), "spam does not show up as a lead");
        let subs = app.admin_get("/v1/admin/submissions?spam=true").await;
        assert_eq!(subs["submissions"][0]["spam_reason"], "honeypot");
    }

    async fn download_forms_answer_with_a_signed_download_link(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app
            .post_json("whitepaper", &json!({"email": "dl@example.com", "name": "Dee", "consent": true}))
            .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        let url = body["download_url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/v1/downloads/d.", app.address)), "{url}");
        assert_eq!(app.client.get(url).send().await.unwrap().status(), 200);
        // A plain form post lands on the thank-you page, which shows the same kind of link.
        let resp = app.post_form("whitepaper", "email=nojs%40example.com&name=N&consent=on&_elapsed_ms=5000").await;
        assert_eq!(resp.status(), 303);
        let location = header(resp.headers(), "location").unwrap();
        assert!(location.starts_with("/thanks?form=whitepaper&download=d."), "{location}");
        let page = app.client.get(app.url(&location)).send().await.unwrap().text().await.unwrap();
        // (minijinja escapes "/" in HTML as "&#x2f;", which browsers read as "/".)
        let href = format!("href=\"{}/v1/downloads/d.", app.address).replace('/', "&#x2f;");
        assert!(page.contains(&href), "{page}");
        let forged = app.client.get(app.url("/thanks?form=whitepaper&download=d.x.1.y.z")).send().await.unwrap().text().await.unwrap();
        assert!(!forged.contains("/v1/downloads/"), "a forged token shows no link");
    }

    async fn cors_preflight_and_headers_follow_the_forms_origins(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.forms[1].allowed_origins = vec!["https://shop.example.com".into()];
        }).await;
        let ok = app
            .client
            .request(reqwest::Method::OPTIONS, app.submissions_url("contact"))
            .header("origin", "https://shop.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 204);
        assert_eq!(header(ok.headers(), "access-control-allow-origin").unwrap(), "https://shop.example.com");
        assert!(header(ok.headers(), "access-control-allow-headers").unwrap().contains("Idempotency-Key"));

        let denied = app
            .client
            .request(reqwest::Method::OPTIONS, app.submissions_url("contact"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 403);

        let post = app
            .client
            .post(app.submissions_url("contact"))
            .header("origin", "https://evil.example")
            .json(&contact("x@example.com"))
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 403);
        assert!(header(post.headers(), "access-control-allow-origin").is_none());
        let body: Value = post.json().await.unwrap();
        assert_eq!(body["error"], "origin_not_allowed");

        let allowed = app
            .client
            .post(app.submissions_url("contact"))
            .header("origin", "https://shop.example.com")
            .json(&contact("y@example.com"))
            .send()
            .await
            .unwrap();
        assert_eq!(allowed.status(), 201);
        assert_eq!(header(allowed.headers(), "access-control-allow-origin").unwrap(), "https://shop.example.com");
        assert_eq!(app.leads().await.len(), 1, "only the allowed origin stored a lead");
    }

    async fn demo_forms_accept_any_origin(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app
            .client
            .post(app.submissions_url("newsletter"))
            .header("origin", "http://localhost:3000")
            .json(&json!({"email": "any@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(header(resp.headers(), "access-control-allow-origin").unwrap(), "http://localhost:3000");
    }

    async fn select_fields_accept_only_their_options(backend: Backend) {
        use inlet::config::{FieldConfig, FieldType};
        let app = TestApp::spawn_with(backend, |s| {
            s.forms[1].fields.push(FieldConfig {
                name: "size".into(), kind: FieldType::Select, required: true, max_length: None,
                options: vec!["1-10".into(), "11-50".into()], label: None,
            });
        }).await;
        let mut bad = contact("sel@example.com");
        bad["size"] = json!("9000");
        let resp = app.post_json("contact", &bad).await;
        assert_eq!(resp.status(), 422);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["fields"]["size"][0], "must be one of the listed options");
        let mut good = contact("sel@example.com");
        good["size"] = json!("11-50");
        assert_eq!(app.post_json("contact", &good).await.status(), 201);
    }

    async fn forms_are_listed_publicly(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let body: Value = app.client.get(app.url("/v1/forms")).send().await.unwrap().json().await.unwrap();
        let ids: Vec<&str> = body["forms"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["newsletter", "contact", "whitepaper"]);
    }
}
