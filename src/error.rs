//! The one place where errors become HTTP responses.
//!
//! Every client-facing failure is an [`ApiError`]. Its `Display` is the safe message a client
//! sees; the cause chain (for logs) is kept in `Debug` via [`error_chain_fmt`]. The JSON shape
//! is stable and documented in the README:
//! `{"error": "<stable_code>", "message": "…", "fields": {"email": ["…"]}}`.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::store::StoreError;

/// Per-field messages, in field order, every bad field at once.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("the request body could not be read: {0}")]
    MalformedBody(String),
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("no form with id '{0}'")]
    UnknownForm(String),
    #[error("this form does not accept submissions from origin '{0}'")]
    OriginNotAllowed(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type must be application/json or application/x-www-form-urlencoded (UTF-8)")]
    UnsupportedMediaType,
    #[error("some fields are not valid")]
    Validation(FieldErrors),
    #[error("too many fields: at most {max} are accepted")]
    TooManyFields { max: usize },
    #[error("this idempotency key was already used for a different submission; send a new key")]
    IdempotencyKeyReused,
    /// The form needs a challenge; `challenge` tells the client which (public data only).
    #[error("this form needs a challenge to be solved first")]
    ChallengeRequired { challenge: serde_json::Value },
    #[error("{0}")]
    ChallengeFailed(crate::challenge::ChallengeError),
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// The console: no session, or it ended (pages answer with the sign-in page).
    #[error("please sign in first")]
    SignInRequired,
    /// Signed in, but not allowed (a role's limit, or a form without its CSRF token).
    #[error("{1}")]
    Forbidden(&'static str, String),
    #[error("not found")]
    NotFound,
    /// The thing changed state since the caller looked (a hand-off already answered).
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] StoreError),
    #[error("the server is busy; retry shortly")]
    Overloaded { retry_after_secs: u64 },
    #[error("an internal error occurred")]
    Internal(#[source] anyhow::Error),
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        error_chain_fmt(self, f)
    }
}

/// Writes an error and every `source()` below it, one per line: what logs should carry.
pub fn error_chain_fmt(e: &impl std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{e}")?;
    let mut current = e.source();
    while let Some(cause) = current {
        write!(f, "\n  caused by: {cause}")?;
        current = cause.source();
    }
    Ok(())
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<&'a FieldErrors>,
    /// With `challenge_required`: what to solve (kind, and where to get a proof-of-work
    /// challenge or the CAPTCHA's site key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<&'a serde_json::Value>,
}

impl ApiError {
    /// The stable, documented machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::BodyTimeout { .. } => "request_timeout",
            ApiError::BadRequest(code, _) => code,
            ApiError::UnknownForm(_) => "unknown_form",
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::TooManyFields { .. } => "too_many_fields",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::ChallengeRequired { .. } => "challenge_required",
            ApiError::ChallengeFailed(_) => "challenge_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unauthorized => "unauthorized",
            ApiError::SignInRequired => "sign_in_required",
            ApiError::Forbidden(code, _) => code,
            ApiError::NotFound => "not_found",
            ApiError::Conflict(code, _) => code,
            ApiError::Unavailable(_) => "database_unavailable",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn fields(&self) -> Option<&FieldErrors> {
        match self {
            ApiError::Validation(f) => Some(f),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Overloaded { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
            fields: self.fields(),
            challenge: match self {
                ApiError::ChallengeRequired { challenge } => Some(challenge),
                _ => None,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::KeyReused) {
            ApiError::IdempotencyKeyReused
        } else if e.is_unavailable() {
            ApiError::Unavailable(e)
        } else {
            ApiError::Internal(anyhow::Error::new(e))
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedBody(_) | ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnknownForm(_) | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::OriginNotAllowed(_) | ApiError::Forbidden(..) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_)
            | ApiError::TooManyFields { .. }
            | ApiError::IdempotencyKeyReused
            | ApiError::ChallengeRequired { .. }
            | ApiError::ChallengeFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized | ApiError::SignInRequired => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        self.decorate(&mut resp);
        resp.json(self.body())
    }
}

impl ApiError {
    /// Headers every rendering of this error carries (JSON or HTML).
    pub fn decorate(&self, resp: &mut actix_web::HttpResponseBuilder) {
        if matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_)) {
            tracing::error!(error = ?self, "request failed");
        }
        if let Some(secs) = self.retry_after() {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if matches!(self, ApiError::Unauthorized) {
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"inlet\""),
            ));
        }
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    }
}
