//! Consent and delivery storage: the consent ledger, double opt-in confirmation, download
//! links, the suppression list, GDPR export and erasure, and retention.

use std::collections::HashSet;

use serde_json::{json, Value};
use sqlx::Any;
use uuid::Uuid;

use super::batch::{self, Frame, Insert};
use super::leads::{split, BatchItem, Sql};
use super::outbox::{outbox_insert, OutboxRow};
use super::{get, Backend, LeadStore, StoreError};
use crate::domain::NewOutboxMessage;

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
        if sub.spam.is_some() {
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

fn download_insert<'a>() -> Insert<'a> {
    Insert::new(
        "downloads",
        &["id", "lead_id", "form_id", "created_at", "expires_at"],
        "",
    )
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

/// Ledger entries as one multi-row insert.
fn consent_insert<'a>(rows: &[ConsentRow<'a>]) -> Insert<'a> {
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

/// A double opt-in submission as a confirmation link finds it.
#[derive(Debug, Clone)]
pub struct PendingSubmission {
    pub submission_id: String,
    pub lead_id: String,
    pub form_id: String,
    pub email: String,
    /// `pending`, `confirmed` (or `none`: not a double opt-in submission).
    pub state: String,
    pub expires_at_ms: Option<i64>,
}

/// What following a confirmation link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed,
    /// The link was used before: nothing happens twice.
    AlreadyConfirmed,
    Expired,
    NotFound,
}

/// Who confirmed or unsubscribed, as the privacy setting allows it to be kept.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DownloadRecord {
    pub lead_id: String,
    pub form_id: String,
    pub expires_at_ms: i64,
    pub download_count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendOutcome {
    /// A fresh link is on its way.
    Queued,
    /// One was sent within the window already.
    TooSoon,
    NotFound,
}

/// What the retention job removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub spam_submissions_deleted: u64,
    pub unconfirmed_submissions_deleted: u64,
    pub leads_deleted: u64,
    pub ips_cleared: u64,
}

/// Which submissions a deletion removes.
enum Doomed {
    Lead(String),
    SpamBefore(i64),
    UnconfirmedBefore(i64),
}

impl Doomed {
    fn condition(&self, sql: &mut Sql) {
        match self {
            Doomed::Lead(id) => {
                sql.push("lead_id = ").bind_text(id);
            }
            Doomed::SpamBefore(t) => {
                sql.push("spam_reason IS NOT NULL AND created_at < ")
                    .bind_int(*t);
            }
            Doomed::UnconfirmedBefore(t) => {
                sql.push("confirmation = 'pending' AND confirm_expires_at < ")
                    .bind_int(*t);
            }
        }
    }
}

/// Which of these address hashes are suppressed: primary-key lookups.
pub(super) fn suppression_lookup<'a>(hashes: impl IntoIterator<Item = &'a str>) -> Sql {
    let mut sql = Sql::new("SELECT email_hash FROM suppressions WHERE email_hash IN (".into());
    sql.bind_list(hashes);
    sql.push(")");
    sql
}

impl LeadStore {
    /// The signing key generated for this database (created on first use, shared by every
    /// instance on it).
    pub async fn generated_signing_key(&self) -> Result<String, StoreError> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        sqlx::query(
            "INSERT INTO signing_keys (id, secret, created_at) VALUES ('generated', $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(hex::encode(bytes))
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&self.writer)
        .await?;
        let row = sqlx::query("SELECT secret FROM signing_keys WHERE id = 'generated'")
            .fetch_one(&self.writer)
            .await?;
        get(&row, 0)
    }

    pub async fn pending_submission(
        &self,
        submission_id: &str,
    ) -> Result<Option<PendingSubmission>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        fetch_pending(&mut conn, submission_id).await
    }

    /// Confirms a pending submission: records the confirmation in the ledger, lifts a
    /// suppression (confirming is an explicit opt-in again), creates the download link and
    /// queues `messages`, all in one transaction. Idempotent: a second call changes nothing.
    pub async fn confirm(
        &self,
        submission_id: &str,
        now_ms: i64,
        actor: &Actor,
        messages: &[NewOutboxMessage],
        download_until_ms: Option<i64>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT lead_id, form_id, email, confirmation, confirm_expires_at \
             FROM submissions WHERE id = $1",
        )
        .bind(submission_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ConfirmOutcome::NotFound);
        };
        let (lead_id, form_id, email, state, expires): (
            String,
            String,
            String,
            String,
            Option<i64>,
        ) = (
            get(&row, 0)?,
            get(&row, 1)?,
            get(&row, 2)?,
            get(&row, 3)?,
            get(&row, 4)?,
        );
        match state.as_str() {
            "confirmed" => return Ok(ConfirmOutcome::AlreadyConfirmed),
            "pending" if expires.is_some_and(|e| e <= now_ms) => {
                return Ok(ConfirmOutcome::Expired)
            }
            "pending" => {}
            _ => return Ok(ConfirmOutcome::NotFound),
        }
        let done = sqlx::query(
            "UPDATE submissions SET confirmation = 'confirmed', confirmed_at = $1 \
             WHERE id = $2 AND confirmation = 'pending'",
        )
        .bind(now_ms)
        .bind(submission_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(ConfirmOutcome::AlreadyConfirmed);
        }
        let mut ledger = vec![ConsentRow {
            lead_id: &lead_id,
            submission_id: Some(submission_id),
            form_id: Some(&form_id),
            kind: "double_opt_in",
            field: None,
            text: None,
            version: None,
            client_ip: actor.client_ip.as_deref(),
            user_agent: actor.user_agent.as_deref(),
            at_ms: now_ms,
        }];
        let lifted = sqlx::query("DELETE FROM suppressions WHERE email_hash = $1")
            .bind(crate::consent::suppression_hash(&email))
            .execute(&mut *tx)
            .await?;
        if lifted.rows_affected() > 0 {
            ledger.push(ConsentRow {
                kind: "resubscribe",
                ..ledger[0]
            });
        }
        if let Some(until) = download_until_ms {
            sqlx::query(
                "INSERT INTO downloads (id, lead_id, form_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(submission_id)
            .bind(&lead_id)
            .bind(&form_id)
            .bind(now_ms)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        }
        let rows: Vec<OutboxRow<'_>> = messages
            .iter()
            .map(|m| OutboxRow {
                lead_id: &lead_id,
                submission_id,
                form_id: &form_id,
                message: m,
                now_ms,
                skipped: None,
            })
            .collect();
        batch::run(
            &mut tx,
            self.backend,
            &[consent_insert(&ledger), outbox_insert(rows)],
            Frame::Plain,
        )
        .await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Confirmed)
    }

    pub async fn download(&self, id: &str) -> Result<Option<DownloadRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT lead_id, form_id, expires_at, download_count FROM downloads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(DownloadRecord {
                lead_id: get(&r, 0)?,
                form_id: get(&r, 1)?,
                expires_at_ms: get(&r, 2)?,
                download_count: get(&r, 3)?,
            })
        })
        .transpose()
    }

    /// Counts one download of `id`.
    pub async fn record_download(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE downloads SET download_count = download_count + 1, last_download_at = $1 \
             WHERE id = $2",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// From an expired link: extends the download to `until_ms` and mails a fresh link to the
    /// lead (never to whoever clicked), at most once per `window_ms`.
    pub async fn resend_download(
        &self,
        id: &str,
        now_ms: i64,
        until_ms: i64,
        window_ms: i64,
        max_attempts: u32,
    ) -> Result<ResendOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT d.lead_id, d.form_id, d.resent_at, l.email FROM downloads d \
             JOIN leads l ON l.id = d.lead_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ResendOutcome::NotFound);
        };
        let (lead_id, form_id, resent, email): (String, String, Option<i64>, String) =
            (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
        if resent.is_some_and(|t| t > now_ms - window_ms) {
            return Ok(ResendOutcome::TooSoon);
        }
        let recipient = crate::domain::EmailAddress::parse(&email)
            .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?;
        sqlx::query("UPDATE downloads SET expires_at = $1, resent_at = $2 WHERE id = $3")
            .bind(until_ms)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let message = NewOutboxMessage {
            kind: crate::domain::MessageKind::DownloadLink,
            recipient,
            max_attempts,
            dedupe_window_ms: None,
        };
        let row = outbox_insert(vec![OutboxRow {
            lead_id: &lead_id,
            submission_id: id,
            form_id: &form_id,
            message: &message,
            now_ms,
            skipped: None,
        }]);
        batch::run(&mut tx, self.backend, &[row], Frame::Plain).await?;
        tx.commit().await?;
        Ok(ResendOutcome::Queued)
    }

    /// Suppresses the lead's address and records the withdrawal in the ledger. `None`: no
    /// such lead; `Some(false)`: it was suppressed already.
    pub async fn unsubscribe(
        &self,
        lead_id: &str,
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT email FROM leads WHERE id = $1")
            .bind(lead_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let email: String = get(&row, 0)?;
        let added = sqlx::query(
            "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, 'unsubscribed', $2) \
             ON CONFLICT (email_hash) DO NOTHING",
        )
        .bind(crate::consent::suppression_hash(&email))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if added {
            let row = ConsentRow {
                lead_id,
                submission_id: None,
                form_id: None,
                kind: "unsubscribe",
                field: None,
                text: None,
                version: None,
                client_ip: actor.client_ip.as_deref(),
                user_agent: actor.user_agent.as_deref(),
                at_ms: now_ms,
            };
            batch::run(
                &mut tx,
                self.backend,
                &[consent_insert(&[row])],
                Frame::Plain,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(added))
    }

    /// Which of these suppression hashes are on the list.
    pub async fn suppressed_among(&self, hashes: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for chunk in split(hashes) {
            for r in suppression_lookup(chunk.iter().map(String::as_str))
                .query()
                .persistent(false)
                .fetch_all(&self.writer)
                .await?
            {
                found.insert(get(&r, 0)?);
            }
        }
        Ok(found)
    }

    pub async fn lead_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT id FROM leads WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| get(&r, 0)).transpose()
    }

    /// Everything held about one person (GDPR access): the lead, every submission (spam
    /// included), the consent ledger, messages, downloads and suppression status.
    pub async fn export_lead(&self, lead_id: &str) -> Result<Option<Value>, StoreError> {
        let Some((email, created, updated, count)) = self.get_lead(lead_id).await? else {
            return Ok(None);
        };
        let submissions = self
            .list_submissions(&crate::store::SubmissionQuery {
                lead_id: Some(lead_id.to_string()),
                limit: u32::MAX - 1,
                ..Default::default()
            })
            .await?
            .items;
        let consents = sqlx::query(
            "SELECT id, submission_id, form_id, kind, field, text, text_version, client_ip, \
               user_agent, created_at FROM consents WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| -> Result<Value, StoreError> {
            Ok(json!({
                "id": get::<String>(r, 0)?, "submission_id": get::<Option<String>>(r, 1)?,
                "form_id": get::<Option<String>>(r, 2)?, "kind": get::<String>(r, 3)?,
                "field": get::<Option<String>>(r, 4)?, "text": get::<Option<String>>(r, 5)?,
                "text_version": get::<Option<String>>(r, 6)?,
                "client_ip": get::<Option<String>>(r, 7)?,
                "user_agent": get::<Option<String>>(r, 8)?, "created_at_ms": get::<i64>(r, 9)?,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
        let downloads = sqlx::query(
            "SELECT id, form_id, created_at, expires_at, download_count, last_download_at \
             FROM downloads WHERE lead_id = $1 ORDER BY created_at, id",
        )
        .bind(lead_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| -> Result<Value, StoreError> {
            Ok(json!({
                "submission_id": get::<String>(r, 0)?, "form_id": get::<String>(r, 1)?,
                "created_at_ms": get::<i64>(r, 2)?, "expires_at_ms": get::<i64>(r, 3)?,
                "download_count": get::<i64>(r, 4)?,
                "last_download_at_ms": get::<Option<i64>>(r, 5)?,
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
        let messages = self.lead_messages(lead_id).await?;
        let suppressed = !self
            .suppressed_among(&[crate::consent::suppression_hash(&email)])
            .await?
            .is_empty();
        Ok(Some(json!({
            "lead": { "id": lead_id, "email": email, "created_at_ms": created,
                      "updated_at_ms": updated, "submission_count": count },
            "suppressed": suppressed,
            "submissions": submissions,
            "consents": consents,
            "downloads": downloads,
            "messages": messages,
        })))
    }

    /// Erases a person (GDPR): every submission, message, download and ledger entry, and the
    /// lead itself. What stays: the address's suppression hash (so it is never mailed again)
    /// and an anonymous count. Returns the number of submissions removed, or `None`.
    pub async fn erase_lead(&self, lead_id: &str, now_ms: i64) -> Result<Option<u64>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT email FROM leads WHERE id = $1")
            .bind(lead_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let email: String = get(&row, 0)?;
        let forms: Vec<String> = sqlx::query(
            "SELECT DISTINCT form_id FROM submissions WHERE lead_id = $1 ORDER BY form_id",
        )
        .bind(lead_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<_, _>>()?;
        let (removed, _) =
            delete_submissions(&mut tx, self.backend, &Doomed::Lead(lead_id.into())).await?;
        sqlx::query(
            "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, 'erased', $2) \
             ON CONFLICT (email_hash) DO NOTHING",
        )
        .bind(crate::consent::suppression_hash(&email))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO erasures (id, erased_at, submissions, forms) VALUES ($1, $2, $3, $4)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(now_ms)
        .bind(i64::try_from(removed).unwrap_or(i64::MAX))
        .bind(forms.join(","))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(removed))
    }

    /// The retention job: deletes spam older than `spam_days`, double opt-in submissions left
    /// unconfirmed `unconfirmed_days` after their link expired, and clears stored IPs older
    /// than `ip_days` (0 days: keep).
    pub async fn apply_retention(
        &self,
        now_ms: i64,
        settings: &crate::config::RetentionSettings,
    ) -> Result<RetentionReport, StoreError> {
        let day = 86_400_000_i64;
        let mut report = RetentionReport::default();
        let mut tx = self.writer.begin().await?;
        if settings.spam_days > 0 {
            let cutoff = now_ms - i64::from(settings.spam_days) * day;
            let (n, leads) =
                delete_submissions(&mut tx, self.backend, &Doomed::SpamBefore(cutoff)).await?;
            report.spam_submissions_deleted = n;
            report.leads_deleted += leads;
        }
        let cutoff = now_ms - i64::from(settings.unconfirmed_days) * day;
        let (n, leads) =
            delete_submissions(&mut tx, self.backend, &Doomed::UnconfirmedBefore(cutoff)).await?;
        report.unconfirmed_submissions_deleted = n;
        report.leads_deleted += leads;
        if settings.ip_days > 0 {
            let cutoff = now_ms - i64::from(settings.ip_days) * day;
            for table in ["submissions", "consents"] {
                report.ips_cleared += sqlx::query(&format!(
                    "UPDATE {table} SET client_ip = NULL WHERE client_ip IS NOT NULL AND created_at < $1"
                ))
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

async fn fetch_pending(
    conn: &mut sqlx::AnyConnection,
    submission_id: &str,
) -> Result<Option<PendingSubmission>, StoreError> {
    let row = sqlx::query(
        "SELECT id, lead_id, form_id, email, confirmation, confirm_expires_at \
         FROM submissions WHERE id = $1",
    )
    .bind(submission_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(PendingSubmission {
            submission_id: get(&r, 0)?,
            lead_id: get(&r, 1)?,
            form_id: get(&r, 2)?,
            email: get(&r, 3)?,
            state: get(&r, 4)?,
            expires_at_ms: get(&r, 5)?,
        })
    })
    .transpose()
}

/// Deletes the doomed submissions with everything that hangs off them, re-counts their leads
/// and deletes leads left with none. Returns (submissions, leads) deleted.
async fn delete_submissions(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    doomed: &Doomed,
) -> Result<(u64, u64), StoreError> {
    let mut q = Sql::for_backend(
        backend,
        "SELECT DISTINCT lead_id FROM submissions WHERE ".into(),
    );
    doomed.condition(&mut q);
    let leads: Vec<String> = q
        .query()
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<_, _>>()?;
    if leads.is_empty() {
        return Ok((0, 0));
    }
    for (table, column) in [
        ("consents", "submission_id"),
        ("downloads", "id"),
        ("outbox", "submission_id"),
    ] {
        let mut sql = Sql::for_backend(
            backend,
            format!("DELETE FROM {table} WHERE {column} IN (SELECT id FROM submissions WHERE "),
        );
        doomed.condition(&mut sql);
        sql.push(")");
        sql.query().execute(&mut **tx).await?;
    }
    let mut sql = Sql::for_backend(backend, "DELETE FROM submissions WHERE ".into());
    doomed.condition(&mut sql);
    let removed = sql.query().execute(&mut **tx).await?.rows_affected();
    let mut gone = 0;
    for chunk in split(&leads) {
        let mut sql = Sql::for_backend(
            backend,
            "UPDATE leads SET \
               submission_count = (SELECT COUNT(*) FROM submissions s WHERE s.lead_id = leads.id), \
               real_submission_count = (SELECT COUNT(*) FROM submissions s \
                 WHERE s.lead_id = leads.id AND s.spam_reason IS NULL) WHERE id IN ("
                .into(),
        );
        sql.bind_list(chunk.iter().map(String::as_str));
        sql.push(")");
        sql.query().execute(&mut **tx).await?;
        for table in ["consents", "outbox", "downloads"] {
            let mut sql = Sql::for_backend(
                backend,
                format!(
                    "DELETE FROM {table} WHERE lead_id IN (SELECT id FROM leads \
                     WHERE submission_count = 0 AND id IN ("
                ),
            );
            sql.bind_list(chunk.iter().map(String::as_str));
            sql.push("))");
            sql.query().execute(&mut **tx).await?;
        }
        let mut sql = Sql::for_backend(
            backend,
            "DELETE FROM leads WHERE submission_count = 0 AND id IN (".into(),
        );
        sql.bind_list(chunk.iter().map(String::as_str));
        sql.push(")");
        gone += sql.query().execute(&mut **tx).await?.rows_affected();
    }
    Ok((removed, gone))
}
