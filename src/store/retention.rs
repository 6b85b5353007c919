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
    /// Dispatched events, finished deliveries (with attempts) and sent staff mail.
    pub log_rows_deleted: u64,
    /// Write transactions the job took (each at most [`STEP`] rows).
    pub steps: u64,
}

/// Rows per retention step: each step is one short write transaction, so the group-commit
/// writer (on SQLite the only writer connection) gets its turn between steps.
const STEP: usize = 256;

/// Which submissions a deletion removes.
#[derive(Clone)]
pub(super) enum Doomed {
    Lead(String),
    SpamBefore(i64),
    UnconfirmedBefore(i64),
    /// Those of `ids` that still meet the condition (re-checked under the write lock).
    Step(Box<Doomed>, Vec<String>),
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
            Doomed::Step(within, ids) => {
                within.condition(sql);
                sql.push(" AND id IN (");
                sql.bind_list(ids.iter().map(String::as_str));
                sql.push(")");
            }
        }
    }
}

/// The next step's rows of `table` meeting `condition`, oldest first, after `after` (a
/// keyset over `(created_at, id)`, so each step resumes where the last one stopped instead of
/// re-reading what it skipped). Read on the reader pool: finding work never holds the writer.
fn next_step(
    dialect: &Dialect,
    table: &str,
    condition: impl Fn(&mut Sql),
    after: Option<&(i64, String)>,
) -> Sql {
    let mut sql = Sql::for_dialect(
        dialect,
        format!("SELECT created_at, id FROM {table} WHERE "),
    );
    condition(&mut sql);
    if let Some((at, id)) = after {
        sql.push(" AND (created_at > ").bind_int(*at);
        sql.push(" OR (created_at = ").bind_int(*at);
        sql.push(" AND id > ").bind_text(id).push("))");
    }
    sql.push(&format!(" ORDER BY created_at, id LIMIT {STEP}"));
    sql
}

impl LeadStore {
    /// The retention job: deletes spam older than `spam_days`, double opt-in submissions left
    /// unconfirmed `unconfirmed_days` after their link expired, and clears stored IPs older
    /// than `ip_days` (0 days: keep).
    ///
    /// It works in steps of [`STEP`] rows, each its own short transaction found by a read that
    /// holds no write lock, and yields between steps: capture never waits for more than one
    /// step, however much there is to delete (`bench/retention.sh` measures the worst pause).
    pub async fn apply_retention(
        &self,
        now_ms: i64,
        settings: &crate::config::RetentionSettings,
    ) -> Result<RetentionReport, StoreError> {
        let day = 86_400_000_i64;
        let mut report = RetentionReport::default();
        if settings.spam_days > 0 {
            let cutoff = now_ms - i64::from(settings.spam_days) * day;
            let (n, leads) = self
                .delete_in_steps(Doomed::SpamBefore(cutoff), &mut report.steps)
                .await?;
            report.spam_submissions_deleted = n;
            report.leads_deleted += leads;
        }
        let cutoff = now_ms - i64::from(settings.unconfirmed_days) * day;
        let (n, leads) = self
            .delete_in_steps(Doomed::UnconfirmedBefore(cutoff), &mut report.steps)
            .await?;
        report.unconfirmed_submissions_deleted = n;
        report.leads_deleted += leads;
        if settings.ip_days > 0 {
            let cutoff = now_ms - i64::from(settings.ip_days) * day;
            for table in ["submissions", "consents"] {
                report.ips_cleared += self
                    .clear_ips_in_steps(table, cutoff, &mut report.steps)
                    .await?;
            }
        }
        if settings.log_days > 0 {
            let cutoff = now_ms - i64::from(settings.log_days) * day;
            report.log_rows_deleted = self.delete_logs(cutoff, &mut report.steps).await?;
        }
        Ok(report)
    }

    /// Deletes what is finished and older than `cutoff` from the qualification queues, in
    /// steps found through each queue's `(status, next_attempt_at)` index (a finished row's
    /// `next_attempt_at` is when it finished).
    async fn delete_logs(&self, cutoff: i64, steps: &mut u64) -> Result<u64, StoreError> {
        let finished = [
            ("events", "('done', 'dead')"),
            ("webhook_deliveries", "('delivered', 'dead', 'cancelled')"),
            ("staff_mail", "('sent', 'dead', 'skipped')"),
        ];
        let mut deleted = 0;
        for (table, statuses) in finished {
            loop {
                let find = Sql::fixed(format!(
                    "SELECT id FROM {table} WHERE status IN {statuses} AND next_attempt_at < $1 \
                     ORDER BY next_attempt_at LIMIT {STEP}"
                ))
                .arg(cutoff);
                let ids: Vec<(String,)> = self.pools.reader().fetch_all(&find).await?;
                if ids.is_empty() {
                    break;
                }
                let mut tx = self.pools.begin().await?;
                if table == "webhook_deliveries" {
                    let mut sql =
                        Sql::new("DELETE FROM webhook_attempts WHERE delivery_id IN (".into());
                    sql.bind_list(ids.iter().map(|(id,)| id.as_str()));
                    sql.push(")");
                    deleted += tx.exec().execute(&sql.once()).await?;
                }
                let mut sql = Sql::new(format!("DELETE FROM {table} WHERE id IN ("));
                sql.bind_list(ids.iter().map(|(id,)| id.as_str()));
                sql.push(")");
                deleted += tx.exec().execute(&sql.once()).await?;
                tx.commit().await?;
                *steps += 1;
                tokio::task::yield_now().await;
            }
        }
        Ok(deleted)
    }

    async fn delete_in_steps(
        &self,
        doomed: Doomed,
        steps: &mut u64,
    ) -> Result<(u64, u64), StoreError> {
        let dialect = self.dialect();
        let (mut removed, mut gone) = (0, 0);
        let mut after = None;
        loop {
            let find = next_step(
                dialect,
                "submissions",
                |q| doomed.condition(q),
                after.as_ref(),
            );
            let rows: Vec<(i64, String)> = self.pools.reader().fetch_all(&find).await?;
            let Some(last) = rows.last().cloned() else {
                return Ok((removed, gone));
            };
            let ids = rows.into_iter().map(|(_, id)| id).collect();
            let step = Doomed::Step(Box::new(doomed.clone()), ids);
            let mut tx = self.pools.begin().await?;
            let (n, leads) = delete_submissions(&mut tx, dialect, &step).await?;
            tx.commit().await?;
            (removed, gone, after) = (removed + n, gone + leads, Some(last));
            *steps += 1;
            tokio::task::yield_now().await;
        }
    }

    async fn clear_ips_in_steps(
        &self,
        table: &str,
        cutoff: i64,
        steps: &mut u64,
    ) -> Result<u64, StoreError> {
        let dialect = self.dialect();
        let old_ip = |q: &mut Sql| {
            q.push("client_ip IS NOT NULL AND created_at < ")
                .bind_int(cutoff);
        };
        let mut cleared = 0;
        let mut after = None;
        loop {
            let find = next_step(dialect, table, old_ip, after.as_ref());
            let rows: Vec<(i64, String)> = self.pools.reader().fetch_all(&find).await?;
            let Some(last) = rows.last().cloned() else {
                return Ok(cleared);
            };
            let mut sql = Sql::for_dialect(
                dialect,
                format!("UPDATE {table} SET client_ip = NULL WHERE "),
            );
            old_ip(&mut sql);
            sql.push(" AND id IN (");
            sql.bind_list(rows.iter().map(|(_, id)| id.as_str()));
            sql.push(")");
            cleared += self.pools.writer().execute(&sql.once()).await?;
            after = Some(last);
            *steps += 1;
            tokio::task::yield_now().await;
        }
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
    // Enrolments hang off the submission that enrolled the lead, clicks and replies off them.
    for (table, column) in [
        (
            "sequence_interactions",
            "enrolment_id IN (SELECT id FROM enrolments WHERE submission_id",
        ),
        ("enrolments", "submission_id"),
    ] {
        let mut sql = Sql::for_dialect(
            dialect,
            format!("DELETE FROM {table} WHERE {column} IN (SELECT id FROM submissions WHERE "),
        );
        doomed.condition(&mut sql);
        sql.push(if table == "enrolments" { ")" } else { "))" });
        tx.exec().execute(&sql).await?;
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
        let leaving = format!(
            "(SELECT id FROM leads WHERE submission_count = 0 AND id IN ({}))",
            (1..=chunk.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let binds: Vec<&str> = chunk.iter().map(String::as_str).collect();
        super::qualification::forget(tx, &leaving, &binds).await?;
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
