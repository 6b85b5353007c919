//! `/v1/admin/*`: reading leads, behind the bearer token from the config.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::keys::{self, Scope};
use crate::startup::AppState;
use crate::store::{Cursor, LeadQuery, SubmissionQuery};
use crate::tokens;

/// Admin answers hold personal data: never cached anywhere.
fn no_store(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Proof that a request carries a credential allowed `S`'s scope: the admin token (every
/// scope) or a live API key with that scope; then `T`, the handler's query (`()` for none),
/// extracted only after that. The first argument of every admin handler, so a caller
/// without a valid credential gets 401 whatever else is wrong with the request (it learns no
/// parameter names from a 400), a key without the scope gets 403, and a client that keeps
/// guessing gets 429 for a while. (Extractors given side by side are polled together, so a
/// query that fails at once would answer before a credential looked up in the database.)
pub struct Admin<S: Need, T = ()>(pub T, PhantomData<S>);

/// The scope a handler needs, as a type (the handler's signature says it).
pub trait Need: 'static {
    const SCOPE: Scope;
}

macro_rules! needs {
    ($($name:ident => $scope:ident),* $(,)?) => {$(
        pub struct $name;
        impl Need for $name {
            const SCOPE: Scope = Scope::$scope;
        }
    )*};
}

needs! {
    LeadsRead => LeadsRead,
    LeadsExport => LeadsExport,
    LeadsWrite => LeadsWrite,
    LeadsErase => LeadsErase,
    LeadsImport => LeadsImport,
    StatsRead => StatsRead,
    WebhooksManage => WebhooksManage,
}

impl<S: Need, T> FromRequest for Admin<S, T>
where
    T: FromRequest + 'static,
    T::Error: Into<actix_web::Error>,
{
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Admin<S, T>, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(ApiError::Unauthorized)?
                .clone();
            authorize(&req, &state, S::SCOPE).await?;
            let then = T::from_request(&req, &mut Payload::None)
                .await
                .map_err(Into::into)?;
            Ok(Admin(then, PhantomData))
        })
    }
}

/// A key's last use is written at most this often (a busy integration would otherwise make
/// every read a write).
const TOUCH_EVERY_MS: i64 = 60_000;

async fn authorize(req: &HttpRequest, state: &AppState, scope: Scope) -> Result<(), ApiError> {
    let token = state.settings.admin.token.as_ref();
    check_bearer(req, state, token, |given| async move {
        let Some(given) = given.filter(|g| keys::key_shaped(g)) else {
            return Ok(false);
        };
        let Some(key) = state
            .store
            .live_api_key(&tokens::token_hash(&given))
            .await?
        else {
            return Ok(false);
        };
        let allowed = keys::Scopes::parse(&key.scopes).is_ok_and(|s| s.allows(scope));
        if !allowed {
            return Err(ApiError::Forbidden(
                "insufficient_scope",
                format!("this API key does not have the scope {scope}"),
            ));
        }
        let now = state.clock.now_ms();
        if key
            .last_used_at_ms
            .is_none_or(|t| now - t >= TOUCH_EVERY_MS)
        {
            state.store.touch_api_key(&key.id, now).await?;
        }
        Ok(true)
    })
    .await
}

/// The request's bearer credential against `expected` (none configured: that matches
/// nobody), then against `other` (API keys; `None` where there are none), with failed
/// guesses counted per client IP: past the quota the client gets 429 for a while, the right
/// credential included. Shared by the admin API and a protected `/metrics`.
pub(super) async fn check_bearer<F, Fut>(
    req: &HttpRequest,
    state: &AppState,
    expected: Option<&secrecy::SecretString>,
    other: F,
) -> Result<(), ApiError>
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<bool, ApiError>>,
{
    let client = super::client_addr(req, state);
    if let Some(wait) = state.limits.admin_refused(client).await {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let given = bearer(req);
    if given.is_some_and(|g| token_matches(g, expected)) {
        return Ok(());
    }
    if other(given.map(str::to_owned)).await? {
        return Ok(());
    }
    match state.limits.admin_failed(client).await {
        Some(wait) => {
            tracing::warn!("admin API: repeated failed credentials; client refused for a while");
            Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
        }
        None => Err(ApiError::Unauthorized),
    }
}

/// The credential of `Authorization: Bearer <token>` (the scheme in any case, RFC 6750 /
/// RFC 9110 §11.1).
pub(super) fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// `given` against the configured token. With no token configured, nothing matches. Digests
/// of both are compared in constant time, so neither the position of the first difference
/// nor the token's length shows in the timing.
pub(super) fn token_matches(given: &str, expected: Option<&secrecy::SecretString>) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.expose_secret().as_bytes()),
    );
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    form: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch.
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    /// Submissions only: `true` (only spam) or `false` (no spam).
    spam: Option<bool>,
    /// Submissions only.
    lead_id: Option<String>,
    /// Leads only: `true` lists the quarantined leads (every submission quarantined).
    quarantined: Option<bool>,
    /// Leads only: addresses that start with this (case-insensitive).
    q: Option<String>,
    /// Leads only: with a submission from this source (`utm_source`, else the referring host,
    /// else `direct`).
    source: Option<String>,
    /// Leads only: `oldest` (the default) or `newest` first.
    order: Option<String>,
    /// Leads only: with a submission from this campaign (`utm_campaign`).
    campaign: Option<String>,
    /// Leads only: the address, or a typed name or company, starts with this
    /// (case-insensitive).
    search: Option<String>,
}

/// A search as the lead list takes it: trimmed, lower-cased (addresses are stored
/// normalised), at most an address's length.
pub(super) fn email_prefix(q: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    if q.chars().count() > 254 || q.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "the search must be at most 254 characters of text".into(),
        ));
    }
    Ok(Some(q.to_lowercase()))
}

/// A search for names and companies as well: its key (see [`crate::domain::search_key`]),
/// none for a search with an `@` (an address).
pub(super) fn name_prefix(q: Option<&str>) -> Result<Option<String>, ApiError> {
    Ok(email_prefix(q)?
        .filter(|q| !q.contains('@'))
        .and_then(|q| crate::domain::search_key(&q)))
}

pub fn parse_time(name: &'static str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::BadRequest(
                "invalid_query",
                format!("{name} must be an RFC 3339 time or milliseconds since the epoch"),
            )
        })
}

struct Common {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    after: Option<Cursor>,
    limit: u32,
}

fn common(p: &ListParams) -> Result<Common, ApiError> {
    let after = p
        .cursor
        .as_deref()
        .map(|c| {
            Cursor::parse(c).ok_or_else(|| {
                ApiError::BadRequest("invalid_cursor", "the cursor is not valid".into())
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "limit must be 1 to 500".into(),
        ));
    }
    Ok(Common {
        since_ms: p
            .since
            .as_deref()
            .map(|v| parse_time("since", v))
            .transpose()?,
        until_ms: p
            .until
            .as_deref()
            .map(|v| parse_time("until", v))
            .transpose()?,
        after,
        limit,
    })
}

#[utoipa::path(
    get,
    path = "/v1/admin/leads",
    tag = "admin",
    params(ListParams),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "A page of leads, each with its latest matching submission", body = super::openapi::LeadPage),
        super::openapi::AdminErrors,
    )
)]
pub async fn list_leads(
    Admin(params, _): Admin<LeadsRead, web::Query<ListParams>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let c = common(&params)?;
    let page = state
        .store
        .list_leads(&LeadQuery {
            form_id: params.form.clone(),
            since_ms: c.since_ms,
            until_ms: c.until_ms,
            quarantined: params.quarantined.unwrap_or(false),
            email_prefix: email_prefix(params.q.as_deref().or(params.search.as_deref()))?,
            name_prefix: name_prefix(params.search.as_deref())?,
            campaign: crate::domain::dimension(params.campaign.as_deref()),
            source: crate::domain::dimension(params.source.as_deref()),
            newest_first: match params.order.as_deref() {
                None | Some("oldest") => false,
                Some("newest") => true,
                Some(_) => {
                    return Err(ApiError::BadRequest(
                        "invalid_query",
                        "order must be oldest or newest".into(),
                    ))
                }
            },
            after: c.after,
            limit: c.limit,
        })
        .await?;
    let status = state.store.lead_statuses(&page.items).await?;
    let leads: Vec<_> = page
        .items
        .iter()
        .map(|l| crate::export::lead_json(l, status.get(&l.id).copied()))
        .collect();
    Ok(no_store(
        json!({ "leads": leads, "next_cursor": page.next_cursor }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/admin/submissions",
    tag = "admin",
    params(ListParams),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "A page of submissions", body = super::openapi::SubmissionPage),
        super::openapi::AdminErrors,
    )
)]
pub async fn list_submissions(
    Admin(params, _): Admin<LeadsRead, web::Query<ListParams>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let c = common(&params)?;
    let page = state
        .store
        .list_submissions(&SubmissionQuery {
            form_id: params.form.clone(),
            lead_id: params.lead_id.clone(),
            spam: params.spam,
            since_ms: c.since_ms,
            until_ms: c.until_ms,
            after: c.after,
            limit: c.limit,
        })
        .await?;
    let items: Vec<_> = page
        .items
        .iter()
        .map(crate::export::submission_json)
        .collect();
    Ok(no_store(
        json!({ "submissions": items, "next_cursor": page.next_cursor }),
    ))
}

/// `GET /v1/admin/leads/{id}`: one lead with every submission and the status of every email.
#[utoipa::path(
    get,
    path = "/v1/admin/leads/{lead_id}",
    tag = "admin",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The lead, every submission and every email", body = super::openapi::LeadDetail),
        super::openapi::AdminErrors,
    )
)]
pub async fn get_lead(
    _admin: Admin<LeadsRead>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let Some((email, created, updated, count)) = state.store.get_lead(&id).await? else {
        return Err(ApiError::NotFound);
    };
    let submissions = state
        .store
        .list_submissions(&SubmissionQuery {
            lead_id: Some(id.clone()),
            limit: 500,
            ..SubmissionQuery::default()
        })
        .await?;
    let emails = state.store.lead_messages(&id).await?;
    let emails: Vec<_> = emails
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "kind": m.kind,
                "form_id": m.form_id,
                "submission_id": m.submission_id,
                "recipient": m.recipient,
                "status": m.status,
                "attempts": m.attempts,
                "max_attempts": m.max_attempts,
                "last_error": m.last_error,
                "next_attempt_at": crate::export::rfc3339(m.next_attempt_at_ms),
                "created_at": crate::export::rfc3339(m.created_at_ms),
                "sent_at": m.sent_at_ms.map(crate::export::rfc3339),
            })
        })
        .collect();
    let subs: Vec<_> = submissions
        .items
        .iter()
        .map(crate::export::submission_json)
        .collect();
    Ok(no_store(json!({
        "id": id,
        "email": email,
        "created_at": crate::export::rfc3339(created),
        "updated_at": crate::export::rfc3339(updated),
        "submission_count": count,
        "submissions": subs,
        "emails": emails,
    })))
}

/// `GET /v1/admin/leads/{id}/export`: everything held about one person (GDPR access).
#[utoipa::path(
    get,
    path = "/v1/admin/leads/{lead_id}/export",
    tag = "admin",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:export"])),
    responses(
        (status = 200, description = "Everything held about the person (GDPR access)", body = super::openapi::PersonRecord),
        super::openapi::AdminErrors,
    )
)]
pub async fn export_lead(
    _admin: Admin<LeadsExport>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = state
        .store
        .export_lead(&path)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(no_store(record))
}

/// `POST /v1/admin/leads/{id}/restore`: takes a quarantined lead out of quarantine (it is
/// listed and exported from now on; nothing is sent).
#[utoipa::path(
    post,
    path = "/v1/admin/leads/{lead_id}/restore",
    tag = "admin",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "Out of quarantine (nothing is sent)", body = super::openapi::Restored),
        super::openapi::AdminErrors,
    )
)]
pub async fn restore_lead(
    _admin: Admin<LeadsWrite>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let restored = state
        .store
        .restore_lead(&path, state.clock.now_ms())
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(lead_id = %path, submissions = restored, "lead restored from quarantine");
    Ok(no_store(
        json!({ "restored": restored > 0, "lead_id": path.as_str(), "submissions_restored": restored }),
    ))
}

/// `DELETE /v1/admin/leads/{id}`: erases a person everywhere (GDPR erasure). The address
/// stays on the suppression list as a hash, and an anonymous count is kept.
#[utoipa::path(
    delete,
    path = "/v1/admin/leads/{lead_id}",
    tag = "admin",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:erase"])),
    responses(
        (status = 200, description = "Erased everywhere; the address stays suppressed as a keyed hash", body = super::openapi::Erased),
        super::openapi::AdminErrors,
    )
)]
pub async fn erase_lead(
    _admin: Admin<LeadsErase>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let removed = state
        .store
        .erase_lead(&path, state.clock.now_ms())
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(lead_id = %path, submissions = removed, "lead erased");
    Ok(no_store(
        json!({ "erased": true, "lead_id": path.as_str(), "submissions_removed": removed }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// First day, `YYYY-MM-DD` (UTC); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, inclusive; default: today.
    to: Option<String>,
    granularity: Option<crate::reports::Granularity>,
    group_by: Option<crate::store::GroupBy>,
    /// Only this form.
    form: Option<String>,
}

/// `GET /v1/admin/stats`: views, unique views, valid submissions, spam share, conversion,
/// confirmation rate, downloads used and follow-up delivery per day or week and per form,
/// source or campaign (see [`crate::reports`]).
#[utoipa::path(
    get,
    path = "/v1/admin/stats",
    tag = "admin",
    params(StatsParams),
    security(("bearer" = ["stats:read"])),
    responses(
        (status = 200, description = "Views, conversions and delivery per period and group", body = crate::reports::Report),
        super::openapi::AdminErrors,
    )
)]
pub async fn stats(
    Admin(params, _): Admin<StatsRead, web::Query<StatsParams>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let today = state.clock.now_ms().div_euclid(crate::store::DAY_MS);
    let range = crate::reports::range(params.from.as_deref(), params.to.as_deref(), today)
        .map_err(|m| ApiError::BadRequest("invalid_query", m))?;
    let form = super::known_form(&state, params.form.as_deref())?;
    let report = crate::reports::report(
        &state.store,
        range,
        params
            .granularity
            .unwrap_or(crate::reports::Granularity::Day),
        params.group_by.unwrap_or(crate::store::GroupBy::Form),
        form,
        state.clock.now_ms(),
    )
    .await?;
    Ok(no_store(serde_json::to_value(report).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("report: {e}"))
    })?))
}

/// The largest CSV file `POST /v1/admin/leads/import` takes (about 400,000 typical rows).
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// The form the people join.
    #[param(example = "newsletter")]
    form: String,
    preset: Option<crate::import::Preset>,
    /// The consent of rows whose file says nothing: `pending` (the default), `subscribed`,
    /// `unsubscribed` or `bounced`.
    consent: Option<crate::store::ImportedState>,
    /// `FIELD=COLUMN` pairs, comma-separated.
    map: Option<String>,
    dry_run: Option<bool>,
    /// The file's name, for the consent ledger.
    file: Option<String>,
}

/// `POST /v1/admin/leads/import`: a CSV body imported into a form (see [`crate::import`]);
/// answers the summary and a report per row.
#[utoipa::path(
    post,
    path = "/v1/admin/leads/import",
    tag = "admin",
    params(ImportParams),
    request_body(content = String, content_type = "text/csv", description = "The CSV file, with a header row (at most 64 MiB)",
        example = json!("Email Address,First Name,Last Name\nada@example.com,Ada,Lovelace\n")),
    security(("bearer" = ["leads:import"])),
    responses(
        (status = 200, description = "The summary and a report per row", body = super::openapi::ImportAnswer),
        (status = 400, response = super::openapi::Problem),
        (status = 401, response = super::openapi::Problem),
        (status = 403, response = super::openapi::Problem),
        (status = 408, response = super::openapi::Problem),
        (status = 413, response = super::openapi::Problem),
        (status = 429, response = super::openapi::Problem),
        (status = 503, response = super::openapi::Problem),
    )
)]
pub async fn import_leads(
    Admin(params, _): Admin<LeadsImport, web::Query<ImportParams>>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let form = super::known_form(&state, Some(&params.form))?
        .and_then(|id| state.forms.get(id).cloned())
        .ok_or_else(|| {
            ApiError::BadRequest("invalid_query", "form names the form to import into".into())
        })?;
    let map = match params.map.as_deref() {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                crate::import::map_pair(pair).map_err(|m| {
                    ApiError::BadRequest(
                        "invalid_query",
                        format!("map takes FIELD=COLUMN pairs: {m}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let opts = crate::import::ImportOptions {
        preset: params.preset.unwrap_or(crate::import::Preset::Csv),
        default_consent: params
            .consent
            .unwrap_or(crate::store::ImportedState::Pending),
        map,
        label: params
            .file
            .as_deref()
            .and_then(|f| crate::domain::clean_lossy(f, 100))
            .unwrap_or_else(|| "an upload to the admin API".into()),
        dry_run: params.dry_run.unwrap_or(false),
    };
    let body = super::submissions::read_body(&req, body, MAX_IMPORT_BYTES).await?;
    let outcome = import_report(&state, &form, &opts, &body).await?;
    Ok(no_store(outcome))
}

/// Runs an import and answers `{"summary", "rows"}`; a file that cannot be read is a 400
/// naming why.
pub(super) async fn import_report(
    state: &AppState,
    form: &crate::forms::Form,
    opts: &crate::import::ImportOptions,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let mut rows = Vec::new();
    let summary =
        crate::import::import(&state.store, form, opts, body, state.clock.now_ms(), |r| {
            rows.push(r)
        })
        .await
        .map_err(|e| match e {
            crate::import::ImportError::File(m) => ApiError::BadRequest("invalid_file", m),
            crate::import::ImportError::Store(e) => e.into(),
        })?;
    tracing::info!(form_id = %form.id, rows = summary.rows, dry_run = opts.dry_run, "leads imported");
    Ok(json!({ "summary": summary, "text": crate::import::describe(&summary), "rows": rows }))
}
