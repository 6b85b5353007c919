//! `POST /v1/forms/{form_id}/submissions` and its CORS preflight.
//!
//! Order of checks (cheapest first, body read last): form exists (404) -> origin allowed (403)
//! -> rate limits (429) -> content type (415) -> body size (413) -> body well-formed (400) ->
//! fields valid (422) -> stored (201 / 303, or 503).

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use futures::StreamExt;
use serde_json::json;

use crate::domain::ClientIp;
use crate::error::ApiError;
use crate::forms::{self, Form, ParseContext, SubmissionError};
use crate::startup::AppState;

/// How the client wants answers: JSON for scripts and API clients, HTML pages and redirects
/// for a person whose browser posted a plain form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    UrlEncoded,
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

fn negotiate(headers: &HeaderMap) -> Format {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let from_browser_form = matches!(
        media_type(headers).as_deref(),
        Some("application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain")
    );
    if from_browser_form && !wants_json {
        Format::Html
    } else {
        Format::Json
    }
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Only UTF-8 is accepted; a charset parameter naming anything else is refused.
    if let Some(cs) = raw
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("charset="))
    {
        if !matches!(cs.trim_matches('"'), "utf-8" | "utf8") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    match media_type(headers).as_deref() {
        Some("application/json") => Ok(BodyKind::Json),
        Some("application/x-www-form-urlencoded") => Ok(BodyKind::UrlEncoded),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

pub(super) fn origin(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
}

/// Adds the CORS response headers for an allowed origin.
fn cors(resp: &mut HttpResponseBuilder, origin: Option<&str>) {
    resp.insert_header((header::VARY, HeaderValue::from_static("Origin")));
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o));
        resp.insert_header((
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After, Idempotent-Replayed, X-Request-Id"),
        ));
    }
}

/// Checks the form and origin; shared by the preflight and the POST.
pub(super) fn resolve_form<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    id: &str,
    origin: Option<&str>,
) -> Result<&'a Form, ApiError> {
    let form = state
        .forms
        .get(id)
        .ok_or_else(|| ApiError::UnknownForm(id.to_string()))?;
    match origin {
        Some(o) if !form.origins.allows(o) => Err(ApiError::OriginNotAllowed(o.to_string())),
        Some(_) => Ok(form),
        // No Origin: a browser's same-origin GET-style post, or a script. With
        // `require_origin`, the page it came from must be an allowed one.
        None if form.require_origin => {
            let from = referer_origin(req).unwrap_or_else(|| "none".into());
            if form.origins.allows(&from) {
                Ok(form)
            } else {
                Err(ApiError::OriginNotAllowed(from))
            }
        }
        None => Ok(form),
    }
}

/// The origin (`scheme://host[:port]`) of the `Referer`, if it is an http(s) URL.
fn referer_origin(req: &HttpRequest) -> Option<String> {
    let referer = req.headers().get(header::REFERER)?.to_str().ok()?;
    let url = url::Url::parse(referer).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

pub async fn preflight(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let origin = origin(&req);
    match resolve_form(&state, &req, &path, origin) {
        Ok(_) => {
            let mut resp = HttpResponse::NoContent();
            cors(&mut resp, origin);
            resp.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Content-Type, Accept, Idempotency-Key, X-Request-Id",
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
                .finish()
        }
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

#[utoipa::path(
    post,
    path = "/v1/forms/{form_id}/submissions",
    tag = "capture",
    params(
        ("form_id" = String, Path, description = "The form's id", example = "contact"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and payload answer the first submission again"),
    ),
    request_body(
        description = "The form's fields and attribution. JSON answers JSON; a browser's form post (urlencoded, without `Accept: application/json`) is answered with a redirect or an HTML page.",
        content(
            (super::openapi::SubmissionFields = "application/json"),
            (super::openapi::SubmissionFields = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 201, description = "Stored: the lead is committed", body = super::openapi::SubmissionAccepted,
         headers(("Idempotent-Replayed" = String, description = "`true` when an earlier submission with this key is answered again"))),
        (status = 303, description = "A browser's form post: on to the thank-you page or the form's redirect"),
        (status = 400, response = super::openapi::Problem),
        (status = 403, response = super::openapi::Problem),
        (status = 404, response = super::openapi::Problem),
        (status = 408, response = super::openapi::Problem),
        (status = 409, response = super::openapi::Problem),
        (status = 413, response = super::openapi::Problem),
        (status = 415, response = super::openapi::Problem),
        (status = 422, response = super::openapi::Problem),
        (status = 429, response = super::openapi::Problem),
        (status = 503, response = super::openapi::Problem),
    )
)]
pub async fn submit(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let format = negotiate(req.headers());
    let origin = origin(&req);
    let form_label = state.forms.get(&path).map_or("unknown", |f| f.id.as_str());
    let outcome = accept(&req, &path, body, &state).await;
    let metric_outcome = match &outcome {
        Ok((_, rec, _)) if rec.replayed => "replayed",
        Ok((_, _, true)) => "spam",
        Ok(_) => "accepted",
        Err(ApiError::Validation(_) | ApiError::TooManyFields { .. }) => "invalid",
        Err(ApiError::RateLimited { .. }) => "rate_limited",
        Err(ApiError::ChallengeRequired { .. } | ApiError::ChallengeFailed(_)) => "challenge",
        Err(ApiError::Unavailable(_) | ApiError::Overloaded { .. }) => "unavailable",
        Err(_) => "rejected",
    };
    state
        .metrics
        .submissions
        .with_label_values(&[form_label, metric_outcome])
        .inc();

    // A disallowed or unknown origin gets no CORS headers: the browser hides the answer.
    let cors_origin =
        origin.filter(|o| state.forms.get(&path).is_some_and(|f| f.origins.allows(o)));
    match (outcome, format) {
        (Ok((form, rec, _)), Format::Json) => {
            let mut resp = HttpResponse::Created();
            cors(&mut resp, cors_origin);
            if rec.replayed {
                resp.insert_header(("Idempotent-Replayed", "true"));
            }
            let download_url = immediate_download(&state, form)
                .map(|until| state.links.download_url(&rec.submission_id, until));
            resp.insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({
                    "submission_id": rec.submission_id,
                    "message": form.success_message,
                    "download_url": download_url,
                    "confirmation_required": form.double_opt_in,
                }))
        }
        (Ok((form, rec, _)), Format::Html) => {
            let location = form.redirect_url.clone().unwrap_or_else(|| {
                let download = immediate_download(&state, form)
                    .map(|until| state.links.download_token(&rec.submission_id, until));
                // The page the form is on, signed, so the thank-you page can link back to it.
                let back = referer(&req).map(|url| (url, state.links.back_signature(url)));
                let mut query = vec![("form", form.id.as_str())];
                query.extend(download.as_deref().map(|d| ("download", d)));
                if let Some((url, sig)) = &back {
                    query.extend([("back", *url), ("sig", sig.as_str())]);
                }
                format!(
                    "/thanks?{}",
                    serde_urlencoded::to_string(&query).unwrap_or_default()
                )
            });
            HttpResponse::build(StatusCode::SEE_OTHER)
                .insert_header((header::LOCATION, location))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        (Err(e), Format::Json) => {
            let mut resp = HttpResponse::build(actix_web::ResponseError::status_code(&e));
            cors(&mut resp, cors_origin);
            e.decorate(&mut resp);
            resp.json(e.body())
        }
        (Err(e), Format::Html) => {
            state
                .pages
                .error_page(&e, referer(&req), state.forms.get(&path).map(AsRef::as_ref))
        }
    }
}

/// The page a form was posted from, when the browser says (an http(s) URL of sane length).
fn referer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .filter(|r| (r.starts_with("http://") || r.starts_with("https://")) && r.len() <= 2048)
}

/// A download form without double opt-in hands out its link at once (also on an idempotent
/// replay, and to spam, which gets the same answer as a person but no download behind it).
fn immediate_download(state: &AppState, form: &Form) -> Option<i64> {
    (form.delivers_download && !form.double_opt_in)
        .then(|| state.links.download_expiry_ms(state.clock.now_ms()))
}

/// The whole acceptance path; returns the form, what was stored, and whether it was spam.
async fn accept<'s>(
    req: &HttpRequest,
    form_id: &str,
    body: web::Payload,
    state: &'s AppState,
) -> Result<(&'s Form, crate::store::Recorded, bool), ApiError> {
    let form = resolve_form(state, req, form_id, origin(req))?;

    let client = super::client_addr(req, state);
    let rate_limited = |limited: crate::rate_limit::Limited| {
        state
            .metrics
            .rate_limited
            .with_label_values(&[limited.scope()])
            .inc();
        ApiError::RateLimited {
            retry_after_secs: limited.retry_after_secs(),
        }
    };
    // This instance's limits before the body is read; the shared ones (Redis) once the
    // request is parsed, with the mail caps, in one round trip.
    let admitted = state
        .limits
        .check(client, form.index)
        .map_err(rate_limited)?;

    let kind = body_kind(req.headers())?;
    let bytes = read_body(req, body, state.settings.server.body_limit_bytes).await?;
    let mut payload = match kind {
        BodyKind::Json => forms::parse_json(&bytes),
        BodyKind::UrlEncoded => forms::parse_urlencoded(&bytes),
    }
    .map_err(|e| match e {
        forms::PayloadError::TooManyKeys => ApiError::TooManyFields {
            max: forms::MAX_KEYS,
        },
        forms::PayloadError::Malformed(m) => ApiError::MalformedBody(m),
    })?;
    let challenge_response = crate::challenge::take_response(&mut payload);

    let ctx = ParseContext {
        now_ms: state.clock.now_ms(),
        client_ip: client
            .and_then(|ip| ClientIp::from_ip(ip, state.settings.privacy.ip, state.ip_hash_key())),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        idempotency_header: req
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap_or("\u{0}").to_string()),
    };
    let mut submission = forms::parse_submission(form, payload, ctx).map_err(|e| match e {
        SubmissionError::Invalid(fields) => ApiError::Validation(fields),
        SubmissionError::TooManyFields { max } => ApiError::TooManyFields { max },
        SubmissionError::BadIdempotencyKey => ApiError::BadRequest(
            "invalid_idempotency_key",
            "the idempotency key must be 1-128 characters of A-Z a-z 0-9 _ - . : and the \
             header and _idem field must agree"
                .into(),
        ),
    })?;
    // Fields first, so a person who mistyped does not spend their challenge.
    if challenge_unverified(state, form, challenge_response.as_deref(), client).await? {
        submission
            .spam
            .add(crate::domain::SpamSignal::ChallengeUnverified);
    }
    if admitted.burst {
        submission.spam.add(crate::domain::SpamSignal::Burst);
    }

    state.links.schedule(form, &mut submission);
    let plan = |submission: &crate::domain::NewSubmission| {
        crate::mail::plan_messages(
            form,
            submission,
            &state.settings.outbox,
            &state.settings.consent,
        )
    };
    let mut messages = plan(&submission);
    let recipients = crate::mail::capped_recipients(&messages);
    let mut confirmed = state
        .limits
        .confirm(client, &form.id, &recipients)
        .await
        .map_err(rate_limited)?;
    if confirmed.burst && !admitted.burst {
        // Across instances the client sent in a burst: spam after all, so no mail.
        submission.spam.add(crate::domain::SpamSignal::Burst);
        messages = plan(&submission);
    }
    if let Some(strongest) = submission
        .spam
        .strongest()
        .filter(|_| submission.quarantined())
    {
        state
            .metrics
            .spam
            .with_label_values(&[&form.id, strongest.as_str()])
            .inc();
    }

    crate::mail::hold_capped(&mut messages, |recipient| {
        confirmed.held(recipient.as_str()).map_or(Ok(()), |cap| {
            state
                .metrics
                .rate_limited
                .with_label_values(&[cap.scope()])
                .inc();
            Err(cap.reason())
        })
    });
    let has_messages = crate::mail::any_to_send(&messages);
    let spam = submission
        .quarantined()
        .then(|| submission.spam.to_string());
    // The shared limits' cells (when admitted ahead of Redis's answer) are taken while the
    // submission is written; the client hears back once both are done.
    let (recorded, ()) = tokio::join!(
        state.writer.submit(submission, messages),
        confirmed.settled()
    );
    let recorded = recorded.map_err(|e| match e {
        crate::store::writer::WriteError::Overloaded
        | crate::store::writer::WriteError::Stopped => ApiError::Overloaded {
            retry_after_secs: 1,
        },
        crate::store::writer::WriteError::Store(e) => ApiError::from(e),
    })?;
    if has_messages && !recorded.replayed {
        state.outbox_wake.notify_one();
    }
    tracing::info!(
        form_id = %form.id,
        lead_id = %recorded.lead_id,
        submission_id = %recorded.submission_id,
        replayed = recorded.replayed,
        spam = spam.as_deref(),
        "submission accepted"
    );
    Ok((form, recorded, spam.is_some()))
}

/// Checks the form's challenge, if it has one. `Ok(true)`: a CAPTCHA provider could not be
/// asked, so the submission is kept but treated as spam (stored, never mailed) rather than
/// lost or let through.
async fn challenge_unverified(
    state: &AppState,
    form: &Form,
    response: Option<&str>,
    client: Option<std::net::IpAddr>,
) -> Result<bool, ApiError> {
    use crate::challenge::{Challenge, ChallengeError};
    let Some(challenge) = &form.challenge else {
        return Ok(false);
    };
    let Some(response) = response else {
        return Err(ApiError::ChallengeRequired {
            challenge: challenge.describe(&form.id),
        });
    };
    match challenge {
        Challenge::Pow { .. } => {
            let solved = state
                .pow
                .check(&form.id, response, state.clock.now_secs())
                .map_err(ApiError::ChallengeFailed)?;
            let expires_ms =
                i64::try_from(solved.expires_at_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let now_ms = state.clock.now_ms();
            if state
                .store
                .spend_challenge(&solved.challenge, expires_ms, now_ms)
                .await?
            {
                Ok(false)
            } else {
                Err(ApiError::ChallengeFailed(ChallengeError::Spent))
            }
        }
        Challenge::Captcha(captcha) => {
            match crate::challenge::verify_captcha(&state.http, captcha, response, client).await {
                Ok(true) => Ok(false),
                Ok(false) => Err(ApiError::ChallengeFailed(ChallengeError::Invalid(
                    "the provider did not accept it",
                ))),
                Err(e) => {
                    tracing::warn!(form_id = %form.id, error = %e, "challenge unverified: kept as spam");
                    Ok(true)
                }
            }
        }
    }
}

/// `GET /v1/forms/{form_id}/challenge`: a fresh proof-of-work challenge (ALTCHA's format) for a
/// form that requires one. Signed, not stored: handing them out costs no database work.
#[utoipa::path(
    get,
    path = "/v1/forms/{form_id}/challenge",
    tag = "capture",
    params(("form_id" = String, Path, description = "A form with a proof-of-work challenge", example = "contact")),
    responses(
        (status = 200, description = "A challenge to solve (ALTCHA's format)", body = super::openapi::PowChallenge),
        (status = 403, response = super::openapi::Problem),
        (status = 404, response = super::openapi::Problem),
        (status = 429, response = super::openapi::Problem),
    )
)]
pub async fn pow_challenge(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let origin = origin(&req);
    let form = resolve_form(&state, &req, &path, origin)?;
    let Some(crate::challenge::Challenge::Pow { max_number }) = &form.challenge else {
        return Err(ApiError::NotFound);
    };
    let challenge = state
        .pow
        .issue(&form.id, *max_number, state.clock.now_secs());
    let mut resp = HttpResponse::Ok();
    cors(&mut resp, origin);
    Ok(resp
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(challenge))
}

/// Reads the body up to `limit` bytes; a declared or actual larger body is refused (413).
pub(super) async fn read_body(
    req: &HttpRequest,
    mut body: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut buf = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ApiError::BodyTimeout {
                    secs: req
                        .app_data::<web::Data<AppState>>()
                        .map_or(0, |s| s.settings.server.body_timeout_ms.div_ceil(1000)),
                }
            }
            e => ApiError::MalformedBody(format!("incomplete body: {e}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `GET /v1/forms`: the public definition of every form (what the embed script and people
/// building a page need; nothing secret).
#[utoipa::path(
    get,
    path = "/v1/forms",
    tag = "capture",
    responses((status = 200, description = "Every form's public definition", body = super::openapi::FormList))
)]
pub async fn list_forms(state: web::Data<AppState>) -> HttpResponse {
    let forms: Vec<serde_json::Value> = state
        .forms
        .all()
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "kind": f.kind,
                "honeypot": f.honeypot,
                "success_message": f.success_message,
                "challenge": f.challenge.as_ref().map(|c| c.describe(&f.id)),
                "fields": f.fields.iter().map(|d| json!({
                    "name": d.name, "type": d.kind, "required": d.required,
                    "max_length": d.max_length, "options": d.options, "label": d.label,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "forms": forms }))
}
