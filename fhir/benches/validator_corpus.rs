//! Validation throughput over the official examples (parse + validate from
//! in-memory bytes) and the model's load time (the cold-start cost). Given
//! a Python with fhir.resources (`FHIR_RESOURCES_PYTHON`, set up as
//! infra/bench/fhir_resources_verdicts.py says), it then runs that validator
//! over the same files, back to back, prints the ratio of the two rates and
//! where the two validators disagree.
//!
//! `FHIR_RESOURCES_PYTHON=/tmp/fhirres/bin/python cargo bench -p medrec-fhir --bench validator_corpus`
//! (`MEDREC_FHIR_EXAMPLES=DIR` for another corpus)

use medrec_fhir::validator::Model;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() {
    let dir = std::env::var("MEDREC_FHIR_EXAMPLES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/fhir/hl7.fhir.r4.examples/package").into());
    let started = Instant::now();
    let model = Model::bundled();
    println!("model load (cold start): {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);

    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for f in std::fs::read_dir(&dir).expect("examples directory (make setup)") {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "package.json" {
            blobs.insert(name, std::fs::read(&p).unwrap());
        }
    }
    let bytes: usize = blobs.values().map(Vec::len).sum();
    let mut verdicts: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let rounds = 3;
    let started = Instant::now();
    for _ in 0..rounds {
        verdicts.clear();
        for (name, blob) in &blobs {
            let verdict = match serde_json::from_slice::<serde_json::Value>(blob) {
                Ok(v) => model
                    .validate(&v)
                    .into_iter()
                    .find(|i| i.is_error())
                    .map(|i| format!("{}: {}", i.expression.as_deref().unwrap_or("-"), i.diagnostics)),
                Err(e) => Some(e.to_string()),
            };
            verdicts.insert(name, verdict);
        }
    }
    let secs = started.elapsed().as_secs_f64() / rounds as f64;
    let valid = verdicts.values().filter(|v| v.is_none()).count();
    println!(
        "medrec: {} resources ({:.1} MB) in {secs:.2}s = {:.0}/s, {:.0} MB/s; {valid} valid",
        blobs.len(),
        bytes as f64 / 1e6,
        blobs.len() as f64 / secs,
        bytes as f64 / 1e6 / secs
    );

    let Ok(python) = std::env::var("FHIR_RESOURCES_PYTHON") else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/bench/fhir_resources_verdicts.py");
    let out = std::env::temp_dir().join("fhir-resources-verdicts.json");
    let run = std::process::Command::new(python).arg(script).arg(&dir).arg(&out).output().expect("runs python");
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "fhir.resources: {report}{}", String::from_utf8_lossy(&run.stderr));
    print!("{report}");
    let rate = |line: &str| line.split(" = ").nth(1)?.split('/').next()?.parse::<f64>().ok();
    let theirs = report.lines().find_map(rate).expect("fhir.resources prints its rate");
    println!("ratio: medrec {:.1}x fhir.resources", blobs.len() as f64 / secs / theirs);
    let other: BTreeMap<String, Option<String>> = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    let (mut only_medrec, mut only_other) = (vec![], vec![]);
    for (name, ours) in &verdicts {
        match (ours, other.get(*name).cloned().flatten()) {
            (Some(e), None) => only_medrec.push(format!("{name}: {e}")),
            (None, Some(e)) => only_other.push(format!("{name}: {e}")),
            _ => {}
        }
    }
    println!("rejected by medrec only: {}", only_medrec.len());
    for l in &only_medrec {
        println!("  {l}");
    }
    println!("rejected by fhir.resources only: {}", only_other.len());
    for l in &only_other {
        println!("  {l}");
    }
}
