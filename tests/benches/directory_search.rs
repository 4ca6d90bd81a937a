//! Directory search over the local stack: what a search costs as the
//! directory grows, through its blind index (identifier, name prefix,
//! reference) and through the walk of every entry (a parameter the index
//! does not hold), with the AWS calls each made, counted by the emulator.
//! Run with `cargo bench -p medrec-e2e --bench directory_search`
//! (`MEDREC_BENCH_DIRECTORY=N` entries, 1,000 by default).

use medrec_e2e::Harness;
use serde_json::json;
use std::time::{Duration, Instant};

const RUNS: usize = 9;
const FAMILIES: [&str; 8] = ["Adams", "Baker", "Clark", "Davis", "Evans", "Foster", "Garcia", "Hughes"];

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MEDREC_BENCH_DIRECTORY").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let h = Harness::start().await;
    let registrar = h.token("registrar", "bench-directory");
    let t = h.token("clinician", "dr-bench-directory");
    let started = Instant::now();
    let mut ids = vec![];
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let creates = chunk.iter().map(|i| {
            let (h, registrar) = (&h, &registrar);
            let body = json!({"resourceType": "Practitioner",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("{:010}", 1_000_000 + i)}],
                "name": [{"family": format!("{}{i}", FAMILIES[i % FAMILIES.len()]), "given": ["Sam"]}],
                "address": [{"city": format!("City{}", i % 50)}]});
            async move { h.create_id(registrar, &body).await }
        });
        ids.extend(futures_util::future::join_all(creates).await);
    }
    let loaded = started.elapsed();
    println!("{n} Practitioners loaded in {:.1} s ({:.0}/s)", loaded.as_secs_f64(), n as f64 / loaded.as_secs_f64());
    println!("{:<58} {:>9} {:>7}  AWS calls", "first page (_count=20)", "median", "found");
    let target = format!("{:010}", 1_000_000 + n / 2);
    for (label, query) in [
        ("read by id", format!("/fhir/Practitioner/{}", ids[n / 2])),
        (
            "identifier (index: 1 entry)",
            format!("/fhir/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{target}"),
        ),
        ("family=Cla (index: 1/8 of entries)", "/fhir/Practitioner?family=Cla".to_owned()),
        ("family=Clark3&given=Sam (index, then tested)", "/fhir/Practitioner?family=Clark3&given=Sam".to_owned()),
        ("no parameter (the type's entries, in order)", "/fhir/Practitioner".to_owned()),
        ("address-city=City7 (walks every entry, bounded)", "/fhir/Practitioner?address-city=City7".to_owned()),
        ("identifier & _sort=family", format!("/fhir/Practitioner?identifier={target}&_sort=family")),
    ] {
        let mut times = vec![];
        let mut found = 0;
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let r = h.get(&query, &t).await;
            times.push(t0.elapsed());
            assert_eq!(r.status, 200, "{query}: {}", r.text());
            let body = r.json();
            found = body["entry"]
                .as_array()
                .map_or(1, |e| e.iter().filter(|e| e["resource"]["resourceType"] == "Practitioner").count());
        }
        h.aws_calls().await;
        h.get(&query, &t).await;
        let calls = h.aws_calls().await;
        let calls: Vec<String> =
            calls.iter().map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))).collect();
        times.sort();
        let median: Duration = times[RUNS / 2];
        println!("{label:<58} {:>7.1}ms {found:>7}  {}", median.as_secs_f64() * 1e3, calls.join(" "));
    }
}
