//! CRM hand-off shapes. No real CRM can be reached from here, so each adapter talks to a
//! local HTTP server (the test receiver) that answers the way the CRM's API documents; the
//! tests check the documented request shape: method, path, authentication and body. They
//! show that a re-send updates the record the first push made (crm_links) instead of making a
//! duplicate, and that erasing a lead erases it in the CRM too.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::receiver::{Answer, Got, Receiver};
use crate::smtp::SmtpServer;

const TOKEN: &str = "crm-test-token";

async fn spawn(backend: Backend, smtp: &SmtpServer, api: &Receiver, which: &str) -> TestApp {
    let base = api.base();
    let which = which.to_string();
    crate::qualification::spawn(backend, smtp, api, move |s| {
        s.webhooks.endpoints.clear();
        s.handoff.owners[0].crm_ids = [
            ("hubspot", "101"),
            ("salesforce", "005A"),
            ("pipedrive", "42"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = inlet::config::CrmConfig {
            url: base,
            token: secrecy::SecretString::from(TOKEN),
            on: Vec::new(),
            api_version: None,
            assignment_rules: None,
            contact: None,
        };
        match which.as_str() {
            "hubspot" => s.crm.hubspot = Some(c),
            "salesforce" => s.crm.salesforce = Some(c),
            _ => s.crm.pipedrive = Some(c),
        }
    })
    .await
}

/// A demo request from Ada: she becomes an MQL handed to Sam at once.
async fn ada_asks_for_a_demo(app: &TestApp) -> String {
    let created: Value = app
        .post_json("demo", &json!({"email": "ada@analytical.example", "name": "Ada King Lovelace", "company": "Analytical Engines", "phone": "+44 20 7946 0000", "_elapsed_ms": 5000}))
        .await
        .json()
        .await
        .unwrap();
    let lead = app.lead_of(&created).await;
    app.dispatch().await;
    lead
}

fn calls(api: &Receiver) -> Vec<(String, String)> {
    api.got()
        .iter()
        .map(|g| (g.method.clone(), g.path.clone()))
        .collect()
}

fn json_of(g: &Got) -> Value {
    serde_json::from_slice(&g.body).unwrap_or(Value::Null)
}

both_backends! {
    async fn hubspot_upserts_contacts_by_email_with_stage_and_owner_and_erases_by_gdpr_delete(backend: Backend) {
        let (smtp, api) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &api, "hubspot").await;
        let upserted = json!({"status": "COMPLETE", "results": [{"id": "9001", "properties": {"email": "ada@analytical.example"}}]});
        api.script([Answer::Json(200, upserted.clone()), Answer::Json(200, upserted.clone()), Answer::Json(200, upserted)]);
        let lead = ada_asks_for_a_demo(&app).await;
        let got = api.got();
        assert_eq!(got.len(), 3, "stage changed, MQL, hand-off created: {:?}", calls(&api));
        for g in &got {
            assert_eq!((g.method.as_str(), g.path.as_str()), ("POST", "/crm/v3/objects/contacts/batch/upsert"));
            assert_eq!(g.header("authorization"), format!("Bearer {TOKEN}"));
        }
        let body = json_of(&got[0]);
        let input = &body["inputs"][0];
        assert_eq!((input["idProperty"].clone(), input["id"].clone()), (json!("email"), json!("ada@analytical.example")));
        let p = &input["properties"];
        assert_eq!((p["firstname"].clone(), p["lastname"].clone(), p["company"].clone()), (json!("Ada King"), json!("Lovelace"), json!("Analytical Engines")));
        assert_eq!((p["lifecyclestage"].clone(), p["hubspot_owner_id"].clone()), (json!("marketingqualifiedlead"), json!("101")));

        // Accepted, then qualified by sales: the contact becomes a sales-qualified lead.
        let h = app.admin_get("/v1/admin/handoffs").await["handoffs"][0]["id"].as_str().unwrap().to_string();
        for action in ["accept", "qualified"] {
            let r = crate::qualification::admin_post(&app, &format!("/v1/admin/handoffs/{h}"), &json!({"action": action})).await;
            assert_eq!(r.status(), 200);
        }
        app.dispatch().await;
        let last = json_of(api.got().last().unwrap());
        assert_eq!(last["inputs"][0]["properties"]["lifecyclestage"], "salesqualifiedlead");

        assert_eq!(app.erase(&lead).await.status(), 200);
        app.dispatch().await;
        let erase = api.got().last().unwrap().clone();
        assert_eq!((erase.method.as_str(), erase.path.as_str()), ("POST", "/crm/v3/objects/contacts/gdpr-delete"));
        assert_eq!(json_of(&erase), json!({"objectId": "9001"}));
        let log = app.admin_get("/v1/admin/webhooks/deliveries?endpoint=crm:hubspot").await;
        assert!(log["deliveries"].as_array().unwrap().iter().all(|d| d["status"] == "delivered"), "{log}");
    }

    async fn salesforce_creates_a_lead_with_assignment_rules_then_updates_it_and_deletes_it_on_erasure(backend: Backend) {
        let (smtp, api) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &api, "salesforce").await;
        api.script([Answer::Json(201, json!({"id": "00Q5e00000AbCdE", "success": true, "errors": []}))]);
        let lead = ada_asks_for_a_demo(&app).await;
        let got = api.got();
        assert_eq!(calls(&api), [
            ("POST".into(), "/services/data/v60.0/sobjects/Lead/".into()),
            ("PATCH".into(), "/services/data/v60.0/sobjects/Lead/00Q5e00000AbCdE".into()),
            ("PATCH".into(), "/services/data/v60.0/sobjects/Lead/00Q5e00000AbCdE".into()),
        ], "one Lead, then updates: no duplicate");
        assert_eq!(got[0].header("sforce-auto-assign"), "TRUE", "the org's assignment rules pick the owner");
        assert_eq!(got[0].header("authorization"), format!("Bearer {TOKEN}"));
        let body = json_of(&got[0]);
        assert_eq!((body["LastName"].clone(), body["FirstName"].clone(), body["Company"].clone(), body["Email"].clone(), body["LeadSource"].clone()),
                   (json!("Lovelace"), json!("Ada King"), json!("Analytical Engines"), json!("ada@analytical.example"), json!("Inlet")));
        assert!(body.get("OwnerId").is_none(), "assignment rules, not an owner id");
        assert_eq!(app.erase(&lead).await.status(), 200);
        app.dispatch().await;
        let erase = api.got().last().unwrap().clone();
        assert_eq!((erase.method.as_str(), erase.path.as_str()), ("DELETE", "/services/data/v60.0/sobjects/Lead/00Q5e00000AbCdE"));
    }

    async fn pipedrive_makes_a_person_then_a_lead_and_later_only_updates_the_person(backend: Backend) {
        let (smtp, api) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &api, "pipedrive").await;
        api.script([
            Answer::Json(201, json!({"success": true, "data": {"id": 77}})),
            Answer::Json(201, json!({"success": true, "data": {"id": "adf21080-0e10-11eb-879b-05d71fb426ec"}})),
        ]);
        let lead = ada_asks_for_a_demo(&app).await;
        assert_eq!(calls(&api), [
            ("POST".into(), "/v1/persons".into()),
            ("POST".into(), "/v1/leads".into()),
            ("PUT".into(), "/v1/persons/77".into()),
            ("PUT".into(), "/v1/persons/77".into()),
        ]);
        let got = api.got();
        assert_eq!(got[0].header("x-api-token"), TOKEN, "the token in a header, never in the URL");
        assert!(got.iter().all(|g| !g.path.contains(TOKEN)));
        let person = json_of(&got[0]);
        assert_eq!((person["name"].clone(), person["email"][0]["value"].clone(), person["owner_id"].clone()), (json!("Ada King Lovelace"), json!("ada@analytical.example"), json!(42)));
        let lead_body = json_of(&got[1]);
        assert_eq!((lead_body["title"].clone(), lead_body["person_id"].clone(), lead_body["owner_id"].clone()), (json!("Ada King Lovelace (Analytical Engines)"), json!(77), json!(42)));
        assert_eq!(app.erase(&lead).await.status(), 200);
        app.dispatch().await;
        let erase = api.got().last().unwrap().clone();
        assert_eq!((erase.method.as_str(), erase.path.as_str()), ("DELETE", "/v1/persons/77"));
    }

    async fn a_crm_that_refuses_is_retried_and_replay_resends_the_push(backend: Backend) {
        let (smtp, api) = (SmtpServer::start(), Receiver::start());
        let app = spawn(backend, &smtp, &api, "hubspot").await;
        api.script([Answer::RetryAfter(60), Answer::Status(500), Answer::Status(500)]);
        ada_asks_for_a_demo(&app).await;
        let log = app.admin_get("/v1/admin/webhooks/deliveries?endpoint=crm:hubspot&status=failed").await;
        assert_eq!(log["deliveries"].as_array().unwrap().len(), 3, "{log}");
        let r = app.dispatch_after(60_000).await.qualification.webhooks;
        assert_eq!(r.delivered, 3, "{r:?}");
        let one = app.admin_get("/v1/admin/webhooks/deliveries?endpoint=crm:hubspot").await["deliveries"][0]["id"].as_str().unwrap().to_string();
        let replay = crate::qualification::admin_post(&app, "/v1/admin/webhooks/replay", &json!({"delivery_id": one})).await;
        assert_eq!(replay.status(), 200);
        assert_eq!(app.dispatch().await.qualification.webhooks.delivered, 1);
    }
}
