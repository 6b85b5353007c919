//! Text cleaning shared by every text-like field: NFC, no control characters, no bidi
//! overrides, and no line breaks in single-line fields (so CR/LF can never reach a mail header).

use std::borrow::Cow;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

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

/// `s` in Normalization Form C, copied only when it is not already: ASCII and text that passes
/// the quick check (almost every real value) come back borrowed.
pub fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

/// How many characters `s` has (its byte length when it is ASCII).
fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// A single-line value: trimmed, NFC, no control characters (CR, LF, TAB, NUL, C1),
/// no U+2028/2029 and no bidi overrides; at most `max` characters. Empty means absent.
pub fn single_line(raw: &str, max: usize) -> Result<Option<String>, FieldError> {
    let s = nfc(raw.trim());
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
    let trimmed = raw.trim();
    let breaks = trimmed.contains(['\r', '\u{2028}', '\u{2029}']);
    let unified: Cow<'_, str> = if breaks {
        Cow::Owned(
            trimmed
                .replace("\r\n", "\n")
                .replace(['\r', '\u{2028}', '\u{2029}'], "\n"),
        )
    } else {
        Cow::Borrowed(trimmed)
    };
    let s = nfc(&unified);
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

fn finish(s: Cow<'_, str>, max: usize) -> Result<Option<String>, FieldError> {
    if s.is_empty() {
        return Ok(None);
    }
    if char_len(&s) > max {
        return Err(FieldError::TooLong { max });
    }
    Ok(Some(s.into_owned()))
}

/// For values we must never reject a lead over (attribution, user agent): controls and bidi
/// overrides dropped, whitespace runs folded, truncated to `max` characters.
pub fn clean_lossy(raw: &str, max: usize) -> Option<String> {
    if is_clean_ascii(raw) && raw.len() <= max {
        return Some(raw.to_string());
    }
    let mut out = String::new();
    let mut last_space = false;
    let mut kept = 0usize;
    for c in nfc(raw).chars() {
        if is_bidi_control(c) {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            if !last_space && !out.is_empty() {
                if kept >= max {
                    break;
                }
                out.push(' ');
                kept += 1;
            }
            last_space = true;
            continue;
        }
        if kept >= max {
            break;
        }
        last_space = false;
        out.push(c);
        kept += 1;
    }
    out.truncate(out.trim_end().len());
    (!out.is_empty()).then_some(out)
}

/// Printable ASCII with single inner spaces: what [`clean_lossy`] would return unchanged.
fn is_clean_ascii(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && s.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !s.contains("  ")
}

/// `text` with every email address in it replaced by `<address>`: for text that leaves Inlet's
/// control of personal data (mail servers' error replies echo the recipient) before it is
/// logged or stored. An address is a run of local-part characters, `@`, and a run of domain
/// characters, each side non-empty.
pub fn redact_addresses(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let local = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || "-.[]:".contains(c);
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // byte offset of text not yet copied
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1 != '@' {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > 0 && local(chars[start - 1].1) && chars[start - 1].0 >= copied {
            start -= 1;
        }
        let mut end = i + 1;
        while end < chars.len() && domain(chars[end].1) {
            end += 1;
        }
        // A sentence's full stop (or a colon after it) is not part of the domain.
        while end > i + 1 && matches!(chars[end - 1].1, '.' | ':' | '-') {
            end -= 1;
        }
        if start < i && end > i + 1 {
            out.push_str(&text[copied..chars[start].0]);
            out.push_str("<address>");
            copied = chars.get(end).map_or(text.len(), |c| c.0);
        }
        i = end.max(i + 1);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_mail_server_replies_are_redacted() {
        let cases = [
            (
                "permanent error (550): 5.1.1 <ann.lee+x@example.com>: Recipient address rejected",
                "permanent error (550): 5.1.1 <<address>>: Recipient address rejected",
            ),
            (
                "to bob@mail.example.org, cc c@d.io.",
                "to <address>, cc <address>.",
            ),
            ("user@[192.0.2.1] and x@y", "<address> and <address>"),
            ("José@exämple.com refused", "<address> refused"),
            (
                "no address @ all, @ or a@ or @b",
                "no address @ all, @ or a@ or @b",
            ),
            ("nothing to hide", "nothing to hide"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_addresses(input), want, "{input}");
        }
    }

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
    fn nfc_borrows_what_is_already_normal() {
        assert!(matches!(nfc("plain ascii"), Cow::Borrowed(_)));
        assert!(matches!(nfc("Café Zoë"), Cow::Borrowed(_)));
        assert_eq!(nfc("Cafe\u{301}"), "Café");
        assert!(matches!(nfc("Cafe\u{301}"), Cow::Owned(_)));
    }

    #[test]
    fn lossy_cleaning_is_linear_in_the_length() {
        // 200,000 characters, a space every other one (quadratic counting took seconds), and
        // never more than `max` characters kept.
        let long = "a ".repeat(100_000);
        let kept = |max| clean_lossy(&long, max).map(|s| s.chars().count());
        assert_eq!(kept(300), Some(299));
        assert_eq!(kept(301), Some(301));
        assert_eq!(kept(1_000_000), Some(199_999));
    }

    #[test]
    fn lossy_returns_clean_ascii_unchanged_and_cleans_the_rest() {
        for clean in [
            "utm source",
            "a",
            "https://example.com/?a=b&c=d",
            "{\"at\":\"x y\"}",
        ] {
            assert_eq!(clean_lossy(clean, 100).as_deref(), Some(clean));
        }
        assert_eq!(clean_lossy(" a  b ", 100).as_deref(), Some("a b"));
        assert_eq!(clean_lossy("a\u{7f}b", 100).as_deref(), Some("a b"));
        assert_eq!(clean_lossy("abcdef", 3).as_deref(), Some("abc"));
    }

    #[test]
    fn lossy_never_fails() {
        assert_eq!(clean_lossy("a\r\n\tb\u{202E}c", 100).unwrap(), "a bc");
        assert_eq!(clean_lossy("abcdef", 3).unwrap(), "abc");
        assert_eq!(clean_lossy("\u{0}", 3), None);
    }
}
