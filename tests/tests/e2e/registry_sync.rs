//! The registry sync end to end on the local stack: an immunization
//! recorded through the API reaches the (simulated) registry once, through
//! outbox, bus, queue and the registry-sync function, as a public-health
//! disclosure that is consent-gated and audited; `GET /health` shows the
//! dependencies and the registry breakers.

use medrec_e2e::{canary_patient, canary_strings, logs, unique_tag, Harness};
use medrec_infra::registry_sim::RegistrySimulator;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn immunization(patient: &str) -> Value {
    json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": "2026-11-20T09:00:00Z", "primarySource": true, "lotNumber": "LOT-77",
        "doseQuantity": {"value": 0.3, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"}})
}

async fn doses_arrive(sim: &RegistrySimulator, patient: &str, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = sim.doses_of(patient).len();
        if n >= want || Instant::now() > deadline {
            // Anything more would be a duplicate: give it a moment to show.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return sim.doses_of(patient).len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_immunizations_reach_the_registry_once_as_audited_disclosures() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-iis");
    let tag = unique_tag();
    let patient = h.create_id(&t, &canary_patient(&tag)).await;
    let r = h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&immunization(&patient).to_string())).await;
    assert_eq!(r.status, 201);
    let immunization_id = r.json()["id"].as_str().unwrap().to_owned();
    let (primary, secondary) = &h.stack.registry;
    assert_eq!(doses_arrive(primary, &patient, 1).await, 1, "submitted once");
    let dose = &primary.doses_of(&patient)[0];
    assert_eq!((dose.cvx.as_str(), dose.date.as_str(), dose.lot.as_deref()), ("208", "20261120", Some("LOT-77")));
    assert_eq!(secondary.stats().requests, 0, "the primary was up: no failover");

    // Audited: the reads for public health and the transmission, which the
    // accounting of disclosures lists.
    let events = h.audit_events().await;
    let mine: Vec<&Value> = events.iter().filter(|e| e.to_string().contains(&immunization_id)).collect();
    let transmit = mine.iter().find(|e| e["type"]["code"] == "110106").expect("transmission audited");
    assert_eq!(transmit["outcome"], "0");
    assert!(transmit.to_string().contains("system:registry-sync") && transmit.to_string().contains("PUBHLTH"));
    let auditor = h.token("auditor", "privacy-officer");
    let disclosures = h.get(&format!("/fhir/Patient/{patient}/$disclosures"), &auditor).await.json();
    assert!(disclosures.to_string().contains("system:registry-sync"), "{disclosures}");

    // A duplicate delivery of the event does not reach the registry again.
    let before = primary.stats();
    let outbox = h.scan(&h.table("OutboxTable")).await;
    let recorded = outbox.iter().find(|i| i["type"].as_s().unwrap() == "ImmunizationRecorded").unwrap();
    let envelope = json!({"schemaVersion": 1, "id": recorded["id"].as_s().unwrap(), "type": "ImmunizationRecorded",
        "aggregate": patient, "sequence": recorded["sk"].as_s().unwrap(), "at": "2026-11-23T00:00:00.000Z",
        "data": serde_json::from_str::<Value>(recorded["detail"].as_s().unwrap()).unwrap()});
    let body = json!({"source": "medrec", "detail-type": "ImmunizationRecorded", "detail": envelope}).to_string();
    let sqs = &h.stack.clients.sqs;
    sqs.send_message().queue_url(h.table("RegistrySyncQueue")).message_body(body).send().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(primary.stats(), before, "a duplicate delivery sends nothing");

    // Health: every dependency answers, the breakers are closed; no detail.
    let health = h.call("GET", "/health", None, &[], None).await;
    assert_eq!(health.status, 200);
    let report = health.json();
    assert_eq!(report["status"], "pass", "{report}");
    assert_eq!(report["checks"]["registry"]["breakers"]["primary"], "closed");
    assert!(!report.to_string().contains("127.0.0.1") && !report.to_string().contains("secret"));

    // The registry got PHI (that is the disclosure); medrec's logs and
    // audit trail did not.
    for s in canary_strings(&tag) {
        assert!(!logs().text().contains(&s), "{s} in the logs");
        assert!(!events.iter().any(|e| e.to_string().contains(&s)), "{s} in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_refusing_public_health_use_stops_the_submission() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-iis");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let consent = medrec_e2e::consent(
        &patient,
        json!({"type": "permit", "provision": [{"type": "deny",
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PUBHLTH"}]}]}),
    );
    let registrar = h.token("registrar", "front-desk");
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&consent.to_string())).await.status, 201);
    let r = h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&immunization(&patient).to_string())).await;
    assert_eq!(r.status, 201);
    // The event is processed (and not retried), but nothing is disclosed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let denied = loop {
        let events = h.audit_events().await;
        let denied = events.iter().any(|e| {
            e.to_string().contains("system:registry-sync") && e["outcome"] != "0" && e.to_string().contains(&patient)
        });
        if denied || Instant::now() > deadline {
            break denied;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(denied, "the refused read is audited");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.stack.registry.0.doses_of(&patient).is_empty());
    assert_eq!(h.stack.registry.0.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_imports_new_doses_flags_conflicts_and_is_idempotent() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-iis");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let r = h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&immunization(&patient).to_string())).await;
    assert_eq!(r.status, 201);
    let primary = &h.stack.registry.0;
    assert_eq!(doses_arrive(primary, &patient, 1).await, 1);
    // Another provider reported a flu shot; the registry's copy of today's
    // dose names another lot.
    let dose = |id: &str, cvx: &str, date: &str, lot: &str| medrec_edge::registry::RegistryDose {
        registry_id: id.into(),
        date: date.into(),
        cvx: cvx.into(),
        lot: Some(lot.into()),
        completion: "CP".into(),
    };
    primary.seed(&patient, dose("IRIS-SEED-1", "141", "20250110", "FLU-1"));
    primary.seed(&patient, dose("IRIS-SEED-2", "208", "20261120", "OTHER-LOT"));

    let app = std::sync::Arc::new(
        medrec_registry_reconcile::boot(&h.settings("RegistryReconcileFunction", &[])).await.unwrap(),
    );
    let run = || {
        let app = app.clone();
        async move {
            let event = lambda_http::LambdaEvent::new(json!({}), lambda_http::Context::default());
            app.handle(event).await.unwrap()
        }
    };
    let first = run().await;
    assert_eq!(
        (
            first["patients"].as_u64(),
            first["imported"].as_u64(),
            first["matched"].as_u64(),
            first["conflicts"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{first}"
    );
    let search = h.get(&format!("/fhir/Immunization?patient={patient}"), &t).await.json();
    let entries = search["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let imported = entries.iter().map(|e| &e["resource"]).find(|r| r["primarySource"] == false).unwrap();
    assert_eq!(imported["vaccineCode"]["coding"][0]["code"], "141");
    assert_eq!(imported["occurrenceDateTime"], "2025-01-10");
    assert_eq!(imported["identifier"][0]["value"], "IRIS-SEED-1");
    assert_eq!(imported["reportOrigin"]["coding"][0]["code"], "record");
    let ours = entries.iter().map(|e| &e["resource"]).find(|r| r["primarySource"] == true).unwrap();
    assert_eq!(ours["lotNumber"], "LOT-77", "the conflict did not overwrite medrec's record");

    // Nothing imported goes back to the registry; a second run changes
    // nothing and flags the conflict no second time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(primary.stats().recorded, 1);
    let second = run().await;
    assert_eq!((second["imported"].as_u64(), second["matched"].as_u64()), (Some(0), Some(2)), "{second}");
    let conflicts = h
        .scan(&h.table("OutboxTable"))
        .await
        .into_iter()
        .filter(|i| i["type"].as_s().unwrap() == "RegistryConflictDetected")
        .count();
    assert_eq!(conflicts, 1);
    assert_eq!(h.get(&format!("/fhir/Immunization?patient={patient}"), &t).await.json()["total"], 2);
}
