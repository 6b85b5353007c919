//! The benchmark's ceiling: the same actix-web stack and the same request work as
//! `POST /v1/forms/{id}/submissions` — body read with the size limit, parsed (JSON or
//! form-urlencoded, as the embed script sends), validated
//! against the real form into a `NewSubmission`, a 201 with fresh ids — but no database.
//! `bench/submissions.sh` reports each database's throughput as a ratio to this.
//!
//!   cargo run --release --example ceiling -- 127.0.0.1:8090

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use inlet::config::Settings;
use inlet::forms::{parse_json, parse_submission, parse_urlencoded, FormRegistry, ParseContext};
use serde_json::json;

async fn submit(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    forms: web::Data<FormRegistry>,
) -> HttpResponse {
    let Some(form) = forms.get(&path) else {
        return HttpResponse::NotFound().finish();
    };
    let form_encoded = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed = if form_encoded {
        parse_urlencoded(&body)
    } else {
        parse_json(&body)
    };
    let Ok(payload) = parsed else {
        return HttpResponse::BadRequest().finish();
    };
    let ctx = ParseContext {
        now_ms: chrono::Utc::now().timestamp_millis(),
        client_ip: None,
        user_agent: req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        idempotency_header: None,
    };
    match parse_submission(form, payload, ctx) {
        Ok(sub) => HttpResponse::Created().json(json!({
            "submission_id": uuid::Uuid::now_v7().to_string(),
            "lead_id": uuid::Uuid::now_v7().to_string(),
            "message": form.success_message,
            "download_url": null,
            "form": sub.form_id,
        })),
        Err(_) => HttpResponse::UnprocessableEntity().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let settings = Settings::default_with_demo_forms();
    let forms = web::Data::new(FormRegistry::build(&settings).map_err(std::io::Error::other)?);
    HttpServer::new(move || {
        App::new()
            .app_data(forms.clone())
            .app_data(web::PayloadConfig::new(settings.server.body_limit_bytes))
            .route("/v1/forms/{form_id}/submissions", web::post().to(submit))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    })
    .bind(bind)?
    .run()
    .await
}
