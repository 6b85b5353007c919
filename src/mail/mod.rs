//! Email: templates, message building, and the transports (SMTP or `.eml` files).

mod message;
mod templates;
mod transport;

pub use message::{plan_messages, ComposeError, Composer};
pub use templates::{Templates, DEFAULT_HTML, DEFAULT_SUBJECT, DEFAULT_TEXT};
pub use transport::{describe_send_error, send_test_email, MailError, Mailer};

use lettre::message::Mailbox;

/// Parses `Name <addr@example.com>` or `addr@example.com`; refuses CR/LF outright.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    if s.contains(['\r', '\n']) {
        return Err("must not contain line breaks".into());
    }
    s.parse::<Mailbox>()
        .map_err(|e| format!("'{s}' is not a mailbox like 'Name <name@example.com>': {e}"))
}
