//! Who takes a lead: routes first (by form, or by a field such as country), then the
//! least-loaded owner of the pool; owners who are away or at their cap are passed over.
//! Every decision comes with its reason in words.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;

use crate::config::{ConfigError, HandoffSettings, OwnerConfig};
use crate::scoring::LeadFacts;

/// Where a hand-off goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub owner: Option<String>,
    pub reason: String,
}

/// Checks owners and routes (ids, addresses, dates, routes naming owners and forms).
pub fn check(h: &HandoffSettings, forms: &[&str]) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for o in &h.owners {
        let at = |m: String| ConfigError::invalid(format!("handoff.owners '{}'", o.id), m);
        if o.id.trim().is_empty() || o.id.len() > 64 || !ids.insert(o.id.as_str()) {
            return Err(at("needs an id of 1-64 characters, used once".into()));
        }
        crate::domain::EmailAddress::parse(&o.email)
            .map_err(|e| at(format!("email '{}' {e}", o.email)))?;
        for a in &o.away {
            let (from, until) = (date(&a.from), date(&a.until));
            match (from, until) {
                (Some(f), Some(u)) if f <= u => {}
                _ => {
                    return Err(at(format!(
                        "away from '{}' until '{}': dates are YYYY-MM-DD, from before until",
                        a.from, a.until
                    )))
                }
            }
        }
    }
    for (i, r) in h.routes.iter().enumerate() {
        let at = |m: String| ConfigError::invalid(format!("handoff.routes[{i}]"), m);
        if !ids.contains(r.owner.as_str()) {
            return Err(at(format!("owner '{}' is not in handoff.owners", r.owner)));
        }
        if let Some(f) = r.forms.iter().find(|f| !forms.contains(&f.as_str())) {
            return Err(at(format!("form '{f}' is not configured")));
        }
        if r.forms.is_empty() && r.field.is_none() {
            return Err(at("needs forms, or a field with equals".into()));
        }
        if r.field.is_some() == r.equals.is_empty() {
            return Err(at("field and equals go together".into()));
        }
    }
    for e in &h.escalate_to {
        crate::domain::EmailAddress::parse(e)
            .map_err(|err| ConfigError::invalid("handoff.escalate_to", format!("'{e}' {err}")))?;
    }
    if h.sla_hours == 0 || h.link_days == 0 {
        return Err(ConfigError::invalid(
            "handoff",
            "sla_hours and link_days must be at least 1",
        ));
    }
    Ok(())
}

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// Why an owner cannot take a lead now (`None`: they can).
fn unavailable(o: &OwnerConfig, load: i64, today: NaiveDate) -> Option<String> {
    if o.away.iter().any(|a| {
        date(&a.from).is_some_and(|f| f <= today) && date(&a.until).is_some_and(|u| today <= u)
    }) {
        return Some(format!("{} is away", o.name));
    }
    match o.max_open {
        Some(cap) if load >= i64::from(cap) => {
            Some(format!("{} has {load} open hand-offs (cap {cap})", o.name))
        }
        _ => None,
    }
}

/// Picks the owner for a lead who submitted `forms` and has `facts`, given each owner's open
/// hand-offs (`load`), on `now_ms`'s day (UTC).
pub fn route(
    h: &HandoffSettings,
    facts: &LeadFacts,
    forms: &HashSet<String>,
    load: &BTreeMap<String, i64>,
    now_ms: i64,
) -> Decision {
    let today = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .date_naive();
    let load_of = |id: &str| load.get(id).copied().unwrap_or(0);
    let mut passed = Vec::new();
    for (i, r) in h.routes.iter().enumerate() {
        let by_form = r.forms.iter().find(|f| forms.contains(*f));
        let by_field = r.field.as_ref().and_then(|f| {
            let v = facts.fields.get(f)?.trim().to_lowercase();
            r.equals
                .iter()
                .any(|e| e.trim().to_lowercase() == v)
                .then(|| format!("{f} is '{v}'"))
        });
        let why = match (by_form, by_field) {
            (Some(f), _) => format!("form '{f}'"),
            (None, Some(w)) => w,
            (None, None) => continue,
        };
        let Some(owner) = h.owners.iter().find(|o| o.id == r.owner) else {
            continue;
        };
        match unavailable(owner, load_of(&owner.id), today) {
            None => {
                return Decision {
                    owner: Some(owner.id.clone()),
                    reason: format!("route {} matched ({why}): {}", i + 1, owner.name),
                }
            }
            Some(no) => passed.push(format!("route {} matched ({why}) but {no}", i + 1)),
        }
    }
    let mut pool: Vec<(&OwnerConfig, i64)> = Vec::new();
    for o in h.owners.iter().filter(|o| o.pool) {
        let l = load_of(&o.id);
        match unavailable(o, l, today) {
            None => pool.push((o, l)),
            Some(no) => passed.push(no),
        }
    }
    // Least loaded; ties go to the owner listed first.
    let best = pool.iter().min_by_key(|(_, l)| *l);
    let before = if passed.is_empty() {
        String::new()
    } else {
        format!("{}; ", passed.join("; "))
    };
    match best {
        Some((o, l)) => {
            let others: Vec<String> = pool
                .iter()
                .filter(|(x, _)| x.id != o.id)
                .map(|(x, l)| format!("{} {l}", x.name))
                .collect();
            let compare = if others.is_empty() {
                String::new()
            } else {
                format!(" (others: {})", others.join(", "))
            };
            Decision {
                owner: Some(o.id.clone()),
                reason: format!(
                    "{before}least-loaded in the pool: {} with {l} open{compare}",
                    o.name
                ),
            }
        }
        None => Decision {
            owner: None,
            reason: format!("{before}nobody in the pool can take it: unassigned"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AwayConfig, RouteConfig};

    fn owner(id: &str, max: Option<u32>) -> OwnerConfig {
        OwnerConfig {
            id: id.into(),
            name: id.to_uppercase(),
            email: format!("{id}@example.com"),
            pool: true,
            max_open: max,
            away: Vec::new(),
            crm_ids: BTreeMap::new(),
        }
    }

    fn settings() -> HandoffSettings {
        HandoffSettings {
            owners: vec![owner("ann", None), owner("bob", Some(2)), owner("cy", None)],
            routes: vec![RouteConfig {
                owner: "cy".into(),
                forms: Vec::new(),
                field: Some("country".into()),
                equals: vec!["DE".into(), "AT".into()],
            }],
            ..HandoffSettings::default()
        }
    }

    const DAY: i64 = 1_796_083_200_000; // 2026-12-01

    #[test]
    fn routes_come_first_then_the_least_loaded_owner() {
        let h = settings();
        let mut facts = LeadFacts::default();
        facts.fields.insert("country".into(), "de".into());
        let load = BTreeMap::from([("ann".to_string(), 3), ("bob".to_string(), 1)]);
        let d = route(&h, &facts, &HashSet::new(), &load, DAY);
        assert_eq!(d.owner.as_deref(), Some("cy"));
        assert_eq!(d.reason, "route 1 matched (country is 'de'): CY");
        facts.fields.clear();
        let load = BTreeMap::from([("ann".to_string(), 3), ("cy".to_string(), 2)]);
        let d = route(&h, &facts, &HashSet::new(), &load, DAY);
        assert_eq!(d.owner.as_deref(), Some("bob"));
        assert!(d.reason.contains("least-loaded"), "{}", d.reason);
    }

    #[test]
    fn away_and_full_owners_are_passed_over_and_said_so() {
        let mut h = settings();
        h.owners[2].away = vec![AwayConfig {
            from: "2026-11-30".into(),
            until: "2026-12-02".into(),
        }];
        let mut facts = LeadFacts::default();
        facts.fields.insert("country".into(), "AT".into());
        let load = BTreeMap::from([("ann".to_string(), 5), ("bob".to_string(), 2)]);
        let d = route(&h, &facts, &HashSet::new(), &load, DAY);
        assert_eq!(d.owner.as_deref(), Some("ann"));
        assert!(
            d.reason
                .starts_with("route 1 matched (country is 'at') but CY is away"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.contains("BOB has 2 open hand-offs (cap 2)"),
            "{}",
            d.reason
        );
        h.owners.retain(|o| o.id == "bob");
        h.routes.clear();
        let d = route(&h, &facts, &HashSet::new(), &load, DAY);
        assert_eq!(d.owner, None);
        assert!(d.reason.ends_with("unassigned"), "{}", d.reason);
    }

    #[test]
    fn owners_and_routes_are_checked() {
        let mut h = settings();
        assert!(check(&h, &["contact"]).is_ok());
        h.routes[0].owner = "zed".into();
        assert!(check(&h, &["contact"])
            .unwrap_err()
            .to_string()
            .contains("'zed'"));
        let mut h = settings();
        h.owners[0].away = vec![AwayConfig {
            from: "2026-12-05".into(),
            until: "2026-12-01".into(),
        }];
        assert!(check(&h, &["contact"])
            .unwrap_err()
            .to_string()
            .contains("YYYY-MM-DD"));
    }
}
