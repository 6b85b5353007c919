//! Reports: form views, submissions, spam, confirmations and downloads per UTC day and per
//! form, source or campaign, and the follow-ups' delivery, over a range of days.

use super::sql::Sql;
use super::{LeadStore, StoreError};

pub const DAY_MS: i64 = 86_400_000;

/// What a report is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Form,
    Source,
    UtmCampaign,
}

impl GroupBy {
    /// The column on `form_views`, and the expression on `submissions s` (rows written before
    /// sources were stored fall back to their `utm_*` value).
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
}

/// Follow-up delivery over the range, and the oldest message still waiting (any range).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub sent: i64,
    pub waiting: i64,
    pub failed: i64,
    pub dead: i64,
    pub skipped: i64,
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

#[derive(sqlx::FromRow)]
struct SubmissionRow {
    day: i64,
    grp: String,
    submissions: i64,
    spam: i64,
    pending: i64,
    confirmed: i64,
    downloads_used: i64,
}

impl LeadStore {
    /// Every (day, group) with a view or a submission in `[from_day, to_day)` (days since the
    /// epoch, UTC), sorted by day then group.
    pub async fn day_figures(
        &self,
        from_day: i64,
        to_day: i64,
        group_by: GroupBy,
    ) -> Result<Vec<DayFigures>, StoreError> {
        let (view_col, sub_expr) = group_by.columns();
        let sql = Sql::fixed(format!(
            "SELECT day, {view_col} AS grp, CAST(SUM(views) AS BIGINT) AS views, \
               CAST(SUM(unique_views) AS BIGINT) AS unique_views, \
               CAST(SUM(private_views) AS BIGINT) AS private_views \
             FROM form_views WHERE day >= $1 AND day < $2 GROUP BY day, {view_col}"
        ))
        .arg(from_day)
        .arg(to_day);
        let views: Vec<ViewRow> = self.pools.reader().fetch_all(&sql).await?;
        let sql = Sql::fixed(format!(
            "SELECT CAST(s.created_at / {DAY_MS} AS BIGINT) AS day, {sub_expr} AS grp, \
               CAST(SUM(CASE WHEN s.spam_reason IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS submissions, \
               CAST(SUM(CASE WHEN s.spam_reason IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS spam, \
               CAST(SUM(CASE WHEN s.spam_reason IS NULL AND s.confirmation = 'pending' \
                 THEN 1 ELSE 0 END) AS BIGINT) AS pending, \
               CAST(SUM(CASE WHEN s.spam_reason IS NULL AND s.confirmation = 'confirmed' \
                 THEN 1 ELSE 0 END) AS BIGINT) AS confirmed, \
               CAST(SUM(CASE WHEN d.download_count > 0 THEN 1 ELSE 0 END) AS BIGINT) \
                 AS downloads_used \
             FROM submissions s LEFT JOIN downloads d ON d.id = s.id \
             WHERE s.created_at >= $1 AND s.created_at < $2 GROUP BY 1, 2"
        ))
        .arg(from_day.saturating_mul(DAY_MS))
        .arg(to_day.saturating_mul(DAY_MS));
        let subs: Vec<SubmissionRow> = self.pools.reader().fetch_all(&sql).await?;
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
        }
        Ok(out
            .into_iter()
            .map(|((day, group), f)| DayFigures { day, group, ..f })
            .collect())
    }

    /// Follow-ups of submissions made in `[from_day, to_day)`, by state (through the
    /// submissions' time index and the outbox's submission index),, and the oldest waiting message.
    pub async fn follow_up_delivery(
        &self,
        from_day: i64,
        to_day: i64,
    ) -> Result<Delivery, StoreError> {
        let sql = Sql::fixed(
            "SELECT o.status, COUNT(*) FROM submissions s \
               JOIN outbox o ON o.submission_id = s.id AND o.kind = 'follow_up' \
             WHERE s.created_at >= $1 AND s.created_at < $2 GROUP BY o.status",
        )
        .arg(from_day.saturating_mul(DAY_MS))
        .arg(to_day.saturating_mul(DAY_MS));
        let rows: Vec<(String, i64)> = self.pools.reader().fetch_all(&sql).await?;
        let mut d = Delivery::default();
        for (status, n) in rows {
            match status.as_str() {
                "sent" => d.sent = n,
                "pending" => d.waiting = n,
                "failed" => d.failed = n,
                "dead" => d.dead = n,
                _ => d.skipped += n,
            }
        }
        d.oldest_waiting_ms = self.outbox_stats().await?.oldest_waiting_ms;
        Ok(d)
    }
}
