//! The synthetic cohort `make setup` generates (Synthea-style transaction
//! Bundles from a pinned generator and seed), as the tests read it.

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// The cohort's Bundle files, in name order.
pub fn files() -> Vec<PathBuf> {
    let dir = medrec_infra::emulator::repo_root().join(".cache/cohort/out/fhir");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (make setup generates the cohort)", dir.display()))
        .map(|f| f.expect("cohort file").path())
        .collect();
    files.sort();
    files
}

/// A cohort Bundle's entries.
pub fn entries(file: &PathBuf) -> Vec<Value> {
    let bundle: Value = serde_json::from_slice(&std::fs::read(file).expect("read bundle")).expect("bundle JSON");
    bundle["entry"].as_array().expect("entries").clone()
}

/// The `urn:uuid:` references a resource holds, anywhere in it.
pub fn links(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("reference", Value::String(r)) if r.starts_with("urn:uuid:") => out.push(r.clone()),
                    _ => links(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| links(v, out)),
        _ => {}
    }
}

/// Whether R4 refuses a resource of this cohort, decided without medrec's
/// validator: the generator's two known faults. `types` maps each fullUrl
/// to its resource type.
pub fn invalid_in_r4(r: &Value, types: &HashMap<&str, &str>) -> bool {
    let has = |k: &str| r.as_object().is_some_and(|o| o.keys().any(|key| key.starts_with(k)));
    match r["resourceType"].as_str().unwrap_or_default() {
        // Vital signs and US Core profiles (vs-2, us-core-2), which these
        // Observations claim, need a value or the reason for its absence.
        "Observation" => {
            r["meta"]["profile"].as_array().is_some_and(|p| !p.is_empty())
                && !["value", "dataAbsentReason", "component", "hasMember"].iter().any(|k| has(k))
        }
        // ExplanationOfBenefit.insurer is Reference(Organization): a
        // self-paying patient is no insurer.
        "ExplanationOfBenefit" => {
            r["insurer"]["reference"].as_str().and_then(|u| types.get(u)).is_some_and(|t| *t != "Organization")
        }
        _ => false,
    }
}

/// A DocumentReference keeps its attachments' bytes apart (sealed in S3,
/// the record pointing at them by `url`, with their size and digests): takes
/// out what differs between what was sent (`data`) and what is stored
/// (`url`, `size`, `hash`, the SHA-256 extension), in content order.
pub fn attachments_apart(r: &mut Value) -> Vec<String> {
    let mut taken = vec![];
    for c in r["content"].as_array_mut().into_iter().flatten() {
        let Some(a) = c["attachment"].as_object_mut() else { continue };
        if let Some(Value::String(v)) = a.remove("data").or_else(|| a.remove("url")) {
            taken.push(v);
        }
        a.remove("size");
        a.remove("hash");
        if let Some(ext) = a.get_mut("extension").and_then(Value::as_array_mut) {
            ext.retain(|e| !e["url"].as_str().is_some_and(|u| u.ends_with("sha256")));
            if ext.is_empty() {
                a.remove("extension");
            }
        }
    }
    taken
}
