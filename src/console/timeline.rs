//! One person's history as a marketer reads it: every submission (with where it came from),
//! every consent given or withdrawn, every message and what became of it, downloads, and the
//! suppression list, newest first, in words rather than column names.

use serde::Serialize;

use crate::forms::FormRegistry;
use crate::store::LeadHistory;

/// One thing that happened, for the lead page.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub at_ms: i64,
    /// `submission`, `consent`, `message`, `download` or `suppression` (a CSS class).
    pub kind: &'static str,
    /// `ok`, `warn`, `bad` or `info`: how the state reads (shown in words as well).
    pub tone: &'static str,
    pub title: String,
    /// Label and value pairs, in order.
    pub details: Vec<(String, String)>,
}

fn pairs(items: &[(&str, Option<String>)]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| ((*k).to_string(), v.clone()))
        })
        .collect()
}

/// A message's kind in words.
pub fn message_kind(kind: &str) -> &str {
    match kind {
        "follow_up" => "Follow-up email",
        "owner_notification" => "Notification to the form's owner",
        "confirmation" => "Double opt-in email",
        "download_link" => "New download link email",
        "sequence_step" => "Nurture email",
        other => other,
    }
}

fn consent_title(kind: &str, field: Option<&str>) -> (String, &'static str) {
    match kind {
        "checkbox" => (
            format!(
                "Ticked the consent box{}",
                field.map(|f| format!(" ({f})")).unwrap_or_default()
            ),
            "ok",
        ),
        "double_opt_in" => ("Confirmed their address (double opt-in)".into(), "ok"),
        "resubscribe" => ("Subscribed again".into(), "ok"),
        "import" => ("Imported from a list".into(), "info"),
        "unsubscribe" => ("Unsubscribed".into(), "warn"),
        "bounce" => ("Mail to the address bounced".into(), "bad"),
        "complaint" => ("Marked a mail as spam".into(), "bad"),
        other => (format!("Consent record: {other}"), "info"),
    }
}

/// A form as a sentence names it.
fn form_title(id: &str) -> String {
    format!("the \u{201c}{id}\u{201d} form")
}

/// The events of `h`, newest first; fields are named by the labels `forms` gives them.
pub fn timeline(h: &LeadHistory, forms: &FormRegistry) -> Vec<TimelineEvent> {
    let mut events = Vec::new();
    for s in &h.submissions {
        let a = &s.attribution;
        let form = forms.get(&s.form_id);
        let label = |name: &str| {
            form.and_then(|f| f.fields.iter().find(|d| d.name == name))
                .map_or_else(|| name.to_string(), |d| d.label.clone())
        };
        // In the form's own order; fields it no longer declares after them.
        let mut names: Vec<&str> = form
            .map(|f| {
                f.fields
                    .iter()
                    .map(|d| d.name.as_str())
                    .filter(|n| s.fields.contains_key(*n))
                    .collect()
            })
            .unwrap_or_default();
        names.extend(
            s.fields
                .keys()
                .map(String::as_str)
                .filter(|k| !names.contains(k))
                .collect::<Vec<_>>(),
        );
        let mut details: Vec<(String, String)> = names
            .iter()
            .filter_map(|k| s.fields.get(*k).map(|v| (label(k), v.as_text())))
            .collect();
        details.extend(s.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        details.extend(pairs(&[
            ("Source", a.utm_source.clone()),
            ("Medium", a.utm_medium.clone()),
            ("Campaign", a.utm_campaign.clone()),
            ("Landing page", a.landing_page.clone()),
            ("Referrer", a.referrer.clone()),
            (
                "Spam signals",
                s.spam_signals
                    .clone()
                    .map(|sig| format!("{sig} ({} points)", s.spam_score.unwrap_or(0))),
            ),
            (
                "Double opt-in",
                match s.confirmation.as_str() {
                    "pending" => Some("waiting for the person to confirm".into()),
                    "confirmed" => Some("confirmed".into()),
                    _ => None,
                },
            ),
        ]));
        let (title, tone) = if s.spam {
            (
                format!(
                    "Quarantined a submission to {} as spam ({})",
                    form_title(&s.form_id),
                    s.spam_reason.as_deref().unwrap_or("signals")
                ),
                "bad",
            )
        } else {
            (format!("Submitted {}", form_title(&s.form_id)), "ok")
        };
        events.push(TimelineEvent {
            at_ms: s.created_at_ms,
            kind: "submission",
            tone,
            title,
            details,
        });
        if let Some(at) = s.restored_at_ms {
            events.push(TimelineEvent {
                at_ms: at,
                kind: "submission",
                tone: "info",
                title: format!("Restored from quarantine ({})", form_title(&s.form_id)),
                details: Vec::new(),
            });
        }
    }
    for c in &h.consents {
        let (title, tone) = consent_title(&c.kind, c.field.as_deref());
        events.push(TimelineEvent {
            at_ms: c.created_at_ms,
            kind: "consent",
            tone,
            title,
            details: pairs(&[
                ("Text shown", c.text.clone()),
                ("Text version", c.text_version.clone()),
                ("From", c.client_ip.clone()),
                ("Browser", c.user_agent.clone()),
            ]),
        });
    }
    // Nurture mail is shown with its sequence and step (see `sequence_events`).
    for m in h.messages.iter().filter(|m| m.kind != "sequence_step") {
        let (state, tone) = match m.status.as_str() {
            "sent" => ("sent", "ok"),
            "pending" => ("waiting to be sent", "info"),
            "failed" => ("not delivered yet; will retry", "warn"),
            "dead" => ("gave up after every retry", "bad"),
            "skipped" => ("not sent", "info"),
            other => (other, "info"),
        };
        events.push(TimelineEvent {
            at_ms: m.created_at_ms,
            kind: "message",
            tone,
            title: format!("{}: {state}", message_kind(&m.kind)),
            details: pairs(&[
                ("To", Some(m.recipient.clone())),
                ("Sent", m.sent_at_ms.map(super::pages::when)),
                (
                    "Attempts",
                    Some(format!("{} of {}", m.attempts, m.max_attempts)),
                ),
                (
                    if m.status == "skipped" {
                        "Why"
                    } else {
                        "Last error"
                    },
                    m.last_error.clone(),
                ),
                (
                    "Next attempt",
                    matches!(m.status.as_str(), "pending" | "failed")
                        .then(|| super::pages::when(m.next_attempt_at_ms)),
                ),
            ]),
        });
    }
    for d in &h.downloads {
        events.push(TimelineEvent {
            at_ms: d.created_at_ms,
            kind: "download",
            tone: "info",
            title: format!("Download link issued ({})", form_title(&d.form_id)),
            details: pairs(&[
                ("Downloads", Some(d.download_count.to_string())),
                (
                    "Last download",
                    d.last_download_at_ms.map(super::pages::when),
                ),
                ("Link expires", Some(super::pages::when(d.expires_at_ms))),
            ]),
        });
    }
    if let Some(s) = &h.suppression {
        let title = match s.reason.as_str() {
            "unsubscribed" => "On the suppression list: unsubscribed; nothing more is sent",
            "bounced" => "On the suppression list: bounced; nothing more is sent",
            "complained" => "On the suppression list: marked a mail as spam; nothing more is sent",
            "erased" => "On the suppression list: erased before; nothing more is sent",
            _ => "On the suppression list; nothing more is sent",
        };
        events.push(TimelineEvent {
            at_ms: s.created_at_ms,
            kind: "suppression",
            tone: "warn",
            title: title.into(),
            details: Vec::new(),
        });
    }
    sort(&mut events);
    events
}

/// Newest first; at the same moment, in the order things happen (submission, consent,
/// sequence, message, download, suppression) read from the bottom up.
pub fn sort(events: &mut [TimelineEvent]) {
    let rank = |k: &str| match k {
        "submission" => 0,
        "consent" => 1,
        // Enrolling or leaving comes before the mail it causes or stops.
        "sequence" => 2,
        "message" => 3,
        "download" => 4,
        _ => 5,
    };
    events.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(rank(b.kind).cmp(&rank(a.kind))));
}

/// What a lead's sequences did: enrolments and how they ended, each step's delivery, clicks
/// and replies. `name` gives a sequence's name.
pub fn sequence_events(
    (enrolments, steps): (
        &[crate::store::EnrolmentRecord],
        &[crate::store::StepRecord],
    ),
    interactions: &[crate::store::InteractionRecord],
    name: impl Fn(&str) -> String,
) -> Vec<TimelineEvent> {
    let mut events = Vec::new();
    for e in enrolments {
        let seq = name(&e.sequence_id);
        events.push(TimelineEvent {
            at_ms: e.enrolled_at_ms,
            kind: "sequence",
            tone: "info",
            title: format!("Enrolled in the \u{201c}{seq}\u{201d} sequence"),
            details: Vec::new(),
        });
        if let Some(at) = e.ended_at_ms {
            let (title, tone) = match (e.status.as_str(), e.exit_reason.as_deref()) {
                ("finished", _) => (format!("Finished the \u{201c}{seq}\u{201d} sequence"), "ok"),
                (_, Some(r)) => (
                    format!(
                        "Left the \u{201c}{seq}\u{201d} sequence: {}",
                        crate::sequences::exit_words(r)
                    ),
                    if matches!(r, "unsubscribed" | "bounced" | "complained") {
                        "warn"
                    } else {
                        "ok"
                    },
                ),
                _ => (format!("Left the \u{201c}{seq}\u{201d} sequence"), "info"),
            };
            events.push(TimelineEvent {
                at_ms: at,
                kind: "sequence",
                tone,
                title,
                details: pairs(&[("Why", e.exit_detail.clone())]),
            });
        }
        for st in steps.iter().filter(|s| s.enrolment_id == e.id) {
            let (state, tone) = match st.status.as_str() {
                "sent" => ("sent".to_string(), "ok"),
                "pending" => (
                    format!("goes out {}", super::pages::when(st.due_at_ms)),
                    "info",
                ),
                "failed" => ("not delivered yet; will retry".to_string(), "warn"),
                "dead" => ("gave up after every retry".to_string(), "bad"),
                "skipped" => ("not sent".to_string(), "info"),
                other => (other.to_string(), "info"),
            };
            events.push(TimelineEvent {
                at_ms: st.sent_at_ms.unwrap_or(st.created_at_ms),
                kind: "message",
                tone,
                title: format!(
                    "Nurture email \u{201c}{}\u{201d} ({seq}): {state}",
                    st.step_id
                ),
                details: pairs(&[
                    ("Sent", st.sent_at_ms.map(super::pages::when)),
                    (
                        "Why not",
                        (st.status == "skipped")
                            .then(|| {
                                st.last_error
                                    .as_deref()
                                    .map(|e| e.strip_prefix("not sent: ").unwrap_or(e).to_string())
                            })
                            .flatten(),
                    ),
                    (
                        "Last error",
                        (st.status != "skipped")
                            .then(|| st.last_error.clone())
                            .flatten(),
                    ),
                ]),
            });
        }
    }
    for i in interactions {
        let (title, detail) = if i.kind == "reply" {
            ("Replied to a nurture email", ("Reply", i.detail.clone()))
        } else {
            (
                "Clicked a link in a nurture email",
                ("Link", i.detail.clone()),
            )
        };
        events.push(TimelineEvent {
            at_ms: i.created_at_ms,
            kind: "sequence",
            tone: "ok",
            title: format!("{title} (step \u{201c}{}\u{201d})", i.step_id),
            details: pairs(&[detail]),
        });
    }
    events
}
