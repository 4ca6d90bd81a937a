//! AWS calls per request and latency over the local stack, counted where they
//! land (the emulator's per-operation counter), not inferred. Run with
//! `cargo bench -p medrec-e2e --bench aws_calls`.

use medrec_e2e::{canary_patient, Harness};
use std::collections::BTreeMap;
use std::time::Instant;

/// The calls counted since the last call of this function (it resets).
fn show(label: &str, counts: &BTreeMap<String, u64>) {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))).collect();
    println!("{label:<44} {}", if parts.is_empty() { "none".into() } else { parts.join(" ") });
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-bench");

    h.aws_calls().await;
    let id = h.create_id(&t, &canary_patient("bench")).await;
    show("first create of an instance", &h.aws_calls().await);
    h.create_id(&t, &canary_patient("bench2")).await;
    show("create, warm instance", &h.aws_calls().await);
    h.get(&format!("/fhir/Patient/{id}"), &t).await;
    show("read, warm key cache", &h.aws_calls().await);
    h.get("/fhir/Patient?family=Familybench", &t).await;
    show("search, 1 result, warm", &h.aws_calls().await);

    // Clinical records and consent (functions clinical and consent).
    let obs = serde_json::json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{id}")}, "effectiveDateTime": "2026-11-23T08:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let r = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await;
    let obs_id = r.json()["id"].as_str().unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&r.body))).to_owned();
    show("Observation create, warm", &h.aws_calls().await);
    h.get(&format!("/fhir/Observation/{obs_id}"), &t).await;
    show("Observation read, no consent on file", &h.aws_calls().await);
    let patch = r#"[{"op": "add", "path": "/note", "value": [{"text": "rechecked"}]}]"#;
    let headers = [("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")];
    let r = h.call("PATCH", &format!("/fhir/Observation/{obs_id}"), Some(&t), &headers, Some(patch)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    show("Observation PATCH", &h.aws_calls().await);
    h.get(&format!("/fhir/Observation?patient={id}&code=8867-4"), &t).await;
    show("Observation search in the compartment", &h.aws_calls().await);
    let consent = serde_json::json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{id}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "permit"}
    });
    // Consents are recorded by the consent authority (registrar), not by clinicians.
    let registrar = h.token("registrar", "reg-bench");
    let r = h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&consent.to_string())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    h.aws_calls().await;
    h.get(&format!("/fhir/Observation/{obs_id}"), &t).await;
    show("Observation read, one consent on file", &h.aws_calls().await);
    h.get(&format!("/fhir/Patient/{id}/$everything"), &t).await;
    show("Patient $everything (3 resources)", &h.aws_calls().await);

    // Documents: inline create (one sealed object) and Binary read.
    let note = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"bench note");
    let doc = serde_json::json!({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{id}")},
        "content": [{"attachment": {"contentType": "text/plain", "data": note}}]
    });
    h.aws_calls().await;
    let r = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&doc.to_string())).await;
    show("DocumentReference create, inline", &h.aws_calls().await);
    let binary = format!("/fhir/{}", r.json()["content"][0]["attachment"]["url"].as_str().unwrap());
    h.get(&binary, &t).await;
    show("Binary read (whole document)", &h.aws_calls().await);

    // A second function instance on the same resources: a cold start.
    let app = medrec_patients::boot(&h.settings("PatientsFunction", &[])).await.unwrap();
    show("cold start (root secret)", &h.aws_calls().await);
    let parts = http::Request::builder()
        .method("GET")
        .uri(format!("/fhir/Patient/{id}"))
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let event = medrec_infra::gateway::api_gateway_v2_event(
        &parts,
        b"",
        "GET /fhir/Patient/{id}",
        [("id".to_owned(), id.clone())].into(),
        "127.0.0.1:1".parse().unwrap(),
    );
    let resp = medrec_edge::lambda::handle(&app, lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!(resp.status(), 200);
    show("read on a cold instance (key not cached)", &h.aws_calls().await);

    // Latency over HTTP through gateway, handler and emulator, sequential.
    let n = 200;
    let started = Instant::now();
    let mut ids = vec![];
    for i in 0..n {
        ids.push(h.create_id(&t, &canary_patient(&format!("lat{i}"))).await);
    }
    let create_ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let started = Instant::now();
    for id in &ids {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let read_ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!(
        "mean latency over the local stack (n={n}, sequential): create {create_ms:.1} ms, warm read {read_ms:.1} ms"
    );
}
