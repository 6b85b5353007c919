//! Reports: form views, submissions, spam, confirmations and downloads per UTC day and per
//! form, source or campaign, and the follow-ups' delivery, over a range of days.

use super::sql::Sql;
use super::{LeadStore, StoreError};

pub const DAY_MS: i64 = 86_400_000;

/// What a report is broken down by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Form,
    Source,
    UtmCampaign,
}

impl GroupBy {
    /// The column on `form_views` and `submission_days`, and the expression on
    /// `submissions s` (rows written before sources were stored fall back to their `utm_*`
    /// value).
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            GroupBy::Form => ("form_id", "s.form_id"),
            GroupBy::Source => (
                "source",
                "COALESCE(s.source, LOWER(NULLIF(s.utm_source, '')), 'direct')",
            ),
            GroupBy::UtmCampaign => (
                "campaign",
                "COALESCE(s.campaign, LOWER(NULLIF(s.utm_campaign, '')), '')",
            ),
        }
    }
}

/// One day's figures for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayFigures {
    pub day: i64,
    pub group: String,
    pub views: i64,
    pub unique_views: i64,
    pub private_views: i64,
    /// Submissions not quarantined as spam.
    pub submissions: i64,
    /// Quarantined as spam.
    pub spam: i64,
    /// Double opt-in submissions waiting, and confirmed.
    pub pending: i64,
    pub confirmed: i64,
    /// Download links used at least once.
    pub downloads_used: i64,
    /// Follow-ups sent (to the day's submissions).
    pub follow_ups_sent: i64,
}

/// The outbox right now: messages waiting, retrying and given up, and the oldest waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub waiting: i64,
    pub failed: i64,
    pub dead: i64,
    pub oldest_waiting_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ViewRow {
    day: i64,
    grp: String,
    views: i64,
    unique_views: i64,
    private_views: i64,
}

/// What a day's rollup groups by, from `submissions s` (rows written before sources were
/// stored fall back to their `utm_*` value).
const DAY_GROUPS: &str = "s.form_id, \
    COALESCE(s.source, LOWER(NULLIF(s.utm_source, '')), 'direct'), \
    COALESCE(s.campaign, LOWER(NULLIF(s.utm_campaign, '')), '')";

/// What a day's rollup counts, from `submissions s`, `downloads d` and `outbox o` as
/// [`day_source`] joins them.
const DAY_COUNTS: &str = "\
    CAST(SUM(CASE WHEN s.spam_reason IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS submissions, \
    CAST(SUM(CASE WHEN s.spam_reason IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS spam, \
    CAST(SUM(CASE WHEN s.spam_reason IS NULL AND s.confirmation = 'pending' \
      THEN 1 ELSE 0 END) AS BIGINT) AS pending, \
    CAST(SUM(CASE WHEN s.spam_reason IS NULL AND s.confirmation = 'confirmed' \
      THEN 1 ELSE 0 END) AS BIGINT) AS confirmed, \
    CAST(SUM(CASE WHEN d.download_count > 0 THEN 1 ELSE 0 END) AS BIGINT) AS downloads_used, \
    CAST(SUM(CASE WHEN o.id IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS follow_ups_sent";

/// The submissions made between the placeholders `from` and `to` (ms), each with its
/// download and its sent follow-up (one per submission at most): through the submissions'
/// time index and the downloads' and outbox's submission keys.
fn day_source(from: &str, to: &str) -> String {
    format!(
        "FROM submissions s LEFT JOIN downloads d ON d.id = s.id \
         LEFT JOIN outbox o ON o.submission_id = s.id AND o.kind = 'follow_up' \
           AND o.status = 'sent' \
         WHERE s.created_at >= {from} AND s.created_at < {to} \
           AND COALESCE(s.source, '') <> '{}'",
        crate::domain::IMPORT_SOURCE
    )
}

/// A day is settled (its writes are done) this long after it ends: a batch stamped just before
/// midnight commits within milliseconds, so five minutes is far on the safe side.
pub const SETTLE_MS: i64 = 5 * 60_000;

/// The first day still counted live at `now_ms`: today, and yesterday during the first
/// [`SETTLE_MS`] after midnight (UTC). Days before it come from the rollup.
pub fn first_live_day(now_ms: i64) -> i64 {
    (now_ms - SETTLE_MS).div_euclid(DAY_MS)
}

/// Forgets the rollup of the day submission `$1` was made (something in it changed).
pub(super) fn dirty_day_of_submission(submission_id: &str) -> Sql {
    Sql::fixed(format!(
        "DELETE FROM rollup_days WHERE day = \
         (SELECT CAST(created_at / {DAY_MS} AS BIGINT) FROM submissions WHERE id = $1)"
    ))
    .arg(submission_id)
}

/// Forgets the rollups of every day lead `$1` submitted on.
pub(super) fn dirty_days_of_lead(lead_id: &str) -> Sql {
    Sql::fixed(format!(
        "DELETE FROM rollup_days WHERE day IN \
         (SELECT CAST(created_at / {DAY_MS} AS BIGINT) FROM submissions WHERE lead_id = $1)"
    ))
    .arg(lead_id)
}

#[derive(sqlx::FromRow)]
struct Counted {
    day: i64,
    grp: String,
    submissions: i64,
    spam: i64,
    pending: i64,
    confirmed: i64,
    downloads_used: i64,
    follow_ups_sent: i64,
}

impl LeadStore {
    /// Counts day `day` into the rollup again (one transaction; the day's submissions through
    /// their time index).
    pub async fn roll_up_day(&self, day: i64, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pools.begin().await?;
        tx.exec()
            .execute(&Sql::fixed("DELETE FROM submission_days WHERE day = $1").arg(day))
            .await?;
        let sql = Sql::fixed(format!(
            "INSERT INTO submission_days (day, form_id, source, campaign, submissions, spam, \
               pending, confirmed, downloads_used, follow_ups_sent) \
             SELECT CAST($1 AS BIGINT), {DAY_GROUPS}, {DAY_COUNTS} {} GROUP BY 2, 3, 4",
            day_source("$2", "$3")
        ))
        .arg(day)
        .arg(day.saturating_mul(DAY_MS))
        .arg((day + 1).saturating_mul(DAY_MS));
        tx.exec().execute(&sql).await?;
        let sql = Sql::fixed(
            "INSERT INTO rollup_days (day, computed_at) VALUES ($1, $2) \
             ON CONFLICT (day) DO UPDATE SET computed_at = excluded.computed_at",
        )
        .arg(day)
        .arg(now_ms);
        tx.exec().execute(&sql).await?;
        tx.commit().await
    }

    /// Rolls up the settled days in `[from_day, to_day)` that are not (yet, or any more);
    /// returns how many it counted.
    pub async fn roll_up_missing(
        &self,
        from_day: i64,
        to_day: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let to_day = to_day.min(first_live_day(now_ms));
        if from_day >= to_day {
            return Ok(0);
        }
        let sql = Sql::fixed("SELECT day FROM rollup_days WHERE day >= $1 AND day < $2")
            .arg(from_day)
            .arg(to_day);
        let done: Vec<(i64,)> = self.pools.reader().fetch_all(&sql).await?;
        let done: std::collections::HashSet<i64> = done.into_iter().map(|(d,)| d).collect();
        let mut counted = 0;
        for day in (from_day..to_day).filter(|d| !done.contains(d)) {
            self.roll_up_day(day, now_ms).await?;
            counted += 1;
        }
        Ok(counted)
    }

    /// Every (day, group) with a view or a submission in `[from_day, to_day)` (days since the
    /// epoch, UTC), of one form or all, sorted by day then group. Settled days are read from
    /// the rollup (counted first where missing), the live ones ([`first_live_day`]) from the
    /// submissions
    /// themselves.
    pub async fn day_figures(
        &self,
        from_day: i64,
        to_day: i64,
        group_by: GroupBy,
        form: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<DayFigures>, StoreError> {
        let (view_col, sub_expr) = group_by.columns();
        // `$3` is the form, or NULL for every form (the text stays one prepared statement).
        let one_form = |col: &str| format!("({col} = $3 OR $3 = '')");
        let form = form.unwrap_or("");
        let sql = Sql::fixed(format!(
            "SELECT day, {view_col} AS grp, CAST(SUM(views) AS BIGINT) AS views, \
               CAST(SUM(unique_views) AS BIGINT) AS unique_views, \
               CAST(SUM(private_views) AS BIGINT) AS private_views \
             FROM form_views WHERE day >= $1 AND day < $2 AND {} GROUP BY day, {view_col}",
            one_form("form_id")
        ))
        .arg(from_day)
        .arg(to_day)
        .arg(form);
        let views: Vec<ViewRow> = self.pools.reader().fetch_all(&sql).await?;
        let settled = to_day.min(first_live_day(now_ms)).max(from_day);
        self.roll_up_missing(from_day, settled, now_ms).await?;
        let sql = Sql::fixed(format!(
            "SELECT day, {view_col} AS grp, CAST(SUM(submissions) AS BIGINT) AS submissions, \
               CAST(SUM(spam) AS BIGINT) AS spam, CAST(SUM(pending) AS BIGINT) AS pending, \
               CAST(SUM(confirmed) AS BIGINT) AS confirmed, \
               CAST(SUM(downloads_used) AS BIGINT) AS downloads_used, \
               CAST(SUM(follow_ups_sent) AS BIGINT) AS follow_ups_sent \
             FROM submission_days WHERE day >= $1 AND day < $2 AND {} GROUP BY day, {view_col}",
            one_form("form_id")
        ))
        .arg(from_day)
        .arg(settled)
        .arg(form);
        let mut subs: Vec<Counted> = self.pools.reader().fetch_all(&sql).await?;
        if settled < to_day {
            // The same counts, per day and group, straight from the submissions.
            let sql = Sql::fixed(format!(
                "SELECT CAST(s.created_at / {DAY_MS} AS BIGINT) AS day, {sub_expr} AS grp, \
                   {DAY_COUNTS} {} AND {} GROUP BY 1, 2",
                day_source("$1", "$2"),
                one_form("s.form_id")
            ))
            .arg(settled.saturating_mul(DAY_MS))
            .arg(to_day.saturating_mul(DAY_MS))
            .arg(form);
            subs.extend(self.pools.reader().fetch_all::<Counted>(&sql).await?);
        }
        let mut out: std::collections::BTreeMap<(i64, String), DayFigures> =
            std::collections::BTreeMap::new();
        for v in views {
            let f = out.entry((v.day, v.grp.clone())).or_default();
            f.views += v.views;
            f.unique_views += v.unique_views;
            f.private_views += v.private_views;
        }
        for s in subs {
            let f = out.entry((s.day, s.grp.clone())).or_default();
            f.submissions += s.submissions;
            f.spam += s.spam;
            f.pending += s.pending;
            f.confirmed += s.confirmed;
            f.downloads_used += s.downloads_used;
            f.follow_ups_sent += s.follow_ups_sent;
        }
        Ok(out
            .into_iter()
            .map(|((day, group), f)| DayFigures { day, group, ..f })
            .collect())
    }

    /// Messages waiting, retrying and given up right now (any kind, any day), and the oldest
    /// waiting one: what needs attention, from the outbox's status index.
    pub async fn delivery_now(&self, now_ms: i64) -> Result<Delivery, StoreError> {
        let stats = self.outbox_stats(now_ms).await?;
        Ok(Delivery {
            waiting: stats.pending,
            failed: stats.failed,
            dead: stats.dead,
            oldest_waiting_ms: stats.oldest_waiting_ms,
        })
    }
}
