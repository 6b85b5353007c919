-- Which record in each CRM a lead is (so a second push updates it instead of making a
-- duplicate). crm: hubspot | salesforce | pipedrive:person | pipedrive:lead
CREATE TABLE crm_links (
    crm        TEXT NOT NULL,
    lead_id    TEXT NOT NULL,
    remote_id  TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (crm, lead_id)
);
CREATE INDEX crm_links_lead ON crm_links (lead_id);
