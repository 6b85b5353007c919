-- An idempotency key is bound to the payload it first came with: the SHA-256 of the person's
-- address and everything they typed. A repeat with another payload is refused (422) instead of
-- replaying the first person's answer. NULL for submissions stored before (or without a key).
ALTER TABLE submissions ADD COLUMN payload_hash TEXT;
