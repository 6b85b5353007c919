-- Nothing reads integration events by creation time (claims and retention use
-- events_due, erasure events_lead), so the third index only cost every submission one more
-- index entry.
DROP INDEX events_created;
