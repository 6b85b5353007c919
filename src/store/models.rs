//! What the store hands out and takes in, besides `NewSubmission`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{Attribution, FieldValue, NewOutboxMessage, NewSubmission};

/// The outcome of recording a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub submission_id: String,
    pub lead_id: String,
    /// True when an earlier submission with the same idempotency key was returned instead.
    pub replayed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmissionRecord {
    pub id: String,
    pub lead_id: String,
    pub form_id: String,
    pub email: String,
    pub fields: BTreeMap<String, FieldValue>,
    pub extra: BTreeMap<String, String>,
    /// Quarantined: strong evidence of spam (stored, hidden from leads and exports, sent
    /// nothing) until restored.
    pub spam: bool,
    /// Why it is quarantined (its signals, e.g. `too_fast+links`).
    pub spam_reason: Option<String>,
    /// Points of every spam signal it showed, quarantined or not (see `domain::spam`).
    pub spam_score: Option<i64>,
    pub spam_signals: Option<String>,
    /// When it was taken out of quarantine.
    pub restored_at_ms: Option<i64>,
    pub attribution: Attribution,
    pub client_ip: Option<String>,
    pub created_at_ms: i64,
    /// Double opt-in state: `none` (not required), `pending` or `confirmed`.
    pub confirmation: String,
    pub confirmed_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeadRecord {
    pub id: String,
    pub email: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub submission_count: i64,
    /// The newest non-spam submission (matching the query's filters).
    pub latest_submission: SubmissionRecord,
}

/// Keyset pagination position: `(created_at, id)` of the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (ms, id) = s.split_once('_')?;
        let created_at_ms = ms.parse().ok()?;
        let ok_id = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        ok_id.then(|| Cursor {
            created_at_ms,
            id: id.to_string(),
        })
    }

    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at_ms, self.id)
    }
}

#[derive(Debug, Clone, Default)]
pub struct LeadQuery {
    /// Only leads with a (non-spam) submission on this form.
    pub form_id: Option<String>,
    /// Only leads with a submission at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Only leads with a submission before this time (ms).
    pub until_ms: Option<i64>,
    /// Quarantined leads (every submission quarantined) instead of the others.
    pub quarantined: bool,
    /// Only leads whose (normalised) address starts with this (a range on the email index).
    pub email_prefix: Option<String>,
    /// With `email_prefix`: also leads who typed a name or company starting with this
    /// ([`crate::domain::search_key`] of it; ranges on the submissions' key indexes).
    pub name_prefix: Option<String>,
    /// Only leads with a submission from this campaign (`utm_campaign`, as reports group it).
    pub campaign: Option<String>,
    /// Only leads with a submission from this source (as reports group it: `utm_source`, else
    /// the referring host, else `direct`).
    pub source: Option<String>,
    /// Newest lead first (the console); else oldest first (exports, the admin API).
    pub newest_first: bool,
    pub after: Option<Cursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct SubmissionQuery {
    pub form_id: Option<String>,
    pub lead_id: Option<String>,
    /// `Some(true)`: only spam; `Some(false)`: only non-spam; `None`: both.
    pub spam: Option<bool>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One submission of a batch, with the messages it implies.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    pub sub: &'a NewSubmission,
    pub messages: &'a [NewOutboxMessage],
}
