//! A table of hostile or malformed inputs. Each gets its documented 4xx with the stable JSON
//! error shape, and nothing is stored — checked after the whole table has run.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

struct Case {
    name: &'static str,
    form: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    status: u16,
    code: &'static str,
    /// For 422s: a field that must be named in `fields`.
    field: Option<&'static str>,
}

fn case(
    name: &'static str,
    ct: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        form: "contact",
        content_type: ct,
        body: body.into(),
        headers: vec![],
        status,
        code,
        field: None,
    }
}

/// A contact submission with one field replaced by a hostile value: must be 422 on that field.
fn bad_field(name: &'static str, field: &'static str, value: Value) -> Case {
    let mut body = json!({"name": "Ann", "email": "ann@example.com"});
    body[field] = value;
    Case {
        field: Some(field),
        ..case(name, Some(JSON), body.to_string(), 422, "validation_failed")
    }
}

fn bad_email(name: &'static str, email: &str) -> Case {
    bad_field(name, "email", json!(email))
}

fn with_header(mut c: Case, name: &'static str, value: String) -> Case {
    c.headers.push((name, value));
    c
}

fn cases() -> Vec<Case> {
    let valid = json!({"name": "Ann", "email": "ann@example.com"}).to_string();
    let many_keys: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("k{i}"), json!("v"))).collect();
    let many_extra: serde_json::Map<String, Value> = [
        ("name".to_string(), json!("Ann")),
        ("email".to_string(), json!("a@example.com")),
    ]
    .into_iter()
    .chain((0..25).map(|i| (format!("extra{i}"), json!("v"))))
    .collect();
    let many_form: String = (0..300)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join("&");
    let mut deep = "[".repeat(5000);
    deep.push_str(&"]".repeat(5000));
    vec![
        // --- not a well-formed body (400)
        case("empty JSON body", Some(JSON), "", 400, "malformed_body"),
        case(
            "truncated JSON",
            Some(JSON),
            "{\"name\": \"Ann\"",
            400,
            "malformed_body",
        ),
        case("JSON array", Some(JSON), "[1,2,3]", 400, "malformed_body"),
        case(
            "JSON string",
            Some(JSON),
            "\"ann@example.com\"",
            400,
            "malformed_body",
        ),
        case("JSON null", Some(JSON), "null", 400, "malformed_body"),
        case("JSON number", Some(JSON), "42", 400, "malformed_body"),
        case(
            "deeply nested JSON",
            Some(JSON),
            deep,
            400,
            "malformed_body",
        ),
        case(
            "trailing garbage after JSON",
            Some(JSON),
            format!("{valid} xyz"),
            400,
            "malformed_body",
        ),
        case(
            "invalid UTF-8 inside JSON",
            Some(JSON),
            b"{\"name\":\"\xff\xfe\",\"email\":\"a@b.co\"}".to_vec(),
            400,
            "malformed_body",
        ),
        case(
            "UTF-8 BOM before JSON",
            Some(JSON),
            [b"\xef\xbb\xbf".as_slice(), valid.as_bytes()].concat(),
            400,
            "malformed_body",
        ),
        case(
            "single quotes JSON",
            Some(JSON),
            "{'name':'Ann'}",
            400,
            "malformed_body",
        ),
        case(
            "urlencoded invalid percent UTF-8",
            Some(FORM),
            "name=%FF%FE&email=a%40b.co",
            400,
            "malformed_body",
        ),
        case(
            "urlencoded raw invalid UTF-8",
            Some(FORM),
            b"name=\xc3\x28&email=a%40b.co".to_vec(),
            400,
            "malformed_body",
        ),
        // --- size (413) and counts (422)
        case(
            "body over the 16 KiB limit",
            Some(JSON),
            json!({"name": "A", "email": "a@b.co", "message": "x".repeat(17_000)}).to_string(),
            413,
            "payload_too_large",
        ),
        case(
            "urlencoded body over the limit",
            Some(FORM),
            format!("name=A&email=a%40b.co&message={}", "y".repeat(17_000)),
            413,
            "payload_too_large",
        ),
        case(
            "300 JSON keys",
            Some(JSON),
            Value::Object(many_keys).to_string(),
            422,
            "too_many_fields",
        ),
        case(
            "300 urlencoded keys",
            Some(FORM),
            many_form,
            422,
            "too_many_fields",
        ),
        case(
            "25 unknown fields over the extra cap",
            Some(JSON),
            Value::Object(many_extra).to_string(),
            422,
            "too_many_fields",
        ),
        // --- content types (415)
        case(
            "text/plain",
            Some("text/plain"),
            valid.clone(),
            415,
            "unsupported_media_type",
        ),
        case(
            "no content type",
            None,
            valid.clone(),
            415,
            "unsupported_media_type",
        ),
        case(
            "multipart/form-data",
            Some("multipart/form-data; boundary=x"),
            "--x\r\n",
            415,
            "unsupported_media_type",
        ),
        case(
            "application/xml",
            Some("application/xml"),
            "<lead/>",
            415,
            "unsupported_media_type",
        ),
        case(
            "JSON declared as latin-1",
            Some("application/json; charset=iso-8859-1"),
            valid.clone(),
            415,
            "unsupported_media_type",
        ),
        case(
            "JSON with a bogus media type",
            Some("application/jsonx"),
            valid.clone(),
            415,
            "unsupported_media_type",
        ),
        // --- idempotency keys (400)
        with_header(
            case(
                "idempotency key with spaces",
                Some(JSON),
                valid.clone(),
                400,
                "invalid_idempotency_key",
            ),
            "idempotency-key",
            "has spaces".into(),
        ),
        with_header(
            case(
                "idempotency key too long",
                Some(JSON),
                valid.clone(),
                400,
                "invalid_idempotency_key",
            ),
            "idempotency-key",
            "k".repeat(200),
        ),
        with_header(
            case(
                "idempotency header and field disagree",
                Some(JSON),
                json!({"name": "Ann", "email": "a@b.co", "_idem": "two"}).to_string(),
                400,
                "invalid_idempotency_key",
            ),
            "idempotency-key",
            "one".into(),
        ),
        case(
            "idempotency field with a newline",
            Some(JSON),
            json!({"name": "Ann", "email": "a@b.co", "_idem": "a\nb"}).to_string(),
            400,
            "invalid_idempotency_key",
        ),
        // --- unknown form (404)
        Case {
            form: "no-such-form",
            ..case(
                "unknown form",
                Some(JSON),
                valid.clone(),
                404,
                "unknown_form",
            )
        },
        Case {
            form: "CONTACT",
            ..case(
                "form ids are case-sensitive",
                Some(JSON),
                valid.clone(),
                404,
                "unknown_form",
            )
        },
        // --- bad emails (422)
        bad_email("email without @", "not-an-email"),
        bad_email("email without a dot in the domain", "a@localhost"),
        bad_email("email with an IP literal", "a@[127.0.0.1]"),
        bad_email("email with a bare IP domain", "a@127.0.0.1"),
        bad_email(
            "email with CRLF header injection",
            "a@example.com\r\nBcc: victim@example.com",
        ),
        bad_email(
            "email with LF header injection",
            "a@example.com\nSubject: hi",
        ),
        bad_email(
            "email local part over 64",
            &format!("{}@example.com", "a".repeat(65)),
        ),
        bad_email(
            "email over 254 octets",
            &format!("a@{}.com", "b".repeat(250)),
        ),
        bad_email("email with a space", "a b@example.com"),
        bad_email("email with a display name", "Ann <ann@example.com>"),
        bad_email("email with two @", "a@@example.com"),
        bad_email(
            "email with a script",
            "<script>alert(1)</script>@example.com",
        ),
        bad_email("email with a non-ASCII local part", "jö@example.com"),
        bad_email("email with a NUL", "a\u{0}@example.com"),
        bad_email("email empty", ""),
        bad_email("email of spaces", "   "),
        bad_field("email as a number", "email", json!(123)),
        bad_field("email as an array", "email", json!(["a@example.com"])),
        bad_field(
            "email as an object",
            "email",
            json!({"value": "a@example.com"}),
        ),
        bad_field("email as a boolean", "email", json!(true)),
        bad_field("email as null", "email", Value::Null),
        // --- bad text (422)
        bad_field(
            "name with CRLF header injection",
            "name",
            json!("Ann\r\nBcc: victim@example.com"),
        ),
        bad_field("name with NUL", "name", json!("Ann\u{0}")),
        bad_field(
            "name with a bidi override",
            "name",
            json!("Ann\u{202E}gnp.exe"),
        ),
        bad_field("name with a bidi isolate", "name", json!("Ann\u{2066}x")),
        bad_field(
            "name with a line separator",
            "name",
            json!("Ann\u{2028}Bcc: x"),
        ),
        bad_field("name with a tab", "name", json!("Ann\tLee")),
        bad_field(
            "name with an escape character",
            "name",
            json!("Ann\u{1b}[31m"),
        ),
        bad_field("name with a C1 control", "name", json!("An\u{85}n")),
        bad_field("name over 200 characters", "name", json!("n".repeat(201))),
        bad_field("name as an array", "name", json!(["Ann"])),
        bad_field("name as an object", "name", json!({"first": "Ann"})),
        bad_field("name missing (null)", "name", Value::Null),
        bad_field("name only whitespace", "name", json!("   ")),
        bad_field("company with a newline", "company", json!("ACME\nInc")),
        bad_field("message with NUL", "message", json!("hello\u{0}")),
        bad_field(
            "message with a bidi override",
            "message",
            json!("hi \u{202D} there"),
        ),
        bad_field(
            "message over 5000 characters",
            "message",
            json!("m".repeat(5001)),
        ),
        bad_field("phone with letters", "phone", json!("call me maybe")),
        bad_field("phone with a script", "phone", json!("+1 555 <script>")),
        bad_field("phone with 30 digits", "phone", json!("1".repeat(30))),
        bad_field("phone with too few digits", "phone", json!("12")),
        bad_field(
            "unknown field with a control character",
            "budget",
            json!("10k\u{7}"),
        ),
        bad_field("unknown field as an array", "budget", json!(["10k"])),
        case(
            "duplicate urlencoded field",
            Some(FORM),
            "name=Ann&name=Eve&email=a%40b.co",
            422,
            "validation_failed",
        ),
        case(
            "unknown field with a hostile name",
            Some(FORM),
            "name=Ann&email=a%40b.co&%3Cscript%3E=1",
            422,
            "validation_failed",
        ),
        case(
            "missing required fields",
            Some(JSON),
            "{}",
            422,
            "validation_failed",
        ),
        // --- the download form's consent (422)
        Case {
            form: "whitepaper",
            field: Some("consent"),
            ..case(
                "consent not given",
                Some(JSON),
                json!({"email": "a@b.co", "name": "A"}).to_string(),
                422,
                "validation_failed",
            )
        },
        Case {
            form: "whitepaper",
            field: Some("consent"),
            ..case(
                "consent of an odd value",
                Some(JSON),
                json!({"email": "a@b.co", "name": "A", "consent": "maybe"}).to_string(),
                422,
                "validation_failed",
            )
        },
        Case {
            form: "whitepaper",
            field: Some("consent"),
            ..case(
                "consent as an object",
                Some(JSON),
                json!({"email": "a@b.co", "name": "A", "consent": {}}).to_string(),
                422,
                "validation_failed",
            )
        },
    ]
}

both_backends! {
    async fn every_hostile_input_gets_its_documented_4xx_and_stores_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let cases = cases();
        assert!(cases.len() >= 60, "the table has {} cases", cases.len());
        let mut failures = Vec::new();
        for c in &cases {
            let mut req = app
                .client
                .post(app.submissions_url(c.form))
                .header("accept", "application/json")
                .body(c.body.clone());
            if let Some(ct) = c.content_type {
                req = req.header("content-type", ct);
            }
            for (k, v) in &c.headers {
                req = req.header(*k, v.as_str());
            }
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let ok = status == c.status
                && body["error"] == c.code
                && body["message"].is_string()
                && c.field.is_none_or(|f| body["fields"][f].is_array());
            if !ok {
                failures.push(format!("{}: expected {} {} got {status} {text:.300}", c.name, c.status, c.code));
            }
        }
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
        assert!(app.submissions().await.is_empty(), "a hostile input stored a submission");
        assert!(app.leads().await.is_empty(), "a hostile input stored a lead");
    }

    async fn a_chunked_body_over_the_limit_is_refused_while_streaming(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..40).map(|_| Ok(vec![b' '; 1024])).collect();
        let resp = app
            .client
            .post(app.submissions_url("contact"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        assert!(app.submissions().await.is_empty());
    }

    async fn valid_text_that_looks_like_markup_is_stored_verbatim(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app
            .post_json("contact", &json!({"name": "<img src=x onerror=alert(1)>", "email": "x@example.com", "company": "=HYPERLINK(\"http://evil\")"}))
            .await;
        assert_eq!(resp.status(), 201, "markup is text, not an error; output escapes it");
        let sub = &app.leads().await[0]["latest_submission"];
        assert_eq!(sub["fields"]["name"], "<img src=x onerror=alert(1)>");
    }
}
