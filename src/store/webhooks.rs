//! Webhook deliveries: claimed with a lease like the outbox, each attempt logged (status,
//! latency, the start of the response), endpoint health kept (failing since, disabled and
//! why), and replays queued as new deliveries of the same message.

use std::collections::HashMap;

use uuid::Uuid;

use super::qualification::staff_mail_sql;
use super::sql::Sql;
use super::{LeadStore, NewStaffMail, StoreError};

/// A delivery claimed by a worker.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: String,
    pub message_id: String,
    pub endpoint_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
    pub lead_id: Option<String>,
}

/// A delivery as the log shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub id: String,
    pub message_id: String,
    pub endpoint_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub lead_id: Option<String>,
    /// `pending`, `failed` (will retry), `delivered`, `dead` (gave up) or `cancelled`
    /// (the endpoint was disabled).
    pub status: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[sqlx(rename = "next_attempt_at")]
    pub next_attempt_at_ms: i64,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    #[sqlx(rename = "event_at")]
    pub event_at_ms: i64,
    #[sqlx(rename = "delivered_at")]
    pub delivered_at_ms: Option<i64>,
    pub replay_of: Option<String>,
}

/// One attempt as the log shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub id: String,
    pub delivery_id: String,
    pub endpoint_id: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The first 512 characters of the response body.
    pub response: Option<String>,
    pub error: Option<String>,
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
}

/// An endpoint's health.
#[derive(Debug, Clone, Default, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EndpointState {
    pub id: String,
    #[sqlx(rename = "failing_since")]
    pub failing_since_ms: Option<i64>,
    #[sqlx(rename = "last_success_at")]
    pub last_success_at_ms: Option<i64>,
    #[sqlx(rename = "disabled_at")]
    pub disabled_at_ms: Option<i64>,
    pub disabled_reason: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Delivered,
    Retry {
        at_ms: i64,
    },
    /// Out of time: given up.
    Dead,
    /// The endpoint is disabled (now, or before): not sent.
    Cancelled,
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response: Option<String>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    /// Disable the endpoint with this reason (a 410, or days of failure), telling `mail`.
    pub disable: Option<(String, Vec<NewStaffMail>)>,
}

/// What a replay re-sends.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    /// One delivery (its message, to its endpoint).
    Delivery(String),
    /// Every delivery to the endpoint whose event happened in `[from, until)`.
    Range {
        endpoint_id: String,
        from_ms: i64,
        until_ms: i64,
    },
}

const DELIVERY_COLUMNS: &str = "id, message_id, endpoint_id, type, lead_id, status, attempts, \
     last_status, last_error, next_attempt_at, created_at, event_at, delivered_at, replay_of";

/// Most deliveries one replay re-sends.
pub const MAX_REPLAY: i64 = 10_000;

impl LeadStore {
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim_rows(
            (
                "webhook_deliveries",
                "('pending', 'failed')",
                "id, message_id, endpoint_id, type, payload, attempts, created_at, lead_id",
            ),
            (now_ms, lease_ms, owner, limit),
        )
        .await
    }

    /// Records an attempt and its outcome (and the endpoint's health) in one transaction.
    pub async fn finish_delivery(
        &self,
        d: &ClaimedDelivery,
        owner: &str,
        attempt: &Attempt,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pools.begin().await?;
        let (status, next) = match attempt.outcome {
            AttemptOutcome::Delivered => ("delivered", now_ms),
            AttemptOutcome::Retry { at_ms } => ("failed", at_ms),
            AttemptOutcome::Dead => ("dead", now_ms),
            AttemptOutcome::Cancelled => ("cancelled", now_ms),
        };
        let sql = Sql::fixed(
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, \
               last_status = $3, last_error = NULLIF($4, ''), lease_until = NULL, \
               delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END \
             WHERE id = $6 AND lease_owner = $7",
        )
        .arg(status)
        .arg(next)
        .arg(attempt.status_code.unwrap_or(0))
        .arg(attempt.error.clone().unwrap_or_default())
        .arg(now_ms)
        .arg(d.id.as_str())
        .arg(owner);
        if tx.exec().execute(&sql).await? != 1 {
            return Ok(()); // the lease was lost: the new holder records its own attempt
        }
        if !matches!(attempt.outcome, AttemptOutcome::Cancelled) {
            let sql = Sql::fixed(
                "INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, status_code, \
                   latency_ms, response, error, created_at) \
                 VALUES ($1, $2, $3, NULLIF($4, -1), $5, NULLIF($6, ''), NULLIF($7, ''), $8)",
            )
            .arg(Uuid::now_v7().to_string())
            .arg(d.id.as_str())
            .arg(d.endpoint_id.as_str())
            .arg(attempt.status_code.unwrap_or(-1))
            .arg(attempt.latency_ms)
            .arg(attempt.response.clone().unwrap_or_default())
            .arg(attempt.error.clone().unwrap_or_default())
            .arg(now_ms);
            tx.exec().execute(&sql).await?;
        }
        let health = match attempt.outcome {
            AttemptOutcome::Delivered => Some(
                "INSERT INTO webhook_endpoints (id, last_success_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET last_success_at = $2, failing_since = NULL",
            ),
            AttemptOutcome::Retry { .. } | AttemptOutcome::Dead => Some(
                "INSERT INTO webhook_endpoints (id, failing_since) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET failing_since = \
                   COALESCE(webhook_endpoints.failing_since, $2)",
            ),
            AttemptOutcome::Cancelled => None,
        };
        if let Some(text) = health {
            let sql = Sql::fixed(text).arg(d.endpoint_id.as_str()).arg(now_ms);
            tx.exec().execute(&sql).await?;
        }
        if let Some((reason, mail)) = &attempt.disable {
            let sql = Sql::fixed(
                "INSERT INTO webhook_endpoints (id, disabled_at, disabled_reason) \
                 VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET disabled_at = $2, \
                   disabled_reason = $3 WHERE webhook_endpoints.disabled_at IS NULL",
            )
            .arg(d.endpoint_id.as_str())
            .arg(now_ms)
            .arg(reason.as_str());
            if tx.exec().execute(&sql).await? == 1 {
                for m in mail {
                    tx.exec().execute(&staff_mail_sql(m, now_ms)).await?;
                }
            }
        }
        tx.commit().await
    }

    /// Every endpoint's health, by id (endpoints never attempted are absent).
    pub async fn endpoint_states(&self) -> Result<HashMap<String, EndpointState>, StoreError> {
        let sql = Sql::fixed(
            "SELECT id, failing_since, last_success_at, disabled_at, disabled_reason \
             FROM webhook_endpoints",
        );
        let rows: Vec<EndpointState> = self.pools.reader().fetch_all(&sql).await?;
        Ok(rows.into_iter().map(|s| (s.id.clone(), s)).collect())
    }

    /// Turns a disabled endpoint back on (deliveries cancelled meanwhile can be replayed).
    pub async fn enable_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let sql = Sql::fixed(
            "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, \
               failing_since = NULL WHERE id = $1 AND disabled_at IS NOT NULL",
        )
        .arg(id);
        Ok(self.pools.writer().execute(&sql).await? == 1)
    }

    /// Deliveries, newest first: of one endpoint and/or status, before `before` (an id).
    pub async fn list_deliveries(
        &self,
        endpoint: Option<&str>,
        status: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = super::sql::newest_first(
            Sql::new(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE 1 = 1"
            )),
            &[("endpoint_id", endpoint), ("status", status)],
            "id",
            before,
            limit,
        );
        self.pools.reader().fetch_all(&sql).await
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .arg(id);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// The delivery's body (what was signed).
    pub async fn delivery_payload(&self, id: &str) -> Result<Option<String>, StoreError> {
        let sql = Sql::fixed("SELECT payload FROM webhook_deliveries WHERE id = $1").arg(id);
        let row: Option<(String,)> = self.pools.reader().fetch_optional(&sql).await?;
        Ok(row.map(|(p,)| p))
    }

    /// Attempts, newest first: of one delivery, or of one endpoint.
    pub async fn list_attempts(
        &self,
        delivery: Option<&str>,
        endpoint: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut sql = Sql::new(
            "SELECT id, delivery_id, endpoint_id, status_code, latency_ms, response, error, \
               created_at FROM webhook_attempts WHERE 1 = 1"
                .into(),
        );
        if let Some(d) = delivery {
            sql.push(" AND delivery_id = ").bind_text(d);
        }
        if let Some(e) = endpoint {
            sql.push(" AND endpoint_id = ").bind_text(e);
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind_int(i64::from(limit));
        self.pools.reader().fetch_all(&sql).await
    }

    /// Queues the target's messages again (same `webhook-id`, same body, fresh attempts);
    /// returns how many.
    pub async fn replay_deliveries(
        &self,
        target: &ReplayTarget,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            message_id: String,
            endpoint_id: String,
            #[sqlx(rename = "type")]
            kind: String,
            lead_id: Option<String>,
            payload: String,
            event_at: i64,
            replay_of: Option<String>,
        }
        let select = "SELECT id, message_id, endpoint_id, type, lead_id, payload, event_at, \
             replay_of FROM webhook_deliveries";
        let sql = match target {
            ReplayTarget::Delivery(id) => {
                Sql::fixed(format!("{select} WHERE id = $1")).arg(id.as_str())
            }
            // Originals only: replaying a range twice sends each message twice, not four times.
            ReplayTarget::Range {
                endpoint_id,
                from_ms,
                until_ms,
            } => Sql::fixed(format!(
                "{select} WHERE endpoint_id = $1 AND event_at >= $2 AND event_at < $3 \
                   AND replay_of IS NULL ORDER BY event_at, id LIMIT $4"
            ))
            .arg(endpoint_id.as_str())
            .arg(*from_ms)
            .arg(*until_ms)
            .arg(MAX_REPLAY),
        };
        let rows: Vec<Row> = self.pools.reader().fetch_all(&sql).await?;
        let mut tx = self.pools.begin().await?;
        for r in &rows {
            let sql = Sql::fixed(
                "INSERT INTO webhook_deliveries (id, message_id, endpoint_id, type, lead_id, \
                   payload, status, next_attempt_at, created_at, event_at, replay_of) \
                 VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, 'pending', $7, $7, $8, $9)",
            )
            .arg(Uuid::now_v7().to_string())
            .arg(r.message_id.as_str())
            .arg(r.endpoint_id.as_str())
            .arg(r.kind.as_str())
            .arg(r.lead_id.clone().unwrap_or_default())
            .arg(r.payload.as_str())
            .arg(now_ms)
            .arg(r.event_at)
            .arg(r.replay_of.clone().unwrap_or_else(|| r.id.clone()));
            tx.exec().execute(&sql).await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
