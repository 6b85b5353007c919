//! Nurture sequences, compiled once at startup: what enrols a lead, the send window, the steps
//! (delays, skip conditions, the links their templates hold) and the exit rules; plus the pure
//! decisions built on them (when a step may go out, which step comes next, what an edited
//! sequence changes for leads already in it) and the tokens in their mail (reply addresses,
//! click redirects).
//!
//! The outbox is the scheduler: an enrolment's next step is one outbox row keyed by (enrolment,
//! step), written in the transaction that enrols the lead or that records the previous step as
//! sent. So crash safety, retries and the guarantee that two instances never both send a
//! message come from the outbox; there is no cron.

pub mod plan;
pub mod window;

use std::collections::{BTreeMap, HashSet};

use chrono_tz::Tz;
use hmac::Mac;

use crate::config::{ConfigError, EnrollOn, Reenroll, SequenceConfig, Settings};
use crate::scoring::{Condition, Figures, Stage};
pub use window::Window;

/// A compiled step.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    /// After the previous step (the first: after enrolment).
    pub delay_ms: i64,
    pub skip_when: Option<Condition>,
    /// Every `http(s)` URL written in the step's templates, in order of first appearance: a
    /// click redirect names one by its index, so a redirect only ever leads where the
    /// operator's own template pointed.
    pub links: Vec<String>,
    /// Whether the step has its own HTML template (otherwise the text in paragraphs).
    pub has_html: bool,
}

/// The exit rules besides those that always apply (unsubscribed, bounced, complained, erased).
#[derive(Debug, Clone)]
pub struct Exits {
    pub forms: HashSet<String>,
    pub stage_at_least: Option<Stage>,
    pub on_handoff: bool,
    pub on_reply: bool,
    pub when: Option<Condition>,
}

/// A compiled sequence.
#[derive(Debug, Clone)]
pub struct Sequence {
    pub id: String,
    pub name: String,
    pub on: EnrollOn,
    pub form: Option<String>,
    pub stage: Option<Stage>,
    pub reenroll: Reenroll,
    pub window: Window,
    pub exits: Exits,
    pub track_clicks: bool,
    pub reach_finished: bool,
    pub steps: Vec<Step>,
}

/// Why an enrolment ended early (stored as `exit_reason`).
pub mod reason {
    pub const UNSUBSCRIBED: &str = "unsubscribed";
    pub const BOUNCED: &str = "bounced";
    pub const COMPLAINED: &str = "complained";
    pub const REPLIED: &str = "replied";
    pub const HANDOFF: &str = "handoff";
    pub const STAGE: &str = "stage";
    pub const FORM: &str = "form";
    pub const CONDITION: &str = "condition";
    /// Every reason a lead can leave for, for counts that show zeros too.
    pub const ALL: [&str; 8] = [
        UNSUBSCRIBED,
        BOUNCED,
        COMPLAINED,
        REPLIED,
        HANDOFF,
        STAGE,
        FORM,
        CONDITION,
    ];
    /// Reasons after which a lead is never enrolled again, whatever the sequence says.
    pub const FINAL: [&str; 3] = [UNSUBSCRIBED, BOUNCED, COMPLAINED];
}

/// An exit reason in words.
pub fn exit_words(reason: &str) -> &'static str {
    match reason {
        "unsubscribed" => "unsubscribed",
        "bounced" => "their mail bounced",
        "complained" => "marked a mail as spam",
        "replied" => "replied (handed to sales)",
        "handoff" => "handed to sales",
        "stage" => "reached a later stage",
        "form" => "sent a form that ends it",
        "condition" => "met the exit condition",
        _ => "other",
    }
}

/// What a lead's state is, for the exit rules.
#[derive(Debug, Clone, Default)]
pub struct LeadState {
    pub stage: Option<Stage>,
    pub open_handoff: bool,
    pub figures: Figures,
    /// Forms the lead submitted since enrolling.
    pub forms_since: HashSet<String>,
    pub replied: bool,
}

impl Sequence {
    pub fn step(&self, id: &str) -> Option<(usize, &Step)> {
        self.steps.iter().enumerate().find(|(_, s)| s.id == id)
    }

    /// The step that follows, for an enrolment whose steps in `done` already have a row
    /// (sent, skipped, or waiting): the first step after the furthest of them that is still in
    /// the sequence, that has no row yet. A step already sent is never chosen again, and a
    /// step inserted before where a lead is now does not reach them.
    pub fn next_step<'a>(&'a self, done: &[String]) -> Option<&'a Step> {
        let furthest = done
            .iter()
            .filter_map(|d| self.step(d).map(|(i, _)| i))
            .max();
        let from = furthest.map_or(0, |i| i + 1);
        self.steps[from..]
            .iter()
            .find(|s| !done.iter().any(|d| d == &s.id))
    }

    /// Why this lead should leave now, if it should (`None`: it stays).
    pub fn exit_reason(&self, lead: &LeadState) -> Option<&'static str> {
        if self.exits.on_reply && lead.replied {
            return Some(reason::REPLIED);
        }
        if self.exits.on_handoff && lead.open_handoff {
            return Some(reason::HANDOFF);
        }
        if let (Some(min), Some(at)) = (self.exits.stage_at_least, lead.stage) {
            if at.rank().is_none() || at.rank() >= min.rank() {
                return Some(reason::STAGE);
            }
        }
        if lead
            .forms_since
            .iter()
            .any(|f| self.exits.forms.contains(f))
        {
            return Some(reason::FORM);
        }
        if self
            .exits
            .when
            .as_ref()
            .is_some_and(|c| c.holds(lead.figures))
        {
            return Some(reason::CONDITION);
        }
        None
    }

    /// Whether `event` (an integration event's type, its form and the stage it reached)
    /// enrols leads in this sequence.
    pub fn enrolled_by(&self, event: &str, form: Option<&str>, stage: Option<Stage>) -> bool {
        match self.on {
            EnrollOn::Submitted => event == "submission.created" && form == self.form.as_deref(),
            EnrollOn::Confirmed => event == "lead.confirmed" && form == self.form.as_deref(),
            EnrollOn::Downloaded => event == "download.used" && form == self.form.as_deref(),
            EnrollOn::Stage => {
                event == "lead.stage_changed" && stage.is_some() && stage == self.stage
            }
        }
    }
}

/// Every sequence, built once at startup.
#[derive(Debug, Clone, Default)]
pub struct Sequences {
    list: Vec<Sequence>,
}

/// Characters a sequence or step id may hold.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `0`, `90m`, `12h`, `3d`, `1d12h` (units d, h, m, s) as milliseconds.
pub fn parse_delay(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let bad = || format!("'{text}' is not a delay: write e.g. 0, 90m, 12h, 3d or 1d12h");
    let mut total: i64 = 0;
    let mut units = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: i64 = match c {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            's' => 1_000,
            _ => return Err(bad()),
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        units += 1;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if units == 0 || !number.is_empty() || total > 365 * 86_400_000 {
        return Err(bad());
    }
    Ok(total)
}

/// Every `http(s)` URL in `text`, in order of first appearance, without duplicates.
pub fn links_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | '{' | '}')
            })
            .unwrap_or(tail.len());
        let candidate = tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if (candidate.starts_with("https://") || candidate.starts_with("http://"))
            && candidate.len() > 8
            && !out.iter().any(|l| l == candidate)
        {
            out.push(candidate.to_string());
        }
        rest = &tail[end.max(4)..];
    }
    out
}

impl Sequences {
    /// Checks and compiles `settings.sequences` (forms, stages, steps, window, conditions).
    pub fn build(settings: &Settings) -> Result<Sequences, ConfigError> {
        let forms: Vec<&str> = settings.forms.iter().map(|f| f.id.as_str()).collect();
        let mut list = Vec::new();
        let mut ids = HashSet::new();
        for (i, c) in settings.sequences.iter().enumerate() {
            let at = |what: &str| format!("sequences[{}].{what}", c.id_or(i));
            list.push(compile(c, &forms, &at)?);
            if !ids.insert(c.id.clone()) {
                return Err(ConfigError::invalid(
                    format!("sequences[{}]", c.id),
                    "two sequences have this id",
                ));
            }
        }
        Ok(Sequences { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Sequence] {
        &self.list
    }

    pub fn get(&self, id: &str) -> Option<&Sequence> {
        self.list.iter().find(|s| s.id == id)
    }

    /// Form id -> the sequences a submission of it ends.
    pub fn exit_forms(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &self.list {
            for f in &s.exits.forms {
                out.entry(f.clone()).or_default().push(s.id.clone());
            }
        }
        out
    }

    /// Sequences whose exit rules include `pick`.
    pub fn ids_where(&self, pick: impl Fn(&Sequence) -> bool) -> Vec<String> {
        self.list
            .iter()
            .filter(|s| pick(s))
            .map(|s| s.id.clone())
            .collect()
    }
}

impl SequenceConfig {
    fn id_or(&self, i: usize) -> String {
        if self.id.is_empty() {
            i.to_string()
        } else {
            self.id.clone()
        }
    }
}

fn compile(
    c: &SequenceConfig,
    forms: &[&str],
    at: &dyn Fn(&str) -> String,
) -> Result<Sequence, ConfigError> {
    if !valid_id(&c.id) {
        return Err(ConfigError::invalid(
            at("id"),
            "an id is 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    let known_form = |f: &str, what: &str| {
        if forms.contains(&f) {
            Ok(())
        } else {
            Err(ConfigError::invalid(at(what), format!("no form '{f}'")))
        }
    };
    let (form, stage) = match c.enroll.on {
        EnrollOn::Stage => {
            let stage = c.enroll.stage.as_deref().ok_or_else(|| {
                ConfigError::invalid(at("enroll.stage"), "on = \"stage\" needs a stage")
            })?;
            let stage: Stage = stage.parse().map_err(|_| {
                ConfigError::invalid(at("enroll.stage"), format!("no stage '{stage}'"))
            })?;
            (None, Some(stage))
        }
        _ => {
            let form = c.enroll.form.as_deref().ok_or_else(|| {
                ConfigError::invalid(at("enroll.form"), "this trigger needs the form it watches")
            })?;
            known_form(form, "enroll.form")?;
            (Some(form.to_string()), None)
        }
    };
    for f in &c.exit.forms {
        known_form(f, "exit.forms")?;
    }
    let stage_at_least = match c.exit.stage_at_least.as_str() {
        "none" | "" => None,
        s => Some(s.parse::<Stage>().map_err(|_| {
            ConfigError::invalid(
                at("exit.stage_at_least"),
                format!("no stage '{s}' (or \"none\")"),
            )
        })?),
    };
    let condition = |text: &Option<String>, what: &str| {
        text.as_deref()
            .map(Condition::parse)
            .transpose()
            .map_err(|m| ConfigError::invalid(at(what), m))
    };
    if c.steps.is_empty() {
        return Err(ConfigError::invalid(
            at("steps"),
            "a sequence needs at least one step",
        ));
    }
    let mut steps = Vec::with_capacity(c.steps.len());
    let mut seen = HashSet::new();
    for s in &c.steps {
        if !valid_id(&s.id) || !seen.insert(s.id.as_str()) {
            return Err(ConfigError::invalid(
                at(&format!("steps[{}].id", s.id)),
                "each step needs its own id of 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let delay_ms = parse_delay(&s.delay)
            .map_err(|m| ConfigError::invalid(at(&format!("steps[{}].delay", s.id)), m))?;
        let mut links = links_in(&s.text);
        for l in links_in(s.html.as_deref().unwrap_or_default()) {
            if !links.contains(&l) {
                links.push(l);
            }
        }
        steps.push(Step {
            id: s.id.clone(),
            delay_ms,
            skip_when: condition(&s.skip_when, &format!("steps[{}].skip_when", s.id))?,
            links,
            has_html: s.html.is_some(),
        });
    }
    Ok(Sequence {
        id: c.id.clone(),
        name: c.name.clone().unwrap_or_else(|| c.id.clone()),
        on: c.enroll.on,
        form,
        stage,
        reenroll: c.reenroll,
        window: Window::compile(&c.window)
            .map_err(|(what, m)| ConfigError::invalid(at(&format!("window.{what}")), m))?,
        exits: Exits {
            forms: c.exit.forms.iter().cloned().collect(),
            stage_at_least,
            on_handoff: c.exit.on_handoff,
            on_reply: c.exit.on_reply,
            when: condition(&c.exit.when, "exit.when")?,
        },
        track_clicks: c.track_clicks,
        reach_finished: c.reach_finished,
        steps,
    })
}

/// What enrols a lead in `s`, in words.
pub fn describe_trigger(s: &Sequence) -> String {
    let form = s.form.as_deref().unwrap_or_default();
    match s.on {
        EnrollOn::Submitted => format!("a submission of the '{form}' form"),
        EnrollOn::Confirmed => format!("a confirmed sign-up on the '{form}' form"),
        EnrollOn::Downloaded => format!("the first download from the '{form}' form"),
        EnrollOn::Stage => format!(
            "reaching the stage '{}'",
            s.stage.map_or("?", Stage::as_str)
        ),
    }
}

/// A lead's own time zone from a form field, when it names one.
pub fn lead_zone(value: Option<&str>) -> Option<Tz> {
    value.and_then(|v| v.trim().parse::<Tz>().ok())
}

/// The HMAC that reply addresses and click redirects carry, keyed with a secret derived from
/// the suppression key (shared by every instance, and never rotated: mail already sent keeps
/// working).
#[derive(Clone)]
pub struct Tokens {
    key: [u8; 32],
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens")
    }
}

impl Tokens {
    pub fn new(key: [u8; 32]) -> Tokens {
        Tokens { key }
    }

    fn mac(&self, purpose: &str, body: &str) -> String {
        let mut mac = crate::consent::hmac_sha256(&self.key);
        mac.update(purpose.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// `<message id, 32 hex><mac, 16 hex>`: lower-case hex only, since mail systems may
    /// change the case of an address's local part; 48 characters, within its 64.
    pub fn reply_token(&self, message_id: &str) -> Option<String> {
        let id = uuid::Uuid::parse_str(message_id).ok()?.simple().to_string();
        let mac = self.mac("reply", &id);
        Some(format!("{id}{mac}"))
    }

    /// The message id a reply token names, if the token is ours.
    pub fn verify_reply(&self, token: &str) -> Option<String> {
        let token = token.to_ascii_lowercase();
        if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (id, mac) = token.split_at(32);
        let expected = self.mac("reply", id);
        use subtle::ConstantTimeEq;
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
    }

    /// `<message id, 32 hex>-<link index>-<mac, 16 hex>` for a click redirect.
    pub fn click_token(&self, message_id: &str, index: usize) -> Option<String> {
        let id = uuid::Uuid::parse_str(message_id).ok()?.simple().to_string();
        let mac = self.mac("click", &format!("{id}-{index}"));
        Some(format!("{id}-{index}-{mac}"))
    }

    /// The message and link index a click token names, and whether its signature holds.
    pub fn read_click(&self, token: &str) -> Option<(String, usize, bool)> {
        if token.len() > 80 {
            return None;
        }
        let mut parts = token.split('-');
        let (id, index, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let index: usize = index.parse().ok().filter(|i| *i < 1000)?;
        let message = uuid::Uuid::parse_str(id).ok()?;
        let expected = self.mac("click", &format!("{}-{index}", message.simple()));
        use subtle::ConstantTimeEq;
        let verified = bool::from(expected.as_bytes().ct_eq(mac.as_bytes()));
        Some((message.to_string(), index, verified))
    }
}

/// The address replies to one message go to: `local+token@domain` of the configured address.
pub fn reply_address(configured: &str, token: &str) -> Option<String> {
    let (local, domain) = configured.trim().rsplit_once('@')?;
    let local = local.split('+').next().unwrap_or(local);
    Some(format!("{local}+{token}@{domain}"))
}

/// The token of a reply address `local+token@domain` (any local part before the `+`).
pub fn token_of_address(address: &str) -> Option<&str> {
    let (local, _) = address.trim().rsplit_once('@')?;
    let (_, token) = local.split_once('+')?;
    Some(token)
}

/// What an edited sequence changes for one enrolment: the steps still to come under the
/// definition it was last run with, and under the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub gains: Vec<String>,
    pub loses: Vec<String>,
}

/// Steps still to come for an enrolment with rows for `done` under a step order `order`.
pub fn still_to_come(order: &[String], done: &[String]) -> Vec<String> {
    let furthest = done
        .iter()
        .filter_map(|d| order.iter().position(|s| s == d))
        .max();
    let from = furthest.map_or(0, |i| i + 1);
    order[from..]
        .iter()
        .filter(|s| !done.contains(s))
        .cloned()
        .collect()
}

/// The change for one enrolment from `old` to `new` step orders. A waiting step that the new
/// order drops is lost too (it is skipped when it falls due).
pub fn change(old: &[String], new: &[String], done: &[String], waiting: Option<&str>) -> Change {
    let before = still_to_come(old, done);
    let after = still_to_come(new, done);
    let mut loses: Vec<String> = before
        .iter()
        .filter(|s| !after.contains(s))
        .cloned()
        .collect();
    if let Some(w) = waiting.filter(|w| !new.iter().any(|s| s == w)) {
        loses.insert(0, w.to_string());
    }
    Change {
        gains: after
            .iter()
            .filter(|s| !before.contains(s))
            .cloned()
            .collect(),
        loses,
    }
}

#[cfg(test)]
mod tests;
