//! The three demo forms that exist out of the box, so anyone can try Inlet with curl in a
//! minute. Their ids (`newsletter`, `contact`, `whitepaper`) are part of the public contract.
//! With them come scoring rules, stage rules and one sales owner, so the demo shows a scored,
//! qualified, handed-off lead too.

use std::collections::BTreeMap;

use super::{
    ActivityKind, EmailDomainKind, EmailTemplateConfig, ExtraFields, FieldConfig, FieldType,
    FormConfig, FormKind, HandoffSettings, OwnerConfig, ScoreRuleConfig, ScoringSettings,
    StageSettings,
};

fn field(name: &str, kind: FieldType, required: bool, label: &str) -> FieldConfig {
    FieldConfig {
        name: name.into(),
        kind,
        required,
        max_length: None,
        options: Vec::new(),
        label: Some(label.into()),
    }
}

fn demo(id: &str, kind: FormKind, fields: Vec<FieldConfig>, message: &str) -> FormConfig {
    FormConfig {
        id: id.into(),
        kind,
        fields,
        allowed_origins: vec!["*".into()],
        require_origin: false,
        redirect_url: None,
        success_message: Some(message.into()),
        confirmed_message: None,
        follow_up: EmailTemplateConfig::default(),
        notify: Vec::new(),
        download_url: None,
        download_file: None,
        double_opt_in: false,
        personalize_unconfirmed: false,
        challenge: None,
        honeypot: "_gotcha".into(),
        min_submit_ms: None,
        extra_fields: ExtraFields::Keep,
        max_extra_fields: 20,
        from: None,
        reply_to: None,
    }
}

pub fn demo_forms() -> Vec<FormConfig> {
    use FieldType::*;
    let mut whitepaper = demo(
        "whitepaper",
        FormKind::Download,
        vec![
            field("email", Email, true, "Work email"),
            field("name", Text, true, "Name"),
            field("company", Text, false, "Company"),
            field("job_title", Text, false, "Job title"),
            field(
                "consent",
                Checkbox,
                true,
                "I agree to receive the whitepaper and related emails",
            ),
        ],
        "Thanks! Your whitepaper is on its way.",
    );
    // A small PDF built into the binary, delivered through a signed, expiring link.
    whitepaper.download_file = Some("whitepaper.pdf".into());
    let mut newsletter = demo(
        "newsletter",
        FormKind::Newsletter,
        vec![
            field("email", Email, true, "Email"),
            field("name", Text, false, "Name"),
        ],
        "Thanks! Please confirm your subscription: we sent you a link.",
    );
    // Newsletter sign-ups are confirmed by the person before anything else is sent.
    newsletter.double_opt_in = true;
    vec![
        newsletter,
        demo(
            "contact",
            FormKind::Inline,
            vec![
                field("name", Text, true, "Name"),
                field("email", Email, true, "Email"),
                field("company", Text, false, "Company"),
                field("phone", Tel, false, "Phone"),
                field("message", Textarea, false, "Message"),
            ],
            "Thanks! We will get back to you shortly.",
        ),
        whitepaper,
    ]
}

/// A rule with nothing set but its id and points.
fn rule(id: &str, points: i64) -> ScoreRuleConfig {
    ScoreRuleConfig {
        id: id.into(),
        points,
        group: None,
        email: None,
        field: None,
        equals: Vec::new(),
        contains: Vec::new(),
        at_least: None,
        at_most: None,
        event: None,
        form: None,
        max_times: None,
        decay: None,
    }
}

/// The demo's scoring: a company address and a senior title are a fit; downloading the
/// whitepaper, writing through the contact form, confirming the newsletter and coming back
/// are engagement.
pub fn demo_scoring() -> ScoringSettings {
    let email = |id: &str, points, kind| ScoreRuleConfig {
        email: Some(kind),
        ..rule(id, points)
    };
    let event = |id: &str, points, kind, form: Option<&str>| ScoreRuleConfig {
        event: Some(kind),
        form: form.map(String::from),
        ..rule(id, points)
    };
    ScoringSettings {
        rules: vec![
            email("company-address", 15, EmailDomainKind::Company),
            email("free-mail-address", -10, EmailDomainKind::Free),
            ScoreRuleConfig {
                field: Some("company".into()),
                ..rule("names-a-company", 5)
            },
            ScoreRuleConfig {
                field: Some("job_title".into()),
                contains: [
                    "ceo", "cto", "cmo", "founder", "owner", "chief", "vp", "head", "director",
                ]
                .map(String::from)
                .to_vec(),
                group: Some("title".into()),
                ..rule("senior-title", 15)
            },
            event(
                "downloaded-whitepaper",
                20,
                ActivityKind::Downloaded,
                Some("whitepaper"),
            ),
            event("wrote-to-us", 15, ActivityKind::Submitted, Some("contact")),
            event("confirmed-newsletter", 10, ActivityKind::Confirmed, None),
            ScoreRuleConfig {
                max_times: Some(3),
                ..event("came-back", 5, ActivityKind::Returned, None)
            },
        ],
        caps: BTreeMap::from([("title".to_string(), 15)]),
        ..ScoringSettings::default()
    }
}

/// The demo's MQL rule: a good fit who engaged twice over.
pub fn demo_stages() -> StageSettings {
    StageSettings {
        mql_when: Some("fit >= 20 and engagement >= 30".into()),
        hand_raisers: Vec::new(),
    }
}

/// One demo owner who takes every MQL.
pub fn demo_handoff() -> HandoffSettings {
    HandoffSettings {
        owners: vec![OwnerConfig {
            id: "sam".into(),
            name: "Sam Seller".into(),
            email: "sales@example.com".into(),
            pool: true,
            max_open: None,
            away: Vec::new(),
            crm_ids: BTreeMap::new(),
        }],
        ..HandoffSettings::default()
    }
}
