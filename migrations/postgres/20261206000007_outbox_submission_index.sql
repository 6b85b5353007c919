-- Deleting a submission (retention, erasure) checks the foreign key outbox.submission_id; with
-- no index that check reads the whole outbox for every deleted row (measured: 0.5 s per 256
-- submissions on a 50,000-row outbox, growing with it).
CREATE INDEX outbox_submission ON outbox (submission_id);
