-- PostgreSQL drops the outbox's two foreign keys in this version (they cost it a per-row
-- trigger each on the write path). SQLite keeps them: a check there is a lookup in pages the
-- same batch just wrote, its write path is bound by its one writer's I/O, and the contract
-- tests run every deletion path here with foreign keys enforced.
SELECT 1;
