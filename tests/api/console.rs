//! The marketer's console over HTTP, as a browser uses it (cookies, forms, redirects): set-up
//! and sign-in links, passwords, sessions and their timeouts on the app's clock, CSRF, roles,
//! the lead list's search, filters and pages, the timeline, exports and erasure.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::helpers::{cli, contact, header, Backend, TestApp};

/// A browser's view of the console: its cookies, the last page, the CSRF token on it.
pub struct Browser<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    headers: reqwest::header::HeaderMap,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            cookies: BTreeMap::new(),
        }
    }

    fn keep_cookies(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        Answer {
            status: resp.status().as_u16(),
            location: header(&headers, "location"),
            body: resp.text().await.unwrap_or_default(),
            headers,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = self.app.client.get(self.app.url(path));
        self.answer(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let req = self.app.client.post(self.app.url(path)).form(form);
        self.answer(req).await
    }

    async fn upload(&mut self, path: &str, form: reqwest::multipart::Form) -> Answer {
        let req = self.app.client.post(self.app.url(path)).multipart(form);
        self.answer(req).await
    }

    /// The CSRF token on the page at `path`.
    pub async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        hidden(&page.body, "_csrf")
    }

    /// Signs in with a password through the sign-in form.
    async fn sign_in(&mut self, email: &str, password: &str) -> Answer {
        let form = self.get("/console/login").await;
        let token = hidden(&form.body, "_login");
        self.post(
            "/console/login",
            &[("email", email), ("password", password), ("_login", &token)],
        )
        .await
    }
}

/// A hidden input's value on a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path of a printed link.
fn path_of(url: &str) -> String {
    let url = url::Url::parse(url.trim()).expect("a URL");
    url.path().to_string()
}

const PASSWORD: &str = "correct horse battery staple";

/// A console account with a password, made as an operator would (CLI link, then a password).
pub async fn account<'a>(app: &'a TestApp, email: &str, role: &str) -> Browser<'a> {
    let out = cli(&["users", "add", email, "--role", role], &app.db.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let link = stdout
        .lines()
        .find(|l| l.contains("/console/link/"))
        .expect("a link is printed");
    let mut b = Browser::new(app);
    let confirm = b.get(&path_of(link)).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let signed = b.post(&path_of(link), &[]).await;
    assert_eq!(signed.status, 303);
    assert_eq!(signed.location.as_deref(), Some("/console/password"));
    let csrf = b.csrf("/console/password").await;
    let saved = b
        .post(
            "/console/password",
            &[
                ("_csrf", &csrf),
                ("password", PASSWORD),
                ("repeat", PASSWORD),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    b
}

/// Asks for a sign-in link by email, through the sign-in page's form.
async fn ask_link(b: &mut Browser<'_>, email: &str) -> Answer {
    let form = b.get("/console/login").await;
    let token = hidden(&form.body, "_login");
    b.post(
        "/console/login/link",
        &[("email", email), ("_login", &token)],
    )
    .await
}

async fn submit(app: &TestApp, form: &str, body: serde_json::Value) -> String {
    let resp = app.post_json(form, &body).await;
    assert_eq!(resp.status(), 201);
    let answer: serde_json::Value = resp.json().await.unwrap();
    app.lead_of(&answer).await
}

both_backends! {
    async fn the_set_up_link_creates_the_first_admin_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let state = &app.state;
        let url = inlet::console::issue_link(&state.store, None, app.clock.now_ms(), &state.settings.console, &app.address)
            .await
            .unwrap();
        let path = path_of(&url);
        let mut b = Browser::new(&app);
        let form = b.get(&path).await;
        assert_eq!(form.status, 200);
        assert!(form.body.contains("Set up Inlet"));

        // A weak password is refused and nothing is created.
        let weak = b.post(&path, &[("email", "ann@example.com"), ("password", "short"), ("repeat", "short")]).await;
        assert_eq!(weak.status, 422);
        assert!(weak.body.contains("at least 12 characters"), "{}", weak.body);
        let bad = b.post(&path, &[("email", "not an address"), ("password", PASSWORD), ("repeat", PASSWORD)]).await;
        assert_eq!(bad.status, 422);
        assert_eq!(state.store.user_count().await.unwrap(), 0);

        let made = b.post(&path, &[("email", "Ann@Example.com"), ("password", PASSWORD), ("repeat", PASSWORD)]).await;
        assert_eq!(made.status, 303, "{}", made.body);
        assert_eq!(made.location.as_deref(), Some("/console/leads"));
        let cookie = header(&made.headers, "set-cookie").unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console"), "{cookie}");
        let leads = b.get("/console/leads").await;
        assert_eq!(leads.status, 200);
        assert!(leads.body.contains("ann@example.com (admin)") || leads.body.contains("ann@example.com <span class=\"role\">(admin)"), "{}", leads.body);
        assert!(leads.body.contains("No leads yet"));

        // Used up: neither this link nor another set-up link made before works now.
        let again = Browser::new(&app).post(&path, &[("email", "eve@example.com"), ("password", PASSWORD), ("repeat", PASSWORD)]).await;
        assert_eq!(again.status, 410);
        let other = inlet::console::issue_link(&state.store, None, app.clock.now_ms(), &state.settings.console, &app.address)
            .await
            .unwrap();
        let late = Browser::new(&app).post(&path_of(&other), &[("email", "eve@example.com"), ("password", PASSWORD), ("repeat", PASSWORD)]).await;
        assert_eq!(late.status, 410);
        assert_eq!(state.store.user_count().await.unwrap(), 1);
    }

    async fn a_sign_in_link_works_once_and_expires(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut admin = account(&app, "ann@example.com", "admin").await;
        // Signed in with the link, then with the password.
        assert_eq!(admin.get("/console/leads").await.status, 200);
        let mut again = Browser::new(&app);
        let signed = again.sign_in("ann@example.com", PASSWORD).await;
        assert_eq!(signed.status, 303, "{}", signed.body);
        assert_eq!(again.get("/console/leads").await.status, 200);

        // A fresh link for a forgotten password: used once, then gone; another one expires.
        let out = cli(&["users", "link", "ann@example.com"], &app.db.url());
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let link = path_of(stdout.lines().find(|l| l.contains("/console/link/")).unwrap());
        let mut b = Browser::new(&app);
        assert_eq!(b.post(&link, &[]).await.status, 303);
        assert_eq!(Browser::new(&app).post(&link, &[]).await.status, 410);
        assert_eq!(Browser::new(&app).get(&link).await.status, 410);

        let out = cli(&["users", "link", "ann@example.com"], &app.db.url());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let link = path_of(stdout.lines().find(|l| l.contains("/console/link/")).unwrap());
        app.advance(Duration::from_secs(24 * 3600 + 60));
        let expired = Browser::new(&app).post(&link, &[]).await;
        assert_eq!(expired.status, 410);
        assert!(expired.body.contains("no longer works"));

        // Made-up and malformed tokens are the same answer.
        assert_eq!(Browser::new(&app).post("/console/link/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &[]).await.status, 410);
        assert_eq!(Browser::new(&app).get("/console/link/..%2f..%2fetc").await.status, 410);

        // Listing and removing people; a removed person's session ends at once.
        let out = cli(&["users", "list"], &app.db.url());
        assert!(String::from_utf8_lossy(&out.stdout).contains("ann@example.com\tadmin\tset"));
        let dup = cli(&["users", "add", "ann@example.com", "--role", "viewer"], &app.db.url());
        assert!(!dup.status.success());
        assert!(cli(&["users", "remove", "ann@example.com"], &app.db.url()).status.success());
        let gone = again.get("/console/leads").await;
        assert_eq!(gone.status, 303);
        assert_eq!(gone.location.as_deref(), Some("/console/login"));
    }

    async fn wrong_passwords_are_refused_alike_and_throttled(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            s.console.sign_in_attempts_per_account = 4;
        })
        .await;
        account(&app, "ann@example.com", "marketer").await;
        let mut b = Browser::new(&app);
        let wrong = b.sign_in("ann@example.com", "not the password").await;
        assert_eq!(wrong.status, 401);
        let unknown = b.sign_in("nobody@example.com", "not the password").await;
        assert_eq!(unknown.status, 401);
        // The same words whether the account exists or not: no list of who has one.
        let msg = "That email and password do not match an account.";
        assert!(wrong.body.contains(msg) && unknown.body.contains(msg));
        assert!(!b.cookies.contains_key("inlet_session"));

        // A sign-in posted without the form's own token (from another site) is refused.
        let forged = Browser::new(&app)
            .post("/console/login", &[("email", "ann@example.com"), ("password", PASSWORD)])
            .await;
        assert_eq!(forged.status, 403);

        // Past the account's quota even the right password waits.
        for _ in 0..3 {
            b.sign_in("ann@example.com", "guess again").await;
        }
        let limited = b.sign_in("ann@example.com", PASSWORD).await;
        assert_eq!(limited.status, 429, "{}", limited.body);
        assert!(header(&limited.headers, "retry-after").is_some());
        assert!(limited.body.contains("Too many sign-in attempts"));
        assert!(!b.cookies.contains_key("inlet_session"));
    }

    async fn sessions_end_when_idle_when_old_and_on_sign_out(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut b = account(&app, "ann@example.com", "admin").await;
        // Active use keeps a session past the idle limit, up to the absolute one.
        for _ in 0..23 {
            app.advance(Duration::from_secs(30 * 60));
            assert_eq!(b.get("/console/leads").await.status, 200);
        }
        app.advance(Duration::from_secs(31 * 60));
        let old = b.get("/console/leads").await;
        assert_eq!(old.status, 303, "12 h after sign-in the session ends");
        assert_eq!(old.location.as_deref(), Some("/console/login"));

        // Idle for longer than an hour: signed out.
        let mut b = Browser::new(&app);
        assert_eq!(b.sign_in("ann@example.com", PASSWORD).await.status, 303);
        app.advance(Duration::from_secs(61 * 60));
        assert_eq!(b.get("/console/leads").await.status, 303);

        // Signing out needs the page's token; afterwards the old cookie signs no one in.
        let mut b = Browser::new(&app);
        assert_eq!(b.sign_in("ann@example.com", PASSWORD).await.status, 303);
        let stolen = b.cookies.clone();
        assert_eq!(b.post("/console/logout", &[("_csrf", "wrong")]).await.status, 403);
        let csrf = b.csrf("/console/leads").await;
        let out = b.post("/console/logout", &[("_csrf", &csrf)]).await;
        assert_eq!(out.status, 303);
        assert!(!b.cookies.contains_key("inlet_session"));
        let mut replay = Browser::new(&app);
        replay.cookies = stolen;
        assert_eq!(replay.get("/console/leads").await.status, 303);
        // Without any session every page sends the browser to sign in.
        for path in ["/console/leads", "/console/leads/x", "/console/password", "/console/leads/export.csv"] {
            let a = Browser::new(&app).get(path).await;
            assert_eq!((a.status, a.location.as_deref()), (303, Some("/console/login")), "{path}");
        }
    }

    async fn a_viewer_can_look_but_not_export_or_change(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let lead = submit(&app, "contact", contact("jane@example.com")).await;
        let mut viewer = account(&app, "vic@example.com", "viewer").await;
        let list = viewer.get("/console/leads").await;
        assert_eq!(list.status, 200);
        assert!(list.body.contains("jane@example.com"));
        assert!(!list.body.contains("export.csv"), "no export button for a viewer");
        let page = viewer.get(&format!("/console/leads/{lead}")).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("Erase"));
        let csrf = hidden(&list.body, "_csrf");
        for path in ["/console/leads/export.csv".to_string(), format!("/console/leads/{lead}/export"), format!("/console/leads/{lead}/erase")] {
            let a = viewer.get(&path).await;
            assert_eq!(a.status, 403, "{path}");
            assert!(a.body.contains("may look but not export or change leads"), "{}", a.body);
        }
        for action in ["erase", "unsubscribe", "restore"] {
            let a = viewer.post(&format!("/console/leads/{lead}/{action}"), &[("_csrf", &csrf)]).await;
            assert_eq!(a.status, 403, "{action}");
        }
        assert_eq!(app.leads().await.len(), 1, "nothing changed");
    }

    async fn every_change_needs_the_pages_csrf_token(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let lead = submit(&app, "contact", contact("jane@example.com")).await;
        let mut admin = account(&app, "ann@example.com", "admin").await;
        for action in ["erase", "unsubscribe"] {
            for token in [None, Some("forged")] {
                let form: Vec<(&str, &str)> = token.map(|t| vec![("_csrf", t)]).unwrap_or_default();
                let a = admin.post(&format!("/console/leads/{lead}/{action}"), &form).await;
                assert_eq!(a.status, 403, "{action} with {token:?}");
            }
        }
        let record = app.admin_get(&format!("/v1/admin/leads/{lead}/export")).await;
        assert_eq!(record["suppressed"], false);
        assert_eq!(app.leads().await.len(), 1);
    }

    async fn the_lead_list_searches_filters_and_pages(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for i in 0..7 {
            submit(&app, "contact", contact(&format!("ann{i}@acme.test"))).await;
        }
        submit(&app, "newsletter", json!({"email": "bob@other.test", "_elapsed_ms": 5000})).await;
        // Quarantined: honeypot.
        let spam = json!({"email": "spam@bots.test", "_gotcha": "x", "_elapsed_ms": 5000});
        assert_eq!(app.post_json("newsletter", &spam).await.status(), 201);
        let mut b = account(&app, "ann@example.com", "marketer").await;

        let all = b.get("/console/leads").await;
        assert_eq!(all.body.matches("<tr>").count(), 1 + 8, "header + 8 leads, spam hidden");
        // Newest first by default.
        let first = all.body.find("bob@other.test").unwrap();
        assert!(first < all.body.find("ann0@acme.test").unwrap());

        let search = b.get("/console/leads?q=ANN").await;
        assert_eq!(search.body.matches("@acme.test</a>").count(), 7);
        assert!(!search.body.contains("bob@other.test"));
        let form = b.get("/console/leads?form=newsletter").await;
        assert!(form.body.contains("bob@other.test") && !form.body.contains("ann0@acme.test"));
        let quarantined = b.get("/console/leads?show=quarantined").await;
        assert!(quarantined.body.contains("spam@bots.test"), "{}", quarantined.body);
        assert!(quarantined.body.contains("Quarantined leads"));
        // Its page says what was held back, and why.
        let spam_id = app.admin_get("/v1/admin/leads?quarantined=true").await["leads"][0]["id"]
            .as_str().unwrap().to_string();
        let page = b.get(&format!("/console/leads/{spam_id}")).await;
        assert!(page.body.contains("not sent: the submission was quarantined as spam"), "{}", page.body);
        let none = b.get("/console/leads?q=zzz").await;
        assert!(none.body.contains("No leads match these filters"));
        let today = chrono::DateTime::from_timestamp_millis(app.clock.now_ms()).unwrap().format("%Y-%m-%d").to_string();
        let dated = b.get(&format!("/console/leads?from={today}&to={today}")).await;
        assert_eq!(dated.body.matches("<tr>").count(), 9);
        let tomorrow = b.get("/console/leads?from=2999-01-01").await;
        assert!(tomorrow.body.contains("No leads match"));

        // Bad filters are a clear 400 page, never a 500.
        for (q, words) in [("form=nope", "no form called"), ("from=yesterday", "must look like 2026-12-31"), ("cursor=%00", "page link is not valid")] {
            let a = b.get(&format!("/console/leads?{q}")).await;
            assert_eq!(a.status, 400, "{q}: {}", a.body);
            assert!(a.body.contains(words), "{q}: {}", a.body);
        }

        // Pages: a store page size of 50 is too big for 8 leads, so page through the API's
        // own cursor with the console's links: the oldest-first order keeps the filters.
        let oldest = b.get("/console/leads?q=ann&order=oldest").await;
        assert!(oldest.body.find("ann0@acme.test").unwrap() < oldest.body.find("ann6@acme.test").unwrap());
        assert!(!oldest.body.contains("Next page"));

        // By source (as reports group it), from the form or a link on the overview.
        let mut body = contact("dan@acme.test");
        body["utm_source"] = json!("LinkedIn");
        submit(&app, "contact", body).await;
        let by_source = b.get("/console/leads?source=linkedin").await;
        assert_eq!(by_source.body.matches("@acme.test</a>").count(), 1, "{}", by_source.body);
        assert!(by_source.body.contains("dan@acme.test"));
        let direct = app.admin_get("/v1/admin/leads?source=direct&limit=100").await;
        assert_eq!(direct["leads"].as_array().unwrap().len(), 8, "everyone else came direct");

        // The admin API takes the same search.
        let json = app.admin_get("/v1/admin/leads?q=ann&order=newest&limit=3").await;
        // (dan@ is not an ann: the prefix keeps him out.)
        let emails: Vec<&str> = json["leads"].as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["ann6@acme.test", "ann5@acme.test", "ann4@acme.test"]);
        let next = json["next_cursor"].as_str().unwrap();
        let json = app.admin_get(&format!("/v1/admin/leads?q=ann&order=newest&limit=3&cursor={next}")).await;
        let emails: Vec<&str> = json["leads"].as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["ann3@acme.test", "ann2@acme.test", "ann1@acme.test"]);
    }

    async fn the_lead_page_tells_what_happened_and_acts(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = contact("jane@example.com");
        body["name"] = json!("<script>alert(1)</script>");
        body["utm_source"] = json!("linkedin");
        body["utm_medium"] = json!("paid");
        let lead = submit(&app, "contact", body).await;
        app.dispatch().await;
        let mut b = account(&app, "ann@example.com", "marketer").await;
        let page = b.get(&format!("/console/leads/{lead}")).await;
        assert_eq!(page.status, 200);
        for words in ["Submitted the \u{201c}contact\u{201d} form", "Follow-up email: sent", "linkedin", "paid", "Example Ltd"] {
            assert!(page.body.contains(words), "{words}: {}", page.body);
        }
        assert!(!page.body.contains("<script>alert"), "what a lead typed is escaped");
        assert!(page.body.contains("&lt;script&gt;"));
        assert!(header(&page.headers, "content-security-policy").unwrap().contains("script-src 'self'"));
        assert_eq!(header(&page.headers, "cache-control").as_deref(), Some("no-store"));

        // Unsubscribe: the timeline says so, the list shows the status.
        let csrf = hidden(&page.body, "_csrf");
        let done = b.post(&format!("/console/leads/{lead}/unsubscribe"), &[("_csrf", &csrf)]).await;
        assert_eq!(done.status, 303);
        let page = b.get(&format!("/console/leads/{lead}")).await;
        assert!(page.body.contains("On the suppression list: unsubscribed"), "{}", page.body);
        assert!(page.body.contains("status unsubscribed"));
        assert!(!page.body.contains("/unsubscribe\""), "no second unsubscribe button");

        // One person's data as JSON.
        let export = b.get(&format!("/console/leads/{lead}/export")).await;
        assert_eq!(export.status, 200);
        let v: serde_json::Value = serde_json::from_str(&export.body).unwrap();
        assert_eq!(v["lead"]["email"], "jane@example.com");
        assert!(header(&export.headers, "content-disposition").unwrap().starts_with("attachment"));

        // Erase asks first, then erases.
        let ask = b.get(&format!("/console/leads/{lead}/erase")).await;
        assert_eq!(ask.status, 200);
        assert!(ask.body.contains("Erase jane@example.com?") && ask.body.contains("cannot be undone"));
        let csrf = hidden(&ask.body, "_csrf");
        let erased = b.post(&format!("/console/leads/{lead}/erase"), &[("_csrf", &csrf)]).await;
        assert_eq!(erased.status, 303);
        let list = b.get(erased.location.as_deref().unwrap()).await;
        assert!(list.body.contains("The lead was erased"));
        assert!(!list.body.contains("jane@example.com"));
        let gone = b.get(&format!("/console/leads/{lead}")).await;
        assert_eq!(gone.status, 404);
        assert!(gone.body.contains("may have been erased"));
    }

    async fn a_quarantined_lead_is_restored_from_its_page(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let spam = json!({"email": "real@person.test", "_gotcha": "x", "_elapsed_ms": 5000});
        assert_eq!(app.post_json("newsletter", &spam).await.status(), 201);
        let lead = app.submissions().await[0]["lead_id"].as_str().unwrap().to_string();
        let mut b = account(&app, "ann@example.com", "marketer").await;
        let page = b.get(&format!("/console/leads/{lead}")).await;
        assert!(page.body.contains("status quarantined"), "{}", page.body);
        assert!(page.body.contains("Quarantined a submission"));
        let csrf = hidden(&page.body, "_csrf");
        let done = b.post(&format!("/console/leads/{lead}/restore"), &[("_csrf", &csrf)]).await;
        assert_eq!(done.status, 303);
        let page = b.get(&format!("/console/leads/{lead}")).await;
        assert!(page.body.contains("Restored from quarantine"));
        assert!(!page.body.contains("status quarantined"));
        assert!(b.get("/console/leads").await.body.contains("real@person.test"));
    }

    async fn the_csv_export_follows_the_filter_and_defuses_formulas(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut evil = contact("ann@acme.test");
        evil["company"] = json!("=HYPERLINK(\"http://evil\")");
        submit(&app, "contact", evil).await;
        submit(&app, "contact", contact("bob@acme.test")).await;
        submit(&app, "contact", contact("cat@other.test")).await;
        let mut b = account(&app, "ann@example.com", "admin").await;
        // (`ann@`: with an @ the search is the address alone; everyone here is called Ann.)
        let list = b.get("/console/leads?q=ann%40").await;
        assert!(list.body.contains("/console/leads/export.csv?q=ann%40"), "the export keeps the filter");
        let csv = b.get("/console/leads/export.csv?q=ann%40").await;
        assert_eq!(csv.status, 200);
        assert!(header(&csv.headers, "content-type").unwrap().starts_with("text/csv"));
        assert!(header(&csv.headers, "content-disposition").unwrap().contains("inlet-leads-"));
        let lines: Vec<&str> = csv.body.lines().collect();
        assert_eq!(lines.len(), 2, "{}", csv.body);
        assert!(lines[0].starts_with("lead_id,email,status"));
        assert!(lines[1].contains("ann@acme.test"));
        assert!(lines[1].contains("'=HYPERLINK"), "{}", lines[1]);
        let all = b.get("/console/leads/export.csv").await;
        assert_eq!(all.body.lines().count(), 4);
    }

    async fn sign_in_goes_only_to_console_pages(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        account(&app, "ann@example.com", "admin").await;
        for (next, expect) in [
            ("/console/leads?q=a", "/console/leads?q=a"),
            ("//evil.example/", "/console/leads"),
            ("https://evil.example/", "/console/leads"),
            ("/console/../../x", "/console/../../x"),
            ("/\\evil.example", "/console/leads"),
        ] {
            let mut b = Browser::new(&app);
            let form = b.get("/console/login").await;
            let token = hidden(&form.body, "_login");
            let a = b.post("/console/login", &[("email", "ann@example.com"), ("password", PASSWORD), ("_login", &token), ("next", next)]).await;
            assert_eq!(a.status, 303);
            assert_eq!(a.location.as_deref(), Some(expect), "{next}");
        }
    }

    async fn the_overview_shows_the_period_with_charts(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
        for (i, source) in ["google", "google", "<b>evil</b>"].iter().enumerate() {
            let resp = app
                .client
                .post(app.url("/v1/forms/contact/views"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-forwarded-for", format!("198.51.{i}.1"))
                .body(format!("utm_source={}", urlencode(source)))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 204);
        }
        inlet::views::flush(&app.state.views, &app.state.store).await.unwrap();
        let mut body = contact("ann@acme.test");
        body["utm_source"] = json!("google");
        submit(&app, "contact", body).await;
        let mut b = account(&app, "ann@example.com", "viewer").await;
        let home = b.get("/console").await;
        assert_eq!(home.location.as_deref(), Some("/console/overview"));
        let page = b.get("/console/overview").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let text = page.body.as_str();
        for words in ["Form views", "Leads per day", "Conversion per day", "Top sources by leads", "33.3 %", "google"] {
            assert!(text.contains(words), "{words}: {text}");
        }
        assert_eq!(text.matches("<svg").count(), 4, "four charts");
        assert!(text.contains("href=\"/console/leads?source=google\"") || text.contains("href=\"&#x2f;console&#x2f;leads?source=google\""), "a source links to its leads");
        assert!(!text.contains("<b>evil</b>"), "a visitor's source is escaped, in tables and charts");
        assert!(text.contains("&lt;b&gt;evil&lt;/b&gt;") || text.contains("&lt;b&gt;evil&lt;&#x2f;b&gt;"));
        assert!(!text.contains("<script"));
        let week = b.get("/console/overview?days=7").await;
        assert_eq!(week.status, 200);
        assert_eq!(b.get("/console/overview?days=5").await.status, 400);
    }

    async fn deliveries_show_what_needs_attention_and_retry(backend: Backend) {
        let app = TestApp::spawn_with(backend, |s| {
            // Nothing listens there: every send fails, and one attempt is all there is.
            s.mail.smtp_url = Some(secrecy::SecretString::from("smtp://127.0.0.1:9".to_string()));
            s.mail.timeout_secs = 2;
            s.outbox.max_attempts = 1;
        })
        .await;
        let lead = submit(&app, "contact", contact("jane@example.com")).await;
        let report = app.dispatch().await;
        assert_eq!(report.dead, 1, "{report:?}");
        let mut viewer = account(&app, "vic@example.com", "viewer").await;
        let page = viewer.get("/console/deliveries?status=dead").await;
        assert_eq!(page.status, 200, "{}", page.body);
        for words in ["Gave up", "jane@example.com", "Follow-up email", "gave up", &format!("/console/leads/{lead}")] {
            assert!(page.body.contains(words), "{words}: {}", page.body);
        }
        assert!(!page.body.contains("Retry every message"), "a viewer gets no retry button");
        let csrf = hidden(&page.body, "_csrf");
        assert_eq!(viewer.post("/console/deliveries/all-dead/retry", &[("_csrf", &csrf)]).await.status, 403);
        assert_eq!(viewer.get("/console/deliveries?status=lost").await.status, 400);

        let mut b = account(&app, "ann@example.com", "marketer").await;
        let page = b.get("/console/deliveries").await;
        assert!(page.body.contains("Retry every message that gave up (1)"), "{}", page.body);
        let csrf = hidden(&page.body, "_csrf");
        assert_eq!(b.post("/console/deliveries/all-dead/retry", &[]).await.status, 403, "no CSRF token");
        let done = b.post("/console/deliveries/all-dead/retry", &[("_csrf", &csrf)]).await;
        assert_eq!(done.status, 303);
        let after = b.get("/console/deliveries?status=pending").await;
        assert!(after.body.contains("jane@example.com") && after.body.contains("waiting"), "{}", after.body);
        assert_eq!(app.state.store.outbox_stats(app.clock.now_ms()).await.unwrap().dead, 0);
        // Nothing left to retry: a clear 404 page.
        assert_eq!(b.post("/console/deliveries/all-dead/retry", &[("_csrf", &csrf)]).await.status, 404);
    }

    async fn the_forms_page_shows_settings_results_and_the_code_to_paste(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let view = app.client.post(app.url("/v1/forms/contact/views")).header("content-type", "application/x-www-form-urlencoded").body("utm_source=linkedin").send().await.unwrap();
        assert_eq!(view.status(), 204);
        inlet::views::flush(&app.state.views, &app.state.store).await.unwrap();
        let mut body = contact("ann@acme.test");
        body["utm_source"] = json!("linkedin");
        submit(&app, "contact", body).await;
        let mut b = account(&app, "ann@example.com", "viewer").await;
        let page = b.get("/console/forms").await;
        assert_eq!(page.status, 200, "{}", page.body);
        // minijinja escapes `/` too; read the page as a browser shows it.
        let shown = page.body.replace("&#x2f;", "/");
        let text = shown.as_str();
        for words in [
            "id=\"form-contact\"", "id=\"form-newsletter\"", "id=\"form-whitepaper\"",
            "integrity=&quot;sha384-", "data-inlet=&quot;contact&quot;",
            &format!("action=&quot;{}/v1/forms/contact/submissions&quot;", app.address),
            "<th scope=\"row\">linkedin</th>", "100.0 %",
        ] {
            assert!(text.contains(words), "{words}: {text}");
        }
        // The newsletter is double opt-in; the whitepaper delivers a download.
        let newsletter = &text[text.find("id=\"form-newsletter\"").unwrap()..];
        assert!(newsletter.contains("<dt>Double opt-in</dt><dd>yes</dd>"));
    }

    async fn an_admin_manages_people_from_the_console(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut admin = account(&app, "ann@example.com", "admin").await;
        let mut marketer = account(&app, "mo@example.com", "marketer").await;
        assert_eq!(marketer.get("/console/people").await.status, 403, "only an admin");
        assert!(!marketer.get("/console/leads").await.body.contains("/console/people"), "no People link");
        let page = admin.get("/console/people").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("mo@example.com") && page.body.contains("/console/people"));
        let csrf = hidden(&page.body, "_csrf");

        // Add: the page shows the one-time link, and it signs the new person in.
        let added = admin.post("/console/people", &[("_csrf", &csrf), ("email", "Vi@Example.com"), ("role", "viewer")]).await;
        assert_eq!(added.status, 200, "{}", added.body);
        let shown = added.body.replace("&#x2f;", "/");
        let start = shown.find(&format!("{}/console/link/", app.address)).expect("the link is shown");
        let link = shown[start..].split('<').next().unwrap().to_string();
        let mut vi = Browser::new(&app);
        assert_eq!(vi.post(&path_of(&link), &[]).await.status, 303);
        assert_eq!(vi.get("/console/leads").await.status, 200);

        // Refused plainly: a second account for the address, a bad role or address, no token.
        for (email, role, words) in [("vi@example.com", "viewer", "has an account already"), ("vi2@example.com", "owner", "Choose a role"), ("nope", "viewer", "not valid")] {
            let a = admin.post("/console/people", &[("_csrf", &csrf), ("email", email), ("role", role)]).await;
            assert_eq!(a.status, 422, "{email}");
            assert!(a.body.contains(words), "{words}: {}", a.body);
        }
        assert_eq!(admin.post("/console/people", &[("email", "x@example.com"), ("role", "viewer")]).await.status, 403);
        let marketer_csrf = marketer.csrf("/console/leads").await;
        assert_eq!(marketer.post("/console/people", &[("_csrf", &marketer_csrf), ("email", "x@example.com"), ("role", "admin")]).await.status, 403);

        // Remove: their session ends at once; nobody removes themselves.
        let removed = admin.post("/console/people/remove", &[("_csrf", &csrf), ("email", "vi@example.com")]).await;
        assert_eq!(removed.status, 303);
        assert_eq!(vi.get("/console/leads").await.status, 303);
        let me = admin.post("/console/people/remove", &[("_csrf", &csrf), ("email", "ann@example.com")]).await;
        assert_eq!(me.status, 403);
        assert_eq!(admin.post("/console/people/remove", &[("_csrf", &csrf), ("email", "ghost@example.com")]).await.status, 404);
    }

    async fn an_admin_makes_and_revokes_api_keys_from_the_console(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut admin = account(&app, "ann@example.com", "admin").await;
        let mut marketer = account(&app, "mo@example.com", "marketer").await;
        assert_eq!(marketer.get("/console/keys").await.status, 403, "only an admin");
        let page = admin.get("/console/keys").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("No keys yet") && page.body.contains("leads:erase"));
        let csrf = hidden(&page.body, "_csrf");

        let made = admin
            .post("/console/keys", &[("_csrf", &csrf), ("name", "Looker <dash>"), ("scope", "stats:read"), ("scope", "leads:read")])
            .await;
        assert_eq!(made.status, 200, "{}", made.body);
        assert!(made.body.contains("only time it is shown"));
        assert!(made.body.contains("Looker &lt;dash&gt;") && !made.body.contains("<dash>"), "names are escaped");
        let start = made.body.find("<code>inlet_").expect("the key is shown") + "<code>".len();
        let key = made.body[start..].split('<').next().unwrap().to_string();
        assert_eq!(key.len(), 49, "{key}");
        let get = |path: &str, key: &str| app.client.get(app.url(path)).bearer_auth(key).send();
        assert_eq!(get("/v1/admin/stats", &key).await.unwrap().status(), 200);
        assert_eq!(get("/v1/admin/leads/x/export", &key).await.unwrap().status(), 403);

        let again = admin.get("/console/keys").await;
        assert!(!again.body.contains(&key), "shown once, never again");
        assert!(again.body.contains(&key[..14]) && again.body.contains("leads:read stats:read"));
        assert!(again.body.contains("by ann@example.com"));

        // Refused plainly: no scope ticked, no name, no CSRF token, a marketer.
        let none = admin.post("/console/keys", &[("_csrf", &csrf), ("name", "x")]).await;
        assert_eq!(none.status, 422);
        assert!(none.body.contains("Tick at least one"));
        let unnamed = admin.post("/console/keys", &[("_csrf", &csrf), ("name", " "), ("scope", "all")]).await;
        assert_eq!(unnamed.status, 422);
        assert_eq!(admin.post("/console/keys", &[("name", "x"), ("scope", "all")]).await.status, 403);
        let marketer_csrf = marketer.csrf("/console/leads").await;
        assert_eq!(marketer.post("/console/keys", &[("_csrf", &marketer_csrf), ("name", "x"), ("scope", "all")]).await.status, 403);

        let id = hidden(&again.body, "id");
        let revoked = admin.post("/console/keys/revoke", &[("_csrf", &csrf), ("id", &id)]).await;
        assert_eq!(revoked.status, 303);
        assert_eq!(get("/v1/admin/stats", &key).await.unwrap().status(), 401);
        assert!(admin.get("/console/keys").await.body.contains("revoked"));
        assert_eq!(admin.post("/console/keys/revoke", &[("_csrf", &csrf), ("id", &id)]).await.status, 404);
    }

    async fn a_marketer_imports_a_list_from_the_console(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut marketer = account(&app, "mo@example.com", "marketer").await;
        let mut viewer = account(&app, "vi@example.com", "viewer").await;
        assert_eq!(viewer.get("/console/import").await.status, 403, "a viewer imports nothing");
        let page = marketer.get("/console/import").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("enctype=\"multipart/form-data\""));
        let csrf = hidden(&page.body, "_csrf");
        let file = "Email Address,First Name,Last Name\nada@example.com,Ada,Lovelace\n<b>bad</b>,Bad,Row\n";
        let form = |csrf: &str, file: &str, dry: bool| {
            let mut f = reqwest::multipart::Form::new()
                .text("_csrf", csrf.to_string())
                .part("file", reqwest::multipart::Part::text(file.to_string()).file_name("audience.csv"))
                .text("form", "newsletter")
                .text("preset", "mailchimp")
                .text("consent", "pending");
            if dry {
                f = f.text("dry_run", "true");
            }
            f
        };

        let checked = marketer.upload("/console/import", form(&csrf, file, true)).await;
        assert_eq!(checked.status, 200, "{}", checked.body);
        assert!(checked.body.contains("Checked, nothing written"));
        assert!(app.leads().await.is_empty());

        let done = marketer.upload("/console/import", form(&csrf, file, false)).await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("<span class=\"label\">New leads</span> <span class=\"value\">1</span>"), "{}", done.body);
        assert!(done.body.contains("<span class=\"label\">Not valid</span> <span class=\"value\">1</span>"));
        assert!(done.body.contains("is not a valid email address"), "the bad row is listed");
        assert!(!done.body.contains("<b>bad</b>"), "nothing from the file is markup");
        let leads = app.leads().await;
        assert_eq!(leads.len(), 1);
        assert_eq!(leads[0]["status"], "active", "a Mailchimp member is subscribed");
        let lead = marketer.get(&format!("/console/leads/{}", leads[0]["id"].as_str().unwrap())).await;
        assert!(lead.body.contains("Imported from a list") && lead.body.contains("audience.csv"), "the timeline says so");

        // Refused plainly: no CSRF token, a file without an email column, a viewer.
        assert_eq!(marketer.upload("/console/import", form("", file, false)).await.status, 403);
        let bad = marketer.upload("/console/import", form(&csrf, "name\nAda\n", false)).await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("no email column"), "{}", bad.body);
        let viewer_csrf = viewer.csrf("/console/leads").await;
        assert_eq!(viewer.upload("/console/import", form(&viewer_csrf, file, false)).await.status, 403);
        assert_eq!(app.leads().await.len(), 1);
    }

    async fn leads_are_found_by_name_company_and_campaign(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for (email, name, company, campaign) in [
            ("ada@one.test", "Ada Lovelace", "Analytical Engines", "spring-launch"),
            ("grace@two.test", "Grace Hopper", "Ärzte Ohne Grenzen", "spring-launch"),
            ("alan@three.test", "Alan Turing", "Bletchley", "autumn"),
        ] {
            let mut body = contact(email);
            body["name"] = json!(name);
            body["company"] = json!(company);
            body["utm_source"] = json!("linkedin");
            body["utm_campaign"] = json!(campaign);
            submit(&app, "contact", body).await;
        }
        let mut b = account(&app, "ann@example.com", "marketer").await;
        let found = |body: &str| -> Vec<String> {
            ["ada@one.test", "grace@two.test", "alan@three.test"]
                .iter()
                .filter(|e| body.contains(&format!("{e}</a>")))
                .map(|e| e.to_string())
                .collect()
        };
        for (q, expect) in [
            ("ada", vec!["ada@one.test"]),                      // address and name
            ("GRACE H", vec!["grace@two.test"]),                // name, any case
            ("analytical", vec!["ada@one.test"]),               // company
            ("ärzte", vec!["grace@two.test"]),                  // every letter folds
            ("a", vec!["ada@one.test", "alan@three.test"]),     // address, name, company
            ("lovelace", vec![]),                               // a prefix, not a word inside
            ("grace@", vec!["grace@two.test"]),                 // with an @: the address only
        ] {
            let page = b.get(&format!("/console/leads?q={}", urlencode(q))).await;
            assert_eq!(page.status, 200);
            assert_eq!(found(&page.body), expect, "q={q}");
        }
        let spring = b.get("/console/leads?campaign=Spring-Launch").await;
        assert_eq!(found(&spring.body), vec!["ada@one.test", "grace@two.test"]);
        let both = b.get("/console/leads?campaign=spring-launch&q=grace").await;
        assert_eq!(found(&both.body), vec!["grace@two.test"]);
        // The CSV export follows the same filter.
        let csv = b.get("/console/leads/export.csv?campaign=autumn").await;
        assert!(csv.body.contains("alan@three.test") && !csv.body.contains("ada@one.test"));

        // The admin API: `search` for names and companies, `campaign`.
        let json = app.admin_get("/v1/admin/leads?search=bletch&campaign=autumn").await;
        let emails: Vec<&str> = json["leads"].as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["alan@three.test"]);
    }

    async fn leads_are_filtered_by_status_and_exported_as_json_lines(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        // The oldest lead bounced; twelve thousand and more newer people were imported, pending.
        submit(&app, "contact", contact("bounced@example.com")).await;
        let lead = app.admin_get("/v1/admin/leads?q=bounced").await["leads"][0]["id"].as_str().unwrap().to_string();
        app.state.store.record_bounce(&lead, app.clock.now_ms()).await.unwrap();
        submit(&app, "contact", contact("active@example.com")).await;
        let mut csv = String::from("email,name\n");
        for i in 0..12_100 {
            csv.push_str(&format!("p{i}@list.test,Pat {i}\n"));
        }
        let resp = app.client.post(app.url("/v1/admin/leads/import?form=newsletter")).bearer_auth(crate::helpers::ADMIN_TOKEN).body(csv).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut b = account(&app, "ann@example.com", "marketer").await;

        let active = b.get("/console/leads?status=active&order=oldest").await;
        assert_eq!(active.body.matches("</a></td>").count(), 1, "{}", active.body);
        assert!(active.body.contains("active@example.com</a>"));
        let pending = b.get("/console/leads?status=pending").await;
        assert_eq!(pending.body.matches("@list.test</a>").count(), 50, "a full page");
        assert!(pending.body.contains("Next page"));

        // A rare status past the scan budget: the page says how far it looked, the next goes on.
        let first = b.get("/console/leads?status=bounced").await;
        assert_eq!(first.status, 200);
        assert!(first.body.contains("No lead with this status among the 2000 looked through"), "{}", first.body);
        // Each page looks through 2,000 more; the bounced lead is behind 12,101 newer ones.
        let mut page = first;
        for _ in 0..6 {
            assert!(page.body.contains("among the 2000 looked through"), "{}", page.body);
            let next = page.body.split("cursor=").nth(1).unwrap().split('"').next().unwrap().to_string();
            page = b.get(&format!("/console/leads?status=bounced&cursor={next}")).await;
        }
        assert!(page.body.contains("bounced@example.com</a>"), "{}", page.body);
        assert_eq!(b.get("/console/leads?status=sleepy").await.status, 400);

        // A broad search (more than 12,000 names and addresses start with "p") walks the list
        // instead of collecting every match first: the same page either way.
        let broad = b.get("/console/leads?q=p").await;
        assert_eq!(broad.body.matches("@list.test</a>").count(), 50, "{}", broad.body);
        assert!(broad.body.contains("p12099@list.test</a>"), "newest first");
        let narrow = b.get("/console/leads?q=pat%20209").await;
        assert_eq!(narrow.body.matches("@list.test</a>").count(), 11, "209 and 2090-2099");
        assert_eq!(b.get("/console/leads?status=quarantined").await.status, 400, "that is show=quarantined");

        // Exports follow the status filter, as CSV or JSON lines.
        let jsonl = b.get("/console/leads/export.jsonl?status=bounced").await;
        assert_eq!(jsonl.status, 200);
        assert!(header(&jsonl.headers, "content-type").unwrap().starts_with("application/jsonl"));
        let lines: Vec<serde_json::Value> = jsonl.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["email"], "bounced@example.com");
        assert_eq!(lines[0]["status"], "bounced");
        let csv = b.get("/console/leads/export.csv?status=active").await;
        assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
        assert_eq!(b.get("/console/leads/export.xml").await.status, 404);
    }

    async fn deliveries_page_back_through_every_message(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for i in 0..205 {
            app.post_json("contact", &contact(&format!("m{i:03}@example.com"))).await;
        }
        let total = crate::helpers::raw(&app.db).await.count("outbox").await;
        assert!(total > 200, "{total}");
        let mut b = account(&app, "ann@example.com", "viewer").await;
        let newest = b.get("/console/deliveries").await;
        assert_eq!(newest.body.matches("<td><a href=\"/console/leads/").count(), 200);
        assert!(newest.body.contains("m204@example.com"), "newest first");
        let older = newest.body.split("before=").nth(1).expect("an Older messages link").split('"').next().unwrap().to_string();
        let page = b.get(&format!("/console/deliveries?before={older}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body.matches("<td><a href=\"/console/leads/").count() as i64, total - 200);
        assert!(page.body.contains("m000@example.com") && page.body.contains(">Newest</a>"));
        assert!(!page.body.contains("Older messages"));
        assert_eq!(b.get("/console/deliveries?before=%27%20OR%201%3D1").await.status, 400);
    }

    async fn a_sign_in_link_comes_by_email_through_a_real_smtp_server(backend: Backend) {
        let smtp = crate::smtp::SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| crate::consent::with_smtp(s, &smtp)).await;
        app.state.store.create_user("mo@example.com", "marketer", app.clock.now_ms()).await.unwrap();
        let mut b = Browser::new(&app);
        // Known or not, the same answer; only the account gets mail.
        let known = ask_link(&mut b, "Mo@Example.com").await;
        let unknown = ask_link(&mut b, "nobody@example.com").await;
        assert_eq!((known.status, unknown.status), (200, 200));
        assert!(known.body.contains("If mo@example.com has an account, a sign-in link is on its way"), "{}", known.body);
        assert_eq!(known.body.replace("mo@example.com", "X"), unknown.body.replace("nobody@example.com", "X").replace(&hidden(&unknown.body, "_login"), &hidden(&known.body, "_login")));
        // The link is queued once the answer has left (so the answer's timing is the same
        // for both): wait for that write, not for any clock.
        let mut sent = 0;
        for _ in 0..200 {
            sent += app.dispatch().await.sent;
            if sent > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(sent, 1);
        let mail = smtp.received();
        assert_eq!(mail.len(), 1);
        assert_eq!(mail[0].to, ["mo@example.com"]);
        let text = mail[0].parsed().body_text(0).unwrap().to_string();
        let start = text.find(&format!("{}/console/link/", app.address)).expect("the link is in the mail");
        let link = text[start..].split_whitespace().next().unwrap().to_string();
        assert!(!crate::helpers::raw(&app.db).await.strings("SELECT token_hash FROM sign_in_links").await.iter().any(|h| link.contains(h.as_str())), "only a hash is stored");

        // The link signs in once (after a click), then is used up.
        let mut mo = Browser::new(&app);
        assert_eq!(mo.get(&path_of(&link)).await.status, 200);
        assert_eq!(mo.post(&path_of(&link), &[]).await.status, 303);
        assert_eq!(mo.get("/console/leads").await.status, 200);
        assert_ne!(Browser::new(&app).post(&path_of(&link), &[]).await.status, 303, "used up");

        // Without the form's token, nothing is queued; a script asking again and again is throttled.
        let forged = b.post("/console/login/link", &[("email", "mo@example.com"), ("_login", "x")]).await;
        assert_eq!(forged.status, 403);
        let mut last = 0;
        for _ in 0..12 {
            last = ask_link(&mut b, "mo@example.com").await.status;
        }
        assert_eq!(last, 429);
        app.dispatch().await;
        assert!(smtp.received().len() <= 11, "at most the throttle's quota of mails");
    }

    async fn a_sign_in_mail_that_fails_is_retried_and_one_for_a_removed_account_is_dropped(backend: Backend) {
        let smtp = crate::smtp::SmtpServer::start();
        let app = TestApp::spawn_with(backend, |s| crate::consent::with_smtp(s, &smtp)).await;
        let now = app.clock.now_ms();
        let mo = app.state.store.create_user("mo@example.com", "marketer", now).await.unwrap().unwrap();
        let vi = app.state.store.create_user("vi@example.com", "viewer", now).await.unwrap().unwrap();
        app.state.store.queue_sign_in_mail(&mo.id, now).await.unwrap();
        app.state.store.queue_sign_in_mail(&vi.id, now).await.unwrap();
        assert!(app.state.store.remove_user("vi@example.com").await.unwrap());
        smtp.set_mode(crate::smtp::Mode::TempFail(1));
        let first = app.dispatch().await;
        assert_eq!((first.sent, first.failed), (0, 1), "{first:?}");
        assert!(smtp.received().is_empty());
        let later = app.dispatch_after(10 * 60_000).await;
        assert_eq!(later.sent, 1, "{later:?}");
        let mail = smtp.received();
        assert_eq!(mail.len(), 1);
        assert_eq!(mail[0].to, ["mo@example.com"], "nothing for the removed account");
    }
}
