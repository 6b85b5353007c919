//! Secrets handed to people and machines (session cookies, one-time links, CSRF tokens, API
//! keys): how a fresh one is made, how it is recognised, and what the database keeps of it.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh secret for a cookie, a link or a CSRF token: 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a token (a copy of the table signs no one in).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a token looks like one [`new_token`] makes (checked before any database lookup).
pub fn token_shaped(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_hashed() {
        let t = new_token();
        assert!(token_shaped(&t), "{t}");
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t).len(), 64);
        assert!(!token_shaped("../../etc/passwd"));
    }
}
