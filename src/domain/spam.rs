//! Spam as a score over signals, not a verdict from any one of them.
//!
//! A person whose browser autofills the form and who presses Enter at once trips the time
//! trap; that alone must not hide their lead. Each signal carries points; a submission is
//! quarantined (stored, kept visible and restorable, no mail sent) only at
//! [`QUARANTINE_AT`] points or more: a honeypot, an unverifiable challenge, or weak signals
//! together (sent very fast *and* in a burst, or fast *and* stuffed with links).

use std::fmt;

/// One piece of evidence, with its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpamSignal {
    /// The hidden field a person cannot see was filled.
    Honeypot,
    /// The form's CAPTCHA provider could not be asked.
    ChallengeUnverified,
    /// Sent within a quarter of the form's minimum time (no autofill is that fast).
    VeryFast,
    /// Sent sooner than the form's minimum time after the page loaded.
    TooFast,
    /// Links where people do not write them: a link in a name-like field, or three or more.
    Links,
    /// The client network has sent many submissions in the last minutes.
    Burst,
}

impl SpamSignal {
    pub const ALL: [SpamSignal; 6] = [
        SpamSignal::Honeypot,
        SpamSignal::ChallengeUnverified,
        SpamSignal::VeryFast,
        SpamSignal::TooFast,
        SpamSignal::Links,
        SpamSignal::Burst,
    ];

    pub fn points(self) -> u32 {
        match self {
            SpamSignal::Honeypot | SpamSignal::ChallengeUnverified => 100,
            SpamSignal::VeryFast => 50,
            SpamSignal::Links => 40,
            SpamSignal::TooFast | SpamSignal::Burst => 30,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpamSignal::Honeypot => "honeypot",
            SpamSignal::ChallengeUnverified => "challenge_unverified",
            SpamSignal::VeryFast => "very_fast",
            SpamSignal::TooFast => "too_fast",
            SpamSignal::Links => "links",
            SpamSignal::Burst => "burst",
        }
    }
}

/// Points at which a submission is quarantined.
pub const QUARANTINE_AT: u32 = 70;

/// The signals one submission showed (each at most once), strongest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpamSignals(Vec<SpamSignal>);

impl SpamSignals {
    pub fn add(&mut self, signal: SpamSignal) {
        if !self.0.contains(&signal) {
            self.0.push(signal);
            self.0.sort_by_key(|s| (std::cmp::Reverse(s.points()), *s));
        }
    }

    pub fn score(&self) -> u32 {
        self.0.iter().map(|s| s.points()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the evidence is strong enough to quarantine.
    pub fn quarantined(&self) -> bool {
        self.score() >= QUARANTINE_AT
    }

    /// The strongest signal (the metrics label: a closed set).
    pub fn strongest(&self) -> Option<SpamSignal> {
        self.0.first().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = SpamSignal> + '_ {
        self.0.iter().copied()
    }
}

/// `too_fast+links`: what is stored and shown.
impl fmt::Display for SpamSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// How many links `text` holds (`http://`, `https://`, `www.`, `[url`), case-insensitively.
pub fn count_links(text: &str) -> usize {
    let lower = text.to_ascii_lowercase();
    ["http://", "https://", "www.", "[url"]
        .iter()
        .map(|p| lower.matches(p).count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(list: &[SpamSignal]) -> SpamSignals {
        let mut s = SpamSignals::default();
        for x in list {
            s.add(*x);
        }
        s
    }

    #[test]
    fn no_weak_signal_alone_quarantines() {
        for weak in SpamSignal::ALL.into_iter().filter(|s| s.points() < 100) {
            assert!(!signals(&[weak]).quarantined(), "{weak:?}");
        }
        assert!(!signals(&[SpamSignal::TooFast, SpamSignal::Burst]).quarantined());
    }

    #[test]
    fn strong_evidence_or_weak_signals_together_quarantine() {
        assert!(signals(&[SpamSignal::Honeypot]).quarantined());
        assert!(signals(&[SpamSignal::ChallengeUnverified]).quarantined());
        assert!(signals(&[SpamSignal::VeryFast, SpamSignal::Burst]).quarantined());
        assert!(signals(&[SpamSignal::TooFast, SpamSignal::Links]).quarantined());
    }

    #[test]
    fn signals_show_strongest_first_once_each() {
        let s = signals(&[SpamSignal::Burst, SpamSignal::Links, SpamSignal::Burst]);
        assert_eq!(s.to_string(), "links+burst");
        assert_eq!(s.score(), 70);
        assert_eq!(s.strongest(), Some(SpamSignal::Links));
    }

    #[test]
    fn links_are_counted_in_every_spelling() {
        assert_eq!(
            count_links("see HTTPS://a.example and www.b.example [URL=x]"),
            3
        );
        assert_eq!(count_links("Ann Example"), 0);
    }
}
