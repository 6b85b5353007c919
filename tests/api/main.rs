//! Black-box tests of the real application over HTTP (and of the `inlet` binary), each
//! behaviour on SQLite and on PostgreSQL.

mod helpers;
mod smtp;

mod abuse;
mod admin;
mod challenge;
mod cli;
mod consent;
mod console;
mod crm;
mod email;
mod faults;
mod hostile;
mod idempotency;
mod import;
mod keys;
mod operations;
mod plans;
mod properties;
mod qualification;
mod quarantine;
mod rate_limit;
mod receiver;
mod scale_out;
mod sequences;
mod snippet;
mod stats;
mod submissions;
mod webhooks;
mod writer;
