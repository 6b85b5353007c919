//! Qualification and hand-off settings as plain data: scoring rules, lifecycle stage rules,
//! sales owners and routing, and webhook endpoints. Checked and compiled by `scoring`,
//! `handoff` and `webhooks` at startup; nothing here builds anything.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact_list;

/// How leads are scored (see the README's "Scoring" section). No rules: scoring is off, every
/// lead scores 0 and only hand-raiser forms and explicit moves change stages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringSettings {
    /// Engagement points halve every this many days (0: they never fade).
    pub half_life_days: f64,
    /// Names the rule set in scores and the stage ledger; default: a hash of the rules, so a
    /// changed rule set is a new version by itself.
    pub version: Option<String>,
    /// Free-mail domains besides the built-in list (gmail.com, outlook.com, …), for
    /// `email = "free"` / `email = "company"` rules.
    pub free_mail_domains: Vec<String>,
    /// The most a group of rules may add up to, by group name.
    pub caps: BTreeMap<String, i64>,
    pub rules: Vec<ScoreRuleConfig>,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        ScoringSettings {
            half_life_days: 30.0,
            version: None,
            free_mail_domains: Vec::new(),
            caps: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

/// Which kind of address an `email` rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailDomainKind {
    /// Not a free-mail domain.
    Company,
    /// A free-mail domain.
    Free,
}

/// What a person did, for engagement rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    /// Sent a form (quarantined submissions never count).
    Submitted,
    /// Confirmed a double opt-in sign-up.
    Confirmed,
    /// Used a download link (the first use of each link).
    Downloaded,
    /// Came back: a submission at least a day after the one before.
    Returned,
    /// Clicked a tracked link in nurture mail (`form`: the form that enrolled them).
    Clicked,
    /// Replied to nurture mail (`form`: the form that enrolled them).
    Replied,
}

/// One scoring rule. A rule with `event` is an **engagement** rule (what they did); one with
/// `email` or `field` is a **fit** rule (who they are).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoreRuleConfig {
    /// Stable name, shown in every score's factors.
    pub id: String,
    /// Points when the rule holds (engagement: per event, before decay). May be negative.
    pub points: i64,
    /// Rules of one group share the group's cap (`[scoring.caps]`).
    #[serde(default)]
    pub group: Option<String>,
    /// Fit: the address is a company or a free-mail one.
    #[serde(default)]
    pub email: Option<EmailDomainKind>,
    /// Fit: a field of the lead's newest submissions (any form).
    #[serde(default)]
    pub field: Option<String>,
    /// With `field`: its value equals one of these (case and spacing ignored).
    #[serde(default)]
    pub equals: Vec<String>,
    /// With `field`: one of these words or phrases appears in it (case ignored).
    #[serde(default)]
    pub contains: Vec<String>,
    /// With `field`: the first number in it is at least this (`"50-200"` reads as 50).
    #[serde(default)]
    pub at_least: Option<i64>,
    /// With `field`: the first number in it is at most this.
    #[serde(default)]
    pub at_most: Option<i64>,
    /// Engagement: what they did.
    #[serde(default)]
    pub event: Option<ActivityKind>,
    /// With `event`: only on this form.
    #[serde(default)]
    pub form: Option<String>,
    /// With `event`: how many of the newest events count (default 1).
    #[serde(default)]
    pub max_times: Option<u32>,
    /// With `event`: whether the points fade with `half_life_days` (default true).
    #[serde(default)]
    pub decay: Option<bool>,
}

/// Lifecycle stage rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StageSettings {
    /// When a lead becomes marketing-qualified, e.g. `"fit >= 30 and engagement >= 25"`
    /// (`fit`, `engagement`, `score`; `>= > <= < == !=`; `and`, `or`, `not`, parentheses).
    pub mql_when: Option<String>,
    /// Forms whose submission makes the lead an MQL at once (a demo request, "talk to sales").
    pub hand_raisers: Vec<String>,
}

/// Sales owners, how leads are routed to them, and the hand-off's clock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HandoffSettings {
    /// An MQL creates a hand-off (when there are owners).
    pub on_mql: bool,
    /// Hours an owner has to accept a hand-off before it is escalated.
    pub sla_hours: u64,
    /// Who hears about a hand-off nobody accepted in time (besides its owner).
    pub escalate_to: Vec<String>,
    /// How long the Accept / Reject links in an owner's email work.
    pub link_days: u64,
    pub owners: Vec<OwnerConfig>,
    /// Checked in order; the first that matches picks the owner. No match: the least-loaded
    /// owner of the pool.
    pub routes: Vec<RouteConfig>,
}

impl Default for HandoffSettings {
    fn default() -> Self {
        HandoffSettings {
            on_mql: true,
            sla_hours: 24,
            escalate_to: Vec::new(),
            link_days: 14,
            owners: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// A person in sales who takes leads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OwnerConfig {
    /// Stable id (shown in hand-offs and the API).
    pub id: String,
    pub name: String,
    /// Where hand-offs are mailed; a console account with this address and role `sales`
    /// sees this owner's queue.
    pub email: String,
    /// Takes leads that no route names (least-loaded first).
    #[serde(default = "yes")]
    pub pool: bool,
    /// The most open hand-offs at once; a full owner is passed over.
    #[serde(default)]
    pub max_open: Option<u32>,
    /// Days off (`YYYY-MM-DD`, inclusive, UTC): passed over by routes and the pool.
    #[serde(default)]
    pub away: Vec<AwayConfig>,
    /// This owner's user id in each CRM (`hubspot`, `salesforce`, `pipedrive`), so leads
    /// pushed there are assigned to them.
    #[serde(default)]
    pub crm_ids: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwayConfig {
    pub from: String,
    pub until: String,
}

/// A routing rule: leads that match go to `owner` (when available).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub owner: String,
    /// The lead submitted one of these forms.
    #[serde(default)]
    pub forms: Vec<String>,
    /// A field of the lead (e.g. `country`) equals one of `equals`.
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub equals: Vec<String>,
}

/// Webhooks: signed event deliveries to other systems (Standard Webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub endpoints: Vec<WebhookEndpointConfig>,
    /// Networks an endpoint may resolve to although private, loopback or link-local
    /// (e.g. `["10.1.2.0/24"]`); all others are refused.
    pub allow_private: Vec<String>,
    /// The most one delivery may take (connect to last byte).
    pub timeout_ms: u64,
    /// How long a delivery is retried before it is given up (about three days).
    pub retry_hours: u64,
    /// An endpoint that has failed every delivery for this long is disabled (and its
    /// contact told).
    pub disable_after_hours: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            endpoints: Vec::new(),
            allow_private: Vec::new(),
            timeout_ms: 10_000,
            retry_hours: 72,
            disable_after_hours: 120,
        }
    }
}

/// One receiver of events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// Stable id (deliveries and replays name it).
    pub id: String,
    /// `https://` (or `http://` for allow-listed private networks).
    pub url: String,
    /// `whsec_…` secrets, newest first: every one signs during a rotation.
    #[serde(serialize_with = "redact_list")]
    pub secrets: Vec<SecretString>,
    /// Event types sent (`lead.mql`, `handoff.*`, …); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Told by email when the endpoint is disabled.
    #[serde(default)]
    pub contact: Option<String>,
}

/// CRM adapters: leads pushed to the CRM sales already uses, through the same delivery queue
/// as webhooks (retries, log, replay). Each is off unless configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmSettings {
    pub hubspot: Option<CrmConfig>,
    pub salesforce: Option<CrmConfig>,
    pub pipedrive: Option<CrmConfig>,
}

/// One CRM's connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    /// The API's base: HubSpot `https://api.hubapi.com`, Salesforce your instance
    /// (`https://example.my.salesforce.com`), Pipedrive `https://api.pipedrive.com` or your
    /// company domain.
    pub url: String,
    /// HubSpot: a private app's access token; Salesforce: an OAuth access token; Pipedrive:
    /// an API token.
    #[serde(serialize_with = "super::redact")]
    pub token: SecretString,
    /// Events that push the lead (default: `lead.mql`, `lead.stage_changed`,
    /// `handoff.created`, `lead.erased`).
    #[serde(default)]
    pub on: Vec<String>,
    /// Salesforce: the REST API version (default `v60.0`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Salesforce: let the org's lead assignment rules pick the owner (default true; false:
    /// the hand-off's owner, by `crm_ids.salesforce`).
    #[serde(default)]
    pub assignment_rules: Option<bool>,
    /// Told by email when the CRM keeps refusing pushes and is disabled.
    #[serde(default)]
    pub contact: Option<String>,
}
