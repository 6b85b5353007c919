//! Turning an outbox row into a MIME message: multipart text + HTML, `Message-ID` on our
//! domain, `Date`, `From`/`Reply-To` per form. No user-typed text reaches a header: subjects
//! are rendered from the form alone, and addresses are parsed `EmailAddress`es.

use std::collections::BTreeMap;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use minijinja::context;
use serde::Serialize;

use super::Templates;
use crate::domain::{FieldValue, MessageKind, NewOutboxMessage, NewSubmission};
use crate::forms::{Form, FormRegistry};
use crate::store::ClaimedMessage;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("form '{0}' no longer exists in the configuration")]
    UnknownForm(String),
    #[error("unknown message kind '{0}'")]
    UnknownKind(String),
    #[error("template failed: {0}")]
    Template(#[from] minijinja::Error),
    #[error("bad address: {0}")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
}

/// The messages a submission implies: a follow-up to the person and one notification per
/// owner. Spam implies none.
pub fn plan_messages(
    form: &Form,
    sub: &NewSubmission,
    outbox: &crate::config::OutboxSettings,
) -> Vec<NewOutboxMessage> {
    if sub.spam.is_some() {
        return Vec::new();
    }
    let window =
        i64::try_from(outbox.follow_up_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut out = vec![NewOutboxMessage {
        kind: MessageKind::FollowUp,
        recipient: sub.email.clone(),
        max_attempts: outbox.max_attempts,
        dedupe_window_ms: (window > 0).then_some(window),
    }];
    out.extend(form.notify.iter().map(|owner| NewOutboxMessage {
        kind: MessageKind::OwnerNotification,
        recipient: owner.clone(),
        max_attempts: outbox.max_attempts,
        dedupe_window_ms: None,
    }));
    out
}

#[derive(Serialize)]
struct FormContext<'a> {
    id: &'a str,
    kind: crate::config::FormKind,
    success_message: &'a str,
}

/// Builds messages; cheap to clone.
#[derive(Clone, Debug)]
pub struct Composer {
    templates: Templates,
    forms: FormRegistry,
    default_from: Mailbox,
    public_url: String,
    dkim: Option<std::sync::Arc<lettre::message::dkim::DkimConfig>>,
}

impl Composer {
    pub fn new(
        templates: Templates,
        forms: FormRegistry,
        default_from: Mailbox,
        public_url: String,
        dkim: Option<std::sync::Arc<lettre::message::dkim::DkimConfig>>,
    ) -> Composer {
        Composer {
            templates,
            forms,
            default_from,
            public_url,
            dkim,
        }
    }

    fn absolute(&self, u: &str) -> String {
        if u.starts_with("http://") || u.starts_with("https://") {
            u.to_string()
        } else {
            format!("{}/{}", self.public_url, u.trim_start_matches('/'))
        }
    }

    pub fn compose(&self, m: &ClaimedMessage) -> Result<Message, ComposeError> {
        let form = self
            .forms
            .get(&m.form_id)
            .ok_or_else(|| ComposeError::UnknownForm(m.form_id.clone()))?;
        let kind =
            MessageKind::parse(&m.kind).ok_or_else(|| ComposeError::UnknownKind(m.kind.clone()))?;
        let mut fields: BTreeMap<String, FieldValue> = m.fields.clone();
        fields.insert(
            form.email_field.clone(),
            FieldValue::Text(m.lead_email.clone()),
        );
        let form_ctx = FormContext {
            id: &form.id,
            kind: form.kind,
            success_message: &form.success_message,
        };
        let download_url = form.download_url.as_deref().map(|u| self.absolute(u));
        let (subject, text, html) = match kind {
            MessageKind::FollowUp => {
                let ctx = context! { form => &form_ctx, fields => &fields, download_url => &download_url,
                lead_id => &m.lead_id };
                (
                    self.templates.render(
                        &format!("{}.subject", form.id),
                        context! { form => &form_ctx },
                    )?,
                    self.templates.render(&format!("{}.txt", form.id), &ctx)?,
                    self.templates.render(&format!("{}.html", form.id), &ctx)?,
                )
            }
            MessageKind::OwnerNotification => {
                // The form's own order, with its labels: what a person reads top to bottom.
                let rows: Vec<(&str, String)> = form
                    .fields
                    .iter()
                    .filter_map(|f| fields.get(&f.name).map(|v| (f.label.as_str(), v.as_text())))
                    .collect();
                let ctx = context! { form => &form_ctx, rows => rows,
                lead_id => &m.lead_id, submission_id => &m.submission_id };
                (
                    self.templates.render(
                        super::templates::OWNER_SUBJECT,
                        context! { form => &form_ctx },
                    )?,
                    self.templates.render(super::templates::OWNER_TEXT, &ctx)?,
                    self.templates.render(super::templates::OWNER_HTML, &ctx)?,
                )
            }
        };
        let from = form
            .from
            .clone()
            .unwrap_or_else(|| self.default_from.clone());
        let to: Mailbox = m
            .recipient
            .parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address(e.to_string()))?;
        let domain = from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(from)
            .to(to)
            .subject(one_line(&subject))
            .date_now()
            .message_id(Some(format!("<{}@{}>", m.id, domain)));
        if kind == MessageKind::OwnerNotification {
            // The lead's address is a parsed EmailAddress: safe in a header, handy for sales.
            if let Ok(lead) = m.lead_email.parse::<Mailbox>() {
                builder = builder.reply_to(lead);
            }
        } else if let Some(r) = &form.reply_to {
            builder = builder.reply_to(r.clone());
        }
        let mut message = builder.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
}

/// Whatever a template produced, a header gets one line with no control characters.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
