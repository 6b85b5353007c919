//! Sends generated hostile bodies to a running Inlet's submission endpoint and counts the
//! answers by status (issue 13: 10⁶ bodies, 0 panics, 0 5xx). Driven by `bench/hostile.sh`.
//!
//! `cargo run --release --example hostile_bodies -- URL COUNT [CONCURRENCY] [SEED]`
//!
//! Each body starts from what the embed script sends (fields, attribution, an idempotency
//! key) and is then damaged in one of many ways: hostile text in values and keys, wrong types,
//! nesting, huge numbers, duplicated and reserved keys, truncation, byte flips, invalid UTF-8,
//! a wrong or missing content type, urlencoded instead of JSON, forged challenge responses.
//! The generator is seeded, so a run can be repeated exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOSTILE: &[&str] = &[
    "",
    " ",
    "\r\nBcc: victim@example.com",
    "\u{0}",
    "\u{202e}evil",
    "e\u{301}\u{301}\u{301}",
    "<script>alert(1)</script>",
    "=HYPERLINK(\"http://x\")",
    "@",
    "a@b",
    "ann@example.com",
    "ANN@EXAMPLE.COM ",
    "a@foo[1.2.3.4]",
    "\"quoted\"@example.com",
    "x@xn--80ak6aa92e.com",
    "\u{fffd}\u{fffd}",
    "😀😀😀",
    "%00%0d%0a",
    "../../etc/passwd",
    "null",
    "true",
    "1e309",
    "-0",
];

const KEYS: &[&str] = &[
    "email",
    "name",
    "company",
    "phone",
    "message",
    "_gotcha",
    "_idem",
    "_elapsed_ms",
    "_loaded_at",
    "utm_source",
    "referrer",
    "landing_page",
    "first_touch",
    "last_touch",
    "_altcha",
    "cf-turnstile-response",
    "consent",
    "__proto__",
    "constructor",
    "",
];

fn text(rng: &mut StdRng) -> String {
    let mut s = String::new();
    for _ in 0..rng.gen_range(0..6) {
        match rng.gen_range(0..4) {
            0 => s.push_str(HOSTILE[rng.gen_range(0..HOSTILE.len())]),
            1 => s.push(char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{fffd}')),
            2 => s.push_str(&"A".repeat(rng.gen_range(0..3000))),
            _ => s.push_str(&format!("word{}", rng.gen::<u16>())),
        }
    }
    s
}

fn value(rng: &mut StdRng, depth: u32) -> serde_json::Value {
    use serde_json::Value;
    match rng.gen_range(0..10) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => serde_json::json!(rng.gen::<i64>()),
        3 => serde_json::json!(rng.gen::<f64>() * 1e300),
        4 if depth < 4 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
        ),
        5 if depth < 4 => Value::Object(
            (0..rng.gen_range(0..4))
                .map(|_| (text(rng), value(rng, depth + 1)))
                .collect(),
        ),
        _ => Value::String(text(rng)),
    }
}

/// What the embed script sends for the contact form.
fn realistic(rng: &mut StdRng, i: u64) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    m.insert(
        "email".into(),
        format!("h{i}.{}@example.com", rng.gen::<u32>()).into(),
    );
    m.insert("name".into(), "Ann Example".into());
    m.insert("message".into(), "Hello".into());
    m.insert(
        "_idem".into(),
        format!("{:012x}{:020x}", i, rng.gen::<u64>()).into(),
    );
    m.insert("_elapsed_ms".into(), "5000".into());
    m.insert("utm_source".into(), "newsletter".into());
    m.insert(
        "landing_page".into(),
        "https://www.example.com/landing".into(),
    );
    m
}

/// One request: (content type, body bytes).
fn body(rng: &mut StdRng, i: u64) -> (Option<&'static str>, Vec<u8>) {
    let mut m = realistic(rng, i);
    for _ in 0..rng.gen_range(0..5) {
        let key = if rng.gen_bool(0.7) {
            KEYS[rng.gen_range(0..KEYS.len())].to_string()
        } else {
            text(rng)
        };
        m.insert(key, value(rng, 0));
    }
    let json = serde_json::to_vec(&m).unwrap_or_default();
    match rng.gen_range(0..12) {
        0 => (
            Some("application/json"),
            json[..rng.gen_range(0..=json.len())].to_vec(),
        ),
        1 => {
            let mut b = json;
            for _ in 0..rng.gen_range(1..8) {
                if !b.is_empty() {
                    let at = rng.gen_range(0..b.len());
                    b[at] = rng.gen();
                }
            }
            (Some("application/json"), b)
        }
        2 => {
            let pairs: Vec<(String, String)> =
                m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            let enc = serde_urlencoded::to_string(&pairs).unwrap_or_default();
            (Some("application/x-www-form-urlencoded"), enc.into_bytes())
        }
        3 => (
            Some("application/x-www-form-urlencoded"),
            b"a=%ff%fe&email=%00&&=&%zz".to_vec(),
        ),
        4 => (None, json),
        5 => (Some("text/plain"), json),
        6 => (Some("application/json; charset=latin1"), json),
        7 => (
            Some("application/json"),
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        ),
        _ => (Some("application/json"), json),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/v1/forms/contact/submissions".into());
    let count: u64 = args
        .get(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let concurrency: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(64);
    let seed: u64 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(13);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let statuses: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
    let started = std::time::Instant::now();
    let chunk = count.div_ceil(concurrency as u64);
    futures::stream::iter(0..concurrency as u64)
        .map(|lane| {
            let client = client.clone();
            let url = url.clone();
            let statuses = statuses.clone();
            async move {
                let mut rng =
                    StdRng::seed_from_u64(seed ^ (lane.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                for i in lane * chunk..((lane + 1) * chunk).min(count) {
                    let (ct, b) = body(&mut rng, i);
                    let mut req = client.post(&url).body(b);
                    if let Some(ct) = ct {
                        req = req.header("content-type", ct);
                    }
                    let class = match req.send().await {
                        Ok(r) => usize::from(r.status().as_u16() / 100).min(5),
                        Err(_) => 0, // no answer at all (connection refused or reset)
                    };
                    statuses[class].fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    let n = |c: usize| statuses[c].load(Ordering::Relaxed);
    println!(
        "bodies={count} seconds={:.1} 2xx={} 4xx={} 5xx={} no_answer={}",
        started.elapsed().as_secs_f64(),
        n(2),
        n(4),
        n(5),
        n(0)
    );
    if n(5) > 0 || n(0) > 0 {
        anyhow::bail!("{} 5xx and {} requests without an answer", n(5), n(0));
    }
    Ok(())
}
