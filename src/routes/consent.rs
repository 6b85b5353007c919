//! Links people follow from emails: double opt-in confirmation, lead-magnet downloads and
//! unsubscribe. A GET never changes anything (mail scanners prefetch links); the change is a
//! POST from the page's button, or the RFC 8058 one-click POST a mailbox provider sends.

use std::collections::BTreeMap;

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::pages::Notice;
use crate::consent::{DownloadAsset, LinkError, LinkKind};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{ConfirmOutcome, ResendOutcome};

fn page(
    state: &AppState,
    status: StatusCode,
    title: &str,
    message: impl Into<String>,
) -> HttpResponse {
    state.pages.notice(
        status,
        &Notice {
            title,
            message: message.into(),
            ..Notice::default()
        },
    )
}

fn store_failed(state: &AppState, e: crate::store::StoreError) -> HttpResponse {
    state.pages.error_page(&ApiError::from(e), None, None)
}

/// The page for a link that is not ours or was altered.
fn invalid(state: &AppState) -> HttpResponse {
    page(
        state,
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        "It may be incomplete or altered. Copy the whole link from the email, or sign up again.",
    )
}

fn confirm_expired(state: &AppState) -> HttpResponse {
    page(
        state,
        StatusCode::GONE,
        "This confirmation link has expired",
        "Nothing was confirmed. Sign up again to get a new link.",
    )
}

/// `GET /v1/confirm/{token}`: shows a confirm button; confirms nothing by itself.
pub async fn confirm_page(token: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let link = match state.links.verify(LinkKind::Confirm, &token) {
        Ok(l) => l,
        Err(LinkError::Invalid) => return invalid(&state),
        Err(LinkError::Expired) => return confirm_expired(&state),
    };
    let pending = match state.store.pending_submission(&link.id).await {
        Ok(p) => p,
        Err(e) => return store_failed(&state, e),
    };
    match pending {
        None => page(&state, StatusCode::NOT_FOUND, "Nothing to confirm", "This sign-up no longer exists."),
        Some(p) if p.state == "confirmed" => page(
            &state,
            StatusCode::OK,
            "Already confirmed",
            "Your address is confirmed. There is nothing more to do.",
        ),
        Some(p) if p.expires_at_ms.is_some_and(|e| e <= state.clock.now_ms()) => confirm_expired(&state),
        Some(p) => state.pages.notice(
            StatusCode::OK,
            &Notice {
                title: "Confirm your subscription",
                message: format!(
                    "Please confirm that you want email from our {} list. Nothing is sent until you do.",
                    p.form_id
                ),
                action: Some(format!("/v1/confirm/{token}")),
                button: Some("Yes, confirm"),
                ..Notice::default()
            },
        ),
    }
}

/// `POST /v1/confirm/{token}`: confirms once; then the follow-up (and any download) is queued.
pub async fn confirm(
    req: HttpRequest,
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let link = match state.links.verify(LinkKind::Confirm, &token) {
        Ok(l) => l,
        Err(LinkError::Invalid) => return invalid(&state),
        Err(LinkError::Expired) => return confirm_expired(&state),
    };
    let pending = match state.store.pending_submission(&link.id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page(
                &state,
                StatusCode::NOT_FOUND,
                "Nothing to confirm",
                "This sign-up no longer exists.",
            )
        }
        Err(e) => return store_failed(&state, e),
    };
    let now = state.clock.now_ms();
    let form = state.forms.get(&pending.form_id);
    let email = crate::domain::EmailAddress::parse(&pending.email).ok();
    let (messages, download_until) = match (form, &email) {
        (Some(form), Some(email)) => (
            crate::mail::follow_ups(form, email, &state.settings.outbox),
            form.delivers_download
                .then(|| state.links.download_expiry_ms(now)),
        ),
        _ => (Vec::new(), None),
    };
    let outcome = state
        .store
        .confirm(
            &link.id,
            now,
            &super::actor(&req, &state),
            &messages,
            download_until,
        )
        .await;
    match outcome {
        Ok(ConfirmOutcome::Confirmed) => {
            state.outbox_wake.notify_one();
            tracing::info!(submission_id = %link.id, form_id = %pending.form_id, "double opt-in confirmed");
            let link = download_until.map(|until| state.links.download_url(&link.id, until));
            state.pages.notice(
                StatusCode::OK,
                &Notice {
                    title: "Thank you: you are confirmed",
                    message: form.map_or_else(String::new, |f| f.confirmed_message.clone()),
                    link_text: link.as_ref().map(|_| "Download your copy"),
                    link,
                    ..Notice::default()
                },
            )
        }
        Ok(ConfirmOutcome::AlreadyConfirmed) => page(
            &state,
            StatusCode::CONFLICT,
            "This link was already used",
            "Your address is confirmed already; nothing was sent again.",
        ),
        Ok(ConfirmOutcome::Expired) => confirm_expired(&state),
        Ok(ConfirmOutcome::NotFound) => page(
            &state,
            StatusCode::NOT_FOUND,
            "Nothing to confirm",
            "This sign-up no longer exists.",
        ),
        Err(e) => store_failed(&state, e),
    }
}

fn download_expired(state: &AppState, token: &str) -> HttpResponse {
    let renewable = state
        .links
        .verify_signature(LinkKind::Download, token)
        .is_ok_and(|link| state.links.renewable(&link));
    if !renewable {
        return download_too_old(state);
    }
    state.pages.notice(
        StatusCode::GONE,
        &Notice {
            title: "This download link has expired",
            message: "We can send a fresh link to the address this one was sent to.".into(),
            action: Some(format!("/v1/downloads/{token}/resend")),
            button: Some("Send me a fresh link"),
            ..Notice::default()
        },
    )
}

/// Past the renewal window: nothing can be asked for any more.
fn download_too_old(state: &AppState) -> HttpResponse {
    page(
        state,
        StatusCode::GONE,
        "This download link is too old to renew",
        "Please sign up again on the page where you found it.",
    )
}

/// `GET /v1/downloads/{token}`: streams the lead magnet (with range support) or redirects to
/// it, and counts the download.
pub async fn download(
    req: HttpRequest,
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let link = match state.links.verify(LinkKind::Download, &token) {
        Ok(l) => l,
        Err(LinkError::Invalid) => return invalid(&state),
        Err(LinkError::Expired) => return download_expired(&state, &token),
    };
    let record = match state.store.download(&link.id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return page(
                &state,
                StatusCode::NOT_FOUND,
                "Download not found",
                "This download is no longer available.",
            )
        }
        Err(e) => return store_failed(&state, e),
    };
    let now = state.clock.now_ms();
    if record.expires_at_ms <= now {
        return download_expired(&state, &token);
    }
    let Some(asset) = state.downloads.get(&record.form_id) else {
        return page(
            &state,
            StatusCode::NOT_FOUND,
            "Download not found",
            "This download is no longer offered.",
        );
    };
    // A download counts once: range requests that continue one (not starting at 0) do not.
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let continues = range
        .as_deref()
        .is_some_and(|r| !r.trim_start().starts_with("bytes=0-"));
    if !continues && req.method() == actix_web::http::Method::GET {
        if let Err(e) = state.store.record_download(&link.id, now).await {
            return store_failed(&state, e);
        }
    }
    match asset {
        DownloadAsset::Url(url) => HttpResponse::Found()
            .insert_header((header::LOCATION, url.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        DownloadAsset::File { path, name } => {
            match actix_files::NamedFile::open_async(path).await {
                Ok(file) => {
                    let mut resp = file
                        .set_content_disposition(attachment(name))
                        .into_response(&req);
                    resp.headers_mut().insert(
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static("private, no-store"),
                    );
                    resp
                }
                Err(e) => {
                    tracing::error!(error = %e, form_id = %record.form_id, "download file unreadable");
                    page(
                        &state,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Download unavailable",
                        "Please try again later.",
                    )
                }
            }
        }
        DownloadAsset::Builtin(name) => match state.assets.download(name) {
            Some(a) => bytes_with_range(range.as_deref(), a.body, a.content_type, name),
            None => page(
                &state,
                StatusCode::NOT_FOUND,
                "Download not found",
                "This download is no longer offered.",
            ),
        },
    }
}

fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_string())],
    }
}

/// Serves in-memory bytes as an attachment, honouring one `Range` (206 / 416).
fn bytes_with_range(
    range: Option<&str>,
    body: &'static [u8],
    content_type: &str,
    name: &str,
) -> HttpResponse {
    let len = body.len() as u64;
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, content_type))
        .insert_header(attachment(name))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CACHE_CONTROL, "private, no-store"));
    let Some(r) = range else {
        return resp.body(body);
    };
    match actix_files::HttpRange::parse(r, len) {
        Ok(ranges) if ranges.len() == 1 => {
            let (start, n) = (ranges[0].start, ranges[0].length);
            let (from, to) = (
                usize::try_from(start).unwrap_or(0),
                usize::try_from(start + n).unwrap_or(0),
            );
            resp.status(StatusCode::PARTIAL_CONTENT)
                .insert_header((
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{len}", start + n - 1),
                ))
                .body(&body[from..to.min(body.len())])
        }
        // Several ranges: the whole file is a valid answer.
        Ok(_) => resp.body(body),
        Err(_) => HttpResponse::RangeNotSatisfiable()
            .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
            .finish(),
    }
}

/// `POST /v1/downloads/{token}/resend`: from an expired link, mails a fresh one to the lead.
pub async fn resend_download(token: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Ok(link) = state.links.verify_signature(LinkKind::Download, &token) else {
        return invalid(&state);
    };
    if !state.links.renewable(&link) {
        return download_too_old(&state);
    }
    let now = state.clock.now_ms();
    let window = i64::try_from(
        state
            .settings
            .consent
            .confirm_resend_window_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX);
    let outcome = state
        .store
        .resend_download(
            &link.id,
            now,
            state.links.download_expiry_ms(now),
            window,
            state.settings.outbox.max_attempts,
        )
        .await;
    match outcome {
        Ok(ResendOutcome::Queued) => {
            state.outbox_wake.notify_one();
            page(
                &state,
                StatusCode::ACCEPTED,
                "A fresh link is on its way",
                "Check the inbox of the address you signed up with.",
            )
        }
        Ok(ResendOutcome::TooSoon) => page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "A fresh link was sent recently",
            "Check the inbox of the address you signed up with.",
        ),
        Ok(ResendOutcome::NotFound) => page(
            &state,
            StatusCode::NOT_FOUND,
            "Download not found",
            "This download is no longer available.",
        ),
        Err(e) => store_failed(&state, e),
    }
}

/// `GET /v1/unsubscribe/{token}`: asks; never unsubscribes by itself.
pub async fn unsubscribe_page(
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if state.links.verify(LinkKind::Unsubscribe, &token).is_err() {
        return invalid(&state);
    }
    state.pages.notice(
        StatusCode::OK,
        &Notice {
            title: "Unsubscribe",
            message: "Stop all marketing email to this address? Nothing changes until you click."
                .into(),
            action: Some(format!("/v1/unsubscribe/{token}")),
            button: Some("Unsubscribe"),
            hidden: BTreeMap::from([("List-Unsubscribe", "One-Click")]),
            ..Notice::default()
        },
    )
}

/// `POST /v1/unsubscribe/{token}`: RFC 8058 one-click (body `List-Unsubscribe=One-Click`) or
/// the page's button. No redirect, no cookie, no login; idempotent.
pub async fn unsubscribe(
    req: HttpRequest,
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Ok(link) = state.links.verify(LinkKind::Unsubscribe, &token) else {
        return invalid(&state);
    };
    match state
        .store
        .unsubscribe(&link.id, state.clock.now_ms(), &super::actor(&req, &state))
        .await
    {
        // An erased person is suppressed already.
        Ok(_) => {
            tracing::info!(lead_id = %link.id, "unsubscribed");
            page(
                &state,
                StatusCode::OK,
                "You are unsubscribed",
                "This address will get no more marketing email from us.",
            )
        }
        Err(e) => store_failed(&state, e),
    }
}
