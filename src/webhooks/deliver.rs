//! Claim due deliveries -> POST each, signed -> record the attempt and what follows:
//! delivered (2xx); retried with jitter until about three days after the event (3xx, other
//! 4xx, 5xx, timeouts, connection errors; a `Retry-After` is honoured); given up; or, on a 410
//! or after days of nothing but failures, the endpoint is disabled and its contact told.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use rand::Rng;

use super::{Exchange, PushTargets, Webhooks};
use crate::store::{
    Attempt, AttemptOutcome, ClaimedDelivery, EndpointState, LeadStore, NewStaffMail, StoreError,
};

/// Deliveries claimed per round, and sent concurrently.
const BATCH: u32 = 64;
const CONCURRENCY: usize = 8;
/// How much of a response the log keeps.
const RESPONSE_CHARS: usize = 512;
/// Waits after each failed attempt (then the last, until the retry window closes), less up
/// to 20 % jitter: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h … (about three days in all with the
/// default 72-hour window).
const SCHEDULE_MS: [i64; 6] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000];
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER_MS: i64 = 86_400_000;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRound {
    pub claimed: usize,
    pub delivered: usize,
    pub failed: usize,
    pub dead: usize,
    pub cancelled: usize,
}

/// Sends webhook deliveries; cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    store: LeadStore,
    webhooks: Arc<Webhooks>,
    targets: Arc<dyn PushTargets>,
    metrics: Arc<crate::telemetry::Metrics>,
    client: reqwest::Client,
    owner: String,
}

/// The wait before the next attempt, after `attempts` attempts.
pub fn backoff_ms(attempts: i64) -> i64 {
    let i = usize::try_from(attempts.saturating_sub(1).max(0)).unwrap_or(usize::MAX);
    let full = SCHEDULE_MS[i.min(SCHEDULE_MS.len() - 1)];
    full - rand::thread_rng().gen_range(0..=full / 5)
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after_ms(value: &str, now_ms: i64) -> Option<i64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return Some(secs.max(0).saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.timestamp_millis() - now_ms).clamp(0, MAX_RETRY_AFTER_MS))
}

impl Deliverer {
    /// Sends to the configured endpoints and to `targets` (CRMs).
    pub fn new(
        store: LeadStore,
        webhooks: Arc<Webhooks>,
        targets: Arc<dyn PushTargets>,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Result<Deliverer, reqwest::Error> {
        Ok(Deliverer {
            client: webhooks.client()?,
            store,
            webhooks,
            targets,
            metrics,
            owner: uuid::Uuid::new_v4().to_string(),
        })
    }

    fn lease_ms(&self) -> i64 {
        let waves = i64::from(BATCH.div_ceil(CONCURRENCY as u32)) + 1;
        let timeout = i64::try_from(self.webhooks.settings.timeout_ms).unwrap_or(i64::MAX / 64);
        (timeout + 1_000).saturating_mul(waves)
    }

    /// One round at `now_ms`.
    pub async fn run_once(&self, now_ms: i64) -> Result<DeliveryRound, StoreError> {
        let claimed = self
            .store
            .claim_deliveries(now_ms, self.lease_ms(), &self.owner, BATCH)
            .await?;
        let mut round = DeliveryRound {
            claimed: claimed.len(),
            ..DeliveryRound::default()
        };
        if claimed.is_empty() {
            return Ok(round);
        }
        let states = self.store.endpoint_states().await?;
        // A CRM's pushes for one lead go one after another, in the order they fell due: the
        // first creates the record that the next ones update. Everything else in parallel.
        let mut groups: Vec<Vec<ClaimedDelivery>> = Vec::new();
        let mut by_lead: HashMap<(String, String), usize> = HashMap::new();
        for d in claimed {
            match d
                .endpoint_id
                .starts_with("crm:")
                .then(|| (d.endpoint_id.clone(), d.lead_id.clone().unwrap_or_default()))
            {
                Some(key) => match by_lead.get(&key) {
                    Some(&i) => groups[i].push(d),
                    None => {
                        by_lead.insert(key, groups.len());
                        groups.push(vec![d]);
                    }
                },
                None => groups.push(vec![d]),
            }
        }
        let mut done = futures::stream::iter(groups)
            .map(|group| {
                let states = &states;
                async move {
                    let mut outcomes = Vec::with_capacity(group.len());
                    for d in group {
                        let attempt = self.attempt(&d, states.get(&d.endpoint_id), now_ms).await;
                        self.store
                            .finish_delivery(&d, &self.owner, &attempt, now_ms)
                            .await?;
                        self.count(&d.endpoint_id, &attempt.outcome);
                        outcomes.push(attempt.outcome);
                    }
                    Ok::<_, StoreError>(outcomes)
                }
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(outcomes) = done.next().await {
            for outcome in outcomes? {
                match outcome {
                    AttemptOutcome::Delivered => round.delivered += 1,
                    AttemptOutcome::Retry { .. } => round.failed += 1,
                    AttemptOutcome::Dead => round.dead += 1,
                    AttemptOutcome::Cancelled => round.cancelled += 1,
                }
            }
        }
        Ok(round)
    }

    /// Counts an attempt; the endpoint label is a configured id (a closed set) or `other`.
    fn count(&self, endpoint_id: &str, outcome: &AttemptOutcome) {
        let known = self.webhooks.endpoint(endpoint_id).is_some()
            || self.targets.target(endpoint_id).is_some();
        let label = if known { endpoint_id } else { "other" };
        let outcome = match outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry { .. } => "failed",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Cancelled => "cancelled",
        };
        self.metrics
            .deliveries
            .with_label_values(&[label, outcome])
            .inc();
    }

    /// Sends a webhook (signed POST) to the endpoint, or a CRM push, and returns what came
    /// back; `None` with a reason when it is not sent at all.
    async fn exchange(
        &self,
        d: &ClaimedDelivery,
        now_ms: i64,
    ) -> Result<(Exchange, Option<String>), String> {
        if let Some(target) = self.targets.target(&d.endpoint_id) {
            if !self.webhooks.literal_allowed(target.base()) {
                return Err("the target's address is private and not allow-listed".into());
            }
            let x = target.push(&self.client, &d.payload, now_ms).await;
            return Ok((x, target.contact()));
        }
        let Some(endpoint) = self.webhooks.endpoint(&d.endpoint_id) else {
            return Err("the endpoint is no longer configured".into());
        };
        if !self.webhooks.literal_allowed(&endpoint.url) {
            return Err("the endpoint's address is private and not allow-listed".into());
        }
        let timestamp = now_ms.div_euclid(1000);
        let sent = self
            .client
            .post(endpoint.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &d.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                endpoint.signature(&d.message_id, timestamp, &d.payload),
            )
            .body(d.payload.clone())
            .send()
            .await;
        let x = match sent {
            Ok(resp) => read_response(resp).await.0,
            Err(e) => Exchange {
                error: Some(describe(&e, self.webhooks.settings.timeout_ms)),
                ..Exchange::default()
            },
        };
        Ok((x, endpoint.contact.clone()))
    }

    async fn attempt(
        &self,
        d: &ClaimedDelivery,
        state: Option<&EndpointState>,
        now_ms: i64,
    ) -> Attempt {
        let cancelled = |why: &str| Attempt {
            status_code: None,
            latency_ms: 0,
            response: None,
            error: Some(why.to_string()),
            outcome: AttemptOutcome::Cancelled,
            disable: None,
        };
        if let Some(reason) = state.and_then(|s| s.disabled_reason.as_deref()) {
            return cancelled(&format!("not sent: the endpoint is disabled ({reason})"));
        }
        let started = Instant::now();
        let (x, contact) = match self.exchange(d, now_ms).await {
            Ok(sent) => sent,
            Err(why) => return cancelled(&why),
        };
        let status = x.status;
        let retry_after = x
            .retry_after
            .as_deref()
            .and_then(|v| retry_after_ms(v, now_ms));
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let code = status.map(|s| i64::from(s.as_u16()));
        let mut attempt = Attempt {
            status_code: code,
            latency_ms,
            response: x.response,
            error: x.error,
            outcome: AttemptOutcome::Delivered,
            disable: None,
        };
        let tell = |reason: &str| -> (String, Vec<NewStaffMail>) {
            let mail = contact
                .iter()
                .map(|c| NewStaffMail {
                    kind: "endpoint_disabled",
                    recipient: c.clone(),
                    subject_id: d.endpoint_id.clone(),
                })
                .collect();
            (reason.to_string(), mail)
        };
        let endpoint_id = &d.endpoint_id;
        match status {
            Some(s) if s.is_success() => return attempt,
            Some(s) if s.as_u16() == 410 => {
                attempt.outcome = AttemptOutcome::Dead;
                attempt.error = Some("the endpoint answered 410 Gone: disabled".into());
                attempt.disable = Some(tell("the endpoint answered 410 Gone"));
                tracing::warn!(endpoint = %endpoint_id, "webhook endpoint answered 410; disabled");
                return attempt;
            }
            Some(s) if s.is_redirection() => {
                attempt.error = Some(format!(
                    "answered {} (a redirect; webhooks do not follow redirects: configure the final URL)",
                    s.as_u16()
                ));
            }
            Some(s) => {
                attempt.error = Some(format!("answered {}", s.as_u16()));
            }
            None => {}
        }
        // Failed.
        let window_ends = d.created_at
            + i64::try_from(self.webhooks.settings.retry_hours).unwrap_or(72) * 3_600_000;
        let next = now_ms + retry_after.unwrap_or_else(|| backoff_ms(d.attempts));
        attempt.outcome = if next > window_ends {
            AttemptOutcome::Dead
        } else {
            AttemptOutcome::Retry { at_ms: next }
        };
        let disable_after =
            i64::try_from(self.webhooks.settings.disable_after_hours).unwrap_or(120) * 3_600_000;
        if let Some(since) = state.and_then(|s| s.failing_since_ms) {
            if now_ms - since >= disable_after {
                let hours = (now_ms - since) / 3_600_000;
                attempt.disable = Some(tell(&format!("every delivery failed for {hours} hours")));
                tracing::warn!(endpoint = %endpoint_id, hours, "webhook endpoint failing for days; disabled");
            }
        }
        tracing::info!(endpoint = %endpoint_id, status = ?code, attempts = d.attempts, "webhook delivery failed");
        attempt
    }
}

/// Reads an answer: its status, `Retry-After`, the start of its body as text (for the log),
/// and the body itself up to 64 KiB (a CRM's JSON); a larger body is not read further.
pub async fn read_response(mut resp: reqwest::Response) -> (Exchange, Vec<u8>) {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut body: Vec<u8> = Vec::new();
    while body.len() < 64 * 1024 {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(RESPONSE_CHARS)
        .collect();
    (
        Exchange {
            status: Some(status),
            retry_after,
            response: Some(text),
            error: None,
        },
        body,
    )
}

/// A failed request in words, with its causes (never the URL: it may carry a token).
fn describe(e: &reqwest::Error, timeout_ms: u64) -> String {
    if e.is_timeout() {
        return format!("timed out: no complete answer within {timeout_ms} ms");
    }
    let mut out = if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_ms("120", 0), Some(120_000));
        assert_eq!(retry_after_ms("999999999", 0), Some(MAX_RETRY_AFTER_MS));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2026 07:28:00 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2026 07:29:00 GMT", now),
            Some(60_000)
        );
        assert_eq!(retry_after_ms("soon", now), None);
    }

    #[test]
    fn the_schedule_spans_about_three_days_and_jitters() {
        let total: i64 = (1..=12).map(backoff_ms).sum();
        assert!(total > 48 * 3_600_000 && total < 110 * 3_600_000, "{total}");
        for _ in 0..100 {
            let first = backoff_ms(1);
            assert!((4_000..=5_000).contains(&first), "{first}");
        }
    }
}
