//! A mutation corpus derived from the official examples of the served types:
//! each mutation breaks one rule of the R4 specification, and the validator
//! must catch every one. The detection rate per kind is printed.

use medrec_fhir::validator::{model, ElementInfo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

const SERVED: &[&str] =
    &["Patient", "Immunization", "Observation", "DocumentReference", "Consent", "Provenance", "AuditEvent"];

fn corpus() -> PathBuf {
    std::env::var("MEDREC_FHIR_EXAMPLES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/fhir/hl7.fhir.r4.examples/package")
    })
}

fn json_key(el: &ElementInfo, resource: &Value) -> Option<(String, String)> {
    match el.name.strip_suffix("[x]") {
        None => resource.get(&el.name).map(|_| (el.name.clone(), el.types.first().cloned().unwrap_or_default())),
        Some(stem) => el.types.iter().find_map(|t| {
            let key = format!("{stem}{}{}", t[..1].to_ascii_uppercase(), &t[1..]);
            resource.get(&key).map(|_| (key, t.clone()))
        }),
    }
}

/// Every single-rule mutation of `resource` that this test knows how to make,
/// as (kind, mutated resource).
fn mutations(resource: &Value) -> Vec<(&'static str, Value)> {
    let rt = resource["resourceType"].as_str().unwrap();
    let mut out = vec![];
    let mut with = |kind, f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut m = resource.clone();
        f(m.as_object_mut().unwrap());
        out.push((kind, m));
    };
    with("unknown element", &|m| {
        m.insert("favouriteColour".into(), json!("red"));
    });
    if resource.get("contained").is_none() {
        with("broken invariant (dom-3: unreferenced contained)", &|m| {
            m.insert("contained".into(), json!([{"resourceType": "Organization", "id": "orphan", "name": "x"}]));
        });
    }
    match rt {
        "Observation" if resource.as_object().unwrap().keys().any(|k| k.starts_with("value")) => {
            with("FHIRPath invariant (obs-6: value and dataAbsentReason)", &|m| {
                m.insert("dataAbsentReason".into(), json!({"text": "unknown"}));
            })
        }
        "Patient" => with("FHIRPath invariant (pat-1: empty contact)", &|m| {
            m.insert("contact".into(), json!([{"gender": "female"}]));
        }),
        "Consent" => with("FHIRPath invariant (ppc-1: no policy)", &|m| {
            m.remove("policy");
            m.remove("policyRule");
        }),
        "Immunization" => with("FHIRPath invariant (imm-1: education names nothing)", &|m| {
            m.insert("education".into(), json!([{"presentationDate": "2020-01-01"}]));
        }),
        "AuditEvent" => with("FHIRPath invariant (sev-1: entity name and query)", &|m| {
            m.insert("entity".into(), json!([{"name": "n", "query": "cXVlcnk="}]));
        }),
        _ => {}
    }
    for el in model().children_of(rt) {
        let Some((key, ty)) = json_key(&el, resource) else { continue };
        match ty.as_str() {
            "Period" if !el.many => with("FHIRPath invariant (per-1: end before start)", &|m| {
                m.insert(key.clone(), json!({"start": "2020-02-01", "end": "2020-01-01"}));
            }),
            "Quantity" if !el.many => with("FHIRPath invariant (qty-3: code without system)", &|m| {
                m.insert(key.clone(), json!({"value": 1, "code": "mg"}));
            }),
            _ => {}
        }
        if el.min > 0 && !el.name.ends_with("[x]") {
            with("required element removed", &|m| {
                m.remove(&key);
                m.remove(&format!("_{key}"));
            });
        }
        let value = resource[&key].clone();
        if el.many {
            with("repeating element not an array", &|m| {
                m.insert(key.clone(), value[0].clone());
            });
        } else {
            with("single element given as an array", &|m| {
                m.insert(key.clone(), json!([value.clone()]));
            });
        }
        let first = if el.many { value[0].clone() } else { value.clone() };
        let set = |m: &mut serde_json::Map<String, Value>, v: Value| {
            m.insert(key.clone(), if el.many { json!([v]) } else { v });
        };
        match ty.as_str() {
            "date" | "dateTime" | "instant" if first.is_string() => with("bad date", &|m| set(m, json!("2020-13-45"))),
            "code" if el.enumerable_binding => {
                with("code outside a required binding", &|m| set(m, json!("not-a-code")))
            }
            "Reference" if first.get("reference").is_some() => {
                with("bad reference", &|m| set(m, json!({"reference": "not a reference"})))
            }
            _ => {}
        }
        if first.is_string() || first.is_boolean() {
            with("wrong type", &|m| set(m, json!({"nested": true})));
        } else if first.is_object() {
            with("wrong type", &|m| set(m, json!(42)));
            with("empty element", &|m| set(m, json!({})));
        }
        if first.is_string() {
            with("empty element", &|m| set(m, json!("")));
        }
    }
    out
}

#[test]
fn every_mutation_kind_is_caught() {
    let dir = corpus();
    let mut rates: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = vec![];
    for f in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", dir.display())) {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !SERVED.iter().any(|t| name.starts_with(&format!("{t}-"))) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else { continue };
        let has_errors = |v: &Value| model().validate(v).iter().any(|i| i.is_error());
        if !SERVED.contains(&v["resourceType"].as_str().unwrap_or("")) || has_errors(&v) {
            continue;
        }
        for (kind, mutated) in mutations(&v) {
            let entry = rates.entry(kind).or_default();
            entry.1 += 1;
            if !has_errors(&mutated) {
                missed.push(format!("{kind}: {name}"));
            } else {
                entry.0 += 1;
            }
        }
    }
    for (kind, (caught, total)) in &rates {
        println!("{kind:<36} {caught}/{total} caught");
    }
    assert!(rates.values().map(|r| r.1).sum::<usize>() > 1000, "the corpus is there");
    assert!(
        missed.is_empty(),
        "{} mutations not caught:\n{}",
        missed.len(),
        missed.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
