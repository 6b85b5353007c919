//! Leads in from elsewhere: Mailchimp- and HubSpot-shaped exports and plain CSV files,
//! through `POST /v1/admin/leads/import` and `inlet leads import`, on both engines. Each
//! person's consent is kept as the file states it, nobody is mailed, bad rows are reported
//! and change nothing.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{cli, contact, raw, Backend, TestApp, ADMIN_TOKEN};

async fn import(app: &TestApp, query: &str, csv: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/v1/admin/leads/import?{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every lead's status and latest fields, by address.
async fn statuses(app: &TestApp) -> std::collections::BTreeMap<String, (String, Value)> {
    app.admin_get("/v1/admin/leads?limit=500").await["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["email"].as_str().unwrap().to_string(),
                (
                    l["status"].as_str().unwrap().to_string(),
                    l["latest_submission"]["fields"].clone(),
                ),
            )
        })
        .collect()
}

fn outcomes(answer: &Value) -> Vec<(u64, String)> {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const MC_SUBSCRIBED: &str =
    "\u{feff}Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,CONFIRM_TIME,LEID,TAGS\n\
ada@example.com,Ada,Lovelace,2,2024-03-01 10:00:00,2024-03-01 10:05:00,1001,\"vip,2024\"\n\
Bob@Example.com,Bob,,1,2024-04-02 09:00:00,,1002,\n";
const MC_UNSUBSCRIBED: &str = "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_REASON\n\
carl@example.com,Carl,Cole,1,2023-01-01 00:00:00,2024-05-05 12:00:00,Spring,No longer interested\n";
const MC_CLEANED: &str =
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE\n\
dee@example.com,Dee,Dunn,1,2023-01-01 00:00:00,2024-06-06 12:00:00,Summer\n";

both_backends! {
    async fn a_mailchimp_export_keeps_each_members_consent_and_mails_nobody(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for (file, csv) in [("subscribed.csv", MC_SUBSCRIBED), ("unsubscribed.csv", MC_UNSUBSCRIBED), ("cleaned.csv", MC_CLEANED)] {
            let (code, answer) = import(&app, &format!("form=newsletter&preset=mailchimp&file={file}"), csv).await;
            assert_eq!(code, 200, "{answer}");
            assert!(answer["rows"].as_array().unwrap().iter().all(|r| r["outcome"] == "imported"), "{answer}");
        }
        let leads = statuses(&app).await;
        assert_eq!(leads["ada@example.com"].0, "active", "subscribed: may be mailed");
        assert_eq!(leads["ada@example.com"].1["name"], "Ada Lovelace");
        assert_eq!(leads["bob@example.com"].0, "active");
        assert_eq!(leads["carl@example.com"].0, "unsubscribed");
        assert_eq!(leads["dee@example.com"].0, "bounced");

        // The ledger says where each consent came from.
        let ada = app.admin_get("/v1/admin/leads?q=ada").await["leads"][0]["id"].as_str().unwrap().to_string();
        let record = app.admin_get(&format!("/v1/admin/leads/{ada}/export")).await;
        let entry = &record["consents"][0];
        assert_eq!(entry["kind"], "import");
        assert_eq!(entry["text_version"], "subscribed");
        let text = entry["text"].as_str().unwrap();
        assert!(text.contains("Mailchimp") && text.contains("subscribed.csv") && text.contains("2024-03-01 10:05:00"), "{text}");

        // Nobody is mailed: no message queued, none sent.
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("outbox").await, 0);
        assert_eq!(app.dispatch().await.sent, 0);

        // Imported people are leads, not conversions of the form.
        let stats = app.admin_get("/v1/admin/stats?form=newsletter").await;
        assert_eq!(stats["totals"]["submissions"], 0, "{stats}");

        // Importing the same file again changes nothing.
        let (_, again) = import(&app, "form=newsletter&preset=mailchimp", MC_SUBSCRIBED).await;
        assert_eq!(outcomes(&again), vec![(2, "unchanged".into()), (3, "unchanged".into())]);
        assert_eq!(db.count("submissions").await, 4);
    }

    async fn a_hubspot_export_is_pending_unless_the_import_says_they_consented(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let hubspot = "Record ID,First Name,Last Name,Email,Company Name,Job Title,Lifecycle Stage,Unsubscribed from all email,Email hard bounce reason\n\
            1,Erin,East,erin@example.com,Acme,CTO,lead,false,\n\
            2,Finn,Fox,finn@example.com,Beta,,subscriber,true,\n\
            3,Gia,Gray,gia@example.com,,,lead,false,550 no such user\n";
        let (code, answer) = import(&app, "form=whitepaper&preset=hubspot", hubspot).await;
        assert_eq!(code, 200, "{answer}");
        let states: Vec<&str> = answer["rows"].as_array().unwrap().iter().map(|r| r["consent"].as_str().unwrap()).collect();
        assert_eq!(states, ["pending", "unsubscribed", "bounced"]);
        assert_eq!(answer["summary"]["columns_used"]["company"], "Company Name");
        assert_eq!(answer["summary"]["columns_used"]["name"], "First Name + Last Name");
        assert!(answer["summary"]["columns_ignored"].as_array().unwrap().iter().any(|c| c == "Lifecycle Stage"));
        let leads = statuses(&app).await;
        assert_eq!(leads["erin@example.com"].0, "pending", "HubSpot states no consent: not mailed");
        assert_eq!(leads["erin@example.com"].1["company"], "Acme");
        assert_eq!(leads["erin@example.com"].1["job_title"], "CTO");
        assert!(leads["erin@example.com"].1.get("consent").is_none_or(|c| c == false), "no box is ticked for anyone");
        assert_eq!(leads["finn@example.com"].0, "unsubscribed");
        assert_eq!(leads["gia@example.com"].0, "bounced");

        // The import says they consented: they may be mailed.
        let consented = "Email,First Name,Last Name\nhal@example.com,Hal,Hill\n";
        let (_, answer) = import(&app, "form=whitepaper&preset=hubspot&consent=subscribed", consented).await;
        assert_eq!(answer["rows"][0]["consent"], "subscribed");
        assert_eq!(statuses(&app).await["hal@example.com"].0, "active");
        assert_eq!(raw(&app.db).await.count("outbox").await, 0);
    }

    async fn bad_rows_are_reported_and_change_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        // Someone erased before, and someone who unsubscribed from Inlet.
        app.post_json("contact", &contact("erased@example.com")).await;
        app.post_json("contact", &contact("gone@example.com")).await;
        let erased = app.admin_get("/v1/admin/leads?q=erased").await["leads"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(app.erase(&erased).await.status(), 200);
        let out = cli(&["leads", "unsubscribe", "gone@example.com"], &app.db.url());
        assert!(out.status.success());
        let before = raw(&app.db).await.count("submissions").await;

        let long = "x".repeat(5000);
        let csv = format!(
            "email,name,company,consent\n\
             ok@example.com,Ok Person,=HYPERLINK(\"x\"),subscribed\n\
             not-an-address,Bad,,subscribed\n\
             long@example.com,{long},,subscribed\n\
             maybe@example.com,Maybe,,perhaps\n\
             OK@example.com,Twice,,subscribed\n\
             \n\
             erased@example.com,Back Again,,subscribed\n\
             gone@example.com,Gone,,subscribed\n\
             blank@example.com,,,\n"
        );
        // A dry run reports the same and writes nothing.
        let (code, dry) = import(&app, "form=contact&dry_run=true", &csv).await;
        assert_eq!(code, 200, "{dry}");
        assert_eq!(dry["summary"]["dry_run"], true);
        assert_eq!(raw(&app.db).await.count("submissions").await, before);

        let (code, answer) = import(&app, "form=contact", &csv).await;
        assert_eq!(code, 200, "{answer}");
        let rows = outcomes(&answer);
        assert_eq!(
            rows,
            vec![
                (2, "imported".into()),
                (3, "invalid".into()),
                (4, "invalid".into()),
                (5, "invalid".into()),
                (6, "skipped".into()),
                (8, "skipped".into()),
                (9, "merged".into()),
                (10, "imported".into()),
            ],
            "{answer}"
        );
        let detail = |row: u64| {
            answer["rows"].as_array().unwrap().iter().find(|r| r["row"] == row).unwrap()["detail"].as_str().unwrap().to_string()
        };
        assert!(detail(3).contains("email"), "{}", detail(3));
        assert!(detail(4).contains("name"), "{}", detail(4));
        assert!(detail(5).contains("perhaps"), "{}", detail(5));
        assert!(detail(6).contains("row 2"), "{}", detail(6));
        assert!(detail(8).contains("erased"), "{}", detail(8));
        assert!(detail(9).contains("unsubscribed") && detail(9).contains("stays"), "{}", detail(9));
        assert_eq!(dry["rows"].as_array().unwrap().len(), answer["rows"].as_array().unwrap().len());
        assert_eq!(answer["summary"]["counts"]["invalid"], 3);

        let leads = statuses(&app).await;
        assert!(!leads.contains_key("erased@example.com"), "an import never brings back an erased person");
        assert_eq!(leads["gone@example.com"].0, "unsubscribed", "Inlet's own unsubscribe wins");
        assert_eq!(leads["ok@example.com"].0, "active");
        assert_eq!(leads["blank@example.com"].0, "pending", "no consent stated: pending");
        assert_eq!(raw(&app.db).await.count("submissions").await, before + 3);

        // What cannot be read at all is a 400 that says why, and writes nothing.
        for (query, csv, words) in [
            ("form=contact", "name,company\nA,B\n", "no email column"),
            ("form=nope", "email\na@example.com\n", "no form called 'nope'"),
            ("form=contact&map=fax%3DFax", "email,Fax\na@example.com,1\n", "no field 'fax'"),
            ("form=contact&map=company%3DEmployer", "email\na@example.com\n", "no column 'Employer'"),
            ("form=contact&consent=maybe", "email\na@example.com\n", "expected one of `subscribed`"),
        ] {
            let (code, body) = import(&app, query, csv).await;
            assert_eq!(code, 400, "{query}: {body}");
            assert!(body["message"].as_str().unwrap_or_default().contains(words), "{query}: {body}");
        }
        assert_eq!(raw(&app.db).await.count("submissions").await, before + 3);
    }

    async fn columns_are_mapped_by_hand_and_the_scope_is_needed(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let csv = "E-mail,Full Name,Employer,Tel\nivy@example.com,Ivy Ives,Initech,+44 20 7946 0000\n";
        let (code, answer) = import(&app, "form=contact&map=company%3DEmployer,phone%3DTel&consent=subscribed", csv).await;
        assert_eq!(code, 200, "{answer}");
        let leads = statuses(&app).await;
        let fields = &leads["ivy@example.com"].1;
        assert_eq!(fields["name"], "Ivy Ives");
        assert_eq!(fields["company"], "Initech");
        assert_eq!(fields["phone"], "+44 20 7946 0000");

        // The admin API's import takes the leads:import scope.
        let out = cli(&["keys", "create", "--name", "reader", "--scope", "leads:read"], &app.db.url());
        let key = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("inlet_")).unwrap().to_string();
        let resp = app.client.post(app.url("/v1/admin/leads/import?form=contact")).bearer_auth(&key).body(csv).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        let out = cli(&["keys", "create", "--name", "importer", "--scope", "leads:import"], &app.db.url());
        let key = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("inlet_")).unwrap().to_string();
        let resp = app.client.post(app.url("/v1/admin/leads/import?form=contact")).bearer_auth(&key).body(csv).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }

    async fn a_hundred_thousand_rows_import_in_one_pass(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let path = app.dir.path().join("big.csv");
        let mut text = String::from("Email,First Name,Last Name,Company Name,Unsubscribed from all email\n");
        for i in 0..100_000 {
            text.push_str(&format!("person{i}@example.com,P{i},L{i},Co {},{}\n", i % 100, i % 50 == 0));
        }
        std::fs::write(&path, text).unwrap();
        let out = cli(
            &["leads", "import", path.to_str().unwrap(), "--form", "contact", "--preset", "hubspot"],
            &app.db.url(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("100000 rows: 100000 new leads"), "{stderr}");
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(report.lines().count(), 100_001, "a report line per row, and the header");
        assert!(report.lines().nth(1).unwrap().starts_with("2,imported,unsubscribed,"));
        let mut db = raw(&app.db).await;
        assert_eq!(db.count("leads").await, 100_000);
        assert_eq!(db.count("suppressions").await, 2_000);
        assert_eq!(db.count("outbox").await, 0);
    }
}
