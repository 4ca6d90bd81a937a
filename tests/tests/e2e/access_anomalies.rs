//! Access-anomaly detection end to end: accesses made over HTTP, the
//! detector function reading the audit chains in DynamoDB and the records
//! under their KMS-wrapped keys, its alerts on the outbox and on the
//! auditors' list, each raised once and without PHI.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use serde_json::{json, Value};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detector_function_raises_each_anomaly_once_from_the_trail_and_the_records() {
    let h = Harness::start().await;
    let tag = unique_tag();
    let registrar = h.token("registrar", "front-desk");
    let family = format!("Surname{tag}");
    let practitioner = json!({"resourceType": "Practitioner", "name": [{"family": family, "given": ["Ada"]}]});
    let me = h.create_id(&registrar, &practitioner).await;
    let snoop = h.token_as("clinician", &format!("dr-snoop-{tag}"), &format!("Practitioner/{me}"));

    let mut celebrity = canary_patient(&unique_tag());
    celebrity["meta"] =
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CEL"}]});
    let celebrity = h.create_id(&registrar, &celebrity).await;
    let mut namesake = canary_patient(&unique_tag());
    namesake["name"][0]["family"] = json!(family.to_uppercase());
    let namesake = h.create_id(&registrar, &namesake).await;
    let treated = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let encounter = json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{treated}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{me}")}}]});
    h.create_id(&h.token("clinician", "dr-care"), &encounter).await;
    for p in [&celebrity, &namesake, &treated] {
        assert_eq!(h.get(&format!("/fhir/Patient/{p}"), &snoop).await.status, 200);
    }

    let app = Arc::new(medrec_audit_anomalies::boot(&h.settings("AuditAnomaliesFunction", &[])).await.unwrap());
    let now = time::OffsetDateTime::now_utc();
    let window = json!({
        "since": medrec_edge::fhir::instant(now - time::Duration::hours(1)),
        "until": medrec_edge::fhir::instant(now + time::Duration::minutes(1)),
    });
    let run = |payload: Value| {
        let app = app.clone();
        async move { app.handle(lambda_http::LambdaEvent::new(payload, lambda_http::Context::default())).await }
    };
    let first = run(window.clone()).await.unwrap();
    let mine: Vec<(String, u64)> = first["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["agent"] == format!("dr-snoop-{tag}"))
        .map(|a| (a["detector"].as_str().unwrap().to_owned(), a["patients"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, u64)> =
        [("no-relationship", 2), ("flagged-patient", 1), ("same-surname", 1)].map(|(d, n)| (d.to_owned(), n)).into();
    assert_eq!(mine, expected, "{first}");
    assert!(first["compartments"].as_u64().unwrap() >= 3, "the records were asked: {first}");

    let alerts: Vec<Value> = h
        .scan(&h.table("OutboxTable"))
        .await
        .into_iter()
        .filter(|i| i["type"].as_s().is_ok_and(|t| t == "SecurityAlert"))
        .map(|i| serde_json::from_str::<Value>(i["detail"].as_s().unwrap()).unwrap())
        .filter(|d| d["kind"] == "access-anomaly" && d["agent"] == format!("dr-snoop-{tag}"))
        .collect();
    assert_eq!(alerts.len(), 3);
    let flagged = alerts.iter().find(|a| a["detector"] == "flagged-patient").unwrap();
    assert_eq!(flagged["patients"], json!([celebrity]));
    let text = serde_json::to_string(&alerts).unwrap();
    assert!(!text.contains(&treated), "the treated patient is no anomaly");
    for phi in [family.as_str(), &family.to_uppercase(), "Given", "Family", "1961"] {
        assert!(!text.contains(phi), "{phi} in an alert");
    }

    let auditor = h.token("auditor", "auditor-1");
    let list = h.get("/fhir/AuditEvent?agent=medrec-anomaly-detector", &auditor).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let named: Vec<&str> = list["entry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["resource"]["entity"].as_array().unwrap())
        .filter_map(|en| en["what"]["reference"].as_str())
        .collect();
    assert!(
        named.contains(&"urn:medrec:anomaly:same-surname") && named.contains(&format!("Patient/{namesake}").as_str())
    );

    let again = run(window).await.unwrap();
    assert_eq!(again["raised"], 0, "raised once: {again}");
    assert!(run(json!({"since": "2026-12-01T00:00:00Z"})).await.is_err(), "half a window is refused");
}
