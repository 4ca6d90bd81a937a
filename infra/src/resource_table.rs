//! `medrec gen-resource-table`: the resource table medrec serves, generated
//! from the official R4 definitions (fhir/src/resource-table.json):
//! every type of the R4 Patient compartment (`compartmentdefinition-patient`)
//! with the element that places a record in its patient's compartment, and
//! each type's search parameters (`search-parameters.json`) with their
//! FHIRPath expressions reduced to element paths the server walks.
//!
//! A parameter whose expression uses more FHIRPath than paths, choice types
//! and `resolve() is T` (a `where` on a value, an extension, a composite) is
//! left out, never served half-right; the table lists what was left out.
//!
//! Beside the compartment, the directory: the shared resources a record
//! references (who treated, where, with what), in no patient's compartment.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Compartment types not served as compartment records, and why.
const NOT_COMPARTMENT_RECORDS: [(&str, &str); 3] = [
    ("AuditEvent", "medrec's AuditEvents are its own audit trail, written by the server and searched by auditors"),
    ("Group", "a cohort names many patients, and a record lives under one patient's key"),
    (
        "Person",
        "it links one person's records across patients (a master patient index), which no one compartment holds",
    ),
];

/// The Patient's search parameters its blind index serves: a patient is
/// found across compartments, so by keyed tokens, never by decrypting every
/// patient. Its other parameters are left out.
const PATIENT_INDEXED: [&str; 6] = ["birthdate", "family", "gender", "given", "identifier", "name"];

/// The shared resources records reference, served from the directory (no
/// patient's compartment, staff-readable, not consent-gated). Device is
/// here because R4 puts it in no Patient compartment.
const DIRECTORY: [&str; 8] = [
    "Device",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Medication",
    "Organization",
    "Practitioner",
    "PractitionerRole",
];

/// The search parameter types the server evaluates.
const SEARCHABLE: [&str; 7] = ["token", "string", "date", "reference", "quantity", "uri", "number"];

fn load(dir: &Path, name: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
}

/// An element of a resource's snapshot: cardinality, types and, for
/// references, the types they may target.
struct Element {
    min: u64,
    many: bool,
    types: Vec<String>,
    targets: BTreeSet<String>,
}

/// Every resource's and data type's elements by full path
/// (`Condition.onset[x]`, `Attachment.contentType`).
fn elements(definitions: &Path) -> Result<BTreeMap<String, Element>, String> {
    let mut out = BTreeMap::new();
    let (resources, types) = (load(definitions, "profiles-resources.json")?, load(definitions, "profiles-types.json")?);
    let bundles = [resources, types];
    for sd in bundles.iter().flat_map(|b| b["entry"].as_array().into_iter().flatten()).map(|e| &e["resource"]) {
        let kind = sd["kind"].as_str().unwrap_or_default();
        // Base definitions only: a constraining profile reuses their paths.
        let base = sd["derivation"] != "constraint";
        if sd["resourceType"] != "StructureDefinition" || !base || !matches!(kind, "resource" | "complex-type") {
            continue;
        }
        for el in sd["snapshot"]["element"].as_array().into_iter().flatten() {
            let Some(path) = el["path"].as_str() else { continue };
            let types = el["type"].as_array().into_iter().flatten();
            let targets = types
                .clone()
                .flat_map(|t| t["targetProfile"].as_array().into_iter().flatten())
                .filter_map(|p| p.as_str()?.rsplit('/').next().map(str::to_owned))
                .collect();
            out.insert(
                path.to_owned(),
                Element {
                    min: el["min"].as_u64().unwrap_or(0),
                    many: el["max"] != "1" && el["max"] != "0",
                    types: types.filter_map(|t| t["code"].as_str().map(str::to_owned)).collect(),
                    targets,
                },
            );
        }
    }
    Ok(out)
}

/// The top-level parts of a FHIRPath union (`a | (b | c)` is two parts).
fn union_parts(expr: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (vec![], 0i32, 0);
    for (i, c) in expr.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth == 0 => {
                parts.push(expr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(expr[start..].trim());
    parts
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// One part of an expression as paths on `ty`: JSON element names from the
/// resource root, the leaf's FHIR type, and the type a reference must
/// target (`resolve() is T`); a choice not narrowed to one type is one path
/// per type. None for anything else.
fn reduce(ty: &str, kind: &str, part: &str, els: &BTreeMap<String, Element>) -> Option<Vec<Value>> {
    let mut p = part.trim();
    while p.starts_with('(') && p.ends_with(')') {
        p = p[1..p.len() - 1].trim();
    }
    let rest = p.strip_prefix(ty)?.strip_prefix('.')?;
    let (rest, target) = match rest.split_once(".where(resolve() is ") {
        Some((path, t)) => (path, Some(t.strip_suffix(')')?.to_owned())),
        None => (rest, None),
    };
    // A choice narrowed to one of its types: `onset.ofType(dateTime)`,
    // `value.as(Quantity)`, `value as Quantity`.
    let (rest, choice) = if let Some((path, t)) = rest.split_once(".ofType(").or_else(|| rest.split_once(".as(")) {
        (path, Some(t.strip_suffix(')')?))
    } else if let Some((path, t)) = rest.split_once(" as ") {
        (path, Some(t.trim()))
    } else {
        (rest, None)
    };
    let steps: Vec<&str> = rest.split('.').collect();
    if steps.iter().any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return None;
    }
    let mut path: Vec<String> = vec![];
    let mut full = ty.to_owned();
    for (i, step) in steps.iter().enumerate() {
        // Past a data type's element, the path goes on in the data type.
        let here = els.get(&full).filter(|el| el.types.len() == 1 && el.types[0] != "BackboneElement");
        let owner = match here {
            Some(el) if els.contains_key(&format!("{}.{step}", el.types[0])) => el.types[0].clone(),
            _ => full.clone(),
        };
        if els.contains_key(&format!("{owner}.{step}")) {
            full = format!("{owner}.{step}");
            path.push(step.to_string());
            continue;
        }
        let el = els.get(&format!("{owner}.{step}[x]"))?;
        if i + 1 != steps.len() {
            return None;
        }
        let chosen: Vec<&String> = match choice {
            Some(t) => vec![el.types.iter().find(|x| *x == t)?],
            None => el.types.iter().filter(|t| fits(kind, t)).collect(),
        };
        if chosen.is_empty() {
            return None;
        }
        let paths = chosen.into_iter().map(|t| {
            let mut p = path.clone();
            p.push(format!("{step}{}", upper_first(t)));
            with_target(json!({"path": p, "of": t}), target.as_deref())
        });
        return Some(paths.collect());
    }
    let el = els.get(&full)?;
    if choice.is_some() || el.types.len() != 1 {
        return None;
    }
    Some(vec![with_target(json!({"path": path, "of": el.types[0]}), target.as_deref())])
}

/// Whether a choice's type is one a parameter of `kind` compares: an
/// unnarrowed `Immunization.occurrence` is searched as a date by its
/// dateTime, not its free-text string.
fn fits(kind: &str, ty: &str) -> bool {
    match kind {
        "date" => matches!(ty, "date" | "dateTime" | "instant" | "Period" | "Timing"),
        "quantity" => matches!(ty, "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "Money" | "SampledData"),
        "number" => matches!(ty, "decimal" | "integer" | "positiveInt" | "unsignedInt"),
        "string" => matches!(ty, "string" | "markdown" | "HumanName" | "Address"),
        "reference" => matches!(ty, "Reference" | "canonical" | "uri"),
        "uri" => matches!(ty, "uri" | "url" | "canonical" | "oid" | "uuid"),
        _ => true,
    }
}

fn with_target(mut path: Value, target: Option<&str>) -> Value {
    if let Some(t) = target {
        path["target"] = json!(t);
    }
    path
}

/// The element that places a record of `ty` in its patient's compartment:
/// of the type's compartment parameters, one whose expression is a single
/// reference element that may hold a Patient, preferring one holding one
/// value, then a required one (Coverage: `beneficiary`, not the optional
/// `policyHolder`). A list (Provenance `target`, Appointment
/// `participant.actor`) places the record with the one patient its Patient
/// references name.
fn compartment_element(
    ty: &str,
    params: &[Value],
    compartment: &[String],
    els: &BTreeMap<String, Element>,
) -> Option<(String, bool)> {
    let candidates: Vec<(String, bool, bool)> = compartment
        .iter()
        .filter_map(|name| {
            let p = params.iter().find(|p| p["name"] == name.as_str())?;
            let paths = p["paths"].as_array()?;
            let first = paths.first()?;
            let steps: Vec<&str> = first["path"].as_array()?.iter().filter_map(Value::as_str).collect();
            // One reference element, at the top or in a backbone element
            // (Appointment.participant.actor).
            let one = paths.iter().all(|x| x["path"] == first["path"]) && (1..=2).contains(&steps.len());
            if !one || first["of"] != "Reference" {
                return None;
            }
            let element = steps.join(".");
            let el = els.get(&format!("{ty}.{element}"))?;
            // The backbone element holding it, if any, decides too.
            let outer = match steps.as_slice() {
                [outer, _] => Some(els.get(&format!("{ty}.{outer}"))?),
                _ => None,
            };
            let many = el.many || outer.is_some_and(|o| o.many);
            let required = el.min > 0 && outer.is_none_or(|o| o.min > 0);
            // Reference(Any) may hold a Patient too (Composition.subject).
            let patient = el.targets.contains("Patient") || el.targets.contains("Resource");
            patient.then_some((element, !many, required))
        })
        .collect();
    // The first of the best: single before list, then required before optional.
    candidates
        .into_iter()
        .min_by_key(|(_, single, required)| (!single, !required))
        .map(|(element, _, required)| (element, required))
}

/// The resource table: served compartment types, the directory types, and
/// what is left out.
pub fn generate(definitions: &Path) -> Result<Value, String> {
    let els = elements(definitions)?;
    let compartment = load(definitions, "compartmentdefinition-patient.json")?;
    let search = load(definitions, "search-parameters.json")?;
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut left_out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sp in search["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]) {
        let (Some(code), Some(kind)) = (sp["code"].as_str(), sp["type"].as_str()) else { continue };
        let expr = sp["expression"].as_str().unwrap_or_default();
        for base in sp["base"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            // `_id`, `_lastUpdated`... are the server's own, on every type.
            if code.starts_with('_') || base == "Resource" || base == "DomainResource" {
                continue;
            }
            let parts: Vec<&str> = union_parts(expr)
                .into_iter()
                .filter(|p| p.trim_start_matches('(').starts_with(&format!("{base}.")))
                .collect();
            let paths: Option<Vec<Value>> =
                parts.iter().map(|p| reduce(base, kind, p, &els)).collect::<Option<Vec<_>>>().map(|v| v.concat());
            match paths.filter(|p| !p.is_empty() && SEARCHABLE.contains(&kind)) {
                Some(paths) => by_type.entry(base.to_owned()).or_default().push(json!({
                    "name": code, "type": kind, "paths": paths,
                })),
                None => left_out.entry(base.to_owned()).or_default().push(code.to_owned()),
            }
        }
    }
    let mut types = vec![];
    let mut not_served = serde_json::Map::new();
    for r in compartment["resource"].as_array().into_iter().flatten() {
        let Some(ty) = r["code"].as_str() else { continue };
        let names: Vec<String> =
            r["param"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_owned)).collect();
        // The compartment's owner is a row of its own (below).
        if names.is_empty() || ty == "Patient" {
            continue;
        }
        if let Some((_, why)) = NOT_COMPARTMENT_RECORDS.iter().find(|(t, _)| *t == ty) {
            not_served.insert(ty.to_owned(), json!(why));
            continue;
        }
        let mut params = by_type.remove(ty).unwrap_or_default();
        params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let Some((element, required)) = compartment_element(ty, &params, &names, &els) else {
            not_served.insert(ty.to_owned(), json!("no reference element places it in one patient's compartment"));
            continue;
        };
        types.push(json!({
            "type": ty,
            "compartment": element,
            "compartmentRequired": required,
            "params": params,
            "leftOut": left_out.remove(ty).unwrap_or_default(),
        }));
    }
    let mut directory = vec![];
    for ty in DIRECTORY {
        if types.iter().any(|t| t["type"] == ty) {
            return Err(format!("{ty} is in the Patient compartment: it cannot be a directory type"));
        }
        let mut params = by_type.remove(ty).unwrap_or_default();
        params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        directory.push(json!({"type": ty, "params": params, "leftOut": left_out.remove(ty).unwrap_or_default()}));
    }
    let (mut params, unindexed): (Vec<Value>, Vec<Value>) = by_type
        .remove("Patient")
        .unwrap_or_default()
        .into_iter()
        .partition(|p| PATIENT_INDEXED.iter().any(|n| p["name"] == *n));
    params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut patient_left_out = left_out.remove("Patient").unwrap_or_default();
    patient_left_out.extend(unindexed.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)));
    patient_left_out.sort();
    Ok(json!({
        "source": format!("{} (compartmentdefinition-patient.json, search-parameters.json)", crate::fhir_model::DEFINITIONS_PACKAGE),
        "patient": {"type": "Patient", "params": params, "leftOut": patient_left_out},
        "types": types,
        "directory": directory,
        "notServed": not_served,
    }))
}
