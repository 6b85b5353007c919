//! `NewSubmission`: a submission that has been parsed against its form and may be stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClientIp, EmailAddress};

/// A field's validated value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Bool(bool),
    Text(String),
}

impl FieldValue {
    pub fn as_text(&self) -> String {
        match self {
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Text(s) => s.clone(),
        }
    }
}

/// Keys that carry attribution rather than form fields. They are reserved in every form.
pub const ATTRIBUTION_KEYS: [&str; 8] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer",
    "landing_page",
    "page_title",
];

/// Where the lead came from. Best effort: cleaned and truncated, never a reason to reject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub referrer: Option<String>,
    pub landing_page: Option<String>,
    pub user_agent: Option<String>,
    /// Click ids, page title, first/last touch and the like: small, free-form.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub more: BTreeMap<String, String>,
}

/// The source of imported people (`inlet leads import`): leads, but not any form's
/// conversions, so reports leave them out.
pub const IMPORT_SOURCE: &str = "(import)";

/// Longest source or campaign name kept for reports (longer ones are cut).
pub const DIMENSION_CHARS: usize = 64;

/// The longest search key kept (a name or company, as searched).
pub const SEARCH_KEY_CHARS: usize = 200;

/// What a name or company is searched by: trimmed, lower-cased (every letter), at most
/// [`SEARCH_KEY_CHARS`]; `None` when nothing is left. The same function makes the stored key
/// and the searched prefix, so they always agree.
pub fn search_key(v: &str) -> Option<String> {
    let key: String = v
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .take(SEARCH_KEY_CHARS)
        .collect();
    (!key.is_empty()).then_some(key)
}

/// A report dimension from what a visitor's URL said: trimmed, lower-cased, no control
/// characters, at most [`DIMENSION_CHARS`]; `None` when nothing is left.
pub fn dimension(v: Option<&str>) -> Option<String> {
    let v: String = v?
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(char::to_lowercase)
        .take(DIMENSION_CHARS)
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Where a visit came from, as reports group it: the `utm_source`, else the referring site's
/// host (without `www.`), else `direct`.
pub fn source_of(utm_source: Option<&str>, referrer: Option<&str>) -> String {
    dimension(utm_source)
        .or_else(|| {
            let url = url::Url::parse(referrer?).ok()?;
            let host = url.host_str()?;
            dimension(Some(host.strip_prefix("www.").unwrap_or(host)))
        })
        .unwrap_or_else(|| "direct".into())
}

impl Attribution {
    /// Where the visit came from (see [`source_of`]).
    pub fn source(&self) -> String {
        source_of(self.utm_source.as_deref(), self.referrer.as_deref())
    }

    /// The campaign, as reports group it (see [`dimension`]).
    pub fn campaign(&self) -> Option<String> {
        dimension(self.utm_campaign.as_deref())
    }

    /// The flat columns stored (and exported) with every submission, in their order.
    pub fn columns(&self) -> [(&'static str, Option<&str>); 8] {
        [
            ("utm_source", self.utm_source.as_deref()),
            ("utm_medium", self.utm_medium.as_deref()),
            ("utm_campaign", self.utm_campaign.as_deref()),
            ("utm_term", self.utm_term.as_deref()),
            ("utm_content", self.utm_content.as_deref()),
            ("referrer", self.referrer.as_deref()),
            ("landing_page", self.landing_page.as_deref()),
            ("user_agent", self.user_agent.as_deref()),
        ]
    }

    /// Sets an attribution key (one of [`ATTRIBUTION_KEYS`] or a click id) from a cleaned value.
    pub fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "utm_source" => &mut self.utm_source,
            "utm_medium" => &mut self.utm_medium,
            "utm_campaign" => &mut self.utm_campaign,
            "utm_term" => &mut self.utm_term,
            "utm_content" => &mut self.utm_content,
            "referrer" => &mut self.referrer,
            "landing_page" => &mut self.landing_page,
            _ => {
                self.more.insert(key.to_string(), value);
                return;
            }
        };
        *slot = Some(value);
    }
}

/// A client-chosen key that makes retries of one submit attempt safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1 to 128 characters of `[A-Za-z0-9_.:-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        ok.then(|| IdempotencyKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A consent checkbox the person ticked: its exact wording and that wording's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentGiven {
    pub field: String,
    pub text: String,
    pub version: String,
}

/// Whether the submission's mail waits for the person to confirm their address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Confirmation {
    /// Mail goes out at once (no double opt-in, or spam, which sends nothing anyway).
    #[default]
    NotRequired,
    /// Double opt-in: only the confirmation link is sent; its link works until then.
    Pending { expires_at_ms: i64 },
}

impl NewSubmission {
    /// What an idempotency key is bound to: the person and everything they typed (hex
    /// SHA-256). A retry carries the same; another submission under a reused key does not.
    /// Attribution and timing are left out: they may differ between a request and its retry.
    pub fn payload_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.email.as_str().as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(&self.fields).unwrap_or_default());
        h.update([0]);
        h.update(serde_json::to_vec(&self.extra).unwrap_or_default());
        hex::encode(h.finalize())
    }

    /// Stored but hidden from leads and exports, and sent nothing, until restored.
    pub fn quarantined(&self) -> bool {
        self.spam.quarantined()
    }
}

/// A submission parsed against its form: everything here is valid and ready to store.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub form_id: String,
    pub email: EmailAddress,
    /// The form's declared fields (other than the email), validated and normalised.
    pub fields: BTreeMap<String, FieldValue>,
    /// Fields the form does not declare, kept up to the form's cap.
    pub extra: BTreeMap<String, String>,
    pub attribution: Attribution,
    pub client_ip: Option<ClientIp>,
    /// Spam signals seen; quarantined (stored, sent nothing) only on strong evidence.
    pub spam: super::SpamSignals,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Milliseconds since the Unix epoch, server clock.
    pub received_at_ms: i64,
    /// Ticked consent checkboxes, recorded in the consent ledger with the submission.
    pub consents: Vec<ConsentGiven>,
    pub confirmation: Confirmation,
    /// Download forms delivering at once: the download link works until then.
    pub download_until_ms: Option<i64>,
}

#[cfg(test)]
mod dimension_tests {
    use super::*;

    #[test]
    fn sources_and_campaigns_are_grouped_alike() {
        assert_eq!(
            source_of(Some(" LinkedIn "), Some("https://google.com/")),
            "linkedin"
        );
        assert_eq!(
            source_of(None, Some("https://www.Google.com/search?q=x")),
            "google.com"
        );
        assert_eq!(source_of(Some(""), Some("not a url")), "direct");
        assert_eq!(source_of(None, None), "direct");
        assert_eq!(
            dimension(Some(&"x".repeat(500))).unwrap().len(),
            DIMENSION_CHARS
        );
        assert_eq!(dimension(Some("a\u{0}b\nc")).as_deref(), Some("abc"));
        assert_eq!(dimension(Some("  ")), None);
    }
}
