//! Text cleaning shared by every text-like field: NFC, no control characters, no bidi
//! overrides, and no line breaks in single-line fields (so CR/LF can never reach a mail header).

use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("is required")]
    Required,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain line breaks or control characters")]
    ControlCharacters,
    #[error("must not contain bidirectional override characters")]
    BidiOverride,
    #[error("must be text")]
    NotText,
    #[error("must be true or false")]
    NotBoolean,
    #[error("must be one of the listed options")]
    NotAnOption,
    #[error("must be an http or https URL")]
    InvalidUrl,
    #[error("is not a valid phone number")]
    InvalidPhone,
    #[error("must be checked")]
    MustBeChecked,
    #[error("was sent more than once")]
    Duplicate,
    #[error("{0}")]
    Email(#[from] super::EmailError),
    #[error("is not an accepted field name")]
    BadName,
}

/// Bidi embedding/override/isolate controls: the "Trojan Source" characters.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Line and paragraph separators act as line breaks in many renderers without being controls.
fn is_unicode_break(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// A single-line value: trimmed, NFC, no control characters (CR, LF, TAB, NUL, C1),
/// no U+2028/2029 and no bidi overrides; at most `max` characters. Empty means absent.
pub fn single_line(raw: &str, max: usize) -> Result<Option<String>, FieldError> {
    let s: String = raw.trim().nfc().collect();
    for c in s.chars() {
        if c.is_control() || is_unicode_break(c) {
            return Err(FieldError::ControlCharacters);
        }
        if is_bidi_control(c) {
            return Err(FieldError::BidiOverride);
        }
    }
    finish(s, max)
}

/// A multi-line value: line breaks normalised to `\n`, tabs allowed, other controls and bidi
/// overrides rejected.
pub fn multi_line(raw: &str, max: usize) -> Result<Option<String>, FieldError> {
    let s: String = raw
        .trim()
        .replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}'], "\n")
        .nfc()
        .collect();
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            return Err(FieldError::ControlCharacters);
        }
        if is_bidi_control(c) {
            return Err(FieldError::BidiOverride);
        }
    }
    finish(s, max)
}

fn finish(s: String, max: usize) -> Result<Option<String>, FieldError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > max {
        return Err(FieldError::TooLong { max });
    }
    Ok(Some(s))
}

/// For values we must never reject a lead over (attribution, user agent): controls and bidi
/// overrides dropped, whitespace runs folded, truncated to `max` characters.
pub fn clean_lossy(raw: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    let mut last_space = false;
    for c in raw.nfc() {
        if is_bidi_control(c) {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            if !last_space && !out.is_empty() {
                out.push(' ');
            }
            last_space = true;
            continue;
        }
        last_space = false;
        out.push(c);
        if out.chars().count() >= max {
            break;
        }
    }
    let trimmed = out.trim_end();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_rejects_every_kind_of_break() {
        for bad in ["a\rb", "a\nb", "a\u{0}b", "a\u{85}b", "a\u{2028}b", "a\tb"] {
            assert_eq!(
                single_line(bad, 100),
                Err(FieldError::ControlCharacters),
                "{bad:?}"
            );
        }
        assert_eq!(
            single_line("a\u{202E}b", 100),
            Err(FieldError::BidiOverride)
        );
    }

    #[test]
    fn single_line_normalises_and_limits() {
        assert_eq!(single_line("  Cafe\u{301} ", 10).unwrap().unwrap(), "Café");
        assert_eq!(single_line("   ", 10).unwrap(), None);
        assert_eq!(
            single_line("abcdef", 5),
            Err(FieldError::TooLong { max: 5 })
        );
    }

    #[test]
    fn multi_line_keeps_newlines_only() {
        assert_eq!(multi_line("a\r\nb\rc", 100).unwrap().unwrap(), "a\nb\nc");
        assert_eq!(
            multi_line("a\u{7}b", 100),
            Err(FieldError::ControlCharacters)
        );
    }

    #[test]
    fn lossy_never_fails() {
        assert_eq!(clean_lossy("a\r\n\tb\u{202E}c", 100).unwrap(), "a bc");
        assert_eq!(clean_lossy("abcdef", 3).unwrap(), "abc");
        assert_eq!(clean_lossy("\u{0}", 3), None);
    }
}
