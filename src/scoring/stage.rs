//! Lifecycle stages: `subscriber -> lead -> mql -> sql -> opportunity -> customer`, plus
//! `disqualified`. Rules only ever move a lead forward; moving back is an explicit recycle
//! with a reason.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use super::expr::{Condition, Figures};
use super::{Activity, Score};
use crate::config::{ActivityKind, StageSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Subscriber,
    Lead,
    Mql,
    Sql,
    Opportunity,
    Customer,
    Disqualified,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Subscriber,
        Stage::Lead,
        Stage::Mql,
        Stage::Sql,
        Stage::Opportunity,
        Stage::Customer,
        Stage::Disqualified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Subscriber => "subscriber",
            Stage::Lead => "lead",
            Stage::Mql => "mql",
            Stage::Sql => "sql",
            Stage::Opportunity => "opportunity",
            Stage::Customer => "customer",
            Stage::Disqualified => "disqualified",
        }
    }

    /// Position on the funnel (`disqualified` is off it).
    pub fn rank(self) -> Option<u8> {
        match self {
            Stage::Subscriber => Some(0),
            Stage::Lead => Some(1),
            Stage::Mql => Some(2),
            Stage::Sql => Some(3),
            Stage::Opportunity => Some(4),
            Stage::Customer => Some(5),
            Stage::Disqualified => None,
        }
    }

    /// Whether going from `self` to `to` is a step back (a recycle), which needs a reason.
    /// Disqualifying needs one too.
    pub fn needs_reason(self, to: Stage) -> bool {
        match (self.rank(), to.rank()) {
            (Some(a), Some(b)) => b < a,
            (_, None) => true,
            (None, Some(_)) => true,
        }
    }

    /// Words for people ("marketing-qualified").
    pub fn label(self) -> &'static str {
        match self {
            Stage::Subscriber => "Subscriber",
            Stage::Lead => "Lead",
            Stage::Mql => "Marketing-qualified (MQL)",
            Stage::Sql => "Sales-qualified (SQL)",
            Stage::Opportunity => "Opportunity",
            Stage::Customer => "Customer",
            Stage::Disqualified => "Disqualified",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Stage, String> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown stage '{s}': subscriber, lead, mql, sql, opportunity, customer or \
                     disqualified"
                )
            })
    }
}

/// What moved a lead (recorded with every change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A stage rule (score, hand-raiser form, first submission).
    Rule,
    /// The admin API.
    Api,
    /// `inlet leads stage`.
    Cli,
    /// The console.
    Console,
    /// A hand-off's outcome (accepted, rejected, qualified …).
    Handoff,
    /// A CRM telling us.
    Crm,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Rule => "rule",
            Cause::Api => "api",
            Cause::Cli => "cli",
            Cause::Console => "console",
            Cause::Handoff => "handoff",
            Cause::Crm => "crm",
        }
    }
}

/// A lead's stage as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageView {
    pub stage: Stage,
    /// When a lead was last moved back: rules need new activity after this to move it
    /// forward again (a rejected MQL does not bounce straight back).
    pub recycled_at_ms: Option<i64>,
}

/// The compiled stage rules.
#[derive(Debug, Clone, Default)]
pub struct StageRules {
    mql_when: Option<Condition>,
    hand_raisers: HashSet<String>,
    newsletters: HashSet<String>,
}

impl StageRules {
    /// `forms`: every configured form id; `newsletters`: those of kind newsletter (people
    /// who only signed up to one are subscribers, not leads).
    pub fn compile(
        s: &StageSettings,
        forms: &[&str],
        newsletters: &[&str],
    ) -> Result<StageRules, String> {
        let mql_when = s
            .mql_when
            .as_deref()
            .map(Condition::parse)
            .transpose()
            .map_err(|e| format!("stages.mql_when: {e}"))?;
        for f in &s.hand_raisers {
            if !forms.contains(&f.as_str()) {
                return Err(format!("stages.hand_raisers: form '{f}' is not configured"));
            }
        }
        Ok(StageRules {
            mql_when,
            hand_raisers: s.hand_raisers.iter().cloned().collect(),
            newsletters: newsletters.iter().map(|f| (*f).to_string()).collect(),
        })
    }

    pub fn mql_when(&self) -> Option<&Condition> {
        self.mql_when.as_ref()
    }

    /// Where the rules move a lead now, with the reason; `None`: it stays. Only forward:
    /// a lead at `sql` or beyond, or disqualified, is left to people.
    pub fn next(
        &self,
        current: Option<&StageView>,
        activity: &[Activity],
        score: &Score,
    ) -> Option<(Stage, String)> {
        let submitted = |a: &&Activity| a.kind == ActivityKind::Submitted;
        let baseline = if activity
            .iter()
            .filter(submitted)
            .any(|a| !self.newsletters.contains(&a.form_id))
        {
            (Stage::Lead, "sent a form".to_string())
        } else if activity.iter().any(|a| submitted(&a)) {
            (Stage::Subscriber, "signed up to a newsletter".to_string())
        } else {
            return None;
        };
        let from = current.map(|c| c.stage);
        if from.is_some_and(|s| s.rank().is_none_or(|r| r >= 2)) {
            return None;
        }
        let since = current.and_then(|c| c.recycled_at_ms).unwrap_or(i64::MIN);
        let fresh = |a: &&Activity| a.at_ms > since;
        let hand_raised = activity
            .iter()
            .filter(submitted)
            .filter(fresh)
            .find(|a| self.hand_raisers.contains(&a.form_id));
        let target = if let Some(a) = hand_raised {
            Some((
                Stage::Mql,
                format!("asked to talk to sales (form '{}')", a.form_id),
            ))
        } else {
            self.mql_when
                .as_ref()
                .filter(|c| {
                    c.holds(Figures {
                        fit: score.fit,
                        engagement: score.engagement,
                        score: score.score,
                    })
                })
                .filter(|_| activity.iter().any(|a| fresh(&a)))
                .map(|c| {
                    (
                        Stage::Mql,
                        format!(
                            "fit {} and engagement {} meet the MQL rule ({})",
                            score.fit,
                            score.engagement,
                            c.plain()
                        ),
                    )
                })
        }
        .unwrap_or(baseline);
        let ahead = match from.and_then(Stage::rank) {
            None => true,
            Some(r) => target.0.rank().is_some_and(|t| t > r),
        };
        ahead.then_some(target)
    }
}
