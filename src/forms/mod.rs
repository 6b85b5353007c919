//! Form definitions ("forms as code") compiled from the config, and how a payload is parsed
//! against one.

mod parse;
mod payload;

use std::collections::HashMap;
use std::sync::Arc;

pub use parse::{parse_submission, ParseContext, SubmissionError};
pub use payload::{parse_json, parse_urlencoded, PayloadError, RawPayload, RawValue, MAX_KEYS};

use crate::config::{ConfigError, ExtraFields, FieldType, FormConfig, FormKind, Settings};
use crate::domain::{EmailAddress, ATTRIBUTION_KEYS};

/// A field as the parser uses it.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub kind: FieldType,
    pub required: bool,
    pub max_length: usize,
    pub options: Vec<String>,
    pub label: String,
}

/// Which origins may submit.
#[derive(Debug, Clone)]
pub enum Origins {
    Any,
    List(Vec<String>),
}

impl Origins {
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Origins::Any => true,
            Origins::List(list) => {
                let o = origin.trim_end_matches('/').to_ascii_lowercase();
                list.contains(&o)
            }
        }
    }
}

/// A validated form definition.
#[derive(Debug, Clone)]
pub struct Form {
    pub index: usize,
    pub id: String,
    pub kind: FormKind,
    pub fields: Vec<FieldDef>,
    /// The name of the form's email field: the lead's identity.
    pub email_field: String,
    pub origins: Origins,
    /// Refuse requests with neither an allowed `Origin` nor an allowed `Referer`.
    pub require_origin: bool,
    pub redirect_url: Option<String>,
    pub success_message: String,
    /// What a double opt-in form says once the person has confirmed (page and welcome email).
    pub confirmed_message: String,
    pub honeypot: String,
    pub min_submit_ms: u64,
    pub extra_fields: ExtraFields,
    pub max_extra_fields: usize,
    /// Download forms: a signed link to the form's asset is the reward.
    pub delivers_download: bool,
    /// Submissions wait for the person to confirm before any other mail.
    pub double_opt_in: bool,
    /// Mail to an address nobody confirmed may carry what the submitter typed.
    pub personalize_unconfirmed: bool,
    /// A challenge every submission must pass.
    pub challenge: Option<crate::challenge::Challenge>,
    pub notify: Vec<EmailAddress>,
    /// `From:` for this form's mail (default: `mail.from`), and an optional `Reply-To:`.
    pub from: Option<lettre::message::Mailbox>,
    pub reply_to: Option<lettre::message::Mailbox>,
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every form this instance serves, looked up by id without locks.
#[derive(Debug, Clone)]
pub struct FormRegistry {
    forms: Vec<Arc<Form>>,
    by_id: HashMap<String, usize>,
}

impl FormRegistry {
    /// Validates every form; errors point at the form and field.
    pub fn build(settings: &Settings) -> Result<FormRegistry, ConfigError> {
        let min_submit_ms = settings.spam.min_submit_ms;
        let mut forms = Vec::new();
        let mut by_id = HashMap::new();
        for (index, cfg) in settings.forms.iter().enumerate() {
            let form = compile(index, cfg, min_submit_ms)?;
            if by_id.insert(form.id.clone(), index).is_some() {
                return Err(ConfigError::invalid(
                    format!("forms[{}].id", cfg.id),
                    "is used by more than one form",
                ));
            }
            forms.push(Arc::new(form));
        }
        Ok(FormRegistry { forms, by_id })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Form>> {
        self.by_id.get(id).map(|&i| &self.forms[i])
    }

    pub fn all(&self) -> &[Arc<Form>] {
        &self.forms
    }

    pub fn len(&self) -> usize {
        self.forms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub fn is_valid_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn default_max(kind: FieldType) -> usize {
    match kind {
        FieldType::Email => 254,
        FieldType::Textarea => 5000,
        FieldType::Url => 2048,
        FieldType::Tel => 32,
        FieldType::Hidden => 500,
        FieldType::Text | FieldType::Select | FieldType::Checkbox => 200,
    }
}

fn compile(index: usize, cfg: &FormConfig, min_submit_ms: u64) -> Result<Form, ConfigError> {
    let at = |what: &str| format!("forms[{}].{what}", cfg.id);
    if !is_valid_id(&cfg.id) {
        return Err(ConfigError::invalid(
            format!("forms[{}].id", cfg.id),
            "must be 1-64 characters of a-z, 0-9, - and _",
        ));
    }
    let mut fields: Vec<FieldDef> = Vec::new();
    for f in &cfg.fields {
        let fat = |what: &str| at(&format!("fields[{}].{what}", f.name));
        if !is_valid_field_name(&f.name) {
            return Err(ConfigError::invalid(
                fat("name"),
                "must start with a letter and use only letters, digits, - and _ (at most 64)",
            ));
        }
        if ATTRIBUTION_KEYS.contains(&f.name.as_str()) || f.name == cfg.honeypot {
            return Err(ConfigError::invalid(
                fat("name"),
                "is reserved (attribution or honeypot)",
            ));
        }
        if fields.iter().any(|x| x.name == f.name) {
            return Err(ConfigError::invalid(fat("name"), "is defined twice"));
        }
        if f.kind == FieldType::Select && f.options.is_empty() {
            return Err(ConfigError::invalid(
                fat("options"),
                "a select needs options",
            ));
        }
        let max_length = f.max_length.unwrap_or_else(|| default_max(f.kind));
        if max_length == 0 || max_length > 100_000 {
            return Err(ConfigError::invalid(
                fat("max_length"),
                "must be 1 to 100000",
            ));
        }
        fields.push(FieldDef {
            name: f.name.clone(),
            kind: f.kind,
            required: f.required,
            max_length,
            options: f.options.clone(),
            label: f
                .label
                .clone()
                .unwrap_or_else(|| f.name.replace(['_', '-'], " ")),
        });
    }
    let emails: Vec<&FieldDef> = fields
        .iter()
        .filter(|f| f.kind == FieldType::Email)
        .collect();
    let email_field = match emails.as_slice() {
        [one] if one.required => one.name.clone(),
        [_] => {
            return Err(ConfigError::invalid(
                at("fields"),
                "the email field must be required: it identifies the lead",
            ))
        }
        _ => {
            return Err(ConfigError::invalid(
                at("fields"),
                "needs exactly one field of type email",
            ))
        }
    };
    let origins = if cfg.allowed_origins.iter().any(|o| o == "*") {
        Origins::Any
    } else {
        let mut list = Vec::new();
        for o in &cfg.allowed_origins {
            let u = crate::config::parse_http_url(o)
                .map_err(|m| ConfigError::invalid(at("allowed_origins"), m))?;
            list.push(u.origin().ascii_serialization());
        }
        Origins::List(list)
    };
    if cfg.require_origin && matches!(origins, Origins::Any) {
        return Err(ConfigError::invalid(
            at("require_origin"),
            "needs allowed_origins to list the sites that may submit (not \"*\")",
        ));
    }
    if let Some(r) = &cfg.redirect_url {
        crate::config::parse_http_url(r)
            .map_err(|m| ConfigError::invalid(at("redirect_url"), m))?;
    }
    if cfg.kind == FormKind::Download && cfg.download_url.is_none() && cfg.download_file.is_none() {
        return Err(ConfigError::invalid(
            at("download_url"),
            "a download form needs the asset it delivers",
        ));
    }
    let notify = cfg
        .notify
        .iter()
        .map(|n| {
            EmailAddress::parse(n)
                .map_err(|e| ConfigError::invalid(at("notify"), format!("'{n}' {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mailbox = |what: &str, v: &Option<String>| {
        v.as_deref()
            .map(crate::mail::parse_mailbox)
            .transpose()
            .map_err(|m| ConfigError::invalid(at(what), m))
    };
    let from = mailbox("from", &cfg.from)?;
    let reply_to = mailbox("reply_to", &cfg.reply_to)?;
    if !cfg.honeypot.starts_with('_') && !is_valid_field_name(&cfg.honeypot) {
        return Err(ConfigError::invalid(
            at("honeypot"),
            "is not a valid field name",
        ));
    }
    Ok(Form {
        index,
        id: cfg.id.clone(),
        kind: cfg.kind,
        fields,
        email_field,
        origins,
        require_origin: cfg.require_origin,
        redirect_url: cfg.redirect_url.clone(),
        confirmed_message: cfg.confirmed_message.clone().unwrap_or_else(|| {
            if cfg.download_url.is_some() || cfg.download_file.is_some() {
                "Thank you for confirming. Your download is ready.".into()
            } else {
                "Thank you for confirming: you are subscribed.".into()
            }
        }),
        success_message: cfg
            .success_message
            .clone()
            .unwrap_or_else(|| "Thank you! We received your submission.".into()),
        honeypot: cfg.honeypot.clone(),
        min_submit_ms: cfg.min_submit_ms.unwrap_or(min_submit_ms),
        extra_fields: cfg.extra_fields,
        max_extra_fields: cfg.max_extra_fields.min(100),
        delivers_download: cfg.download_url.is_some() || cfg.download_file.is_some(),
        double_opt_in: cfg.double_opt_in,
        personalize_unconfirmed: cfg.personalize_unconfirmed,
        challenge: cfg
            .challenge
            .as_ref()
            .map(crate::challenge::Challenge::from_config)
            .transpose()
            .map_err(|m| ConfigError::invalid(at("challenge"), m))?,
        notify,
        from,
        reply_to,
    })
}
