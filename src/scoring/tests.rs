use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::config::{demo_scoring, demo_stages, StageSettings};

const NOW: i64 = 1_800_000_000_000;

fn ruleset() -> Ruleset {
    Ruleset::compile(&demo_scoring(), &["newsletter", "contact", "whitepaper"]).unwrap()
}

fn act(kind: ActivityKind, form: &str, days_ago: i64) -> Activity {
    Activity {
        kind,
        form_id: form.into(),
        at_ms: NOW - days_ago * DAY_MS,
    }
}

fn facts(email: &str, fields: &[(&str, &str)]) -> LeadFacts {
    LeadFacts {
        email: email.into(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    }
}

#[test]
fn a_company_address_that_downloaded_and_wrote_scores_with_every_factor_named() {
    let s = ruleset().score(
        &facts(
            "ann@acme.example",
            &[("company", "Acme"), ("job_title", "Head of Marketing")],
        ),
        &[
            act(ActivityKind::Submitted, "whitepaper", 0),
            act(ActivityKind::Downloaded, "whitepaper", 0),
            act(ActivityKind::Submitted, "contact", 0),
        ],
        NOW,
    );
    let rules: Vec<&str> = s.factors.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "company-address",
            "names-a-company",
            "senior-title",
            "downloaded-whitepaper",
            "wrote-to-us"
        ]
    );
    assert_eq!((s.fit, s.engagement, s.score), (35, 35, 70));
    assert_eq!(s.factors[2].detail, "job_title mentions 'head'");
    assert_eq!(s.factors.iter().map(|f| f.points).sum::<i64>(), s.score);
}

#[test]
fn engagement_fades_with_the_half_life_and_fit_does_not() {
    let r = ruleset();
    let f = facts("bob@gmail.com", &[]);
    let fresh = r.score(&f, &[act(ActivityKind::Downloaded, "whitepaper", 0)], NOW);
    let month = r.score(&f, &[act(ActivityKind::Downloaded, "whitepaper", 30)], NOW);
    let two = r.score(&f, &[act(ActivityKind::Downloaded, "whitepaper", 60)], NOW);
    assert_eq!(
        (fresh.engagement, month.engagement, two.engagement),
        (20, 10, 5)
    );
    assert_eq!((fresh.fit, two.fit), (-10, -10));
    assert!(
        month.factors[1].detail.contains("faded from 20"),
        "{:?}",
        month.factors
    );
}

#[test]
fn caps_take_back_the_excess_as_a_factor_of_their_own() {
    let mut s = demo_scoring();
    s.rules.push(ScoreRuleConfig {
        id: "decides".into(),
        points: 10,
        group: Some("title".into()),
        field: Some("job_title".into()),
        contains: vec!["vp".into()],
        ..demo_scoring().rules[2].clone()
    });
    let r = Ruleset::compile(&s, &["newsletter", "contact", "whitepaper"]).unwrap();
    let score = r.score(
        &facts("a@b.example", &[("job_title", "VP Sales")]),
        &[],
        NOW,
    );
    let cap = score.factors.last().unwrap();
    assert_eq!(cap.rule, "cap:title");
    assert_eq!(cap.points, -10);
    assert_eq!(score.fit, 15 + 15);
}

#[test]
fn returning_visits_count_only_a_day_apart() {
    let r = ruleset();
    let f = facts("a@b.example", &[]);
    let same_day = r.score(
        &f,
        &[
            act(ActivityKind::Submitted, "newsletter", 0),
            act(ActivityKind::Submitted, "newsletter", 0),
        ],
        NOW,
    );
    assert!(same_day.factors.iter().all(|f| f.rule != "came-back"));
    let later = r.score(
        &f,
        &[
            act(ActivityKind::Submitted, "newsletter", 3),
            act(ActivityKind::Submitted, "newsletter", 0),
        ],
        NOW,
    );
    assert!(later.factors.iter().any(|f| f.rule == "came-back"));
}

#[test]
fn numbers_in_fields_read_as_their_first_number() {
    assert_eq!(first_number("50-200"), Some(50));
    assert_eq!(first_number("1,000+ people"), Some(1000));
    assert_eq!(first_number("about ten"), None);
}

#[test]
fn bad_rules_are_refused_with_their_name() {
    let forms = ["contact"];
    let mut s = ScoringSettings {
        rules: vec![ScoreRuleConfig {
            event: Some(ActivityKind::Submitted),
            form: Some("nope".into()),
            ..demo_scoring().rules[4].clone()
        }],
        ..ScoringSettings::default()
    };
    let e = Ruleset::compile(&s, &forms).unwrap_err();
    assert!(e.contains("form 'nope' is not configured"), "{e}");
    s.rules = vec![ScoreRuleConfig {
        email: Some(EmailDomainKind::Free),
        ..demo_scoring().rules[4].clone()
    }];
    let e = Ruleset::compile(&s, &forms).unwrap_err();
    assert!(e.contains("exactly one of"), "{e}");
    s.rules = vec![
        demo_scoring().rules[0].clone(),
        demo_scoring().rules[0].clone(),
    ];
    assert!(Ruleset::compile(&s, &forms).unwrap_err().contains("twice"));
    s.rules.pop();
    s.caps = BTreeMap::from([("ghost".into(), 3)]);
    assert!(Ruleset::compile(&s, &forms).unwrap_err().contains("ghost"));
}

#[test]
fn the_version_follows_the_rules_unless_named() {
    let forms = ["newsletter", "contact", "whitepaper"];
    let a = Ruleset::compile(&demo_scoring(), &forms).unwrap();
    let mut changed = demo_scoring();
    changed.rules[0].points += 1;
    let b = Ruleset::compile(&changed, &forms).unwrap();
    assert_ne!(a.version(), b.version());
    assert_eq!(a.version(), ruleset().version());
    changed.version = Some("2026-q4".into());
    assert_eq!(
        Ruleset::compile(&changed, &forms).unwrap().version(),
        "2026-q4"
    );
}

fn stages(s: StageSettings) -> StageRules {
    StageRules::compile(
        &s,
        &["newsletter", "contact", "whitepaper"],
        &["newsletter"],
    )
    .unwrap()
}

#[test]
fn stage_rules_move_forward_only_and_hand_raisers_jump_to_mql() {
    let r = ruleset();
    let rules = stages(StageSettings {
        hand_raisers: vec!["contact".into()],
        ..demo_stages()
    });
    let f = facts("a@gmail.com", &[]);
    let news = [act(ActivityKind::Submitted, "newsletter", 0)];
    let s = r.score(&f, &news, NOW);
    assert_eq!(rules.next(None, &news, &s).unwrap().0, Stage::Subscriber);
    let sub = StageView {
        stage: Stage::Subscriber,
        recycled_at_ms: None,
    };
    assert_eq!(rules.next(Some(&sub), &news, &s), None);
    let raised = [news[0].clone(), act(ActivityKind::Submitted, "contact", 0)];
    let s = r.score(&f, &raised, NOW);
    let (stage, why) = rules.next(Some(&sub), &raised, &s).unwrap();
    assert_eq!(stage, Stage::Mql);
    assert!(why.contains("form 'contact'"), "{why}");
    // Recycled after that: the old hand-raise does not count again, a new one does.
    let recycled = StageView {
        stage: Stage::Lead,
        recycled_at_ms: Some(NOW),
    };
    assert_eq!(rules.next(Some(&recycled), &raised, &s), None);
    let again = [act(ActivityKind::Submitted, "contact", -1)];
    assert_eq!(
        rules.next(Some(&recycled), &again, &s).unwrap().0,
        Stage::Mql
    );
    for at in [Stage::Mql, Stage::Sql, Stage::Customer, Stage::Disqualified] {
        let view = StageView {
            stage: at,
            recycled_at_ms: None,
        };
        assert_eq!(rules.next(Some(&view), &raised, &s), None, "{at}");
    }
}

#[test]
fn the_mql_condition_reads_the_score() {
    let r = ruleset();
    let rules = stages(demo_stages());
    let f = facts("ann@acme.example", &[("company", "Acme")]);
    let log = [
        act(ActivityKind::Submitted, "whitepaper", 0),
        act(ActivityKind::Downloaded, "whitepaper", 0),
    ];
    let s = r.score(&f, &log, NOW);
    assert_eq!(rules.next(None, &log, &s).unwrap().0, Stage::Lead, "{s:?}");
    let log = [
        log[0].clone(),
        log[1].clone(),
        act(ActivityKind::Submitted, "contact", 0),
    ];
    let s = r.score(&f, &log, NOW);
    let (stage, why) = rules.next(None, &log, &s).unwrap();
    assert_eq!(stage, Stage::Mql);
    assert_eq!(
        why,
        "fit 20 and engagement 35 meet the MQL rule (fit >= 20 and engagement >= 30)"
    );
}

#[test]
fn backward_moves_and_disqualifying_need_a_reason() {
    assert!(Stage::Mql.needs_reason(Stage::Lead));
    assert!(Stage::Lead.needs_reason(Stage::Disqualified));
    assert!(Stage::Disqualified.needs_reason(Stage::Lead));
    assert!(!Stage::Lead.needs_reason(Stage::Sql));
    assert_eq!("opportunity".parse::<Stage>(), Ok(Stage::Opportunity));
    assert!("won".parse::<Stage>().is_err());
}

fn any_activity() -> impl Strategy<Value = Activity> {
    (
        prop_oneof![
            Just(ActivityKind::Submitted),
            Just(ActivityKind::Confirmed),
            Just(ActivityKind::Downloaded),
        ],
        prop_oneof![Just("newsletter"), Just("contact"), Just("whitepaper")],
        0i64..400 * DAY_MS,
    )
        .prop_map(|(kind, form, ago)| Activity {
            kind,
            form_id: form.into(),
            at_ms: NOW - ago,
        })
}

/// A rule set of random points, caps and decay on top of the demo's tests.
fn any_rules() -> impl Strategy<Value = ScoringSettings> {
    (
        proptest::collection::vec(-50i64..80, 8),
        proptest::collection::vec(any::<bool>(), 8),
        0.0f64..90.0,
        0i64..40,
    )
        .prop_map(|(points, decay, half_life, cap)| {
            let mut s = demo_scoring();
            for (i, r) in s.rules.iter_mut().enumerate() {
                r.points = points[i];
                if r.event.is_some() {
                    r.decay = Some(decay[i]);
                    r.max_times = Some(u32::try_from(i).unwrap() + 1);
                    r.group = Some("activity".into());
                }
            }
            s.half_life_days = half_life;
            s.caps.insert("activity".into(), cap);
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// The property: on 10,000 random event logs (and rule sets), the factors' points
    /// add up exactly to the score, each axis to its figure, caps hold, and the same inputs
    /// give the same score.
    #[test]
    fn factors_add_up_exactly_to_the_score(
        rules in any_rules(),
        log in proptest::collection::vec(any_activity(), 0..40),
        free in any::<bool>(),
        title in prop_oneof![Just(""), Just("VP Sales"), Just("Engineer"), Just("Head of IT")],
    ) {
        let set = Ruleset::compile(&rules, &["newsletter", "contact", "whitepaper"]).unwrap();
        let email = if free { "x@gmail.com" } else { "x@acme.example" };
        let f = facts(email, &[("job_title", title), ("company", "Acme")]);
        let s = set.score(&f, &log, NOW);
        prop_assert_eq!(s.factors.iter().map(|f| f.points).sum::<i64>(), s.score);
        let on = |axis: &str| s.factors.iter().filter(|f| f.axis == axis).map(|f| f.points).sum::<i64>();
        prop_assert_eq!(on("fit"), s.fit);
        prop_assert_eq!(on("engagement"), s.engagement);
        prop_assert_eq!(s.fit + s.engagement, s.score);
        for (group, cap) in &rules.caps {
            let total: i64 = s.factors.iter().filter(|f| f.group.as_deref() == Some(group)).map(|f| f.points).sum();
            prop_assert!(total <= *cap, "group {} = {} > {}", group, total, cap);
        }
        prop_assert_eq!(set.score(&f, &log, NOW), s);
    }
}
