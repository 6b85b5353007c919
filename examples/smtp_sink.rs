//! A local SMTP sink for benchmarks: accepts every message, counts them, keeps nothing.
//!
//!   cargo run --release --example smtp_sink -- 127.0.0.1:2525

#[path = "common/sink.rs"]
mod sink;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2525".into());
    let listener = std::net::TcpListener::bind(addr)?;
    sink::serve(listener, std::sync::Arc::default())
}
