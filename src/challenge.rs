//! Challenges a form may require before it takes a submission: Inlet's own proof of work
//! (the ALTCHA protocol: no third party, no cookie), or a CAPTCHA token (Cloudflare Turnstile,
//! hCaptcha) that Inlet verifies with the provider.
//!
//! Proof of work: `GET /v1/forms/{id}/challenge` hands out `{algorithm, challenge, maxnumber,
//! salt, signature}`. The client finds the `number` (0..=maxnumber) for which
//! `SHA-256(salt + number)` is `challenge`, and sends back the challenge with that number
//! (base64 JSON in `_altcha`). The salt names the form and an expiry; the signature (an HMAC
//! under a server key) proves Inlet issued it, so nothing is stored until a solution is spent,
//! and a spent challenge is refused after that (see `LeadStore::spend_challenge`).

use std::net::IpAddr;

use base64::Engine;
use hmac::Mac;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::forms::RawPayload;

use crate::consent::HmacSha256;

/// How long an issued proof-of-work challenge may be solved and spent.
pub const POW_TTL_SECS: u64 = 600;

/// Where a challenge's response arrives in a submission, in order of preference: Inlet's
/// proof of work, then the fields the Turnstile and hCaptcha widgets add to a form.
pub const RESPONSE_KEYS: [&str; 3] = ["_altcha", "cf-turnstile-response", "h-captcha-response"];

/// What a form requires.
#[derive(Debug, Clone)]
pub enum Challenge {
    Pow { max_number: u64 },
    Captcha(Captcha),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Turnstile,
    Hcaptcha,
}

impl Provider {
    fn default_verify_url(self) -> &'static str {
        match self {
            Provider::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            Provider::Hcaptcha => "https://api.hcaptcha.com/siteverify",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Captcha {
    pub provider: Provider,
    pub site_key: String,
    secret: SecretString,
    verify_url: url::Url,
}

impl Challenge {
    /// From a form's `[forms.challenge]`; errors are the message for the setting.
    pub fn from_config(cfg: &crate::config::ChallengeConfig) -> Result<Challenge, String> {
        use crate::config::ChallengeConfig as C;
        let captcha = |provider: Provider, c: &crate::config::CaptchaConfig| {
            if c.site_key.trim().is_empty() || c.secret.expose_secret().trim().is_empty() {
                return Err("needs site_key and secret".to_string());
            }
            let raw = c
                .verify_url
                .as_deref()
                .unwrap_or(provider.default_verify_url());
            let verify_url = crate::config::parse_http_url(raw)?;
            Ok(Challenge::Captcha(Captcha {
                provider,
                site_key: c.site_key.clone(),
                secret: c.secret.clone(),
                verify_url,
            }))
        };
        match cfg {
            C::Pow { difficulty } if (1_000..=100_000_000).contains(difficulty) => {
                Ok(Challenge::Pow {
                    max_number: *difficulty,
                })
            }
            C::Pow { .. } => Err("difficulty must be 1,000 to 100,000,000".into()),
            C::Turnstile(c) => captcha(Provider::Turnstile, c),
            C::Hcaptcha(c) => captcha(Provider::Hcaptcha, c),
        }
    }

    /// What a client needs to know (public: no secrets).
    pub fn describe(&self, form_id: &str) -> serde_json::Value {
        match self {
            Challenge::Pow { .. } => serde_json::json!({
                "kind": "pow",
                "url": format!("/v1/forms/{form_id}/challenge"),
                "field": "_altcha",
            }),
            Challenge::Captcha(c) => serde_json::json!({
                "kind": c.provider,
                "site_key": c.site_key,
            }),
        }
    }
}

/// Takes the challenge response out of a payload (so it is never stored as a field): the
/// first non-empty one of [`RESPONSE_KEYS`].
pub fn take_response(payload: &mut RawPayload) -> Option<String> {
    let mut found: Option<(usize, String)> = None;
    payload.retain(|(key, value)| {
        let Some(rank) = RESPONSE_KEYS.iter().position(|k| k == key) else {
            return true;
        };
        if let crate::forms::RawValue::Text(text) = value {
            let text = text.trim();
            if !text.is_empty()
                && text.len() <= 4096
                && found.as_ref().is_none_or(|(r, _)| rank < *r)
            {
                found = Some((rank, text.to_string()));
            }
        }
        false
    });
    found.map(|(_, text)| text)
}

/// Why a response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("this form needs a challenge to be solved first")]
    Missing,
    #[error("the challenge response is not valid: {0}")]
    Invalid(&'static str),
    #[error("the challenge was used before: ask for a new one")]
    Spent,
}

/// An issued proof-of-work challenge, as the ALTCHA widget and the embed script read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PowChallenge {
    pub algorithm: String,
    pub challenge: String,
    pub maxnumber: u64,
    pub salt: String,
    pub signature: String,
}

/// A solution, as the client sends it (base64 of this as JSON).
#[derive(Debug, Deserialize)]
struct PowSolution {
    algorithm: String,
    challenge: String,
    number: u64,
    salt: String,
    signature: String,
}

/// A verified solution: spend `challenge` (until `expires_at_secs`) and it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solved {
    pub challenge: String,
    pub expires_at_secs: u64,
}

/// Issues and checks proof-of-work challenges with one server key.
pub struct PowKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for PowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PowKey(..)")
    }
}

fn sha256_hex(salt: &str, number: u64) -> String {
    hex::encode(Sha256::digest(format!("{salt}{number}").as_bytes()))
}

impl PowKey {
    pub fn new(secret: &[u8]) -> PowKey {
        PowKey {
            mac: crate::consent::hmac_sha256(secret),
        }
    }

    fn sign(&self, challenge: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(challenge.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A fresh challenge for `form_id`; its secret number is uniform in 0..=`max_number`.
    pub fn issue(&self, form_id: &str, max_number: u64, now_secs: u64) -> PowChallenge {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let nonce: [u8; 12] = rng.gen();
        let salt = format!(
            "{}?expires={}&form={form_id}&",
            hex::encode(nonce),
            now_secs + POW_TTL_SECS
        );
        let challenge = sha256_hex(&salt, rng.gen_range(0..=max_number));
        PowChallenge {
            algorithm: "SHA-256".into(),
            signature: self.sign(&challenge),
            challenge,
            maxnumber: max_number,
            salt,
        }
    }

    /// Checks a solution for `form_id` at `now_secs`: issued by this key, for this form, not
    /// expired, and solved. Spending it (once) is the caller's part.
    pub fn check(
        &self,
        form_id: &str,
        response: &str,
        now_secs: u64,
    ) -> Result<Solved, ChallengeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(response.trim())
            .map_err(|_| ChallengeError::Invalid("not base64"))?;
        let s: PowSolution = serde_json::from_slice(&bytes)
            .map_err(|_| ChallengeError::Invalid("not a solution"))?;
        if s.algorithm != "SHA-256" {
            return Err(ChallengeError::Invalid("unknown algorithm"));
        }
        let expected = self.sign(&s.challenge);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            s.signature.as_bytes(),
        )) {
            return Err(ChallengeError::Invalid("not issued here"));
        }
        let params: Vec<(String, String)> = s
            .salt
            .split_once('?')
            .map(|(_, q)| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("form") != Some(form_id) {
            return Err(ChallengeError::Invalid("issued for another form"));
        }
        let expires_at_secs: u64 = param("expires")
            .and_then(|v| v.parse().ok())
            .ok_or(ChallengeError::Invalid("no expiry"))?;
        if expires_at_secs <= now_secs {
            return Err(ChallengeError::Invalid("expired: ask for a new one"));
        }
        if sha256_hex(&s.salt, s.number) != s.challenge {
            return Err(ChallengeError::Invalid("not solved"));
        }
        Ok(Solved {
            challenge: s.challenge,
            expires_at_secs,
        })
    }
}

/// The provider could not be asked (network, timeout, an answer that is not theirs).
#[derive(Debug, thiserror::Error)]
#[error("the {provider:?} verification endpoint did not answer: {reason}")]
pub struct CaptchaUnavailable {
    pub provider: Provider,
    pub reason: String,
}

#[derive(Deserialize)]
struct SiteVerify {
    success: bool,
}

/// Asks the provider whether `token` is a passed challenge for this site (their
/// `siteverify`: secret, response and the client's IP as a form post).
pub async fn verify_captcha(
    client: &reqwest::Client,
    captcha: &Captcha,
    token: &str,
    remote_ip: Option<IpAddr>,
) -> Result<bool, CaptchaUnavailable> {
    let unavailable = |reason: String| CaptchaUnavailable {
        provider: captcha.provider,
        reason,
    };
    let mut form = vec![
        ("secret", captcha.secret.expose_secret().to_string()),
        ("response", token.to_string()),
    ];
    if let Some(ip) = remote_ip {
        form.push(("remoteip", ip.to_string()));
    }
    let resp = client
        .post(captcha.verify_url.clone())
        .form(&form)
        .send()
        .await
        .map_err(|e| unavailable(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(unavailable(format!("HTTP {}", resp.status())));
    }
    let body: SiteVerify = resp
        .json()
        .await
        .map_err(|e| unavailable(format!("unreadable answer: {}", e.without_url())))?;
    Ok(body.success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(c: &PowChallenge) -> String {
        let number = (0..=c.maxnumber)
            .find(|n| sha256_hex(&c.salt, *n) == c.challenge)
            .expect("solvable");
        let json = serde_json::json!({"algorithm": c.algorithm, "challenge": c.challenge,
            "number": number, "salt": c.salt, "signature": c.signature});
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    }

    #[test]
    fn a_solved_challenge_checks_only_for_its_form_key_and_time() {
        let key = PowKey::new(b"pow key 0123456789abcdef0123456789");
        let c = key.issue("contact", 2_000, 1_000);
        let answer = solve(&c);
        let ok = key.check("contact", &answer, 1_001).unwrap();
        assert_eq!(ok.challenge, c.challenge);
        assert_eq!(ok.expires_at_secs, 1_000 + POW_TTL_SECS);
        assert!(matches!(
            key.check("newsletter", &answer, 1_001),
            Err(ChallengeError::Invalid(_))
        ));
        assert!(matches!(
            key.check("contact", &answer, 1_000 + POW_TTL_SECS),
            Err(ChallengeError::Invalid(_))
        ));
        let other = PowKey::new(b"another key 0123456789abcdef012345");
        assert!(matches!(
            other.check("contact", &answer, 1_001),
            Err(ChallengeError::Invalid(_))
        ));
        // A wrong number, or a salt edited to change the form or the expiry.
        let wrong = serde_json::json!({"algorithm": "SHA-256", "challenge": c.challenge,
            "number": c.maxnumber + 1, "salt": c.salt, "signature": c.signature});
        let wrong = base64::engine::general_purpose::STANDARD.encode(wrong.to_string());
        assert!(matches!(
            key.check("contact", &wrong, 1_001),
            Err(ChallengeError::Invalid(_))
        ));
        assert!(matches!(
            key.check("contact", "%%%", 1_001),
            Err(ChallengeError::Invalid(_))
        ));
    }

    #[test]
    fn the_response_is_taken_out_of_the_payload() {
        use crate::forms::RawValue::Text;
        let mut p: RawPayload = vec![
            ("email".into(), Text("a@example.com".into())),
            ("h-captcha-response".into(), Text("h".into())),
            ("cf-turnstile-response".into(), Text("cf".into())),
        ];
        assert_eq!(take_response(&mut p).as_deref(), Some("cf"));
        assert_eq!(p.len(), 1);
    }
}
