//! Consent and delivery: signed links (double opt-in confirmation, downloads, unsubscribe),
//! the suppression list's key, and where a download form's asset lives.
//!
//! A link token is `{kind}.{id}.{expires}.{key id}.{signature}`: HMAC-SHA256 over the first
//! three parts with the key the key id names. Several keys may verify (rotation); the first
//! configured one signs. Tokens carry no personal data: `id` is a submission or lead id.

mod asset;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use asset::{DownloadAsset, ResolvedAssets};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with `key`. HMAC takes a key of any length (longer ones are hashed), so
/// this cannot fail whatever the key; the `Result` of `new_from_slice` is the generic API's.
pub(crate) fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// What a link is for; a token made for one purpose never works for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Confirms a double opt-in submission (id: the submission).
    Confirm,
    /// Downloads a lead magnet (id: the submission that earned it).
    Download,
    /// Unsubscribes a person (id: the lead).
    Unsubscribe,
    /// Lets a sales owner accept or reject a hand-off (id: the hand-off).
    Handoff,
}

impl LinkKind {
    fn tag(self) -> &'static str {
        match self {
            LinkKind::Confirm => "c",
            LinkKind::Download => "d",
            LinkKind::Unsubscribe => "u",
            LinkKind::Handoff => "h",
        }
    }
}

/// Why a token was refused. Tampered and expired are told apart so the page can say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid: it may be incomplete or altered")]
    Invalid,
    #[error("this link has expired")]
    Expired,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    /// Seconds since the epoch; 0 = never.
    pub expires_at_secs: u64,
}

struct Key {
    id: String,
    secret: Vec<u8>,
}

impl Key {
    fn new(secret: &[u8]) -> Key {
        Key {
            id: hex::encode(&Sha256::digest(secret)[..4]),
            secret: secret.to_vec(),
        }
    }
}

/// Signs and verifies link tokens with the configured keys (the first signs).
///
/// Unsubscribe links are different: they never expire, and mail already sent carries them,
/// so they are signed with a key of their own that does not rotate (derived from the
/// suppression list's key, which cannot change either). Rotating the configured keys then
/// never breaks a way out. Unsubscribe links signed with a configured key (before this key
/// existed) still verify while that key is configured.
pub struct Signer {
    keys: Vec<Key>,
    unsubscribe: Option<Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    /// `secrets` newest first; must not be empty.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> Signer {
        Signer {
            keys: secrets.into_iter().map(Key::new).collect(),
            unsubscribe: None,
        }
    }

    /// Signs unsubscribe links with `secret` (see the type's notes).
    #[must_use]
    pub fn with_unsubscribe_key(mut self, secret: &[u8]) -> Signer {
        self.unsubscribe = Some(Key::new(secret));
        self
    }

    /// The key that signs `kind`.
    fn signing_key(&self, kind: LinkKind) -> &Key {
        match (kind, &self.unsubscribe) {
            (LinkKind::Unsubscribe, Some(key)) => key,
            _ => &self.keys[0],
        }
    }

    fn mac(key: &Key, message: &str) -> HmacSha256 {
        let mut mac = hmac_sha256(&key.secret);
        mac.update(message.as_bytes());
        mac
    }

    /// A token for `id`, valid until `expires_at_secs` (0: no expiry).
    pub fn sign(&self, kind: LinkKind, id: &str, expires_at_secs: u64) -> String {
        let key = self.signing_key(kind);
        let body = format!("{}.{id}.{expires_at_secs}", kind.tag());
        let sig = Self::mac(key, &body).finalize().into_bytes();
        format!("{body}.{}.{}", key.id, b64(&sig))
    }

    /// Checks the signature (with whichever key the token names), the purpose and the expiry.
    pub fn verify(&self, kind: LinkKind, token: &str, now_secs: u64) -> Result<Link, LinkError> {
        let link = self.verify_signature(kind, token)?;
        if link.expires_at_secs != 0 && now_secs >= link.expires_at_secs {
            return Err(LinkError::Expired);
        }
        Ok(link)
    }

    /// Checks the signature and purpose only: an expired link is still known to be ours (for
    /// "send me a fresh link").
    pub fn verify_signature(&self, kind: LinkKind, token: &str) -> Result<Link, LinkError> {
        if token.len() > 256 {
            return Err(LinkError::Invalid);
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [tag, id, exp, kid, sig] = parts[..] else {
            return Err(LinkError::Invalid);
        };
        let own = self
            .unsubscribe
            .as_ref()
            .filter(|_| kind == LinkKind::Unsubscribe);
        let key = own
            .into_iter()
            .chain(&self.keys)
            .find(|k| k.id == kid)
            .ok_or(LinkError::Invalid)?;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| LinkError::Invalid)?;
        Self::mac(key, &format!("{tag}.{id}.{exp}"))
            .verify_slice(&sig)
            .map_err(|_| LinkError::Invalid)?;
        let expires_at_secs: u64 = exp.parse().map_err(|_| LinkError::Invalid)?;
        if tag != kind.tag() {
            return Err(LinkError::Invalid);
        }
        Ok(Link {
            id: id.to_string(),
            expires_at_secs,
        })
    }
}

/// The public URLs of signed links, and the delivery decisions that depend on consent
/// settings. Built once at startup; cheap to share.
#[derive(Debug)]
pub struct Links {
    signer: Signer,
    public_url: String,
    settings: crate::config::ConsentSettings,
    mailto: String,
    clock: crate::clock::Clock,
}

impl Links {
    pub fn new(
        signer: Signer,
        public_url: &str,
        settings: &crate::config::ConsentSettings,
        from_domain: &str,
        clock: crate::clock::Clock,
    ) -> Links {
        Links {
            signer,
            public_url: public_url.trim_end_matches('/').to_string(),
            mailto: settings
                .unsubscribe_mailto
                .clone()
                .unwrap_or_else(|| format!("unsubscribe@{from_domain}")),
            settings: settings.clone(),
            clock,
        }
    }

    pub fn settings(&self) -> &crate::config::ConsentSettings {
        &self.settings
    }

    /// Whole seconds, rounded up: a link never expires before the time it promises.
    fn secs(ms: i64) -> u64 {
        u64::try_from(ms.saturating_add(999).div_euclid(1000)).unwrap_or(0)
    }

    /// Until when a double opt-in submission received at `received_at_ms` may be confirmed.
    pub fn confirm_expiry_ms(&self, received_at_ms: i64) -> i64 {
        received_at_ms.saturating_add(ttl_ms(self.settings.confirm_ttl_secs))
    }

    /// Until when a download granted at `now_ms` works.
    pub fn download_expiry_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(ttl_ms(self.settings.download_ttl_secs))
    }

    pub fn confirm_url(&self, submission_id: &str, received_at_ms: i64) -> String {
        let exp = Self::secs(self.confirm_expiry_ms(received_at_ms));
        let token = self.signer.sign(LinkKind::Confirm, submission_id, exp);
        format!("{}/v1/confirm/{token}", self.public_url)
    }

    pub fn download_token(&self, submission_id: &str, expires_at_ms: i64) -> String {
        self.signer
            .sign(LinkKind::Download, submission_id, Self::secs(expires_at_ms))
    }

    pub fn download_url(&self, submission_id: &str, expires_at_ms: i64) -> String {
        format!(
            "{}/v1/downloads/{}",
            self.public_url,
            self.download_token(submission_id, expires_at_ms)
        )
    }

    /// The lead's unsubscribe links, signed once: the HTTPS URL (body and one-click) and the
    /// `mailto:` half of `List-Unsubscribe` (the token travels in the subject). They never
    /// expire: an old newsletter must still let people leave.
    pub fn unsubscribe_links(&self, lead_id: &str) -> UnsubscribeLinks {
        let token = self.signer.sign(LinkKind::Unsubscribe, lead_id, 0);
        UnsubscribeLinks {
            url: format!("{}/v1/unsubscribe/{token}", self.public_url),
            mailto: format!("mailto:{}?subject=unsubscribe%20{token}", self.mailto),
        }
    }

    pub fn verify(&self, kind: LinkKind, token: &str) -> Result<Link, LinkError> {
        self.signer.verify(kind, token, self.clock.now_secs())
    }

    /// The page where a sales owner accepts or rejects a hand-off (`action` preselects one),
    /// working until `expires_at_ms`.
    pub fn handoff_url(&self, handoff_id: &str, expires_at_ms: i64, action: &str) -> String {
        let token = self
            .signer
            .sign(LinkKind::Handoff, handoff_id, Self::secs(expires_at_ms));
        format!("{}/v1/handoffs/{token}?action={action}", self.public_url)
    }

    /// A signature for the page a no-JavaScript post came from, so the thank-you page can link
    /// back to it without linking anywhere a crafted URL names.
    pub fn back_signature(&self, url: &str) -> String {
        let key = &self.signer.keys[0];
        let sig = Signer::mac(key, &format!("back.{url}"))
            .finalize()
            .into_bytes();
        format!("{}.{}", key.id, b64(&sig[..16]))
    }

    /// Whether `sig` is [`Links::back_signature`] of `url` under any configured key.
    pub fn back_verified(&self, url: &str, sig: &str) -> bool {
        let Some((kid, mac)) = sig.split_once('.') else {
            return false;
        };
        let Ok(mac) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac) else {
            return false;
        };
        self.signer.keys.iter().filter(|k| k.id == kid).any(|key| {
            Signer::mac(key, &format!("back.{url}"))
                .verify_truncated_left(&mac)
                .is_ok()
        })
    }

    pub fn verify_signature(&self, kind: LinkKind, token: &str) -> Result<Link, LinkError> {
        self.signer.verify_signature(kind, token)
    }

    /// Whether an (expired) download link may still ask for a fresh one now.
    pub fn renewable(&self, link: &Link) -> bool {
        let now_secs = self.clock.now_secs();
        link.expires_at_secs == 0
            || link
                .expires_at_secs
                .saturating_add(self.settings.download_renewal_window_secs)
                >= now_secs
    }

    /// Decides what a fresh submission waits for: double opt-in forms hold everything until
    /// the person confirms; download forms grant a link at once otherwise. Spam gets neither.
    pub fn schedule(&self, form: &crate::forms::Form, sub: &mut crate::domain::NewSubmission) {
        if sub.quarantined() {
            return;
        }
        if form.double_opt_in {
            sub.confirmation = crate::domain::Confirmation::Pending {
                expires_at_ms: self.confirm_expiry_ms(sub.received_at_ms),
            };
        } else if form.delivers_download {
            sub.download_until_ms = Some(self.download_expiry_ms(sub.received_at_ms));
        }
    }
}

/// See [`Links::unsubscribe_links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeLinks {
    pub url: String,
    pub mailto: String,
}

fn ttl_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Keys the suppression list. An entry is a hash, so an erased person's address is not kept,
/// yet a later submission by the same address is recognised; the hash is an HMAC under a
/// server secret, so a copy of the list alone cannot be used to test addresses against it.
///
/// The HMAC is taken over the address's plain SHA-256 digest (what entries held before the
/// list was keyed), which lets those entries be re-keyed without knowing the addresses.
#[derive(Clone)]
pub struct SuppressionKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for SuppressionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SuppressionKey({})", self.fingerprint())
    }
}

impl SuppressionKey {
    pub fn new(secret: &[u8]) -> SuppressionKey {
        SuppressionKey {
            mac: hmac_sha256(secret),
        }
    }

    /// The list's entry for a (normalised) address.
    pub fn hash(&self, email: &str) -> String {
        self.rekey(&unkeyed_digest(email))
    }

    /// An entry written before the list was keyed, re-keyed.
    pub fn rekey(&self, unkeyed: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"entry:");
        mac.update(unkeyed.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A secret for another purpose, derived from this key (so it is as stable as the key).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"derive:");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Names the key without revealing it, so a changed key is noticed before the list
    /// silently stops matching.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"fingerprint");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

/// What the suppression list held per address before it was keyed.
fn unkeyed_digest(email: &str) -> String {
    hex::encode(Sha256::digest(
        format!("inlet-suppression:{email}").as_bytes(),
    ))
}

/// The version of a consent text: its own hash, so any change of wording is a new version.
pub fn text_version(text: &str) -> String {
    format!(
        "sha256:{}",
        &hex::encode(Sha256::digest(text.as_bytes()))[..16]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_entries_depend_on_the_key_and_old_entries_rekey_to_the_same() {
        let a = SuppressionKey::new(b"first key 0123456789abcdef012345");
        let b = SuppressionKey::new(b"other key 0123456789abcdef012345");
        assert_ne!(a.hash("ann@example.com"), b.hash("ann@example.com"));
        assert_ne!(a.hash("ann@example.com"), unkeyed_digest("ann@example.com"));
        assert_eq!(
            a.rekey(&unkeyed_digest("ann@example.com")),
            a.hash("ann@example.com")
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(!format!("{a:?}").contains("first key"));
    }

    fn signer() -> Signer {
        Signer::new([
            b"new key: 0123456789abcdef0123456789".as_slice(),
            b"old key: 0123456789abcdef0123456789".as_slice(),
        ])
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let s = signer();
        let t = s.sign(LinkKind::Confirm, "0193-abc", 2_000);
        assert_eq!(
            s.verify(LinkKind::Confirm, &t, 1_000),
            Ok(Link {
                id: "0193-abc".into(),
                expires_at_secs: 2_000
            })
        );
        assert_eq!(
            s.verify(LinkKind::Confirm, &t, 2_000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            s.verify(LinkKind::Download, &t, 1_000),
            Err(LinkError::Invalid),
            "other purpose"
        );
        let longer = t.replacen(".2000.", ".9000.", 1);
        assert_eq!(
            s.verify(LinkKind::Confirm, &longer, 1_000),
            Err(LinkError::Invalid),
            "expiry edited"
        );
        let other_id = t.replacen("0193-abc", "0193-abd", 1);
        assert_eq!(
            s.verify(LinkKind::Confirm, &other_id, 1_000),
            Err(LinkError::Invalid)
        );
        for junk in ["", "a.b.c", "c.x.0.zz.zz", &"x".repeat(300)] {
            assert_eq!(
                s.verify(LinkKind::Confirm, junk, 1_000),
                Err(LinkError::Invalid),
                "{junk}"
            );
        }
        assert_eq!(
            s.verify(
                LinkKind::Unsubscribe,
                &s.sign(LinkKind::Unsubscribe, "l", 0),
                u64::MAX
            )
            .map(|l| l.id),
            Ok("l".into())
        );
    }

    #[test]
    fn unsubscribe_links_outlive_the_rotation_of_every_configured_key() {
        let own = b"unsubscribe key 0123456789abcdef0".as_slice();
        let before = signer().with_unsubscribe_key(own);
        let token = before.sign(LinkKind::Unsubscribe, "lead-1", 0);
        let rotated = Signer::new([b"newest key: 0123456789abcdef01234".as_slice()])
            .with_unsubscribe_key(own);
        assert_eq!(
            rotated
                .verify(LinkKind::Unsubscribe, &token, 9)
                .map(|l| l.id),
            Ok("lead-1".into())
        );
        // The unsubscribe key signs nothing else, and verifies nothing else.
        let download = before.sign(LinkKind::Download, "s1", 0);
        assert!(!download.contains(&Key::new(own).id));
        let forged = token.replacen("u.", "d.", 1);
        assert_eq!(
            rotated.verify(LinkKind::Download, &forged, 9),
            Err(LinkError::Invalid)
        );
        // Links from before the unsubscribe key still verify while their key is configured.
        let legacy = signer().sign(LinkKind::Unsubscribe, "lead-2", 0);
        assert!(before.verify(LinkKind::Unsubscribe, &legacy, 9).is_ok());
    }

    #[test]
    fn rotation_keeps_old_links_working_until_the_old_key_is_removed() {
        let old = Signer::new([b"old key: 0123456789abcdef0123456789".as_slice()]);
        let t = old.sign(LinkKind::Download, "s1", 0);
        assert!(
            signer().verify(LinkKind::Download, &t, 1).is_ok(),
            "old key still verifies"
        );
        let only_new = Signer::new([b"new key: 0123456789abcdef0123456789".as_slice()]);
        assert_eq!(
            only_new.verify(LinkKind::Download, &t, 1),
            Err(LinkError::Invalid)
        );
        assert!(signer()
            .sign(LinkKind::Download, "s1", 0)
            .contains(&signer().keys[0].id));
    }
}
