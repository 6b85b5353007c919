//! Mail to our own people: a sales owner's new hand-off (the score's "why" and the Accept /
//! Reject links), an escalation when nobody accepted in time, a webhook endpoint disabled.
//! Plain text that reads well in any client; everything the lead typed is shown as data,
//! never in a header except the subject (one line, control characters removed).

use super::message::one_line;
use crate::scoring::Score;

/// What a hand-off mail says.
pub struct HandoffNotice<'a> {
    pub owner_name: Option<&'a str>,
    pub lead_email: &'a str,
    pub name: Option<&'a str>,
    pub company: Option<&'a str>,
    pub job_title: Option<&'a str>,
    pub score: &'a Score,
    pub route: &'a str,
    pub sla_hours: u64,
    pub accept_url: &'a str,
    pub reject_url: &'a str,
    /// The lead's page in the console.
    pub lead_url: &'a str,
    /// An escalation (nobody accepted in time) rather than the first notice.
    pub escalation: bool,
}

fn who(n: &HandoffNotice<'_>) -> String {
    let mut s = n
        .name
        .map_or_else(|| n.lead_email.to_string(), str::to_string);
    if let Some(c) = n.company {
        s.push_str(" (");
        s.push_str(c);
        s.push(')');
    }
    s
}

/// (subject, text) of a hand-off or its escalation.
pub fn handoff(n: &HandoffNotice<'_>) -> (String, String) {
    let who = who(n);
    let subject = if n.escalation {
        format!("Not accepted yet: {who} is waiting for sales")
    } else {
        format!("New sales-ready lead: {who} (score {})", n.score.score)
    };
    let mut text = String::new();
    let hello = n
        .owner_name
        .map_or_else(|| "Hello,".to_string(), |o| format!("Hello {o},"));
    text.push_str(&hello);
    text.push_str("\n\n");
    if n.escalation {
        text.push_str(&format!(
            "This lead was handed to sales {} hours ago and nobody has accepted it yet. \
             Please accept it or pass it back with a reason.\n\n",
            n.sla_hours
        ));
    } else {
        text.push_str(&format!(
            "Marketing has a lead for you. Please accept it within {} hours, or pass it back \
             with a reason.\n\n",
            n.sla_hours
        ));
    }
    text.push_str(&format!("  Email:     {}\n", n.lead_email));
    for (label, value) in [
        ("Name", n.name),
        ("Company", n.company),
        ("Job title", n.job_title),
    ] {
        if let Some(v) = value {
            text.push_str(&format!("  {:<10} {v}\n", format!("{label}:")));
        }
    }
    text.push_str(&format!(
        "\nScore {} = fit {} + engagement {}. Why:\n",
        n.score.score, n.score.fit, n.score.engagement
    ));
    for f in &n.score.factors {
        text.push_str(&format!("  {:>+4}  {} ({})\n", f.points, f.detail, f.rule));
    }
    text.push_str(&format!("\nWhy you: {}.\n", n.route));
    text.push_str(&format!(
        "\nAccept:  {}\nReject:  {}\n\nThe lead's history: {}\n",
        n.accept_url, n.reject_url, n.lead_url
    ));
    (one_line(&subject), text)
}

/// (subject, text) telling an endpoint's contact that it was disabled.
pub fn endpoint_disabled(endpoint_id: &str, host: &str, reason: &str) -> (String, String) {
    let subject = format!("Inlet stopped sending webhooks to '{endpoint_id}'");
    let text = format!(
        "Inlet has disabled the webhook endpoint '{endpoint_id}' ({host}): {reason}.\n\n\
         Events are not sent to it any more. Once the receiver works again, turn it back on \
         (POST /v1/admin/webhooks/{endpoint_id}/enable) and send what it missed with \
         `inlet webhooks replay --endpoint {endpoint_id} --since <time>`.\n"
    );
    (one_line(&subject), text)
}
