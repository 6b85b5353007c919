//! Leads in from elsewhere: a CSV file (a Mailchimp or HubSpot export, or any file with an
//! email column) mapped onto one form's fields, each person's consent state kept as the file
//! states it, and what happened to every row reported. Rows go through the ordinary write
//! path in batches, validated as the form validates a submission; nothing is mailed, and
//! imported people count as leads of the form but not as its conversions (their source is
//! [`IMPORT_SOURCE`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use crate::domain::{IdempotencyKey, SpamSignals};
use crate::forms::{parse_submission, Form, ParseContext, RawValue};
use crate::store::{BatchItem, ImportedConsent, ImportedState, LeadStore, StoreError};

pub use crate::domain::IMPORT_SOURCE;

/// Rows written per transaction.
const BATCH: usize = 500;
/// Planner statistics are refreshed after the first batch and then every this many.
const STATS_EVERY: u64 = 20;
/// The longest cell read (a longer one makes its row invalid, before any field's own limit).
const MAX_CELL: usize = 10_000;

/// Where a file came from: which columns mean what, and how a row's consent is told.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Any CSV with a header row: an email column, columns named like the form's fields, and
    /// optionally a `consent` (or `status`) column.
    Csv,
    /// A Mailchimp audience export: `Email Address`, `First Name`, `Last Name`…; the
    /// unsubscribed file (with `UNSUB_TIME`) and the cleaned file (with `CLEAN_TIME`) say so
    /// by their columns; every other member is subscribed.
    Mailchimp,
    /// A HubSpot contacts export: `Email`, `First Name`, `Last Name`, `Company Name`…;
    /// `Unsubscribed from all email` and `Email hard bounce reason` are read; HubSpot states
    /// no consent to marketing mail, so other rows take the import's default (pending unless
    /// told otherwise).
    Hubspot,
}

impl Preset {
    fn describe(self) -> &'static str {
        match self {
            Preset::Csv => "a CSV file",
            Preset::Mailchimp => "a Mailchimp export",
            Preset::Hubspot => "a HubSpot export",
        }
    }
}

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub preset: Preset,
    /// The consent of rows whose file says nothing about it. Only `subscribed` lets them be
    /// mailed, so the default is `pending`.
    pub default_consent: ImportedState,
    /// Form field → column, over what the preset finds by name.
    pub map: Vec<(String, String)>,
    /// The file's name, for the consent ledger ("subscribed per a Mailchimp export (x.csv)").
    pub label: String,
    /// Check every row and report, writing nothing.
    pub dry_run: bool,
}

/// One `FIELD=COLUMN` mapping, as `--map` and the API's `map` take it.
pub fn map_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(f, c)| (f.trim().to_string(), c.trim().to_string()))
        .filter(|(f, c)| !f.is_empty() && !c.is_empty())
        .ok_or_else(|| format!("'{s}' is not FIELD=COLUMN"))
}

/// What happened to one row.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new lead.
    Imported,
    /// Added to a lead that was there already.
    Merged,
    /// Imported before (the same person into the same form): left as it was.
    Unchanged,
    /// Not imported: the address was erased (GDPR) earlier, or appears earlier in the file.
    Skipped,
    /// Not imported: what the row says is not valid (the detail says why).
    Invalid,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Imported,
        Outcome::Merged,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::Merged => "merged",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Invalid => "invalid",
        }
    }
}

/// One row's report. `row` is the line the row starts on; the header is line 1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RowReport {
    pub row: u64,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ImportedState>,
    pub detail: String,
}

/// The whole import.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub rows: u64,
    pub counts: BTreeMap<&'static str, u64>,
    /// Form field → the column it was read from.
    pub columns_used: BTreeMap<String, String>,
    /// Columns nothing was read from.
    pub columns_ignored: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    File(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A column's name as matched: lower case, `_` and `-` as spaces, spaces collapsed.
fn normal(header: &str) -> String {
    header
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
enum Cell {
    Column(usize),
    /// A full name from first and last name columns.
    Joined(usize, usize),
}

/// How a row's consent is read.
#[derive(Debug, Clone)]
enum ConsentRule {
    /// A column of words (`subscribed`, `unsubscribed`, `pending`, `cleaned`, `yes`, `no`…).
    Column(usize),
    /// The whole file has one state (a Mailchimp export file).
    File(ImportedState),
    /// HubSpot's unsubscribe and bounce columns, else the default.
    Hubspot {
        unsubscribed: Option<usize>,
        bounced: Option<usize>,
    },
    Default,
}

/// Which columns mean what, from the header row.
#[derive(Debug, Clone)]
struct Plan {
    email: usize,
    fields: Vec<(String, Cell)>,
    consent: ConsentRule,
    opted_in: Option<usize>,
    used: BTreeMap<String, String>,
    ignored: Vec<String>,
}

/// Names a form field goes by in files, beyond its own name.
fn aliases(field: &str) -> &'static [&'static str] {
    match field {
        "name" => &["name", "full name", "fullname", "contact name"],
        "company" => &["company", "company name", "organization", "organisation"],
        "phone" => &["phone", "phone number", "mobile", "mobile phone number"],
        "job_title" | "title" | "role" => &["job title", "title", "jobtitle"],
        "first_name" => &["first name", "firstname", "fname"],
        "last_name" => &["last name", "lastname", "lname"],
        "message" => &["message", "notes"],
        "website" => &["website", "website url"],
        _ => &[],
    }
}

fn plan(headers: &[String], form: &Form, opts: &ImportOptions) -> Result<Plan, ImportError> {
    let names: Vec<String> = headers.iter().map(|h| normal(h)).collect();
    let find = |candidates: &[&str]| {
        candidates
            .iter()
            .find_map(|c| names.iter().position(|n| n == &normal(c)))
    };
    let mut used = BTreeMap::new();
    let explicit: HashMap<&str, &str> = opts
        .map
        .iter()
        .map(|(f, c)| (f.as_str(), c.as_str()))
        .collect();
    for field in explicit.keys() {
        if form.field(field).is_none() {
            return Err(ImportError::File(format!(
                "the form '{}' has no field '{field}' (its fields: {})",
                form.id,
                form.fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let column = |field: &str, by_name: &[&str]| -> Result<Option<usize>, ImportError> {
        match explicit.get(field) {
            Some(c) => find(&[c]).map(Some).ok_or_else(|| {
                ImportError::File(format!("the file has no column '{c}' (mapped to {field})"))
            }),
            None => Ok(find(by_name)),
        }
    };

    let email_names: &[&str] = match opts.preset {
        Preset::Mailchimp => &["email address", "email"],
        Preset::Hubspot => &["email", "email address"],
        Preset::Csv => &[
            "email",
            "email address",
            "e mail",
            "mail",
            &form.email_field,
        ],
    };
    let email = column(&form.email_field, email_names)?.ok_or_else(|| {
        ImportError::File(format!(
            "no email column: name one '{}' or map it (--map {}=COLUMN)",
            email_names[0], form.email_field
        ))
    })?;
    used.insert(form.email_field.clone(), headers[email].clone());

    let mut fields = Vec::new();
    for def in &form.fields {
        if def.name == form.email_field {
            continue;
        }
        // A ticked box is someone's consent: never guessed from a column's name.
        if def.kind == crate::config::FieldType::Checkbox && !explicit.contains_key(&*def.name) {
            continue;
        }
        let mut by_name: Vec<&str> = vec![def.name.as_str()];
        by_name.extend_from_slice(aliases(&def.name));
        let cell = match column(&def.name, &by_name)? {
            Some(i) => Some(Cell::Column(i)),
            None if def.name == "name" => find(aliases("first_name"))
                .zip(find(aliases("last_name")))
                .map(|(f, l)| Cell::Joined(f, l)),
            None => None,
        };
        match &cell {
            Some(Cell::Column(i)) => {
                used.insert(def.name.clone(), headers[*i].clone());
            }
            Some(Cell::Joined(f, l)) => {
                used.insert(
                    def.name.clone(),
                    format!("{} + {}", headers[*f], headers[*l]),
                );
            }
            None => {}
        }
        if let Some(cell) = cell {
            fields.push((def.name.clone(), cell));
        }
    }

    let has = |n: &str| find(&[n]);
    let consent = match (opts.preset, has("consent").or_else(|| has("status"))) {
        (Preset::Mailchimp, _) if has("unsub time").is_some() => {
            ConsentRule::File(ImportedState::Unsubscribed)
        }
        (Preset::Mailchimp, _) if has("clean time").is_some() => {
            ConsentRule::File(ImportedState::Bounced)
        }
        (Preset::Mailchimp, _) => ConsentRule::File(ImportedState::Subscribed),
        (Preset::Hubspot, _) => ConsentRule::Hubspot {
            unsubscribed: has("unsubscribed from all email"),
            bounced: has("email hard bounce reason"),
        },
        (Preset::Csv, Some(i)) => ConsentRule::Column(i),
        (Preset::Csv, None) => ConsentRule::Default,
    };
    let opted_in = [
        "confirm time",
        "optin time",
        "create date",
        "created at",
        "signed up",
    ]
    .iter()
    .find_map(|n| has(n));

    let mut read: Vec<usize> = vec![email];
    for (_, cell) in &fields {
        match cell {
            Cell::Column(i) => read.push(*i),
            Cell::Joined(f, l) => read.extend([*f, *l]),
        }
    }
    match &consent {
        ConsentRule::Column(i) => read.push(*i),
        ConsentRule::Hubspot {
            unsubscribed,
            bounced,
        } => read.extend(unsubscribed.iter().chain(bounced)),
        _ => {}
    }
    read.extend(opted_in);
    let ignored = headers
        .iter()
        .enumerate()
        .filter(|(i, h)| !read.contains(i) && !h.trim().is_empty())
        .map(|(_, h)| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    Ok(Plan {
        email,
        fields,
        consent,
        opted_in,
        used,
        ignored,
    })
}

/// A consent word as files write it.
fn consent_word(v: &str) -> Option<Option<ImportedState>> {
    Some(Some(match normal(v).as_str() {
        "" => return Some(None),
        "subscribed" | "subscriber" | "yes" | "y" | "true" | "1" | "opted in" | "opt in"
        | "confirmed" | "active" | "consented" => ImportedState::Subscribed,
        "unsubscribed" | "no" | "n" | "false" | "0" | "opted out" | "opt out" | "unsubscribe" => {
            ImportedState::Unsubscribed
        }
        "pending" | "unknown" | "not specified" | "transactional" | "non subscribed" => {
            ImportedState::Pending
        }
        "cleaned" | "bounced" | "bounce" | "hard bounce" => ImportedState::Bounced,
        _ => return None,
    }))
}

fn truthy(v: &str) -> bool {
    matches!(normal(v).as_str(), "true" | "yes" | "y" | "1")
}

/// One row as the write path takes it.
struct Parsed {
    row: u64,
    sub: crate::domain::NewSubmission,
    state: ImportedState,
    note: String,
}

/// Reads `input` and imports every row into `form`, calling `report` for each row in order.
/// Only a file that cannot be read as CSV with a usable header (or a database failure)
/// stops it; every bad row is reported and skipped.
pub async fn import<R: Read>(
    store: &LeadStore,
    form: &Form,
    opts: &ImportOptions,
    input: R,
    now_ms: i64,
    mut report: impl FnMut(RowReport),
) -> Result<Summary, ImportError> {
    // An import brings in people another system already has: it sends nothing, so it tells
    // no webhook either, and it does not move stages (their next activity will).
    let quiet = store.clone().with_events(false);
    let store = &quiet;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| ImportError::File(format!("the file is not CSV: {e}")))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let plan = plan(&headers, form, opts)?;
    // Imported rows pass the form's own checks on each field, but none is required but the
    // address: a list holds what it holds.
    let mut lenient = form.clone();
    for f in &mut lenient.fields {
        f.required &= f.name == form.email_field;
    }
    let mut summary = Summary {
        columns_used: plan.used.clone(),
        columns_ignored: plan.ignored.clone(),
        dry_run: opts.dry_run,
        ..Summary::default()
    };
    let mut tally = |r: RowReport, summary: &mut Summary| {
        summary.rows += 1;
        *summary.counts.entry(r.outcome.as_str()).or_default() += 1;
        report(r);
    };
    // Rows decided before their batch is written wait for it, so the report is in row order.
    let mut early: Vec<RowReport> = Vec::new();
    let mut first_row: HashMap<String, u64> = HashMap::new();
    let mut batch: Vec<Parsed> = Vec::with_capacity(BATCH);
    let mut record = csv::ByteRecord::new();
    let mut batches: u64 = 0;
    let mut row: u64 = 1;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| ImportError::File(format!("row {}: the file is not CSV: {e}", row + 1)));
        let more = match more {
            Ok(m) => m,
            Err(e) if summary.rows == 0 && batch.is_empty() && early.is_empty() => return Err(e),
            Err(e) => {
                // Rows before it are imported; the rest of a broken file is not guessed at.
                early.push(RowReport {
                    row: row + 1,
                    outcome: Outcome::Invalid,
                    lead_id: None,
                    consent: None,
                    detail: format!("{e}; nothing after it was read"),
                });
                false
            }
        };
        if more {
            // The line the row starts on (the header is line 1): where a text editor, and a
            // spreadsheet for files without line breaks inside cells, shows it.
            // The record's own position counts blank lines skipped before it; the reader's
            // position after it (less the record's inner line breaks) does not.
            let breaks: u64 = record
                .iter()
                .map(|c| c.iter().filter(|&&b| b == b'\n').count() as u64)
                .sum();
            let after = reader.position().line().saturating_sub(1 + breaks);
            row = record.position().map_or(row + 1, |p| p.line()).max(after);
            if record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
                continue; // a blank line
            }
            match parse_row(&record, &plan, &lenient, opts, now_ms, store) {
                Ok(p) => match first_row.get(p.sub.email.as_str()) {
                    Some(&first) => early.push(RowReport {
                        row,
                        outcome: Outcome::Skipped,
                        lead_id: None,
                        consent: None,
                        detail: format!("the same address as row {first}, which is kept"),
                    }),
                    None => {
                        first_row.insert(p.sub.email.as_str().to_string(), row);
                        let p = Parsed { row, ..p };
                        batch.push(p);
                    }
                },
                Err(detail) => early.push(RowReport {
                    row,
                    outcome: Outcome::Invalid,
                    lead_id: None,
                    consent: None,
                    detail,
                }),
            }
        }
        if batch.len() >= BATCH || early.len() >= BATCH || !more {
            let mut reports = write_batch(store, opts.dry_run, form, &batch, now_ms).await?;
            if !opts.dry_run && !batch.is_empty() {
                if batches % STATS_EVERY == 0 {
                    store.refresh_planner_stats().await?;
                }
                batches += 1;
            }
            reports.append(&mut early);
            reports.sort_by_key(|r| r.row);
            for r in reports {
                tally(r, &mut summary);
            }
            batch.clear();
        }
        if !more {
            break;
        }
    }
    Ok(summary)
}

fn parse_row(
    record: &csv::ByteRecord,
    plan: &Plan,
    form: &Form,
    opts: &ImportOptions,
    now_ms: i64,
    store: &LeadStore,
) -> Result<Parsed, String> {
    let cell = |i: usize| -> Result<&str, String> {
        let bytes = record.get(i).unwrap_or_default();
        if bytes.len() > MAX_CELL {
            return Err(format!("a cell is longer than {MAX_CELL} bytes"));
        }
        std::str::from_utf8(bytes).map_err(|_| "the row is not UTF-8 text".to_string())
    };
    let mut payload = vec![(
        form.email_field.clone(),
        RawValue::Text(cell(plan.email)?.to_string()),
    )];
    for (field, source) in &plan.fields {
        let value = match source {
            Cell::Column(i) => cell(*i)?.trim().to_string(),
            Cell::Joined(f, l) => format!("{} {}", cell(*f)?.trim(), cell(*l)?.trim())
                .trim()
                .to_string(),
        };
        if !value.is_empty() {
            payload.push((field.clone(), RawValue::Text(value)));
        }
    }
    payload.push(("utm_source".into(), RawValue::Text(IMPORT_SOURCE.into())));
    payload.push((
        "utm_medium".into(),
        RawValue::Text(format!("{:?}", opts.preset).to_lowercase()),
    ));
    let mut sub = parse_submission(
        form,
        payload,
        ParseContext {
            now_ms,
            ..ParseContext::default()
        },
    )
    .map_err(|e| match e {
        crate::forms::SubmissionError::Invalid(errors) => errors
            .iter()
            .map(|(field, msgs)| format!("{field}: {}", msgs.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })?;

    let state = match &plan.consent {
        ConsentRule::File(s) => *s,
        ConsentRule::Default => opts.default_consent,
        ConsentRule::Column(i) => {
            let v = cell(*i)?;
            consent_word(v)
                .ok_or_else(|| {
                    format!(
                        "consent '{}' is not one of subscribed, unsubscribed, pending, bounced",
                        v.chars().take(40).collect::<String>()
                    )
                })?
                .unwrap_or(opts.default_consent)
        }
        ConsentRule::Hubspot {
            unsubscribed,
            bounced,
        } => {
            if unsubscribed.map(cell).transpose()?.is_some_and(truthy) {
                ImportedState::Unsubscribed
            } else if bounced
                .map(cell)
                .transpose()?
                .is_some_and(|v| !v.trim().is_empty())
            {
                ImportedState::Bounced
            } else {
                opts.default_consent
            }
        }
    };
    let opted = plan
        .opted_in
        .map(cell)
        .transpose()?
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| format!(", since {}", v.chars().take(40).collect::<String>()))
        .unwrap_or_default();
    let note = format!(
        "{} per {} ({}){opted}",
        state.as_str(),
        opts.preset.describe(),
        opts.label
    );

    // Imported people are not visitors: no spam signals, no mail, never expiring while they
    // wait; one key per person and form, keyed with the server's secret so no visitor can
    // claim it first.
    sub.spam = SpamSignals::default();
    sub.received_at_ms = now_ms;
    // A ticked box in a file is nobody's act here: consent is the `import` ledger entry.
    sub.consents.clear();
    sub.download_until_ms = None;
    sub.confirmation = match state {
        ImportedState::Pending => crate::domain::Confirmation::Pending {
            expires_at_ms: i64::MAX,
        },
        _ => crate::domain::Confirmation::NotRequired,
    };
    let key = store.suppression_hash(sub.email.as_str());
    sub.idempotency_key = IdempotencyKey::parse(&format!("import:{}", &key[..key.len().min(48)]));
    Ok(Parsed {
        row: 0,
        sub,
        state,
        note,
    })
}

/// Writes one batch (or, in a dry run, says what it would do) and reports each row.
async fn write_batch(
    store: &LeadStore,
    dry_run: bool,
    form: &Form,
    batch: &[Parsed],
    now_ms: i64,
) -> Result<Vec<RowReport>, ImportError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let emails: Vec<String> = batch
        .iter()
        .map(|p| p.sub.email.as_str().to_string())
        .collect();
    let hashes: Vec<String> = emails.iter().map(|e| store.suppression_hash(e)).collect();
    let reasons = store.suppression_reasons(&hashes).await?;
    let existing = store.existing_lead_emails(&emails).await?;
    let mut reports: Vec<Option<RowReport>> = vec![None; batch.len()];
    let mut writes: Vec<usize> = Vec::new();
    for (i, p) in batch.iter().enumerate() {
        if reasons.get(&hashes[i]).map(String::as_str) == Some("erased") {
            reports[i] = Some(RowReport {
                row: p.row,
                outcome: Outcome::Skipped,
                lead_id: None,
                consent: None,
                detail: "this person was erased earlier (GDPR); an import does not bring them back"
                    .into(),
            });
        } else {
            writes.push(i);
        }
    }
    let describe = |i: usize| {
        let p = &batch[i];
        let held = reasons.get(&hashes[i]);
        let mut detail = p.note.clone();
        if let Some(reason) = held {
            detail = format!(
                "{}; already {reason} here, and stays so (only the person can undo that)",
                p.state.as_str()
            );
        } else if p.state == ImportedState::Pending {
            detail.push_str("; not mailed until they confirm");
        }
        let outcome = if existing.contains(&emails[i]) {
            Outcome::Merged
        } else {
            Outcome::Imported
        };
        (outcome, detail)
    };
    if dry_run {
        for &i in &writes {
            let (outcome, detail) = describe(i);
            reports[i] = Some(RowReport {
                row: batch[i].row,
                outcome,
                lead_id: None,
                consent: Some(batch[i].state),
                detail: format!("(dry run) {detail}"),
            });
        }
        return Ok(reports.into_iter().flatten().collect());
    }
    let items: Vec<BatchItem> = writes
        .iter()
        .map(|&i| BatchItem {
            sub: &batch[i].sub,
            messages: &[],
        })
        .collect();
    // The writer connection is held for the batch only: the consent entries below need it
    // (SQLite has one).
    let results = {
        let mut conn = store.write_connection().await?;
        store.record_batch(&mut conn, &items).await?
    };
    let mut consents = Vec::new();
    let mut recorded = Vec::new();
    for (&i, result) in writes.iter().zip(results) {
        let p = &batch[i];
        reports[i] = Some(match result {
            Ok(r) if r.replayed => RowReport {
                row: p.row,
                outcome: Outcome::Unchanged,
                lead_id: Some(r.lead_id),
                consent: None,
                detail: "imported into this form before; left as it was".into(),
            },
            Ok(r) => {
                let (outcome, detail) = describe(i);
                recorded.push((i, r.lead_id.clone(), r.submission_id));
                RowReport {
                    row: p.row,
                    outcome,
                    lead_id: Some(r.lead_id),
                    consent: Some(p.state),
                    detail,
                }
            }
            Err(StoreError::KeyReused) => RowReport {
                row: p.row,
                outcome: Outcome::Unchanged,
                lead_id: None,
                consent: None,
                detail: "imported into this form before with other details; left as it was".into(),
            },
            Err(e) => return Err(e.into()),
        });
    }
    for (i, lead_id, submission_id) in &recorded {
        let p = &batch[*i];
        consents.push(ImportedConsent {
            lead_id,
            submission_id,
            form_id: &form.id,
            email: p.sub.email.as_str(),
            state: p.state,
            note: &p.note,
        });
    }
    store.record_imported_consent(&consents, now_ms).await?;
    Ok(reports.into_iter().flatten().collect())
}

/// The summary in words (the CLI's last line, the upload page's heading).
pub fn describe(s: &Summary) -> String {
    let n = |o: Outcome| s.counts.get(o.as_str()).copied().unwrap_or(0);
    let mut text = format!(
        "{}{} rows: {} new leads, {} added to existing leads, {} unchanged (imported before), \
         {} skipped, {} invalid",
        if s.dry_run {
            "dry run, nothing written: "
        } else {
            ""
        },
        s.rows,
        n(Outcome::Imported),
        n(Outcome::Merged),
        n(Outcome::Unchanged),
        n(Outcome::Skipped),
        n(Outcome::Invalid),
    );
    let read: Vec<String> = s
        .columns_used
        .iter()
        .map(|(field, column)| format!("{field} from {column}"))
        .collect();
    text.push_str(&format!(". Read: {}", read.join(", ")));
    if !s.columns_ignored.is_empty() {
        text.push_str(&format!(". Not read: {}", s.columns_ignored.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_loosely() {
        assert_eq!(normal("\u{feff}Email_Address "), "email address");
        assert_eq!(normal("First-Name"), "first name");
    }

    #[test]
    fn consent_words_are_read_and_unknown_ones_refused() {
        assert_eq!(
            consent_word("Subscribed"),
            Some(Some(ImportedState::Subscribed))
        );
        assert_eq!(
            consent_word("opted_out"),
            Some(Some(ImportedState::Unsubscribed))
        );
        assert_eq!(consent_word("cleaned"), Some(Some(ImportedState::Bounced)));
        assert_eq!(consent_word(" "), Some(None));
        assert_eq!(consent_word("maybe"), None);
    }
}
