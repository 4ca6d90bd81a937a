//! Loading whole records: HL7's R4 examples of every record type (57 types)
//! placed in each of several patients' compartments, one create at a time,
//! then compartment searches and `$everything` of a patient. Reports
//! resources/s, AWS calls per resource by type, search latencies, and
//! `$everything` in pages of 1,000 beside pages of 20 (the old page bound)
//! in the same run. Run with `cargo bench -p medrec-e2e --bench record_load`.

use medrec_e2e::{canary_patient, next_path, placed_in, record_examples, Harness};
use std::collections::BTreeMap;
use std::time::Instant;

const PATIENTS: usize = 5;

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `$everything` of a patient, following next links: (pages, resources, seconds).
async fn everything(h: &Harness, token: &str, patient: &str, count: usize) -> (usize, usize, f64) {
    let started = Instant::now();
    let mut path = format!("/fhir/Patient/{patient}/$everything?_count={count}");
    let (mut pages, mut resources) = (0, 0);
    loop {
        let r = h.get(&path, token).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let b = r.json();
        pages += 1;
        resources += b["entry"].as_array().map_or(0, Vec::len);
        match next_path(&b) {
            Some(next) => path = next,
            None => break,
        }
    }
    (pages, resources, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-record-load");
    let examples = record_examples();
    let mut patients = vec![];
    for i in 0..PATIENTS {
        patients.push(h.create_id(&t, &canary_patient(&format!("recordload{i}"))).await);
    }
    h.aws_calls().await;
    let (mut created, mut refused) = (0usize, 0usize);
    let mut calls_by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let started = Instant::now();
    for p in &patients {
        for (_, def, example) in &examples {
            let body = placed_in(def, example.clone(), p).to_string();
            let r = h.call("POST", &format!("/fhir/{}", def.name), Some(&t), &[], Some(&body)).await;
            let calls: u64 = h.aws_calls().await.values().sum();
            if r.status == 201 {
                created += 1;
                let e = calls_by_type.entry(def.name.clone()).or_default();
                e.0 += 1;
                e.1 += calls;
            } else {
                refused += 1;
            }
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "loaded {created} resources of {} types into {PATIENTS} patients in {load_s:.1} s: {:.1} resources/s ({refused} refused)",
        calls_by_type.len(),
        created as f64 / load_s
    );
    let per: Vec<String> =
        calls_by_type.iter().map(|(ty, (n, c))| format!("{ty} {:.1}", *c as f64 / *n as f64)).collect();
    println!("AWS calls per created resource: {}", per.join(", "));

    let p = &patients[0];
    let searches = [
        format!("/fhir/Observation?patient={p}&code=http://loinc.org|85354-9"),
        format!("/fhir/Observation?patient={p}&date=ge2010&_sort=-date"),
        format!("/fhir/Condition?patient={p}&clinical-status=active"),
        format!("/fhir/MedicationRequest?patient={p}&status=active"),
        format!("/fhir/Encounter?patient={p}&_count=100"),
    ];
    for q in &searches {
        let mut lat = vec![];
        for _ in 0..5 {
            let s = Instant::now();
            let r = h.get(q, &t).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            lat.push(s.elapsed().as_secs_f64() * 1e3);
        }
        println!("search {:<70} median {:.1} ms", q.replace(p.as_str(), "{p}"), median_ms(lat));
    }
    for count in [20, 1000, 20, 1000] {
        let (pages, resources, s) = everything(&h, &t, p, count).await;
        println!("$everything _count={count:<5} {resources} resources in {pages} pages: {s:.2} s");
    }
}
