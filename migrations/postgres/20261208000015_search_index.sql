-- The search keys' indexes on submissions cost every new lead two random B-tree inserts on
-- the request path (about a quarter of PostgreSQL's submission throughput). They move to a
-- table of their own, filled off the request path in sorted batches by a background job;
-- the newest submissions, not indexed yet, are searched directly.
DROP INDEX submissions_name_key;
DROP INDEX submissions_company_key;
CREATE TABLE search_keys (
    key           TEXT COLLATE "C" NOT NULL,
    submission_id TEXT COLLATE "C" NOT NULL,
    lead_id       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key, submission_id)
);
-- Erasure and retention delete a submission's keys with it.
CREATE INDEX search_keys_submission ON search_keys (submission_id);
-- Submissions created before this time (ms) are in search_keys.
CREATE TABLE search_progress (
    id         BIGINT PRIMARY KEY,
    indexed_to BIGINT NOT NULL
);
INSERT INTO search_keys (key, submission_id, lead_id)
    SELECT name_key, id, lead_id FROM submissions WHERE name_key IS NOT NULL;
INSERT INTO search_keys (key, submission_id, lead_id)
    SELECT company_key, id, lead_id FROM submissions
     WHERE company_key IS NOT NULL AND company_key <> COALESCE(name_key, '')
    ON CONFLICT DO NOTHING;
INSERT INTO search_progress (id, indexed_to)
    SELECT 1, COALESCE(MAX(created_at) + 1, 0) FROM submissions;
