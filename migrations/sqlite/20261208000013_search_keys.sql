-- The console searches leads by name and company as well as address: each submission keeps
-- the typed name and company trimmed and lower-cased (set by Inlet on insert), with an index
-- each, so a prefix search is a range on an index at any size. Rows from before are filled
-- in here (SQLite's lower() folds ASCII letters only; new rows fold every letter).
ALTER TABLE submissions ADD COLUMN name_key TEXT;
ALTER TABLE submissions ADD COLUMN company_key TEXT;
UPDATE submissions
   SET name_key = NULLIF(lower(trim(json_extract(fields, '$.name'))), ''),
       company_key = NULLIF(lower(trim(json_extract(fields, '$.company'))), '')
 WHERE json_type(fields, '$.name') = 'text' OR json_type(fields, '$.company') = 'text';
CREATE INDEX submissions_name_key ON submissions (name_key) WHERE name_key IS NOT NULL;
CREATE INDEX submissions_company_key ON submissions (company_key) WHERE company_key IS NOT NULL;
