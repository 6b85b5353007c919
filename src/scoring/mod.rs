//! Lead scores a person can question: a pure function of the lead's facts (address, the
//! fields they typed), its activity (what they did, when), the rule set and the time. Never a
//! running total: the same inputs always give the same score, and every point is a factor.
//!
//! Two axes: **fit** (who they are) and **engagement** (what they did, fading with a
//! half-life). Each rule that holds is one factor; a group over its cap gets one more factor
//! taking the excess back. Every factor's points are whole numbers and the score is their
//! sum, exactly.

mod expr;
mod stage;

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use expr::{Condition, Figures};
pub use stage::{Cause, Stage, StageRules, StageView};

use crate::config::{ActivityKind, EmailDomainKind, ScoreRuleConfig, ScoringSettings};

const DAY_MS: i64 = 86_400_000;

/// Well-known free-mail domains (`email = "free"` rules); the config can add more.
pub const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "ymail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "outlook.com",
    "outlook.de",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "gmx.de",
    "gmx.net",
    "gmx.com",
    "web.de",
    "t-online.de",
    "freenet.de",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "tutanota.com",
    "fastmail.com",
    "hey.com",
    "mail.com",
    "zoho.com",
    "yandex.ru",
    "yandex.com",
    "mail.ru",
    "qq.com",
    "163.com",
    "126.com",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "seznam.cz",
    "wp.pl",
];

/// Which axis a factor counts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    Fit,
    Engagement,
}

/// One thing that happened, as scoring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub kind: ActivityKind,
    pub form_id: String,
    pub at_ms: i64,
}

/// Who the lead is: their address and the newest value of each field they typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadFacts {
    pub email: String,
    pub fields: BTreeMap<String, String>,
}

/// One reason for a score.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Factor {
    /// The rule's id (`cap:<group>` for a cap taking back an excess).
    pub rule: String,
    #[schema(value_type = String)]
    pub axis: String,
    pub points: i64,
    /// What held, in words.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Engagement: how many events counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u32>,
    /// Engagement: when the newest one happened (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_at_ms: Option<i64>,
}

/// A lead's score at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Score {
    pub score: i64,
    pub fit: i64,
    pub engagement: i64,
    /// The rule set's version.
    pub ruleset: String,
    pub factors: Vec<Factor>,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
enum Test {
    Email(EmailDomainKind),
    Field {
        name: String,
        equals: Vec<String>,
        contains: Vec<String>,
        at_least: Option<i64>,
        at_most: Option<i64>,
    },
    Event {
        kind: ActivityKind,
        form: Option<String>,
        max_times: u32,
        decay: bool,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    points: i64,
    group: Option<String>,
    axis: Axis,
    test: Test,
}

/// The compiled rule set: checked once at startup.
#[derive(Debug, Clone)]
pub struct Ruleset {
    version: String,
    half_life_days: f64,
    free: HashSet<String>,
    caps: BTreeMap<String, i64>,
    rules: Vec<Rule>,
}

impl Ruleset {
    /// Checks and compiles the rules; `forms` are the configured form ids (a rule naming
    /// another form is a mistake).
    pub fn compile(s: &ScoringSettings, forms: &[&str]) -> Result<Ruleset, String> {
        if !(s.half_life_days.is_finite() && s.half_life_days >= 0.0) {
            return Err("scoring.half_life_days must be 0 or more".into());
        }
        let mut ids = HashSet::new();
        let mut rules = Vec::with_capacity(s.rules.len());
        let mut group_axis: BTreeMap<String, Axis> = BTreeMap::new();
        for r in &s.rules {
            let rule = compile_rule(r, forms)?;
            if !ids.insert(r.id.clone()) {
                return Err(format!("scoring rule '{}' is defined twice", r.id));
            }
            if let Some(g) = &rule.group {
                if *group_axis.entry(g.clone()).or_insert(rule.axis) != rule.axis {
                    return Err(format!(
                        "scoring group '{g}' mixes fit and engagement rules; a cap counts on one axis"
                    ));
                }
            }
            rules.push(rule);
        }
        for g in s.caps.keys() {
            if !group_axis.contains_key(g) {
                return Err(format!(
                    "scoring.caps names group '{g}', which no rule is in"
                ));
            }
        }
        let version = match &s.version {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => {
                let canonical = serde_json::to_string(&(
                    &s.rules,
                    &s.caps,
                    s.half_life_days.to_bits(),
                    &s.free_mail_domains,
                ))
                .unwrap_or_default();
                format!("r-{}", &hex::encode(Sha256::digest(canonical))[..10])
            }
        };
        let mut free: HashSet<String> = FREE_MAIL.iter().map(|d| (*d).to_string()).collect();
        free.extend(s.free_mail_domains.iter().map(|d| d.trim().to_lowercase()));
        Ok(Ruleset {
            version,
            half_life_days: s.half_life_days,
            free,
            caps: s.caps.clone(),
            rules,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The score of a lead with these facts and this activity at `now_ms`.
    pub fn score(&self, facts: &LeadFacts, activity: &[Activity], now_ms: i64) -> Score {
        let returned = returns(activity);
        let mut factors: Vec<Factor> = Vec::new();
        for rule in &self.rules {
            let factor = match &rule.test {
                Test::Email(kind) => self.email_factor(rule, *kind, &facts.email),
                Test::Field {
                    name,
                    equals,
                    contains,
                    at_least,
                    at_most,
                } => field_factor(
                    rule,
                    name,
                    facts.fields.get(name),
                    (equals, contains, *at_least, *at_most),
                ),
                Test::Event {
                    kind,
                    form,
                    max_times,
                    decay,
                } => {
                    let source: &[Activity] = if *kind == ActivityKind::Returned {
                        &returned
                    } else {
                        activity
                    };
                    self.event_factor(
                        rule,
                        (*kind, form.as_deref()),
                        (*max_times, *decay),
                        source,
                        now_ms,
                    )
                }
            };
            factors.extend(factor);
        }
        // Caps: a group over its cap gets one factor taking the excess back.
        for (group, &cap) in &self.caps {
            let total: i64 = factors
                .iter()
                .filter(|f| f.group.as_deref() == Some(group))
                .map(|f| f.points)
                .sum();
            if total > cap {
                let axis = factors
                    .iter()
                    .find(|f| f.group.as_deref() == Some(group))
                    .map(|f| f.axis.clone())
                    .unwrap_or_default();
                factors.push(Factor {
                    rule: format!("cap:{group}"),
                    axis,
                    points: cap - total,
                    detail: format!("group '{group}' adds up to {total}, capped at {cap}"),
                    group: Some(group.clone()),
                    events: None,
                    last_at_ms: None,
                });
            }
        }
        let on = |axis: &str| -> i64 {
            factors
                .iter()
                .filter(|f| f.axis == axis)
                .map(|f| f.points)
                .sum()
        };
        let (fit, engagement) = (on("fit"), on("engagement"));
        Score {
            score: fit + engagement,
            fit,
            engagement,
            ruleset: self.version.clone(),
            factors,
            at_ms: now_ms,
        }
    }

    fn email_factor(&self, rule: &Rule, kind: EmailDomainKind, email: &str) -> Option<Factor> {
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_lowercase())?;
        let free = self.free.contains(&domain);
        let holds = match kind {
            EmailDomainKind::Free => free,
            EmailDomainKind::Company => !free,
        };
        holds.then(|| Factor {
            rule: rule.id.clone(),
            axis: "fit".into(),
            points: rule.points,
            detail: if free {
                format!("a free-mail address (@{domain})")
            } else {
                format!("a company address (@{domain})")
            },
            group: rule.group.clone(),
            events: None,
            last_at_ms: None,
        })
    }

    fn event_factor(
        &self,
        rule: &Rule,
        (kind, form): (ActivityKind, Option<&str>),
        (max_times, decay): (u32, bool),
        activity: &[Activity],
        now_ms: i64,
    ) -> Option<Factor> {
        let mut matching: Vec<&Activity> = activity
            .iter()
            .filter(|a| a.kind == kind && form.is_none_or(|f| f == a.form_id))
            .collect();
        if matching.is_empty() {
            return None;
        }
        // The newest `max_times` count.
        matching.sort_by_key(|a| std::cmp::Reverse(a.at_ms));
        matching.truncate(max_times as usize);
        let raw: f64 = matching
            .iter()
            .map(|a| {
                let base = rule.points as f64;
                if decay && self.half_life_days > 0.0 {
                    let age_days = (now_ms - a.at_ms).max(0) as f64 / DAY_MS as f64;
                    base * 0.5f64.powf(age_days / self.half_life_days)
                } else {
                    base
                }
            })
            .sum();
        let points = raw.round() as i64;
        let n = u32::try_from(matching.len()).unwrap_or(u32::MAX);
        let newest = matching[0].at_ms;
        let what = match kind {
            ActivityKind::Submitted => "sent",
            ActivityKind::Confirmed => "confirmed",
            ActivityKind::Downloaded => "downloaded from",
            ActivityKind::Returned => "came back to",
            ActivityKind::Clicked => "clicked a link in nurture mail after",
            ActivityKind::Replied => "replied to nurture mail after",
        };
        let on = form.map_or_else(|| "any form".to_string(), |f| format!("form '{f}'"));
        let age = match (now_ms - newest).max(0) / DAY_MS {
            0 => "today".to_string(),
            1 => "yesterday".to_string(),
            n => format!("{n} days ago"),
        };
        let faded = if decay && self.half_life_days > 0.0 && points != rule.points * i64::from(n) {
            format!(", faded from {}", rule.points * i64::from(n))
        } else {
            String::new()
        };
        Some(Factor {
            rule: rule.id.clone(),
            axis: "engagement".into(),
            points,
            detail: format!(
                "{what} {on} {n} time{} (newest {age}{faded})",
                if n == 1 { "" } else { "s" },
            ),
            group: rule.group.clone(),
            events: Some(n),
            last_at_ms: Some(newest),
        })
    }
}

fn compile_rule(r: &ScoreRuleConfig, forms: &[&str]) -> Result<Rule, String> {
    let at = |m: &str| format!("scoring rule '{}': {m}", r.id);
    if r.id.trim().is_empty() || r.id.len() > 64 || r.id.starts_with("cap:") {
        return Err(format!(
            "scoring rule id '{}' must be 1-64 characters and not start with 'cap:'",
            r.id
        ));
    }
    let kinds = usize::from(r.email.is_some())
        + usize::from(r.field.is_some())
        + usize::from(r.event.is_some());
    if kinds != 1 {
        return Err(at("set exactly one of email, field or event"));
    }
    let field_only = !r.equals.is_empty()
        || !r.contains.is_empty()
        || r.at_least.is_some()
        || r.at_most.is_some();
    if field_only && r.field.is_none() {
        return Err(at("equals, contains, at_least and at_most go with field"));
    }
    let event_only = r.form.is_some() || r.max_times.is_some() || r.decay.is_some();
    if event_only && r.event.is_none() {
        return Err(at("form, max_times and decay go with event"));
    }
    if let Some(f) = &r.form {
        if !forms.contains(&f.as_str()) {
            return Err(at(&format!("form '{f}' is not configured")));
        }
    }
    let (axis, test) = if let Some(kind) = r.email {
        (Axis::Fit, Test::Email(kind))
    } else if let Some(name) = &r.field {
        let norm = |v: &[String]| v.iter().map(|s| normalise(s)).collect::<Vec<_>>();
        (
            Axis::Fit,
            Test::Field {
                name: name.clone(),
                equals: norm(&r.equals),
                contains: norm(&r.contains),
                at_least: r.at_least,
                at_most: r.at_most,
            },
        )
    } else {
        let max_times = r.max_times.unwrap_or(1);
        if max_times == 0 || max_times > 1000 {
            return Err(at("max_times must be 1-1000"));
        }
        (
            Axis::Engagement,
            Test::Event {
                kind: r.event.unwrap_or(ActivityKind::Submitted),
                form: r.form.clone(),
                max_times,
                decay: r.decay.unwrap_or(true),
            },
        )
    };
    if r.points.abs() > 1_000_000 {
        return Err(at("points must be between -1000000 and 1000000"));
    }
    Ok(Rule {
        id: r.id.clone(),
        points: r.points,
        group: r.group.clone(),
        axis,
        test,
    })
}

fn field_factor(
    rule: &Rule,
    name: &str,
    value: Option<&String>,
    (equals, contains, at_least, at_most): (&[String], &[String], Option<i64>, Option<i64>),
) -> Option<Factor> {
    let value = value.map(|v| v.trim()).filter(|v| !v.is_empty())?;
    let norm = normalise(value);
    let mut holds = true;
    let mut why = Vec::new();
    if !equals.is_empty() {
        let hit = equals.iter().find(|e| **e == norm);
        holds &= hit.is_some();
        why.push(format!(
            "is '{}'",
            hit.map_or(norm.as_str(), String::as_str)
        ));
    }
    if !contains.is_empty() {
        let words: Vec<&str> = norm
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let joined = format!(" {} ", words.join(" "));
        let hit = contains.iter().find(|c| joined.contains(&format!(" {c} ")));
        holds &= hit.is_some();
        if let Some(h) = hit {
            why.push(format!("mentions '{h}'"));
        }
    }
    if at_least.is_some() || at_most.is_some() {
        match first_number(value) {
            Some(n) => {
                holds &= at_least.is_none_or(|m| n >= m) && at_most.is_none_or(|m| n <= m);
                why.push(format!("reads as {n}"));
            }
            None => holds = false,
        }
    }
    if why.is_empty() {
        why.push("is given".into());
    }
    holds.then(|| Factor {
        rule: rule.id.clone(),
        axis: "fit".into(),
        points: rule.points,
        detail: format!("{name} {}", why.join(", ")),
        group: rule.group.clone(),
        events: None,
        last_at_ms: None,
    })
}

/// Lower case, runs of spaces as one.
fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The first whole number in a value (`"50-200"` -> 50, `"1,000+"` -> 1000).
fn first_number(s: &str) -> Option<i64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .take(15)
        .collect();
    digits.parse().ok()
}

/// Return visits: each submission at least a day after the one before it.
fn returns(activity: &[Activity]) -> Vec<Activity> {
    let mut subs: Vec<&Activity> = activity
        .iter()
        .filter(|a| a.kind == ActivityKind::Submitted)
        .collect();
    subs.sort_by_key(|a| a.at_ms);
    subs.windows(2)
        .filter(|w| w[1].at_ms - w[0].at_ms >= DAY_MS)
        .map(|w| Activity {
            kind: ActivityKind::Returned,
            form_id: w[1].form_id.clone(),
            at_ms: w[1].at_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests;
