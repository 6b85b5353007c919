//! The benchmark's bare ceiling: actix-web reading the same body the embed script sends
//! (`application/x-www-form-urlencoded`, the same size limit) into a struct and answering 201
//! with a small JSON body — no validation, no ids, no database. It measures what HTTP and body
//! parsing alone cost on this machine, so `bench/submissions.sh` can report every other target
//! as a share of it. It also answers the view beacon (`bench/console.sh`'s ceiling).
//!
//!   cargo run --release --example bare -- 127.0.0.1:8091

use std::collections::HashMap;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;

/// The fields the benchmark's body carries; unknown keys (attribution) land in `rest`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Submission {
    name: String,
    email: String,
    company: Option<String>,
    phone: Option<String>,
    message: Option<String>,
    #[serde(rename = "_idem")]
    idem: Option<String>,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

/// A form view as the embed script's beacon sends it.
#[derive(Deserialize)]
#[allow(dead_code)]
struct View {
    utm_source: Option<String>,
    utm_campaign: Option<String>,
    referrer: Option<String>,
}

/// The view beacon's ceiling: the same body read into a struct, 204.
async fn view(_path: web::Path<String>, _body: web::Form<View>) -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn submit(_path: web::Path<String>, body: web::Form<Submission>) -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({
        "message": "Thanks! We will get back to you shortly.",
        "email_len": body.email.len(),
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8091".into());
    let limit = inlet::config::Settings::default_with_demo_forms()
        .server
        .body_limit_bytes;
    HttpServer::new(move || {
        App::new()
            .app_data(web::FormConfig::default().limit(limit))
            .route("/v1/forms/{form_id}/submissions", web::post().to(submit))
            .route("/v1/forms/{form_id}/views", web::post().to(view))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    })
    .bind(bind)?
    .run()
    .await
}
