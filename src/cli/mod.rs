//! What the `inlet` subcommands do, as library functions that answer text (so `main.rs` stays
//! a thin parser and tests can drive them): scoring plans, stage moves, webhook replays.

pub mod scoring;
pub mod sequences;
pub mod webhooks;
