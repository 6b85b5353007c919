//! Writing submissions and reading leads back.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::Any;
use uuid::Uuid;

use super::models::{
    Cursor, LeadQuery, LeadRecord, Page, Recorded, SubmissionQuery, SubmissionRecord,
};
use super::{get, LeadStore, StoreError};
use crate::domain::{NewOutboxMessage, NewSubmission};

use std::collections::hash_map::{Entry, HashMap};

/// One submission of a batch, with the messages it implies.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    pub sub: &'a NewSubmission,
    pub messages: &'a [NewOutboxMessage],
}

/// The columns of a submission, in the order [`submission_from_row`] reads them.
const SUBMISSION_COLUMNS: &str = "s.id, s.lead_id, s.form_id, s.email, s.fields, s.extra, \
     s.spam_reason, s.attribution, s.client_ip, s.created_at";

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
        for (i, it) in items.iter().enumerate() {
            if follower_of[i].is_some() {
                continue;
            }
            let sub = it.sub;
            if let Some(key) = &sub.idempotency_key {
                if let Some(found) = find_idempotent(&mut tx, &sub.form_id, key.as_str()).await? {
                    results[i] = Some(found);
                    continue;
                }
            }
            let lead_id = upsert_lead(&mut tx, sub).await?;
            let submission_id = Uuid::now_v7().to_string();
            let inserted = insert_submission(&submission_id, &lead_id, sub)
                .execute(&mut *tx)
                .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::Conflict);
            }
            super::outbox::enqueue(
                &mut tx,
                &lead_id,
                &submission_id,
                &sub.form_id,
                sub.received_at_ms,
                it.messages,
            )
            .await?;
            results[i] = Some(Recorded {
                submission_id,
                lead_id,
                replayed: false,
            });
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
                    created_at_ms: get(r, 10)?,
                    updated_at_ms: get(r, 11)?,
                    submission_count: get(r, 12)?,
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

async fn upsert_lead(
    tx: &mut sqlx::Transaction<'_, Any>,
    sub: &NewSubmission,
) -> Result<String, StoreError> {
    let real = i64::from(sub.spam.is_none());
    let row = sqlx::query(
        "INSERT INTO leads (id, email, created_at, updated_at, submission_count, real_submission_count) \
         VALUES ($1, $2, $3, $3, 1, $4) \
         ON CONFLICT (email) DO UPDATE SET updated_at = excluded.updated_at, \
           submission_count = leads.submission_count + 1, \
           real_submission_count = leads.real_submission_count + excluded.real_submission_count \
         RETURNING id",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(sub.email.as_str())
    .bind(sub.received_at_ms)
    .bind(real)
    .fetch_one(&mut **tx)
    .await?;
    get(&row, 0)
}

fn insert_submission<'q>(
    id: &'q str,
    lead_id: &'q str,
    sub: &'q NewSubmission,
) -> Query<'q, Any, AnyArguments<'q>> {
    let a = &sub.attribution;
    sqlx::query(
        "INSERT INTO submissions (id, lead_id, form_id, email, fields, extra, spam_reason, \
           idempotency_key, utm_source, utm_medium, utm_campaign, utm_term, utm_content, \
           referrer, landing_page, user_agent, attribution, client_ip, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT (form_id, idempotency_key) DO NOTHING",
    )
    .bind(id)
    .bind(lead_id)
    .bind(sub.form_id.as_str())
    .bind(sub.email.as_str())
    .bind(json(&sub.fields))
    .bind(json(&sub.extra))
    .bind(sub.spam.map(|s| s.as_str()))
    .bind(sub.idempotency_key.as_ref().map(|k| k.as_str()))
    .bind(a.utm_source.as_deref())
    .bind(a.utm_medium.as_deref())
    .bind(a.utm_campaign.as_deref())
    .bind(a.utm_term.as_deref())
    .bind(a.utm_content.as_deref())
    .bind(a.referrer.as_deref())
    .bind(a.landing_page.as_deref())
    .bind(a.user_agent.as_deref())
    .bind(json(a))
    .bind(sub.client_ip.as_ref().map(|ip| ip.as_str()))
    .bind(sub.received_at_ms)
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
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl Sql {
    fn new(text: String) -> Sql {
        Sql {
            text,
            binds: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind_text(&mut self, v: &str) -> &mut Self {
        self.binds.push(Bind::Text(v.to_string()));
        self.placeholder()
    }

    fn bind_int(&mut self, v: i64) -> &mut Self {
        self.binds.push(Bind::Int(v));
        self.placeholder()
    }

    fn placeholder(&mut self) -> &mut Self {
        let n = self.binds.len();
        self.text.push_str(&format!("${n}"));
        self
    }

    fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        self.binds
            .iter()
            .fold(sqlx::query(&self.text), |q, b| match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            })
    }
}
