//! Which forms and sources turn visitors into leads: a report over a range of UTC days, per
//! day or week and per form, source or campaign, with the ratios a marketer decides with.
//! Shared by `GET /v1/admin/stats` and the console's overview (the same numbers in both).
//!
//! **Conversion** is valid submissions (not quarantined as spam) ÷ daily-unique views, where
//! daily-unique views include the private views (visitors who asked not to be tracked are
//! counted once per view: they cannot be told apart).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{DayFigures, Delivery, GroupBy};

/// Longest range a report covers (days): bounded work per request.
pub const MAX_DAYS: i64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Day,
    Week,
}

impl Granularity {
    /// The first day of the period `day` falls in (weeks start on Monday; day 0 was a Thursday).
    pub fn period_start(self, day: i64) -> i64 {
        match self {
            Granularity::Day => day,
            Granularity::Week => day - (day + 3).rem_euclid(7),
        }
    }

    fn step(self) -> i64 {
        match self {
            Granularity::Day => 1,
            Granularity::Week => 7,
        }
    }
}

/// Counts, and the ratios derived from them (absent when the denominator is zero).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub views: i64,
    pub unique_views: i64,
    pub private_views: i64,
    pub submissions: i64,
    pub spam: i64,
    pub confirmation_pending: i64,
    pub confirmed: i64,
    pub downloads_used: i64,
    /// Follow-ups sent to the period's submissions.
    pub follow_ups_sent: i64,
    /// Valid submissions ÷ daily-unique views (private views included).
    pub conversion: Option<f64>,
    /// Spam ÷ all submissions.
    pub spam_share: Option<f64>,
    /// Confirmed ÷ double opt-in submissions (pending + confirmed).
    pub confirmation_rate: Option<f64>,
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    // Counts stay far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    (b > 0).then(|| a as f64 / b as f64)
}

impl Figures {
    fn add(&mut self, d: &DayFigures) {
        self.views += d.views;
        self.unique_views += d.unique_views;
        self.private_views += d.private_views;
        self.submissions += d.submissions;
        self.spam += d.spam;
        self.confirmation_pending += d.pending;
        self.confirmed += d.confirmed;
        self.downloads_used += d.downloads_used;
        self.follow_ups_sent += d.follow_ups_sent;
    }

    fn finish(mut self) -> Figures {
        self.conversion = ratio(self.submissions, self.unique_views + self.private_views);
        self.spam_share = ratio(self.spam, self.submissions + self.spam);
        self.confirmation_rate = ratio(self.confirmed, self.confirmed + self.confirmation_pending);
        self
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Period {
    /// The period's first day (`YYYY-MM-DD`, UTC).
    pub period: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub group: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupPeriod {
    pub period: String,
    pub group: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The outbox right now (any kind, any day): what needs attention.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Outbox {
    pub waiting: i64,
    /// Failed at least once, retrying.
    pub retrying: i64,
    /// Gave up after every retry (retry them from the console or `inlet outbox retry`).
    pub dead: i64,
    /// When the oldest message still waiting was queued.
    pub oldest_waiting_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub granularity: Granularity,
    pub group_by: GroupBy,
    pub conversion_is: &'static str,
    pub totals: Figures,
    /// Every period of the range, in order (empty ones too, so charts have no gaps).
    pub periods: Vec<Period>,
    /// Every group with any activity, most valid submissions first.
    pub groups: Vec<Group>,
    /// Each group's figures per period (only where something happened).
    pub series: Vec<GroupPeriod>,
    pub outbox: Outbox,
}

/// The days `[from, to]` a request asks for: `YYYY-MM-DD` dates (UTC), inclusive; by default
/// the 30 days ending `today`. Refuses a reversed range or one over [`MAX_DAYS`].
pub fn range(from: Option<&str>, to: Option<&str>, today: i64) -> Result<(i64, i64), String> {
    let parse = |name: &str, v: &str| {
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(|d| {
                d.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp()
                    .div_euclid(86_400)
            })
            .map_err(|_| format!("{name} must be a date like 2026-12-31"))
    };
    let to = to
        .filter(|v| !v.is_empty())
        .map(|v| parse("to", v))
        .transpose()?
        .unwrap_or(today);
    let from = from
        .filter(|v| !v.is_empty())
        .map(|v| parse("from", v))
        .transpose()?
        .unwrap_or(to - 29);
    if from > to {
        return Err("from must not be after to".into());
    }
    if to - from + 1 > MAX_DAYS {
        return Err(format!("a report covers at most {MAX_DAYS} days"));
    }
    Ok((from, to))
}

/// Reads the figures for days `[from, to]` and builds the report.
pub async fn report(
    store: &crate::store::LeadStore,
    (from, to): (i64, i64),
    granularity: Granularity,
    group_by: GroupBy,
    form: Option<&str>,
    now_ms: i64,
) -> Result<Report, crate::store::StoreError> {
    let days = store
        .day_figures(from, to + 1, group_by, form, now_ms)
        .await?;
    let delivery = store.delivery_now(now_ms).await?;
    Ok(build(from, to, granularity, group_by, &days, &delivery))
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Builds the report for days `[from_day, to_day]` (inclusive) from the store's figures.
pub fn build(
    from_day: i64,
    to_day: i64,
    granularity: Granularity,
    group_by: GroupBy,
    days: &[DayFigures],
    delivery: &Delivery,
) -> Report {
    let mut totals = Figures::default();
    let mut periods: BTreeMap<i64, Figures> = BTreeMap::new();
    let mut start = granularity.period_start(from_day);
    while start <= to_day {
        periods.insert(start, Figures::default());
        start += granularity.step();
    }
    let mut groups: BTreeMap<&str, Figures> = BTreeMap::new();
    let mut series: BTreeMap<(i64, &str), Figures> = BTreeMap::new();
    for d in days {
        let p = granularity.period_start(d.day);
        totals.add(d);
        periods.entry(p).or_default().add(d);
        groups.entry(&d.group).or_default().add(d);
        series.entry((p, &d.group)).or_default().add(d);
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(g, f)| Group {
            group: g.to_string(),
            figures: f.finish(),
        })
        .collect();
    groups.sort_by(|a, b| {
        b.figures
            .submissions
            .cmp(&a.figures.submissions)
            .then(b.figures.views.cmp(&a.figures.views))
            .then(a.group.cmp(&b.group))
    });
    Report {
        from: date(from_day),
        to: date(to_day),
        granularity,
        group_by,
        conversion_is: "valid submissions ÷ daily-unique views",
        totals: totals.finish(),
        periods: periods
            .into_iter()
            .map(|(p, f)| Period {
                period: date(p),
                figures: f.finish(),
            })
            .collect(),
        groups,
        series: series
            .into_iter()
            .map(|((p, g), f)| GroupPeriod {
                period: date(p),
                group: g.to_string(),
                figures: f.finish(),
            })
            .collect(),
        outbox: Outbox {
            waiting: delivery.waiting,
            retrying: delivery.failed,
            dead: delivery.dead,
            oldest_waiting_at: delivery.oldest_waiting_ms.map(crate::export::rfc3339),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: i64, group: &str, views: i64, unique: i64, subs: i64, spam: i64) -> DayFigures {
        DayFigures {
            day,
            group: group.into(),
            views,
            unique_views: unique,
            submissions: subs,
            spam,
            ..DayFigures::default()
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-12-07 is a Monday (day 20794); 2026-12-13 the Sunday after.
        assert_eq!(date(20794), "2026-12-07");
        assert_eq!(Granularity::Week.period_start(20794), 20794);
        assert_eq!(Granularity::Week.period_start(20800), 20794);
        assert_eq!(Granularity::Week.period_start(20801), 20801);
    }

    #[test]
    fn ratios_totals_and_gapless_periods() {
        let days = [
            day(20794, "contact", 100, 50, 5, 1),
            day(20796, "contact", 40, 20, 3, 0),
            day(20796, "newsletter", 10, 10, 4, 4),
        ];
        let r = build(
            20794,
            20798,
            Granularity::Day,
            GroupBy::Form,
            &days,
            &Delivery::default(),
        );
        assert_eq!(r.periods.len(), 5, "every day, empty ones too");
        assert_eq!(r.periods[1].figures.views, 0);
        assert_eq!(r.totals.submissions, 12);
        assert_eq!(r.totals.conversion, Some(12.0 / 80.0));
        assert_eq!(r.totals.spam_share, Some(5.0 / 17.0));
        assert_eq!(r.groups[0].group, "contact");
        assert_eq!(r.groups[0].figures.conversion, Some(8.0 / 70.0));
        assert_eq!(r.groups[1].figures.spam_share, Some(0.5));
        assert_eq!(r.totals.confirmation_rate, None);
        let weekly = build(
            20794,
            20807,
            Granularity::Week,
            GroupBy::Form,
            &days,
            &Delivery::default(),
        );
        assert_eq!(weekly.periods.len(), 2);
        assert_eq!(weekly.periods[0].figures.submissions, 12);
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(range(None, None, 20794), Ok((20765, 20794)));
        assert_eq!(
            range(Some("2026-12-07"), Some("2026-12-07"), 0),
            Ok((20794, 20794))
        );
        assert!(range(Some("2026-12-08"), Some("2026-12-07"), 0).is_err());
        assert!(range(Some("2020-01-01"), Some("2026-12-07"), 0).is_err());
        assert!(range(Some("yesterday"), None, 0).is_err());
    }
}
