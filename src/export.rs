//! Leads as JSON (admin API), JSON lines and CSV (`inlet leads export`).

use std::io::Write;

use chrono::{DateTime, SecondsFormat};
use serde_json::{json, Value};

use crate::domain::Attribution;
use crate::forms::FormRegistry;
use crate::store::{LeadQuery, LeadRecord, LeadStatus, LeadStore, StoreError, SubmissionRecord};

pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn submission_json(s: &SubmissionRecord) -> Value {
    json!({
        "id": s.id,
        "lead_id": s.lead_id,
        "form_id": s.form_id,
        "email": s.email,
        "fields": s.fields,
        "extra": s.extra,
        "spam": s.spam,
        "quarantined": s.spam,
        "spam_reason": s.spam_reason,
        "spam_score": s.spam_score,
        "spam_signals": s.spam_signals,
        "restored_at": s.restored_at_ms.map(rfc3339),
        "attribution": s.attribution,
        "client_ip": s.client_ip,
        "created_at": rfc3339(s.created_at_ms),
        "confirmation": s.confirmation,
        "confirmed_at": s.confirmed_at_ms.map(rfc3339),
    })
}

pub fn lead_json(l: &LeadRecord, status: Option<LeadStatus>) -> Value {
    json!({
        "id": l.id,
        "email": l.email,
        "status": status.map(LeadStatus::as_str),
        "created_at": rfc3339(l.created_at_ms),
        "updated_at": rfc3339(l.updated_at_ms),
        "submission_count": l.submission_count,
        "latest_submission": submission_json(&l.latest_submission),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write the export: {0}")]
    Csv(#[from] csv::Error),
}

/// A spreadsheet must never execute a cell: values that start like a formula are prefixed
/// with `'` (OWASP's CSV-injection advice).
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

const FIXED: [&str; 9] = [
    "lead_id",
    "email",
    "status",
    "confirmed_at",
    "lead_created_at",
    "lead_updated_at",
    "submission_count",
    "form_id",
    "submitted_at",
];

/// Where an export's bytes go, a page (up to 500 leads) at a time: a slow reader holds the
/// export back instead of growing memory.
pub trait ExportSink {
    fn emit(
        &mut self,
        bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// A blocking writer (stdout for `inlet leads export`).
pub struct WriteSink<W: Write + Send>(pub W);

impl<W: Write + Send> ExportSink for WriteSink<W> {
    fn emit(
        &mut self,
        bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        let result = self.0.write_all(&bytes).and_then(|()| self.0.flush());
        std::future::ready(result)
    }
}

/// A bounded channel to a streamed HTTP answer (the console's CSV export).
impl ExportSink for tokio::sync::mpsc::Sender<Vec<u8>> {
    fn emit(
        &mut self,
        bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        let tx = self.clone();
        async move {
            tx.send(bytes).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader went away")
            })
        }
    }
}

/// Writes every lead matching `filter` (form, dates, address prefix; not quarantined) with its
/// latest submission and its status, page by page (memory stays flat); with `statuses`, only
/// leads in one of them (`quarantined` reaches the quarantined ones).
pub async fn export_leads(
    store: &LeadStore,
    forms: &FormRegistry,
    format: ExportFormat,
    filter: &LeadQuery,
    statuses: &[LeadStatus],
    mut sink: impl ExportSink,
) -> Result<u64, ExportError> {
    // One column per declared field across the forms, in config order, email excluded.
    let mut field_columns: Vec<String> = Vec::new();
    for f in forms.all() {
        for d in &f.fields {
            if d.name != f.email_field && !field_columns.contains(&d.name) {
                field_columns.push(d.name.clone());
            }
        }
    }
    if format == ExportFormat::Csv {
        let header: Vec<&str> = FIXED
            .iter()
            .copied()
            .chain(field_columns.iter().map(String::as_str))
            .chain(
                Attribution::default()
                    .columns()
                    .iter()
                    .map(|(name, _)| *name),
            )
            .chain(["extra"])
            .collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header)?;
        sink.emit(w.into_inner().map_err(|e| e.into_error())?)
            .await?;
    }
    let quarantined = statuses.contains(&LeadStatus::Quarantined);
    let others = statuses.is_empty() || statuses.iter().any(|s| *s != LeadStatus::Quarantined);
    let passes = [false, true]
        .into_iter()
        .filter(|q| if *q { quarantined } else { others });
    let mut count = 0u64;
    for pass in passes {
        let mut query = LeadQuery {
            quarantined: pass,
            limit: 500,
            after: None,
            ..filter.clone()
        };
        loop {
            let page = store.list_leads(&query).await?;
            let status_of = store.lead_statuses(&page.items).await?;
            let mut csv_out = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            let mut jsonl_out = Vec::new();
            for lead in &page.items {
                let status = status_of
                    .get(&lead.id)
                    .copied()
                    .unwrap_or(LeadStatus::Active);
                if !statuses.is_empty() && !statuses.contains(&status) {
                    continue;
                }
                count += 1;
                match format {
                    ExportFormat::Csv => {
                        let row = csv_row(lead, status, &field_columns);
                        csv_out.write_record(row.iter().map(|c| neutralise(c)))?;
                    }
                    ExportFormat::Jsonl => {
                        serde_json::to_writer(&mut jsonl_out, &lead_json(lead, Some(status)))
                            .map_err(std::io::Error::from)?;
                        jsonl_out.push(b'\n');
                    }
                }
            }
            let bytes = match format {
                ExportFormat::Csv => csv_out.into_inner().map_err(|e| e.into_error())?,
                ExportFormat::Jsonl => jsonl_out,
            };
            if !bytes.is_empty() {
                sink.emit(bytes).await?;
            }
            match page
                .next_cursor
                .as_deref()
                .and_then(crate::store::Cursor::parse)
            {
                Some(c) => query.after = Some(c),
                None => break,
            }
        }
    }
    Ok(count)
}

fn csv_row(lead: &LeadRecord, status: LeadStatus, field_columns: &[String]) -> Vec<String> {
    let s = &lead.latest_submission;
    let a = &s.attribution;
    let mut row = vec![
        lead.id.clone(),
        lead.email.clone(),
        status.as_str().to_string(),
        s.confirmed_at_ms.map(rfc3339).unwrap_or_default(),
        rfc3339(lead.created_at_ms),
        rfc3339(lead.updated_at_ms),
        lead.submission_count.to_string(),
        s.form_id.clone(),
        rfc3339(s.created_at_ms),
    ];
    row.extend(
        field_columns
            .iter()
            .map(|c| s.fields.get(c).map(|v| v.as_text()).unwrap_or_default()),
    );
    row.extend(
        a.columns()
            .iter()
            .map(|(_, v)| v.unwrap_or_default().to_string()),
    );
    row.push(if s.extra.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&s.extra).unwrap_or_default()
    });
    row
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn formulas_are_neutralised() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralise(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(neutralise("Ann"), "Ann");
    }
}
