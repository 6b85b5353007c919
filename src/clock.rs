//! The application's clock: wall time, or wall time plus an offset a test moves forward.
//!
//! Everything that decides by time (link expiry, confirmation windows, retention cut-offs,
//! retry schedules, download renewal) reads this clock, built once with the application, so a
//! test can jump 72 hours ahead without sleeping. Outbox leases are the exception on purpose:
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

    /// The wall clock, movable forward by [`Clock::advance`] (tests).
    pub fn adjustable() -> Clock {
        Clock {
            offset_ms: Some(Arc::new(AtomicI64::new(0))),
        }
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

    /// Moves an adjustable clock forward. The production clock cannot be moved: a call on it
    /// is a programming error and panics.
    pub fn advance(&self, by: Duration) {
        let offset = self
            .offset_ms
            .as_ref()
            .expect("only an adjustable clock can be advanced");
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        offset.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_for_every_clone() {
        let clock = Clock::adjustable();
        let copy = clock.clone();
        let before = clock.now_ms();
        copy.advance(Duration::from_secs(72 * 3600));
        let after = clock.now_ms();
        assert!(after - before >= 72 * 3_600_000, "{}", after - before);
        assert!(after - before < 72 * 3_600_000 + 60_000);
        assert!(clock.now_secs() >= u64::try_from(after / 1000).unwrap());
    }

    #[test]
    #[should_panic(expected = "adjustable")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
