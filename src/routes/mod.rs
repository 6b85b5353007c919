//! HTTP routes, one file per resource. Handlers are thin: extract -> domain -> store -> respond.

mod admin;
mod assets;
mod body;
mod consent;
mod console;
mod console_qualification;
mod health;
mod openapi;
mod pages;
mod qualification;
mod sequences;
mod submissions;
mod views;

use actix_web::{web, HttpRequest, HttpResponse};

pub use body::{deadline as body_deadline, BodyReads};

use crate::error::ApiError;
use crate::startup::AppState;

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
    .route("/v1/forms/{form_id}/views", web::post().to(views::view))
    .route(
        "/v1/forms/{form_id}/challenge",
        web::get().to(submissions::pow_challenge),
    )
    .route("/v1/forms", web::get().to(submissions::list_forms))
    .route("/v1/openapi.json", web::get().to(openapi::openapi_json))
    .route("/v1/admin/leads", web::get().to(admin::list_leads))
    .route(
        "/v1/admin/leads/import",
        web::post().to(admin::import_leads),
    )
    .route("/v1/admin/stats", web::get().to(admin::stats))
    .service(
        web::resource("/v1/admin/leads/{lead_id}")
            .route(web::get().to(admin::get_lead))
            .route(web::delete().to(admin::erase_lead)),
    )
    .route(
        "/v1/admin/leads/{lead_id}/restore",
        web::post().to(admin::restore_lead),
    )
    .route(
        "/v1/admin/leads/{lead_id}/export",
        web::get().to(admin::export_lead),
    )
    .route(
        "/v1/admin/submissions",
        web::get().to(admin::list_submissions),
    )
    .route(
        "/v1/admin/leads/{lead_id}/score",
        web::get().to(qualification::lead_score),
    )
    .route(
        "/v1/admin/leads/{lead_id}/stages",
        web::get().to(qualification::lead_stages),
    )
    .route(
        "/v1/admin/leads/{lead_id}/stage",
        web::post().to(qualification::set_stage),
    )
    .route(
        "/v1/admin/handoffs",
        web::get().to(qualification::list_handoffs),
    )
    .service(
        web::resource("/v1/admin/handoffs/{handoff_id}")
            .route(web::get().to(qualification::get_handoff))
            .route(web::post().to(qualification::move_handoff)),
    )
    .route(
        "/v1/admin/webhooks",
        web::get().to(qualification::list_endpoints),
    )
    .route(
        "/v1/admin/webhooks/deliveries",
        web::get().to(qualification::list_deliveries),
    )
    .route(
        "/v1/admin/webhooks/deliveries/{delivery_id}",
        web::get().to(qualification::get_delivery),
    )
    .route(
        "/v1/admin/webhooks/replay",
        web::post().to(qualification::replay),
    )
    .route(
        "/v1/admin/webhooks/{endpoint_id}/enable",
        web::post().to(qualification::enable_endpoint),
    )
    .route(
        "/v1/admin/sequences",
        web::get().to(sequences::list_sequences),
    )
    .route(
        "/v1/admin/leads/{lead_id}/sequences",
        web::get().to(sequences::lead_sequences),
    )
    .route(
        "/v1/inbound/email",
        web::post().to(sequences::inbound_email),
    )
    .service(get_or_head("/v1/r/{token}").to(sequences::click))
    .service(
        web::resource("/v1/handoffs/{token}")
            .app_data(
                web::FormConfig::default()
                    .limit(16 * 1024)
                    .error_handler(|e, _| {
                        ApiError::BadRequest("invalid_form", e.to_string()).into()
                    }),
            )
            .route(web::get().to(qualification::handoff_page))
            .route(web::post().to(qualification::handoff_submit)),
    )
    .service(get_or_head("/inlet.js").to(assets::script))
    .service(get_or_head("/inlet.css").to(assets::style))
    .service(get_or_head("/inlet-pow.js").to(assets::pow_solver))
    .service(get_or_head("/inlet/{version}/{file}").to(assets::pinned))
    .service(get_or_head("/assets/{name}").to(assets::file))
    .route("/v1/snippet", web::get().to(assets::describe))
    .service(
        web::resource("/v1/confirm/{token}")
            .route(web::get().to(consent::confirm_page))
            .route(web::post().to(consent::confirm)),
    )
    .service(get_or_head("/v1/downloads/{token}").to(consent::download))
    .route(
        "/v1/downloads/{token}/resend",
        web::post().to(consent::resend_download),
    )
    .service(
        web::resource("/v1/unsubscribe/{token}")
            .route(web::get().to(consent::unsubscribe_page))
            .route(web::post().to(consent::unsubscribe)),
    )
    .configure(console::configure)
    .route("/thanks", web::get().to(pages::thanks))
    .route("/", web::get().to(pages::index))
    .default_service(web::to(not_found));
}

/// A resource answering GET and HEAD (static files are often checked with HEAD).
fn get_or_head(path: &str) -> actix_web::Resource {
    web::resource(path)
        .guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// The client's address as the rate limiter sees it (trusted proxies honoured). Every
/// `X-Forwarded-For` line counts, in order, as one comma-separated list (RFC 9110 §5.3): a
/// proxy that adds a line of its own instead of appending to the last one (HAProxy's
/// `option forwardfor`) still has its entry read as the right-most. A line that is not text
/// counts as an entry that is not an address: the walk from the right stops there.
fn client_addr(req: &HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let lines: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().unwrap_or("not-text"))
        .collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    state.limits.client_ip(peer, forwarded.as_deref())
}

/// Who is acting, kept as the privacy setting allows (for the consent ledger).
fn actor(req: &HttpRequest, state: &AppState) -> crate::store::Actor {
    crate::store::Actor {
        client_ip: client_addr(req, state)
            .and_then(|ip| {
                crate::domain::ClientIp::from_ip(ip, state.settings.privacy.ip, state.ip_hash_key())
            })
            .map(|ip| ip.as_str().to_string()),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| crate::domain::clean_lossy(ua, 512)),
    }
}

/// A `form` filter: empty means every form, a configured id is that form, anything else is a
/// clear 400 (not an empty answer that looks like "no leads").
fn known_form<'a>(state: &AppState, form: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match form {
        None | Some("") => Ok(None),
        Some(f) if state.forms.get(f).is_some() => Ok(Some(f)),
        Some(f) => Err(ApiError::BadRequest(
            "invalid_query",
            format!("there is no form called '{f}'"),
        )),
    }
}

async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
