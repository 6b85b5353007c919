//! `GET /v1/openapi.json`: the HTTP API as an OpenAPI 3.1 document, generated from the
//! handlers' own annotations and parameter types (utoipa), built once at startup. The shapes
//! the handlers build as JSON are described here beside the one error shape every endpoint
//! shares; the suite checks the document against the running server with schemathesis
//! (`scripts/api-fuzz.sh`).

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

/// The error shape every endpoint answers with (`text/html` instead for a browser's form post
/// without JavaScript).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// The stable machine-readable code, e.g. `validation_failed`, `rate_limited`.
    error: String,
    /// What happened, in words.
    message: String,
    /// With `validation_failed`: each bad field's problems.
    fields: Option<BTreeMap<String, Vec<String>>>,
    /// With `challenge_required`: what to solve.
    #[schema(value_type = Option<Object>)]
    challenge: Option<serde_json::Value>,
}

/// Any error: [`ErrorBody`] as JSON (or an HTML page for a form post from a browser).
pub struct Problem;

impl<'s> ToResponse<'s> for Problem {
    fn response() -> (&'s str, RefOr<Response>) {
        let html = utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .build();
        (
            "Problem",
            ResponseBuilder::new()
                .description("An error, in the stable shape (see `ErrorBody`)")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .content(
                    "text/html",
                    ContentBuilder::new().schema(Some(html)).build(),
                )
                .build()
                .into(),
        )
    }
}

/// The errors every admin operation may answer (401 without a credential, 403 without the
/// scope, 429 after repeated guesses, 404 for an unknown lead, 400 for bad parameters, 503
/// while the database is away).
pub struct AdminErrors;

impl utoipa::IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [400, 401, 403, 404, 429, 503]
            .into_iter()
            .map(|code| {
                (
                    code.to_string(),
                    RefOr::Ref(Ref::from_response_name("Problem")),
                )
            })
            .collect()
    }
}

/// The errors an admin operation that changes something may answer: those of
/// [`AdminErrors`], 409 when the thing moved on meanwhile (a hand-off already answered), and
/// 413 for a body over 16 KiB.
pub struct WriteErrors;

impl utoipa::IntoResponses for WriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [400, 401, 403, 404, 409, 413, 429, 503]
            .into_iter()
            .map(|code| {
                (
                    code.to_string(),
                    RefOr::Ref(Ref::from_response_name("Problem")),
                )
            })
            .collect()
    }
}

/// A submission's fields as the form declares them (`email` and the rest), plus attribution
/// (`utm_*`, `referrer`, `landing_page`, click ids) and Inlet's own `_idem`, `_elapsed_ms`,
/// `_loaded_at`; anything else is kept under `extra` or refused, as the form says.
#[derive(ToSchema, serde::Serialize)]
#[schema(example = json!({
    "email": "ada@example.com", "name": "Ada Lovelace", "company": "Analytical Engines",
    "_idem": "01J9ZQ6W5K8M2N4P6R8T0V2X4Z", "utm_source": "linkedin", "utm_medium": "cpc"
}))]
#[allow(dead_code)]
pub struct SubmissionFields {
    email: Option<String>,
    name: Option<String>,
    /// An idempotency key (the embed script sends one with every submit).
    _idem: Option<String>,
    utm_source: Option<String>,
    /// Every other field the form declares (text, or a boolean for a checkbox).
    #[serde(flatten)]
    #[schema(value_type = BTreeMap<String, Object>)]
    more: BTreeMap<String, serde_json::Value>,
}

/// A stored submission (the lead is committed).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SubmissionAccepted {
    submission_id: String,
    /// The form's success message.
    message: String,
    /// Download forms delivering at once: the signed download link.
    download_url: Option<String>,
    /// Double opt-in forms: nothing else happens until the person confirms.
    confirmation_required: bool,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FormField {
    name: String,
    #[schema(value_type = String)]
    r#type: String,
    required: bool,
    max_length: u64,
    options: Vec<String>,
    label: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PublicForm {
    id: String,
    kind: String,
    honeypot: String,
    success_message: String,
    #[schema(value_type = Option<Object>)]
    challenge: Option<serde_json::Value>,
    fields: Vec<FormField>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FormList {
    forms: Vec<PublicForm>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PowChallenge {
    algorithm: String,
    challenge: String,
    maxnumber: u64,
    salt: String,
    signature: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Asset {
    url: String,
    pinned_url: String,
    integrity: String,
    bytes: u64,
    gzip_bytes: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Snippet {
    version: String,
    script: Asset,
    stylesheet: Asset,
    /// The tags to paste.
    embed: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    status: String,
    database: Option<String>,
    message: Option<String>,
}

/// The urlencoded body of a view beacon (anything else is ignored).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ViewBeacon {
    utm_source: Option<String>,
    utm_campaign: Option<String>,
    referrer: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Submission {
    id: String,
    lead_id: String,
    form_id: String,
    email: String,
    #[schema(value_type = Object)]
    fields: serde_json::Value,
    extra: BTreeMap<String, String>,
    spam: bool,
    quarantined: bool,
    spam_reason: Option<String>,
    spam_score: Option<i64>,
    spam_signals: Option<String>,
    restored_at: Option<String>,
    #[schema(value_type = Object)]
    attribution: serde_json::Value,
    client_ip: Option<String>,
    created_at: String,
    /// `none`, `pending` or `confirmed`.
    confirmation: String,
    confirmed_at: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Lead {
    id: String,
    email: String,
    status: Option<crate::store::LeadStatus>,
    created_at: String,
    updated_at: String,
    submission_count: i64,
    latest_submission: Submission,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LeadPage {
    leads: Vec<Lead>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SubmissionPage {
    submissions: Vec<Submission>,
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Email {
    id: String,
    kind: String,
    form_id: Option<String>,
    submission_id: Option<String>,
    recipient: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    last_error: Option<String>,
    next_attempt_at: String,
    created_at: String,
    sent_at: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LeadDetail {
    id: String,
    email: String,
    created_at: String,
    updated_at: String,
    submission_count: i64,
    submissions: Vec<Submission>,
    emails: Vec<Email>,
}

/// Everything held about one person (GDPR access): the lead, every submission, the consent
/// ledger, download links, messages, nurture sequences and the suppression list's entry.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PersonRecord {
    #[schema(value_type = Object)]
    lead: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    submissions: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    consents: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    downloads: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    suppressed: bool,
    /// Nurture sequences: `enrolments`, `steps` (each step's delivery) and `interactions`
    /// (clicks, and replies with their text).
    #[schema(value_type = Object)]
    sequences: serde_json::Value,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Restored {
    restored: bool,
    lead_id: String,
    submissions_restored: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Erased {
    erased: bool,
    lead_id: String,
    submissions_removed: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImportAnswer {
    summary: crate::import::Summary,
    /// The summary in words.
    text: String,
    rows: Vec<crate::import::RowReport>,
}

/// The bearer scheme: the admin token (every scope) or an API key (its scopes).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The inbound-mail endpoint also takes its secret as a Basic password.
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Inlet",
        description = "Self-hosted lead capture. Public endpoints take submissions and view \
            beacons from landing pages; `/v1/admin/*` reads and manages leads with a bearer \
            credential (the admin token, or an API key with the scope each operation names). \
            Pages for people (confirm, unsubscribe, download links, the console) are not part \
            of this document."
    ),
    paths(
        super::submissions::submit,
        super::submissions::list_forms,
        super::submissions::pow_challenge,
        super::views::view,
        super::assets::describe,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::admin::list_leads,
        super::admin::get_lead,
        super::admin::export_lead,
        super::admin::restore_lead,
        super::admin::erase_lead,
        super::admin::list_submissions,
        super::admin::stats,
        super::admin::import_leads,
        super::qualification::lead_score,
        super::qualification::lead_stages,
        super::qualification::set_stage,
        super::qualification::list_handoffs,
        super::qualification::get_handoff,
        super::qualification::move_handoff,
        super::qualification::list_endpoints,
        super::qualification::list_deliveries,
        super::qualification::get_delivery,
        super::qualification::replay,
        super::qualification::enable_endpoint,
        super::sequences::list_sequences,
        super::sequences::lead_sequences,
        super::sequences::inbound_email,
        openapi_json,
    ),
    components(
        schemas(
            ErrorBody,
            crate::import::Preset,
            crate::store::ImportedState,
            crate::reports::Granularity,
            crate::store::GroupBy,
            crate::store::LeadStatus,
        ),
        responses(Problem)
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "capture", description = "What landing pages call"),
        (name = "admin", description = "Leads, reports and imports, behind a bearer credential"),
        (name = "qualification", description = "Scores with their factors, lifecycle stages, hand-offs to sales"),
        (name = "webhooks", description = "The webhook delivery log, replays, endpoint health"),
        (name = "sequences", description = "Nurture sequences: counts, a lead's enrolments, replies from an inbound-mail provider"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document as served (rendered once).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"internal_error\",\"message\":\"{e}\"}}"))
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(DOCUMENT.as_str())
}

/// The rendered document, made once per process (it depends on nothing but the code).
static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(document);

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_and_every_admin_operation_names_its_scope() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/admin")) {
            for (method, op) in item.as_object().unwrap() {
                let scopes = &op["security"][0]["bearer"];
                assert!(
                    scopes.as_array().is_some_and(|s| !s.is_empty()),
                    "{method} {path} names no scope"
                );
            }
        }
        assert!(paths.contains_key("/v1/forms/{form_id}/submissions"));
    }
}
