//! Transaction Bundles against the local stack: one Patient and its
//! Observations (urn:uuid links), committed as one transaction of 10, 100,
//! 500 and 1,000 entries, versus posting the same resources one by one as
//! an integrator without transactions must (each reference rewritten once
//! its target exists); then 100 and 850 of those Observations amended in
//! one transaction versus one by one. Entries/s and AWS calls per entry,
//! side by side.
//! Run with `cargo bench -p medrec-e2e --bench transactions`.

use medrec_e2e::{canary_patient, Harness};
use serde_json::{json, Value};
use std::time::Instant;

fn observation(patient_ref: &str, i: usize) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": patient_ref}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 60 + i, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
}

fn transaction(tag: &str, size: usize) -> String {
    let p = "urn:uuid:5b7f0c1e-0000-4000-8000-000000000000";
    let mut entries =
        vec![json!({"fullUrl": p, "resource": canary_patient(tag), "request": {"method": "POST", "url": "Patient"}})];
    for i in 1..size {
        entries.push(json!({"resource": observation(p, i), "request": {"method": "POST", "url": "Observation"}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
}

/// Posts a transaction Bundle: its time, the AWS calls it made, the response.
async fn timed_transaction(h: &Harness, t: &str, body: &str) -> (f64, Calls, Value) {
    h.aws_calls().await;
    let started = Instant::now();
    let r = h.call("POST", "/fhir", Some(t), &[], Some(body)).await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(r.status, 200, "{}", &r.text()[..r.text().len().min(500)]);
    (took, h.aws_calls().await, r.json())
}

/// One line of the table: entries, each way's time and rate, the ratio,
/// AWS calls per entry.
fn row(size: usize, (tx_s, tx_calls): (f64, &Calls), (single_s, single_calls): (f64, &Calls)) {
    println!(
        "{size:>7}  {tx_s:>6.2}s {:>7.0}/s      {single_s:>6.2}s {:>7.0}/s    {:>4.2}×  {} | {}",
        size as f64 / tx_s,
        size as f64 / single_s,
        single_s / tx_s,
        per_entry(tx_calls, size),
        per_entry(single_calls, size),
    );
}

type Calls = std::collections::BTreeMap<String, u64>;

fn per_entry(counted: &Calls, entries: usize) -> String {
    let total: u64 = counted.values().sum();
    let each: Vec<String> = counted
        .iter()
        .map(|(k, v)| format!("{}={:.2}", k.rsplit('.').next().unwrap_or(k), *v as f64 / entries as f64))
        .collect();
    format!("{:.2} ({})", total as f64 / entries as f64, each.join(" "))
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-tx-bench");
    println!("entries  transaction            one by one           ratio  AWS calls/entry (transaction | one by one)");
    let (mut tx_ids, mut single_ids) = (vec![], vec![]);
    for size in [10, 100, 500, 1_000] {
        let body = transaction(&format!("txbench{size}"), size);
        let (tx_s, tx_calls, response) = timed_transaction(&h, &t, &body).await;
        tx_ids = ids(&response);

        single_ids.clear();
        let started = Instant::now();
        let patient = h.create_id(&t, &canary_patient(&format!("onebyone{size}"))).await;
        for i in 1..size {
            let r = h
                .call(
                    "POST",
                    "/fhir/Observation",
                    Some(&t),
                    &[],
                    Some(&observation(&format!("Patient/{patient}"), i).to_string()),
                )
                .await;
            assert_eq!(r.status, 201);
            single_ids.push(r.json()["id"].as_str().unwrap().to_owned());
        }
        let single_s = started.elapsed().as_secs_f64();
        let single_calls = h.aws_calls().await;
        row(size, (tx_s, &tx_calls), (single_s, &single_calls));
    }

    println!("updates  transaction            one by one           ratio  AWS calls/entry (transaction | one by one)");
    for (size, from) in [(100, 0), (850, 100)] {
        let entries: Vec<Value> = tx_ids[from..from + size].iter().map(|(id, o)| amended(id, o)).collect();
        let body = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string();
        let (tx_s, tx_calls, _) = timed_transaction(&h, &t, &body).await;

        let mut current = vec![];
        for id in &single_ids[from..from + size] {
            current.push((id, h.get(&format!("/fhir/Observation/{id}"), &t).await.json()));
        }
        h.aws_calls().await;
        let started = Instant::now();
        for (id, current) in current {
            let entry = amended(id, &current);
            let path = format!("/fhir/Observation/{id}");
            let r =
                h.call("PUT", &path, Some(&t), &[("if-match", "W/\"1\"")], Some(&entry["resource"].to_string())).await;
            assert_eq!(r.status, 200);
        }
        let single_s = started.elapsed().as_secs_f64();
        let single_calls = h.aws_calls().await;
        row(size, (tx_s, &tx_calls), (single_s, &single_calls));
    }
}

/// The Observations a transaction-response created, with their ids.
fn ids(response: &Value) -> Vec<(String, Value)> {
    response["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| (e["resource"]["id"].as_str().unwrap().to_owned(), e["resource"].clone()))
        .collect()
}

/// An entry amending Observation `id` (version 1) to `amended`.
fn amended(id: &str, current: &Value) -> Value {
    let mut o = current.clone();
    o.as_object_mut().unwrap().remove("meta");
    o["status"] = json!("amended");
    json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/{id}"), "ifMatch": "W/\"1\""}})
}
