//! Messages a submission implies, before they are stored in the outbox.

use super::EmailAddress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The follow-up email to the person who submitted.
    FollowUp,
    /// The notification to one of the form's owners.
    OwnerNotification,
    /// Double opt-in: the link the person must follow before anything else is sent.
    Confirmation,
    /// A fresh download link, asked for from an expired one.
    DownloadLink,
    /// One step of a nurture sequence (scheduled by enrolment and step).
    SequenceStep,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::FollowUp => "follow_up",
            MessageKind::OwnerNotification => "owner_notification",
            MessageKind::Confirmation => "confirmation",
            MessageKind::DownloadLink => "download_link",
            MessageKind::SequenceStep => "sequence_step",
        }
    }

    /// Marketing mail to the lead: carries List-Unsubscribe and an unsubscribe link, and is
    /// never sent to a suppressed address. (A confirmation is the person's own request and an
    /// owner notification goes to the owner.)
    pub fn is_marketing(self) -> bool {
        matches!(
            self,
            MessageKind::FollowUp | MessageKind::DownloadLink | MessageKind::SequenceStep
        )
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        match s {
            "follow_up" => Some(MessageKind::FollowUp),
            "owner_notification" => Some(MessageKind::OwnerNotification),
            "confirmation" => Some(MessageKind::Confirmation),
            "download_link" => Some(MessageKind::DownloadLink),
            "sequence_step" => Some(MessageKind::SequenceStep),
            _ => None,
        }
    }
}

/// One outgoing message, written in the submission's transaction.
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    pub kind: MessageKind,
    pub recipient: EmailAddress,
    pub max_attempts: u32,
    /// A follow-up is skipped when one for the same person and form was queued this recently.
    pub dedupe_window_ms: Option<i64>,
    /// Stored as `skipped` with this reason instead of being sent (a mail cap was reached).
    pub held: Option<&'static str>,
}
