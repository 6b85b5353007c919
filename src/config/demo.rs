//! The three demo forms that exist out of the box, so anyone can try Inlet with curl in a
//! minute. Their ids (`newsletter`, `contact`, `whitepaper`) are part of the public contract.

use super::{EmailTemplateConfig, ExtraFields, FieldConfig, FieldType, FormConfig, FormKind};

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
