//! `inlet webhooks secret | deliveries | replay`.

use crate::qualify::Qualifier;
use crate::store::{LeadStore, ReplayTarget};

/// What `inlet webhooks replay` sends again.
#[derive(Debug, Clone)]
pub struct Replay {
    pub delivery: Option<String>,
    pub endpoint: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

fn time_of(s: &str, what: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("--{what} must be an RFC 3339 time, e.g. 2026-12-07T00:00:00Z"))
}

/// Queues the deliveries again; answers how many.
pub async fn replay(
    store: &LeadStore,
    q: &Qualifier,
    r: &Replay,
    now_ms: i64,
) -> Result<String, String> {
    let target = match (&r.delivery, &r.endpoint, &r.since) {
        (Some(id), None, None) => ReplayTarget::Delivery(id.clone()),
        (None, Some(endpoint), Some(since)) => {
            if q.webhooks.endpoint(endpoint).is_none() {
                let known: Vec<&str> = q
                    .webhooks
                    .endpoints()
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect();
                return Err(format!(
                    "no endpoint '{endpoint}' in the configuration (configured: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            let from_ms = time_of(since, "since")?;
            let until_ms = r
                .until
                .as_deref()
                .map_or(Ok(now_ms + 1), |u| time_of(u, "until"))?;
            ReplayTarget::Range {
                endpoint_id: endpoint.clone(),
                from_ms,
                until_ms,
            }
        }
        _ => return Err("give a delivery id, or --endpoint with --since (and --until)".into()),
    };
    let n = store
        .replay_deliveries(&target, now_ms)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("no delivery matched".into());
    }
    Ok(format!(
        "{n} deliveries queued again (same webhook-id); a running Inlet sends them within its poll interval"
    ))
}

/// The delivery log as tab-separated lines, newest first.
pub async fn deliveries(
    store: &LeadStore,
    endpoint: Option<&str>,
    status: Option<&str>,
    limit: u32,
) -> Result<String, String> {
    let rows = store
        .list_deliveries(endpoint, status, None, limit)
        .await
        .map_err(|e| e.to_string())?;
    let mut out =
        String::from("id\tendpoint\ttype\tstatus\tattempts\tlast status\tevent at\tlast error");
    for d in rows {
        out.push_str(&format!(
            "\n{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            d.id,
            d.endpoint_id,
            d.kind,
            d.status,
            d.attempts,
            d.last_status
                .filter(|s| *s > 0)
                .map_or_else(String::new, |s| s.to_string()),
            crate::export::rfc3339(d.event_at_ms),
            d.last_error.unwrap_or_default()
        ));
    }
    Ok(out)
}
