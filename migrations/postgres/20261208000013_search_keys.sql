-- The console searches leads by name and company as well as address: each submission keeps
-- the typed name and company trimmed and lower-cased (set by Inlet on insert), with an index
-- each, so a prefix search is a range on an index at any size (byte order, as for addresses).
ALTER TABLE submissions ADD COLUMN name_key TEXT COLLATE "C";
ALTER TABLE submissions ADD COLUMN company_key TEXT COLLATE "C";
UPDATE submissions
   SET name_key = NULLIF(lower(btrim((fields::jsonb) ->> 'name')), ''),
       company_key = NULLIF(lower(btrim((fields::jsonb) ->> 'company')), '')
 WHERE (fields::jsonb) ? 'name' OR (fields::jsonb) ? 'company';
CREATE INDEX submissions_name_key ON submissions (name_key) WHERE name_key IS NOT NULL;
CREATE INDEX submissions_company_key ON submissions (company_key) WHERE company_key IS NOT NULL;
