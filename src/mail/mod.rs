//! Email: templates, message building, and the transports (SMTP or `.eml` files).

mod message;
pub mod staff;
mod templates;
mod transport;

pub use message::{
    any_to_send, capped_recipients, follow_ups, hold_capped, plan_messages, ComposeError, Composer,
    SequenceMail, QUARANTINED,
};
pub use templates::{Templates, DEFAULT_HTML, DEFAULT_SUBJECT, DEFAULT_TEXT};
pub use transport::{describe_send_error, send_test_email, MailError, Mailer};

use std::sync::Arc;

use lettre::message::dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey};

use crate::config::{ConfigError, DkimAlgorithm, DkimSettings};

/// Reads and checks the DKIM key once, at startup; errors name the setting.
pub fn load_dkim(d: &DkimSettings) -> Result<Arc<DkimConfig>, ConfigError> {
    let at = |what: &str| format!("mail.dkim.{what} (INLET_DKIM_{})", what.to_uppercase());
    if d.selector.is_empty()
        || !d
            .selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ConfigError::invalid(
            at("selector"),
            "must be a DNS label such as 'inlet'",
        ));
    }
    if !d.domain.contains('.') || d.domain.contains(['\r', '\n', ' ']) {
        return Err(ConfigError::invalid(
            at("domain"),
            "must be the signing domain, such as example.com",
        ));
    }
    let key = std::fs::read_to_string(&d.private_key_file).map_err(|e| {
        ConfigError::invalid(
            at("private_key_file"),
            format!("cannot read {}: {e}", d.private_key_file.display()),
        )
    })?;
    let algorithm = match d.algorithm {
        DkimAlgorithm::Rsa => DkimSigningAlgorithm::Rsa,
        DkimAlgorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
    };
    let key = DkimSigningKey::new(key.trim(), algorithm).map_err(|e| {
        ConfigError::invalid(
            at("private_key_file"),
            format!("not a usable {:?} private key: {e}", d.algorithm),
        )
    })?;
    Ok(Arc::new(DkimConfig::default_config(
        d.selector.clone(),
        d.domain.clone(),
        key,
    )))
}

/// Parses `Name <addr@example.com>` or `addr@example.com`; refuses CR/LF outright.
pub use crate::config::parse_mailbox;
