//! API keys for machines: what a key may do (its scopes), how a key looks, and how one is
//! checked. Keys are shown once when made; the store keeps a SHA-256 of each.

use std::fmt;

use crate::store::{ApiKeyRecord, LeadStore, NewApiKey, StoreError};

/// One thing a key may do. The admin token (`INLET_ADMIN_TOKEN`) may do all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// List leads and submissions, read one lead with its messages.
    LeadsRead,
    /// Everything held about one person, as JSON (GDPR access).
    LeadsExport,
    /// Take a lead out of quarantine.
    LeadsWrite,
    /// Erase a person everywhere (GDPR erasure).
    LeadsErase,
    /// Bring leads in from a CSV file.
    LeadsImport,
    /// Views, conversions and delivery figures.
    StatsRead,
    /// The webhook delivery log, replays, and turning endpoints back on.
    WebhooksManage,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::LeadsRead,
        Scope::LeadsExport,
        Scope::LeadsWrite,
        Scope::LeadsErase,
        Scope::LeadsImport,
        Scope::StatsRead,
        Scope::WebhooksManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LeadsRead => "leads:read",
            Scope::LeadsExport => "leads:export",
            Scope::LeadsWrite => "leads:write",
            Scope::LeadsErase => "leads:erase",
            Scope::LeadsImport => "leads:import",
            Scope::StatsRead => "stats:read",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    /// What the scope allows, in words (the console's key page and `inlet keys`).
    pub fn describe(self) -> &'static str {
        match self {
            Scope::LeadsRead => "list and read leads and submissions",
            Scope::LeadsExport => "export everything held about a person",
            Scope::LeadsWrite => "restore leads from quarantine",
            Scope::LeadsErase => "erase people",
            Scope::LeadsImport => "import leads from CSV",
            Scope::StatsRead => "read views, conversions and delivery figures",
            Scope::WebhooksManage => "read the webhook delivery log, replay, re-enable endpoints",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-empty set of scopes, parsed from `leads:read,stats:read` (commas or spaces; `all`
/// for every scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.iter().fold(0, |a, s| a | s.bit()))
    }

    pub fn parse(list: &str) -> Result<Scopes, String> {
        let mut bits = 0u8;
        for word in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            if word == "all" {
                bits |= Scopes::all().0;
                continue;
            }
            let scope = Scope::parse(word).ok_or_else(|| {
                format!(
                    "unknown scope '{}'; the scopes are {} (or all)",
                    word.chars().take(40).collect::<String>(),
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err("give at least one scope".into());
        }
        Ok(Scopes(bits))
    }

    pub fn allows(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.allows(*s))
    }

    /// Space-separated, in a fixed order (how the store keeps them).
    pub fn to_list(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
}

/// Every key starts with this, so a leaked one is easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "inlet_";
/// How much of a key lists show: the marker and eight characters of the secret.
const SHOWN: usize = KEY_PREFIX.len() + 8;

/// A new key: the secret to show once, what lists show of it, and what the store keeps.
pub struct NewKey {
    pub secret: String,
    pub shown: String,
    pub hash: String,
}

pub fn new_key() -> NewKey {
    let secret = format!("{KEY_PREFIX}{}", crate::tokens::new_token());
    NewKey {
        shown: secret[..SHOWN].to_string(),
        hash: crate::tokens::token_hash(&secret),
        secret,
    }
}

/// Whether a bearer credential has the shape of a key (checked before any database lookup).
pub fn key_shaped(given: &str) -> bool {
    given
        .strip_prefix(KEY_PREFIX)
        .is_some_and(crate::tokens::token_shaped)
}

/// What a key is for, as a person wrote it: 1 to 80 characters of text, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(name: &str) -> Result<KeyName, String> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err("a key's name is 1 to 80 characters of text (what it is for)".into());
        }
        Ok(KeyName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Makes and stores a key; returns its record and the secret, which is never shown again.
pub async fn create(
    store: &LeadStore,
    name: &KeyName,
    scopes: Scopes,
    created_by: &str,
    now_ms: i64,
) -> Result<(ApiKeyRecord, String), StoreError> {
    let key = new_key();
    let record = store
        .create_api_key(
            &NewApiKey {
                name: name.as_str(),
                prefix: &key.shown,
                token_hash: &key.hash,
                scopes: &scopes.to_list(),
                created_by,
            },
            now_ms,
        )
        .await?;
    Ok((record, key.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_list_and_round_trip() {
        let s = Scopes::parse("stats:read, leads:read").unwrap();
        assert!(s.allows(Scope::LeadsRead) && s.allows(Scope::StatsRead));
        assert!(!s.allows(Scope::LeadsErase));
        assert_eq!(s.to_list(), "leads:read stats:read");
        assert_eq!(Scopes::parse(&s.to_list()).unwrap(), s);
        assert_eq!(Scopes::parse("all").unwrap(), Scopes::all());
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("leads:read,leads:delete")
            .unwrap_err()
            .contains("leads:delete"));
    }

    #[test]
    fn keys_are_recognisable_and_shaped() {
        let k = new_key();
        assert!(k.secret.starts_with("inlet_") && key_shaped(&k.secret));
        assert!(k.secret.starts_with(&k.shown) && k.shown.len() == 14);
        assert_ne!(k.hash, k.secret);
        assert!(!key_shaped("inlet_short"));
        assert!(!key_shaped(&k.secret[6..]));
    }
}
