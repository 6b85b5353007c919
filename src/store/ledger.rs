//! The consent ledger: one row per consent event (a checked box, a confirmation, an
//! unsubscribe, a resubscribe), only ever added; and what a batch adds to it.

use uuid::Uuid;

use super::batch::Insert;
use super::downloads::download_insert;
use super::models::BatchItem;

/// The batch's consent checkboxes and download links, for its transaction.
pub(super) fn batch_extras<'a>(
    items: &[BatchItem<'a>],
    writes: &[usize],
    rows: &'a [(String, String)],
) -> [Insert<'a>; 2] {
    let mut consents: Vec<ConsentRow<'a>> = Vec::new();
    let mut downloads = download_insert();
    for (&i, (submission_id, lead_id)) in writes.iter().zip(rows) {
        let sub = items[i].sub;
        if sub.quarantined() {
            continue; // a bot's ticked box is not anyone's consent
        }
        for c in &sub.consents {
            consents.push(ConsentRow {
                lead_id,
                submission_id: Some(submission_id),
                form_id: Some(&sub.form_id),
                kind: "checkbox",
                field: Some(&c.field),
                text: Some(&c.text),
                version: Some(&c.version),
                client_ip: sub.client_ip.as_ref().map(|ip| ip.as_str()),
                user_agent: sub.attribution.user_agent.as_deref(),
                at_ms: sub.received_at_ms,
            });
        }
        if let Some(until) = sub.download_until_ms {
            downloads.row([
                submission_id.as_str().into(),
                lead_id.as_str().into(),
                sub.form_id.as_str().into(),
                sub.received_at_ms.into(),
                until.into(),
            ]);
        }
    }
    [consent_insert(&consents), downloads]
}

/// One consent ledger entry.
pub struct ConsentRow<'a> {
    pub lead_id: &'a str,
    pub submission_id: Option<&'a str>,
    pub form_id: Option<&'a str>,
    /// `checkbox`, `double_opt_in`, `unsubscribe` or `resubscribe`.
    pub kind: &'a str,
    pub field: Option<&'a str>,
    pub text: Option<&'a str>,
    pub version: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub at_ms: i64,
}

impl<'a> ConsentRow<'a> {
    /// An event a person caused through a link (confirm, unsubscribe), as `actor` allows it to
    /// be kept; no submission, form or checkbox text.
    pub(super) fn by(actor: &'a Actor, lead_id: &'a str, kind: &'a str, at_ms: i64) -> Self {
        ConsentRow {
            lead_id,
            submission_id: None,
            form_id: None,
            kind,
            field: None,
            text: None,
            version: None,
            client_ip: actor.client_ip.as_deref(),
            user_agent: actor.user_agent.as_deref(),
            at_ms,
        }
    }
}

/// Ledger entries as one multi-row insert.
pub(super) fn consent_insert<'a>(rows: &[ConsentRow<'a>]) -> Insert<'a> {
    let mut insert = Insert::new(
        "consents",
        &[
            "id",
            "lead_id",
            "submission_id",
            "form_id",
            "kind",
            "field",
            "text",
            "text_version",
            "client_ip",
            "user_agent",
            "created_at",
        ],
        "",
    );
    for c in rows {
        insert.row([
            Uuid::now_v7().to_string().into(),
            c.lead_id.into(),
            c.submission_id.into(),
            c.form_id.into(),
            c.kind.into(),
            c.field.into(),
            c.text.into(),
            c.version.into(),
            c.client_ip.into(),
            c.user_agent.into(),
            c.at_ms.into(),
        ]);
    }
    insert
}

/// Who confirmed or unsubscribed, as the privacy setting allows it to be kept.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}
