//! A real HTTP receiver for webhooks on loopback (actix-web on port 0). It records every
//! request (headers and body) and answers from a script: a status, a redirect, 410, a
//! `Retry-After`, or a reply too slow for the sender's timeout; then 204 once the script is
//! used up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// 503 with `Retry-After: <secs>`.
    RetryAfter(u64),
    /// 302 to another path.
    Redirect,
    /// 204 after this long.
    Slow(Duration),
    /// A status with a JSON body (answering like a CRM's API).
    Json(u16, serde_json::Value),
}

#[derive(Debug, Clone)]
pub struct Got {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// Verifies the message with the Standard Webhooks reference library.
    pub fn verify(&self, secret: &str) -> Result<(), standardwebhooks::WebhookError> {
        standardwebhooks::Webhook::new(secret)?.verify(&self.body, &self.headers)
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    got: Mutex<Vec<Got>>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let mut headers = http::HeaderMap::new();
    for (k, v) in req.headers() {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_str().as_bytes()),
            http::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(k, v);
        }
    }
    shared.got.lock().unwrap().push(Got {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        headers,
        body: body.to_vec(),
    });
    let next = shared.script.lock().unwrap().pop_front();
    match next {
        None => HttpResponse::NoContent().finish(),
        Some(Answer::Status(code)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .body(format!("answer {code} from the test receiver"))
        }
        Some(Answer::RetryAfter(secs)) => HttpResponse::ServiceUnavailable()
            .insert_header(("retry-after", secs.to_string()))
            .finish(),
        Some(Answer::Redirect) => HttpResponse::Found()
            .insert_header(("location", "/elsewhere"))
            .finish(),
        Some(Answer::Json(code, body)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(body)
        }
        Some(Answer::Slow(d)) => {
            tokio::time::sleep(d).await;
            HttpResponse::NoContent().finish()
        }
    }
}

impl Receiver {
    pub fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind the receiver");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://{addr}/hooks"),
            shared,
            handle,
        }
    }

    /// Answers the next requests in this order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    pub fn got(&self) -> Vec<Got> {
        self.shared.got.lock().unwrap().clone()
    }

    /// The receiver's base URL (no path): where a CRM's API would be.
    pub fn base(&self) -> String {
        self.url.trim_end_matches("/hooks").to_string()
    }

    /// Every message received of one type.
    pub fn of_type(&self, kind: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.json()["type"] == kind)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(handle.stop(false));
    }
}
