-- Nurture sequences: each lead's enrolments, the step order each sequence last ran with, and
-- what leads did with sequence mail (clicks, replies). The steps themselves are outbox rows,
-- keyed by (enrolment_id, step_id): the outbox is the scheduler.

-- status: active | finished | exited (exit_reason says why: unsubscribed, bounced, complained,
-- replied, handoff, stage, form, condition)
CREATE TABLE enrolments (
    id            TEXT PRIMARY KEY,
    sequence_id   TEXT NOT NULL,
    lead_id       TEXT NOT NULL REFERENCES leads (id),
    -- The submission whose data the mail may use (the trigger's, or the lead's newest).
    submission_id TEXT NOT NULL REFERENCES submissions (id),
    status        TEXT NOT NULL,
    exit_reason   TEXT,
    exit_detail   TEXT,
    enrolled_at   BIGINT NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX enrolments_lead ON enrolments (lead_id, sequence_id);
CREATE INDEX enrolments_sequence ON enrolments (sequence_id, id);
-- One active enrolment per lead and sequence, whichever instance enrols.
CREATE UNIQUE INDEX enrolments_active ON enrolments (lead_id, sequence_id) WHERE status = 'active';

ALTER TABLE outbox ADD COLUMN enrolment_id TEXT;
ALTER TABLE outbox ADD COLUMN step_id TEXT;
-- A step is one row per enrolment, ever: scheduled once, sent at most once.
CREATE UNIQUE INDEX outbox_step ON outbox (enrolment_id, step_id) WHERE enrolment_id IS NOT NULL;

-- The step order each sequence last ran with (for `inlet sequences plan`).
CREATE TABLE sequence_definitions (
    sequence_id TEXT PRIMARY KEY,
    steps       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- kind: click | reply. external_id: the reply's Message-ID (a provider retrying the same
-- reply records it once) or the link's index.
CREATE TABLE sequence_interactions (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    lead_id      TEXT NOT NULL REFERENCES leads (id),
    enrolment_id TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    step_id      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    detail       TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX sequence_interactions_lead ON sequence_interactions (lead_id, created_at);
CREATE INDEX sequence_interactions_enrolment ON sequence_interactions (enrolment_id, kind);
CREATE UNIQUE INDEX sequence_interactions_once ON sequence_interactions (message_id, kind, external_id);
