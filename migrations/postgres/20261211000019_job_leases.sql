-- Jobs that must run on one instance at a time (retention, the report rollup, applying
-- sequence definitions at startup): whoever holds a job's lease runs it; a lease that
-- outlives a killed holder simply expires.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
