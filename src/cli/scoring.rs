//! `inlet scoring plan` and `inlet leads stage`.
//!
//! A plan compares every lead's stored stage and score (what the rules it was last scored
//! with gave) with what the configuration given now gives, and changes nothing unless asked:
//! `--apply` records the stage moves (cause `cli`) and the fresh scores; a lead that becomes
//! an MQL by a rule change gets a hand-off only with `--handoffs`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::qualify::{MoveOutcome, Qualifier};
use crate::scoring::{Cause, Stage};
use crate::store::{LeadStore, StageRecord, StoreError};

/// What a plan is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// How many changed leads to show with their factors.
    pub sample: usize,
    pub apply: bool,
    pub handoffs: bool,
}

/// Leads read per page.
const PAGE: u32 = 500;

/// Walks every lead and says what the rules would change.
pub async fn plan(
    store: &LeadStore,
    q: &Qualifier,
    opts: PlanOptions,
    now_ms: i64,
) -> Result<String, StoreError> {
    let mut moves: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut leads, mut up, mut down, mut applied) = (0u64, 0u64, 0u64, 0u64);
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut sample = String::new();
    let mut shown = 0usize;
    let mut after: Option<String> = None;
    loop {
        let ids = store.lead_ids_after(after.as_deref(), PAGE).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let mut writes = Vec::new();
        for id in ids {
            let Some(activity) = store.lead_activity(&id).await? else {
                continue;
            };
            leads += 1;
            let stored = store.lead_stage(&id).await?;
            let view = stored.as_ref().and_then(StageRecord::view);
            let score = q.ruleset.score(&activity.facts, &activity.activity, now_ms);
            let old_score = stored.as_ref().map(|s| s.score);
            if let Some(r) = &stored {
                *versions.entry(r.ruleset.clone()).or_default() += 1;
            }
            match old_score {
                Some(o) if score.score > o => up += 1,
                Some(o) if score.score < o => down += 1,
                _ => {}
            }
            let target = q.stages.next(view.as_ref(), &activity.activity, &score);
            let from = view.as_ref().map(|v| v.stage);
            if let Some((to, why)) = &target {
                let from_name = from.map_or("(none)", Stage::as_str).to_string();
                *moves
                    .entry((from_name.clone(), to.as_str().into()))
                    .or_default() += 1;
                if shown < opts.sample {
                    shown += 1;
                    let _ = writeln!(
                        sample,
                        "  {id}: {from_name} -> {to}, score {} -> {} (fit {} + engagement {}): {why}",
                        old_score.map_or_else(|| "-".into(), |s| s.to_string()),
                        score.score,
                        score.fit,
                        score.engagement
                    );
                    for f in &score.factors {
                        let _ =
                            writeln!(sample, "      {:>+5}  {} ({})", f.points, f.detail, f.rule);
                    }
                }
            }
            let changed = target.is_some() || old_score.is_some_and(|o| o != score.score);
            if opts.apply && changed {
                writes.push(
                    q.plan_rule_change(store, &id, (from, target), &score, (opts.handoffs, now_ms))
                        .await?,
                );
            }
        }
        if !writes.is_empty() {
            applied += store
                .apply_qualifications(&writes)
                .await?
                .iter()
                .filter(|a| **a == crate::store::Applied::Done)
                .count() as u64;
        }
        after = Some(last);
    }
    let mut out = String::new();
    let was: Vec<String> = versions
        .iter()
        .map(|(v, n)| format!("{v} ({n} leads)"))
        .collect();
    let _ = writeln!(
        out,
        "rule set {} against the stored scores of {}",
        q.ruleset.version(),
        if was.is_empty() {
            "no scored lead".to_string()
        } else {
            was.join(", ")
        }
    );
    let _ = writeln!(out, "leads: {leads}; scores up: {up}, down: {down}");
    if moves.is_empty() {
        let _ = writeln!(out, "stage changes: none");
    } else {
        let _ = writeln!(out, "stage changes:");
        for ((from, to), n) in &moves {
            let _ = writeln!(out, "  {from} -> {to}: {n}");
        }
    }
    if !sample.is_empty() {
        let _ = writeln!(out, "sample:\n{}", sample.trim_end());
    }
    if opts.apply {
        let _ = write!(
            out,
            "applied: {applied} leads updated (stage moves recorded with cause cli{})",
            if opts.handoffs {
                "; new MQLs handed off"
            } else {
                "; no hand-offs created: --handoffs creates them"
            }
        );
    } else {
        let _ = write!(
            out,
            "nothing was changed: --apply records these moves (no hand-offs unless --handoffs)"
        );
    }
    Ok(out)
}

/// `inlet leads stage LEAD STAGE [--reason R]`.
pub async fn set_stage(
    store: &LeadStore,
    q: &Qualifier,
    lead_id: &str,
    stage: &str,
    (reason, actor): (Option<&str>, Option<&str>),
    now_ms: i64,
) -> Result<String, String> {
    let to: Stage = stage.parse()?;
    let actor = actor.unwrap_or("cli");
    match q
        .move_stage(store, lead_id, to, (Cause::Cli, actor), reason, now_ms)
        .await
        .map_err(|e| e.to_string())?
    {
        MoveOutcome::Done(s) => Ok(format!("lead {lead_id} is now {s}")),
        MoveOutcome::Unchanged => Ok(format!("lead {lead_id} is {to} already; nothing changed")),
        MoveOutcome::NotFound => Err(format!("no lead {lead_id}")),
        MoveOutcome::ReasonNeeded => {
            Err("moving a lead back, or disqualifying it, needs --reason".into())
        }
        MoveOutcome::NotAllowed(why) => Err(why),
    }
}
