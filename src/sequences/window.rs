//! The send window: weekdays and hours in a time zone (the sequence's, or the lead's own when
//! a form field names one). A step that falls due outside it waits for the next opening.

use chrono::{Datelike, Duration, NaiveTime, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

use crate::config::WindowConfig;

#[derive(Debug, Clone)]
pub struct Window {
    /// Monday = 0.
    days: [bool; 7],
    /// Minutes after local midnight.
    from_min: u32,
    until_min: u32,
    pub zone: Tz,
    pub lead_zone_field: Option<String>,
}

fn minutes(text: &str) -> Option<u32> {
    if text == "24:00" {
        return Some(24 * 60);
    }
    let t = NaiveTime::parse_from_str(text, "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

impl Window {
    /// Compiles a window; errors name the key (`days`, `from`, …) and say what is wrong.
    pub fn compile(c: &WindowConfig) -> Result<Window, (&'static str, String)> {
        let mut days = [false; 7];
        for d in &c.days {
            let day: Weekday = d
                .parse()
                .map_err(|_| ("days", format!("'{d}' is not a weekday (mon … sun)")))?;
            days[day.num_days_from_monday() as usize] = true;
        }
        if !days.iter().any(|d| *d) {
            return Err(("days", "at least one weekday".into()));
        }
        let from_min =
            minutes(&c.from).ok_or(("from", format!("'{}' is not a time (HH:MM)", c.from)))?;
        let until_min =
            minutes(&c.until).ok_or(("until", format!("'{}' is not a time (HH:MM)", c.until)))?;
        if until_min <= from_min {
            return Err(("until", "must be later than `from`".into()));
        }
        let zone: Tz = c.time_zone.parse().map_err(|_| {
            (
                "time_zone",
                format!("'{}' is not an IANA time zone", c.time_zone),
            )
        })?;
        Ok(Window {
            days,
            from_min,
            until_min,
            zone,
            lead_zone_field: c.lead_time_zone_field.clone(),
        })
    }

    /// The first moment at or after `at_ms` inside the window, in `zone` (default: the
    /// window's own).
    pub fn next_open(&self, at_ms: i64, zone: Option<Tz>) -> i64 {
        let zone = zone.unwrap_or(self.zone);
        let Some(utc) = chrono::DateTime::from_timestamp_millis(at_ms) else {
            return at_ms;
        };
        let local = utc.with_timezone(&zone);
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday().num_days_from_monday() as usize;
        if self.days[today] && minute >= self.from_min && minute < self.until_min {
            return at_ms;
        }
        // Today (if before the opening) or the next open day, at the opening time.
        for ahead in 0..8i64 {
            let date = local.date_naive() + Duration::days(ahead);
            let day = date.weekday().num_days_from_monday() as usize;
            if !self.days[day] || (ahead == 0 && minute >= self.from_min) {
                continue;
            }
            let open = date.and_hms_opt(self.from_min / 60, self.from_min % 60, 0);
            // A gap in local time (a DST change at the opening hour): the first moment after.
            let resolved = open.and_then(|o| {
                zone.from_local_datetime(&o).earliest().or_else(|| {
                    zone.from_local_datetime(&(o + Duration::hours(1)))
                        .earliest()
                })
            });
            if let Some(t) = resolved {
                return t.timestamp_millis().max(at_ms);
            }
        }
        at_ms
    }

    /// Says the window in words ("Mon–Fri 08:00–18:00 UTC").
    pub fn describe(&self) -> String {
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let days: Vec<&str> = NAMES
            .iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        let days = if days.len() == 7 {
            "every day".to_string()
        } else {
            days.join(", ")
        };
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let zone = match &self.lead_zone_field {
            Some(f) => format!("{} (or the lead's own zone from field '{f}')", self.zone),
            None => self.zone.to_string(),
        };
        format!(
            "{days}, {}–{} {zone}",
            hm(self.from_min),
            hm(self.until_min)
        )
    }
}
