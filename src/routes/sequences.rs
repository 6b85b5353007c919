//! Nurture sequences over HTTP: the inbound-mail endpoint that turns a verified reply into an
//! exit and a hand-off, the signed click redirect, and the admin reads (each sequence's
//! counts, a lead's enrolments with every step's delivery). Thin: parse, call the store,
//! answer.

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::admin::{Admin, LeadsRead};
use super::pages::Notice;
use crate::error::ApiError;
use crate::startup::AppState;

/// The largest inbound-mail post read (providers post the whole message, attachments
/// included: strip them at the provider to stay under this).
pub const INBOUND_LIMIT: usize = 1024 * 1024;

/// How much of a reply's text is kept for sales to read.
const EXCERPT_CHARS: usize = 2_000;

/// An address as inbound-mail providers post it.
#[derive(Deserialize, Serialize, Default, ToSchema)]
pub struct InboundAddress {
    #[serde(alias = "Email", alias = "email", default)]
    pub email: String,
}

/// A received email, in the JSON shape inbound-mail providers post (Postmark's field names;
/// lower-case `from`, `to`, `recipient`, `subject`, `text` and `message_id` are read too).
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(default)]
pub struct InboundEmail {
    #[serde(rename = "From", alias = "from", alias = "sender")]
    pub from: Option<String>,
    #[serde(rename = "FromFull")]
    pub from_full: Option<InboundAddress>,
    #[serde(rename = "To", alias = "to")]
    pub to: Option<String>,
    #[serde(rename = "ToFull")]
    pub to_full: Vec<InboundAddress>,
    #[serde(rename = "Cc")]
    pub cc: Option<String>,
    #[serde(rename = "CcFull")]
    pub cc_full: Vec<InboundAddress>,
    #[serde(rename = "OriginalRecipient", alias = "recipient")]
    pub original_recipient: Option<String>,
    #[serde(rename = "MessageID", alias = "message_id", alias = "Message-Id")]
    pub message_id: Option<String>,
    #[serde(rename = "Subject", alias = "subject")]
    pub subject: Option<String>,
    #[serde(rename = "TextBody", alias = "text")]
    pub text_body: Option<String>,
    #[serde(rename = "StrippedTextReply", alias = "stripped-text")]
    pub stripped_text_reply: Option<String>,
    /// A provider's spam-complaint report instead of a reply: Postmark's `RecordType` of
    /// `SpamComplaint`, or an `event` of `complained` / `spamreport`, naming the address in
    /// `Email` / `email`.
    #[serde(rename = "RecordType", alias = "event")]
    pub record_type: Option<String>,
    #[serde(rename = "Email", alias = "email")]
    pub email: Option<String>,
}

/// Whether a post is a spam-complaint report.
fn is_complaint(e: &InboundEmail) -> bool {
    e.record_type.as_deref().is_some_and(|t| {
        matches!(
            t.to_ascii_lowercase().as_str(),
            "spamcomplaint" | "complained" | "spamreport" | "complaint"
        )
    })
}

/// What became of an inbound email.
#[derive(Serialize, ToSchema)]
pub struct InboundOutcome {
    /// `recorded` (a reply to a sequence mail: the lead left the sequence and is handed to
    /// sales; or a spam complaint: the address is suppressed and every sequence ends),
    /// `duplicate` (recorded before) or `ignored` (see `reason`).
    pub status: &'static str,
    pub reason: Option<&'static str>,
}

/// The bare address of `Name <a@b>` or `a@b`.
fn bare(address: &str) -> String {
    let a = address.trim();
    let a = match (a.rfind('<'), a.rfind('>')) {
        (Some(l), Some(r)) if l < r => &a[l + 1..r],
        _ => a,
    };
    a.trim().to_ascii_lowercase()
}

/// The provider's credential: `Authorization: Bearer <secret>`, or HTTP Basic with the
/// secret as the password (providers put it in the webhook URL).
fn inbound_credential(req: &HttpRequest) -> Option<String> {
    if let Some(token) = super::admin::bearer(req) {
        return Some(token.to_string());
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

fn ignored(reason: &'static str) -> HttpResponse {
    HttpResponse::Ok().json(InboundOutcome {
        status: "ignored",
        reason: Some(reason),
    })
}

/// `POST /v1/inbound/email`
#[utoipa::path(
    post,
    path = "/v1/inbound/email",
    tag = "sequences",
    request_body = InboundEmail,
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Read: recorded, a duplicate, or ignored (with the reason)", body = InboundOutcome),
        (status = 400, description = "Not an email in JSON", body = super::openapi::ErrorBody),
        (status = 401, description = "The provider's credential is missing or wrong", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many wrong credentials from this client: refused for a minute", body = super::openapi::ErrorBody),
        (status = 404, description = "Inbound mail is not configured (`replies.secret`)", body = super::openapi::ErrorBody),
        (status = 413, description = "Larger than 1 MiB", body = super::openapi::ErrorBody),
    )
)]
pub async fn inbound_email(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.settings.replies.secret.as_ref() else {
        return Err(ApiError::NotFound);
    };
    // Guessing the secret is throttled like the admin API's credentials.
    let client = super::client_addr(&req, &state);
    if let Some(wait) = state.limits.admin_refused(client).await {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let given = inbound_credential(&req).unwrap_or_default();
    if !super::admin::token_matches(&given, Some(secret)) {
        return Err(match state.limits.admin_failed(client).await {
            Some(wait) => ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            },
            None => ApiError::Unauthorized,
        });
    }
    let bytes = super::submissions::read_body(&req, body, INBOUND_LIMIT).await?;
    let email: InboundEmail = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest("invalid_body", format!("the JSON body: {e}")))?;
    if is_complaint(&email) {
        // The person marked our mail as spam: never mail them again.
        let address = email.email.as_deref().map(bare).unwrap_or_default();
        let Some(lead) = state.store.lead_id_by_email(&address).await? else {
            return Ok(ignored("no lead has the address the complaint names"));
        };
        let added = state
            .store
            .record_complaint(&lead, state.clock.now_ms())
            .await?;
        return Ok(HttpResponse::Ok().json(InboundOutcome {
            status: if added == Some(true) {
                "recorded"
            } else {
                "duplicate"
            },
            reason: None,
        }));
    }
    // Every address it went to; ours carries the message's token.
    let mut recipients: Vec<String> = Vec::new();
    for list in [&email.to, &email.cc, &email.original_recipient]
        .into_iter()
        .flatten()
    {
        recipients.extend(list.split(',').map(bare));
    }
    recipients.extend(
        email
            .to_full
            .iter()
            .chain(&email.cc_full)
            .map(|a| bare(&a.email)),
    );
    let message_id = recipients
        .iter()
        .filter_map(|r| crate::sequences::token_of_address(r))
        .find_map(|t| state.tokens.verify_reply(t));
    let Some(message_id) = message_id else {
        return Ok(ignored(
            "no reply address of a sequence mail among the recipients",
        ));
    };
    let Some(message) = state.store.sequence_message(&message_id).await? else {
        return Ok(ignored(
            "the mail it answers no longer exists (the lead was erased)",
        ));
    };
    let sender = email
        .from_full
        .as_ref()
        .map(|a| bare(&a.email))
        .or_else(|| email.from.as_deref().map(bare))
        .unwrap_or_default();
    if sender != message.lead_email.to_ascii_lowercase() {
        // Someone else answered (a colleague, a forward): not the lead's own reply.
        return Ok(ignored("the sender is not the person the mail went to"));
    }
    let excerpt: String = email
        .stripped_text_reply
        .as_deref()
        .or(email.text_body.as_deref())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(EXCERPT_CHARS)
        .collect();
    let external = email
        .message_id
        .as_deref()
        .map(|m| m.chars().take(200).collect::<String>())
        .unwrap_or_else(|| format!("reply-{}", message.id));
    let on_reply = state
        .qualifier
        .sequences
        .get(&message.sequence_id)
        .is_none_or(|s| s.exits.on_reply);
    let exit = crate::store::Exit {
        sequences: vec![message.sequence_id.clone()],
        reason: crate::sequences::reason::REPLIED,
        detail: Some(format!("replied to step '{}'", message.step_id)),
    };
    let recorded = state
        .store
        .record_interaction(
            &message,
            ("reply", &external, Some(excerpt.trim())),
            on_reply.then_some(&exit),
            state.clock.now_ms(),
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok(HttpResponse::Ok().json(InboundOutcome {
        status: if recorded { "recorded" } else { "duplicate" },
        reason: None,
    }))
}

fn gone(state: &AppState) -> HttpResponse {
    state.pages.notice(
        StatusCode::NOT_FOUND,
        &Notice {
            title: "This link no longer works",
            message: "The email it came from is too old, or the link was changed. Nothing \
                      else happened."
                .into(),
            ..Notice::default()
        },
    )
}

/// `GET /v1/r/{token}`: a tracked link in sequence mail. Only GET counts a click (link
/// scanners that send HEAD do not), and the target is always the link the step's own
/// template holds, never anything the URL says.
pub async fn click(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let Some((message_id, index, verified)) = state.tokens.read_click(&path) else {
        return gone(&state);
    };
    let message = match state.store.sequence_message(&message_id).await {
        Ok(Some(m)) => m,
        Ok(None) => return gone(&state),
        Err(e) => return actix_web::ResponseError::error_response(&ApiError::from(e)),
    };
    let target = state
        .qualifier
        .sequences
        .get(&message.sequence_id)
        .and_then(|s| s.step(&message.step_id))
        .and_then(|(_, step)| step.links.get(index).cloned());
    let Some(target) = target else {
        return gone(&state);
    };
    if verified && req.method() == actix_web::http::Method::GET {
        let recorded = state
            .store
            .record_interaction(
                &message,
                ("click", &index.to_string(), Some(&target)),
                None,
                state.clock.now_ms(),
            )
            .await;
        if let Err(e) = recorded {
            // The reader still gets where they were going.
            tracing::warn!(error = %e, "a click could not be recorded");
        }
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, target))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

/// One step with what became of it.
#[derive(Serialize, ToSchema)]
pub struct StepCounts {
    pub id: String,
    /// After the previous step, in milliseconds.
    pub delay_ms: i64,
    pub skip_when: Option<String>,
    /// Rows by status: `pending`, `failed`, `sent`, `skipped`, `dead`.
    pub messages: BTreeMap<String, i64>,
}

/// A sequence with its counts.
#[derive(Serialize, ToSchema)]
pub struct SequenceBody {
    pub id: String,
    pub name: String,
    /// What enrols a lead, in words.
    pub enrolls_on: String,
    /// When mail may go out, in words.
    pub window: String,
    pub track_clicks: bool,
    /// Enrolments by status: `active`, `finished`, `exited`.
    pub enrolments: BTreeMap<String, i64>,
    /// Exits by reason.
    pub exits: BTreeMap<String, i64>,
    pub steps: Vec<StepCounts>,
    pub clicks: i64,
    pub replies: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SequencesBody {
    pub sequences: Vec<SequenceBody>,
}

/// Every sequence as configured now, with its counts.
pub(super) async fn sequence_bodies(state: &AppState) -> Result<Vec<SequenceBody>, ApiError> {
    let ids: Vec<&str> = state
        .qualifier
        .sequences
        .all()
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    let mut counts = state.store.sequence_counts(&ids).await?;
    Ok(state
        .qualifier
        .sequences
        .all()
        .iter()
        .map(|s| {
            let c = counts.remove(&s.id).unwrap_or_default();
            let mut exits: BTreeMap<String, i64> = crate::sequences::reason::ALL
                .iter()
                .map(|r| ((*r).to_string(), 0))
                .collect();
            exits.extend(c.exits);
            let mut enrolments: BTreeMap<String, i64> = ["active", "finished", "exited"]
                .iter()
                .map(|r| ((*r).to_string(), 0))
                .collect();
            enrolments.extend(c.enrolments);
            SequenceBody {
                id: s.id.clone(),
                name: s.name.clone(),
                enrolls_on: crate::sequences::describe_trigger(s),
                window: s.window.describe(),
                track_clicks: s.track_clicks,
                enrolments,
                exits,
                steps: s
                    .steps
                    .iter()
                    .map(|st| StepCounts {
                        id: st.id.clone(),
                        delay_ms: st.delay_ms,
                        skip_when: st.skip_when.as_ref().map(|c| c.plain()),
                        messages: c.steps.get(&st.id).cloned().unwrap_or_default(),
                    })
                    .collect(),
                clicks: c.clicks,
                replies: c.replies,
            }
        })
        .collect())
}

/// `GET /v1/admin/sequences`
#[utoipa::path(
    get,
    path = "/v1/admin/sequences",
    tag = "sequences",
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "Each sequence: enrolled, sent per step, exited by reason", body = SequencesBody),
        super::openapi::AdminErrors,
    )
)]
pub async fn list_sequences(
    _admin: Admin<LeadsRead>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = SequencesBody {
        sequences: sequence_bodies(&state).await?,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// One step's delivery for a lead.
#[derive(Serialize, ToSchema)]
pub struct LeadStep {
    pub step_id: String,
    /// `pending`, `failed`, `sent`, `skipped` or `dead`.
    pub status: String,
    /// When it is (or was) due.
    pub due_at: String,
    pub sent_at: Option<String>,
    pub attempts: i64,
    /// Why it was skipped, or the last failure.
    pub note: Option<String>,
}

/// One enrolment with its steps.
#[derive(Serialize, ToSchema)]
pub struct LeadEnrolment {
    pub id: String,
    pub sequence_id: String,
    /// `active`, `finished` or `exited`.
    pub status: String,
    pub exit_reason: Option<String>,
    pub exit_detail: Option<String>,
    pub enrolled_at: String,
    pub ended_at: Option<String>,
    pub steps: Vec<LeadStep>,
}

#[derive(Serialize, ToSchema)]
pub struct LeadSequencesBody {
    pub lead_id: String,
    pub enrolments: Vec<LeadEnrolment>,
}

/// A lead's enrolments with each step's delivery, oldest first.
pub async fn lead_enrolments(
    state: &AppState,
    lead_id: &str,
) -> Result<Vec<LeadEnrolment>, ApiError> {
    let (enrolments, steps) = state.store.lead_enrolments(lead_id).await?;
    let time = crate::qualify::rfc3339;
    Ok(enrolments
        .into_iter()
        .map(|e| LeadEnrolment {
            steps: steps
                .iter()
                .filter(|s| s.enrolment_id == e.id)
                .map(|s| LeadStep {
                    step_id: s.step_id.clone(),
                    status: s.status.clone(),
                    due_at: time(s.due_at_ms),
                    sent_at: s.sent_at_ms.map(time),
                    attempts: s.attempts,
                    note: s.last_error.clone(),
                })
                .collect(),
            id: e.id,
            sequence_id: e.sequence_id,
            status: e.status,
            exit_reason: e.exit_reason,
            exit_detail: e.exit_detail,
            enrolled_at: time(e.enrolled_at_ms),
            ended_at: e.ended_at_ms.map(time),
        })
        .collect())
}

/// `GET /v1/admin/leads/{lead_id}/sequences`
#[utoipa::path(
    get,
    path = "/v1/admin/leads/{lead_id}/sequences",
    tag = "sequences",
    params(("lead_id" = String, Path, description = "The lead's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The lead's enrolments, each step's delivery", body = LeadSequencesBody),
        super::openapi::AdminErrors,
    )
)]
pub async fn lead_sequences(
    _admin: Admin<LeadsRead>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let lead_id = path.into_inner();
    if state.store.get_lead(&lead_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let body = LeadSequencesBody {
        enrolments: lead_enrolments(&state, &lead_id).await?,
        lead_id,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!(body)))
}
