-- The PostgreSQL migration of the same name makes identifiers, keys, emails and codes compare
-- byte by byte (COLLATE "C"). SQLite's default collation (BINARY) already does: nothing to
-- change here; the file keeps the two migration histories in step.
SELECT 1;
