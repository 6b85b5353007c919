-- Qualification and hand-off: integration events, lifecycle stages with their ledger,
-- hand-offs to sales owners, mail to staff, and webhook deliveries with their log.

-- What happened to a lead, written in the same transaction as the fact itself when anything
-- consumes events (scoring, webhooks). A dispatcher claims them like the outbox (lease,
-- retries), rescores the lead, moves its stage, and fans each one out to webhook endpoints.
-- status: pending | failed | done
CREATE TABLE events (
    id              TEXT COLLATE "C" PRIMARY KEY,
    type            TEXT NOT NULL,
    lead_id         TEXT COLLATE "C" NOT NULL,
    data            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    done_at         BIGINT
);
CREATE INDEX events_due ON events (status, next_attempt_at);
CREATE INDEX events_lead ON events (lead_id, created_at);
CREATE INDEX events_created ON events (created_at, id);

-- Each scored lead's stage, and its score when last computed (for lists; the score itself is
-- always recomputed from the lead's history).
CREATE TABLE lead_stages (
    lead_id     TEXT COLLATE "C" PRIMARY KEY REFERENCES leads (id),
    stage       TEXT NOT NULL,
    reason      TEXT,
    score       BIGINT NOT NULL,
    fit         BIGINT NOT NULL,
    engagement  BIGINT NOT NULL,
    ruleset     TEXT NOT NULL,
    recycled_at BIGINT,
    changed_at  BIGINT NOT NULL,
    scored_at   BIGINT NOT NULL
);
CREATE INDEX lead_stages_stage ON lead_stages (stage, changed_at);

-- Every stage change, only ever added: its cause (rule, api, cli, console, handoff, crm), who
-- made it, why, and the score's factors frozen at that moment.
CREATE TABLE stage_changes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    lead_id    TEXT COLLATE "C" NOT NULL,
    from_stage TEXT,
    to_stage   TEXT NOT NULL,
    cause      TEXT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT,
    score      BIGINT NOT NULL,
    ruleset    TEXT NOT NULL,
    factors    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX stage_changes_lead ON stage_changes (lead_id, created_at);

-- A lead handed to a sales owner: new -> attempting (accepted) -> connected -> qualified |
-- disqualified; or rejected (the lead goes back to nurture).
CREATE TABLE handoffs (
    id           TEXT COLLATE "C" PRIMARY KEY,
    lead_id      TEXT COLLATE "C" NOT NULL REFERENCES leads (id),
    owner_id     TEXT,
    status       TEXT NOT NULL,
    route        TEXT NOT NULL,
    reason       TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    sla_due_at   BIGINT NOT NULL,
    escalated_at BIGINT,
    accepted_at  BIGINT,
    closed_at    BIGINT
);
CREATE INDEX handoffs_owner ON handoffs (owner_id, status);
CREATE INDEX handoffs_lead ON handoffs (lead_id, created_at);
CREATE INDEX handoffs_status ON handoffs (status, created_at);
CREATE INDEX handoffs_sla ON handoffs (sla_due_at) WHERE status = 'new' AND escalated_at IS NULL;

CREATE TABLE handoff_changes (
    id          TEXT COLLATE "C" PRIMARY KEY,
    handoff_id  TEXT COLLATE "C" NOT NULL REFERENCES handoffs (id),
    from_status TEXT,
    to_status   TEXT NOT NULL,
    cause       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX handoff_changes_handoff ON handoff_changes (handoff_id, created_at);

-- Mail to our own people (an owner's new hand-off, an escalation, a disabled webhook), queued
-- like the outbox. kind: handoff | escalation | endpoint_disabled; subject: what it is about.
CREATE TABLE staff_mail (
    id              TEXT COLLATE "C" PRIMARY KEY,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX staff_mail_due ON staff_mail (status, next_attempt_at);
CREATE INDEX staff_mail_subject ON staff_mail (subject_id);

-- One event to one endpoint; message_id (the webhook-id header) is the same for every retry
-- and replay. status: pending | failed | delivered | dead | cancelled
CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    message_id      TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    type            TEXT NOT NULL,
    lead_id         TEXT COLLATE "C",
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT,
    last_error      TEXT,
    last_status     BIGINT,
    created_at      BIGINT NOT NULL,
    event_at        BIGINT NOT NULL,
    delivered_at    BIGINT,
    replay_of       TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, event_at);
CREATE INDEX webhook_deliveries_lead ON webhook_deliveries (lead_id);

-- Every attempt: status, latency and the start of the response (the delivery log).
CREATE TABLE webhook_attempts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    delivery_id TEXT COLLATE "C" NOT NULL,
    endpoint_id TEXT NOT NULL,
    status_code BIGINT,
    latency_ms  BIGINT NOT NULL,
    response    TEXT,
    error       TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, created_at);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, created_at);

-- Endpoint health: failing since when, disabled (by a 410 or days of failure) and why.
CREATE TABLE webhook_endpoints (
    id              TEXT PRIMARY KEY,
    failing_since   BIGINT,
    last_success_at BIGINT,
    disabled_at     BIGINT,
    disabled_reason TEXT
);

-- When each download link was first used (the activity scoring counts).
ALTER TABLE downloads ADD COLUMN first_download_at BIGINT;
