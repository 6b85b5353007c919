//! Parse-don't-validate types. A value of one of these types is valid by construction: the
//! only way to get one is through its parser, so nothing downstream re-checks it.

mod client_ip;
mod email;
mod outbox;
mod spam;
mod submission;
mod text;

pub use client_ip::{ClientIp, IpPrivacy};
pub use email::{EmailAddress, EmailError};
pub use outbox::{MessageKind, NewOutboxMessage};
pub use spam::{count_links, SpamSignal, SpamSignals, QUARANTINE_AT};
pub use submission::{
    dimension, search_key, source_of, Attribution, Confirmation, ConsentGiven, FieldValue,
    IdempotencyKey, NewSubmission, ATTRIBUTION_KEYS, DIMENSION_CHARS, IMPORT_SOURCE,
};
pub use text::{clean_lossy, multi_line, redact_addresses, single_line, FieldError};
