//! `POST /v1/forms/{id}/views`: a form became visible on a landing page (the embed script's
//! `navigator.sendBeacon`, a CORS-safelisted urlencoded body: no preflight, no cookie). Counted
//! in memory (see [`crate::views`]); nothing about the visitor is stored.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::submissions::{origin, read_body, resolve_form};
use crate::domain::{dimension, source_of, ClientIp, IpPrivacy};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::views::Visitor;

/// Largest view body: three attribution values.
const VIEW_BODY_LIMIT: usize = 4096;

/// What a view says about where the visitor came from (anything else is ignored).
#[derive(Deserialize, Default)]
struct ViewBody {
    utm_source: Option<String>,
    utm_campaign: Option<String>,
    referrer: Option<String>,
}

fn asks_not_to_be_tracked(req: &HttpRequest) -> bool {
    ["sec-gpc", "dnt"].iter().any(|name| {
        req.headers()
            .get(*name)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
    })
}

#[utoipa::path(
    post,
    path = "/v1/forms/{form_id}/views",
    tag = "capture",
    params(("form_id" = String, Path, description = "The form that became visible", example = "contact")),
    request_body(content = super::openapi::ViewBeacon, content_type = "application/x-www-form-urlencoded",
        description = "Where the visitor came from (the embed script's beacon)"),
    responses(
        (status = 204, description = "Counted (or views are off): nothing about the visitor is stored"),
        (status = 400, response = super::openapi::Problem),
        (status = 403, response = super::openapi::Problem),
        (status = 404, response = super::openapi::Problem),
        (status = 408, response = super::openapi::Problem),
        (status = 413, response = super::openapi::Problem),
        (status = 429, response = super::openapi::Problem),
    )
)]
pub async fn view(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let form = resolve_form(&state, &req, &path, origin(&req))?;
    let client = super::client_addr(&req, &state);
    state
        .limits
        .check_view(client)
        .await
        .map_err(|l| ApiError::RateLimited {
            retry_after_secs: l.retry_after_secs(),
        })?;
    let bytes = read_body(&req, body, VIEW_BODY_LIMIT).await?;
    let said: ViewBody = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
        ApiError::MalformedBody(
            "a view is form-urlencoded (utm_source, utm_campaign, referrer)".into(),
        )
    })?;
    if state.settings.views.enabled {
        let ip = client.and_then(|ip| ClientIp::from_ip(ip, IpPrivacy::Truncate, &[]));
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let visitor = if asks_not_to_be_tracked(&req) {
            Visitor::Private
        } else {
            Visitor::Counted {
                ip: ip.as_ref().map(ClientIp::as_str),
                user_agent: user_agent.get(..512).unwrap_or(user_agent),
            }
        };
        state.views.record(
            state.clock.now_ms(),
            &form.id,
            source_of(said.utm_source.as_deref(), said.referrer.as_deref()),
            dimension(said.utm_campaign.as_deref()),
            &visitor,
        );
    }
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
