//! Bodies that arrive slowly: a deadline for the whole body, and a cap on how many bodies one
//! client may be sending at once. Without them a script that sends request heads and then
//! trickles (or stops sending) the bodies holds connections, and their memory, for hours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::error::ApiError;
use crate::startup::AppState;

/// Middleware: the whole request body must arrive within `server.body_timeout_ms` of the
/// request's head. The body stream ends in a `TimedOut` error at the deadline, which the
/// submission endpoint answers with 408 and the extractors of the others with 400: either
/// way the connection is not held while a client trickles (or stops sending) its body.
///
/// While its body is arriving, a request counts against its client (IPv4 address or IPv6
/// /64, see [`crate::rate_limit::client_key`]); past `server.max_body_reads_per_client` at
/// once, the next one is answered 429 before its body is read.
pub async fn deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::http::Method;
    // Only requests that may carry a body pay for the wrapper (not GET, HEAD, OPTIONS).
    let may_have_body = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let state = req
        .app_data::<actix_web::web::Data<AppState>>()
        .filter(|_| may_have_body)
        .cloned();
    if let Some(state) = state {
        let client = super::client_addr(req.request(), &state);
        let reading = match client {
            Some(ip) => match state.body_reads.begin(ip) {
                Some(reading) => Some(reading),
                None => {
                    state
                        .metrics
                        .rate_limited
                        .with_label_values(&["body_reads"])
                        .inc();
                    let refused = ApiError::RateLimited {
                        retry_after_secs: 1,
                    };
                    return Ok(req.error_response(refused).map_into_right_body());
                }
            },
            None => None,
        };
        let limit = Duration::from_millis(state.settings.server.body_timeout_ms);
        let inner = actix_web::HttpMessage::take_payload(&mut req);
        let stream = DeadlineStream {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            expired: false,
            reading,
        };
        let boxed: std::pin::Pin<Box<dyn futures::Stream<Item = BodyChunk>>> = Box::pin(stream);
        req.set_payload(actix_web::dev::Payload::from(boxed));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

type BodyChunk = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

/// A body stream that fails with `TimedOut` once its deadline has passed, and stops counting
/// against its client once it has ended (or is dropped).
struct DeadlineStream<S> {
    inner: S,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    expired: bool,
    reading: Option<Reading>,
}

impl<S> futures::Stream for DeadlineStream<S>
where
    S: futures::Stream<Item = BodyChunk> + Unpin,
{
    type Item = BodyChunk;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = std::pin::Pin::new(&mut self.inner).poll_next(cx) {
            if !matches!(item, Some(Ok(_))) {
                self.reading = None;
            }
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            self.reading = None;
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                ),
            ))));
        }
        Poll::Pending
    }
}

/// Bodies being read right now, per client. Entries go when their count drops to zero, so
/// the map never holds more than the requests in flight.
#[derive(Debug, Clone)]
pub struct BodyReads {
    max_per_client: u32,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl BodyReads {
    /// `max_per_client` 0: no cap (nothing is counted).
    pub fn new(max_per_client: u32) -> BodyReads {
        BodyReads {
            max_per_client,
            counts: Arc::default(),
        }
    }

    /// Counts a body starting to arrive from `ip`; `None` when the client is at its cap.
    fn begin(&self, ip: IpAddr) -> Option<Reading> {
        if self.max_per_client == 0 {
            return Some(Reading(None));
        }
        let key = crate::rate_limit::client_key(ip);
        let mut counts = self.counts.lock().ok()?;
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max_per_client {
            return None;
        }
        *n += 1;
        Some(Reading(Some((self.clone(), key))))
    }
}

/// One body being read; stops counting when dropped.
struct Reading(Option<(BodyReads, IpAddr)>);

impl Drop for Reading {
    fn drop(&mut self) {
        if let Some((reads, key)) = self.0.take() {
            if let Ok(mut counts) = reads.counts.lock() {
                if let Some(n) = counts.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&key);
                    }
                }
            }
        }
    }
}
