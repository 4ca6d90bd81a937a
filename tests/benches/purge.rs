//! Purge throughput over the local stack, both kinds: crypto-shredding
//! patients past retention (each with observations and a document) and
//! purging deleted resources of a retained patient. Items/s and AWS calls
//! per item, where an item is a patient shredded or a resource purged.
//! Run with `cargo bench -p medrec-e2e --bench purge`.

use base64::Engine;
use medrec_e2e::{canary_patient, Harness};
use medrec_edge::retention::Retention;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;

const PATIENTS: usize = 40;
const RECORDS_PER_PATIENT: usize = 5;
const DELETED_RESOURCES: usize = 150;

fn per_item(counted: &BTreeMap<String, u64>, items: usize) -> String {
    let per: Vec<String> = counted
        .iter()
        .map(|(k, v)| format!("{}={:.2}", k.rsplit('.').next().unwrap_or(k), *v as f64 / items as f64))
        .collect();
    per.join(" ")
}

async fn create(h: &Harness, token: &str, path: &str, body: serde_json::Value) -> String {
    let r = h.call("POST", path, Some(token), &[], Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

fn observation(patient: &str) -> serde_json::Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2016-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-bench");
    let admin = h.token("admin", "admin-bench");
    for i in 0..PATIENTS {
        let p = h.create_id(&t, &canary_patient(&format!("purgebench{i}"))).await;
        for _ in 0..RECORDS_PER_PATIENT {
            create(&h, &t, "/fhir/Observation", observation(&p)).await;
        }
        let data = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 16 * 1024]);
        let doc = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": format!("Patient/{p}")},
            "content": [{"attachment": {"contentType": "text/plain", "data": data}}]});
        create(&h, &t, "/fhir/DocumentReference", doc).await;
    }
    let target = h.verify_target();
    let ctx =
        medrec_infra::purge::context(&target, &h.table("OutboxTable"), &h.table("DocumentsBucket")).await.unwrap();
    let purger = ctx.purger();
    let retention = Retention::default();
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 11);

    h.aws_calls().await;
    let started = Instant::now();
    let plan = purger.plan(&retention, later).await.unwrap();
    let plan_s = started.elapsed().as_secs_f64();
    let plan_calls = h.aws_calls().await;
    let started = Instant::now();
    let r = purger.run(&retention, later, usize::MAX, "bench").await.unwrap();
    let run_s = started.elapsed().as_secs_f64();
    let run_calls = h.aws_calls().await;
    assert_eq!((plan.patients.len(), r.shredded), (PATIENTS, PATIENTS));
    let records = PATIENTS * (RECORDS_PER_PATIENT + 2);
    println!("crypto-shred: {PATIENTS} patients ({records} records, {} document objects)", r.objects_deleted);
    println!(
        "  plan {plan_s:.2}s: {:.0} patients/s; AWS calls per patient: {}",
        PATIENTS as f64 / plan_s,
        per_item(&plan_calls, PATIENTS)
    );
    println!(
        "  run  {run_s:.2}s: {:.0} patients/s ({:.0} records/s); AWS calls per patient (plan included): {}",
        PATIENTS as f64 / run_s,
        records as f64 / run_s,
        per_item(&run_calls, PATIENTS)
    );

    let p = h.create_id(&t, &canary_patient("purgebenchkept")).await;
    for _ in 0..DELETED_RESOURCES {
        let id = create(&h, &t, "/fhir/Observation", observation(&p)).await;
        assert_eq!(h.call("DELETE", &format!("/fhir/Observation/{id}"), Some(&admin), &[], None).await.status, 204);
        h.backdate(&p, "Observation", &id, &[1, 2], "2012-01-01T00:00:00.000Z").await;
    }
    let now = time::OffsetDateTime::now_utc();
    h.aws_calls().await;
    let started = Instant::now();
    let r = purger.run(&retention, now, usize::MAX, "bench").await.unwrap();
    let run_s = started.elapsed().as_secs_f64();
    let run_calls = h.aws_calls().await;
    assert_eq!((r.resources, r.versions_deleted), (DELETED_RESOURCES, 2 * DELETED_RESOURCES));
    println!(
        "per-resource: {DELETED_RESOURCES} deleted resources ({} versions) of a retained patient",
        r.versions_deleted
    );
    println!(
        "  run  {run_s:.2}s: {:.0} resources/s; AWS calls per resource (plan included): {}",
        DELETED_RESOURCES as f64 / run_s,
        per_item(&run_calls, DELETED_RESOURCES)
    );
}
