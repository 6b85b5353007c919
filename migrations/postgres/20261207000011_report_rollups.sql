-- Reports read settled days from a rollup instead of counting submissions again: one row per
-- day x form x source x campaign. A day is rolled up once it is over (and its writes have
-- settled); rollup_days says which days are, and loses a day whenever something in it changes
-- (a confirmation, a first download, a restore), so the next report or the background job
-- counts it again.
CREATE TABLE submission_days (
    day            BIGINT NOT NULL,
    form_id        TEXT COLLATE "C" NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    campaign       TEXT COLLATE "C" NOT NULL,
    submissions    BIGINT NOT NULL,
    spam           BIGINT NOT NULL,
    pending        BIGINT NOT NULL,
    confirmed      BIGINT NOT NULL,
    downloads_used BIGINT NOT NULL,
    -- follow-ups sent (so far: days within the retry horizon are counted again regularly)
    follow_ups_sent BIGINT NOT NULL,
    PRIMARY KEY (day, form_id, source, campaign)
);
CREATE TABLE rollup_days (
    day         BIGINT PRIMARY KEY,
    computed_at BIGINT NOT NULL
);
