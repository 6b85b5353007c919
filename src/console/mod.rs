//! The marketer's console: who may sign in and do what (roles), passwords (Argon2id),
//! session and link tokens, sign-in throttling, the lead timeline, and the pages. The HTTP
//! handlers are in `routes::console`; the rows in `store::users`.

pub mod charts;
pub mod embed;
mod pages;
mod throttle;
mod timeline;

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub use pages::{when, ConsolePages, STYLESHEET};
pub use throttle::SignInThrottle;
pub use timeline::{message_kind, sequence_events, sort as sort_timeline, timeline, TimelineEvent};

/// What a person may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, and managing who may sign in.
    Admin,
    /// Sees everything; exports, unsubscribes, restores and erases leads.
    Marketer,
    /// Sees everything; changes nothing and exports nothing.
    Viewer,
    /// A sales owner (an owner in `[handoff]` with the same address): sees the hand-offs
    /// routed to them and those leads, and answers them; nothing else.
    Sales,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Viewer => "viewer",
            Role::Sales => "sales",
        }
    }

    /// Export leads (lists and one person's data), and change them (unsubscribe, restore,
    /// erase): people's data leaves or changes only by someone trusted with it.
    pub fn may_handle_data(self) -> bool {
        matches!(self, Role::Admin | Role::Marketer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "marketer" => Ok(Role::Marketer),
            "viewer" => Ok(Role::Viewer),
            "sales" => Ok(Role::Sales),
            other => Err(format!(
                "unknown role '{other}': admin, marketer, viewer or sales"
            )),
        }
    }
}

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; a console that can
/// export every lead asks for more).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (hashing is linear in the length; nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password as typed, checked for length.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(typed: &str, repeated: &str) -> Result<NewPassword, &'static str> {
        if typed.chars().count() < MIN_PASSWORD_CHARS {
            return Err("The password needs at least 12 characters.");
        }
        if typed.len() > MAX_PASSWORD_BYTES {
            return Err("The password is too long (at most 1,024 bytes).");
        }
        if typed != repeated {
            return Err("The two passwords are not the same.");
        }
        Ok(NewPassword(typed.to_string()))
    }

    /// Argon2id with the crate's defaults (OWASP's minimum: 19 MiB, 2 passes), as a PHC string.
    pub fn hash(&self) -> String {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            // Hashing fails only for parameters out of range; the defaults are in range.
            .unwrap_or_default()
    }
}

/// Checked when there is no hash to check: the same parameters as a real one.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                     p8jHv1JwQqjR8XgFqY2Jm1Yx3i0QK1kQn3Q4qGJ9dGk";

/// Whether `typed` is the password behind `hash`. With no hash (an unknown account, or one
/// without a password) a dummy hash is checked, so both cost the same time.
pub fn verify_password(hash: Option<&str>, typed: &str) -> bool {
    let typed = typed.as_bytes();
    let typed = &typed[..typed.len().min(MAX_PASSWORD_BYTES)];
    let parsed = PasswordHash::new(hash.unwrap_or(DUMMY));
    match parsed {
        Ok(p) => Argon2::default().verify_password(typed, &p).is_ok() && hash.is_some(),
        Err(_) => false,
    }
}

/// A link's lifetime in words: "24 hours", "1 hour", "90 minutes".
pub fn minutes_in_words(minutes: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if minutes >= 60 && minutes % 60 == 0 {
        plural(minutes / 60, "hour")
    } else {
        plural(minutes, "minute")
    }
}

/// Makes a one-time link for `user_id` (`None`: the set-up link that creates the first admin)
/// and returns its address under `public_url`. Only the token's hash is stored.
pub async fn issue_link(
    store: &crate::store::LeadStore,
    user_id: Option<&str>,
    now_ms: i64,
    settings: &crate::config::ConsoleSettings,
    public_url: &str,
) -> Result<String, crate::store::StoreError> {
    let token = crate::tokens::new_token();
    let ttl = i64::try_from(settings.link_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX);
    store
        .create_sign_in_link(
            &crate::tokens::token_hash(&token),
            user_id,
            now_ms,
            now_ms.saturating_add(ttl),
        )
        .await?;
    let path = if user_id.is_some() { "link" } else { "setup" };
    Ok(format!(
        "{}/console/{path}/{token}",
        public_url.trim_end_matches('/')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_words() {
        assert_eq!(minutes_in_words(1440), "24 hours");
        assert_eq!(minutes_in_words(60), "1 hour");
        assert_eq!(minutes_in_words(90), "90 minutes");
        assert_eq!(minutes_in_words(1), "1 minute");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let p = NewPassword::parse("correct horse battery", "correct horse battery").unwrap();
        let h = p.hash();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(&h), "correct horse battery"));
        assert!(!verify_password(Some(&h), "correct horse batterY"));
        assert!(!verify_password(None, "anything at all"));
        // The dummy costs what a real hash costs: same algorithm and parameters.
        let (dummy, real) = (
            PasswordHash::new(DUMMY).unwrap(),
            PasswordHash::new(&h).unwrap(),
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
        assert!(NewPassword::parse("short", "short").is_err());
        assert!(NewPassword::parse("long enough one", "long enough two").is_err());
    }
}
