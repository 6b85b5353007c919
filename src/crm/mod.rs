//! CRM adapters: the lead, pushed to the CRM sales already uses. Each push is a delivery in
//! the webhook queue (endpoint `crm:<name>`), so retries, the attempt log, disabling on
//! repeated refusal and replays are the webhooks' own; what differs is the request, built at
//! send time from the lead as it is then:
//!
//! - **HubSpot**: contacts batch upsert by email (`POST /crm/v3/objects/contacts/batch/upsert`)
//!   with the lifecycle stage and the owner; erasure by GDPR delete.
//! - **Salesforce**: REST `Lead` (`POST /services/data/vXX/sobjects/Lead` with
//!   `Sforce-Auto-Assign` so the org's assignment rules pick the owner; `PATCH` once known);
//!   erasure by `DELETE`.
//! - **Pipedrive**: a person, then a lead for that person (`POST /v1/persons`,
//!   `POST /v1/leads`; `PUT` the person once known); erasure deletes the person.
//!
//! `crm_links` remembers each lead's record, so a re-send is an update, not a duplicate.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::config::{ConfigError, CrmConfig, CrmSettings, OwnerConfig};
use crate::scoring::Stage;
use crate::store::{LeadStore, StoreError};
use crate::webhooks::{Exchange, PushTarget, PushTargets};

/// The events that push a lead unless configured otherwise.
pub const DEFAULT_ON: [&str; 4] = [
    "lead.mql",
    "lead.stage_changed",
    "handoff.created",
    "lead.erased",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hubspot,
    Salesforce,
    Pipedrive,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hubspot => "hubspot",
            Kind::Salesforce => "salesforce",
            Kind::Pipedrive => "pipedrive",
        }
    }
}

/// One configured CRM.
#[derive(Debug, Clone)]
pub struct Crm {
    pub kind: Kind,
    base: url::Url,
    token: secrecy::SecretString,
    on: Vec<String>,
    api_version: String,
    assignment_rules: bool,
    pub contact: Option<String>,
}

/// The configured CRMs, built once at startup.
#[derive(Debug, Clone, Default)]
pub struct Crms {
    list: Vec<Crm>,
}

impl Crms {
    pub fn build(s: &CrmSettings) -> Result<Crms, ConfigError> {
        let mut list = Vec::new();
        for (kind, c) in [
            (Kind::Hubspot, &s.hubspot),
            (Kind::Salesforce, &s.salesforce),
            (Kind::Pipedrive, &s.pipedrive),
        ] {
            let Some(c) = c else { continue };
            list.push(Crm::build(kind, c)?);
        }
        Ok(Crms { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Crm] {
        &self.list
    }
}

/// Reads a response, and its body as JSON.
async fn read(resp: reqwest::Response) -> (Exchange, Value) {
    let (x, body) = crate::webhooks::read_response(resp).await;
    (x, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The lead as a CRM is told about it.
#[derive(Debug, Clone, Default)]
struct LeadView {
    email: String,
    first: String,
    last: String,
    company: Option<String>,
    title: Option<String>,
    phone: Option<String>,
    stage: Option<Stage>,
    owner: Option<OwnerConfig>,
}

fn split_name(full: Option<&str>, email: &str) -> (String, String) {
    let full = full.map(str::trim).filter(|n| !n.is_empty());
    match full.and_then(|n| n.rsplit_once(' ')) {
        Some((first, last)) => (first.trim().to_string(), last.trim().to_string()),
        None => (
            String::new(),
            full.map_or_else(
                || email.split('@').next().unwrap_or(email).to_string(),
                str::to_string,
            ),
        ),
    }
}

fn hubspot_stage(s: Stage) -> &'static str {
    match s {
        Stage::Subscriber => "subscriber",
        Stage::Lead => "lead",
        Stage::Mql => "marketingqualifiedlead",
        Stage::Sql => "salesqualifiedlead",
        Stage::Opportunity => "opportunity",
        Stage::Customer => "customer",
        Stage::Disqualified => "other",
    }
}

impl Crm {
    fn build(kind: Kind, c: &CrmConfig) -> Result<Crm, ConfigError> {
        let at = |m: String| ConfigError::invalid(format!("crm.{}", kind.name()), m);
        let base =
            url::Url::parse(c.url.trim_end_matches('/')).map_err(|e| at(format!("url: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(at("url must be an http(s) URL".into()));
        }
        if c.token.expose_secret().trim().is_empty() {
            return Err(at("token is required".into()));
        }
        for ev in &c.on {
            if !crate::webhooks::EVENT_TYPES.contains(&ev.as_str()) {
                return Err(at(format!("unknown event '{ev}' in on")));
            }
        }
        if let Some(contact) = &c.contact {
            crate::domain::EmailAddress::parse(contact)
                .map_err(|e| at(format!("contact '{contact}' {e}")))?;
        }
        Ok(Crm {
            kind,
            base,
            token: c.token.clone(),
            on: if c.on.is_empty() {
                DEFAULT_ON.iter().map(|s| (*s).to_string()).collect()
            } else {
                c.on.clone()
            },
            api_version: c.api_version.clone().unwrap_or_else(|| "v60.0".into()),
            assignment_rules: c.assignment_rules.unwrap_or(true),
            contact: c.contact.clone(),
        })
    }

    pub fn endpoint_id(&self) -> String {
        format!("crm:{}", self.kind.name())
    }

    pub fn wants(&self, kind: &str) -> bool {
        self.on.iter().any(|e| e == kind)
    }

    /// A URL under the API's base.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// The base URL (for the private-address check).
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    fn bearer(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.kind {
            // Pipedrive's token goes in a header (never the query string, where logs keep it).
            Kind::Pipedrive => req.header("x-api-token", self.token.expose_secret()),
            _ => req.bearer_auth(self.token.expose_secret()),
        }
    }

    /// Sends one push (`payload`: `{"action": "sync"|"erase", "lead_id", "crm"?}`).
    pub async fn push(
        &self,
        client: &reqwest::Client,
        store: &LeadStore,
        owners: &[OwnerConfig],
        payload: &str,
        now_ms: i64,
    ) -> Result<Exchange, StoreError> {
        let p: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        let lead_id = p["lead_id"].as_str().unwrap_or_default();
        if p["action"] == "erase" {
            let remote = |k: &str| p["crm"][k].as_str().map(String::from);
            let target = match self.kind {
                Kind::Hubspot => remote("hubspot"),
                Kind::Salesforce => remote("salesforce"),
                Kind::Pipedrive => remote("pipedrive:person"),
            };
            return Ok(match target {
                Some(id) => self.erase(client, &id).await,
                // Never pushed to this CRM: nothing to erase there.
                None => Exchange {
                    status: Some(reqwest::StatusCode::NO_CONTENT),
                    response: Some("not in this CRM: nothing to erase".into()),
                    ..Exchange::default()
                },
            });
        }
        let Some(view) = self.view(store, owners, lead_id).await? else {
            return Ok(Exchange {
                status: Some(reqwest::StatusCode::NO_CONTENT),
                response: Some("the lead is gone: nothing to push".into()),
                ..Exchange::default()
            });
        };
        let links = store.crm_links(lead_id).await?;
        let (exchange, new_links) = match self.kind {
            Kind::Hubspot => self.hubspot(client, &view).await,
            Kind::Salesforce => {
                self.salesforce(client, &view, links.get("salesforce"))
                    .await
            }
            Kind::Pipedrive => self.pipedrive(client, &view, &links).await,
        };
        for (crm, remote) in new_links {
            store.link_crm(&crm, lead_id, &remote, now_ms).await?;
        }
        Ok(exchange)
    }

    async fn view(
        &self,
        store: &LeadStore,
        owners: &[OwnerConfig],
        lead_id: &str,
    ) -> Result<Option<LeadView>, StoreError> {
        let Some(activity) = store.lead_activity(lead_id).await? else {
            return Ok(None);
        };
        let f = &activity.facts.fields;
        let (first, last) = split_name(f.get("name").map(String::as_str), &activity.facts.email);
        let stage = store
            .lead_stage(lead_id)
            .await?
            .and_then(|s| s.stage.parse().ok());
        let owner_id = store
            .lead_handoffs(lead_id)
            .await?
            .into_iter()
            .find_map(|h| h.owner_id);
        Ok(Some(LeadView {
            email: activity.facts.email.clone(),
            first,
            last,
            company: f.get("company").cloned(),
            title: f.get("job_title").cloned(),
            phone: f.get("phone").cloned(),
            stage,
            owner: owner_id.and_then(|o| owners.iter().find(|x| x.id == o).cloned()),
        }))
    }

    fn owner_in(&self, v: &LeadView) -> Option<String> {
        v.owner
            .as_ref()
            .and_then(|o| o.crm_ids.get(self.kind.name()).cloned())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (Exchange, Value) {
        match self.bearer(req).send().await {
            Ok(resp) => read(resp).await,
            Err(e) => (
                Exchange {
                    error: Some(format!("the request failed: {}", e.without_url())),
                    ..Exchange::default()
                },
                Value::Null,
            ),
        }
    }

    async fn hubspot(
        &self,
        client: &reqwest::Client,
        v: &LeadView,
    ) -> (Exchange, Vec<(String, String)>) {
        let mut props = serde_json::Map::new();
        props.insert("email".into(), json!(v.email));
        props.insert("firstname".into(), json!(v.first));
        props.insert("lastname".into(), json!(v.last));
        for (k, val) in [
            ("company", &v.company),
            ("jobtitle", &v.title),
            ("phone", &v.phone),
        ] {
            if let Some(val) = val {
                props.insert(k.into(), json!(val));
            }
        }
        if let Some(s) = v.stage {
            props.insert("lifecyclestage".into(), json!(hubspot_stage(s)));
        }
        if let Some(o) = self.owner_in(v) {
            props.insert("hubspot_owner_id".into(), json!(o));
        }
        let body =
            json!({ "inputs": [{ "idProperty": "email", "id": v.email, "properties": props }] });
        let (x, json) = self
            .send(
                client
                    .post(self.url("/crm/v3/objects/contacts/batch/upsert"))
                    .json(&body),
            )
            .await;
        let id = json["results"][0]["id"].as_str().map(String::from);
        let links = if x.failed() {
            Vec::new()
        } else {
            id.map(|id| ("hubspot".to_string(), id))
                .into_iter()
                .collect()
        };
        (x, links)
    }

    async fn salesforce(
        &self,
        client: &reqwest::Client,
        v: &LeadView,
        known: Option<&String>,
    ) -> (Exchange, Vec<(String, String)>) {
        let mut body = json!({
            "FirstName": v.first,
            "LastName": if v.last.is_empty() { "(unknown)" } else { v.last.as_str() },
            "Email": v.email,
            "Company": v.company.clone().unwrap_or_else(|| "[not provided]".into()),
            "LeadSource": "Inlet",
        });
        if let Some(t) = &v.title {
            body["Title"] = json!(t);
        }
        if let Some(p) = &v.phone {
            body["Phone"] = json!(p);
        }
        if let Some(s) = v.stage {
            body["Status"] = json!(match s {
                Stage::Disqualified => "Closed - Not Converted",
                Stage::Sql | Stage::Opportunity | Stage::Customer => "Working - Contacted",
                _ => "Open - Not Contacted",
            });
        }
        if !self.assignment_rules {
            if let Some(o) = self.owner_in(v) {
                body["OwnerId"] = json!(o);
            }
        }
        let base = format!("/services/data/{}/sobjects/Lead", self.api_version);
        let auto = if self.assignment_rules {
            "TRUE"
        } else {
            "FALSE"
        };
        match known {
            Some(id) => {
                let (x, _) = self
                    .send(
                        client
                            .patch(self.url(&format!("{base}/{id}")))
                            .header("Sforce-Auto-Assign", "FALSE")
                            .json(&body),
                    )
                    .await;
                (x, Vec::new())
            }
            None => {
                let (x, json) = self
                    .send(
                        client
                            .post(self.url(&format!("{base}/")))
                            .header("Sforce-Auto-Assign", auto)
                            .json(&body),
                    )
                    .await;
                let id = json["id"].as_str().map(String::from);
                let links = if x.failed() {
                    Vec::new()
                } else {
                    id.map(|id| ("salesforce".to_string(), id))
                        .into_iter()
                        .collect()
                };
                (x, links)
            }
        }
    }

    async fn pipedrive(
        &self,
        client: &reqwest::Client,
        v: &LeadView,
        links: &BTreeMap<String, String>,
    ) -> (Exchange, Vec<(String, String)>) {
        let name = format!("{} {}", v.first, v.last).trim().to_string();
        let mut person = json!({
            "name": name,
            "email": [{ "value": v.email, "primary": true, "label": "work" }],
        });
        if let Some(p) = &v.phone {
            person["phone"] = json!([{ "value": p, "primary": true, "label": "work" }]);
        }
        let owner: Option<i64> = self.owner_in(v).and_then(|o| o.parse().ok());
        if let Some(o) = owner {
            person["owner_id"] = json!(o);
        }
        let mut new_links = Vec::new();
        let person_id = match links.get("pipedrive:person") {
            Some(id) => {
                let (x, _) = self
                    .send(
                        client
                            .put(self.url(&format!("/v1/persons/{id}")))
                            .json(&person),
                    )
                    .await;
                if x.failed() {
                    return (x, new_links);
                }
                id.clone()
            }
            None => {
                let (x, json) = self
                    .send(client.post(self.url("/v1/persons")).json(&person))
                    .await;
                let Some(id) = json["data"]["id"].as_i64().map(|i| i.to_string()) else {
                    return (x, new_links);
                };
                if x.failed() {
                    return (x, new_links);
                }
                new_links.push(("pipedrive:person".to_string(), id.clone()));
                id
            }
        };
        if links.contains_key("pipedrive:lead") {
            // The lead exists: the person's update is the push.
            return (
                Exchange {
                    status: Some(reqwest::StatusCode::OK),
                    response: Some("person updated; the Pipedrive lead exists".into()),
                    ..Exchange::default()
                },
                new_links,
            );
        }
        let title = match &v.company {
            Some(c) => format!("{name} ({c})"),
            None => name.clone(),
        };
        let mut lead =
            json!({ "title": title, "person_id": person_id.parse::<i64>().unwrap_or_default() });
        if let Some(o) = owner {
            lead["owner_id"] = json!(o);
        }
        let (x, json) = self
            .send(client.post(self.url("/v1/leads")).json(&lead))
            .await;
        if let (false, Some(id)) = (x.failed(), json["data"]["id"].as_str()) {
            new_links.push(("pipedrive:lead".to_string(), id.to_string()));
        }
        (x, new_links)
    }

    async fn erase(&self, client: &reqwest::Client, id: &str) -> Exchange {
        let req = match self.kind {
            Kind::Hubspot => client
                .post(self.url("/crm/v3/objects/contacts/gdpr-delete"))
                .json(&json!({ "objectId": id })),
            Kind::Salesforce => client.delete(self.url(&format!(
                "/services/data/{}/sobjects/Lead/{id}",
                self.api_version
            ))),
            Kind::Pipedrive => client.delete(self.url(&format!("/v1/persons/{id}"))),
        };
        let (mut x, _) = self.send(req).await;
        // Already gone there is what erasure wants.
        if x.status == Some(reqwest::StatusCode::NOT_FOUND) {
            x.status = Some(reqwest::StatusCode::NO_CONTENT);
        }
        x
    }
}

/// The CRMs as delivery targets: each push reads the lead from the store when it is sent.
pub struct CrmTargets {
    list: Vec<CrmTarget>,
}

struct CrmTarget {
    crm: Crm,
    store: LeadStore,
    owners: Vec<OwnerConfig>,
}

impl CrmTargets {
    pub fn new(crms: &Crms, store: &LeadStore, owners: &[OwnerConfig]) -> CrmTargets {
        CrmTargets {
            list: crms
                .list
                .iter()
                .map(|c| CrmTarget {
                    crm: c.clone(),
                    store: store.clone(),
                    owners: owners.to_vec(),
                })
                .collect(),
        }
    }
}

impl PushTargets for CrmTargets {
    fn target(&self, endpoint_id: &str) -> Option<&dyn PushTarget> {
        let name = endpoint_id.strip_prefix("crm:")?;
        self.list
            .iter()
            .find(|t| t.crm.kind.name() == name)
            .map(|t| t as &dyn PushTarget)
    }
}

impl PushTarget for CrmTarget {
    fn base(&self) -> &url::Url {
        &self.crm.base
    }

    fn contact(&self) -> Option<String> {
        self.crm.contact.clone()
    }

    fn push<'a>(
        &'a self,
        client: &'a reqwest::Client,
        payload: &'a str,
        now_ms: i64,
    ) -> futures::future::BoxFuture<'a, Exchange> {
        Box::pin(async move {
            self.crm
                .push(client, &self.store, &self.owners, payload, now_ms)
                .await
                .unwrap_or_else(|e| Exchange {
                    error: Some(format!("cannot read the lead to push: {e}")),
                    ..Exchange::default()
                })
        })
    }
}

/// What a push delivery carries (the request is built when it is sent).
pub fn push_payload(kind: &str, lead_id: &str, event_data: &Value) -> String {
    if kind == "lead.erased" {
        json!({ "action": "erase", "lead_id": lead_id, "crm": event_data["crm"] }).to_string()
    } else {
        json!({ "action": "sync", "lead_id": lead_id, "event": kind }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_first_and_last_and_fall_back_to_the_address() {
        assert_eq!(
            split_name(Some("Ada King Lovelace"), "a@x"),
            ("Ada King".into(), "Lovelace".into())
        );
        assert_eq!(
            split_name(Some("Cher"), "c@x"),
            (String::new(), "Cher".into())
        );
        assert_eq!(
            split_name(None, "bob@x.example"),
            (String::new(), "bob".into())
        );
    }

    #[test]
    fn crm_settings_are_checked() {
        let c = CrmConfig {
            url: "ftp://x".into(),
            token: secrecy::SecretString::from("t"),
            on: Vec::new(),
            api_version: None,
            assignment_rules: None,
            contact: None,
        };
        let s = CrmSettings {
            hubspot: Some(c.clone()),
            ..CrmSettings::default()
        };
        assert!(Crms::build(&s)
            .unwrap_err()
            .to_string()
            .contains("crm.hubspot"));
        let s = CrmSettings {
            pipedrive: Some(CrmConfig {
                url: "https://api.pipedrive.com".into(),
                on: vec!["lead.teleported".into()],
                ..c
            }),
            ..CrmSettings::default()
        };
        assert!(Crms::build(&s)
            .unwrap_err()
            .to_string()
            .contains("lead.teleported"));
    }
}
