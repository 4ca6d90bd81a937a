//! The FHIRPath engine alone, on the work the validator gives it: every R4
//! invariant declared on a resource's own elements, evaluated at each node
//! its path reaches, over the official examples. `infra/bench/fhirpath-js`
//! does the same work with npm `fhirpath` (fhirpath.js) for the ratio; both
//! print evaluations, outcomes and time, so the work can be checked equal.
//!
//! `cargo bench -p medrec-fhir --bench invariant_pass`

use medrec_fhir::fhirpath::{parse, Ast, Env, Item};
use medrec_fhir::validator::Model;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

struct Invariant {
    path: Ast,
    expression: Ast,
}

fn main() {
    let dir = std::env::var("MEDREC_FHIR_EXAMPLES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/fhir/hl7.fhir.r4.examples/package").into());
    let model = Model::bundled();
    let raw: Value = serde_json::from_str(include_str!("../src/r4-model.json")).unwrap();
    // Resource type -> its elements' invariants (path, expression).
    let mut invariants: BTreeMap<String, Vec<Invariant>> = BTreeMap::new();
    for (ty, elements) in raw["elements"].as_object().unwrap() {
        if !model.is_resource_type(ty) {
            continue;
        }
        for el in elements.as_array().unwrap() {
            for inv in el["inv"].as_array().into_iter().flatten() {
                let (Some(path), Some(expr)) = (el["p"].as_str(), inv[3].as_str()) else { continue };
                let (Ok(path), Ok(expression)) = (parse(path), parse(expr)) else { continue };
                invariants.entry(ty.clone()).or_default().push(Invariant { path, expression });
            }
        }
    }
    let mut corpus: Vec<Value> = vec![];
    for f in std::fs::read_dir(&dir).expect("examples directory (make setup)") {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") && !p.ends_with("package.json") {
            if let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&p).unwrap()) {
                if v["resourceType"].is_string() {
                    corpus.push(v);
                }
            }
        }
    }
    let rounds = 3;
    let (mut evaluations, mut trues, mut falses, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    for _ in 0..rounds {
        (evaluations, trues, falses, errors) = (0, 0, 0, 0);
        for resource in &corpus {
            let Some(root) = model.resource_node(resource) else { continue };
            let Some(list) = invariants.get(root.ty) else { continue };
            let env = Env::new(&model, root, root, root, false);
            for inv in list {
                let Ok(nodes) = env.evaluate(&inv.path) else { continue };
                for node in nodes {
                    // fhirpath.js hands back JSON, so only complex nodes
                    // are counted on both sides.
                    let Item::Node(node) = node else { continue };
                    if !node.v.is_object() {
                        continue;
                    }
                    evaluations += 1;
                    match env.at(node).evaluate(&inv.expression) {
                        Ok(items) if matches!(items.as_slice(), [Item::Bool(false)]) => falses += 1,
                        Ok(_) => trues += 1,
                        Err(_) => errors += 1,
                    }
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "medrec: {} resources, {evaluations} invariant evaluations ({trues} true or empty, {falses} false, {errors} errors) in {secs:.3}s = {:.0}/s",
        corpus.len(),
        evaluations as f64 / secs
    );
}
