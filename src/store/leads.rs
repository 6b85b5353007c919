//! Writing submissions and reading leads back.

use uuid::Uuid;

use super::batch::{Frame, Insert, Val};
use super::dialect::Dialect;
use super::engine::Returned;
use super::models::{
    BatchItem, Cursor, LeadQuery, LeadRecord, Page, Recorded, SubmissionQuery, SubmissionRecord,
};
use super::pools::{Conn, Exec, Pooled};
use super::sql::Sql;
use super::{LeadStore, StoreError};
use crate::domain::{Confirmation, NewOutboxMessage, NewSubmission};

use std::collections::hash_map::{Entry, HashMap};
use std::collections::{BTreeMap, HashSet};

/// Below this many matching index entries a search collects the people first (see
/// `search_is_narrow`). Collecting costs per match (~7 µs on SQLite), walking the list costs
/// per lead passed over (~27 µs, one submission page each) and passes over more the rarer the
/// matches are; on a million leads the two meet near 14,000 matches (measured with names
/// spread over the alphabet: "fg", 4,400 matches, walked in 300 ms, is collected in 30 ms).
const NARROW_SEARCH: i64 = 12_000;

/// The columns of a submission, as [`SubmissionRow`] reads them (by name).
const SUBMISSION_COLUMNS: &str = "s.id, s.lead_id, s.form_id, s.email, s.fields, s.extra, \
     s.spam_reason, s.spam_score, s.spam_signals, s.restored_at, s.attribution, s.client_ip, \
     s.created_at, s.confirmation, s.confirmed_at";

/// A submission as stored: JSON columns still text.
#[derive(sqlx::FromRow)]
struct SubmissionRow {
    id: String,
    lead_id: String,
    form_id: String,
    email: String,
    fields: String,
    extra: String,
    spam_reason: Option<String>,
    spam_score: Option<i64>,
    spam_signals: Option<String>,
    restored_at: Option<i64>,
    attribution: String,
    client_ip: Option<String>,
    created_at: i64,
    confirmation: String,
    confirmed_at: Option<i64>,
}

impl TryFrom<SubmissionRow> for SubmissionRecord {
    type Error = StoreError;

    fn try_from(r: SubmissionRow) -> Result<Self, StoreError> {
        Ok(SubmissionRecord {
            fields: from_json(&r.fields)?,
            extra: from_json(&r.extra)?,
            attribution: from_json(&r.attribution)?,
            spam: r.spam_reason.is_some(),
            spam_reason: r.spam_reason,
            spam_score: r.spam_score,
            spam_signals: r.spam_signals,
            restored_at_ms: r.restored_at,
            id: r.id,
            lead_id: r.lead_id,
            form_id: r.form_id,
            email: r.email,
            client_ip: r.client_ip,
            created_at_ms: r.created_at,
            confirmation: r.confirmation,
            confirmed_at_ms: r.confirmed_at,
        })
    }
}

/// A lead with its newest matching submission.
#[derive(sqlx::FromRow)]
struct LeadRow {
    #[sqlx(flatten)]
    latest: SubmissionRow,
    lead_created_at: i64,
    lead_updated_at: i64,
    submission_count: i64,
}

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
        let mut conn = self.write_connection().await?;
        self.record_one(&mut conn, sub, messages).await
    }

    /// [`LeadStore::record_submission`] on a writer connection the caller holds.
    pub async fn record_one(
        &self,
        conn: &mut WriteConn,
        sub: &NewSubmission,
        messages: &[NewOutboxMessage],
    ) -> Result<Recorded, StoreError> {
        let result = match self
            .record_batch(conn, &[BatchItem { sub, messages }])
            .await
        {
            Ok(mut recorded) => recorded
                .pop()
                .unwrap_or_else(|| Err(StoreError::Corrupt("empty batch result".into()))),
            Err(e) => Err(e),
        };
        match result {
            // A concurrent request with the same idempotency key committed first.
            Err(StoreError::Conflict) => {
                let found = find_idempotent(conn.conn.exec(), sub).await;
                if let Err(e) = &found {
                    conn.broken |= e.is_unavailable();
                }
                found?
                    .ok_or_else(|| StoreError::Corrupt("idempotency conflict without a row".into()))
            }
            other => other,
        }
    }

    /// A connection for [`LeadStore::record_batch`]. The group-commit writer keeps one across
    /// back-to-back batches: every acquire and release costs sqlx a ping round trip.
    pub async fn write_connection(&self) -> Result<WriteConn, StoreError> {
        Ok(WriteConn {
            conn: self.pools.acquire().await?,
            open: false,
            broken: false,
        })
    }

    /// The write path's one function: stores a batch of submissions (leads upserted, outbox
    /// rows written), answers in input order. Idempotency and lead de-duplication hold inside
    /// the batch: a repeated key returns the first item's ids, two submissions by one person
    /// update one lead. An `Err` means nothing was written; [`StoreError::Conflict`] means
    /// another writer committed the same idempotency key first. An item's own `Err` means that
    /// item was not written while others were committed. The group-commit writer retries
    /// failed items one by one.
    ///
    /// Round trips (see `store::batch`): the key lookup, only when keys are present;
    /// on PostgreSQL, one autocommitted statement that writes everything for people who are
    /// new (most submissions); then, for people seen before, one transaction: `BEGIN` with the
    /// lead upsert, the follow-up window lookup, and every other insert with `COMMIT`.
    pub async fn record_batch(
        &self,
        conn: &mut WriteConn,
        items: &[BatchItem<'_>],
    ) -> Result<Vec<Result<Recorded, StoreError>>, StoreError> {
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
        let mut results: Vec<Option<Result<Recorded, StoreError>>> =
            std::iter::repeat_with(|| None).take(items.len()).collect();
        if !conn.is_usable() {
            // A rollback failed on it: the caller takes a new connection; the client retries.
            return Err(StoreError::Unavailable(sqlx::Error::Protocol(
                "the writer connection was lost mid-transaction".into(),
            )));
        }

        // 1. Keys that an earlier (committed) submission already holds. PostgreSQL: one lookup
        //    outside the transaction; a key another writer commits after it fails the insert
        //    below with `Conflict`. SQLite (one writer): the lookup rides in the transaction's
        //    first command, under the write lock, so it costs no round trip of its own.
        let keyed: Vec<usize> = (0..items.len())
            .filter(|&i| follower_of[i].is_none() && items[i].sub.idempotency_key.is_some())
            .collect();
        let mut probe = None;
        if !keyed.is_empty() {
            let sql =
                idempotency_lookup(self.dialect(), keyed.iter().map(|&i| key_of(items[i].sub)));
            if self.dialect().probe_in_transaction {
                probe = Some(sql);
            } else {
                let found_rows = conn.conn.exec().fetch_all::<ReplayRow>(&sql).await;
                let found = replays(conn.check_store(found_rows)?);
                fill_replays(&mut results, items, &keyed, &found);
            }
        }

        // 2. The rest are new.
        let mut writes: Vec<usize> = (0..items.len())
            .filter(|&i| follower_of[i].is_none() && results[i].is_none())
            .collect();
        // New people first (PostgreSQL: one autocommitted statement) only in a batch large
        // enough to hide in: alone, a new person would answer measurably sooner than a known
        // one, telling a script who is a lead.
        let fresh_written = if self.dialect().new_people_first && writes.len() > EQUAL_TIMING_BATCH
        {
            let fresh = write_fresh(&mut conn.conn, items, &writes, self.events).await;
            let fresh = conn.check_store(fresh)?;
            let any = !fresh.is_empty();
            for (i, recorded) in fresh {
                results[i] = Some(Ok(recorded));
            }
            writes.retain(|&i| results[i].is_none());
            any
        } else {
            false
        };
        if !writes.is_empty() {
            conn.open = true;
            let mut outcome = write_new(
                &mut conn.conn,
                items,
                &writes,
                probe.as_ref(),
                (self.events, &self.sequence_exits),
            )
            .await;
            if let Ok(NewWrites::Replayed(found)) = &outcome {
                // Rolled back: answer the repeats, write the rest without the probe.
                conn.open = false;
                fill_replays(&mut results, items, &keyed, found);
                writes.retain(|&i| results[i].is_none());
                outcome = if writes.is_empty() {
                    Ok(NewWrites::Written(Vec::new()))
                } else {
                    conn.open = true;
                    write_new(
                        &mut conn.conn,
                        items,
                        &writes,
                        None,
                        (self.events, &self.sequence_exits),
                    )
                    .await
                };
            }
            let outcome = outcome.and_then(|o| match o {
                NewWrites::Written(rows) => Ok(rows),
                NewWrites::Replayed(_) => Err(StoreError::Corrupt(
                    "idempotency replays found without a probe".into(),
                )),
            });
            match outcome {
                Ok(rows) => {
                    conn.open = false;
                    for (&i, (submission_id, lead_id)) in writes.iter().zip(rows) {
                        results[i] = Some(Ok(Recorded {
                            submission_id,
                            lead_id,
                            replayed: false,
                        }));
                    }
                }
                Err(e) => {
                    if !e.is_unavailable() && conn.conn.exec().raw("ROLLBACK").await.is_ok() {
                        conn.open = false;
                    }
                    conn.broken |= e.is_unavailable();
                    if !fresh_written {
                        return Err(e);
                    }
                    // Part of the batch is committed: only these items failed.
                    for &i in &writes {
                        results[i] = Some(Err(e.replicate()));
                    }
                }
            }
        }
        for (i, leader) in follower_of.iter().enumerate() {
            if let Some(l) = leader {
                let same =
                    items[i].sub.payload_fingerprint() == items[*l].sub.payload_fingerprint();
                results[i] = match &results[*l] {
                    Some(Ok(_)) if !same => Some(Err(StoreError::KeyReused)),
                    Some(Ok(r)) => Some(Ok(Recorded {
                        replayed: true,
                        ..r.clone()
                    })),
                    Some(Err(e)) => Some(Err(e.replicate())),
                    None => None,
                };
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(StoreError::Corrupt("a batch item has no result".into())))
            })
            .collect())
    }

    /// Leads with their newest matching submission, oldest lead first (stable keyset order).
    /// With `q.quarantined`, the leads whose every submission is quarantined instead, each
    /// with its newest (quarantined) submission.
    pub async fn list_leads(&self, q: &LeadQuery) -> Result<Page<LeadRecord>, StoreError> {
        let (which, leads) = if q.quarantined {
            ("IS NOT NULL", "= 0")
        } else {
            ("IS NULL", "> 0")
        };
        let mut sql = Sql::new(format!(
            "SELECT {SUBMISSION_COLUMNS}, l.created_at AS lead_created_at, \
               l.updated_at AS lead_updated_at, l.submission_count \
             FROM leads l JOIN submissions s ON s.id = (\
               SELECT s2.id FROM submissions s2 WHERE s2.lead_id = l.id AND s2.spam_reason {which}"
        ));
        if let Some(f) = &q.form_id {
            sql.push(" AND s2.form_id = ").bind_text(f);
        }
        if let Some(src) = &q.source {
            sql.push(" AND COALESCE(s2.source, LOWER(NULLIF(s2.utm_source, '')), 'direct') = ")
                .bind_text(src);
        }
        if let Some(c) = &q.campaign {
            sql.push(" AND COALESCE(s2.campaign, LOWER(NULLIF(s2.utm_campaign, ''))) = ")
                .bind_text(c);
        }
        if let Some(t) = q.since_ms {
            sql.push(" AND s2.created_at >= ").bind_int(t);
        }
        if let Some(t) = q.until_ms {
            sql.push(" AND s2.created_at < ").bind_int(t);
        }
        sql.push(&format!(
            " ORDER BY s2.created_at DESC, s2.id DESC LIMIT 1) WHERE l.real_submission_count {leads}"
        ));
        // Every key that starts with `p` sorts at or after it and before `p` followed by the
        // last code point (byte order on both engines): a range on an index.
        let range = |sql: &mut Sql, column: &str, p: &str| {
            sql.push(&format!("{column} >= ")).bind_text(p);
            sql.push(&format!(" AND {column} < "))
                .bind_text(&format!("{p}\u{10FFFF}"));
        };
        match (
            q.email_prefix.as_deref().filter(|p| !p.is_empty()),
            q.name_prefix.as_deref().filter(|p| !p.is_empty()),
        ) {
            (Some(e), None) => {
                sql.push(" AND ");
                range(&mut sql, "l.email", e);
            }
            (e, Some(n)) if self.search_is_narrow(e, n).await? => {
                // Few people match: the ones any of the three ranges finds, then in list order.
                sql.push(" AND l.id IN (SELECT lead_id FROM submissions WHERE ");
                range(&mut sql, "name_key", n);
                sql.push(" UNION SELECT lead_id FROM submissions WHERE ");
                range(&mut sql, "company_key", n);
                if let Some(e) = e {
                    sql.push(" UNION SELECT id FROM leads WHERE ");
                    range(&mut sql, "email", e);
                }
                sql.push(")");
            }
            (e, Some(n)) => {
                // Many match (a prefix such as "a"): walk the list in order and keep the
                // people who match, which finds a page after a few hundred leads.
                sql.push(" AND (");
                if let Some(e) = e {
                    range(&mut sql, "l.email", e);
                    sql.push(" OR ");
                }
                sql.push("EXISTS (SELECT 1 FROM submissions sx WHERE sx.lead_id = l.id AND ((");
                range(&mut sql, "sx.name_key", n);
                sql.push(") OR (");
                range(&mut sql, "sx.company_key", n);
                // `OFFSET 0` keeps PostgreSQL from turning the check into one hashed pass over
                // every matching submission (200 ms on a million leads for "f"): checked per
                // lead, the walk stops at the first page (2 ms).
                sql.push(")) LIMIT 1 OFFSET 0))");
            }
            (None, None) => {}
        }
        let (cmp, dir) = if q.newest_first {
            ("<", " DESC")
        } else {
            (">", "")
        };
        if let Some(c) = &q.after {
            sql.push(&format!(" AND (l.created_at {cmp} "))
                .bind_int(c.created_at_ms);
            sql.push(" OR (l.created_at = ").bind_int(c.created_at_ms);
            sql.push(&format!(" AND l.id {cmp} "))
                .bind_text(&c.id)
                .push("))");
        }
        sql.push(&format!(" ORDER BY l.created_at{dir}, l.id{dir} LIMIT "))
            .bind_int(i64::from(q.limit) + 1);
        let rows: Vec<LeadRow> = self.pools.reader().fetch_all(&sql).await?;
        let items = rows
            .into_iter()
            .map(|row| {
                let latest = SubmissionRecord::try_from(row.latest)?;
                Ok(LeadRecord {
                    id: latest.lead_id.clone(),
                    email: latest.email.clone(),
                    created_at_ms: row.lead_created_at,
                    updated_at_ms: row.lead_updated_at,
                    submission_count: row.submission_count,
                    latest_submission: latest,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(items, q.limit, |l| Cursor {
            created_at_ms: l.created_at_ms,
            id: l.id.clone(),
        }))
    }

    /// Whether a search matches few enough index entries (names, companies and addresses
    /// together, counted up to [`NARROW_SEARCH`]) to collect the people first and sort them;
    /// a broad one is cheaper as a walk down the list.
    async fn search_is_narrow(&self, email: Option<&str>, name: &str) -> Result<bool, StoreError> {
        let mut total = 0;
        for (table, column, p) in [
            ("submissions", "name_key", Some(name)),
            ("submissions", "company_key", Some(name)),
            ("leads", "email", email),
        ] {
            let Some(p) = p else { continue };
            let mut sql = Sql::new(format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {column} >= "
            ));
            sql.bind_text(p);
            sql.push(&format!(" AND {column} < "))
                .bind_text(&format!("{p}\u{10FFFF}"));
            sql.push(" LIMIT ").bind_int(NARROW_SEARCH);
            sql.push(") AS found");
            let (n,): (i64,) = self.pools.reader().fetch_one(&sql).await?;
            total += n;
            if total >= NARROW_SEARCH {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One lead's own row: `(email, created_at, updated_at, submission_count)`.
    pub async fn get_lead(
        &self,
        lead_id: &str,
    ) -> Result<Option<(String, i64, i64, i64)>, StoreError> {
        let sql = Sql::fixed(
            "SELECT email, created_at, updated_at, submission_count FROM leads WHERE id = $1",
        )
        .arg(lead_id);
        self.pools.reader().fetch_optional(&sql).await
    }

    /// One submission by id.
    pub async fn get_submission(&self, id: &str) -> Result<Option<SubmissionRecord>, StoreError> {
        let sql = Sql::fixed(format!(
            "SELECT {SUBMISSION_COLUMNS} FROM submissions s WHERE s.id = $1"
        ))
        .arg(id);
        let row: Option<SubmissionRow> = self.pools.reader().fetch_optional(&sql).await?;
        row.map(SubmissionRecord::try_from).transpose()
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
        let rows: Vec<SubmissionRow> = self.pools.reader().fetch_all(&sql).await?;
        let items = rows
            .into_iter()
            .map(SubmissionRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, q.limit, |s| Cursor {
            created_at_ms: s.created_at_ms,
            id: s.id.clone(),
        }))
    }
}

/// PostgreSQL: writes, in one autocommitted statement, the items of people who have no
/// lead yet; returns those items' results. A person seen before (their lead insert
/// conflicts) is left out entirely, for the transactional path: only there can earlier
/// follow-ups need looking up, and the lead row's lock orders concurrent writers. Two
/// writers racing to create one lead are ordered by the unique email: the loser finds the
/// winner's committed lead and goes the transactional way.
async fn write_fresh(
    conn: &mut Pooled,
    items: &[BatchItem<'_>],
    writes: &[usize],
    events: bool,
) -> Result<Vec<(usize, Recorded)>, StoreError> {
    let (leads, proposed) = lead_upserts(
        items,
        writes,
        " ON CONFLICT (email) DO NOTHING RETURNING id",
    );
    let proposed: HashMap<&str, String> = proposed.into_iter().collect();
    let rows: Vec<(String, String)> = writes
        .iter()
        .map(|&i| {
            let lead = proposed
                .get(items[i].sub.email.as_str())
                .cloned()
                .unwrap_or_default();
            (Uuid::now_v7().to_string(), lead)
        })
        .collect();
    let rest = dependent_inserts(
        conn.exec(),
        items,
        writes,
        &rows,
        (&HashSet::new(), false),
        events,
    )
    .await?;
    let Conn::Postgres(pg) = conn.conn() else {
        return Err(StoreError::Corrupt(
            "new people are written this way on PostgreSQL only".into(),
        ));
    };
    let created = super::postgres::insert_new_people(pg, &leads, &rest)
        .await
        .map_err(conflict_on_unique)?;
    Ok(writes
        .iter()
        .zip(rows)
        .filter(|(_, (_, lead_id))| created.contains(lead_id))
        .map(|(&i, (submission_id, lead_id))| {
            (
                i,
                Recorded {
                    submission_id,
                    lead_id,
                    replayed: false,
                },
            )
        })
        .collect())
}

/// Writes the new submissions of a batch in one transaction that this opens and commits;
/// returns `(submission id, lead id)` per write. On error the transaction may be open.
/// With a `probe` (SQLite's idempotency lookup), a key that is already stored rolls the
/// transaction back and answers the stored submissions instead.
async fn write_new(
    conn: &mut Pooled,
    items: &[BatchItem<'_>],
    writes: &[usize],
    probe: Option<&Sql>,
    (events, sequence_exits): (bool, &BTreeMap<String, Vec<String>>),
) -> Result<NewWrites, StoreError> {
    let (leads, proposed) = lead_upserts(
        items,
        writes,
        " ON CONFLICT (email) DO UPDATE SET updated_at = excluded.updated_at, \
         submission_count = leads.submission_count + excluded.submission_count, \
         real_submission_count = leads.real_submission_count + excluded.real_submission_count \
         RETURNING id, email",
    );
    let mut lead_ids: HashMap<String, String> = HashMap::with_capacity(proposed.len());
    let mut found = HashMap::new();
    for row in conn.conn().write(probe, &[leads], Frame::Begin).await? {
        match row {
            Returned::Replay {
                form_id,
                idempotency_key,
                id,
                lead_id,
                payload_hash,
            } => {
                found.insert(
                    (form_id, idempotency_key),
                    (
                        Recorded {
                            submission_id: id,
                            lead_id,
                            replayed: true,
                        },
                        payload_hash,
                    ),
                );
            }
            Returned::Lead { id, email } => {
                lead_ids.insert(email, id);
            }
            Returned::Id(_) => {}
        }
    }
    if !found.is_empty() {
        conn.exec().raw("ROLLBACK").await?;
        return Ok(NewWrites::Replayed(found));
    }
    // A lead whose id is not the one proposed here existed before this batch.
    let existing: HashSet<&str> = proposed
        .iter()
        .filter_map(|(email, id)| {
            let stored = lead_ids.get(*email)?;
            (stored != id).then_some(stored.as_str())
        })
        .collect();
    let mut rows: Vec<(String, String)> = Vec::with_capacity(writes.len());
    for &i in writes {
        let lead_id = lead_ids
            .get(items[i].sub.email.as_str())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("lead upsert returned no id".into()))?;
        rows.push((Uuid::now_v7().to_string(), lead_id));
    }
    // A submission alone (no load to hide in) takes the same statements whether the person is
    // new or known: the follow-up window and the sequence exits are looked up for everyone, so
    // an answer's timing does not tell who is a lead.
    let equal = writes.len() <= EQUAL_TIMING_BATCH;
    let inserts = dependent_inserts(
        conn.exec(),
        items,
        writes,
        &rows,
        (&existing, equal),
        events,
    )
    .await?;
    // A form that ends a sequence ends it in this transaction (only people seen before can
    // be in one).
    if !sequence_exits.is_empty() {
        // In a small batch everyone runs the statements; only a real submission of a known
        // person can match an enrolment (a quarantined one runs them for no sequence).
        let submitted: Vec<(&str, &str, bool)> = writes
            .iter()
            .zip(&rows)
            .filter(|(&i, (_, lead))| {
                (equal || existing.contains(lead.as_str()))
                    && sequence_exits.contains_key(&items[i].sub.form_id)
            })
            .map(|(&i, (_, lead))| {
                let sub = items[i].sub;
                (lead.as_str(), sub.form_id.as_str(), !sub.quarantined())
            })
            .filter(|(_, _, real)| *real || equal)
            .collect();
        if let Some(first) = writes.first() {
            let now = items[*first].sub.received_at_ms;
            super::sequences::exit_on_forms(conn.exec(), sequence_exits, &submitted, now).await?;
        }
    }
    conn.conn()
        .write(None, &inserts, Frame::Commit)
        .await
        .map_err(conflict_on_unique)?;
    Ok(NewWrites::Written(rows))
}

/// The lookup of already-stored idempotency keys: one `form_id = … AND idempotency_key IN (…)`
/// group per form, so each group is a range probe of the `UNIQUE (form_id, idempotency_key)`
/// index on both engines (a bare `idempotency_key IN (…)` cannot use it and scans every
/// submission). Forms appear in the order of their first item, so the text repeats.
pub(super) fn idempotency_lookup<'a>(
    dialect: &Dialect,
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Sql {
    let mut by_form: Vec<(&str, Vec<&str>)> = Vec::new();
    for (form, key) in keys {
        match by_form.iter_mut().find(|(f, _)| *f == form) {
            Some((_, keys)) => keys.push(key),
            None => by_form.push((form, vec![key])),
        }
    }
    let mut sql = Sql::for_dialect(
        dialect,
        "SELECT form_id, idempotency_key, id, lead_id, payload_hash FROM submissions WHERE ".into(),
    );
    for (n, (form, mut keys)) in by_form.into_iter().enumerate() {
        if n > 0 {
            sql.push(" OR ");
        }
        // Padded (with a repeat) to a power of two from 8, so few statement texts occur and
        // they stay prepared.
        let padded = keys.len().next_power_of_two().max(8);
        let first = keys[0];
        keys.resize(padded, first);
        sql.push("(form_id = ").bind_text(form);
        sql.push(" AND idempotency_key IN (")
            .bind_list(keys)
            .push("))");
    }
    sql
}

/// What [`LeadStore::write_new`] did.
enum NewWrites {
    /// `(submission id, lead id)` per write, committed.
    Written(Vec<(String, String)>),
    /// Nothing: these keys were stored already (the transaction was rolled back).
    Replayed(HashMap<(String, String), Stored>),
}

/// A submission an idempotency key already names, and the payload fingerprint it was stored
/// with (none for rows older than fingerprints).
type Stored = (Recorded, Option<String>);

/// A stored key's answer for `sub`: a replay when `sub` is the same payload, else
/// [`StoreError::KeyReused`].
fn replay_for(sub: &NewSubmission, (recorded, hash): &Stored) -> Result<Recorded, StoreError> {
    match hash {
        Some(h) if *h != sub.payload_fingerprint() => Err(StoreError::KeyReused),
        _ => Ok(recorded.clone()),
    }
}

/// A row of [`idempotency_lookup`].
#[derive(sqlx::FromRow)]
struct ReplayRow {
    form_id: String,
    idempotency_key: String,
    id: String,
    lead_id: String,
    payload_hash: Option<String>,
}

/// The rows of [`idempotency_lookup`], by (form, key).
fn replays(rows: Vec<ReplayRow>) -> HashMap<(String, String), Stored> {
    rows.into_iter()
        .map(|r| {
            (
                (r.form_id, r.idempotency_key),
                (
                    Recorded {
                        submission_id: r.id,
                        lead_id: r.lead_id,
                        replayed: true,
                    },
                    r.payload_hash,
                ),
            )
        })
        .collect()
}

/// Answers each keyed item whose key was found stored.
fn fill_replays(
    results: &mut [Option<Result<Recorded, StoreError>>],
    items: &[BatchItem<'_>],
    keyed: &[usize],
    found: &HashMap<(String, String), Stored>,
) {
    for &i in keyed {
        let (form, key) = key_of(items[i].sub);
        if let Some(stored) = found.get(&(form.to_string(), key.to_string())) {
            results[i] = Some(replay_for(items[i].sub, stored));
        }
    }
}

/// A submission's `(form, idempotency key)`; the key is empty when it has none.
fn key_of(sub: &NewSubmission) -> (&str, &str) {
    let key = sub.idempotency_key.as_ref().map_or("", |k| k.as_str());
    (sub.form_id.as_str(), key)
}

pub(super) const FIND_IDEMPOTENT: &str = "SELECT id, lead_id, payload_hash FROM submissions \
     WHERE form_id = $1 AND idempotency_key = $2";

/// The submission an idempotency key already names, if any.
async fn find_idempotent(
    exec: Exec<'_>,
    sub: &NewSubmission,
) -> Result<Option<Recorded>, StoreError> {
    let (form_id, key) = key_of(sub);
    let sql = Sql::fixed(FIND_IDEMPOTENT).arg(form_id).arg(key);
    let row: Option<(String, String, Option<String>)> = exec.fetch_optional(&sql).await?;
    row.map(|(submission_id, lead_id, hash)| {
        let recorded = Recorded {
            submission_id,
            lead_id,
            replayed: true,
        };
        replay_for(sub, &(recorded, hash))
    })
    .transpose()
}

/// The batch's lead upserts, one row per distinct email (PostgreSQL refuses to update one row
/// twice in one statement, so counts are summed here first), and the id proposed for each
/// email: the stored id differs when the lead existed before.
fn lead_upserts<'a>(
    items: &[BatchItem<'a>],
    writes: &[usize],
    tail: &'static str,
) -> (Insert<'a>, Vec<(&'a str, String)>) {
    struct Agg<'a> {
        email: &'a str,
        first_ms: i64,
        last_ms: i64,
        count: i64,
        real: i64,
    }
    let mut aggs: Vec<Agg<'a>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for &i in writes {
        let sub = items[i].sub;
        let real = i64::from(!sub.quarantined());
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
    let mut insert = Insert::new(
        "leads",
        &[
            "id",
            "email",
            "created_at",
            "updated_at",
            "submission_count",
            "real_submission_count",
        ],
        tail,
    );
    let mut proposed = Vec::with_capacity(aggs.len());
    for a in aggs {
        let id = Uuid::now_v7().to_string();
        insert.row([
            id.clone().into(),
            a.email.into(),
            a.first_ms.into(),
            a.last_ms.into(),
            a.count.into(),
            a.real.into(),
        ]);
        proposed.push((a.email, id));
    }
    (insert, proposed)
}

/// Everything a batch writes after its leads: submissions, outbox messages (the follow-up
/// window looked up for the leads that existed before the batch, or for `everyone` in a small
/// batch), consent ledger entries, download links and,
/// when `events` are on, each submission's integration event.
async fn dependent_inserts<'a>(
    exec: Exec<'_>,
    items: &[BatchItem<'a>],
    writes: &[usize],
    rows: &'a [(String, String)],
    (existing, everyone): (&HashSet<&str>, bool),
    events: bool,
) -> Result<Vec<Insert<'a>>, StoreError> {
    let mut inserts = vec![submission_inserts(items, writes, rows)];
    inserts.push(
        super::outbox::batch_messages(exec, items, writes, rows, (existing, everyone)).await?,
    );
    inserts.extend(super::ledger::batch_extras(items, writes, rows));
    if events {
        inserts.push(super::qualification::batch_events(
            items, writes, rows, existing,
        ));
    }
    Ok(inserts)
}

/// Batches of at most this many submissions take the same statements for new and known people
/// (see [`write_new`]): a probe sent alone. Every submission of a larger batch is answered at
/// the batch's end, so one person's path hides in the others'; those take the fastest path for
/// each (PostgreSQL writes several batches at once, so its batches are often small under load,
/// and measured 8,131 req/s with this at 8 against 11,024 before).
const EQUAL_TIMING_BATCH: usize = 1;

/// The only unique constraint a new submission row can break: another writer committed the
/// same idempotency key since the lookup.
fn conflict_on_unique(e: StoreError) -> StoreError {
    match e {
        StoreError::Other(sqlx::Error::Database(db))
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
        {
            StoreError::Conflict
        }
        other => other,
    }
}

/// The batch's submission rows. No `ON CONFLICT`: a key that another writer committed since the
/// lookup breaks the unique constraint and fails the batch with [`StoreError::Conflict`].
fn submission_inserts<'a>(
    items: &[BatchItem<'a>],
    writes: &[usize],
    rows: &'a [(String, String)],
) -> Insert<'a> {
    let mut insert = Insert::new(
        "submissions",
        &[
            "id",
            "lead_id",
            "form_id",
            "email",
            "fields",
            "extra",
            "spam_reason",
            "spam_score",
            "spam_signals",
            "idempotency_key",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "referrer",
            "landing_page",
            "user_agent",
            "attribution",
            "client_ip",
            "created_at",
            "confirmation",
            "confirm_expires_at",
            "payload_hash",
            "source",
            "campaign",
            "name_key",
            "company_key",
        ],
        "",
    );
    for (&i, (id, lead_id)) in writes.iter().zip(rows) {
        let sub = items[i].sub;
        let a = &sub.attribution;
        let [source, medium, campaign, term, content, referrer, landing, agent] =
            a.columns().map(|(_, v)| Val::from(v));
        let (confirmation, expires) = match sub.confirmation {
            Confirmation::NotRequired => ("none", None),
            Confirmation::Pending { expires_at_ms } => ("pending", Some(expires_at_ms)),
        };
        insert.row([
            id.as_str().into(),
            lead_id.as_str().into(),
            sub.form_id.as_str().into(),
            sub.email.as_str().into(),
            json(&sub.fields).into(),
            json(&sub.extra).into(),
            sub.quarantined().then(|| sub.spam.to_string()).into(),
            (!sub.spam.is_empty())
                .then(|| i64::from(sub.spam.score()))
                .into(),
            (!sub.spam.is_empty()).then(|| sub.spam.to_string()).into(),
            sub.idempotency_key.as_ref().map(|k| k.as_str()).into(),
            source,
            medium,
            campaign,
            term,
            content,
            referrer,
            landing,
            agent,
            json(a).into(),
            sub.client_ip.as_ref().map(|ip| ip.as_str()).into(),
            sub.received_at_ms.into(),
            confirmation.into(),
            expires.into(),
            sub.idempotency_key
                .as_ref()
                .map(|_| sub.payload_fingerprint())
                .into(),
            a.source().into(),
            a.campaign().into(),
            search_field(sub, "name").into(),
            search_field(sub, "company").into(),
        ]);
    }
    insert
}

/// A text field's search key (see [`crate::domain::search_key`]).
fn search_field(sub: &NewSubmission, name: &str) -> Option<String> {
    match sub.fields.get(name) {
        Some(crate::domain::FieldValue::Text(t)) => crate::domain::search_key(t),
        _ => None,
    }
}

/// A writer connection held across batches. One that is dropped inside a transaction (a
/// rollback that failed, or a cancelled future) or after the database became unreachable is
/// closed rather than handed back to the pool.
pub struct WriteConn {
    conn: Pooled,
    open: bool,
    broken: bool,
}

impl WriteConn {
    /// False once an error showed the connection cannot be trusted; take a new one.
    pub fn is_usable(&self) -> bool {
        !self.open && !self.broken
    }

    fn check_store<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            self.broken |= e.is_unavailable();
        }
        r
    }
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        if self.open || self.broken {
            self.conn.close_on_drop();
        }
    }
}

fn json(v: &impl serde::Serialize) -> String {
    // Serialising maps of strings cannot fail; an empty object is the safe fallback anyway.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
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
