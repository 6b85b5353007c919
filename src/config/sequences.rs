//! Nurture sequences as plain data: what enrols a lead, when mail may go out, the steps with
//! their templates and delays, and what makes a lead leave. Checked and compiled by
//! `sequences` at startup; nothing here builds anything.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// One timed series of mails (see the README's "Nurture sequences").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// Stable id (letters, digits, `-`, `_`): enrolments and sent steps refer to it.
    pub id: String,
    /// What the console shows; default: the id.
    #[serde(default)]
    pub name: Option<String>,
    pub enroll: EnrollConfig,
    /// Whether a lead who finished or left may be enrolled again by a new trigger.
    #[serde(default)]
    pub reenroll: Reenroll,
    /// When mail of this sequence may go out.
    #[serde(default)]
    pub window: WindowConfig,
    #[serde(default)]
    pub exit: ExitConfig,
    /// Links in this sequence's mail go through signed redirects that count clicks (off by
    /// default; there is never an open-tracking pixel).
    #[serde(default)]
    pub track_clicks: bool,
    /// Steps appended to the sequence later also reach leads who had already finished it.
    #[serde(default)]
    pub reach_finished: bool,
    pub steps: Vec<StepConfig>,
}

/// What enrols a lead.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnrollConfig {
    pub on: EnrollOn,
    /// `submitted`, `confirmed`, `downloaded`: the form.
    #[serde(default)]
    pub form: Option<String>,
    /// `stage`: the stage a lead reaches (e.g. `lead`).
    #[serde(default)]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnrollOn {
    /// A (non-spam) submission of the form.
    Submitted,
    /// A confirmed double opt-in sign-up on the form.
    Confirmed,
    /// The first use of the form's download link (the address is proven: the link came by
    /// mail).
    Downloaded,
    /// The lead reaches the stage.
    Stage,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reenroll {
    /// Once per lead, ever.
    #[default]
    Never,
    /// Again after the previous enrolment finished, or ended for a reason other than an
    /// unsubscribe, bounce, complaint or erasure.
    AfterEnd,
}

/// Weekdays and hours in a time zone; a step that falls due outside waits for the next opening.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// `mon` … `sun`.
    pub days: Vec<String>,
    /// `HH:MM`, local time.
    pub from: String,
    /// `HH:MM`, local time, after `from`.
    pub until: String,
    /// IANA zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// A form field holding the lead's own IANA zone; used when it names a valid one.
    pub lead_time_zone_field: Option<String>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .map(String::from)
                .to_vec(),
            from: "00:00".into(),
            until: "24:00".into(),
            time_zone: "UTC".into(),
            lead_time_zone_field: None,
        }
    }
}

/// What ends an enrolment besides an unsubscribe, a bounce, a complaint or an erasure (those
/// always do).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExitConfig {
    /// Submitting any of these forms (a demo request, "talk to sales").
    pub forms: Vec<String>,
    /// Reaching this stage or a later one (`none`: never).
    pub stage_at_least: String,
    /// A hand-off to sales is created.
    pub on_handoff: bool,
    /// The lead replies to one of the sequence's mails.
    pub on_reply: bool,
    /// A condition on the lead's score, e.g. `engagement >= 80`.
    pub when: Option<String>,
}

impl Default for ExitConfig {
    fn default() -> Self {
        ExitConfig {
            forms: Vec::new(),
            stage_at_least: "sql".into(),
            on_handoff: true,
            on_reply: true,
            when: None,
        }
    }
}

/// One mail of a sequence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Stable id: a step already sent is never sent again, whatever the order becomes.
    pub id: String,
    /// After the previous step (the first: after enrolment): `0`, `90m`, `12h`, `3d`, `1d12h`.
    #[serde(default = "zero")]
    pub delay: String,
    /// Template of the subject (never sees anything the lead typed).
    pub subject: String,
    /// Template of the plain-text body.
    pub text: String,
    /// Template of the HTML body; default: the text in paragraphs.
    #[serde(default)]
    pub html: Option<String>,
    /// Skipped (and the next step scheduled) when this holds as it falls due, e.g.
    /// `engagement >= 60`.
    #[serde(default)]
    pub skip_when: Option<String>,
}

fn zero() -> String {
    "0".into()
}

/// Replies to sequence mail: where they go, and the inbound endpoint's credential.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplySettings {
    /// The address replies go to, e.g. `replies@in.example.com`; each message's Reply-To
    /// becomes `replies+<token>@in.example.com`. Unset: sequence mail has no reply token.
    pub address: Option<String>,
    /// What the inbound-mail provider sends to `POST /v1/inbound/email` (as a Bearer token,
    /// or as the password of HTTP Basic authentication). Unset: the endpoint answers 404.
    #[serde(serialize_with = "super::redact_opt")]
    pub secret: Option<SecretString>,
}
