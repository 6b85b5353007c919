//! Editing a live sequence, planned: per changed sequence, how many enrolments gain or lose
//! which step. The stored step order (what the sequence last ran with) is compared with the
//! configuration; applying records the new order and re-opens finished enrolments that gain
//! appended steps when the sequence says `reach_finished`. Active enrolments need no writes:
//! each picks its next step from the configuration when its waiting step goes out.

use std::collections::BTreeMap;

use super::{change, still_to_come, Sequences};
use crate::store::{LeadStore, NextStep, StoreError};

/// Enrolments read per query.
const PAGE: u32 = 500;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SequencePlan {
    pub id: String,
    /// `new`, `changed`, `unchanged` or `removed`.
    pub status: &'static str,
    pub old_steps: Vec<String>,
    pub new_steps: Vec<String>,
    pub active: usize,
    pub finished: usize,
    /// Step -> active enrolments that gain it.
    pub gains: BTreeMap<String, usize>,
    /// Step -> active enrolments that lose it.
    pub loses: BTreeMap<String, usize>,
    /// Step -> finished enrolments that gain it (re-opened; only with `reach_finished`).
    pub finished_gain: BTreeMap<String, usize>,
    /// Finished enrolments that would gain appended steps but stay finished (no
    /// `reach_finished`).
    pub finished_left: usize,
    #[serde(skip)]
    reopen: Vec<(String, String)>,
}

fn bump(map: &mut BTreeMap<String, usize>, steps: &[String]) {
    for s in steps {
        *map.entry(s.clone()).or_default() += 1;
    }
}

/// What the configuration changes against what each sequence last ran with.
pub async fn plan(
    store: &LeadStore,
    sequences: &Sequences,
) -> Result<Vec<SequencePlan>, StoreError> {
    let stored = store.sequence_definitions().await?;
    let mut out = Vec::new();
    for s in sequences.all() {
        let new: Vec<String> = s.steps.iter().map(|x| x.id.clone()).collect();
        let old = stored.get(&s.id).cloned();
        let mut p = SequencePlan {
            id: s.id.clone(),
            status: match &old {
                None => "new",
                Some(o) if *o == new => "unchanged",
                Some(_) => "changed",
            },
            old_steps: old.clone().unwrap_or_default(),
            new_steps: new.clone(),
            ..SequencePlan::default()
        };
        let old = old.unwrap_or_else(|| new.clone());
        let mut after = String::new();
        loop {
            let page = store.sequence_enrolments(&s.id, &after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for e in &page {
                match e.status.as_str() {
                    "active" => {
                        p.active += 1;
                        let c = change(&old, &new, &e.steps, e.waiting.as_deref());
                        bump(&mut p.gains, &c.gains);
                        bump(&mut p.loses, &c.loses);
                    }
                    "finished" => {
                        p.finished += 1;
                        let c = change(&old, &new, &e.steps, None);
                        if c.gains.is_empty() {
                            continue;
                        }
                        if s.reach_finished {
                            bump(&mut p.finished_gain, &c.gains);
                            if let Some(first) = still_to_come(&new, &e.steps).first() {
                                p.reopen.push((e.id.clone(), first.clone()));
                            }
                        } else {
                            p.finished_left += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        out.push(p);
    }
    for (id, steps) in stored {
        if sequences.get(&id).is_none() {
            let mut p = SequencePlan {
                id: id.clone(),
                status: "removed",
                old_steps: steps,
                ..SequencePlan::default()
            };
            let mut after = String::new();
            loop {
                let page = store.sequence_enrolments(&id, &after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                p.active += page.iter().filter(|e| e.status == "active").count();
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// Applies plans: records each sequence's step order and re-opens the finished enrolments
/// that gain a step. Returns how many were re-opened.
pub async fn apply(
    store: &LeadStore,
    sequences: &Sequences,
    plans: &[SequencePlan],
    (max_attempts, now_ms): (i64, i64),
) -> Result<usize, StoreError> {
    let mut reopened = 0;
    for p in plans {
        let Some(s) = sequences.get(&p.id) else {
            continue;
        };
        for (enrolment, step) in &p.reopen {
            let delay = s.step(step).map_or(0, |(_, x)| x.delay_ms);
            let next = NextStep {
                step_id: step.clone(),
                due_at_ms: s.window.next_open(now_ms + delay, None),
            };
            if store
                .reopen_enrolment(enrolment, &next, (max_attempts, now_ms))
                .await?
            {
                reopened += 1;
            }
        }
        if p.status != "unchanged" {
            store
                .save_sequence_definition(&p.id, &p.new_steps, now_ms)
                .await?;
        }
    }
    Ok(reopened)
}

/// The plan in words, one block per sequence.
pub fn describe(plans: &[SequencePlan]) -> String {
    let mut out = String::new();
    let list = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("'{k}' ({v})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for p in plans {
        out.push_str(&format!(
            "sequence {}: {} ({} active, {} finished)\n",
            p.id, p.status, p.active, p.finished
        ));
        if p.status == "changed" {
            out.push_str(&format!(
                "  steps: {} -> {}\n",
                p.old_steps.join(", "),
                p.new_steps.join(", ")
            ));
        }
        if p.status == "removed" {
            out.push_str(&format!(
                "  {} active enrolments stop: their waiting steps are not sent\n",
                p.active
            ));
        }
        if !p.gains.is_empty() {
            out.push_str(&format!("  active enrolments gain: {}\n", list(&p.gains)));
        }
        if !p.loses.is_empty() {
            out.push_str(&format!("  active enrolments lose: {}\n", list(&p.loses)));
        }
        if !p.finished_gain.is_empty() {
            out.push_str(&format!(
                "  finished enrolments re-open and gain: {}\n",
                list(&p.finished_gain)
            ));
        }
        if p.finished_left > 0 {
            out.push_str(&format!(
                "  {} finished enrolments stay finished (set reach_finished = true to send them the new steps)\n",
                p.finished_left
            ));
        }
    }
    out
}
