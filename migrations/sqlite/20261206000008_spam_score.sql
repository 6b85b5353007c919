-- Spam is a score over signals (honeypot, time, rate, content): every submission keeps the
-- signals it showed and their points; spam_reason stays set only for quarantined ones.
ALTER TABLE submissions ADD COLUMN spam_score INTEGER;
ALTER TABLE submissions ADD COLUMN spam_signals TEXT;
-- When an operator took the submission out of quarantine (`inlet leads restore`).
ALTER TABLE submissions ADD COLUMN restored_at INTEGER;
