//! The application's clock: wall time, or wall time plus an offset a test moves forward.
//!
//! Everything that decides by time (link expiry, confirmation windows, retention cut-offs,
//! retry schedules, download renewal) reads this clock, built once with the application, so a
//! test can jump 72 hours ahead without sleeping (with the [`ClockHand`] only
//! [`Clock::adjustable`] hands out). Outbox leases are the exception on purpose:
//! they compare the database's clock (see `store::outbox`), which every instance shares.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Cheap to clone; clones share one offset.
#[derive(Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the wall clock; `None` for the production clock.
    offset_ms: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.offset_ms {
            None => f.write_str("Clock::system"),
            Some(o) => write!(f, "Clock::adjustable({:+} ms)", o.load(Ordering::Relaxed)),
        }
    }
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Clock {
        Clock { offset_ms: None }
    }

    /// The wall clock, and the hand that moves it forward (tests). Only this constructor
    /// hands one out, so the production clock cannot be moved at all.
    pub fn adjustable() -> (Clock, ClockHand) {
        let offset = Arc::new(AtomicI64::new(0));
        (
            Clock {
                offset_ms: Some(offset.clone()),
            },
            ClockHand(offset),
        )
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let offset = self
            .offset_ms
            .as_ref()
            .map_or(0, |o| o.load(Ordering::Relaxed));
        wall_ms().saturating_add(offset)
    }

    /// Seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        u64::try_from(self.now_ms() / 1000).unwrap_or(0)
    }
}

/// Moves the [`Clock`] it came with forward; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClockHand(Arc<AtomicI64>);

impl ClockHand {
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_for_every_clone() {
        let (clock, hand) = Clock::adjustable();
        let copy = clock.clone();
        let before = copy.now_ms();
        hand.clone().advance(Duration::from_secs(72 * 3600));
        let after = copy.now_ms();
        assert!(after - before >= 72 * 3_600_000, "{}", after - before);
        assert!(after - before < 72 * 3_600_000 + 60_000);
        assert!(clock.now_secs() >= u64::try_from(after / 1000).unwrap_or(u64::MAX));
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let wall = chrono::Utc::now().timestamp_millis();
        let now = Clock::system().now_ms();
        assert!((now - wall).abs() < 60_000, "{now} vs {wall}");
    }
}
