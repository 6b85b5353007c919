//! The console's qualification pages: the hand-off queue (a `sales` account sees its own),
//! answering a hand-off, setting a lead's stage, and what the lead page shows of its score
//! ("why"), stage history and hand-offs.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::context;
use serde::Deserialize;

use super::console::{page, see_other, ConsoleUser};
use crate::console::{self, Role};
use crate::error::ApiError;
use crate::qualify::{HandoffAction, MoveOutcome};
use crate::scoring::{Cause, Stage};
use crate::startup::AppState;
use crate::store::HandoffRecord;

/// Hand-offs per page.
const SHOWN: u32 = 50;

/// The owner ids a person answers for (owners configured with their address).
fn owner_ids(state: &AppState, email: &str) -> Vec<String> {
    state
        .qualifier
        .handoff
        .owners
        .iter()
        .filter(|o| o.email.eq_ignore_ascii_case(email))
        .map(|o| o.id.clone())
        .collect()
}

fn owner_name(state: &AppState, id: Option<&str>) -> String {
    id.and_then(|id| state.qualifier.handoff.owners.iter().find(|o| o.id == id))
        .map_or_else(|| "nobody (unassigned)".into(), |o| o.name.clone())
}

/// Whether `user` may answer hand-off `h`: its owner, or someone trusted with leads.
fn may_answer(state: &AppState, user: &ConsoleUser, h: &HandoffRecord) -> bool {
    user.role.may_handle_data()
        || (user.role == Role::Sales
            && h.owner_id
                .as_ref()
                .is_some_and(|o| owner_ids(state, user.email()).contains(o)))
}

/// A `sales` account sees a lead only through one of its hand-offs (else: not found).
pub(super) async fn sales_may_see(
    state: &AppState,
    user: &ConsoleUser,
    lead_id: &str,
) -> Result<(), ApiError> {
    if user.role != Role::Sales {
        return Ok(());
    }
    let mine = owner_ids(state, user.email());
    let handoffs = state.store.lead_handoffs(lead_id).await?;
    if handoffs
        .iter()
        .any(|h| h.owner_id.as_ref().is_some_and(|o| mine.contains(o)))
    {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

fn status_words(status: &str) -> &'static str {
    match status {
        "new" => "waiting to be accepted",
        "attempting" => "accepted: reaching out",
        "connected" => "in conversation",
        "qualified" => "qualified: a prospect",
        "disqualified" => "disqualified",
        "rejected" => "passed back to marketing",
        _ => "unknown",
    }
}

/// What the lead page shows of qualification.
pub(super) async fn lead_context(
    state: &AppState,
    user: &ConsoleUser,
    lead_id: &str,
) -> Result<minijinja::Value, ApiError> {
    let now = state.clock.now_ms();
    let Some(s) = state.qualifier.score(&state.store, lead_id, now).await? else {
        return Ok(minijinja::Value::UNDEFINED);
    };
    let factors: Vec<_> = s
        .score
        .factors
        .iter()
        .map(|f| {
            context! { points => format!("{:+}", f.points), detail => f.detail, rule => f.rule, axis => f.axis }
        })
        .collect();
    let changes: Vec<_> = state
        .store
        .stage_changes(lead_id)
        .await?
        .into_iter()
        .rev()
        .map(|c| {
            context! {
                when => console::when(c.created_at_ms),
                from => c.from_stage.as_deref().and_then(|s| s.parse::<Stage>().ok()).map(Stage::label),
                to => c.to_stage.parse::<Stage>().map(Stage::label).unwrap_or("?"),
                cause => c.cause, actor => c.actor, reason => c.reason, score => c.score,
            }
        })
        .collect();
    let handoffs: Vec<_> = state
        .store
        .lead_handoffs(lead_id)
        .await?
        .into_iter()
        .map(|h| {
            let answer = may_answer(state, user, &h);
            context! {
                id => h.id, owner => owner_name(state, h.owner_id.as_deref()),
                status => h.status, words => status_words(&h.status), route => h.route,
                reason => h.reason, created => console::when(h.created_at_ms),
                due => console::when(h.sla_due_at_ms), overdue => h.status == "new" && h.sla_due_at_ms <= now,
                escalated => h.escalated_at_ms.is_some(), may_answer => answer,
            }
        })
        .collect();
    let stages: Vec<_> = Stage::ALL
        .iter()
        .map(|st| context! { value => st.as_str(), label => st.label() })
        .collect();
    Ok(context! {
        score => s.score.score, fit => s.score.fit, engagement => s.score.engagement,
        ruleset => s.score.ruleset, factors, stage => s.stage.as_str(), stage_label => s.stage.label(),
        changes, handoffs, stages, may_set_stage => user.role.may_handle_data(),
        active => state.qualifier.active(),
    })
}

#[derive(Deserialize)]
pub(super) struct QueueQuery {
    status: Option<String>,
    owner: Option<String>,
    before: Option<String>,
}

const FILTERS: [(&str, &str); 8] = [
    ("open", "Open"),
    ("new", "Waiting"),
    ("attempting", "Accepted"),
    ("connected", "In conversation"),
    ("qualified", "Qualified"),
    ("disqualified", "Disqualified"),
    ("rejected", "Passed back"),
    ("all", "All"),
];

/// `GET /console/handoffs`: the queue (a `sales` account: its own).
pub(super) async fn queue(
    user: ConsoleUser,
    state: web::Data<AppState>,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = query.status.as_deref().unwrap_or("open");
    if !FILTERS.iter().any(|(v, _)| *v == status) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "status must be open, new, attempting, connected, qualified, disqualified, rejected or all".into(),
        ));
    }
    let before = super::console::before_id(query.before.as_deref())?;
    let mine = owner_ids(&state, user.email());
    let owner = if user.role == Role::Sales {
        // A sales account that owns nothing sees nothing (not everyone's).
        Some(mine.first().cloned().unwrap_or_else(|| "\u{0}".into()))
    } else {
        query.owner.clone().filter(|o| !o.is_empty())
    };
    let filter = (status != "all").then_some(status);
    let mut list = state
        .store
        .list_handoffs(owner.as_deref(), filter, before, SHOWN + 1)
        .await?;
    let older = (list.len() > SHOWN as usize)
        .then(|| {
            list.truncate(SHOWN as usize);
            list.last().map(|h| h.id.clone())
        })
        .flatten();
    let now = state.clock.now_ms();
    let mut rows = Vec::with_capacity(list.len());
    for h in &list {
        let score = state.store.lead_stage(&h.lead_id).await?.map(|s| s.score);
        rows.push(context! {
            id => h.id, lead_id => h.lead_id, email => h.email,
            owner => owner_name(&state, h.owner_id.as_deref()), status => h.status,
            words => status_words(&h.status), score, created => console::when(h.created_at_ms),
            due => console::when(h.sla_due_at_ms),
            overdue => h.status == "new" && h.sla_due_at_ms <= now,
            route => h.route,
        });
    }
    let owners: Vec<_> = state
        .qualifier
        .handoff
        .owners
        .iter()
        .map(|o| context! { id => o.id, name => o.name })
        .collect();
    let filters: Vec<_> = FILTERS
        .iter()
        .map(|(v, l)| context! { value => v, label => l })
        .collect();
    Ok(page(
        &state,
        StatusCode::OK,
        "handoffs.html",
        context! {
            user => user.view(), section => "handoffs", rows, older, paged => before.is_some(),
            status, filters, owners, owner => if user.role == Role::Sales { None } else { owner },
            sales => user.role == Role::Sales, owns_nothing => user.role == Role::Sales && mine.is_empty(),
            configured => !state.qualifier.handoff.owners.is_empty(),
        },
    ))
}

#[derive(Deserialize)]
pub(super) struct AnswerForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    action: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /console/handoffs/{id}`: accept, reject, connected, qualified or disqualified.
pub(super) async fn answer(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<AnswerForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    let h = state.store.handoff(&id).await?.ok_or(ApiError::NotFound)?;
    if !may_answer(&state, &user, &h) {
        return Err(if user.role == Role::Sales {
            ApiError::NotFound
        } else {
            ApiError::Forbidden(
                "role_not_allowed",
                format!(
                    "your role ({}) may look but not answer hand-offs",
                    user.role
                ),
            )
        });
    }
    let action = HandoffAction::parse(&form.action)
        .ok_or_else(|| ApiError::BadRequest("invalid_form", "choose one of the buttons".into()))?;
    let actor = user.email().to_string();
    let outcome = state
        .qualifier
        .move_handoff(
            &state.store,
            &id,
            action,
            (Cause::Console, &actor),
            form.reason.as_deref(),
            state.clock.now_ms(),
        )
        .await?;
    match outcome {
        MoveOutcome::Done(_) | MoveOutcome::Unchanged => {
            tracing::info!(handoff_id = %id, "console: hand-off answered");
            Ok(see_other(&format!("/console/leads/{}", h.lead_id)))
        }
        MoveOutcome::NotFound => Err(ApiError::NotFound),
        MoveOutcome::ReasonNeeded => Err(ApiError::BadRequest(
            "reason_required",
            "please say why, so marketing can follow up".into(),
        )),
        MoveOutcome::NotAllowed(now) => Err(ApiError::Conflict(
            "handoff_not_movable",
            format!("this hand-off is '{now}' now: that step is not possible from there"),
        )),
    }
}

#[derive(Deserialize)]
pub(super) struct StageForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    stage: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /console/leads/{id}/stage`: a stage set by someone trusted with leads.
pub(super) async fn set_stage(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<StageForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    user.may_handle_data()?;
    let to: Stage = form
        .stage
        .parse()
        .map_err(|m| ApiError::BadRequest("invalid_form", m))?;
    let actor = user.email().to_string();
    match state
        .qualifier
        .move_stage(
            &state.store,
            &id,
            to,
            (Cause::Console, &actor),
            form.reason.as_deref(),
            state.clock.now_ms(),
        )
        .await?
    {
        MoveOutcome::Done(_) | MoveOutcome::Unchanged => {
            Ok(see_other(&format!("/console/leads/{id}")))
        }
        MoveOutcome::NotFound => Err(ApiError::NotFound),
        MoveOutcome::ReasonNeeded => Err(ApiError::BadRequest(
            "reason_required",
            "moving a lead back, or disqualifying it, needs a reason".into(),
        )),
        MoveOutcome::NotAllowed(why) => Err(ApiError::Conflict("stage_changed", why)),
    }
}

/// A delay in words ("at once", "3 days after the one before").
fn delay_words(ms: i64, first: bool) -> String {
    let after = if first {
        "after enrolling"
    } else {
        "after the one before"
    };
    if ms == 0 {
        return if first {
            "at once".into()
        } else {
            "right after the one before".into()
        };
    }
    let (n, unit) = if ms % 86_400_000 == 0 {
        (ms / 86_400_000, "day")
    } else if ms % 3_600_000 == 0 {
        (ms / 3_600_000, "hour")
    } else {
        (ms / 60_000, "minute")
    };
    format!("{n} {unit}{} {after}", if n == 1 { "" } else { "s" })
}

/// `GET /console/sequences`: each sequence with enrolled, sent per step and exits by reason.
pub(super) async fn sequences(
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if user.role == Role::Sales {
        return Err(ApiError::NotFound);
    }
    let bodies = super::sequences::sequence_bodies(&state).await?;
    let n = |m: &std::collections::BTreeMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0);
    let sequences: Vec<_> = bodies
        .iter()
        .map(|s| {
            let steps: Vec<_> = s
                .steps
                .iter()
                .enumerate()
                .map(|(i, st)| {
                    context! {
                        id => st.id, when => delay_words(st.delay_ms, i == 0),
                        skip_when => st.skip_when,
                        sent => n(&st.messages, "sent"), waiting => n(&st.messages, "pending"),
                        skipped => n(&st.messages, "skipped"),
                        failing => n(&st.messages, "failed") + n(&st.messages, "dead"),
                    }
                })
                .collect();
            let exits: Vec<_> = s
                .exits
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(r, c)| context! { words => crate::sequences::exit_words(r), count => c })
                .collect();
            let (active, finished, exited) = (
                n(&s.enrolments, "active"),
                n(&s.enrolments, "finished"),
                n(&s.enrolments, "exited"),
            );
            context! {
                id => s.id, name => s.name, enrolls_on => s.enrolls_on, window => s.window,
                total => active + finished + exited, active, finished, exited,
                track_clicks => s.track_clicks, clicks => s.clicks, replies => s.replies,
                steps, exits,
            }
        })
        .collect();
    Ok(page(
        &state,
        StatusCode::OK,
        "sequences.html",
        context! { user => user.view(), section => "sequences", sequences },
    ))
}
