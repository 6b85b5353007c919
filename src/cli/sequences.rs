//! `inlet sequences plan`: what the sequences in the configuration given now change for the
//! leads already in them, per sequence and step. Changes nothing unless `--apply`, which
//! records the new step order and re-opens finished enrolments that gain appended steps
//! (when the sequence says `reach_finished`). `inlet serve` applies the same on startup.

use crate::qualify::Qualifier;
use crate::sequences::plan;
use crate::store::{LeadStore, StoreError};

/// The plan in words (and, with `apply`, what was written).
pub async fn plan(
    store: &LeadStore,
    q: &Qualifier,
    apply: bool,
    now_ms: i64,
) -> Result<String, StoreError> {
    let plans = plan::plan(store, &q.sequences).await?;
    if plans.is_empty() {
        return Ok("no sequences are configured, and none ran before\n".into());
    }
    let mut out = plan::describe(&plans);
    if apply {
        let reopened = plan::apply(store, &q.sequences, &plans, (q.max_attempts(), now_ms)).await?;
        out.push_str(&format!(
            "applied: step orders recorded, {reopened} finished enrolments re-opened\n"
        ));
    } else if plans.iter().any(|p| p.status != "unchanged") {
        out.push_str("nothing changed yet: run again with --apply, or start inlet serve with this configuration\n");
    }
    Ok(out)
}
