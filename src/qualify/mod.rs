//! Qualification and hand-off, on top of the store: the dispatcher that turns each recorded
//! event into a fresh score, a stage move (frozen factors in the ledger), a hand-off routed to
//! an owner with its mail and SLA clock, and webhook deliveries; and the explicit moves people
//! make (a stage set through the API or CLI, a hand-off accepted through its link).
//!
//! Every unit of work is one transaction (`store::Qualification`) that only applies if the
//! lead's stage or the hand-off is still where the work found it, so two instances (or an
//! owner clicking twice) cannot move anything twice.

pub mod routing;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::{ConfigError, FormKind, HandoffSettings, Settings};
use crate::scoring::{Cause, Ruleset, Score, Stage, StageRules};
use crate::store::{
    Applied, ClaimedEvent, HandoffMove, HandoffRecord, LeadStore, NewDelivery, NewEvent,
    NewHandoff, NewStaffMail, Qualification, ScoreCache, StageMove, StageRecord, StoreError,
};
use crate::webhooks::Webhooks;

/// Events whose facts change a score.
const RESCORING: [&str; 5] = [
    "submission.created",
    "lead.confirmed",
    "download.used",
    "sequence.clicked",
    "sequence.replied",
];

/// The rules, owners and endpoints, built once at startup.
#[derive(Debug, Clone)]
pub struct Qualifier {
    pub ruleset: Ruleset,
    pub stages: StageRules,
    pub handoff: HandoffSettings,
    pub webhooks: Arc<Webhooks>,
    /// CRM adapters (pushes go through the webhook delivery queue).
    pub crms: Arc<crate::crm::Crms>,
    /// Nurture sequences: enrolled by events, left on a stage move or a hand-off.
    pub sequences: Arc<crate::sequences::Sequences>,
    /// Attempts each sequence step gets (the outbox's).
    max_attempts: i64,
    /// Stage rules or scoring rules exist.
    active: bool,
}

/// A lead's score now, with its stored stage.
#[derive(Debug, Clone)]
pub struct LeadScore {
    pub score: Score,
    pub stage: Stage,
    pub stored: Option<StageRecord>,
}

/// A hand-off move people make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffAction {
    Accept,
    Reject,
    Connected,
    Qualified,
    Disqualified,
}

impl HandoffAction {
    pub fn parse(s: &str) -> Option<HandoffAction> {
        Some(match s {
            "accept" | "accepted" | "attempting" => HandoffAction::Accept,
            "reject" | "rejected" => HandoffAction::Reject,
            "connected" => HandoffAction::Connected,
            "qualified" => HandoffAction::Qualified,
            "disqualified" => HandoffAction::Disqualified,
            _ => return None,
        })
    }

    /// (allowed from, to, needs a reason)
    fn rule(self) -> (Vec<&'static str>, &'static str, bool) {
        match self {
            HandoffAction::Accept => (vec!["new"], "attempting", false),
            HandoffAction::Reject => (vec!["new", "attempting"], "rejected", true),
            HandoffAction::Connected => (vec!["attempting"], "connected", false),
            HandoffAction::Qualified => (vec!["attempting", "connected"], "qualified", false),
            HandoffAction::Disqualified => {
                (vec!["new", "attempting", "connected"], "disqualified", true)
            }
        }
    }
}

/// What an explicit move came to.
#[derive(Debug, Clone)]
pub enum MoveOutcome<T> {
    Done(T),
    NotFound,
    /// Nothing to do: it is there already.
    Unchanged,
    /// A reason is required for this move.
    ReasonNeeded,
    /// Not possible from where it is now (the current status).
    NotAllowed(String),
}

fn words_of(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect()
}

impl Qualifier {
    pub fn build(settings: &Settings) -> Result<Qualifier, ConfigError> {
        let forms: Vec<&str> = settings.forms.iter().map(|f| f.id.as_str()).collect();
        let newsletters: Vec<&str> = settings
            .forms
            .iter()
            .filter(|f| f.kind == FormKind::Newsletter)
            .map(|f| f.id.as_str())
            .collect();
        let ruleset = Ruleset::compile(&settings.scoring, &forms)
            .map_err(|m| ConfigError::invalid("scoring", m))?;
        let stages = StageRules::compile(&settings.stages, &forms, &newsletters)
            .map_err(|m| ConfigError::invalid("stages", m))?;
        routing::check(&settings.handoff, &forms)?;
        let webhooks = Arc::new(Webhooks::build(&settings.webhooks)?);
        let crms = Arc::new(crate::crm::Crms::build(&settings.crm)?);
        let sequences = Arc::new(crate::sequences::Sequences::build(settings)?);
        let active = !ruleset.is_empty()
            || settings.stages.mql_when.is_some()
            || !settings.stages.hand_raisers.is_empty();
        Ok(Qualifier {
            ruleset,
            stages,
            handoff: settings.handoff.clone(),
            webhooks,
            crms,
            sequences,
            max_attempts: i64::from(settings.outbox.max_attempts),
            active,
        })
    }

    /// Whether facts need to record events (anything consumes them).
    pub fn events_needed(&self) -> bool {
        self.active
            || !self.webhooks.is_empty()
            || !self.crms.is_empty()
            || !self.sequences.is_empty()
    }

    /// Attempts each sequence step gets.
    pub fn max_attempts(&self) -> i64 {
        self.max_attempts
    }

    pub fn active(&self) -> bool {
        self.active
    }

    /// The lead's score at `now_ms` and its stage (`None`: no such lead).
    pub async fn score(
        &self,
        store: &LeadStore,
        lead_id: &str,
        now_ms: i64,
    ) -> Result<Option<LeadScore>, StoreError> {
        let Some(activity) = store.lead_activity(lead_id).await? else {
            return Ok(None);
        };
        let stored = store.lead_stage(lead_id).await?;
        let score = self
            .ruleset
            .score(&activity.facts, &activity.activity, now_ms);
        let stage = match stored.as_ref().and_then(StageRecord::view) {
            Some(v) => v.stage,
            None => self
                .stages
                .next(None, &activity.activity, &score)
                .map_or(Stage::Subscriber, |(s, _)| s),
        };
        Ok(Some(LeadScore {
            score,
            stage,
            stored,
        }))
    }

    /// Plans what one claimed event implies (rescoring and stage rules for facts that change
    /// a score, then its webhook deliveries), to be written with the round's other plans in
    /// one transaction (`LeadStore::apply_qualifications`). The cached score is rewritten
    /// only when it changed.
    pub async fn plan(
        &self,
        store: &LeadStore,
        event: &ClaimedEvent,
        owner: &str,
        now_ms: i64,
    ) -> Result<Qualification, StoreError> {
        let mut q = Qualification {
            lead_id: event.lead_id.clone(),
            now_ms,
            done_event: Some((event.id.clone(), owner.to_string())),
            ..Qualification::default()
        };
        if self.active && RESCORING.contains(&event.kind.as_str()) {
            if let Some(activity) = store.lead_activity(&event.lead_id).await? {
                let stored = store.lead_stage(&event.lead_id).await?;
                let view = stored.as_ref().and_then(StageRecord::view);
                let score = self
                    .ruleset
                    .score(&activity.facts, &activity.activity, now_ms);
                if let Some((to, why)) = self.stages.next(view.as_ref(), &activity.activity, &score)
                {
                    let from = view.map(|v| v.stage);
                    self.plan_move(&mut q, (from, to), &score, ("rule", "inlet"), Some(why));
                    self.plan_handoff_for_mql(store, &mut q, to).await?;
                }
                let changed = stored.as_ref().is_some_and(|r| {
                    (r.score, r.fit, r.engagement, r.ruleset.as_str())
                        != (
                            score.score,
                            score.fit,
                            score.engagement,
                            score.ruleset.as_str(),
                        )
                });
                if changed {
                    q.score = Some(cache(&score));
                }
            }
        }
        if event.kind == "sequence.replied" {
            self.plan_reply(store, &mut q).await?;
        }
        self.plan_enrolments(store, &mut q, event).await?;
        q.deliveries = self.deliveries(store, event).await?;
        Ok(q)
    }

    /// A reply to nurture mail is a raised hand: the lead becomes an MQL (when below) and
    /// gets a hand-off (when owners exist and none is open).
    async fn plan_reply(&self, store: &LeadStore, q: &mut Qualification) -> Result<(), StoreError> {
        if q.handoff.is_some() || store.has_open_handoff(&q.lead_id).await? {
            return Ok(());
        }
        let Some(now) = self.score(store, &q.lead_id, q.now_ms).await? else {
            return Ok(());
        };
        let from = now
            .stored
            .as_ref()
            .and_then(StageRecord::view)
            .map(|v| v.stage);
        let below_mql = from.is_none_or(|s| s.rank().is_some_and(|r| r < 2));
        if below_mql && q.stage.is_none() {
            self.plan_move(
                q,
                (from, Stage::Mql),
                &now.score,
                ("rule", "inlet"),
                Some("replied to a nurture mail".into()),
            );
        }
        if !self.handoff.owners.is_empty() && from != Some(Stage::Disqualified) {
            self.plan_handoff(store, q).await?;
        }
        Ok(())
    }

    /// The sequences an event enrols its lead in: not when the address is suppressed, and
    /// not when one of the sequence's exit rules already holds.
    async fn plan_enrolments(
        &self,
        store: &LeadStore,
        q: &mut Qualification,
        event: &ClaimedEvent,
    ) -> Result<(), StoreError> {
        if self.sequences.is_empty() {
            return Ok(());
        }
        let data = event.data();
        let form = data.get("form_id").and_then(Value::as_str);
        let stage = data
            .get("to")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Stage>().ok());
        let matching: Vec<&crate::sequences::Sequence> = self
            .sequences
            .all()
            .iter()
            .filter(|s| s.enrolled_by(&event.kind, form, stage))
            .collect();
        if matching.is_empty() {
            return Ok(());
        }
        let Some(activity) = store.lead_activity(&q.lead_id).await? else {
            return Ok(());
        };
        let hash = store.suppression_hash(&activity.facts.email);
        if !store.suppressed_among(&[hash]).await?.is_empty() {
            return Ok(());
        }
        let stored = store.lead_stage(&q.lead_id).await?;
        let lead = crate::sequences::LeadState {
            stage: q
                .stage
                .as_ref()
                .map(|m| m.to)
                .or_else(|| stored.as_ref().and_then(StageRecord::view).map(|v| v.stage)),
            open_handoff: q.handoff.is_some() || store.has_open_handoff(&q.lead_id).await?,
            figures: stored
                .as_ref()
                .map_or_else(Default::default, |r| crate::scoring::Figures {
                    fit: r.fit,
                    engagement: r.engagement,
                    score: r.score,
                }),
            ..Default::default()
        };
        for s in matching {
            if s.exit_reason(&lead).is_some() {
                continue;
            }
            let Some(first) = s.next_step(&[]) else {
                continue;
            };
            let zone = s.window.lead_zone_field.as_ref().and_then(|f| {
                crate::sequences::lead_zone(activity.facts.fields.get(f).map(String::as_str))
            });
            q.enrolments.push(crate::store::NewEnrolment {
                sequence_id: s.id.clone(),
                step_id: first.id.clone(),
                due_at_ms: s.window.next_open(q.now_ms + first.delay_ms, zone),
                submission_id: data
                    .get("submission_id")
                    .and_then(Value::as_str)
                    .map(String::from),
                again: s.reenroll == crate::config::Reenroll::AfterEnd,
                max_attempts: self.max_attempts,
            });
        }
        Ok(())
    }

    /// Adds a stage move to `q` with its events, and, for a new MQL, the hand-off.
    fn plan_move(
        &self,
        q: &mut Qualification,
        (from, to): (Option<Stage>, Stage),
        score: &Score,
        (cause, actor): (&'static str, &str),
        reason: Option<String>,
    ) {
        let recycle = from.is_some_and(|f| f.rank() > to.rank() && to.rank().is_some());
        q.events.push(NewEvent {
            kind: "lead.stage_changed",
            lead_id: q.lead_id.clone(),
            data: json!({
                "from": from.map(Stage::as_str),
                "to": to.as_str(),
                "cause": cause,
                "actor": actor,
                "reason": reason,
                "score": score.score,
                "fit": score.fit,
                "engagement": score.engagement,
                "ruleset": score.ruleset,
                "factors": score.factors,
            }),
        });
        let exits = self.sequences.ids_where(|s| {
            s.exits
                .stage_at_least
                .is_some_and(|min| to.rank().is_none() || to.rank() >= min.rank())
        });
        if !exits.is_empty() {
            q.exits.push(crate::store::Exit {
                sequences: exits,
                reason: crate::sequences::reason::STAGE,
                detail: Some(format!("reached the stage '{}'", to.as_str())),
            });
        }
        q.stage = Some(StageMove {
            from,
            to,
            cause,
            actor: actor.to_string(),
            reason: reason.clone(),
            recycle,
        });
        if to == Stage::Mql {
            q.events.push(NewEvent {
                kind: "lead.mql",
                lead_id: q.lead_id.clone(),
                data: json!({
                    "reason": reason,
                    "score": score.score,
                    "fit": score.fit,
                    "engagement": score.engagement,
                    "factors": score.factors,
                }),
            });
        }
        if q.score.is_none() {
            q.score = Some(cache(score));
        }
    }

    /// A lead that became an MQL gets a hand-off (when owners exist and it has no open one).
    async fn plan_handoff_for_mql(
        &self,
        store: &LeadStore,
        q: &mut Qualification,
        to: Stage,
    ) -> Result<(), StoreError> {
        if to == Stage::Mql
            && self.handoff.on_mql
            && !self.handoff.owners.is_empty()
            && !store.has_open_handoff(&q.lead_id).await?
        {
            self.plan_handoff(store, q).await?;
        }
        Ok(())
    }

    /// What `inlet scoring plan --apply` writes for one lead: its stage move under the rules
    /// (cause `cli`), and its fresh score. A new MQL gets a hand-off only with `handoffs`.
    pub async fn plan_rule_change(
        &self,
        store: &LeadStore,
        lead_id: &str,
        (from, to): (Option<Stage>, Option<(Stage, String)>),
        score: &Score,
        (handoffs, now_ms): (bool, i64),
    ) -> Result<Qualification, StoreError> {
        let mut q = Qualification {
            lead_id: lead_id.to_string(),
            now_ms,
            score: Some(cache(score)),
            ..Qualification::default()
        };
        if let Some((to, why)) = to {
            self.plan_move(
                &mut q,
                (from, to),
                score,
                ("cli", "scoring plan"),
                Some(why),
            );
            if handoffs {
                self.plan_handoff_for_mql(store, &mut q, to).await?;
            }
        }
        Ok(q)
    }

    /// Routes a new hand-off and queues its mail and event.
    async fn plan_handoff(
        &self,
        store: &LeadStore,
        q: &mut Qualification,
    ) -> Result<(), StoreError> {
        let activity = store.lead_activity(&q.lead_id).await?.unwrap_or_default();
        let forms: HashSet<String> = activity
            .activity
            .iter()
            .map(|a| a.form_id.clone())
            .collect();
        let load = store.open_handoffs_by_owner().await?;
        let decision = routing::route(&self.handoff, &activity.facts, &forms, &load, q.now_ms);
        let id = uuid::Uuid::now_v7().to_string();
        let sla = i64::try_from(self.handoff.sla_hours).unwrap_or(24) * 3_600_000;
        let recipients: Vec<String> = match decision
            .owner
            .as_ref()
            .and_then(|o| self.handoff.owners.iter().find(|x| &x.id == o))
        {
            Some(o) => vec![o.email.clone()],
            None => self.handoff.escalate_to.clone(),
        };
        for r in recipients {
            q.staff_mail.push(NewStaffMail {
                kind: "handoff",
                recipient: r,
                subject_id: id.clone(),
            });
        }
        q.events.push(NewEvent {
            kind: "handoff.created",
            lead_id: q.lead_id.clone(),
            data: json!({
                "handoff_id": id,
                "owner_id": decision.owner,
                "status": "new",
                "route": decision.reason,
                "sla_due_at": rfc3339(q.now_ms + sla),
            }),
        });
        let exits = self.sequences.ids_where(|s| s.exits.on_handoff);
        if !exits.is_empty() {
            q.exits.push(crate::store::Exit {
                sequences: exits,
                reason: crate::sequences::reason::HANDOFF,
                detail: Some("handed to sales".into()),
            });
        }
        q.handoff = Some(NewHandoff {
            id,
            owner_id: decision.owner,
            route: decision.reason,
            sla_due_at_ms: q.now_ms + sla,
        });
        Ok(())
    }

    /// Sets a lead's stage by hand (API, CLI, console). A step back or disqualifying needs a
    /// reason; the score's factors are frozen in the ledger; an MQL gets its hand-off.
    pub async fn move_stage(
        &self,
        store: &LeadStore,
        lead_id: &str,
        to: Stage,
        (cause, actor): (Cause, &str),
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<MoveOutcome<Stage>, StoreError> {
        let Some(now) = self.score(store, lead_id, now_ms).await? else {
            return Ok(MoveOutcome::NotFound);
        };
        let from = now
            .stored
            .as_ref()
            .and_then(StageRecord::view)
            .map(|v| v.stage);
        if from == Some(to) {
            return Ok(MoveOutcome::Unchanged);
        }
        let reason = reason.map(words_of).filter(|r| !r.is_empty());
        let current = from.unwrap_or(now.stage);
        if current.needs_reason(to) && reason.is_none() {
            return Ok(MoveOutcome::ReasonNeeded);
        }
        let mut q = Qualification {
            lead_id: lead_id.to_string(),
            now_ms,
            ..Qualification::default()
        };
        self.plan_move(
            &mut q,
            (from, to),
            &now.score,
            (cause.as_str(), actor),
            reason,
        );
        if let Some(m) = &mut q.stage {
            m.recycle = current.needs_reason(to) && to != Stage::Disqualified;
        }
        Ok(match store.apply_qualification(&q).await? {
            Applied::Done => MoveOutcome::Done(to),
            Applied::Moved => {
                MoveOutcome::NotAllowed("the stage changed meanwhile; try again".into())
            }
        })
    }

    /// Moves a hand-off (an owner's link, the API, the console, a CRM), with what follows for
    /// the lead: qualified -> `sql`; disqualified -> `disqualified`; rejected -> back to
    /// `lead` (nurture) with the reason.
    pub async fn move_handoff(
        &self,
        store: &LeadStore,
        id: &str,
        action: HandoffAction,
        (cause, actor): (Cause, &str),
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<MoveOutcome<HandoffRecord>, StoreError> {
        let Some(h) = store.handoff(id).await? else {
            return Ok(MoveOutcome::NotFound);
        };
        let (from, to, needs_reason) = action.rule();
        if h.status == to {
            return Ok(MoveOutcome::Unchanged);
        }
        if !from.contains(&h.status.as_str()) {
            return Ok(MoveOutcome::NotAllowed(h.status));
        }
        let reason = reason.map(words_of).filter(|r| !r.is_empty());
        if needs_reason && reason.is_none() {
            return Ok(MoveOutcome::ReasonNeeded);
        }
        let mut q = Qualification {
            lead_id: h.lead_id.clone(),
            now_ms,
            handoff_move: Some(HandoffMove {
                id: id.to_string(),
                from: from.clone(),
                to,
                cause: cause.as_str(),
                actor: actor.to_string(),
                reason: reason.clone(),
            }),
            ..Qualification::default()
        };
        let kind = match action {
            HandoffAction::Accept => Some("handoff.accepted"),
            HandoffAction::Reject => Some("handoff.rejected"),
            HandoffAction::Connected => None,
            HandoffAction::Qualified | HandoffAction::Disqualified => Some("handoff.closed"),
        };
        if let Some(kind) = kind {
            q.events.push(NewEvent {
                kind,
                lead_id: h.lead_id.clone(),
                data: json!({
                    "handoff_id": id,
                    "owner_id": h.owner_id,
                    "status": to,
                    "reason": reason,
                    "actor": actor,
                }),
            });
        }
        // What it means for the lead's stage.
        let lead_to = match action {
            HandoffAction::Qualified => Some((Stage::Sql, None)),
            HandoffAction::Disqualified => Some((Stage::Disqualified, reason.clone())),
            HandoffAction::Reject => Some((
                Stage::Lead,
                reason.as_ref().map(|r| format!("hand-off rejected: {r}")),
            )),
            _ => None,
        };
        if let Some((stage, why)) = lead_to {
            if let Some(now) = self.score(store, &h.lead_id, now_ms).await? {
                let from = now
                    .stored
                    .as_ref()
                    .and_then(StageRecord::view)
                    .map(|v| v.stage);
                let forward_only =
                    stage == Stage::Sql && from.and_then(Stage::rank).is_some_and(|r| r >= 3);
                if from != Some(stage) && !forward_only {
                    let why = why.or_else(|| Some(format!("hand-off {to}")));
                    let actor = format!("{actor} (hand-off)");
                    self.plan_move(&mut q, (from, stage), &now.score, ("handoff", &actor), why);
                    if let Some(m) = &mut q.stage {
                        m.recycle = action == HandoffAction::Reject;
                    }
                }
            }
        }
        Ok(match store.apply_qualification(&q).await? {
            Applied::Done => match store.handoff(id).await? {
                Some(h) => MoveOutcome::Done(h),
                None => MoveOutcome::NotFound,
            },
            Applied::Moved => {
                let now = store
                    .handoff(id)
                    .await?
                    .map_or_else(String::new, |h| h.status);
                MoveOutcome::NotAllowed(now)
            }
        })
    }

    /// The webhook deliveries an event implies (endpoints that want it and are not disabled).
    async fn deliveries(
        &self,
        store: &LeadStore,
        event: &ClaimedEvent,
    ) -> Result<Vec<NewDelivery>, StoreError> {
        if self.webhooks.is_empty() && self.crms.is_empty() {
            return Ok(Vec::new());
        }
        let mut kinds = vec![event.kind.as_str()];
        let stored = event.data();
        if event.kind == "submission.created" && stored["new_lead"] == json!(true) {
            kinds.push("lead.created");
        }
        let states = store.endpoint_states().await?;
        let wanted: Vec<(&crate::webhooks::Endpoint, &str)> = kinds
            .iter()
            .flat_map(|k| {
                self.webhooks
                    .endpoints()
                    .iter()
                    .filter(|e| e.wants(k))
                    .filter(|e| states.get(&e.id).is_none_or(|s| s.disabled_at_ms.is_none()))
                    .map(move |e| (e, *k))
            })
            .collect();
        let base = format!("msg_{}", event.id.replace('-', ""));
        let mut out: Vec<NewDelivery> = self
            .crms
            .all()
            .iter()
            .filter(|c| c.wants(&event.kind))
            .filter(|c| {
                states
                    .get(&c.endpoint_id())
                    .is_none_or(|s| s.disabled_at_ms.is_none())
            })
            .map(|c| NewDelivery {
                message_id: base.clone(),
                endpoint_id: c.endpoint_id(),
                kind: event.kind.clone(),
                lead_id: Some(event.lead_id.clone()),
                payload: crate::crm::push_payload(&event.kind, &event.lead_id, &stored),
                event_at_ms: event.created_at,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        let email = store.get_lead(&event.lead_id).await?.map(|l| l.0);
        for (endpoint, kind) in wanted {
            let Some(data) = self
                .data(store, event, kind, &stored, email.as_deref())
                .await?
            else {
                continue; // the submission is gone (erased since): nothing to tell
            };
            let base = format!("msg_{}", event.id.replace('-', ""));
            let message_id = if kind == event.kind {
                base
            } else {
                format!("{base}_lead")
            };
            out.push(NewDelivery {
                message_id,
                endpoint_id: endpoint.id.clone(),
                kind: kind.to_string(),
                lead_id: Some(event.lead_id.clone()),
                payload: crate::webhooks::payload(kind, event.created_at, &data),
                event_at_ms: event.created_at,
            });
        }
        Ok(out)
    }

    /// A message's `data`.
    async fn data(
        &self,
        store: &LeadStore,
        event: &ClaimedEvent,
        kind: &str,
        stored: &Value,
        email: Option<&str>,
    ) -> Result<Option<Value>, StoreError> {
        let lead = &event.lead_id;
        Ok(Some(match kind {
            "submission.created" => {
                let id = stored["submission_id"].as_str().unwrap_or_default();
                let Some(s) = store.get_submission(id).await? else {
                    return Ok(None);
                };
                json!({
                    "submission_id": s.id,
                    "lead_id": s.lead_id,
                    "form_id": s.form_id,
                    "email": s.email,
                    "fields": s.fields,
                    "attribution": s.attribution,
                    "created_at": rfc3339(s.created_at_ms),
                })
            }
            "lead.created" => json!({
                "lead_id": lead,
                "email": email,
                "form_id": stored["form_id"],
                "created_at": rfc3339(event.created_at),
            }),
            "lead.erased" => json!({ "lead_id": lead }),
            _ => {
                let mut data = match stored {
                    Value::Object(m) => m.clone(),
                    _ => serde_json::Map::new(),
                };
                data.insert("lead_id".into(), json!(lead));
                data.insert("email".into(), json!(email));
                Value::Object(data)
            }
        }))
    }
}

fn cache(s: &Score) -> ScoreCache {
    ScoreCache {
        score: s.score,
        fit: s.fit,
        engagement: s.engagement,
        ruleset: s.ruleset.clone(),
        factors: s.factors.clone(),
    }
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
