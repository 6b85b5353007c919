//! Writing submissions and reading leads back.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::Any;
use uuid::Uuid;

use super::models::{
    Cursor, LeadQuery, LeadRecord, Page, Recorded, SubmissionQuery, SubmissionRecord,
};
use super::{get, LeadStore, StoreError};
use crate::domain::{Confirmation, NewOutboxMessage, NewSubmission};

use std::collections::hash_map::{Entry, HashMap};

/// One submission of a batch, with the messages it implies.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    pub sub: &'a NewSubmission,
    pub messages: &'a [NewOutboxMessage],
}

/// The columns of a submission, in the order [`submission_from_row`] reads them.
const SUBMISSION_COLUMNS: &str = "s.id, s.lead_id, s.form_id, s.email, s.fields, s.extra, \
     s.spam_reason, s.attribution, s.client_ip, s.created_at, s.confirmation, s.confirmed_at";
/// How many columns [`SUBMISSION_COLUMNS`] selects (columns after it start here).
const SUBMISSION_COLUMN_COUNT: usize = 12;

impl LeadStore {
    /// Stores a submission and upserts its lead, in one transaction.
    ///
    /// The outgoing messages the submission implies are written in the same transaction (the
    /// outbox), so a 2xx means both the lead and its email are durable. With an idempotency
    /// key, a repeat (also a concurrent one) returns the first submission's ids and stores
    /// nothing new.
    #[tracing::instrument(name = "store.record_submission", skip_all, fields(form_id = %sub.form_id))]
    pub async fn record_submission(
        &self,
        sub: &NewSubmission,
        messages: &[NewOutboxMessage],
    ) -> Result<Recorded, StoreError> {
        match self.record_batch(&[BatchItem { sub, messages }]).await {
            Ok(mut recorded) => recorded
                .pop()
                .ok_or_else(|| StoreError::Corrupt("empty batch result".into())),
            // A concurrent request with the same idempotency key committed first.
            Err(StoreError::Conflict) => {
                let key = sub
                    .idempotency_key
                    .as_ref()
                    .map(|k| k.as_str())
                    .unwrap_or_default();
                self.find_idempotent(&sub.form_id, key)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("idempotency conflict without a row".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// The write path's one function: stores a batch of submissions (leads upserted, outbox
    /// rows written) in **one** transaction, answers in input order. Idempotency and lead
    /// de-duplication hold inside the batch: a repeated key returns the first item's ids, two
    /// submissions by one person update one lead. Any failure fails the whole batch (nothing is
    /// written); [`StoreError::Conflict`] means another writer committed the same idempotency
    /// key first. The group-commit writer retries a failed batch item by item.
    pub async fn record_batch(&self, items: &[BatchItem<'_>]) -> Result<Vec<Recorded>, StoreError> {
        // Items that repeat an idempotency key seen earlier in this batch follow their leader.
        let mut leaders: HashMap<(&str, &str), usize> = HashMap::new();
        let follower_of: Vec<Option<usize>> = items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let key = it.sub.idempotency_key.as_ref()?;
                match leaders.entry((it.sub.form_id.as_str(), key.as_str())) {
                    Entry::Occupied(e) => Some(*e.get()),
                    Entry::Vacant(e) => {
                        e.insert(i);
                        None
                    }
                }
            })
            .collect();
        let mut results: Vec<Option<Recorded>> = vec![None; items.len()];
        let mut tx = self.writer.begin().await?;

        // 1. Keys that an earlier (committed) submission already holds: one lookup.
        let keyed: Vec<usize> = (0..items.len())
            .filter(|&i| follower_of[i].is_none() && items[i].sub.idempotency_key.is_some())
            .collect();
        if !keyed.is_empty() {
            let mut sql = Sql::new(
                "SELECT form_id, idempotency_key, id, lead_id FROM submissions \
                 WHERE idempotency_key IN ("
                    .into(),
            );
            sql.bind_list(keyed.iter().map(|&i| {
                items[i]
                    .sub
                    .idempotency_key
                    .as_ref()
                    .map_or("", |k| k.as_str())
            }));
            sql.push(")");
            let mut found: HashMap<(String, String), Recorded> = HashMap::new();
            for r in sql.query().persistent(false).fetch_all(&mut *tx).await? {
                found.insert(
                    (get(&r, 0)?, get(&r, 1)?),
                    Recorded {
                        submission_id: get(&r, 2)?,
                        lead_id: get(&r, 3)?,
                        replayed: true,
                    },
                );
            }
            for &i in &keyed {
                let sub = items[i].sub;
                let key = sub.idempotency_key.as_ref().map_or("", |k| k.as_str());
                results[i] = found.get(&(sub.form_id.clone(), key.to_string())).cloned();
            }
        }

        // 2. The rest are new: a constant number of multi-row statements for the whole batch.
        let writes: Vec<usize> = (0..items.len())
            .filter(|&i| follower_of[i].is_none() && results[i].is_none())
            .collect();
        if !writes.is_empty() {
            let lead_ids = upsert_leads(&mut tx, self.backend, items, &writes).await?;
            let mut rows: Vec<(String, String)> = Vec::with_capacity(writes.len());
            for &i in &writes {
                let lead_id = lead_ids
                    .get(items[i].sub.email.as_str())
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("lead upsert returned no id".into()))?;
                rows.push((Uuid::now_v7().to_string(), lead_id));
            }
            insert_submissions(&mut tx, self.backend, items, &writes, &rows).await?;
            super::outbox::enqueue_batch(&mut tx, self.backend, items, &writes, &rows).await?;
            super::consent::record_batch_extras(&mut tx, self.backend, items, &writes, &rows)
                .await?;
            for (&i, (submission_id, lead_id)) in writes.iter().zip(rows) {
                results[i] = Some(Recorded {
                    submission_id,
                    lead_id,
                    replayed: false,
                });
            }
        }
        tx.commit().await?;
        for (i, leader) in follower_of.iter().enumerate() {
            if let Some(l) = leader {
                results[i] = results[*l].clone().map(|r| Recorded {
                    replayed: true,
                    ..r
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| StoreError::Corrupt("a batch item has no result".into())))
            .collect()
    }

    async fn find_idempotent(
        &self,
        form_id: &str,
        key: &str,
    ) -> Result<Option<Recorded>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        find_idempotent(&mut conn, form_id, key).await
    }

    /// Leads with their newest matching submission, oldest lead first (stable keyset order).
    pub async fn list_leads(&self, q: &LeadQuery) -> Result<Page<LeadRecord>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {SUBMISSION_COLUMNS}, l.created_at, l.updated_at, l.submission_count \
             FROM leads l JOIN submissions s ON s.id = (\
               SELECT s2.id FROM submissions s2 WHERE s2.lead_id = l.id AND s2.spam_reason IS NULL"
        ));
        if let Some(f) = &q.form_id {
            sql.push(" AND s2.form_id = ").bind_text(f);
        }
        if let Some(t) = q.since_ms {
            sql.push(" AND s2.created_at >= ").bind_int(t);
        }
        if let Some(t) = q.until_ms {
            sql.push(" AND s2.created_at < ").bind_int(t);
        }
        sql.push(
            " ORDER BY s2.created_at DESC, s2.id DESC LIMIT 1) WHERE l.real_submission_count > 0",
        );
        if let Some(c) = &q.after {
            sql.push(" AND (l.created_at > ").bind_int(c.created_at_ms);
            sql.push(" OR (l.created_at = ").bind_int(c.created_at_ms);
            sql.push(" AND l.id > ").bind_text(&c.id).push("))");
        }
        sql.push(" ORDER BY l.created_at, l.id LIMIT ")
            .bind_int(i64::from(q.limit) + 1);
        let rows = sql.query().fetch_all(&self.reader).await?;
        let items = rows
            .iter()
            .map(|r| {
                let latest = submission_from_row(r)?;
                Ok(LeadRecord {
                    id: latest.lead_id.clone(),
                    email: latest.email.clone(),
                    created_at_ms: get(r, SUBMISSION_COLUMN_COUNT)?,
                    updated_at_ms: get(r, SUBMISSION_COLUMN_COUNT + 1)?,
                    submission_count: get(r, SUBMISSION_COLUMN_COUNT + 2)?,
                    latest_submission: latest,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(items, q.limit, |l| Cursor {
            created_at_ms: l.created_at_ms,
            id: l.id.clone(),
        }))
    }

    /// One lead's own row: `(email, created_at, updated_at, submission_count)`.
    pub async fn get_lead(
        &self,
        lead_id: &str,
    ) -> Result<Option<(String, i64, i64, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT email, created_at, updated_at, submission_count FROM leads WHERE id = $1",
        )
        .bind(lead_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| Ok((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?, get(&r, 3)?)))
            .transpose()
    }

    /// Submissions, oldest first, including spam when asked.
    pub async fn list_submissions(
        &self,
        q: &SubmissionQuery,
    ) -> Result<Page<SubmissionRecord>, StoreError> {
        let mut sql = Sql::new(format!(
            "SELECT {SUBMISSION_COLUMNS} FROM submissions s WHERE 1 = 1"
        ));
        if let Some(f) = &q.form_id {
            sql.push(" AND s.form_id = ").bind_text(f);
        }
        if let Some(l) = &q.lead_id {
            sql.push(" AND s.lead_id = ").bind_text(l);
        }
        match q.spam {
            Some(true) => sql.push(" AND s.spam_reason IS NOT NULL"),
            Some(false) => sql.push(" AND s.spam_reason IS NULL"),
            None => &mut sql,
        };
        if let Some(t) = q.since_ms {
            sql.push(" AND s.created_at >= ").bind_int(t);
        }
        if let Some(t) = q.until_ms {
            sql.push(" AND s.created_at < ").bind_int(t);
        }
        if let Some(c) = &q.after {
            sql.push(" AND (s.created_at > ").bind_int(c.created_at_ms);
            sql.push(" OR (s.created_at = ").bind_int(c.created_at_ms);
            sql.push(" AND s.id > ").bind_text(&c.id).push("))");
        }
        sql.push(" ORDER BY s.created_at, s.id LIMIT ")
            .bind_int(i64::from(q.limit) + 1);
        let rows = sql.query().fetch_all(&self.reader).await?;
        let items = rows
            .iter()
            .map(submission_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, q.limit, |s| Cursor {
            created_at_ms: s.created_at_ms,
            id: s.id.clone(),
        }))
    }
}

/// The submission an idempotency key already names, if any.
async fn find_idempotent(
    conn: &mut sqlx::AnyConnection,
    form_id: &str,
    key: &str,
) -> Result<Option<Recorded>, StoreError> {
    let row = sqlx::query(
        "SELECT id, lead_id FROM submissions WHERE form_id = $1 AND idempotency_key = $2",
    )
    .bind(form_id)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Recorded {
            submission_id: get(&r, 0)?,
            lead_id: get(&r, 1)?,
            replayed: true,
        })
    })
    .transpose()
}

/// Most rows in one multi-row statement (keeps bind counts far below both engines' limits and
/// the number of distinct statement texts small).
pub(super) const ROWS_PER_STATEMENT: usize = 64;

/// Upserts one row per distinct email of the batch (PostgreSQL refuses to update one row twice
/// in one statement, so counts are summed here first). Returns email -> lead id.
async fn upsert_leads(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: super::Backend,
    items: &[BatchItem<'_>],
    writes: &[usize],
) -> Result<HashMap<String, String>, StoreError> {
    struct Agg<'a> {
        email: &'a str,
        first_ms: i64,
        last_ms: i64,
        count: i64,
        real: i64,
    }
    let mut aggs: Vec<Agg<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for &i in writes {
        let sub = items[i].sub;
        let real = i64::from(sub.spam.is_none());
        match index.entry(sub.email.as_str()) {
            Entry::Occupied(e) => {
                let a = &mut aggs[*e.get()];
                a.first_ms = a.first_ms.min(sub.received_at_ms);
                a.last_ms = a.last_ms.max(sub.received_at_ms);
                a.count += 1;
                a.real += real;
            }
            Entry::Vacant(e) => {
                e.insert(aggs.len());
                aggs.push(Agg {
                    email: sub.email.as_str(),
                    first_ms: sub.received_at_ms,
                    last_ms: sub.received_at_ms,
                    count: 1,
                    real,
                });
            }
        }
    }
    let mut ids = HashMap::with_capacity(aggs.len());
    for chunk in split(&aggs) {
        let mut sql = Sql::for_backend(
            backend,
            "INSERT INTO leads (id, email, created_at, updated_at, submission_count, \
             real_submission_count) VALUES "
                .into(),
        );
        for (j, a) in chunk.iter().enumerate() {
            sql.row(j);
            sql.bind_text(&Uuid::now_v7().to_string()).push(", ");
            sql.bind_text(a.email).push(", ");
            sql.bind_int(a.first_ms).push(", ");
            sql.bind_int(a.last_ms).push(", ");
            sql.bind_int(a.count).push(", ");
            sql.bind_int(a.real).push(")");
        }
        sql.push(
            " ON CONFLICT (email) DO UPDATE SET updated_at = excluded.updated_at, \
             submission_count = leads.submission_count + excluded.submission_count, \
             real_submission_count = leads.real_submission_count + excluded.real_submission_count \
             RETURNING id, email",
        );
        for r in sql.query().fetch_all(&mut **tx).await? {
            ids.insert(get::<String>(&r, 1)?, get::<String>(&r, 0)?);
        }
    }
    Ok(ids)
}

/// Inserts the batch's submissions; a row refused by the idempotency constraint (another
/// writer committed the key first) fails the batch with [`StoreError::Conflict`].
async fn insert_submissions(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: super::Backend,
    items: &[BatchItem<'_>],
    writes: &[usize],
    rows: &[(String, String)],
) -> Result<(), StoreError> {
    let pairs: Vec<(usize, &(String, String))> = writes.iter().copied().zip(rows).collect();
    for chunk in split(&pairs) {
        let mut sql = Sql::for_backend(
            backend,
            "INSERT INTO submissions (id, lead_id, form_id, email, fields, extra, spam_reason, \
               idempotency_key, utm_source, utm_medium, utm_campaign, utm_term, utm_content, \
               referrer, landing_page, user_agent, attribution, client_ip, created_at, \
               confirmation, confirm_expires_at) VALUES "
                .into(),
        );
        for (j, (i, (id, lead_id))) in chunk.iter().enumerate() {
            let sub = items[*i].sub;
            let a = &sub.attribution;
            sql.row(j);
            sql.bind_text(id).push(", ");
            sql.bind_text(lead_id).push(", ");
            sql.bind_text(&sub.form_id).push(", ");
            sql.bind_text(sub.email.as_str()).push(", ");
            sql.bind_text(&json(&sub.fields)).push(", ");
            sql.bind_text(&json(&sub.extra)).push(", ");
            sql.bind_opt(sub.spam.map(|s| s.as_str())).push(", ");
            sql.bind_opt(sub.idempotency_key.as_ref().map(|k| k.as_str()))
                .push(", ");
            for (_, v) in a.columns() {
                sql.bind_opt(v).push(", ");
            }
            sql.bind_text(&json(a)).push(", ");
            sql.bind_opt(sub.client_ip.as_ref().map(|ip| ip.as_str()))
                .push(", ");
            sql.bind_int(sub.received_at_ms).push(", ");
            match sub.confirmation {
                Confirmation::NotRequired => sql.push("'none', NULL)"),
                Confirmation::Pending { expires_at_ms } => {
                    sql.push("'pending', ");
                    sql.bind_int(expires_at_ms).push(")")
                }
            };
        }
        sql.push(" ON CONFLICT (form_id, idempotency_key) DO NOTHING");
        let done = sql.query().execute(&mut **tx).await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict);
        }
    }
    Ok(())
}

fn json(v: &impl serde::Serialize) -> String {
    // Serialising maps of strings cannot fail; an empty object is the safe fallback anyway.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn submission_from_row(r: &AnyRow) -> Result<SubmissionRecord, StoreError> {
    let spam_reason: Option<String> = get(r, 6)?;
    Ok(SubmissionRecord {
        id: get(r, 0)?,
        lead_id: get(r, 1)?,
        form_id: get(r, 2)?,
        email: get(r, 3)?,
        fields: from_json(&get::<String>(r, 4)?)?,
        extra: from_json(&get::<String>(r, 5)?)?,
        spam: spam_reason.is_some(),
        spam_reason,
        attribution: from_json(&get::<String>(r, 7)?)?,
        client_ip: get(r, 8)?,
        created_at_ms: get(r, 9)?,
        confirmation: get(r, 10)?,
        confirmed_at_ms: get(r, 11)?,
    })
}

fn page<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|l| cursor(l).encode())
    } else {
        None
    };
    Page { items, next_cursor }
}

/// A query built from optional filters, with numbered `$n` placeholders that both engines
/// accept.
pub(super) struct Sql {
    text: String,
    binds: Vec<Bind>,
    /// Anonymous `?` placeholders (SQLite): binding by name is a linear lookup per parameter
    /// in SQLite, which turns a multi-row statement's binding quadratic.
    anonymous: bool,
}

/// Splits `n` rows into power-of-two pieces of at most [`ROWS_PER_STATEMENT`], so a handful of
/// statement texts repeat and stay in the prepared-statement cache.
pub(super) fn pieces(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n >= ROWS_PER_STATEMENT {
        out.push(ROWS_PER_STATEMENT);
        n -= ROWS_PER_STATEMENT;
    }
    let mut p = ROWS_PER_STATEMENT / 2;
    while p > 0 {
        if n >= p {
            out.push(p);
            n -= p;
        }
        p /= 2;
    }
    out
}

/// Applies `pieces` to a slice.
pub(super) fn split<T>(rows: &[T]) -> Vec<&[T]> {
    let mut rest = rows;
    pieces(rows.len())
        .into_iter()
        .map(|n| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        })
        .collect()
}

/// `INSERT INTO … VALUES (…), (…)` for many rows, in statements of a few repeating sizes;
/// `row` binds one row's values (the parentheses are added here).
pub(super) async fn insert_many<T>(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: super::Backend,
    head: &str,
    rows: &[T],
    row: impl Fn(&mut Sql, &T),
) -> Result<(), StoreError> {
    for chunk in split(rows) {
        let mut sql = Sql::for_backend(backend, format!("{head} VALUES "));
        for (j, r) in chunk.iter().enumerate() {
            sql.row(j);
            row(&mut sql, r);
            sql.push(")");
        }
        sql.query().execute(&mut **tx).await?;
    }
    Ok(())
}

enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

impl Sql {
    pub(super) fn new(text: String) -> Sql {
        Sql {
            text,
            binds: Vec::new(),
            anonymous: false,
        }
    }

    /// A statement with the placeholder style that binds fastest on `backend`.
    pub(super) fn for_backend(backend: super::Backend, text: String) -> Sql {
        Sql {
            anonymous: backend == super::Backend::Sqlite,
            ..Sql::new(text)
        }
    }

    pub(super) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub(super) fn bind_text(&mut self, v: &str) -> &mut Self {
        self.binds.push(Bind::Text(v.to_string()));
        self.placeholder()
    }

    pub(super) fn bind_opt(&mut self, v: Option<&str>) -> &mut Self {
        self.binds.push(Bind::OptText(v.map(String::from)));
        self.placeholder()
    }

    /// Binds each value, comma-separated (the inside of an `IN (…)` list).
    pub(super) fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for (j, v) in values.into_iter().enumerate() {
            if j > 0 {
                self.push(", ");
            }
            self.bind_text(v);
        }
        self
    }

    /// Opens row `j` of a multi-row `VALUES` list.
    pub(super) fn row(&mut self, j: usize) -> &mut Self {
        self.push(if j == 0 { "(" } else { ", (" })
    }

    pub(super) fn bind_int(&mut self, v: i64) -> &mut Self {
        self.binds.push(Bind::Int(v));
        self.placeholder()
    }

    fn placeholder(&mut self) -> &mut Self {
        use std::fmt::Write;
        if self.anonymous {
            self.text.push('?');
        } else {
            let n = self.binds.len();
            let _ = write!(self.text, "${n}");
        }
        self
    }

    pub(super) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        self.binds
            .iter()
            .fold(sqlx::query(&self.text), |q, b| match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::OptText(s) => q.bind(s.as_deref()),
                Bind::Int(i) => q.bind(*i),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::{pieces, ROWS_PER_STATEMENT, SUBMISSION_COLUMNS, SUBMISSION_COLUMN_COUNT};

    #[test]
    fn the_submission_column_count_matches_the_list() {
        assert_eq!(
            SUBMISSION_COLUMNS.split(',').count(),
            SUBMISSION_COLUMN_COUNT
        );
    }

    #[test]
    fn batches_split_into_few_repeating_statement_sizes() {
        for n in 0..600 {
            let p = pieces(n);
            assert_eq!(p.iter().sum::<usize>(), n);
            assert!(p
                .iter()
                .all(|s| s.is_power_of_two() && *s <= ROWS_PER_STATEMENT));
        }
        assert_eq!(pieces(75), [64, 8, 2, 1]);
    }
}
