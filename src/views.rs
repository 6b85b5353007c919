//! Form views, counted without cookies or stored identifiers. The embed script reports a view
//! when a form becomes visible (`POST /v1/forms/{id}/views`, by `navigator.sendBeacon`); the
//! server keeps only counters per day × form × source × campaign.
//!
//! Daily-unique views: a keyed hash (HMAC-SHA256 under a random salt made each UTC day and
//! never written anywhere) of the form, the truncated client IP and the user agent, held in a
//! bounded set in memory for that day only. Past the bound a view counts as unique (the count
//! can only be too high, never leak). Visitors who send `Sec-GPC: 1` or `DNT: 1` are counted as
//! private views: no hash is made for them at all.
//!
//! Counters are added in memory and written every `views.flush_secs` (and at shutdown), so a
//! busy landing page costs a map update per view, not a database write. A crash loses at most
//! that many seconds of view counts (never a lead). Each instance keeps its own salt and set:
//! behind several instances a visitor seen by two of them counts twice that day.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Most distinct visitors remembered per day (a `u64` each): past it, views count as unique.
pub const MAX_SEEN: usize = 250_000;
/// Most distinct (form, source, campaign) counters a day (sources and campaigns come from
/// visitors' URLs, so a script could invent new ones forever): past it, new ones are counted
/// under `(other)`. Bounds both memory and the rows a day adds to `form_views`.
pub const MAX_KEYS: usize = 5_000;
/// The source and campaign a view is counted under when [`MAX_KEYS`] is reached.
pub const OTHER: &str = "(other)";

const DAY_MS: i64 = 86_400_000;

/// What one counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewKey {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub form_id: String,
    pub source: String,
    /// Empty: no campaign.
    pub campaign: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewCount {
    pub views: i64,
    pub unique_views: i64,
    pub private_views: i64,
}

impl ViewCount {
    fn add(&mut self, other: ViewCount) {
        self.views += other.views;
        self.unique_views += other.unique_views;
        self.private_views += other.private_views;
    }
}

/// Who viewed, as far as uniqueness needs it.
pub enum Visitor<'a> {
    /// The truncated client IP (or none) and the user agent.
    Counted {
        ip: Option<&'a str>,
        user_agent: &'a str,
    },
    /// Asked not to be tracked (Sec-GPC / DNT): counted, never hashed.
    Private,
}

struct Day {
    day: i64,
    salt: [u8; 32],
    seen: HashSet<u64>,
    /// The (form, source, campaign) counters this day has, as keyed hashes.
    keys: HashSet<u64>,
}

impl Day {
    fn new(day: i64) -> Day {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Day {
            day,
            salt,
            seen: HashSet::new(),
            keys: HashSet::new(),
        }
    }
}

/// The counters waiting to be written, and today's visitors.
pub struct ViewCounter {
    today: Mutex<Day>,
    counts: Mutex<HashMap<ViewKey, ViewCount>>,
}

impl Default for ViewCounter {
    fn default() -> Self {
        ViewCounter {
            today: Mutex::new(Day::new(0)),
            counts: Mutex::new(HashMap::new()),
        }
    }
}

impl ViewCounter {
    /// Counts one view of `form_id` at `now_ms`.
    pub fn record(
        &self,
        now_ms: i64,
        form_id: &str,
        source: String,
        campaign: Option<String>,
        visitor: &Visitor<'_>,
    ) {
        let day = now_ms.div_euclid(DAY_MS);
        let mut count = ViewCount {
            views: 1,
            ..ViewCount::default()
        };
        let mut key = ViewKey {
            day,
            form_id: form_id.to_string(),
            source,
            campaign: campaign.unwrap_or_default(),
        };
        {
            let Ok(mut today) = self.today.lock() else {
                return;
            };
            if today.day != day {
                *today = Day::new(day);
            }
            let Ok(mac) = Hmac::<Sha256>::new_from_slice(&today.salt) else {
                return;
            };
            let short = |mac: Hmac<Sha256>, parts: [&str; 3]| {
                let mut mac = mac;
                for part in parts {
                    mac.update(part.as_bytes());
                    mac.update(&[0]);
                }
                let digest = mac.finalize().into_bytes();
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest[..8]);
                u64::from_le_bytes(first)
            };
            let counter = short(mac.clone(), [&key.form_id, &key.source, &key.campaign]);
            if !today.keys.contains(&counter) {
                if today.keys.len() >= MAX_KEYS {
                    key.source = OTHER.into();
                    key.campaign = OTHER.into();
                } else {
                    today.keys.insert(counter);
                }
            }
            match visitor {
                Visitor::Private => count.private_views = 1,
                Visitor::Counted { ip, user_agent } => {
                    let id = short(mac, [form_id, ip.unwrap_or(""), user_agent]);
                    let new = if today.seen.len() >= MAX_SEEN {
                        !today.seen.contains(&id)
                    } else {
                        today.seen.insert(id)
                    };
                    count.unique_views = i64::from(new);
                }
            }
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        counts.entry(key).or_default().add(count);
    }

    /// Takes every counter for writing.
    pub fn take(&self) -> Vec<(ViewKey, ViewCount)> {
        self.counts
            .lock()
            .map(|mut c| c.drain().collect())
            .unwrap_or_default()
    }

    /// Puts counters back after a failed write (they are written with the next ones).
    pub fn restore(&self, items: Vec<(ViewKey, ViewCount)>) {
        if let Ok(mut counts) = self.counts.lock() {
            for (key, count) in items {
                counts.entry(key).or_default().add(count);
            }
        }
    }

    /// Distinct visitors remembered today (memory use; a metric).
    pub fn visitors_today(&self) -> usize {
        self.today.lock().map(|d| d.seen.len()).unwrap_or(0)
    }
}

/// Writes the waiting counters; on failure they stay for the next attempt.
pub async fn flush(
    counter: &ViewCounter,
    store: &crate::store::LeadStore,
) -> Result<usize, crate::store::StoreError> {
    let items = counter.take();
    if items.is_empty() {
        return Ok(0);
    }
    let n = items.len();
    match store.add_views(&items).await {
        Ok(()) => Ok(n),
        Err(e) => {
            counter.restore(items);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted<'a>(ip: &'a str, ua: &'a str) -> Visitor<'a> {
        Visitor::Counted {
            ip: Some(ip),
            user_agent: ua,
        }
    }

    #[test]
    fn a_visitor_counts_once_a_day_per_form() {
        let c = ViewCounter::default();
        let t = 20_000 * DAY_MS + 1000;
        for _ in 0..3 {
            c.record(
                t,
                "contact",
                "google".into(),
                None,
                &counted("192.0.2.0", "UA"),
            );
        }
        c.record(
            t,
            "newsletter",
            "google".into(),
            None,
            &counted("192.0.2.0", "UA"),
        );
        c.record(
            t,
            "contact",
            "google".into(),
            None,
            &counted("192.0.2.0", "Other"),
        );
        c.record(t, "contact", "google".into(), None, &Visitor::Private);
        // The next day the same visitor is new again.
        c.record(
            t + DAY_MS,
            "contact",
            "google".into(),
            None,
            &counted("192.0.2.0", "UA"),
        );
        let mut items = c.take();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let counts: Vec<(i64, &str, ViewCount)> = items
            .iter()
            .map(|(k, v)| (k.day, k.form_id.as_str(), *v))
            .collect();
        assert_eq!(
            counts,
            vec![
                (
                    20_000,
                    "contact",
                    ViewCount {
                        views: 5,
                        unique_views: 2,
                        private_views: 1
                    }
                ),
                (
                    20_000,
                    "newsletter",
                    ViewCount {
                        views: 1,
                        unique_views: 1,
                        private_views: 0
                    }
                ),
                (
                    20_001,
                    "contact",
                    ViewCount {
                        views: 1,
                        unique_views: 1,
                        private_views: 0
                    }
                ),
            ]
        );
        assert!(c.take().is_empty());
    }

    #[test]
    fn memory_is_bounded_whatever_a_script_sends() {
        let c = ViewCounter::default();
        for i in 0..(MAX_KEYS + 100) {
            c.record(0, "contact", format!("source-{i}"), None, &Visitor::Private);
        }
        let items = c.take();
        assert_eq!(items.len(), MAX_KEYS + 1, "the rest counted under (other)");
        let other = items.iter().find(|(k, _)| k.source == OTHER).unwrap();
        assert_eq!(other.1.views, 100);
        // The bound is per day, not per write: after a write, new sources still go to (other),
        // while the day's known ones keep their own counters.
        c.record(0, "contact", "brand-new".into(), None, &Visitor::Private);
        c.record(0, "contact", "source-7".into(), None, &Visitor::Private);
        let mut items = c.take();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let sources: Vec<&str> = items.iter().map(|(k, _)| k.source.as_str()).collect();
        assert_eq!(sources, [OTHER, "source-7"]);
        // The next day starts afresh.
        c.record(
            DAY_MS,
            "contact",
            "brand-new".into(),
            None,
            &Visitor::Private,
        );
        assert_eq!(c.take()[0].0.source, "brand-new");
        for i in 0..(MAX_SEEN + 10) {
            c.record(
                0,
                "contact",
                "x".into(),
                None,
                &counted(&i.to_string(), "UA"),
            );
        }
        assert_eq!(c.visitors_today(), MAX_SEEN);
        let items = c.take();
        assert_eq!(
            items[0].1.unique_views,
            (MAX_SEEN + 10) as i64,
            "past the bound: unique"
        );
    }
}
