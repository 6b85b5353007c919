//! Retention: old spam, expired unconfirmed sign-ups and old IPs go; and the deletion of
//! submissions with everything that hangs off them, which erasure uses too.

use super::dialect::Dialect;
use super::pools::Tx;
use super::sql::{split, Sql};
use super::{LeadStore, StoreError};

/// What the retention job removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub spam_submissions_deleted: u64,
    pub unconfirmed_submissions_deleted: u64,
    pub leads_deleted: u64,
    pub ips_cleared: u64,
}

/// Which submissions a deletion removes.
pub(super) enum Doomed {
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

impl LeadStore {
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
        let mut tx = self.pools.begin().await?;
        let dialect = self.dialect();
        if settings.spam_days > 0 {
            let cutoff = now_ms - i64::from(settings.spam_days) * day;
            let (n, leads) =
                delete_submissions(&mut tx, dialect, &Doomed::SpamBefore(cutoff)).await?;
            report.spam_submissions_deleted = n;
            report.leads_deleted += leads;
        }
        let cutoff = now_ms - i64::from(settings.unconfirmed_days) * day;
        let (n, leads) =
            delete_submissions(&mut tx, dialect, &Doomed::UnconfirmedBefore(cutoff)).await?;
        report.unconfirmed_submissions_deleted = n;
        report.leads_deleted += leads;
        if settings.ip_days > 0 {
            let cutoff = now_ms - i64::from(settings.ip_days) * day;
            for table in ["submissions", "consents"] {
                let sql = Sql::fixed(format!(
                    "UPDATE {table} SET client_ip = NULL \
                     WHERE client_ip IS NOT NULL AND created_at < $1"
                ))
                .arg(cutoff);
                report.ips_cleared += tx.exec().execute(&sql).await?;
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// Deletes the doomed submissions with everything that hangs off them, re-counts their leads
/// and deletes leads left with none. Returns (submissions, leads) deleted.
pub(super) async fn delete_submissions(
    tx: &mut Tx,
    dialect: &Dialect,
    doomed: &Doomed,
) -> Result<(u64, u64), StoreError> {
    let mut q = Sql::for_dialect(
        dialect,
        "SELECT DISTINCT lead_id FROM submissions WHERE ".into(),
    );
    doomed.condition(&mut q);
    let leads: Vec<(String,)> = tx.exec().fetch_all(&q).await?;
    let leads: Vec<String> = leads.into_iter().map(|(id,)| id).collect();
    if leads.is_empty() {
        return Ok((0, 0));
    }
    for (table, column) in [
        ("consents", "submission_id"),
        ("downloads", "id"),
        ("outbox", "submission_id"),
    ] {
        let mut sql = Sql::for_dialect(
            dialect,
            format!("DELETE FROM {table} WHERE {column} IN (SELECT id FROM submissions WHERE "),
        );
        doomed.condition(&mut sql);
        sql.push(")");
        tx.exec().execute(&sql).await?;
    }
    let mut sql = Sql::for_dialect(dialect, "DELETE FROM submissions WHERE ".into());
    doomed.condition(&mut sql);
    let removed = tx.exec().execute(&sql).await?;
    let mut gone = 0;
    for chunk in split(&leads) {
        let mut sql = Sql::for_dialect(
            dialect,
            "UPDATE leads SET \
               submission_count = (SELECT COUNT(*) FROM submissions s WHERE s.lead_id = leads.id), \
               real_submission_count = (SELECT COUNT(*) FROM submissions s \
                 WHERE s.lead_id = leads.id AND s.spam_reason IS NULL) WHERE id IN ("
                .into(),
        );
        sql.bind_list(chunk.iter().map(String::as_str));
        sql.push(")");
        tx.exec().execute(&sql.once()).await?;
        for table in ["consents", "outbox", "downloads"] {
            let mut sql = Sql::for_dialect(
                dialect,
                format!(
                    "DELETE FROM {table} WHERE lead_id IN (SELECT id FROM leads \
                     WHERE submission_count = 0 AND id IN ("
                ),
            );
            sql.bind_list(chunk.iter().map(String::as_str));
            sql.push("))");
            tx.exec().execute(&sql.once()).await?;
        }
        let mut sql = Sql::for_dialect(
            dialect,
            "DELETE FROM leads WHERE submission_count = 0 AND id IN (".into(),
        );
        sql.bind_list(chunk.iter().map(String::as_str));
        sql.push(")");
        gone += tx.exec().execute(&sql.once()).await?;
    }
    Ok((removed, gone))
}
