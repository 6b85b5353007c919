//! The outbox worker: claim due messages with a lease -> send -> mark sent, or failed with the
//! error and a next attempt (exponential backoff with jitter), or dead after `max_attempts`.
//!
//! Delivery is at-least-once: if the process dies between the SMTP server accepting a message
//! and the row being marked, that one message is sent again after its lease expires. Several
//! instances on one database share the queue without double sends in normal operation: claims
//! use `FOR UPDATE SKIP LOCKED` on PostgreSQL; a lease lasts the worst round a worker can take
//! and is judged by the database's clock (so skewed application clocks cannot steal one); and
//! each send first checks that its lease still holds for the send's whole deadline (so a worker
//! that stalled past its lease leaves the message to the worker that took it over).

mod qualification;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::sync::{watch, Notify};

use crate::config::OutboxSettings;
use crate::mail::{Composer, Mailer};
use crate::store::{ClaimedMessage, ConsoleMailOutcome, LeadStore, NextStep, StepEnd, StoreError};
use crate::telemetry::Metrics;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
    /// Claimed, then not sent because the lease had run out (or nearly) by the time its turn
    /// came: another worker may hold it now.
    pub lease_lost: usize,
    /// Sequence steps not sent on purpose (the lead left the sequence, a skip condition).
    pub skipped: usize,
    /// Events, webhooks, escalations and staff mail (counted in `claimed` too).
    pub qualification: QualificationRound,
}

pub use qualification::QualificationRound;

/// What a worker is built from (once, at startup).
pub struct WorkerParts {
    pub store: LeadStore,
    pub mailer: Mailer,
    pub composer: Composer,
    pub settings: OutboxSettings,
    pub metrics: Arc<Metrics>,
    /// Notified when a submission with messages commits.
    pub wake: Arc<Notify>,
    /// The most one send may take, end to end.
    pub send_deadline: Duration,
    /// Schedules retries and decides what is due.
    pub clock: crate::clock::Clock,
    /// Sign-in links asked for by email: how long they work, and the address they point at.
    pub console: crate::config::ConsoleSettings,
    pub public_url: String,
    /// Scoring, stages, hand-offs and webhooks.
    pub qualifier: Arc<crate::qualify::Qualifier>,
    /// Sends webhook deliveries (none: no endpoints).
    pub deliverer: Option<crate::webhooks::Deliverer>,
    /// Signs the Accept / Reject links in hand-off mail.
    pub links: Arc<crate::consent::Links>,
}

struct Inner {
    parts: WorkerParts,
    /// This worker's lease owner id.
    owner: String,
    /// One lease check at a time: each takes well under a millisecond, and letting all
    /// `concurrency` sends check at once would hold as many pooled connections (on SQLite each
    /// reader keeps its own page cache) for no gain.
    lease_checks: tokio::sync::Mutex<()>,
}

/// Cheap to clone; every clone is the same worker (same lease owner).
#[derive(Clone)]
pub struct OutboxWorker {
    inner: Arc<Inner>,
}

/// Backoff before attempt `attempts + 1`: base * 2^(attempts-1), capped, less up to 20 %
/// jitter so a fleet of failures does not retry in lock-step.
pub fn backoff_ms(settings: &OutboxSettings, attempts: i64) -> i64 {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = settings
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(settings.backoff_max_ms)
        .max(1);
    // [80 %, 100 %]: enough spread to break lock-step, and the schedule's total stays
    // predictable (the defaults keep retrying for more than 72 hours even at the low end).
    let jittered = full - rand::thread_rng().gen_range(0..=full / 5);
    i64::try_from(jittered).unwrap_or(i64::MAX)
}

impl OutboxWorker {
    pub fn new(parts: WorkerParts) -> OutboxWorker {
        OutboxWorker {
            inner: Arc::new(Inner {
                parts,
                owner: uuid::Uuid::new_v4().to_string(),
                lease_checks: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn mailer(&self) -> &Mailer {
        &self.inner.parts.mailer
    }

    /// Runs until `stop` turns true; the batch in flight is finished and marked first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.inner.parts.settings.poll_interval_ms.max(10));
        tracing::info!(transport = %self.inner.parts.mailer.describe(), "outbox worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            let busy = match self.run_mail(self.inner.parts.clock.now_ms()).await {
                Ok(report) => report.claimed > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox worker cannot reach the database; will retry");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = self.inner.parts.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("outbox worker stopped");
    }

    /// The lease a round takes: the configured one, raised to cover the worst round (every
    /// send in the batch running into its deadline, `concurrency` at a time) plus one more
    /// deadline, so a send that starts while the lease holds also ends before it runs out.
    pub fn lease_ms(&self) -> i64 {
        let s = &self.inner.parts.settings;
        let waves = u64::from(s.batch_size).div_ceil(s.concurrency.max(1) as u64);
        let deadline =
            u64::try_from(self.inner.parts.send_deadline.as_millis()).unwrap_or(u64::MAX);
        let worst = waves.saturating_add(1).saturating_mul(deadline);
        i64::try_from(s.lease_ms.max(worst)).unwrap_or(i64::MAX)
    }

    /// One round: claim what is due at `now_ms`, send concurrently, mark each. Public so tests
    /// can drive the worker deterministically.
    pub async fn run_once(&self, now_ms: i64) -> Result<RoundReport, StoreError> {
        let mut report = self.run_mail(now_ms).await?;
        let q = self.run_qualification(now_ms).await?;
        report.claimed += q.claimed();
        report.qualification = q;
        Ok(report)
    }

    /// One round of mail to leads and to the console's people.
    async fn run_mail(&self, now_ms: i64) -> Result<RoundReport, StoreError> {
        let mut report = self.run_outbox(now_ms).await?;
        let console = self.run_console_mail(now_ms).await?;
        report.claimed += console.claimed;
        report.sent += console.sent;
        report.failed += console.failed;
        report.dead += console.dead;
        Ok(report)
    }

    /// Runs qualification rounds (events, webhooks, escalations, staff mail) until `stop`
    /// turns true: a loop of its own, so a burst of events never holds up mail to leads.
    pub async fn run_qualifier(self, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.inner.parts.settings.poll_interval_ms.max(10));
        tracing::info!("qualification worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            let busy = match self
                .run_qualification(self.inner.parts.clock.now_ms())
                .await
            {
                Ok(round) => round.claimed() > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "qualification worker cannot reach the database; will retry");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("qualification worker stopped");
    }

    /// One round of mail to the console's people (see `store::console_mail`): each claimed
    /// message gets a fresh one-time link (only its hash is stored) and is sent, retried with
    /// the outbox's backoff, or given up after its attempts.
    async fn run_console_mail(&self, now_ms: i64) -> Result<RoundReport, StoreError> {
        let p = &self.inner.parts;
        let owner = &self.inner.owner;
        let claimed = p
            .store
            .claim_console_mail(now_ms, self.lease_ms(), owner, p.settings.batch_size)
            .await?;
        let mut report = RoundReport {
            claimed: claimed.len(),
            ..RoundReport::default()
        };
        for m in claimed {
            let outcome = match &m.email {
                None => ConsoleMailOutcome::Skipped,
                Some(email) => {
                    let sent = async {
                        let link = crate::console::issue_link(
                            &p.store,
                            Some(&m.user_id),
                            now_ms,
                            &p.console,
                            &p.public_url,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                        let message = p
                            .composer
                            .sign_in_link(&m.id, email, &link, p.console.link_minutes)
                            .map_err(|e| e.to_string())?;
                        tokio::time::timeout(p.send_deadline, p.mailer.send(message))
                            .await
                            .map_err(|_| "the mail server did not answer in time".to_string())?
                            .map_err(|e| e.to_string())
                    };
                    match sent.await {
                        Ok(_) => {
                            report.sent += 1;
                            ConsoleMailOutcome::Sent
                        }
                        Err(error) if m.attempts >= i64::from(p.settings.max_attempts) => {
                            report.dead += 1;
                            tracing::warn!(user_id = %m.user_id, error = %crate::domain::redact_addresses(&error), "console mail given up");
                            ConsoleMailOutcome::Dead {
                                error: crate::domain::redact_addresses(&error).into_owned(),
                            }
                        }
                        Err(error) => {
                            report.failed += 1;
                            ConsoleMailOutcome::Retry {
                                at_ms: now_ms.saturating_add(backoff_ms(&p.settings, m.attempts)),
                                error: crate::domain::redact_addresses(&error).into_owned(),
                            }
                        }
                    }
                }
            };
            p.store
                .finish_console_mail(&m.id, owner, &outcome, now_ms)
                .await?;
        }
        Ok(report)
    }

    /// One round of the outbox proper.
    async fn run_outbox(&self, now_ms: i64) -> Result<RoundReport, StoreError> {
        let s = &self.inner.parts.settings;
        let lease = self.lease_ms();
        let claimed = self
            .inner
            .parts
            .store
            .claim_due(now_ms, lease, &self.inner.owner, s.batch_size)
            .await?;
        let mut report = RoundReport {
            claimed: claimed.len(),
            ..RoundReport::default()
        };
        let claimed = self.drop_suppressed(claimed).await?;
        // Sent messages are marked in groups as they complete: one statement per group keeps
        // the worker from queueing behind submissions on SQLite's single writer connection, and
        // flushing every `concurrency` sends bounds what a crash can re-send to the messages in
        // flight plus one unflushed group (at most 2 x concurrency). Each group is marked on
        // its own task: awaiting it here would stop polling the sends, and a send suspended in
        // the middle of a query keeps its pooled connection, which the marking may be waiting for.
        let mut outcomes = futures::stream::iter(claimed)
            .map(|m| self.deliver(m, now_ms))
            .buffer_unordered(s.concurrency);
        let mut sent_ids = Vec::new();
        let mut marking = Vec::new();
        while let Some(o) = outcomes.next().await {
            match o {
                Outcome::Sent(id) => {
                    sent_ids.push(id);
                    if sent_ids.len() >= s.concurrency {
                        let (worker, ids) = (self.clone(), std::mem::take(&mut sent_ids));
                        marking.push(tokio::spawn(
                            async move { worker.mark_sent(ids, now_ms).await },
                        ));
                    }
                }
                Outcome::Marked => report.sent += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::Postponed => {}
                Outcome::Failed => report.failed += 1,
                Outcome::Dead => report.dead += 1,
                Outcome::LeaseLost => report.lease_lost += 1,
            }
        }
        report.sent += self.mark_sent(sent_ids, now_ms).await;
        for group in marking {
            report.sent += group.await.unwrap_or(0);
        }
        Ok(report)
    }

    /// The suppression list is checked before every send: marketing mail to an address that
    /// unsubscribed or was erased is marked `skipped` instead, and never sent.
    async fn drop_suppressed(
        &self,
        claimed: Vec<ClaimedMessage>,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        // Each marketing message's recipient hash, computed once (None: not marketing).
        let hashes: Vec<Option<String>> = claimed
            .iter()
            .map(|m| {
                crate::domain::MessageKind::parse(&m.kind)
                    .is_some_and(|k| k.is_marketing())
                    .then(|| self.inner.parts.store.suppression_hash(&m.recipient))
            })
            .collect();
        let lookup: Vec<String> = hashes.iter().flatten().cloned().collect();
        if lookup.is_empty() {
            return Ok(claimed);
        }
        let suppressed = self.inner.parts.store.suppressed_among(&lookup).await?;
        if suppressed.is_empty() {
            return Ok(claimed);
        }
        let (skip, keep): (Vec<_>, Vec<_>) = claimed
            .into_iter()
            .zip(hashes)
            .partition(|(_, h)| h.as_ref().is_some_and(|h| suppressed.contains(h)));
        let keep: Vec<ClaimedMessage> = keep.into_iter().map(|(m, _)| m).collect();
        let ids: Vec<String> = skip.into_iter().map(|(m, _)| m.id).collect();
        self.inner
            .parts
            .store
            .mark_skipped_many(
                &ids,
                &self.inner.owner,
                "not sent: the address is on the suppression list (unsubscribed or erased)",
            )
            .await?;
        tracing::info!(count = ids.len(), "suppressed addresses skipped");
        Ok(keep)
    }

    /// Marks a group of sent messages; returns how many were sent.
    async fn mark_sent(&self, ids: Vec<String>, now_ms: i64) -> usize {
        let n = ids.len();
        if n > 0 {
            if let Err(e) = self
                .inner
                .parts
                .store
                .mark_sent_many(&ids, &self.inner.owner, now_ms)
                .await
            {
                // Sent but not marked: after the lease these may go out once more.
                tracing::error!(error = %e, count = n, "sent but could not mark the messages sent");
            }
        }
        n
    }

    /// Runs rounds at `now_ms` until nothing is due (tests: "dispatch all pending email").
    pub async fn drain(&self, now_ms: i64) -> Result<RoundReport, StoreError> {
        let mut total = RoundReport::default();
        loop {
            let r = self.run_once(now_ms).await?;
            if r.claimed == 0 {
                return Ok(total);
            }
            total.claimed += r.claimed;
            total.sent += r.sent;
            total.failed += r.failed;
            total.dead += r.dead;
            total.lease_lost += r.lease_lost;
            total.skipped += r.skipped;
            total.qualification.add(&r.qualification);
        }
    }

    /// `now_ms` is the round's clock: retries are scheduled from it (tests move it forward).
    async fn deliver(&self, m: ClaimedMessage, now_ms: i64) -> Outcome {
        use tracing::Instrument;
        let span = tracing::info_span!("outbox.deliver", outbox_id = %m.id, lead_id = %m.lead_id,
                                        form_id = %m.form_id, kind = %m.kind, attempt = m.attempts);
        self.deliver_in_span(m, now_ms).instrument(span).await
    }

    async fn deliver_in_span(&self, mut m: ClaimedMessage, now_ms: i64) -> Outcome {
        let inner = &self.inner;
        // The lease must still be ours, with room for this send's whole deadline: a worker
        // that stalled (a paused VM, a long GC-like hiccup, a clock jump) finds out here,
        // before sending what another worker may already have taken over.
        let margin = i64::try_from(inner.parts.send_deadline.as_millis()).unwrap_or(i64::MAX);
        let held = {
            let _turn = inner.lease_checks.lock().await;
            inner
                .parts
                .store
                .lease_held(&m.id, &inner.owner, margin)
                .await
        };
        match held {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("lease ran out before the send; left to whichever worker holds it");
                return Outcome::LeaseLost;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the lease; not sending, retried after it");
                return Outcome::LeaseLost;
            }
        }
        // A sequence step is checked again right before it goes: the lead may have left the
        // sequence, a step may have gone from it, or its skip condition may hold now.
        let step = match &m.enrolment_id {
            Some(enrolment) => match self.step_gate(&m, enrolment, now_ms).await {
                Ok(Gate::Send(next)) => Some(next),
                Ok(Gate::Skip(why, next)) => {
                    return self
                        .end_step(&m, &StepEnd::Skipped(why), next.as_ref(), now_ms)
                        .await;
                }
                Ok(Gate::Wait(until)) => {
                    return match inner.parts.store.postpone(&m.id, &inner.owner, until).await {
                        Ok(_) => Outcome::Postponed,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not postpone a step to its window");
                            Outcome::LeaseLost
                        }
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the sequence step; retried after the lease");
                    return Outcome::LeaseLost;
                }
            },
            None => None,
        };
        if m.kind == crate::domain::MessageKind::OwnerNotification.as_str() {
            // Owners hear what was held back, so a real person quarantined by mistake is
            // noticed (a failed count only leaves the line out).
            let since = m.submitted_at_ms - 24 * 3_600_000;
            m.quarantined_before = inner
                .parts
                .store
                .quarantined_since(&m.form_id, since)
                .await
                .unwrap_or(0);
        }
        let result = match inner.parts.composer.compose(&m) {
            // A peer that never answers must not stall the queue: the whole send (connect,
            // greeting, every command) gets one deadline, and running out of it is a failure
            // that is retried like any other.
            Ok(message) => match tokio::time::timeout(inner.parts.send_deadline, inner.parts.mailer.send(message)).await {
                // Mail servers echo the recipient in their replies: no address reaches the
                // logs or the stored error.
                Ok(sent) => sent
                    .map(|report| crate::domain::redact_addresses(&report).into_owned())
                    .map_err(|e| {
                        let text = crate::domain::redact_addresses(&e.to_string()).into_owned();
                        match e {
                            crate::mail::MailError::Refused { bounce, .. } => {
                                Failure::Refused { text, bounce }
                            }
                            _ => Failure::Retry(text),
                        }
                    }),
                Err(_) => Err(Failure::Retry(format!(
                    "no answer from the mail server within {} s (check host, port and TLS settings)",
                    inner.parts.send_deadline.as_secs()
                ))),
            },
            Err(e) => Err(Failure::Retry(format!("cannot compose: {e}"))),
        };
        let now = now_ms;
        match result {
            Ok(report) => {
                inner
                    .parts
                    .metrics
                    .emails_sent
                    .with_label_values(&[&m.kind])
                    .inc();
                tracing::info!(%report, "email sent");
                match step {
                    // Marked with the next step scheduled, in one transaction.
                    Some(next) => self.end_step(&m, &StepEnd::Sent, next.as_ref(), now).await,
                    None => Outcome::Sent(m.id),
                }
            }
            Err(failure) => {
                inner
                    .parts
                    .metrics
                    .email_failures
                    .with_label_values(&[&m.kind])
                    .inc();
                let (error, refused, bounce) = match failure {
                    Failure::Retry(text) => (text, false, false),
                    Failure::Refused { text, bounce } => (
                        format!("refused for good, not retried: {text}"),
                        true,
                        bounce,
                    ),
                };
                // A hard bounce of mail to the lead: their address goes on the suppression
                // list, so nothing more is sent to a mailbox that does not exist.
                let to_lead = crate::domain::MessageKind::parse(&m.kind)
                    .is_some_and(|k| k != crate::domain::MessageKind::OwnerNotification);
                if bounce && to_lead {
                    match inner.parts.store.record_bounce(&m.lead_id, now).await {
                        Ok(_) => tracing::warn!("hard bounce: the address is now suppressed"),
                        Err(e) => tracing::error!(error = %e, "could not record a hard bounce"),
                    }
                }
                let dead = refused || m.attempts >= m.max_attempts;
                let next = now + backoff_ms(&inner.parts.settings, m.attempts);
                if let Err(e) = inner
                    .parts
                    .store
                    .mark_failed(&m.id, &inner.owner, &error, next, dead)
                    .await
                {
                    tracing::error!(error = %e, "could not record a failed attempt; the lease will expire");
                }
                if dead {
                    inner.parts.metrics.emails_dead.inc();
                    tracing::error!(%error, attempts = m.attempts, "email dead after its last attempt");
                    Outcome::Dead
                } else {
                    tracing::warn!(%error, attempts = m.attempts, "email failed; will retry");
                    Outcome::Failed
                }
            }
        }
    }
}

/// What the check right before sending a sequence step decided.
enum Gate {
    /// Send it; then schedule this step (none: the enrolment is finished).
    Send(Option<NextStep>),
    /// Do not send it (why); schedule this step instead.
    Skip(String, Option<NextStep>),
    /// Not yet: outside the send window until then.
    Wait(i64),
}

impl OutboxWorker {
    /// Checks a claimed sequence step against the lead's state now (the exit rules, the
    /// sequence as configured now, the step's skip condition) and works out the next step.
    async fn step_gate(
        &self,
        m: &ClaimedMessage,
        enrolment: &str,
        now_ms: i64,
    ) -> Result<Gate, StoreError> {
        let p = &self.inner.parts;
        let Some(state) = p.store.enrolment_state(enrolment).await? else {
            return Ok(Gate::Skip(
                "not sent: the enrolment no longer exists".into(),
                None,
            ));
        };
        if state.status != "active" {
            let why = match state.exit_reason.as_deref() {
                Some(r) => crate::sequences::exit_words(r),
                None => state.status.as_str(),
            };
            return Ok(Gate::Skip(
                format!("not sent: the lead left the sequence ({why})"),
                None,
            ));
        }
        let Some(sequence) = p.qualifier.sequences.get(&state.sequence_id) else {
            return Ok(Gate::Skip(
                "not sent: the sequence is no longer configured".into(),
                None,
            ));
        };
        let step_id = m.step_id.as_deref().unwrap_or_default();
        let step = sequence.step(step_id).map(|(_, s)| s);
        let needs_score =
            sequence.exits.when.is_some() || step.is_some_and(|s| s.skip_when.is_some());
        let figures = if needs_score {
            p.qualifier
                .score(&p.store, &m.lead_id, now_ms)
                .await?
                .map(|s| crate::scoring::Figures {
                    fit: s.score.fit,
                    engagement: s.score.engagement,
                    score: s.score.score,
                })
                .unwrap_or_default()
        } else {
            crate::scoring::Figures {
                fit: state.fit,
                engagement: state.engagement,
                score: state.score,
            }
        };
        let lead = crate::sequences::LeadState {
            stage: state.stage.as_deref().and_then(|s| s.parse().ok()),
            open_handoff: state.open_handoff,
            figures,
            forms_since: state.forms_since.clone(),
            replied: state.replied,
        };
        if let Some(reason) = sequence.exit_reason(&lead) {
            let detail = match reason {
                crate::sequences::reason::FORM => {
                    let mut forms: Vec<&String> = lead
                        .forms_since
                        .iter()
                        .filter(|f| sequence.exits.forms.contains(*f))
                        .collect();
                    forms.sort();
                    forms.first().map(|f| format!("submitted the '{f}' form"))
                }
                crate::sequences::reason::STAGE => state
                    .stage
                    .as_ref()
                    .map(|s| format!("reached the stage '{s}'")),
                crate::sequences::reason::CONDITION => sequence
                    .exits
                    .when
                    .as_ref()
                    .map(|c| format!("{} holds", c.plain())),
                _ => None,
            };
            p.store
                .exit_enrolment(enrolment, reason, detail, now_ms)
                .await?;
            return Ok(Gate::Skip(
                format!(
                    "not sent: the lead left the sequence ({})",
                    crate::sequences::exit_words(reason)
                ),
                None,
            ));
        }
        let zone = sequence
            .window
            .lead_zone_field
            .as_ref()
            .and_then(|f| crate::sequences::lead_zone(state.fields.get(f).map(String::as_str)));
        let next = sequence.next_step(&state.steps).map(|s| NextStep {
            step_id: s.id.clone(),
            due_at_ms: sequence.window.next_open(now_ms + s.delay_ms, zone),
        });
        let Some(step) = step else {
            return Ok(Gate::Skip(
                "not sent: the step is no longer in the sequence".into(),
                next,
            ));
        };
        if let Some(c) = step.skip_when.as_ref().filter(|c| c.holds(figures)) {
            return Ok(Gate::Skip(format!("skipped: {} held", c.plain()), next));
        }
        // Outside the window (a retry, or the window changed): wait for it to open.
        let open = sequence.window.next_open(now_ms, zone);
        if open > now_ms {
            return Ok(Gate::Wait(open));
        }
        Ok(Gate::Send(next))
    }

    /// Records a step's end (and schedules the next one) while the lease holds.
    async fn end_step(
        &self,
        m: &ClaimedMessage,
        end: &StepEnd,
        next: Option<&NextStep>,
        now_ms: i64,
    ) -> Outcome {
        let p = &self.inner.parts;
        let ended = p
            .store
            .end_step((&m.id, &self.inner.owner), end, next, now_ms)
            .await;
        if let Ok(true) = ended {
            // Sequence ids come from the configuration: a closed set of labels.
            let seq = m
                .sequence_id
                .as_deref()
                .filter(|s| p.qualifier.sequences.get(s).is_some())
                .unwrap_or("other");
            let outcome = match end {
                StepEnd::Sent => "sent",
                StepEnd::Skipped(why) if why.contains("left the sequence") => "exited",
                StepEnd::Skipped(_) => "skipped",
            };
            p.metrics
                .sequence_steps
                .with_label_values(&[seq, outcome])
                .inc();
        }
        match ended {
            Ok(true) => match end {
                StepEnd::Sent => Outcome::Marked,
                StepEnd::Skipped(why) => {
                    tracing::info!(reason = %why, step = ?m.step_id, "sequence step not sent");
                    Outcome::Skipped
                }
            },
            Ok(false) => Outcome::LeaseLost,
            Err(e) => {
                // Sent but not marked: after the lease it may go out once more.
                tracing::error!(error = %e, "could not record the sequence step");
                Outcome::LeaseLost
            }
        }
    }
}

/// Why a send failed.
enum Failure {
    /// Try again later (4xx, timeouts, connection or configuration trouble).
    Retry(String),
    /// The server refused this message for good.
    Refused { text: String, bounce: bool },
}

enum Outcome {
    /// Sent; marked with the rest of its round.
    Sent(String),
    Failed,
    Dead,
    /// Not sent: the lease was no longer (safely) this worker's.
    LeaseLost,
    /// A sequence step sent and already marked (with its next step scheduled).
    Marked,
    /// A sequence step not sent on purpose (the lead left, a skip condition held).
    Skipped,
    /// A sequence step put back until its send window opens.
    Postponed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = OutboxSettings {
            backoff_base_ms: 1000,
            backoff_max_ms: 10_000,
            ..OutboxSettings::default()
        };
        for _ in 0..100 {
            let first = backoff_ms(&s, 1);
            assert!((800..=1000).contains(&first), "{first}");
            let third = backoff_ms(&s, 3);
            assert!((3200..=4000).contains(&third), "{third}");
            let late = backoff_ms(&s, 40);
            assert!((8000..=10_000).contains(&late), "{late}");
        }
    }

    #[test]
    fn the_default_schedule_keeps_trying_for_more_than_72_hours() {
        let s = OutboxSettings::default();
        let attempts = i64::from(s.max_attempts);
        // The shortest possible total: every wait at the low end of its jitter.
        let least: i64 = (1..attempts)
            .map(|a| {
                let exp = u32::try_from(a - 1).unwrap().min(30);
                let full = s
                    .backoff_base_ms
                    .saturating_mul(1u64 << exp)
                    .min(s.backoff_max_ms);
                i64::try_from(full - full / 5).unwrap()
            })
            .sum();
        assert!(least >= 72 * 3_600_000, "{} h", least / 3_600_000);
    }
}
