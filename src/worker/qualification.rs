//! The worker's qualification rounds: dispatch recorded events (rescore, move stages, create
//! hand-offs, fan out to webhooks), deliver webhooks, escalate hand-offs past their SLA, and
//! send mail to staff. Each is claimed with a lease like the outbox, so several instances
//! share the work without doing any of it twice.

use super::{backoff_ms, OutboxWorker};
use crate::store::{
    Applied, ClaimedEvent, ConsoleMailOutcome, NewStaffMail, Qualification, StaffMail, StoreError,
};

/// What the qualification rounds did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QualificationRound {
    /// Events dispatched.
    pub events: usize,
    /// Events that failed and will be retried.
    pub event_failures: usize,
    pub webhooks: crate::webhooks::DeliveryRound,
    pub escalated: usize,
    pub staff_sent: usize,
    pub staff_failed: usize,
}

impl QualificationRound {
    pub(super) fn add(&mut self, o: &QualificationRound) {
        self.events += o.events;
        self.event_failures += o.event_failures;
        self.webhooks.claimed += o.webhooks.claimed;
        self.webhooks.delivered += o.webhooks.delivered;
        self.webhooks.failed += o.webhooks.failed;
        self.webhooks.dead += o.webhooks.dead;
        self.webhooks.cancelled += o.webhooks.cancelled;
        self.escalated += o.escalated;
        self.staff_sent += o.staff_sent;
        self.staff_failed += o.staff_failed;
    }

    pub fn claimed(&self) -> usize {
        self.events
            + self.event_failures
            + self.webhooks.claimed
            + self.escalated
            + self.staff_sent
            + self.staff_failed
    }
}

/// Events whose dispatch keeps failing are given up after this many attempts.
const EVENT_ATTEMPTS: i64 = 20;

impl OutboxWorker {
    /// One round of every qualification queue at `now_ms`.
    pub(super) async fn run_qualification(
        &self,
        now_ms: i64,
    ) -> Result<QualificationRound, StoreError> {
        let mut round = QualificationRound::default();
        self.run_events(now_ms, &mut round).await?;
        if let Some(d) = &self.inner.parts.deliverer {
            round.webhooks = d.run_once(now_ms).await?;
        }
        self.run_sla(now_ms, &mut round).await?;
        self.run_staff_mail(now_ms, &mut round).await?;
        Ok(round)
    }

    /// Claims due events and plans each; the plans are written together, one transaction
    /// per round (a second event for a lead already planned in the round flushes first, so
    /// each plan sees what the one before it wrote).
    async fn run_events(
        &self,
        now_ms: i64,
        round: &mut QualificationRound,
    ) -> Result<(), StoreError> {
        let p = &self.inner.parts;
        if !p.store.events_enabled() {
            return Ok(());
        }
        let owner = &self.inner.owner;
        let events = p
            .store
            .claim_events(now_ms, self.lease_ms(), owner, p.settings.batch_size)
            .await?;
        let mut batch: Vec<(ClaimedEvent, Qualification)> = Vec::new();
        for e in events {
            if batch.iter().any(|(b, _)| b.lead_id == e.lead_id) {
                self.apply_events(std::mem::take(&mut batch), now_ms, round)
                    .await?;
            }
            match p.qualifier.plan(&p.store, &e, owner, now_ms).await {
                Ok(q) => batch.push((e, q)),
                Err(err) => {
                    self.event_failed(&e, &err.to_string(), now_ms, round)
                        .await?
                }
            }
        }
        self.apply_events(batch, now_ms, round).await
    }

    async fn apply_events(
        &self,
        batch: Vec<(ClaimedEvent, Qualification)>,
        now_ms: i64,
        round: &mut QualificationRound,
    ) -> Result<(), StoreError> {
        let p = &self.inner.parts;
        let units: Vec<Qualification> = batch.iter().map(|(_, q)| q.clone()).collect();
        match p.store.apply_qualifications(&units).await {
            Ok(applied) => {
                for a in applied {
                    match a {
                        Applied::Done => round.events += 1,
                        // Made due again in a second, inside the same transaction.
                        Applied::Moved => round.event_failures += 1,
                    }
                }
                Ok(())
            }
            Err(err) if err.is_unavailable() => Err(err),
            Err(err) => {
                for (e, _) in &batch {
                    self.event_failed(e, &err.to_string(), now_ms, round)
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn event_failed(
        &self,
        e: &ClaimedEvent,
        error: &str,
        now_ms: i64,
        round: &mut QualificationRound,
    ) -> Result<(), StoreError> {
        let p = &self.inner.parts;
        round.event_failures += 1;
        let dead = e.attempts >= EVENT_ATTEMPTS;
        let next = now_ms + backoff_ms(&p.settings, e.attempts).min(3_600_000);
        tracing::warn!(event_id = %e.id, kind = %e.kind, %error, dead, "event dispatch failed");
        p.store
            .fail_event(&e.id, &self.inner.owner, error, next, dead)
            .await
    }

    /// Hand-offs nobody accepted within the SLA: their owner and the escalation list hear.
    async fn run_sla(&self, now_ms: i64, round: &mut QualificationRound) -> Result<(), StoreError> {
        let p = &self.inner.parts;
        if p.qualifier.handoff.owners.is_empty() {
            return Ok(());
        }
        for h in p.store.overdue_handoffs(now_ms, 100).await? {
            let owner = h
                .owner_id
                .as_ref()
                .and_then(|o| p.qualifier.handoff.owners.iter().find(|x| &x.id == o));
            let mut to: Vec<String> = p.qualifier.handoff.escalate_to.clone();
            if let Some(o) = owner {
                to.push(o.email.clone());
            }
            to.sort();
            to.dedup();
            let mail: Vec<NewStaffMail> = to
                .into_iter()
                .map(|r| NewStaffMail {
                    kind: "escalation",
                    recipient: r,
                    subject_id: h.id.clone(),
                })
                .collect();
            let reason = format!(
                "not accepted within {} hours: escalated",
                p.qualifier.handoff.sla_hours
            );
            if p.store
                .escalate_handoff(&h.id, now_ms, &reason, &mail)
                .await?
            {
                round.escalated += 1;
                tracing::info!(handoff_id = %h.id, "hand-off escalated");
            }
        }
        Ok(())
    }

    async fn run_staff_mail(
        &self,
        now_ms: i64,
        round: &mut QualificationRound,
    ) -> Result<(), StoreError> {
        let p = &self.inner.parts;
        let owner = &self.inner.owner;
        let claimed = p
            .store
            .claim_staff_mail(now_ms, self.lease_ms(), owner, p.settings.batch_size)
            .await?;
        for m in claimed {
            let outcome = match self.compose_staff(&m, now_ms).await {
                Ok(None) => ConsoleMailOutcome::Skipped,
                Ok(Some(message)) => {
                    let sent = tokio::time::timeout(p.send_deadline, p.mailer.send(message)).await;
                    match sent {
                        Ok(Ok(_)) => {
                            round.staff_sent += 1;
                            ConsoleMailOutcome::Sent
                        }
                        Ok(Err(e)) => self.staff_failure(&m, e.to_string(), now_ms, round),
                        Err(_) => self.staff_failure(
                            &m,
                            "the mail server did not answer in time".into(),
                            now_ms,
                            round,
                        ),
                    }
                }
                Err(e) => self.staff_failure(&m, e, now_ms, round),
            };
            p.store
                .finish_staff_mail(&m.id, owner, &outcome, now_ms)
                .await?;
        }
        Ok(())
    }

    fn staff_failure(
        &self,
        m: &StaffMail,
        error: String,
        now_ms: i64,
        round: &mut QualificationRound,
    ) -> ConsoleMailOutcome {
        let p = &self.inner.parts;
        round.staff_failed += 1;
        let error = crate::domain::redact_addresses(&error).into_owned();
        if m.attempts >= i64::from(p.settings.max_attempts) {
            tracing::warn!(staff_mail = %m.id, kind = %m.kind, %error, "staff mail given up");
            ConsoleMailOutcome::Dead { error }
        } else {
            ConsoleMailOutcome::Retry {
                at_ms: now_ms.saturating_add(backoff_ms(&p.settings, m.attempts)),
                error,
            }
        }
    }

    /// The message for a claimed staff mail (`None`: its subject is gone, nothing to say).
    async fn compose_staff(
        &self,
        m: &StaffMail,
        now_ms: i64,
    ) -> Result<Option<lettre::Message>, String> {
        let p = &self.inner.parts;
        let text = match m.kind.as_str() {
            "handoff" | "escalation" => {
                let Some(h) = p
                    .store
                    .handoff(&m.subject_id)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Ok(None);
                };
                if m.kind == "escalation" && h.status != "new" {
                    return Ok(None); // accepted or passed back meanwhile
                }
                let Some(now) = p
                    .qualifier
                    .score(&p.store, &h.lead_id, now_ms)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Ok(None);
                };
                let facts = p
                    .store
                    .lead_activity(&h.lead_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default()
                    .facts;
                let owner = h
                    .owner_id
                    .as_ref()
                    .and_then(|o| p.qualifier.handoff.owners.iter().find(|x| &x.id == o));
                let until = h.created_at_ms
                    + i64::try_from(p.qualifier.handoff.link_days).unwrap_or(14) * 86_400_000;
                let accept = p.links.handoff_url(&h.id, until, "accept");
                let reject = p.links.handoff_url(&h.id, until, "reject");
                let lead_url = format!("{}/console/leads/{}", p.public_url, h.lead_id);
                let field = |k: &str| facts.fields.get(k).map(String::as_str);
                crate::mail::staff::handoff(&crate::mail::staff::HandoffNotice {
                    owner_name: owner
                        .filter(|o| o.email == m.recipient)
                        .map(|o| o.name.as_str()),
                    lead_email: &facts.email,
                    name: field("name"),
                    company: field("company"),
                    job_title: field("job_title"),
                    score: &now.score,
                    route: &h.route,
                    sla_hours: p.qualifier.handoff.sla_hours,
                    accept_url: &accept,
                    reject_url: &reject,
                    lead_url: &lead_url,
                    escalation: m.kind == "escalation",
                })
            }
            "endpoint_disabled" => {
                let states = p.store.endpoint_states().await.map_err(|e| e.to_string())?;
                let reason = states
                    .get(&m.subject_id)
                    .and_then(|s| s.disabled_reason.clone())
                    .unwrap_or_else(|| "it kept failing".into());
                let host = p
                    .qualifier
                    .webhooks
                    .endpoint(&m.subject_id)
                    .and_then(|e| e.url.host_str().map(String::from))
                    .unwrap_or_default();
                crate::mail::staff::endpoint_disabled(&m.subject_id, &host, &reason)
            }
            other => return Err(format!("unknown staff mail kind '{other}'")),
        };
        p.composer
            .staff(&m.id, &m.recipient, text)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}
