//! The query plans of the write path, as the engine would run them now: every statement that
//! the submission path and the outbox worker read or update rows with, built by the same
//! functions those paths call, under `EXPLAIN QUERY PLAN` (SQLite) or `EXPLAIN` (PostgreSQL).
//!
//! Inserts are not listed: their only reads are the conflict checks of `ON CONFLICT` and of
//! unique constraints, which are index probes by definition.

use super::leads::{idempotency_lookup, FIND_IDEMPOTENT};
use super::outbox::{
    claim_due_sql, claimed_rows, mark_failed_sql, update_claimed_sql, window_lookup, OUTBOX_STATS,
    SCHEDULED_STATS,
};
use super::sql::{Bind, Sql};
use super::suppression::suppression_lookup;
use super::{LeadStore, StoreError};

/// One statement and the plan the engine chose for it.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// What the statement is for, e.g. `idempotency lookup`.
    pub statement: &'static str,
    /// The statement as explained (values inlined).
    pub sql: String,
    /// The plan, one line per node.
    pub plan: Vec<String>,
}

impl QueryPlan {
    /// The plan lines that read a whole table (or a whole index of it) instead of probing an
    /// index: `SCAN …` on SQLite, `Seq Scan on …` on PostgreSQL.
    pub fn full_scans(&self) -> Vec<&str> {
        self.plan
            .iter()
            .map(String::as_str)
            .filter(|line| {
                let l = line.trim_start_matches([' ', '-', '>']);
                l.starts_with("Seq Scan on ")
                    || (l.starts_with("SCAN ") && !l.starts_with("SCAN CONSTANT ROW"))
            })
            .collect()
    }
}

impl LeadStore {
    /// The plan of every statement of the write path, for values as a busy form sends them.
    /// Run it on a database of realistic size (after `ANALYZE`): the planner chooses by its
    /// statistics, and on a near-empty table a full scan is the honest choice.
    pub async fn explain_write_path(&self) -> Result<Vec<QueryPlan>, StoreError> {
        let (now, owner) = (1_800_000_000_000_i64, "worker-plan");
        let ids = [
            "0190aaaa-0000-7000-8000-000000000001",
            "0190aaaa-0000-7000-8000-000000000002",
        ];
        let statements: Vec<(&'static str, Sql)> = vec![
            (
                "idempotency lookup",
                idempotency_lookup(
                    self.dialect(),
                    [
                        ("contact", "5f2c0d3b9a8e4f6a"),
                        ("contact", "7a1e2b3c4d5e6f70"),
                        ("whitepaper", "0b1c2d3e4f506172"),
                    ],
                ),
            ),
            (
                "idempotency race",
                Sql::with_binds(
                    FIND_IDEMPOTENT,
                    vec![
                        Bind::Text("contact".into()),
                        Bind::Text("5f2c0d3b9a8e4f6a".into()),
                    ],
                ),
            ),
            ("follow-up window", window_lookup(ids)),
            (
                "outbox claim",
                claim_due_sql(self.dialect(), now, 120_000, owner, 32),
            ),
            ("claimed messages", claimed_rows(ids)),
            (
                "mark sent",
                update_claimed_sql(self.dialect(), ids, owner, |sql| {
                    sql.push("status = 'sent', last_error = NULL, sent_at = ")
                        .bind_int(now);
                }),
            ),
            (
                "mark failed",
                mark_failed_sql("failed", "timeout", now, ids[0], owner),
            ),
            ("outbox stats (metrics)", Sql::fixed(OUTBOX_STATS).arg(now)),
            (
                "scheduled steps (metrics)",
                Sql::fixed(SCHEDULED_STATS).arg(now),
            ),
            (
                "suppression check",
                suppression_lookup(["3b0f5c1e9d8a7b6c5d4e3f2a1b0c9d8e"]),
            ),
        ];
        let mut plans = Vec::with_capacity(statements.len());
        for (statement, sql) in statements {
            plans.push(self.explain(statement, &sql.inlined()).await?);
        }
        Ok(plans)
    }

    /// The plan of every statement the qualification worker reads growing tables with: the
    /// claims of events and deliveries, a lead's activity and stage, its open hand-off, and
    /// the hand-offs past their SLA.
    pub async fn explain_qualification(&self) -> Result<Vec<QueryPlan>, StoreError> {
        use super::qualification::{
            open_handoff_sql, overdue_sql, ACTIVITY_DOWNLOADS, ACTIVITY_SUBMISSIONS, STAGE_OF,
        };
        let (now, owner, lead) = (
            1_800_000_000_000_i64,
            "worker-plan",
            "0190aaaa-0000-7000-8000-000000000001",
        );
        let claim = |table| {
            super::outbox::claim_sql(
                self.dialect(),
                table,
                "('pending', 'failed')",
                (now, 120_000, owner, 64),
            )
        };
        let statements: Vec<(&'static str, Sql)> = vec![
            ("event claim", claim("events")),
            ("delivery claim", claim("webhook_deliveries")),
            (
                "lead activity: submissions",
                Sql::fixed(ACTIVITY_SUBMISSIONS).arg(lead),
            ),
            (
                "lead activity: downloads",
                Sql::fixed(ACTIVITY_DOWNLOADS).arg(lead),
            ),
            ("lead stage", Sql::fixed(STAGE_OF).arg(lead)),
            ("open hand-off", open_handoff_sql(lead)),
            ("hand-offs past their SLA", overdue_sql(now, 100)),
        ];
        let mut plans = Vec::with_capacity(statements.len());
        for (statement, sql) in statements {
            plans.push(self.explain(statement, &sql.inlined()).await?);
        }
        Ok(plans)
    }

    /// The plan of every statement sequences run per lead or per sequence: enrolling, exits,
    /// the worker's check before a send, the lead page, reply and click lookups, the console's
    /// counts and the plan command's pages.
    pub async fn explain_sequences(&self) -> Result<Vec<QueryPlan>, StoreError> {
        use super::sequences::{
            counts_sql, exit_sqls, EARLIER_ENROLMENTS, ENROLMENT_STEPS, LEAD_STEPS,
            SEQUENCE_ENROLMENTS, SEQUENCE_MESSAGE,
        };
        let (lead, enrolment, message) = (
            "0190aaaa-0000-7000-8000-000000000001",
            "0190bbbb-0000-7000-8000-000000000001",
            "0190cccc-0000-7000-8000-000000000001",
        );
        let exit = super::Exit {
            sequences: vec!["nurture".into()],
            reason: crate::sequences::reason::FORM,
            detail: None,
        };
        let [exit_steps, exit_enrolments] = exit_sqls(lead, &exit, false, 1);
        let [by_status, by_step, interactions] = counts_sql("nurture");
        let statements: Vec<(&'static str, Sql)> = vec![
            (
                "earlier enrolments",
                Sql::fixed(EARLIER_ENROLMENTS).arg(lead).arg("nurture"),
            ),
            (
                "an enrolment's steps",
                Sql::fixed(ENROLMENT_STEPS).arg(enrolment),
            ),
            ("exit: waiting steps skipped", exit_steps),
            ("exit: enrolments ended", exit_enrolments),
            ("a lead's steps", Sql::fixed(LEAD_STEPS).arg(lead)),
            (
                "a reply's or click's message",
                Sql::fixed(SEQUENCE_MESSAGE).arg(message),
            ),
            ("counts: enrolments", by_status),
            ("counts: steps", by_step),
            ("counts: clicks and replies", interactions),
            (
                "plan: a page of enrolments",
                Sql::fixed(SEQUENCE_ENROLMENTS)
                    .arg("nurture")
                    .arg("")
                    .arg(500_i64),
            ),
        ];
        let mut plans = Vec::with_capacity(statements.len());
        for (statement, sql) in statements {
            plans.push(self.explain(statement, &sql.inlined()).await?);
        }
        Ok(plans)
    }

    /// The plan the engine chooses for one statement (values inlined, no placeholders).
    pub async fn explain(
        &self,
        statement: &'static str,
        sql: &str,
    ) -> Result<QueryPlan, StoreError> {
        let plan = self.pools.reader().explain(sql).await?;
        Ok(QueryPlan {
            statement,
            sql: sql.to_string(),
            plan,
        })
    }
}
