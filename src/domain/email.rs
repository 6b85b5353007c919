//! `EmailAddress`: an address that passed the HTML5 rule with RFC 5321 lengths, normalised so
//! that one person is one lead.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use validator::ValidateEmail;

/// A normalised, valid email address: NFC, trimmed, lower-cased, domain as IDNA A-label.
///
/// Lower-casing the local part is a deliberate choice: RFC 5321 allows case-sensitive local
/// parts, but no mainstream provider uses them, and two leads for `Ann@x.com` and `ann@x.com`
/// would be the worse failure for a marketer.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is not a valid email address")]
    Invalid,
    #[error("has more than 64 characters before the @")]
    LocalTooLong,
    #[error("is longer than 254 characters")]
    TooLong,
    #[error("needs a domain with a dot, like example.com")]
    NoDotInDomain,
    #[error("must use a domain name, not an IP address")]
    IpLiteral,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let nfc: String = raw.trim().nfc().collect();
        if nfc.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = nfc.rsplit_once('@').ok_or(EmailError::Invalid)?;
        if local.is_empty() || domain.is_empty() {
            return Err(EmailError::Invalid);
        }
        if local.len() > 64 {
            return Err(EmailError::LocalTooLong);
        }
        if domain.starts_with('[') || domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(EmailError::IpLiteral);
        }
        let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Invalid)?;
        if ascii_domain.is_empty() || ascii_domain.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(EmailError::IpLiteral);
        }
        if !ascii_domain.contains('.') || ascii_domain.ends_with('.') {
            return Err(EmailError::NoDotInDomain);
        }
        let address = format!("{}@{}", local.to_lowercase(), ascii_domain);
        if address.len() > 254 {
            return Err(EmailError::TooLong);
        }
        // The HTML5 `type=email` rule (what the validator crate implements) on the final form.
        if !address.validate_email() {
            return Err(EmailError::Invalid);
        }
        Ok(EmailAddress(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug never prints the address: it is personal data and Debug output ends up in logs.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(<redacted>@{})", self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        let cases = [
            ("Ann@Example.COM", "ann@example.com"),
            ("  bob@example.org ", "bob@example.org"),
            ("x+tag@sub.example.co.uk", "x+tag@sub.example.co.uk"),
            ("jo@bücher.de", "jo@xn--bcher-kva.de"),
        ];
        for (raw, want) in cases {
            assert_eq!(EmailAddress::parse(raw).unwrap().as_str(), want, "{raw}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        let cases: [(&str, EmailError); 9] = [
            ("", EmailError::Invalid),
            ("plain", EmailError::Invalid),
            ("a@localhost", EmailError::NoDotInDomain),
            ("a@[127.0.0.1]", EmailError::IpLiteral),
            ("a@127.0.0.1", EmailError::IpLiteral),
            (&long_local, EmailError::LocalTooLong),
            (&long_total, EmailError::TooLong),
            ("a b@example.com", EmailError::Invalid),
            ("a@example.com\r\nBcc: x@y.z", EmailError::Invalid),
        ];
        for (raw, want) in cases {
            assert_eq!(EmailAddress::parse(raw).unwrap_err(), want, "{raw:?}");
        }
    }

    #[test]
    fn debug_does_not_leak_the_local_part() {
        let e = EmailAddress::parse("secret.person@example.com").unwrap();
        assert!(!format!("{e:?}").contains("secret"));
    }
}
