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

/// Why a quarantined submission's messages are stored as `skipped`.
pub const QUARANTINED: &str = "not sent: the submission was quarantined as spam";

/// The messages a submission implies: a double opt-in submission only its confirmation link
/// (re-sent at most once per `confirm_resend_window_secs`); any other the follow-ups. Spam
/// (quarantined) implies the same messages, every one held as [`QUARANTINED`]: stored as
/// `skipped`, never sent. So the marketer sees what was held back, and a caught bot's answer
/// costs the same writes as a person's (its timing does not tell it that it was caught).
pub fn plan_messages(
    form: &Form,
    sub: &NewSubmission,
    outbox: &crate::config::OutboxSettings,
    consent: &crate::config::ConsentSettings,
) -> Vec<NewOutboxMessage> {
    let confirmation = || NewOutboxMessage {
        kind: MessageKind::Confirmation,
        recipient: sub.email.clone(),
        max_attempts: outbox.max_attempts,
        dedupe_window_ms: window_ms(consent.confirm_resend_window_secs),
        held: None,
    };
    if sub.quarantined() {
        let mut planned = if form.double_opt_in {
            vec![confirmation()]
        } else {
            follow_ups(form, &sub.email, outbox)
        };
        for m in &mut planned {
            m.held = Some(QUARANTINED);
        }
        return planned;
    }
    if let crate::domain::Confirmation::Pending { .. } = sub.confirmation {
        return vec![confirmation()];
    }
    follow_ups(form, &sub.email, outbox)
}

/// Whether any of `messages` is to be sent (not held).
pub fn any_to_send(messages: &[NewOutboxMessage]) -> bool {
    messages.iter().any(|m| m.held.is_none())
}

/// The addresses [`hold_capped`] asks about: every recipient but the owners, once each, of
/// the messages not already held (a held message spends no cap).
pub fn capped_recipients(messages: &[NewOutboxMessage]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for m in messages
        .iter()
        .filter(|m| m.kind != MessageKind::OwnerNotification && m.held.is_none())
    {
        if !out.contains(&m.recipient.as_str()) {
            out.push(m.recipient.as_str());
        }
    }
    out
}

/// Marks the messages to the address the submitter typed that `allow` refuses (a cap on mail
/// to unconfirmed addresses) as held: they are stored as `skipped` with the reason, so what
/// happened stays visible, and never sent. Owner notifications are not affected.
pub fn hold_capped(
    messages: &mut [NewOutboxMessage],
    mut allow: impl FnMut(&crate::domain::EmailAddress) -> Result<(), &'static str>,
) {
    for m in messages
        .iter_mut()
        .filter(|m| m.kind != MessageKind::OwnerNotification && m.held.is_none())
    {
        if let Err(reason) = allow(&m.recipient) {
            m.held = Some(reason);
        }
    }
}

/// The follow-up to the person and one notification per owner (at once, or on confirmation).
pub fn follow_ups(
    form: &Form,
    email: &crate::domain::EmailAddress,
    outbox: &crate::config::OutboxSettings,
) -> Vec<NewOutboxMessage> {
    let mut out = vec![NewOutboxMessage {
        kind: MessageKind::FollowUp,
        recipient: email.clone(),
        max_attempts: outbox.max_attempts,
        dedupe_window_ms: window_ms(outbox.follow_up_window_secs),
        held: None,
    }];
    out.extend(form.notify.iter().map(|owner| NewOutboxMessage {
        kind: MessageKind::OwnerNotification,
        recipient: owner.clone(),
        max_attempts: outbox.max_attempts,
        dedupe_window_ms: None,
        held: None,
    }));
    out
}

fn window_ms(secs: u64) -> Option<i64> {
    let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    (ms > 0).then_some(ms)
}

#[derive(Serialize)]
struct FormContext<'a> {
    id: &'a str,
    kind: crate::config::FormKind,
    success_message: &'a str,
}

/// What sequence mail needs besides the templates: the steps' links, the tokens of reply
/// addresses and click redirects, and where replies go.
#[derive(Clone, Debug)]
pub struct SequenceMail {
    pub sequences: std::sync::Arc<crate::sequences::Sequences>,
    pub tokens: crate::sequences::Tokens,
    /// `replies.address`.
    pub reply_to: Option<String>,
    pub public_url: String,
}

/// Builds messages; cheap to clone.
#[derive(Clone, Debug)]
pub struct Composer {
    sequence_mail: Option<SequenceMail>,
    templates: Templates,
    forms: FormRegistry,
    default_from: Mailbox,
    links: std::sync::Arc<crate::consent::Links>,
    dkim: Option<std::sync::Arc<lettre::message::dkim::DkimConfig>>,
}

impl Composer {
    pub fn new(
        templates: Templates,
        forms: FormRegistry,
        default_from: Mailbox,
        links: std::sync::Arc<crate::consent::Links>,
        dkim: Option<std::sync::Arc<lettre::message::dkim::DkimConfig>>,
    ) -> Composer {
        Composer {
            sequence_mail: None,
            templates,
            forms,
            default_from,
            links,
            dkim,
        }
    }

    /// Composes sequence steps too.
    #[must_use]
    pub fn with_sequences(mut self, mail: SequenceMail) -> Composer {
        self.sequence_mail = Some(mail);
        self
    }

    pub fn compose(&self, m: &ClaimedMessage) -> Result<Message, ComposeError> {
        let form = self
            .forms
            .get(&m.form_id)
            .ok_or_else(|| ComposeError::UnknownForm(m.form_id.clone()))?;
        let kind =
            MessageKind::parse(&m.kind).ok_or_else(|| ComposeError::UnknownKind(m.kind.clone()))?;
        // Nobody confirmed the address of a form without double opt-in: anyone could have
        // typed it, so the follow-up carries nothing else they typed (no name, no message)
        // unless the form opts in. Owners get everything.
        // A sequence step may use them once the address is proven (a used download link).
        let proven = form.double_opt_in
            || form.personalize_unconfirmed
            || (kind == MessageKind::SequenceStep && m.confirmed);
        let anonymous =
            matches!(kind, MessageKind::FollowUp | MessageKind::SequenceStep) && !proven;
        let mut fields: BTreeMap<String, FieldValue> = if anonymous {
            BTreeMap::new()
        } else {
            m.fields.clone()
        };
        fields.insert(
            form.email_field.clone(),
            FieldValue::Text(m.lead_email.clone()),
        );
        let form_ctx = FormContext {
            id: &form.id,
            kind: form.kind,
            // Follow-ups of double opt-in forms go out once the person has confirmed: "please
            // confirm" no longer fits there.
            success_message: if form.double_opt_in {
                &form.confirmed_message
            } else {
                &form.success_message
            },
        };
        let download_url = m
            .download_expires_at_ms
            .map(|until| self.links.download_url(&m.submission_id, until));
        let unsubscribe = kind
            .is_marketing()
            .then(|| self.links.unsubscribe_links(&m.lead_id));
        let unsubscribe_url = unsubscribe.as_ref().map(|u| u.url.as_str());
        let (subject, mut text, mut html) = match kind {
            MessageKind::FollowUp => {
                let ctx = context! { form => &form_ctx, fields => &fields, download_url => &download_url,
                lead_id => &m.lead_id, unsubscribe_url => &unsubscribe_url };
                (
                    self.templates.render(
                        &format!("{}.subject", form.id),
                        context! { form => &form_ctx },
                    )?,
                    self.templates.render(&format!("{}.txt", form.id), &ctx)?,
                    self.templates.render(&format!("{}.html", form.id), &ctx)?,
                )
            }
            MessageKind::DownloadLink => {
                let ctx = context! { form => &form_ctx, download_url => &download_url,
                unsubscribe_url => &unsubscribe_url };
                (
                    self.templates
                        .render(super::templates::DOWNLOAD_SUBJECT, &ctx)?,
                    self.templates
                        .render(super::templates::DOWNLOAD_TEXT, &ctx)?,
                    self.templates
                        .render(super::templates::DOWNLOAD_HTML, &ctx)?,
                )
            }
            MessageKind::Confirmation => {
                // Only the address the person typed appears: never a name or other field,
                // which spammers use to put their text into confirmation mail.
                let until = chrono::DateTime::from_timestamp_millis(
                    self.links.confirm_expiry_ms(m.submitted_at_ms),
                )
                .map(|t| t.format("%-d %B %Y").to_string());
                let ctx = context! { form => &form_ctx, address => &m.lead_email,
                confirm_url => self.links.confirm_url(&m.submission_id, m.submitted_at_ms),
                until => until };
                (
                    self.templates
                        .render(super::templates::CONFIRM_SUBJECT, &ctx)?,
                    self.templates
                        .render(super::templates::CONFIRM_TEXT, &ctx)?,
                    self.templates
                        .render(super::templates::CONFIRM_HTML, &ctx)?,
                )
            }
            MessageKind::SequenceStep => self.sequence_parts(m, &fields, unsubscribe_url)?,
            MessageKind::OwnerNotification => {
                // The form's own order, with its labels: what a person reads top to bottom.
                let rows: Vec<(&str, String)> = form
                    .fields
                    .iter()
                    .filter_map(|f| fields.get(&f.name).map(|v| (f.label.as_str(), v.as_text())))
                    .collect();
                let ctx = context! { form => &form_ctx, rows => rows,
                lead_id => &m.lead_id, submission_id => &m.submission_id,
                quarantined => m.quarantined_before };
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
        } else if let Some(r) = self.reply_address(kind, m) {
            builder = builder.reply_to(r);
        } else if let Some(r) = &form.reply_to {
            builder = builder.reply_to(r.clone());
        }
        if let Some(crate::consent::UnsubscribeLinks { url, mailto }) = &unsubscribe {
            // RFC 2369 + RFC 8058: one-click unsubscribe that mailbox providers show as a button.
            builder = builder
                .header(ListUnsubscribe(format!("<{url}>, <{mailto}>")))
                .header(ListUnsubscribePost);
            // A visible way out in every marketing body, whatever the form's own template says.
            if !text.contains(url.as_str()) {
                text.push_str(&format!("\nUnsubscribe: {url}\n"));
            }
            let escaped = url.replace('&', "&amp;");
            if !html.contains(&escaped) {
                let footer = format!(
                    "<p style=\"color:#666;font-size:12px\"><a href=\"{escaped}\">Unsubscribe</a></p>"
                );
                match html.rfind("</body>") {
                    Some(i) => html.insert_str(i, &footer),
                    None => html.push_str(&footer),
                }
            }
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

    /// A sequence step's subject, text and HTML; with click tracking, every link the step's
    /// templates hold goes through a signed redirect.
    fn sequence_parts(
        &self,
        m: &ClaimedMessage,
        fields: &BTreeMap<String, FieldValue>,
        unsubscribe_url: Option<&str>,
    ) -> Result<(String, String, String), ComposeError> {
        let missing = || ComposeError::UnknownKind(format!("sequence step {:?}", m.step_id));
        let mail = self.sequence_mail.as_ref().ok_or_else(missing)?;
        let (seq, step_id) = (
            m.sequence_id.as_deref().unwrap_or_default(),
            m.step_id.as_deref().unwrap_or_default(),
        );
        let sequence = mail.sequences.get(seq).ok_or_else(missing)?;
        let (index, step) = sequence.step(step_id).ok_or_else(missing)?;
        let about = context! { sequence => context! { id => &sequence.id, name => &sequence.name },
        step => context! { id => &step.id, number => index + 1, total => sequence.steps.len() } };
        let ctx = context! { sequence => context! { id => &sequence.id, name => &sequence.name },
        step => context! { id => &step.id, number => index + 1, total => sequence.steps.len() },
        fields => fields, unsubscribe_url => unsubscribe_url, lead_id => &m.lead_id };
        let name = super::templates::step_template(&sequence.id, &step.id);
        let subject = self.templates.render(&format!("{name}.subject"), about)?;
        let mut text = self.templates.render(&format!("{name}.txt"), &ctx)?;
        let mut html = if step.has_html {
            self.templates.render(&format!("{name}.html"), &ctx)?
        } else {
            super::templates::paragraphs(&text)
        };
        if sequence.track_clicks {
            // Longest first, so a link that another one starts with cannot split it.
            let mut links: Vec<(usize, &String)> = step.links.iter().enumerate().collect();
            links.sort_by_key(|(_, l)| std::cmp::Reverse(l.len()));
            let mut swaps = Vec::new();
            for (n, (i, link)) in links.into_iter().enumerate() {
                let Some(token) = mail.tokens.click_token(&m.id, i) else {
                    continue;
                };
                let placeholder = format!("\u{1}{n}\u{1}");
                text = text.replace(link.as_str(), &placeholder);
                html = html
                    .replace(&link.replace('&', "&amp;"), &placeholder)
                    .replace(link.as_str(), &placeholder);
                swaps.push((placeholder, format!("{}/v1/r/{token}", mail.public_url)));
            }
            for (placeholder, url) in swaps {
                text = text.replace(&placeholder, &url);
                html = html.replace(&placeholder, &url);
            }
        }
        Ok((subject, text, html))
    }

    /// Sequence mail's Reply-To: the replies address with this message's token.
    fn reply_address(&self, kind: MessageKind, m: &ClaimedMessage) -> Option<Mailbox> {
        if kind != MessageKind::SequenceStep {
            return None;
        }
        let mail = self.sequence_mail.as_ref()?;
        let token = mail.tokens.reply_token(&m.id)?;
        crate::sequences::reply_address(mail.reply_to.as_deref()?, &token)?
            .parse()
            .ok()
    }

    /// A sign-in link for a console account, asked for by email: plain text, from the default
    /// sender, DKIM-signed like every other message. `id` makes the Message-ID.
    pub fn sign_in_link(
        &self,
        id: &str,
        to: &str,
        link: &str,
        minutes: u64,
    ) -> Result<Message, ComposeError> {
        let text = format!(
            "Someone (we hope you) asked to sign in to Inlet with this address.\n\n\
             Open this link and press the button on the page to sign in. It works once, \
             for {}:\n\n{link}\n\n\
             If you did not ask for it, ignore this message: nobody can use it without opening \
             your mail.\n",
            crate::console::minutes_in_words(minutes)
        );
        self.staff(id, to, ("Your sign-in link for Inlet".into(), text))
    }
}

impl Composer {
    /// A plain-text message to a member of staff (hand-offs, escalations, endpoint notices).
    pub fn staff(
        &self,
        id: &str,
        to: &str,
        (subject, text): (String, String),
    ) -> Result<Message, ComposeError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address(e.to_string()))?;
        let domain = self.default_from.email.domain().to_string();
        let mut message = Message::builder()
            .from(self.default_from.clone())
            .to(to)
            .subject(one_line(&subject))
            .date_now()
            .message_id(Some(format!("<{id}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(text)?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
}

/// `List-Unsubscribe: <https://…>, <mailto:…>` (RFC 2369). The value is built from our own
/// URLs and base64url tokens only.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl lettre::message::header::Header for ListUnsubscribe {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), one_line(&self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl lettre::message::header::Header for ListUnsubscribePost {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(
            Self::name(),
            "List-Unsubscribe=One-Click".to_string(),
        )
    }
}

/// Whatever a template produced, a header gets one line with no control characters.
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
