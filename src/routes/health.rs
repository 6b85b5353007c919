//! Liveness, readiness and metrics.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::startup::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = super::openapi::Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the database answers a query.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers", body = super::openapi::Health),
        (status = 503, description = "Not ready", body = super::openapi::Health),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stopped = state.health.stopped();
    if !stopped.is_empty() {
        // A writer or the outbox worker kept panicking and was given up: this instance can
        // no longer take (or follow up) leads, whatever the database says.
        return Ok(HttpResponse::ServiceUnavailable().json(json!({
            "status": "not ready",
            "stopped": stopped,
        })));
    }
    state.store.ping().await.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok()
        .json(json!({"status": "ready", "database": state.store.backend().name()})))
}

/// Prometheus text. With `admin.metrics_token` set, only for that bearer token. The work per
/// scrape is bounded: the queue's counts come from the `(status, …)` index over messages still
/// waiting (or dead), never from the history of sent ones.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security((), ("bearer" = ["metrics"])),
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 401, response = super::openapi::Problem),
        (status = 429, response = super::openapi::Problem),
    )
)]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = state.settings.admin.metrics_token.as_ref() {
        super::admin::check_bearer(&req, &state, Some(token), |_| async { Ok(false) }).await?;
    }
    // Queue depth comes from the database, so it is true across every instance.
    match state.store.outbox_stats(state.clock.now_ms()).await {
        Ok(stats) => {
            let m = &state.metrics;
            m.outbox_depth
                .with_label_values(&["pending"])
                .set(stats.pending);
            m.outbox_depth
                .with_label_values(&["failed"])
                .set(stats.failed);
            m.outbox_depth.with_label_values(&["dead"]).set(stats.dead);
            m.outbox_depth
                .with_label_values(&["scheduled"])
                .set(stats.scheduled);
            let age = stats
                .oldest_waiting_ms
                .map_or(0.0, |t| ((state.clock.now_ms() - t).max(0) as f64) / 1000.0);
            m.outbox_oldest_waiting_seconds.set(age);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: outbox stats unavailable"),
    }
    if state.store.events_enabled() {
        match state.store.pending_events().await {
            Ok(n) => state.metrics.events_waiting.set(n),
            Err(e) => tracing::warn!(error = %e, "metrics: event backlog unavailable"),
        }
    }
    state
        .metrics
        .limiter_keys
        .set(i64::try_from(state.limits.tracked_client_ips()).unwrap_or(i64::MAX));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}
