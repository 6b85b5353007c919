//! A raw payload parsed against a form into a [`NewSubmission`], collecting *every* field
//! error at once so the embed script can mark each bad field.

use std::collections::BTreeMap;

use super::{Form, RawPayload, RawValue};
use crate::config::{ExtraFields, FieldType};
use crate::domain::{
    clean_lossy, multi_line, single_line, Attribution, ClientIp, ConsentGiven, EmailAddress,
    FieldError, FieldValue, IdempotencyKey, NewSubmission, SpamSignal, SpamSignals,
    ATTRIBUTION_KEYS,
};
use crate::error::FieldErrors;

/// Click ids kept with the attribution.
const CLICK_IDS: [&str; 3] = ["gclid", "fbclid", "msclkid"];
/// Structured first/last-touch attribution sent by the embed script (JSON text).
const TOUCH_KEYS: [&str; 2] = ["first_touch", "last_touch"];

/// What the request adds to the payload.
#[derive(Debug, Clone, Default)]
pub struct ParseContext {
    pub now_ms: i64,
    pub client_ip: Option<ClientIp>,
    pub user_agent: Option<String>,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_header: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmissionError {
    #[error("some fields are not valid")]
    Invalid(FieldErrors),
    #[error("too many fields")]
    TooManyFields { max: usize },
    #[error("invalid idempotency key")]
    BadIdempotencyKey,
}

pub fn parse_submission(
    form: &Form,
    payload: RawPayload,
    ctx: ParseContext,
) -> Result<NewSubmission, SubmissionError> {
    let mut errors: FieldErrors = BTreeMap::new();
    let add = |errors: &mut FieldErrors, name: &str, e: FieldError| {
        errors
            .entry(name.to_string())
            .or_default()
            .push(e.to_string());
    };

    let mut seen: BTreeMap<String, RawValue> = BTreeMap::new();
    let mut attribution = Attribution::default();
    let mut extra: BTreeMap<String, String> = BTreeMap::new();
    let mut honeypot_filled = false;
    let mut elapsed_ms: Option<u64> = None;
    let mut loaded_at: Option<i64> = None;
    let mut idem_field: Option<String> = None;

    for (key, value) in payload {
        if key == form.honeypot {
            honeypot_filled |= !matches!(&value, RawValue::Text(s) if s.trim().is_empty())
                && !matches!(value, RawValue::Null | RawValue::Bool(false));
            continue;
        }
        match key.as_str() {
            "_idem" => {
                idem_field = scalar_text(&value);
                continue;
            }
            "_elapsed_ms" => {
                elapsed_ms = scalar_text(&value).and_then(|s| s.trim().parse().ok());
                continue;
            }
            "_loaded_at" => {
                loaded_at = scalar_text(&value).and_then(|s| s.trim().parse().ok());
                continue;
            }
            _ => {}
        }
        if ATTRIBUTION_KEYS.contains(&key.as_str()) || CLICK_IDS.contains(&key.as_str()) {
            let max = if key == "referrer" || key == "landing_page" {
                2048
            } else {
                300
            };
            if let Some(v) = scalar_text(&value).and_then(|s| clean_lossy(&s, max)) {
                attribution.set(&key, v);
            }
            continue;
        }
        if TOUCH_KEYS.contains(&key.as_str()) {
            if let Some(v) = scalar_text(&value).and_then(|s| clean_lossy(&s, 4096)) {
                attribution.set(&key, v);
            }
            continue;
        }
        if key.starts_with('_') {
            // Reserved for Inlet's own use; unknown ones are ignored, never stored.
            continue;
        }
        if form.field(&key).is_some() {
            match seen.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    add(&mut errors, e.key(), FieldError::Duplicate);
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(value);
                }
            }
            continue;
        }
        // Not a field of this form.
        match form.extra_fields {
            ExtraFields::Reject => add(&mut errors, &key, FieldError::BadName),
            ExtraFields::Keep => {
                if !super::is_valid_field_name(&key) {
                    add(&mut errors, "_extra", FieldError::BadName);
                    continue;
                }
                if extra.contains_key(&key) {
                    add(&mut errors, &key, FieldError::Duplicate);
                    continue;
                }
                if extra.len() >= form.max_extra_fields {
                    return Err(SubmissionError::TooManyFields {
                        max: form.fields.len() + form.max_extra_fields,
                    });
                }
                match scalar_text(&value).map(|s| multi_line(&s, 2000)) {
                    Some(Ok(Some(v))) => {
                        extra.insert(key, v);
                    }
                    Some(Ok(None)) => {}
                    Some(Err(e)) => add(&mut errors, &key, e),
                    None => add(&mut errors, &key, FieldError::NotText),
                }
            }
        }
    }

    let mut email: Option<EmailAddress> = None;
    let mut fields: BTreeMap<String, FieldValue> = BTreeMap::new();
    for def in &form.fields {
        let raw = seen.remove(&def.name);
        if def.kind == FieldType::Checkbox {
            match raw.as_ref().map(checkbox_value).unwrap_or(Ok(false)) {
                Ok(checked) => {
                    if def.required && !checked {
                        add(&mut errors, &def.name, FieldError::MustBeChecked);
                    }
                    fields.insert(def.name.clone(), FieldValue::Bool(checked));
                }
                Err(e) => add(&mut errors, &def.name, e),
            }
            continue;
        }
        let text = match raw {
            None | Some(RawValue::Null) => None,
            Some(RawValue::Text(s)) => Some(s),
            Some(RawValue::Number(n)) if def.kind != FieldType::Email => Some(n),
            Some(_) => {
                add(&mut errors, &def.name, FieldError::NotText);
                continue;
            }
        };
        match parse_field(def, text.as_deref()) {
            Ok(None) if def.required => add(&mut errors, &def.name, FieldError::Required),
            Ok(None) => {}
            Ok(Some(Parsed::Email(e))) => email = Some(e),
            Ok(Some(Parsed::Text(t))) => {
                fields.insert(def.name.clone(), FieldValue::Text(t));
            }
            Err(e) => add(&mut errors, &def.name, e),
        }
    }

    let idempotency_key = match (ctx.idempotency_header.as_deref(), idem_field.as_deref()) {
        (Some(h), Some(f)) if h != f => return Err(SubmissionError::BadIdempotencyKey),
        (Some(k), _) | (None, Some(k)) => {
            Some(IdempotencyKey::parse(k).ok_or(SubmissionError::BadIdempotencyKey)?)
        }
        (None, None) => None,
    };

    if !errors.is_empty() {
        return Err(SubmissionError::Invalid(errors));
    }
    let Some(email) = email else {
        // Unreachable with a valid form (its email field is required), kept total anyway.
        let mut errors = BTreeMap::new();
        add(&mut errors, &form.email_field, FieldError::Required);
        return Err(SubmissionError::Invalid(errors));
    };

    let elapsed = elapsed_ms.or_else(|| {
        loaded_at
            .filter(|&t| t > 0 && t <= ctx.now_ms)
            .and_then(|t| u64::try_from(ctx.now_ms - t).ok())
    });
    let mut spam = SpamSignals::default();
    if honeypot_filled {
        spam.add(SpamSignal::Honeypot);
    }
    match elapsed {
        Some(e) if e < form.min_submit_ms / 4 => spam.add(SpamSignal::VeryFast),
        Some(e) if e < form.min_submit_ms => spam.add(SpamSignal::TooFast),
        _ => {}
    }
    if links_where_people_write_none(&fields) {
        spam.add(SpamSignal::Links);
    }
    attribution.user_agent = ctx
        .user_agent
        .as_deref()
        .and_then(|ua| clean_lossy(ua, 512));

    let consents = form
        .fields
        .iter()
        .filter(|d| d.kind == FieldType::Checkbox)
        .filter(|d| fields.get(&d.name) == Some(&FieldValue::Bool(true)))
        .map(|d| ConsentGiven {
            field: d.name.clone(),
            text: d.label.clone(),
            version: crate::consent::text_version(&d.label),
        })
        .collect();

    Ok(NewSubmission {
        consents,
        confirmation: crate::domain::Confirmation::NotRequired,
        download_until_ms: None,
        form_id: form.id.clone(),
        email,
        fields,
        extra,
        attribution,
        client_ip: ctx.client_ip,
        spam,
        idempotency_key,
        received_at_ms: ctx.now_ms,
    })
}

/// A link in a name-like field (people do not put URLs in their name or company), or three or
/// more links across the fields.
fn links_where_people_write_none(fields: &BTreeMap<String, FieldValue>) -> bool {
    let mut total = 0;
    for (name, value) in fields {
        let FieldValue::Text(text) = value else {
            continue;
        };
        let links = crate::domain::count_links(text);
        let name_like =
            ["name", "first_name", "last_name", "company", "job_title"].contains(&name.as_str());
        if name_like && links > 0 {
            return true;
        }
        total += links;
    }
    total >= 3
}

enum Parsed {
    Email(EmailAddress),
    Text(String),
}

fn parse_field(def: &super::FieldDef, raw: Option<&str>) -> Result<Option<Parsed>, FieldError> {
    let Some(raw) = raw else { return Ok(None) };
    let max = def.max_length;
    let parsed = match def.kind {
        FieldType::Email => {
            let Some(s) = single_line(raw, max)? else {
                return Ok(None);
            };
            Parsed::Email(EmailAddress::parse(&s)?)
        }
        FieldType::Textarea => match multi_line(raw, max)? {
            Some(s) => Parsed::Text(s),
            None => return Ok(None),
        },
        FieldType::Text | FieldType::Hidden => match single_line(raw, max)? {
            Some(s) => Parsed::Text(s),
            None => return Ok(None),
        },
        FieldType::Tel => match single_line(raw, max)? {
            Some(s) => Parsed::Text(phone(s)?),
            None => return Ok(None),
        },
        FieldType::Url => match single_line(raw, max)? {
            Some(s) => {
                let u = url::Url::parse(&s).map_err(|_| FieldError::InvalidUrl)?;
                if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                    return Err(FieldError::InvalidUrl);
                }
                Parsed::Text(u.to_string())
            }
            None => return Ok(None),
        },
        FieldType::Select => match single_line(raw, max)? {
            Some(s) if def.options.contains(&s) => Parsed::Text(s),
            Some(_) => return Err(FieldError::NotAnOption),
            None => return Ok(None),
        },
        FieldType::Checkbox => return Err(FieldError::NotBoolean),
    };
    Ok(Some(parsed))
}

/// Digits with the usual punctuation; 5 to 20 digits.
fn phone(s: String) -> Result<String, FieldError> {
    let ok_chars = s.chars().enumerate().all(|(i, c)| {
        c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.' | '/') || (c == '+' && i == 0)
    });
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if ok_chars && (5..=20).contains(&digits) {
        Ok(s)
    } else {
        Err(FieldError::InvalidPhone)
    }
}

fn checkbox_value(v: &RawValue) -> Result<bool, FieldError> {
    match v {
        RawValue::Bool(b) => Ok(*b),
        RawValue::Null => Ok(false),
        RawValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok(true),
            "" | "off" | "false" | "0" | "no" => Ok(false),
            _ => Err(FieldError::NotBoolean),
        },
        RawValue::Number(n) if n == "1" || n == "0" => Ok(n == "1"),
        _ => Err(FieldError::NotBoolean),
    }
}

fn scalar_text(v: &RawValue) -> Option<String> {
    match v {
        RawValue::Text(s) | RawValue::Number(s) => Some(s.clone()),
        RawValue::Bool(b) => Some(b.to_string()),
        RawValue::Null | RawValue::Composite => None,
    }
}
