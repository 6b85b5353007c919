//! Transports: SMTP through lettre (built once, pooled) or `.eml` files for the demo.

use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{redacted_url, MailSettings};
use crate::domain::EmailAddress;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.smtp_url (INLET_SMTP_URL) is not usable: {0}")]
    Config(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("{0}")]
    Send(String),
    /// The server refused this message for good (a 55x answer to it): retrying cannot help.
    /// `bounce`: the reason is the recipient's address itself (no such mailbox), so it
    /// belongs on the suppression list.
    #[error("{text}")]
    Refused { text: String, bounce: bool },
}

/// Where mail goes. Cloning shares the SMTP connection pool.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// For messages and logs: the URL with its password redacted.
        describe: String,
    },
    Files {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: std::path::PathBuf,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Mailer {
    pub fn from_settings(settings: &MailSettings) -> Result<Mailer, MailError> {
        match &settings.smtp_url {
            Some(url) => {
                let url = url.expose_secret();
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailError::Config(e.to_string()))?
                    .timeout(Some(Duration::from_secs(settings.timeout_secs)))
                    .build();
                Ok(Mailer::Smtp {
                    transport,
                    describe: format!("SMTP {}", redacted_url(url)),
                })
            }
            None => {
                std::fs::create_dir_all(&settings.mail_dir).map_err(|e| {
                    MailError::Config(format!(
                        "cannot create mail.mail_dir {}: {e}",
                        settings.mail_dir.display()
                    ))
                })?;
                Ok(Mailer::Files {
                    transport: AsyncFileTransport::<Tokio1Executor>::new(&settings.mail_dir),
                    dir: settings.mail_dir.clone(),
                })
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp { describe, .. } => describe.clone(),
            Mailer::Files { dir, .. } => format!(".eml files in {}", dir.display()),
        }
    }

    /// Sends one message; the answer says what the peer said.
    pub async fn send(&self, message: Message) -> Result<String, MailError> {
        match self {
            Mailer::Smtp { transport, .. } => transport
                .send(message)
                .await
                .map(|r| {
                    format!(
                        "accepted: {} {}",
                        r.code(),
                        r.message().collect::<Vec<_>>().join(" ")
                    )
                })
                .map_err(|e| classify(&e)),
            Mailer::Files { transport, dir } => transport
                .send(message)
                .await
                .map(|id| format!("written to {}/{id}.eml", dir.display()))
                .map_err(|e| MailError::Send(format!("cannot write the .eml file: {e}"))),
        }
    }
}

/// A refusal of this one message (550-555) is final; anything else (a 4xx, a timeout, a
/// refused connection, a 5xx about the session such as failed authentication) may be the
/// server's or the configuration's passing state, and is retried. A 550/551/553 that is not a
/// policy refusal (enhanced code 5.7.x) says the mailbox does not exist: a hard bounce.
fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    let text = describe_send_error(e);
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_permanent() && matches!(code.as_str(), "550" | "551" | "552" | "553" | "554" | "555") {
        let policy = e.to_string().contains("5.7.");
        let bounce = matches!(code.as_str(), "550" | "551" | "553") && !policy;
        MailError::Refused { text, bounce }
    } else {
        MailError::Send(text)
    }
}

/// An SMTP failure as a line that says what to change.
pub fn describe_send_error(e: &lettre::transport::smtp::Error) -> String {
    let text = e.to_string();
    let chain = {
        let mut s = text.clone();
        let mut cur = std::error::Error::source(e);
        while let Some(c) = cur {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    };
    let hint = if e.is_timeout() {
        "the server did not answer in time: check host, port and firewall, or raise mail.timeout_secs"
    } else if e.is_tls() {
        "TLS failed: port 465 needs smtps://, port 587 usually ?tls=required, a local catcher usually none"
    } else if chain.contains("refused") {
        "nothing accepts connections at that host and port: is the SMTP server running?"
    } else if e.status().is_some_and(|c| c.to_string().starts_with("53")) {
        "authentication failed: check the user and password in INLET_SMTP_URL"
    } else if e.is_permanent() {
        "the server refused the message permanently: check the From address and recipient"
    } else if e.is_transient() {
        "the server deferred the message: it will be retried"
    } else {
        "check INLET_SMTP_URL"
    };
    format!("{chain} ({hint})")
}

/// `inlet send-test-email`: one message through the configured transport, reported exactly.
pub async fn send_test_email(
    settings: &MailSettings,
    to: &EmailAddress,
) -> Result<String, MailError> {
    let mailer = Mailer::from_settings(settings)?;
    let from = super::parse_mailbox(&settings.from).map_err(MailError::Config)?;
    let to = super::parse_mailbox(to.as_str()).map_err(MailError::Build)?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject("Inlet test email")
        .message_id(None)
        .body(format!(
            "This is a test email from Inlet, sent through {}.\n\nIf you can read this, mail \
             delivery works.\n",
            mailer.describe()
        ))
        .map_err(|e| MailError::Build(e.to_string()))?;
    let outcome = mailer.send(message).await?;
    Ok(format!("sent through {}: {outcome}", mailer.describe()))
}
