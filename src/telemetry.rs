//! Logs (tracing, text or JSON, to stderr), request ids, and Prometheus metrics.
//!
//! Privacy: spans and events carry ids (`lead_id`, `form_id`, request id), never raw email
//! addresses, names, phone numbers or client IPs.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Metrics owned by the application (its own registry, no globals).
pub struct Metrics {
    registry: Registry,
    /// Submissions by form and outcome (`accepted`, `replayed`, `spam`, `invalid`,
    /// `rate_limited`, `rejected`, `unavailable`).
    pub submissions: IntCounterVec,
    /// Requests refused by a rate limiter, by scope (`client_ip`, `form`).
    pub rate_limited: IntCounterVec,
    /// Submissions flagged as spam, by form and reason.
    pub spam: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Submissions committed per transaction by the group-commit writer.
    pub write_batch_size: prometheus::Histogram,
    pub limiter_keys: IntGauge,
    /// The shared (Redis) tier of the limits: fallbacks to the local limiter, and whether
    /// Redis answers (see [`crate::rate_limit::shared`]).
    pub redis: crate::rate_limit::shared::SharedMetrics,
    /// Emails accepted by the transport, by kind.
    pub emails_sent: IntCounterVec,
    /// Failed send attempts, by kind.
    pub email_failures: IntCounterVec,
    /// Messages that ran out of attempts.
    pub emails_dead: prometheus::IntCounter,
    /// Supervised tasks restarted after a panic, by task (`writer`, `outbox_worker`).
    pub task_restarts: IntCounterVec,
    /// Outbox rows by status: `pending` (due and waiting), `failed`, `dead`, and `scheduled`
    /// (sequence steps not due yet); set at scrape time from the database.
    pub outbox_depth: prometheus::IntGaugeVec,
    /// Age of the oldest message still waiting to be sent.
    pub outbox_oldest_waiting_seconds: prometheus::Gauge,
    /// Integration events not dispatched yet (set at scrape time from the database).
    pub events_waiting: IntGauge,
    /// Webhook and CRM delivery attempts by endpoint (a configured id, or `other`) and outcome
    /// (`delivered`, `failed`, `dead`, `cancelled`).
    pub deliveries: IntCounterVec,
    /// Sequence steps the worker ended, by sequence (a configured id, or `other`) and outcome
    /// (`sent`; `skipped`: a skip condition, or a step no longer configured; `exited`: its
    /// check found the lead had left). Exits recorded with their cause (an unsubscribe, a
    /// form) skip the waiting step there and are counted by the sequence page instead.
    pub sequence_steps: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("inlet".into()), None).unwrap_or_default();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable_metric(name, &e));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let submissions = counter(
            "submissions_total",
            "Submissions by form and outcome",
            &["form", "outcome"],
        );
        let rate_limited = counter(
            "rate_limited_total",
            "Requests refused by a rate limit",
            &["scope"],
        );
        let task_restarts = counter(
            "task_restarts_total",
            "Background tasks restarted after a panic",
            &["task"],
        );
        let spam = counter(
            "spam_total",
            "Submissions flagged as spam",
            &["form", "reason"],
        );
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
            &["route", "method", "status"],
        )
        .unwrap_or_else(|e| unreachable_metric("http_request_duration_seconds", &e));
        let _ = registry.register(Box::new(http_duration.clone()));
        let limiter_keys = IntGauge::new(
            "rate_limiter_tracked_ips",
            "Client IPs currently tracked by the per-IP limiter",
        )
        .unwrap_or_else(|e| unreachable_metric("rate_limiter_tracked_ips", &e));
        let _ = registry.register(Box::new(limiter_keys.clone()));
        let single = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help)
                .unwrap_or_else(|e| unreachable_metric(name, &e));
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let redis_fallbacks = single(
            "redis_fallbacks_total",
            "Limit decisions made by an instance alone because Redis failed or was slow",
        );
        let redis_up = IntGauge::new(
            "redis_up",
            "1 while the shared limits' Redis answers (or none is configured), 0 while it does not",
        )
        .unwrap_or_else(|e| unreachable_metric("redis_up", &e));
        redis_up.set(1);
        let _ = registry.register(Box::new(redis_up.clone()));
        let redis_early = single(
            "redis_early_admits_total",
            "Requests admitted before Redis answered, every budget they spend being far from spent",
        );
        let redis_late = single(
            "redis_late_refusals_total",
            "Budgets Redis found overrun when it took the cells of requests admitted early",
        );
        let redis = crate::rate_limit::shared::SharedMetrics {
            fallbacks: redis_fallbacks,
            up: redis_up,
            early: redis_early,
            late_refusals: redis_late,
        };
        let emails_sent = counter(
            "emails_sent_total",
            "Emails accepted by the transport",
            &["kind"],
        );
        let email_failures = counter(
            "email_failures_total",
            "Failed email send attempts",
            &["kind"],
        );
        let emails_dead =
            prometheus::IntCounter::new("emails_dead_total", "Emails that ran out of attempts")
                .unwrap_or_else(|e| unreachable_metric("emails_dead_total", &e));
        let _ = registry.register(Box::new(emails_dead.clone()));
        let outbox_depth = prometheus::IntGaugeVec::new(
            Opts::new("outbox_messages", "Outbox messages by status"),
            &["status"],
        )
        .unwrap_or_else(|e| unreachable_metric("outbox_messages", &e));
        let _ = registry.register(Box::new(outbox_depth.clone()));
        let outbox_oldest_waiting_seconds = prometheus::Gauge::new(
            "outbox_oldest_waiting_seconds",
            "Age of the oldest outbox message not yet sent",
        )
        .unwrap_or_else(|e| unreachable_metric("outbox_oldest_waiting_seconds", &e));
        let _ = registry.register(Box::new(outbox_oldest_waiting_seconds.clone()));
        let deliveries = counter(
            "webhook_deliveries_total",
            "Webhook and CRM delivery attempts by endpoint and outcome",
            &["endpoint", "outcome"],
        );
        let sequence_steps = counter(
            "sequence_steps_total",
            "Nurture sequence steps by sequence and outcome",
            &["sequence", "outcome"],
        );
        let events_waiting =
            IntGauge::new("events_waiting", "Integration events not dispatched yet")
                .unwrap_or_else(|e| unreachable_metric("events_waiting", &e));
        let _ = registry.register(Box::new(events_waiting.clone()));
        let write_batch_size = prometheus::Histogram::with_opts(
            HistogramOpts::new("write_batch_size", "Submissions committed per transaction")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .unwrap_or_else(|e| unreachable_metric("write_batch_size", &e));
        let _ = registry.register(Box::new(write_batch_size.clone()));
        Metrics {
            registry,
            sequence_steps,
            deliveries,
            events_waiting,
            write_batch_size,
            emails_sent,
            email_failures,
            emails_dead,
            outbox_depth,
            outbox_oldest_waiting_seconds,
            submissions,
            rate_limited,
            task_restarts,
            spam,
            http_duration,
            limiter_keys,
            redis,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Metric definitions above are static and valid; this only runs if one is edited wrongly.
fn unreachable_metric<T>(name: &str, e: &prometheus::Error) -> T {
    panic!("metric {name} is defined wrongly: {e}")
}

/// The request method as a label: one of a closed set, so a client inventing method tokens
/// (actix accepts any) cannot grow the metrics registry or the logs' vocabulary.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: a request id per request (`X-Request-Id`, taken from the client if sane), a
/// span with the route template (never the raw path or query), one log line per request.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), String::from);
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let span = tracing::info_span!("request", %request_id, %method, %route, status = tracing::field::Empty);
    let started = Instant::now();
    let metrics = req
        .app_data::<actix_web::web::Data<crate::startup::AppState>>()
        .cloned();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    span.record("status", status);
    if let Some(state) = metrics {
        state
            .metrics
            .http_duration
            .with_label_values(&[&route, method, &status.to_string()])
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request done"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}
