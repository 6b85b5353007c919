//! Qualification over HTTP: a lead's score with its factors, its stage and the stage ledger,
//! hand-offs (the admin API, and the owner's Accept / Reject page from the email), and the
//! webhook delivery log with replays. Thin: parse, call `qualify`, answer.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::admin::{Admin, LeadsRead, LeadsWrite, WebhooksManage};
use crate::consent::LinkKind;
use crate::error::ApiError;
use crate::qualify::{HandoffAction, MoveOutcome};
use crate::scoring::{Cause, Factor, Stage};
use crate::startup::AppState;
use crate::store::{HandoffRecord, ReplayTarget};

/// Largest JSON body these endpoints read.
const BODY_LIMIT: usize = 16 * 1024;

fn no_store(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Reads a small JSON body (after the credential was checked).
async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    body: web::Payload,
) -> Result<T, ApiError> {
    let bytes = super::submissions::read_body(req, body, BODY_LIMIT).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest("invalid_body", format!("the JSON body: {e}")))
}

/// A lead's score: `factors` add up exactly to `score`.
#[derive(Serialize, ToSchema)]
pub struct ScoreBody {
    pub lead_id: String,
    pub score: i64,
    pub fit: i64,
    pub engagement: i64,
    /// The lead's lifecycle stage.
    pub stage: Stage,
    /// The rule set's version.
    pub ruleset: String,
    pub factors: Vec<Factor>,
    /// When it was computed (engagement fades with time).
    pub computed_at: String,
}

/// `GET /v1/admin/leads/{lead_id}/score`
#[utoipa::path(
    get,
    path = "/v1/admin/leads/{lead_id}/score",
    tag = "qualification",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The score now, with every factor", body = ScoreBody),
        super::openapi::AdminErrors,
    )
)]
pub async fn lead_score(
    _admin: Admin<LeadsRead>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now_ms();
    let s = state
        .qualifier
        .score(&state.store, &path, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    let body = ScoreBody {
        lead_id: path.into_inner(),
        score: s.score.score,
        fit: s.score.fit,
        engagement: s.score.engagement,
        stage: s.stage,
        ruleset: s.score.ruleset,
        factors: s.score.factors,
        computed_at: crate::qualify::rfc3339(now),
    };
    Ok(no_store(json!(body)))
}

/// One entry of the stage ledger.
#[derive(Serialize, ToSchema)]
pub struct StageChangeBody {
    pub from: Option<String>,
    pub to: String,
    /// `rule`, `api`, `cli`, `console`, `handoff` or `crm`.
    pub cause: String,
    pub actor: String,
    pub reason: Option<String>,
    pub score: i64,
    pub ruleset: String,
    /// The score's factors at that moment.
    pub factors: Vec<Factor>,
    pub at: String,
}

/// A lead's stage and every change to it.
#[derive(Serialize, ToSchema)]
pub struct StagesBody {
    pub lead_id: String,
    pub stage: Stage,
    pub changes: Vec<StageChangeBody>,
}

/// `GET /v1/admin/leads/{lead_id}/stages`
#[utoipa::path(
    get,
    path = "/v1/admin/leads/{lead_id}/stages",
    tag = "qualification",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The stage and its ledger, oldest change first", body = StagesBody),
        super::openapi::AdminErrors,
    )
)]
pub async fn lead_stages(
    _admin: Admin<LeadsRead>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    stages_body(&state, &path).await
}

async fn stages_body(state: &AppState, path: &str) -> Result<HttpResponse, ApiError> {
    let s = state
        .qualifier
        .score(&state.store, path, state.clock.now_ms())
        .await?
        .ok_or(ApiError::NotFound)?;
    let changes = state.store.stage_changes(path).await?;
    let body = StagesBody {
        lead_id: path.to_string(),
        stage: s.stage,
        changes: changes
            .into_iter()
            .map(|c| StageChangeBody {
                factors: c.factors(),
                from: c.from_stage,
                to: c.to_stage,
                cause: c.cause,
                actor: c.actor,
                reason: c.reason,
                score: c.score,
                ruleset: c.ruleset,
                at: crate::qualify::rfc3339(c.created_at_ms),
            })
            .collect(),
    };
    Ok(no_store(json!(body)))
}

/// A stage set by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// `subscriber`, `lead`, `mql`, `sql`, `opportunity`, `customer` or `disqualified`.
    pub stage: String,
    /// Required to move back (a recycle) or to disqualify.
    pub reason: Option<String>,
    /// Who did it (shown in the ledger; default: the credential's kind).
    pub actor: Option<String>,
}

fn actor_of(given: Option<&str>, default: &str) -> String {
    given
        .map(|a| {
            a.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect::<String>()
        })
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// `POST /v1/admin/leads/{lead_id}/stage`
#[utoipa::path(
    post,
    path = "/v1/admin/leads/{lead_id}/stage",
    tag = "qualification",
    params(("lead_id" = String, Path, description = "The lead's id")),
    request_body = StageRequest,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "Moved (or already there); the ledger has the change", body = StagesBody),
        super::openapi::WriteErrors,
    )
)]
pub async fn set_stage(
    _admin: Admin<LeadsWrite>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let r: StageRequest = json_body(&req, body).await?;
    let to: Stage = r
        .stage
        .parse()
        .map_err(|m| ApiError::BadRequest("invalid_body", m))?;
    let actor = actor_of(r.actor.as_deref(), "api");
    let outcome = state
        .qualifier
        .move_stage(
            &state.store,
            &path,
            to,
            (Cause::Api, &actor),
            r.reason.as_deref(),
            state.clock.now_ms(),
        )
        .await?;
    match outcome {
        MoveOutcome::Done(_) | MoveOutcome::Unchanged => {
            tracing::info!(lead_id = %path, stage = %to, "stage set through the API");
            stages_body(&state, &path).await
        }
        MoveOutcome::NotFound => Err(ApiError::NotFound),
        MoveOutcome::ReasonNeeded => Err(ApiError::BadRequest(
            "reason_required",
            "moving a lead back, or disqualifying it, needs a reason".into(),
        )),
        MoveOutcome::NotAllowed(why) => Err(ApiError::Conflict("stage_changed", why)),
    }
}

/// Filters of the hand-off list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HandoffParams {
    /// Only this owner's.
    pub owner: Option<String>,
    /// `open` (new, attempting, connected), or one status: `new`, `attempting`,
    /// `connected`, `qualified`, `disqualified`, `rejected`.
    pub status: Option<String>,
    /// The next page: hand-offs older than this id.
    pub before: Option<String>,
    /// At most this many (1-200, default 50).
    pub limit: Option<u32>,
}

const HANDOFF_STATUSES: [&str; 7] = [
    "open",
    "new",
    "attempting",
    "connected",
    "qualified",
    "disqualified",
    "rejected",
];

/// A status filter: absent, or one of `allowed` (anything else is a clear 400, not an empty
/// page that looks like "none").
fn one_of(status: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match status {
        Some(s) if !allowed.contains(&s) => Err(ApiError::BadRequest(
            "invalid_query",
            format!("unknown status '{s}': {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// The `before` of the next page: the last id of a full page.
fn next_before<T>(items: &[T], limit: u32, id: impl Fn(&T) -> &String) -> Option<String> {
    (items.len() == limit as usize)
        .then(|| items.last().map(|x| id(x).clone()))
        .flatten()
}

/// A page of hand-offs.
#[derive(Serialize, ToSchema)]
pub struct HandoffPage {
    pub handoffs: Vec<HandoffRecord>,
    /// Pass as `before` for the next page.
    pub next_before: Option<String>,
}

/// `GET /v1/admin/handoffs`
#[utoipa::path(
    get,
    path = "/v1/admin/handoffs",
    tag = "qualification",
    params(HandoffParams),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "Hand-offs, newest first", body = HandoffPage),
        super::openapi::AdminErrors,
    )
)]
pub async fn list_handoffs(
    admin: Admin<LeadsRead, web::Query<HandoffParams>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = admin.0;
    one_of(q.status.as_deref(), &HANDOFF_STATUSES)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let handoffs = state
        .store
        .list_handoffs(
            q.owner.as_deref(),
            q.status.as_deref(),
            q.before.as_deref(),
            limit,
        )
        .await?;
    let next_before = next_before(&handoffs, limit, |h| &h.id);
    Ok(no_store(json!(HandoffPage {
        handoffs,
        next_before
    })))
}

/// A hand-off with its ledger.
#[derive(Serialize, ToSchema)]
pub struct HandoffBody {
    pub handoff: HandoffRecord,
    pub changes: Vec<crate::store::HandoffChange>,
}

/// `GET /v1/admin/handoffs/{handoff_id}`
#[utoipa::path(
    get,
    path = "/v1/admin/handoffs/{handoff_id}",
    tag = "qualification",
    params(("handoff_id" = String, Path, description = "The hand-off's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The hand-off and every change to it", body = HandoffBody),
        super::openapi::AdminErrors,
    )
)]
pub async fn get_handoff(
    _admin: Admin<LeadsRead>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    handoff_body(&state, &path).await
}

async fn handoff_body(state: &AppState, id: &str) -> Result<HttpResponse, ApiError> {
    let handoff = state.store.handoff(id).await?.ok_or(ApiError::NotFound)?;
    let changes = state.store.handoff_changes(id).await?;
    Ok(no_store(json!(HandoffBody { handoff, changes })))
}

/// A hand-off moved by hand (or by a CRM).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// `accept`, `reject`, `connected`, `qualified` or `disqualified`.
    pub action: String,
    /// Required to reject or disqualify.
    pub reason: Option<String>,
    /// Who did it (shown in the ledger).
    pub actor: Option<String>,
    /// `api` (default) or `crm` (a CRM reporting back).
    pub source: Option<String>,
}

/// `POST /v1/admin/handoffs/{handoff_id}`
#[utoipa::path(
    post,
    path = "/v1/admin/handoffs/{handoff_id}",
    tag = "qualification",
    params(("handoff_id" = String, Path, description = "The hand-off's id")),
    request_body = HandoffRequest,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "Moved; the lead's stage follows (qualified -> sql, rejected -> lead)", body = HandoffBody),
        super::openapi::WriteErrors,
    )
)]
pub async fn move_handoff(
    _admin: Admin<LeadsWrite>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let r: HandoffRequest = json_body(&req, body).await?;
    let action = HandoffAction::parse(&r.action).ok_or_else(|| {
        ApiError::BadRequest(
            "invalid_body",
            format!(
                "unknown action '{}': accept, reject, connected, qualified or disqualified",
                r.action
            ),
        )
    })?;
    let cause = match r.source.as_deref() {
        None | Some("api") => Cause::Api,
        Some("crm") => Cause::Crm,
        Some(other) => {
            return Err(ApiError::BadRequest(
                "invalid_body",
                format!("unknown source '{other}': api or crm"),
            ))
        }
    };
    let actor = actor_of(r.actor.as_deref(), cause.as_str());
    let outcome = state
        .qualifier
        .move_handoff(
            &state.store,
            &path,
            action,
            (cause, &actor),
            r.reason.as_deref(),
            state.clock.now_ms(),
        )
        .await?;
    handoff_outcome(outcome)?;
    handoff_body(&state, &path).await
}

fn handoff_outcome(outcome: MoveOutcome<HandoffRecord>) -> Result<(), ApiError> {
    match outcome {
        MoveOutcome::Done(_) | MoveOutcome::Unchanged => Ok(()),
        MoveOutcome::NotFound => Err(ApiError::NotFound),
        MoveOutcome::ReasonNeeded => Err(ApiError::BadRequest(
            "reason_required",
            "rejecting or disqualifying a hand-off needs a reason".into(),
        )),
        MoveOutcome::NotAllowed(now) => Err(ApiError::Conflict(
            "handoff_not_movable",
            format!("the hand-off is '{now}': that move is not possible from there"),
        )),
    }
}

/// The owner's page from the email (`?action=accept|reject` preselects).
pub async fn handoff_page(
    token: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let preselect = query.get("action").map_or("", String::as_str);
    render_handoff(&state, &token, StatusCode::OK, None, preselect).await
}

async fn render_handoff(
    state: &AppState,
    token: &str,
    status: StatusCode,
    message: Option<&str>,
    preselect: &str,
) -> HttpResponse {
    let link = match state.links.verify(LinkKind::Handoff, token) {
        Ok(l) => l,
        Err(e) => return link_problem(state, e),
    };
    let loaded = async {
        let Some(h) = state.store.handoff(&link.id).await? else {
            return Ok(None);
        };
        let score = state
            .qualifier
            .score(&state.store, &h.lead_id, state.clock.now_ms())
            .await?;
        let facts = state.store.lead_activity(&h.lead_id).await?;
        Ok::<_, crate::store::StoreError>(score.zip(facts).map(|(s, f)| (h, s, f.facts)))
    };
    let (h, s, facts) = match loaded.await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return notice(
                state,
                StatusCode::NOT_FOUND,
                "This lead is no longer here",
                "It was erased or removed. Nothing to do.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "hand-off page: database unavailable");
            return notice(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again in a moment",
                "The lead could not be loaded just now.",
            );
        }
    };
    let title = match h.status.as_str() {
        "new" => "A lead for you",
        "attempting" => "You accepted this lead",
        "connected" => "You are in touch with this lead",
        "rejected" => "This lead went back to marketing",
        _ => "This hand-off is closed",
    };
    let field = |k: &str| facts.fields.get(k).cloned();
    let factors: Vec<serde_json::Value> = s
        .score
        .factors
        .iter()
        .map(|f| json!({ "points": format!("{:+}", f.points), "detail": f.detail, "rule": f.rule }))
        .collect();
    let status_words = match h.status.as_str() {
        "new" => "waiting for you to accept it".to_string(),
        "attempting" => "accepted: you are trying to reach them".to_string(),
        "rejected" => format!(
            "passed back to marketing{}",
            h.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    };
    state.pages.handoff(
        status,
        context! {
            title,
            message,
            lead => context! {
                email => facts.email,
                name => field("name"),
                company => field("company"),
                job_title => field("job_title"),
            },
            status => status_words,
            score => context! { score => s.score.score, fit => s.score.fit, engagement => s.score.engagement },
            factors,
            route => h.route,
            open => h.status == "new",
            action => format!("/v1/handoffs/{token}"),
            preselect,
        },
    )
}

fn notice(state: &AppState, status: StatusCode, title: &str, message: &str) -> HttpResponse {
    state.pages.notice(
        status,
        &super::pages::Notice {
            title,
            message: message.into(),
            ..Default::default()
        },
    )
}

fn link_problem(state: &AppState, e: crate::consent::LinkError) -> HttpResponse {
    match e {
        crate::consent::LinkError::Expired => notice(
            state,
            StatusCode::GONE,
            "This link has expired",
            "Open the lead from the console's hand-off queue instead.",
        ),
        crate::consent::LinkError::Invalid => notice(
            state,
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "It may be incomplete or altered. Copy the whole link from the email.",
        ),
    }
}

#[derive(Deserialize)]
pub struct HandoffForm {
    action: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/handoffs/{token}`: the page's Accept or Reject button.
pub async fn handoff_submit(
    token: web::Path<String>,
    form: web::Form<HandoffForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let link = match state.links.verify(LinkKind::Handoff, &token) {
        Ok(l) => l,
        Err(e) => return link_problem(&state, e),
    };
    let action = match form.action.as_str() {
        "accept" => HandoffAction::Accept,
        "reject" => HandoffAction::Reject,
        _ => {
            return render_handoff(
                &state,
                &token,
                StatusCode::BAD_REQUEST,
                Some("Choose Accept or Pass it back."),
                "",
            )
            .await
        }
    };
    // The owner the hand-off names is the one the link was mailed to.
    let owner = match state.store.handoff(&link.id).await {
        Ok(Some(h)) => h.owner_id.unwrap_or_else(|| "owner".into()),
        Ok(None) => String::new(),
        Err(_) => {
            return notice(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again in a moment",
                "Nothing was changed.",
            )
        }
    };
    let moved = state
        .qualifier
        .move_handoff(
            &state.store,
            &link.id,
            action,
            (Cause::Handoff, &format!("{owner} (email link)")),
            form.reason.as_deref(),
            state.clock.now_ms(),
        )
        .await;
    let (status, message) = match moved {
        Ok(MoveOutcome::Done(_)) => (
            StatusCode::OK,
            match action {
                HandoffAction::Accept => "Accepted. The lead is yours: reach out soon.",
                _ => "Passed back to marketing, with your reason. Thank you.",
            },
        ),
        Ok(MoveOutcome::Unchanged) => (StatusCode::OK, "Already done: nothing changed."),
        Ok(MoveOutcome::ReasonNeeded) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please say why the lead is not for sales, so marketing can follow up.",
        ),
        Ok(MoveOutcome::NotAllowed(_)) => (
            StatusCode::CONFLICT,
            "This hand-off was already answered, so nothing changed.",
        ),
        Ok(MoveOutcome::NotFound) => (StatusCode::NOT_FOUND, "This lead is no longer here."),
        Err(e) => {
            tracing::warn!(error = %e, "hand-off answer failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Nothing was changed: please try again in a moment.",
            )
        }
    };
    render_handoff(&state, &token, status, Some(message), "").await
}

/// Filters of the delivery log.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only this endpoint's.
    pub endpoint: Option<String>,
    /// `pending`, `failed`, `delivered`, `dead` or `cancelled`.
    pub status: Option<String>,
    /// The next page: deliveries older than this id.
    pub before: Option<String>,
    /// At most this many (1-200, default 50).
    pub limit: Option<u32>,
}

const DELIVERY_STATUSES: [&str; 5] = ["pending", "failed", "delivered", "dead", "cancelled"];

/// One configured endpoint and its health.
#[derive(Serialize, ToSchema)]
pub struct EndpointBody {
    pub id: String,
    /// The receiver's host (the URL may carry a token, so only the host is shown).
    pub host: String,
    /// Event types it gets (empty: all).
    pub events: Vec<String>,
    pub state: crate::store::EndpointState,
}

/// `GET /v1/admin/webhooks`
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks",
    tag = "webhooks",
    security(("bearer" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "Every configured endpoint with its health", body = Vec<EndpointBody>),
        super::openapi::AdminErrors,
    )
)]
pub async fn list_endpoints(
    _admin: Admin<WebhooksManage>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let states = state.store.endpoint_states().await?;
    let list: Vec<EndpointBody> = state
        .qualifier
        .webhooks
        .endpoints()
        .iter()
        .map(|e| EndpointBody {
            id: e.id.clone(),
            host: e.url.host_str().unwrap_or_default().to_string(),
            events: crate::webhooks::EVENT_TYPES
                .iter()
                .filter(|k| e.wants(k))
                .map(|k| (*k).to_string())
                .collect(),
            state: states
                .get(&e.id)
                .cloned()
                .unwrap_or(crate::store::EndpointState {
                    id: e.id.clone(),
                    ..Default::default()
                }),
        })
        .collect();
    Ok(no_store(json!(list)))
}

/// A page of the delivery log.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<crate::store::DeliveryRecord>,
    pub next_before: Option<String>,
}

/// `GET /v1/admin/webhooks/deliveries`
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/deliveries",
    tag = "webhooks",
    params(DeliveryParams),
    security(("bearer" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "Deliveries, newest first", body = DeliveryPage),
        super::openapi::AdminErrors,
    )
)]
pub async fn list_deliveries(
    admin: Admin<WebhooksManage, web::Query<DeliveryParams>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = admin.0;
    one_of(q.status.as_deref(), &DELIVERY_STATUSES)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let deliveries = state
        .store
        .list_deliveries(
            q.endpoint.as_deref(),
            q.status.as_deref(),
            q.before.as_deref(),
            limit,
        )
        .await?;
    let next_before = next_before(&deliveries, limit, |d| &d.id);
    Ok(no_store(json!(DeliveryPage {
        deliveries,
        next_before
    })))
}

/// One delivery: what was sent, and every attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryBody {
    pub delivery: crate::store::DeliveryRecord,
    /// The signed body.
    pub payload: String,
    pub attempts: Vec<crate::store::AttemptRecord>,
}

/// `GET /v1/admin/webhooks/deliveries/{delivery_id}`
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/deliveries/{delivery_id}",
    tag = "webhooks",
    params(("delivery_id" = String, Path, description = "The delivery's id")),
    security(("bearer" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "The delivery, its body and its attempts (newest first)", body = DeliveryBody),
        super::openapi::AdminErrors,
    )
)]
pub async fn get_delivery(
    _admin: Admin<WebhooksManage>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let delivery = state
        .store
        .delivery(&path)
        .await?
        .ok_or(ApiError::NotFound)?;
    let payload = state
        .store
        .delivery_payload(&path)
        .await?
        .unwrap_or_default();
    let attempts = state.store.list_attempts(Some(&path), None, 100).await?;
    Ok(no_store(json!(DeliveryBody {
        delivery,
        payload,
        attempts
    })))
}

/// What to send again: one delivery, or an endpoint's deliveries in a time range.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub delivery_id: Option<String>,
    pub endpoint: Option<String>,
    /// RFC 3339; with `endpoint`.
    pub since: Option<String>,
    /// RFC 3339 (default: now); with `endpoint`.
    pub until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries queued again (same `webhook-id`, fresh attempts).
    pub queued: u64,
}

fn time_of(s: &str, what: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::BadRequest("invalid_body", format!("{what} must be an RFC 3339 time"))
        })
}

/// `POST /v1/admin/webhooks/replay`
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/replay",
    tag = "webhooks",
    request_body = ReplayRequest,
    security(("bearer" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "Queued again", body = Replayed),
        super::openapi::WriteErrors,
    )
)]
pub async fn replay(
    _admin: Admin<WebhooksManage>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let r: ReplayRequest = json_body(&req, body).await?;
    let now = state.clock.now_ms();
    let target = replay_target(&state, &r, now)?;
    if let ReplayTarget::Delivery(id) = &target {
        state.store.delivery(id).await?.ok_or(ApiError::NotFound)?;
    }
    let queued = state.store.replay_deliveries(&target, now).await?;
    tracing::info!(queued, "webhook deliveries replayed");
    Ok(no_store(json!(Replayed { queued })))
}

fn replay_target(state: &AppState, r: &ReplayRequest, now: i64) -> Result<ReplayTarget, ApiError> {
    match (&r.delivery_id, &r.endpoint) {
        (Some(id), None) if r.since.is_none() && r.until.is_none() => {
            Ok(ReplayTarget::Delivery(id.clone()))
        }
        (None, Some(endpoint)) => {
            if state.qualifier.webhooks.endpoint(endpoint).is_none() {
                return Err(ApiError::BadRequest(
                    "invalid_body",
                    format!("there is no endpoint called '{endpoint}'"),
                ));
            }
            let since = r.since.as_deref().ok_or_else(|| {
                ApiError::BadRequest("invalid_body", "a range replay needs since".into())
            })?;
            let from_ms = time_of(since, "since")?;
            let until_ms = r
                .until
                .as_deref()
                .map_or(Ok(now + 1), |u| time_of(u, "until"))?;
            if until_ms <= from_ms {
                return Err(ApiError::BadRequest(
                    "invalid_body",
                    "until must be after since".into(),
                ));
            }
            Ok(ReplayTarget::Range {
                endpoint_id: endpoint.clone(),
                from_ms,
                until_ms,
            })
        }
        _ => Err(ApiError::BadRequest(
            "invalid_body",
            "give delivery_id, or endpoint with since (and until)".into(),
        )),
    }
}

/// `POST /v1/admin/webhooks/{endpoint_id}/enable`
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{endpoint_id}/enable",
    tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "The endpoint's id")),
    security(("bearer" = ["webhooks:manage"])),
    responses(
        (status = 200, description = "On again (it was disabled)", body = EndpointBody),
        super::openapi::WriteErrors,
    )
)]
pub async fn enable_endpoint(
    _admin: Admin<WebhooksManage>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = state
        .qualifier
        .webhooks
        .endpoint(&path)
        .ok_or(ApiError::NotFound)?;
    state.store.enable_endpoint(&endpoint.id).await?;
    tracing::info!(endpoint = %endpoint.id, "webhook endpoint enabled");
    let states = state.store.endpoint_states().await?;
    Ok(no_store(json!(EndpointBody {
        id: endpoint.id.clone(),
        host: endpoint.url.host_str().unwrap_or_default().to_string(),
        events: crate::webhooks::EVENT_TYPES
            .iter()
            .filter(|k| endpoint.wants(k))
            .map(|k| (*k).to_string())
            .collect(),
        state: states.get(&endpoint.id).cloned().unwrap_or_default(),
    })))
}
