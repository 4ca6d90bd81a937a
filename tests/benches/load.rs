//! A bounded load test on loopback: a mixed EHR workload (40 % compartment
//! searches, 30 % reads, 20 % creates, 10 % read-then-update) from 1, 2, 4
//! and 8 concurrent users, a fixed number of requests each round. Reports
//! errors (must be none), p50/p99 per kind, throughput, and the AWS calls
//! the emulator served per second: where throughput stops growing with
//! users while calls per second stay flat, the emulator is the ceiling.
//! Run with `cargo bench -p medrec-e2e --bench load`.

use medrec_e2e::{canary_patient, Harness};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUESTS_PER_ROUND: usize = 400;
const PATIENTS: usize = 20;

fn observation(patient: &str) -> serde_json::Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let h = Arc::new(Harness::start().await);
    let t = Arc::new(h.token("clinician", "dr-load"));
    let mut patients = vec![];
    for i in 0..PATIENTS {
        let p = h.create_id(&t, &canary_patient(&format!("load{i}"))).await;
        for _ in 0..3 {
            let r = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&observation(&p).to_string())).await;
            assert_eq!(r.status, 201);
        }
        patients.push(p);
    }
    let patients = Arc::new(patients);
    println!("users  req/s  AWS calls/s  errors  p50/p99 ms: search  read  create  update");
    for users in [1usize, 2, 4, 8] {
        h.aws_calls().await;
        let started = Instant::now();
        let mut tasks = vec![];
        for u in 0..users {
            let (h, t, patients) = (h.clone(), t.clone(), patients.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat: [Vec<Duration>; 4] = Default::default();
                let mut errors = 0;
                for i in (u..REQUESTS_PER_ROUND).step_by(users) {
                    let p = &patients[i % patients.len()];
                    let kind = match i % 10 {
                        0..=3 => 0,
                        4..=6 => 1,
                        7 | 8 => 2,
                        _ => 3,
                    };
                    let began = Instant::now();
                    let ok = match kind {
                        0 => h.get(&format!("/fhir/Observation?patient={p}&_count=10"), &t).await.status == 200,
                        1 => h.get(&format!("/fhir/Patient/{p}"), &t).await.status == 200,
                        2 => {
                            let body = observation(p).to_string();
                            h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&body)).await.status == 201
                        }
                        _ => {
                            let current = h.get(&format!("/fhir/Patient/{p}"), &t).await.json();
                            let version = current["meta"]["versionId"].as_str().unwrap_or("0").to_owned();
                            let etag = format!("W/\"{version}\"");
                            let r = h
                                .call(
                                    "PUT",
                                    &format!("/fhir/Patient/{p}"),
                                    Some(&t),
                                    &[("if-match", &etag)],
                                    Some(&current.to_string()),
                                )
                                .await;
                            // Another user may have updated it first: that
                            // 412 is the protocol working, not an error.
                            r.status == 200 || r.status == 412
                        }
                    };
                    lat[kind].push(began.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        let mut lat: [Vec<Duration>; 4] = Default::default();
        let mut errors = 0;
        for task in tasks {
            let (l, e) = task.await.unwrap();
            for (all, mine) in lat.iter_mut().zip(l) {
                all.extend(mine);
            }
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let calls: u64 = h.aws_calls().await.values().sum();
        let mut cells = vec![];
        for l in lat.iter_mut() {
            l.sort();
            cells.push(format!("{:.0}/{:.0}", percentile(l, 0.5), percentile(l, 0.99)));
        }
        println!(
            "{users:>5}  {:>5.0}  {:>11.0}  {errors:>6}  {}",
            REQUESTS_PER_ROUND as f64 / elapsed,
            calls as f64 / elapsed,
            cells.join("  ")
        );
        assert_eq!(errors, 0, "errors under load");
    }
}
