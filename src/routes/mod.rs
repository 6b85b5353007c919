//! HTTP routes, one file per resource. Handlers are thin: extract -> domain -> store -> respond.

mod admin;
mod assets;
mod health;
mod pages;
mod submissions;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;

pub use pages::Pages;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::BadRequest("invalid_query", e.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::BadRequest("invalid_path", e.to_string()).into()),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics))
    .service(
        web::resource("/v1/forms/{form_id}/submissions")
            .route(web::post().to(submissions::submit))
            .route(web::method(actix_web::http::Method::OPTIONS).to(submissions::preflight)),
    )
    .route("/v1/forms", web::get().to(submissions::list_forms))
    .route("/v1/admin/leads", web::get().to(admin::list_leads))
    .route("/v1/admin/leads/{lead_id}", web::get().to(admin::get_lead))
    .route(
        "/v1/admin/submissions",
        web::get().to(admin::list_submissions),
    )
    .service(get_or_head("/inlet.js").to(assets::script))
    .service(get_or_head("/inlet.css").to(assets::style))
    .service(get_or_head("/inlet/{version}/{file}").to(assets::pinned))
    .service(get_or_head("/assets/{name}").to(assets::file))
    .route("/v1/snippet", web::get().to(assets::describe))
    .route("/thanks", web::get().to(pages::thanks))
    .route("/", web::get().to(pages::index))
    .default_service(web::to(not_found));
}

/// A resource answering GET and HEAD (static files are often checked with HEAD).
fn get_or_head(path: &str) -> actix_web::Resource {
    web::resource(path)
        .guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
