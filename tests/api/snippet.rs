//! Serving the embed script, its stylesheet and the demo files: size budget, caching,
//! validators, Subresource Integrity, and the demo landing page. (What the script does in a
//! browser is tested in a real Chromium: `snippet/tests/`.)

use std::io::Read;

use base64::Engine;
use sha2::{Digest, Sha384};

use crate::helpers::{Backend, TestApp};

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_script_is_served_gzipped_within_the_6_kb_budget() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let plain = get(&app, "/inlet.js", &[]).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let plain = plain.bytes().await.unwrap();

    let zipped = get(&app, "/inlet.js", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "Accept-Encoding");
    let zipped = zipped.bytes().await.unwrap();
    assert!(
        zipped.len() <= inlet::snippet::SCRIPT_GZIP_BUDGET,
        "the script is {} bytes gzipped; the budget is {}",
        zipped.len(),
        inlet::snippet::SCRIPT_GZIP_BUDGET
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain, "gzip carries the same bytes");
    println!("inlet.js: {} bytes, {} gzipped", plain.len(), zipped.len());
}

#[tokio::test]
async fn the_script_revalidates_by_etag_and_pinned_copies_are_immutable_with_sri() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let latest = get(&app, "/inlet.js", &[]).await;
    let etag = latest.headers()["etag"].to_str().unwrap().to_string();
    assert!(latest.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=300"));
    assert_eq!(latest.headers()["access-control-allow-origin"], "*");
    assert_eq!(latest.headers()["x-content-type-options"], "nosniff");
    let body = latest.bytes().await.unwrap();

    let again = get(&app, "/inlet.js", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let changed = get(&app, "/inlet.js", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(changed.status(), 200);

    let info: serde_json::Value = get(&app, "/v1/snippet", &[]).await.json().await.unwrap();
    let version = info["version"].as_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let integrity = format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(&body))
    );
    assert_eq!(info["script"]["integrity"], integrity.as_str());
    assert!(info["embed"].as_str().unwrap().contains(&integrity));

    let pinned_path = format!("/inlet/{version}/inlet.js");
    assert_eq!(info["script"]["pinned_url"], app.url(&pinned_path).as_str());
    let pinned = get(&app, &pinned_path, &[]).await;
    assert_eq!(pinned.status(), 200);
    assert_eq!(
        pinned.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(pinned.bytes().await.unwrap(), body);
    let css = get(&app, &format!("/inlet/{version}/inlet.css"), &[]).await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    for missing in [
        "/inlet/0.0.0-old/inlet.js",
        "/inlet/x/../../Cargo.toml",
        "/assets/nope.pdf",
    ] {
        let r = get(&app, missing, &[]).await;
        assert_eq!(r.status(), 404, "{missing}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"], "not_found", "{missing}");
    }
    let head = app.client.head(app.url("/inlet.js")).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn the_demo_whitepaper_downloads_as_a_pdf_attachment() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let submitted = app
        .client
        .post(app.url("/v1/forms/whitepaper/submissions"))
        .json(&serde_json::json!({
            "email": "reader@example.com", "name": "Reader", "consent": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let body: serde_json::Value = submitted.json().await.unwrap();
    let url = body["download_url"].as_str().unwrap().to_string();
    let file = app.client.get(&url).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(
        file.headers()["content-disposition"],
        "attachment; filename=\"whitepaper.pdf\""
    );
    assert!(
        url.contains("/v1/downloads/"),
        "a signed link, not a public file: {url}"
    );
    let bytes = file.bytes().await.unwrap();
    assert_eq!(
        &bytes[..],
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/snippet/demo/whitepaper.pdf"
        ))
        .unwrap()
    );
}

#[tokio::test]
async fn the_demo_page_uses_the_script_under_a_strict_csp() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = get(&app, "/", &[]).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/inlet.js\" async></script>"));
    assert!(
        html.contains("<template data-inlet-popup=\"newsletter\" data-trigger=\"delay:15 exit\"")
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "no inline styles"
    );
    for id in ["contact", "whitepaper", "newsletter"] {
        assert!(
            html.contains(&format!(
                "<form data-inlet=\"{id}\" action=\"/v1/forms/{id}/submissions\" method=\"post\">"
            )),
            "{id}"
        );
    }
}
