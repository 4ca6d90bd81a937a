//! The audit trail read back over HTTP (the audit function): AuditEvent
//! search for auditors only, and the accounting of disclosures for a
//! scripted history of accesses, as a Bundle and as a report.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use serde_json::Value;

fn entries(b: &Value) -> Vec<&Value> {
    b["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).collect()
}

/// The latest instant a search answer records (the trail's own clock).
fn latest_recorded(bundle: &Value) -> String {
    entries(bundle).iter().filter_map(|e| e["recorded"].as_str()).max().unwrap().to_owned()
}

fn who(e: &Value) -> &str {
    e["agent"][0]["who"]["identifier"]["value"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_search_the_trail_and_patients_get_their_accounting() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let tag = unique_tag();
    let patient = h.create_id(&registrar, &canary_patient(&tag)).await;
    let other = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    // The scripted history: dr-a reads twice and searches, dr-b reads once,
    // dr-a reads the other patient once.
    let (dr_a, dr_b) = (h.token("clinician", "dr-a"), h.token("clinician", "dr-b"));
    let path = format!("/fhir/Patient/{patient}");
    for t in [&dr_a, &dr_a, &dr_b] {
        assert_eq!(h.get(&path, t).await.status, 200);
    }
    assert_eq!(h.get(&format!("/fhir/Observation?patient={patient}"), &dr_a).await.status, 200);
    assert_eq!(h.get(&format!("/fhir/Patient/{other}"), &dr_a).await.status, 200);

    let auditor = h.token("auditor", "auditor-1");
    let search = |q: String, t: String| {
        let h = &h;
        async move { h.get(&format!("/fhir/AuditEvent?{q}"), &t).await }
    };
    let all = search(format!("patient={patient}"), auditor.clone()).await;
    assert_eq!(all.status, 200, "{}", String::from_utf8_lossy(&all.body));
    let all = all.json();
    let events = entries(&all);
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"));
    assert!(events.iter().any(|e| who(e) == "front-desk"), "the create is there");
    let a = search(format!("patient={patient}&agent=dr-a&subtype=read"), auditor.clone()).await.json();
    assert_eq!(a["total"], 2, "{a}");
    assert!(entries(&a).iter().all(|e| who(e) == "dr-a"));
    let by_agent = search("agent=dr-a&subtype=read".into(), auditor.clone()).await.json();
    assert_eq!(by_agent["total"], 3, "dr-a's reads of both patients");
    let searches =
        search(format!("patient={patient}&agent=dr-a&subtype=search-type&outcome=0"), auditor.clone()).await.json();
    assert_eq!(searches["total"], 1);
    let none = search(format!("patient={patient}&date=lt2000-01-01"), auditor.clone()).await.json();
    assert_eq!(none["total"], 0);
    let entity = search(format!("patient={patient}&entity=Patient/{patient}&agent=dr-b"), auditor.clone()).await.json();
    assert_eq!(entity["total"], 1);
    // Paged a record at a time, with the cursor bound to the auditor: the
    // pages hold what one page holds, in the same order (each page reads
    // the index from its cursor on). The window leaves out this test's
    // own searches, which join the patient's trail as it pages.
    let until = format!("le{}", latest_recorded(&all));
    let ids = |b: &Value| entries(b).iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let whole = ids(&search(format!("patient={patient}&date={until}&_count=100"), auditor.clone()).await.json());
    assert_eq!(whole.len(), 5, "the create, three reads and a search: {whole:?}");
    let mut page = search(format!("patient={patient}&date={until}&_count=1"), auditor.clone()).await.json();
    let mut paged = ids(&page);
    while let Some(next) = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
        let next = next["url"].as_str().unwrap().to_owned();
        let auth = format!("Bearer {auditor}");
        page = h.client.send("GET", &next, &[("authorization", &auth)], None).await.unwrap().json();
        assert!(entries(&page).len() <= 1 && page.get("total").is_none(), "{page}");
        paged.extend(ids(&page));
    }
    assert_eq!(paged, whole);

    // Auditors only; a search names a patient or an agent; and it is audited.
    assert_eq!(search(format!("patient={patient}"), dr_a.clone()).await.status, 403);
    assert_eq!(search("subtype=read".into(), auditor.clone()).await.status, 400);
    assert_eq!(search(format!("patient={patient}&name=x"), auditor.clone()).await.status, 400);
    assert!(h.audit_events_of("auditor-1").await.iter().any(|e| e["subtype"][0]["code"] == "search-type"));

    // The accounting of disclosures: successful reads and searches only.
    let disclosures = format!("/fhir/Patient/{patient}/$disclosures");
    let bundle = h.get(&disclosures, &auditor).await;
    assert_eq!(bundle.status, 200, "{}", String::from_utf8_lossy(&bundle.body));
    let bundle = bundle.json();
    let mut agents: Vec<&str> = entries(&bundle).iter().map(|e| who(e)).filter(|w| w.starts_with("dr-")).collect();
    agents.sort();
    assert_eq!(agents, ["dr-a", "dr-a", "dr-a", "dr-b"], "three reads and a search");
    assert!(entries(&bundle).iter().all(|e| e["outcome"] == "0" && e["action"] != "C"));
    let own = h.token_with("patient", "the-patient", &["patient/*.read"], Some(&patient));
    assert_eq!(h.get(&disclosures, &own).await.status, 200, "patients get their own accounting");
    assert_eq!(h.get(&format!("/fhir/Patient/{other}/$disclosures"), &own).await.status, 404);
    assert_eq!(h.get(&disclosures, &dr_a).await.status, 403);
    let empty = h.get(&format!("{disclosures}?end=2000-01-01"), &auditor).await.json();
    assert_eq!(empty["total"], 0);

    let report = h.call("GET", &disclosures, Some(&own), &[("accept", "text/html")], None).await;
    assert_eq!(report.status, 200);
    assert!(report.header("content-type").unwrap().starts_with("text/html"));
    let page = String::from_utf8_lossy(&report.body);
    assert!(page.contains("Accounting of disclosures") && page.contains("<svg") && page.contains("dr-b"));
    assert!(!page.contains(&format!("Family{tag}")), "the report names no PHI");
    assert_eq!(h.get(&format!("{disclosures}?_format=html"), &auditor).await.status, 200);
    assert_eq!(h.get(&format!("{disclosures}?format=pdf"), &auditor).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_raise_one_security_alert_per_window() {
    let h = Harness::start_with(vec![("MEDREC_ALERT_FAILURES".into(), "3".into())]).await;
    let alerts = || async {
        h.scan(&h.table("OutboxTable"))
            .await
            .into_iter()
            .filter(|i| i["type"].as_s().is_ok_and(|t| t == "SecurityAlert"))
            .map(|i| serde_json::from_str::<Value>(i["detail"].as_s().unwrap()).unwrap())
            .collect::<Vec<_>>()
    };
    // Bad tokens from one address: failed authentications.
    for _ in 0..5 {
        assert_eq!(h.get("/fhir/Patient?family=x", "not-a-token").await.status, 401);
    }
    let raised = alerts().await;
    assert_eq!(raised.len(), 1, "one alert per window: {raised:?}");
    assert_eq!(raised[0]["kind"], "failed-authentications");
    assert!(raised[0]["agent"].as_str().unwrap().starts_with("ip:"));
    // A registrar probing clinical data: repeated denials, under their subject.
    let registrar = h.token("registrar", "front-desk-probe");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    for _ in 0..4 {
        assert_eq!(h.get(&format!("/fhir/Observation?patient={patient}"), &registrar).await.status, 403);
    }
    let raised = alerts().await;
    assert_eq!(raised.len(), 2, "{raised:?}");
    let denial = raised.iter().find(|a| a["kind"] == "repeated-denials").unwrap();
    assert_eq!(denial["agent"], "front-desk-probe");
    assert!(denial["failures"].as_u64().unwrap() >= 3);
    // A clinician's successful reads raise nothing.
    let t = h.token("clinician", "dr-fine");
    for _ in 0..4 {
        assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &t).await.status, 200);
    }
    assert_eq!(alerts().await.len(), 2);
}
