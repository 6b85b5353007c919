//! Webhooks a receiver can trust, per Standard Webhooks (<https://www.standardwebhooks.com>):
//! the body is `{"type", "timestamp", "data"}`; the headers are `webhook-id` (the same for
//! every retry and replay of one message), `webhook-timestamp` (seconds, of the attempt) and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with each of the
//! endpoint's `whsec_` secrets, space-separated during a rotation).
//!
//! Deliveries go through their own queue (claimed with a lease, like the outbox), never from
//! a request. Endpoints that resolve to private, loopback or link-local addresses are refused
//! unless allow-listed, at startup for literal addresses and at every connection (by the
//! resolver the client uses) for names, so a name that later points inside cannot be used to
//! reach internal services.

mod deliver;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use hmac::Mac;
use ipnet::IpNet;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

pub use deliver::{read_response, Deliverer, DeliveryRound};

/// What one send came to: the answer's status, `Retry-After` and start of the body, or why
/// there was no answer.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub status: Option<reqwest::StatusCode>,
    pub retry_after: Option<String>,
    pub response: Option<String>,
    pub error: Option<String>,
}

impl Exchange {
    pub fn failed(&self) -> bool {
        !self.status.is_some_and(|s| s.is_success())
    }
}

/// A delivery target other than a webhook endpoint (a CRM): its deliveries carry
/// `endpoint_id`s it recognises, and it builds and sends its own requests. Defined here so
/// delivery depends on no adapter; the adapters depend on delivery.
pub trait PushTarget: Send + Sync {
    /// Where it sends (checked against the private-address rules).
    fn base(&self) -> &url::Url;
    /// Told when it is disabled.
    fn contact(&self) -> Option<String>;
    /// Sends one delivery's payload.
    fn push<'a>(
        &'a self,
        client: &'a reqwest::Client,
        payload: &'a str,
        now_ms: i64,
    ) -> futures::future::BoxFuture<'a, Exchange>;
}

/// The push targets by endpoint id.
pub trait PushTargets: Send + Sync {
    fn target(&self, endpoint_id: &str) -> Option<&dyn PushTarget>;
}

use crate::config::{ConfigError, WebhookSettings};

/// Every event type an endpoint can ask for.
pub const EVENT_TYPES: &[&str] = &[
    "submission.created",
    "lead.created",
    "lead.confirmed",
    "download.used",
    "lead.stage_changed",
    "lead.mql",
    "handoff.created",
    "handoff.accepted",
    "handoff.rejected",
    "handoff.closed",
    "lead.unsubscribed",
    "lead.erased",
];

/// One configured endpoint, checked.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub url: url::Url,
    /// Decoded secrets, newest first.
    secrets: Vec<Vec<u8>>,
    /// Event types (empty: all).
    events: Vec<String>,
    pub contact: Option<String>,
}

impl Endpoint {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }

    /// The `webhook-signature` header for a message.
    pub fn signature(&self, message_id: &str, timestamp_secs: i64, body: &str) -> String {
        self.secrets
            .iter()
            .map(|key| sign(key, message_id, timestamp_secs, body))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `v1,<base64>`: HMAC-SHA256 over `id.timestamp.body`.
pub fn sign(key: &[u8], message_id: &str, timestamp_secs: i64, body: &str) -> String {
    let mut mac = crate::consent::hmac_sha256(key);
    mac.update(format!("{message_id}.{timestamp_secs}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The configured endpoints and delivery rules, built once at startup.
#[derive(Debug, Clone)]
pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    allow_private: Arc<Vec<IpNet>>,
    pub settings: WebhookSettings,
}

fn decode_secret(s: &str) -> Option<Vec<u8>> {
    let raw = s.strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// A fresh `whsec_` secret (for `inlet webhooks secret`).
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

impl Webhooks {
    pub fn build(s: &WebhookSettings) -> Result<Webhooks, ConfigError> {
        let allow_private = s
            .allow_private
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            "webhooks.allow_private",
                            format!("'{n}' is not an IP address or CIDR"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for e in &s.endpoints {
            let at = |m: String| ConfigError::invalid(format!("webhooks.endpoints '{}'", e.id), m);
            let id_ok = !e.id.is_empty()
                && e.id.len() <= 64
                && e.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                return Err(at("id must be 1-64 letters, digits, '-' or '_'".into()));
            }
            if endpoints.iter().any(|x| x.id == e.id) {
                return Err(at("is defined twice".into()));
            }
            let url = url::Url::parse(&e.url).map_err(|err| at(format!("url: {err}")))?;
            if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
                return Err(at("url must be an http(s) URL with a host".into()));
            }
            if let Some(ip) = literal_ip(&url) {
                if !allowed(ip, &allow_private) {
                    return Err(at(format!(
                        "url points at {ip}, a private, loopback or link-local address; add it \
                         to webhooks.allow_private if that is meant"
                    )));
                }
            }
            if e.secrets.is_empty() {
                return Err(at(
                    "needs at least one secret (`inlet webhooks secret` makes one)".into(),
                ));
            }
            let secrets = e
                .secrets
                .iter()
                .map(|s| decode_secret(s.expose_secret()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    at(
                        "each secret must be whsec_ followed by base64 of 24-64 bytes \
                        (`inlet webhooks secret` makes one)"
                            .into(),
                    )
                })?;
            for ev in &e.events {
                let known = EVENT_TYPES.contains(&ev.as_str());
                if !known {
                    return Err(at(format!(
                        "unknown event '{ev}' (known: {})",
                        EVENT_TYPES.join(", ")
                    )));
                }
            }
            if let Some(c) = &e.contact {
                crate::domain::EmailAddress::parse(c)
                    .map_err(|err| at(format!("contact '{c}' {err}")))?;
            }
            endpoints.push(Endpoint {
                id: e.id.clone(),
                url,
                secrets,
                events: e.events.clone(),
                contact: e.contact.clone(),
            });
        }
        if s.timeout_ms == 0 || s.retry_hours == 0 || s.disable_after_hours == 0 {
            return Err(ConfigError::invalid(
                "webhooks",
                "timeout_ms, retry_hours and disable_after_hours must be at least 1",
            ));
        }
        Ok(Webhooks {
            endpoints,
            allow_private: Arc::new(allow_private),
            settings: s.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// The HTTP client deliveries use: no redirects followed (a 3xx is a failure), the
    /// configured timeout, and a resolver that refuses private addresses.
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_millis(self.settings.timeout_ms))
            .user_agent(concat!("Inlet-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PublicOnly {
                allow: self.allow_private.clone(),
            }))
            .build()
    }

    /// Whether a URL's literal address may be called (names are checked when resolved).
    pub fn literal_allowed(&self, url: &url::Url) -> bool {
        literal_ip(url).is_none_or(|ip| allowed(ip, &self.allow_private))
    }
}

/// The body of a message.
pub fn payload(kind: &str, at_ms: i64, data: &Value) -> String {
    let timestamp = chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({ "type": kind, "timestamp": timestamp, "data": data }).to_string()
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Whether an address is on the public internet (or allow-listed).
pub fn allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    if allow.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0xdb8)) // documentation
        }
    }
}

/// Resolves names like the system does, then drops every address that is not public (or
/// allow-listed); a name left with none fails to connect.
struct PublicOnly {
    allow: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allowed(a.ip(), &allow))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses \
                     (webhooks.allow_private allows chosen networks)"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!allowed(ip.parse().unwrap(), &[]), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(allowed(ip.parse().unwrap(), &[]), "{ip}");
        }
        let allow = ["127.0.0.0/8".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &allow));
    }

    #[test]
    fn signatures_follow_the_specification_example() {
        // The example in the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_a_rotation_every_secret_signs_and_either_one_verifies() {
        let (old, new) = (new_secret(), new_secret());
        let s = WebhookSettings {
            endpoints: vec![crate::config::WebhookEndpointConfig {
                id: "crm".into(),
                url: "https://hooks.example.com/in".into(),
                secrets: vec![
                    secrecy::SecretString::from(new.clone()),
                    secrecy::SecretString::from(old.clone()),
                ],
                events: Vec::new(),
                contact: None,
            }],
            ..WebhookSettings::default()
        };
        let hooks = Webhooks::build(&s).unwrap();
        let header = hooks.endpoints()[0].signature("msg_1", 1_700_000_000, "{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        for (secret, part) in [(&new, parts[0]), (&old, parts[1])] {
            let key = decode_secret(secret).unwrap();
            assert_eq!(part, sign(&key, "msg_1", 1_700_000_000, "{}"));
        }
    }

    #[test]
    fn endpoints_are_checked_when_built() {
        let mut s = WebhookSettings::default();
        let endpoint = |url: &str, secret: &str| crate::config::WebhookEndpointConfig {
            id: "crm".into(),
            url: url.into(),
            secrets: vec![secrecy::SecretString::from(secret.to_string())],
            events: Vec::new(),
            contact: None,
        };
        let good = new_secret();
        s.endpoints = vec![endpoint("https://hooks.example.com/in", &good)];
        assert!(Webhooks::build(&s).is_ok());
        for (url, secret, says) in [
            ("http://127.0.0.1:9/x", good.as_str(), "private, loopback"),
            ("ftp://example.com/", good.as_str(), "http(s)"),
            ("https://example.com/", "hunter2", "whsec_"),
        ] {
            s.endpoints = vec![endpoint(url, secret)];
            let e = Webhooks::build(&s).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        s.endpoints = vec![endpoint("http://127.0.0.1:9/x", &good)];
        s.allow_private = vec!["127.0.0.0/8".into()];
        assert!(Webhooks::build(&s).is_ok());
    }
}
