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
use super::{
    EnrollConfig, EnrollOn, ExitConfig, Reenroll, SequenceConfig, StepConfig, WindowConfig,
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

fn step(id: &str, delay: &str, subject: &str, text: &str) -> StepConfig {
    StepConfig {
        id: id.into(),
        delay: delay.into(),
        subject: subject.into(),
        text: text.into(),
        html: None,
        skip_when: None,
    }
}

/// The demo's nurture: three mails after someone opens the whitepaper, on weekdays in office
/// hours, stopping when they write through the contact form, reply, or go to sales.
pub fn demo_sequences() -> Vec<SequenceConfig> {
    vec![SequenceConfig {
        id: "whitepaper-nurture".into(),
        name: Some("After the whitepaper".into()),
        enroll: EnrollConfig {
            on: EnrollOn::Downloaded,
            form: Some("whitepaper".into()),
            stage: None,
        },
        reenroll: Reenroll::Never,
        window: WindowConfig {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            from: "08:00".into(),
            until: "18:00".into(),
            time_zone: "UTC".into(),
            lead_time_zone_field: None,
        },
        exit: ExitConfig {
            forms: vec!["contact".into()],
            // Replies reach the demo's own mailbox: it has no inbound-mail provider to tell
            // Inlet (set replies.address and replies.secret, then this).
            on_reply: false,
            ..ExitConfig::default()
        },
        track_clicks: true,
        reach_finished: false,
        steps: vec![
            step(
                "three-ideas",
                "0",
                "Three ideas from the whitepaper to try this week",
                "Hello,\n\nthanks for reading our whitepaper. If you only have ten minutes, \
                 these are the three ideas readers tell us they tried first:\n\n\
                 1. Ask for less: every field you drop from a form lifts completion.\n\
                 2. Answer at once: a lead who hears back within the hour converts best.\n\
                 3. Measure the whole path, not the clicks.\n\n\
                 The checklist that goes with them: https://example.com/whitepaper/checklist\n\n\
                 Just reply to this mail if you have a question: a person reads it.\n",
            ),
            step(
                "case-study",
                "3d",
                "How one team doubled its qualified leads",
                "Hello again,\n\nhere is how a team of four put the whitepaper into practice \
                 and doubled the leads their sales team accepted within a quarter:\n\n\
                 https://example.com/case-studies/doubled\n\n\
                 Reply to this mail to tell us what you are working on.\n",
            ),
            step(
                "walkthrough",
                "4d",
                "Want a 20-minute walkthrough?",
                "Hello,\n\nif the ideas from the whitepaper fit what you are working on, we are \
                 happy to walk you through them in 20 minutes, with your own numbers.\n\n\
                 Reply to this mail with a time that suits you, or write to us: \
                 https://example.com/contact\n\n\
                 This is the last mail of this series.\n",
            ),
        ],
    }]
}
