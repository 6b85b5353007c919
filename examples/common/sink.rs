//! The SMTP sink the benchmarks share: accepts every message, counts it, keeps nothing.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mailin_embedded::{Handler, Response, Server, SslConfig};

#[derive(Clone)]
struct Sink(Arc<AtomicU64>);

impl Handler for Sink {
    fn data_end(&mut self) -> Response {
        self.0.fetch_add(1, Ordering::Relaxed);
        mailin_embedded::response::OK
    }
}

/// Serves on `listener` (on this thread: blocks); returns only on error.
pub fn serve(
    listener: TcpListener,
    received: Arc<AtomicU64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut server = Server::new(Sink(received));
    server
        .with_name("sink.local")
        .with_ssl(SslConfig::None)?
        .with_num_threads(64)
        .with_tcp_listener(listener);
    server.serve()?;
    Ok(())
}
