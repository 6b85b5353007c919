//! Property-based tests of the submission parser (issue 13): whatever a client sends, the
//! parser answers with a submission or a field error, never a panic, and what it accepts holds
//! the invariants the rest of Inlet relies on (no line breaks outside textareas, lengths
//! within limits, a normalised address).

use inlet::forms::{
    parse_json, parse_submission, parse_urlencoded, ParseContext, RawPayload, RawValue,
};
use proptest::prelude::*;

fn contact() -> std::sync::Arc<inlet::forms::Form> {
    static FORM: std::sync::OnceLock<std::sync::Arc<inlet::forms::Form>> =
        std::sync::OnceLock::new();
    FORM.get_or_init(|| {
        let settings = inlet::config::Settings::default_with_demo_forms();
        let forms = inlet::forms::FormRegistry::build(&settings).unwrap();
        forms.get("contact").unwrap().clone()
    })
    .clone()
}

fn ctx() -> ParseContext {
    ParseContext {
        now_ms: 1_700_000_000_000,
        client_ip: None,
        user_agent: None,
        idempotency_header: None,
    }
}

/// Text a hostile client might send: any Unicode, with control, bidi and combining characters,
/// line breaks and markup more likely than at random.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        ".{0,12}",
        Just("\r\n".to_string()),
        Just("\u{202e}".to_string()),
        Just("\u{0}".to_string()),
        Just("e\u{301}".to_string()),
        Just("<script>".to_string()),
        Just("=HYPERLINK(".to_string()),
        Just("@".to_string()),
        "[a-z]{1,8}",
    ];
    proptest::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
}

fn value() -> impl Strategy<Value = RawValue> {
    prop_oneof![
        4 => hostile_text().prop_map(RawValue::Text),
        1 => any::<bool>().prop_map(RawValue::Bool),
        1 => any::<i64>().prop_map(|n| RawValue::Number(n.to_string())),
        1 => Just(RawValue::Composite),
        1 => Just(RawValue::Null),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["name", "email", "company", "phone", "message", "_gotcha",
            "_idem", "_elapsed_ms", "utm_source", "referrer", "first_touch", "_altcha", "extra_1"])
            .prop_map(String::from),
        1 => hostile_text(),
    ]
}

fn payload() -> impl Strategy<Value = RawPayload> {
    let email = prop_oneof![
        Just("ann@example.com".to_string()),
        Just(" ANN@Example.COM ".to_string()),
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,4}",
        hostile_text(),
    ];
    (email, proptest::collection::vec((key(), value()), 0..24)).prop_map(|(email, mut rest)| {
        rest.insert(0, ("email".to_string(), RawValue::Text(email)));
        rest
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn any_payload_is_a_submission_or_a_field_error_and_accepted_ones_are_clean(p in payload()) {
        let form = contact();
        if let Ok(sub) = parse_submission(&form, p, ctx()) {
            let email = sub.email.as_str();
            prop_assert_eq!(email, email.trim().to_lowercase());
            prop_assert!(email.len() <= 254 && !email.chars().any(char::is_control));
            for (name, value) in &sub.fields {
                let def = form.field(name).expect("only declared fields");
                let text = value.as_text();
                prop_assert!(text.chars().count() <= def.max_length);
                if name != "message" {
                    prop_assert!(!text.contains('\n') && !text.contains('\r'), "{}: {:?}", name, text);
                }
                prop_assert!(!text.chars().any(|c| c == '\u{0}' || c == '\u{202e}'), "{}: {:?}", name, text);
            }
            for (name, value) in &sub.extra {
                prop_assert!(!name.starts_with('_'));
                prop_assert!(!value.contains(char::from(0)), "{}: {:?}", name, value);
            }
        }
    }

    #[test]
    fn any_bytes_parse_as_a_payload_or_a_clean_refusal(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_json(&bytes);
        let _ = parse_urlencoded(&bytes);
    }
}
