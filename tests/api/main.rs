//! Black-box tests of the real application over HTTP (and of the `inlet` binary), each
//! behaviour on SQLite and on PostgreSQL.

mod helpers;

mod admin;
mod cli;
mod hostile;
mod idempotency;
mod operations;
mod rate_limit;
mod submissions;
