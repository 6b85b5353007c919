//! A real SMTP server for tests (mailin-embedded over TCP): lettre talks SMTP to it exactly as it
//! would to a production server. Its answers can be switched to temporary (451) or permanent
//! (550) failure, or slowed down, to exercise retries.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, SslConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// Answer 451 to the next `n` messages, then accept.
    TempFail(u32),
    /// Answer 550 to every message.
    PermFail,
    /// Answer 550 naming the recipient, as Postfix does.
    PermFailNamingRecipient,
    /// Answer 554 5.7.1 (a policy refusal of the message: not a bounce of the address).
    PolicyReject,
    /// Accept, after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a MIME message")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<Mode>>,
    rejected: Arc<Mutex<u32>>,
    started: Arc<Mutex<u32>>,
}

#[derive(Clone)]
struct SinkHandler {
    shared: Shared,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

/// Failures are answered to the DATA command rather than after the message body: mailin 0.6
/// stays in its DATA state after an error reply to the end of data, which wedges a pooled
/// client connection. Replying at DATA gives lettre the same 451/550 through the same path.
impl Handler for SinkHandler {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        // One lock for the read and the update: two connections delivering at once must not
        // both take the last temporary failure.
        let mut guard = self.shared.mode.lock().unwrap();
        let mode = *guard;
        if let Mode::TempFail(n) = mode {
            *guard = Mode::TempFail(n.saturating_sub(1));
        }
        drop(guard);
        let refusal = match mode {
            Mode::TempFail(n) if n > 0 => {
                Some(Response::custom(451, "4.3.0 Try again later".into()))
            }
            Mode::PermFail => Some(Response::custom(550, "5.1.1 Mailbox unavailable".into())),
            Mode::PolicyReject => Some(Response::custom(
                554,
                "5.7.1 Message rejected as spam".into(),
            )),
            Mode::PermFailNamingRecipient => Some(Response::custom(
                550,
                format!(
                    "5.1.1 <{}>: Recipient address rejected: User unknown",
                    to.join(", ")
                ),
            )),
            _ => None,
        };
        if let Some(r) = refusal {
            *self.shared.rejected.lock().unwrap() += 1;
            return r;
        }
        *self.shared.started.lock().unwrap() += 1;
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::START_DATA
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Mode::Slow(d) = *self.shared.mode.lock().unwrap() {
            std::thread::sleep(d);
        }
        self.shared.received.lock().unwrap().push(Received {
            from: self.from.clone(),
            to: self.to.clone(),
            data: std::mem::take(&mut self.data),
        });
        mailin_embedded::response::OK
    }
}

pub struct SmtpServer {
    pub port: u16,
    shared: Shared,
}

impl SmtpServer {
    /// Starts on a random free port.
    pub fn start() -> SmtpServer {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    /// A port nothing listens on yet (the server is "down"); `start_at` brings it up later.
    pub fn reserve_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn start_at(port: u16) -> SmtpServer {
        Self::start_on(TcpListener::bind(("127.0.0.1", port)).expect("bind reserved port"))
    }

    fn start_on(listener: TcpListener) -> SmtpServer {
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            received: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Accept)),
            rejected: Arc::default(),
            started: Arc::default(),
        };
        let handler = SinkHandler {
            shared: shared.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("smtp.test")
            .with_ssl(SslConfig::None)
            .expect("no TLS")
            .with_num_threads(32)
            .with_tcp_listener(listener);
        // The server thread lives until the test process ends (mailin has no stop call).
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer { port, shared }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn rejected(&self) -> u32 {
        *self.shared.rejected.lock().unwrap()
    }

    /// Waits (bounded) until at least `n` accepted messages have begun (their DATA started):
    /// a sender is then in the middle of a send.
    pub async fn wait_started(&self, n: u32, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while *self.shared.started.lock().unwrap() < n {
            assert!(tokio::time::Instant::now() < deadline, "no send began");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) until at least `n` messages arrived; returns what arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn smtp_url_for_port(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}")
}
