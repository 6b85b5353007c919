-- Reports: where each submission came from, as reports group it (utm_source, else the
-- referring site's host, else 'direct'; the campaign), written with the submission. Rows
-- stored before this have NULL (reported from utm_source, else 'direct').
ALTER TABLE submissions ADD COLUMN source TEXT COLLATE "C";
ALTER TABLE submissions ADD COLUMN campaign TEXT COLLATE "C";

-- Form views, counted without cookies: daily counters per form, source and campaign. No
-- visitor, address or hash is stored; daily-unique views come from a keyed hash with a daily
-- salt that lives only in memory. private_views: visitors who asked not to be tracked
-- (Sec-GPC / DNT), counted without uniqueness.
CREATE TABLE form_views (
    day           BIGINT NOT NULL,
    form_id       TEXT COLLATE "C" NOT NULL,
    source        TEXT COLLATE "C" NOT NULL,
    campaign      TEXT COLLATE "C" NOT NULL,
    views         BIGINT NOT NULL DEFAULT 0,
    unique_views  BIGINT NOT NULL DEFAULT 0,
    private_views BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, form_id, source, campaign)
);
