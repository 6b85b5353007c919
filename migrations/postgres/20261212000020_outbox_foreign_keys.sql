-- The outbox's two foreign keys cost every submission two more checks on PostgreSQL (each a
-- per-row trigger running its own lookup: with the submission's own key, about a fifth of the
-- backends' CPU on the write path) and guard nothing the write path leaves open: an outbox
-- row is inserted by the same statement as its submission, with that submission's lead, and
-- the submission's own key on `lead_id` stays. Deletions (erasure, retention) remove outbox
-- rows before their submissions in code shared with SQLite, which keeps these keys and runs
-- the same contract tests with foreign keys enforced, so an ordering mistake still fails there.
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_lead_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_submission_id_fkey;
