//! The `inlet` binary: configuration errors, check-config, migrate, export, test email.

use std::process::{Command, Output};

use crate::both_backends;
use crate::helpers::{contact, Backend, TestApp, TestDb};

/// Runs `inlet` with a clean environment (no inherited INLET_* or DATABASE_URL).
fn inlet(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inlet"));
    cmd.args(args).current_dir(dir).env("RUST_LOG", "error");
    for (k, _) in std::env::vars() {
        if k.starts_with("INLET_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run inlet")
}

/// `inlet check-config --config FILE` on `toml` written to `dir/inlet.toml`.
fn check_config_file(dir: &std::path::Path, toml: &str, env: &[(&str, &str)]) -> Output {
    let file = dir.join("inlet.toml");
    std::fs::write(&file, toml).unwrap();
    inlet(
        &["check-config", "--config", file.to_str().unwrap()],
        env,
        dir,
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = inlet(
        &["check-config"],
        &[
            (
                "INLET_SMTP_URL",
                "smtp://mailer:hunter2@mail.example.com:587?tls=required",
            ),
            ("INLET_ADMIN_TOKEN", "supersecrettoken-0123456789"),
            (
                "DATABASE_URL",
                "postgres://app:dbpassword@db.example.com/inlet",
            ),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for secret in ["hunter2", "supersecrettoken", "dbpassword"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("mail.example.com:587"));
    assert!(text.contains("id = \"newsletter\""));
    // Unset optional settings say what being unset means, under their sections.
    assert!(
        text.contains(
            "[admin]\n# token: a full-access key: every scope of the admin API; prefer scoped keys (inlet keys create --scope ...)\n# metrics_token: not set: GET /metrics is open (INLET_METRICS_TOKEN)\ntoken = \"[redacted]\""
        ),
        "{text}"
    );
    assert!(text.contains("# dkim: not set"), "{text}");
    assert!(
        text.contains("[redis]\n# url: not set: each instance limits on its own"),
        "{text}"
    );
    assert!(!text.contains("# smtp_url: not set"), "{text}");
    for section in [
        "[server]",
        "[database]",
        "[mail]",
        "[privacy]",
        "[rate_limit]",
        "[spam]",
        "[outbox]",
        "[writer]",
        "[consent]",
        "[retention]",
        "[log]",
        "[[forms]]",
    ] {
        assert!(
            format!("\n{text}").contains(&format!("\n{section}\n")),
            "{section} missing:\n{text}"
        );
    }
    let bare = stdout(&inlet(&["check-config"], &[], dir.path()));
    assert!(
        bare.contains("[admin]\n# token: not set: only API keys open the admin API"),
        "{bare}"
    );
    assert!(
        bare.contains("# smtp_url: not set: mail is written as .eml files"),
        "{bare}"
    );
}

#[test]
fn a_short_or_placeholder_admin_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for token in [
        "s3cret",
        "change-me-admin-token",
        "change-me-please-a-longer-token-0123",
    ] {
        for command in [&["check-config"][..], &["serve"][..]] {
            let out = inlet(command, &[("INLET_ADMIN_TOKEN", token)], dir.path());
            assert!(!out.status.success(), "{command:?} accepted {token}");
            let err = stderr(&out);
            assert!(err.contains("admin.token (INLET_ADMIN_TOKEN)"), "{err}");
            assert!(err.contains("at least 24 characters"), "{err}");
            assert!(!err.contains(token), "the token is not echoed: {err}");
        }
    }
}

#[test]
fn require_origin_without_a_list_of_origins_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config_file(
        dir.path(),
        r#"
[[forms]]
id = "open"
kind = "inline"
allowed_origins = ["*"]
require_origin = true
fields = [{ name = "email", type = "email", required = true }]
"#,
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("require_origin") && err.contains("allowed_origins"),
        "{err}"
    );
}

#[test]
fn a_config_file_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config_file(
        dir.path(),
        r#"
[server]
bind = "127.0.0.1:9999"
[[forms]]
id = "demo-request"
kind = "inline"
allowed_origins = ["https://www.example.com"]
fields = [
  { name = "email", type = "email", required = true },
  { name = "team_size", type = "select", options = ["1-10", "11-50"] },
]
"#,
        &[
            ("INLET_BIND", "127.0.0.1:7777"),
            ("INLET_DATABASE__SQLITE_CACHE_MIB", "24"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sqlite_cache_mib = 24"), "{text}");
    assert!(
        text.contains("127.0.0.1:7777") && !text.contains("9999"),
        "{text}"
    );
    assert!(
        text.contains("demo-request") && !text.contains("\"newsletter\""),
        "{text}"
    );
}

/// Arguments, environment, and the text the one error line must contain.
type ErrorCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn configuration_errors_are_one_line_naming_the_setting_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad-key.toml");
    std::fs::write(&bad_key, "[server]\nbindd = \"127.0.0.1:1\"\n").unwrap();
    let bad_form = dir.path().join("bad-form.toml");
    std::fs::write(
        &bad_form,
        "[[forms]]\nid = \"x\"\nkind = \"inline\"\nfields = [{ name = \"name\", type = \"text\" }]\n",
    )
    .unwrap();
    let bad_template = dir.path().join("bad-template.toml");
    std::fs::write(
        &bad_template,
        "[[forms]]\nid = \"t\"\nkind = \"inline\"\nfields = [{ name = \"email\", type = \"email\", required = true }]\n[forms.follow_up]\nhtml = \"<p>\\n{% if %}</p>\"\n",
    )
    .unwrap();
    let missing_file = dir.path().join("missing-download.toml");
    std::fs::write(
        &missing_file,
        "[[forms]]\nid = \"ebook\"\nkind = \"download\"\ndownload_file = \"ebook.pdf\"\nfields = [{ name = \"email\", type = \"email\", required = true }]\n",
    )
    .unwrap();
    let sequence = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("[[sequences]]\nid = \"s\"\nenroll = {{ on = \"downloaded\", form = \"whitepaper\" }}\n{body}"),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let bad_delay = sequence(
        "bad-delay.toml",
        "[[sequences.steps]]\nid = \"a\"\ndelay = \"3 weeks\"\nsubject = \"s\"\ntext = \"t\"\n",
    );
    let bad_zone = sequence("bad-zone.toml", "window = { time_zone = \"Mars/Olympus\" }\n[[sequences.steps]]\nid = \"a\"\nsubject = \"s\"\ntext = \"t\"\n");
    let bad_exit = sequence("bad-exit.toml", "exit = { forms = [\"nope\"] }\n[[sequences.steps]]\nid = \"a\"\nsubject = \"s\"\ntext = \"t\"\n");
    let bad_step_template = sequence(
        "bad-step.toml",
        "[[sequences.steps]]\nid = \"a\"\nsubject = \"s\"\ntext = \"{% if %}\"\n",
    );
    let cases: Vec<ErrorCase> = vec![
        (
            vec!["check-config", "--config", &bad_delay],
            vec![],
            "sequences[s].steps[a].delay",
        ),
        (
            vec!["check-config", "--config", &bad_zone],
            vec![],
            "sequences[s].window.time_zone",
        ),
        (
            vec!["check-config", "--config", &bad_exit],
            vec![],
            "sequences[s].exit.forms",
        ),
        (
            vec!["check-config", "--config", &bad_step_template],
            vec![],
            "sequences[s].steps[a].txt",
        ),
        (
            vec!["check-config"],
            vec![("INLET_REPLIES__ADDRESS", "replies+x@in.example.com")],
            "INLET_REPLIES__ADDRESS",
        ),
        (
            vec!["check-config"],
            vec![("INLET_SIGNING_KEYS", "short")],
            "INLET_SIGNING_KEYS",
        ),
        (
            vec!["check-config", "--config", missing_file.to_str().unwrap()],
            vec![],
            "forms[ebook].download_file",
        ),
        (
            vec!["check-config"],
            vec![("INLET_UNSUBSCRIBE_MAILTO", "not an address")],
            "INLET_UNSUBSCRIBE_MAILTO",
        ),
        (
            vec!["check-config"],
            vec![("DATABASE_URL", "mysql://db/inlet")],
            "DATABASE_URL",
        ),
        (
            vec!["serve"],
            vec![("DATABASE_URL", "mysql://db/inlet")],
            "DATABASE_URL",
        ),
        (
            vec!["check-config"],
            vec![("INLET_SMTP_URL", "http://mail")],
            "INLET_SMTP_URL",
        ),
        (
            vec!["check-config"],
            vec![("INLET_BODY_LIMIT_BYTES", "lots")],
            "INLET_BODY_LIMIT_BYTES",
        ),
        (
            vec!["check-config"],
            vec![("INLET_IP_PRIVACY", "hash")],
            "ip_hash_key",
        ),
        (
            vec!["check-config", "--config", bad_key.to_str().unwrap()],
            vec![],
            "bindd",
        ),
        (
            vec!["check-config", "--config", bad_form.to_str().unwrap()],
            vec![],
            "forms[x].fields",
        ),
        (
            vec!["check-config", "--config", bad_template.to_str().unwrap()],
            vec![],
            "forms[t].follow_up.html",
        ),
        (
            vec!["check-config", "--config", "/nonexistent/inlet.toml"],
            vec![],
            "/nonexistent/inlet.toml",
        ),
        (
            vec!["serve"],
            vec![("DATABASE_URL", "postgres://nobody@127.0.0.1:1/inlet")],
            "DATABASE_URL",
        ),
        (
            vec!["serve", "--bind", "not-an-address"],
            vec![],
            "INLET_BIND",
        ),
    ];
    for (args, env, needle) in cases {
        let out = inlet(&args, &env, dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "one error line for {args:?} {env:?}: {err}");
        assert!(
            lines[0].contains(needle),
            "{args:?} {env:?}: '{}' lacks {needle}",
            lines[0]
        );
    }
}

#[test]
fn send_test_email_without_smtp_writes_an_eml_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = inlet(
        &["send-test-email", "--to", "ops@example.com"],
        &[("INLET_MAIL_DIR", "outbox")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("written to"), "{}", stdout(&out));
    let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(
        eml.contains("To: ops@example.com") && eml.contains("Subject: Inlet test email"),
        "{eml}"
    );
}

#[test]
fn send_test_email_to_a_refused_smtp_port_says_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let out = inlet(
        &["send-test-email", "--to", "ops@example.com"],
        &[("INLET_SMTP_URL", "smtp://127.0.0.1:1")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is the SMTP server running"),
        "{}",
        stderr(&out)
    );
}

both_backends! {
    async fn migrate_creates_the_schema_and_is_repeatable(backend: Backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            let out = inlet(&["migrate"], &[("DATABASE_URL", &db.url())], dir.path());
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }

    async fn leads_export_writes_csv_with_formulas_neutralised_and_jsonl(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut a = contact("first@example.com");
        a["company"] = "=HYPERLINK(\"http://evil\",\"x\")".into();
        a["name"] = "@SUM(A1)".into();
        a["utm_source"] = "-2+3".into();
        app.post_json("contact", &a).await;
        app.post_json("newsletter", &serde_json::json!({"email": "second@example.com", "name": "+Plus"})).await;
        let mut spam = contact("spam@example.com");
        spam["_gotcha"] = "y".into();
        app.post_json("contact", &spam).await;

        let url = app.db.url();
        let out = inlet(&["leads", "export", "--format", "csv"], &[("DATABASE_URL", &url)], app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let csv = stdout(&out);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2, "spam is not exported:\n{csv}");
        assert_eq!(&rows[0][col("email")], "first@example.com");
        assert_eq!(&rows[0][col("company")], "'=HYPERLINK(\"http://evil\",\"x\")");
        assert_eq!(&rows[0][col("name")], "'@SUM(A1)");
        assert_eq!(&rows[0][col("utm_source")], "'-2+3");
        assert_eq!(&rows[1][col("name")], "'+Plus");

        let out = inlet(&["leads", "export", "--format", "jsonl", "--form", "newsletter"], &[("DATABASE_URL", &url)], app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["email"], "second@example.com");
        assert_eq!(lines[0]["latest_submission"]["fields"]["name"], "+Plus", "JSON keeps values exact");
    }

    async fn exports_carry_each_leads_status_and_filter_by_it(backend: Backend) {
        const KEY: &str = "export test signing key 0123456789abcdef";
        let app = TestApp::spawn_with(backend, |s| {
            s.consent.signing_keys = vec![secrecy::SecretString::from(KEY)];
        })
        .await;
        app.post_json("contact", &contact("active@example.com")).await;
        app.post_json("newsletter", &serde_json::json!({"email": "pending@example.com"})).await;
        let r = app.post_json("newsletter", &serde_json::json!({"email": "confirmed@example.com"})).await;
        let id = r.json::<serde_json::Value>().await.unwrap()["submission_id"].as_str().unwrap().to_string();
        let token = inlet::consent::Signer::new([KEY.as_bytes()])
            .sign(inlet::consent::LinkKind::Confirm, &id, inlet::clock::Clock::system().now_secs() + 3600);
        let done = app.client.post(app.url(&format!("/v1/confirm/{token}"))).send().await.unwrap();
        assert_eq!(done.status(), 200);
        app.post_json("contact", &contact("leaver@example.com")).await;
        let url = app.db.url();
        let env = [("DATABASE_URL", url.as_str())];
        assert!(inlet(&["leads", "unsubscribe", "leaver@example.com"], &env, app.dir.path()).status.success());

        let out = inlet(&["leads", "export", "--format", "csv"], &env, app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let csv = stdout(&out);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let mut got: Vec<(String, String, bool)> = reader
            .records()
            .map(Result::unwrap)
            .map(|r| (r[col("email")].to_string(), r[col("status")].to_string(), !r[col("confirmed_at")].is_empty()))
            .collect();
        got.sort();
        assert_eq!(got, vec![
            ("active@example.com".into(), "active".into(), false),
            ("confirmed@example.com".into(), "confirmed".into(), true),
            ("leaver@example.com".into(), "unsubscribed".into(), false),
            ("pending@example.com".into(), "pending".into(), false),
        ]);

        let out = inlet(&["leads", "export", "--format", "jsonl", "--status", "active,confirmed"], &env, app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let mut mailable: Vec<String> = stdout(&out).lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["email"].as_str().unwrap().to_string())
            .collect();
        mailable.sort();
        assert_eq!(mailable, ["active@example.com", "confirmed@example.com"], "only people who may be mailed");
        let leads = app.leads().await;
        let status = |e: &str| leads.iter().find(|l| l["email"] == e).unwrap()["status"].clone();
        assert_eq!(status("pending@example.com"), "pending", "the admin API says it too");
    }

    async fn leads_show_unsubscribe_and_erase_work_by_address(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut c = contact("cli.person@example.com");
        c["name"] = "Cli Person".into();
        app.post_json("contact", &c).await;
        let url = app.db.url();
        let env = [("DATABASE_URL", url.as_str())];

        let out = inlet(&["leads", "show", "CLI.Person@example.com"], &env, app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["lead"]["email"], "cli.person@example.com");
        assert_eq!(record["submissions"][0]["fields"]["name"], "Cli Person");
        assert_eq!(record["suppressed"], false);

        let out = inlet(&["leads", "unsubscribe", "cli.person@example.com"], &env, app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let out = inlet(&["leads", "show", "cli.person@example.com"], &env, app.dir.path());
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["suppressed"], true);

        let out = inlet(&["leads", "erase", "cli.person@example.com"], &env, app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("1 submissions removed"), "{}", stdout(&out));
        let out = inlet(&["leads", "show", "cli.person@example.com"], &env, app.dir.path());
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("no lead with that address"));
        assert!(app.leads().await.is_empty());

        let out = inlet(&["retention"], &env, app.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["spam_submissions_deleted"], 0);
    }
}

#[test]
fn snippet_prints_pinned_tags_with_the_integrity_of_the_served_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = inlet(
        &["snippet"],
        &[("INLET_PUBLIC_URL", "https://leads.example.com/")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let assets = inlet::snippet::Assets::load();
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!(
        "<script src=\"https://leads.example.com/inlet/{version}/inlet.js\" integrity=\"{}\" crossorigin=\"anonymous\" async></script>",
        assets.script.integrity
    )), "{text}");
    assert!(text.contains(&assets.style.integrity), "{text}");
    let json = inlet(&["snippet", "--json"], &[], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["version"], version);
    assert_eq!(v["script"]["url"], "http://127.0.0.1:8080/inlet.js");
}

#[test]
fn check_config_checks_the_redis_url_and_warns_when_shared_limits_have_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let out = inlet(
        &["check-config"],
        &[("INLET_REDIS_URL", "http://nope")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("redis.url (INLET_REDIS_URL)"),
        "{}",
        stderr(&out)
    );

    let out = inlet(
        &["check-config"],
        &[("INLET_REDIS_URL", "redis://:s3cret@10.0.0.5:6379/2")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("s3cret"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("server.trusted_proxies is empty"),
        "{}",
        stderr(&out)
    );
    let behind = inlet(
        &["check-config"],
        &[
            ("INLET_REDIS_URL", "redis://10.0.0.5:6379"),
            ("INLET_TRUSTED_PROXIES", "10.0.0.1"),
        ],
        dir.path(),
    );
    assert!(
        !stderr(&behind).contains("trusted_proxies is empty"),
        "{}",
        stderr(&behind)
    );
}

#[test]
fn check_config_warns_about_a_form_that_would_relay_typed_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config_file(
        dir.path(),
        r#"
[[forms]]
id = "chatty"
kind = "inline"
allowed_origins = ["*"]
personalize_unconfirmed = true
fields = [{ name = "email", type = "email", required = true }, { name = "name", type = "text" }]
"#,
        &[],
    );
    assert!(
        out.status.success(),
        "a warning, not an error: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning: form 'chatty': personalize_unconfirmed"),
        "{err}"
    );
    assert!(err.contains("INLET_SUPPRESSION_KEY"), "{err}");
    let quiet = inlet(
        &["check-config"],
        &[(
            "INLET_SUPPRESSION_KEY",
            "a suppression key of 32 characters or more",
        )],
        dir.path(),
    );
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_ready_inlet_and_1_otherwise() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let url = app.address.clone();
    let ok = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || inlet(&["healthcheck", "--url", &url], &[], &dir)
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("ready"));
    let port = crate::smtp::SmtpServer::reserve_port();
    let down = inlet(
        &["healthcheck", "--url", &format!("http://127.0.0.1:{port}")],
        &[],
        dir.path(),
    );
    assert_eq!(down.status.code(), Some(1));
    assert!(stderr(&down).contains("not ready"), "{}", stderr(&down));
}
