//! Rules R4 states in the text of the terminology and conformance resources
//! (CodeSystem, ValueSet, SearchParameter) rather than as invariants, and
//! that HL7's validator enforces: a definition that breaks them cannot be
//! used as it reads (a supplement that is not one, a value set including a
//! code system it cannot name, a property with two meanings).

use super::snomed;
use super::{items, Expr, Model};
use crate::fhirpath;
use crate::outcome::Issue;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The R4 resources identified by a canonical URL (`url`, `version`).
const CANONICAL: [&str; 28] = [
    "ActivityDefinition",
    "CapabilityStatement",
    "ChargeItemDefinition",
    "CodeSystem",
    "CompartmentDefinition",
    "ConceptMap",
    "EffectEvidenceSynthesis",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "GraphDefinition",
    "ImplementationGuide",
    "Library",
    "Measure",
    "MessageDefinition",
    "OperationDefinition",
    "PlanDefinition",
    "Questionnaire",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "RiskEvidenceSynthesis",
    "SearchParameter",
    "StructureDefinition",
    "StructureMap",
    "TerminologyCapabilities",
    "TestScript",
    "ValueSet",
];

/// The rules of a resource of type `rt`.
pub(super) fn check(model: &Model, rt: &str, obj: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    // R4 resource.html#canonical: a canonical URL is absolute, contained or not.
    if let Some(url) = obj.get("url").and_then(Value::as_str) {
        if CANONICAL.contains(&rt) && !super::is_absolute_url(url) {
            error(issues, Expr::Key(expr, "url").render(), "a canonical URL must be absolute");
        }
    }
    match rt {
        "CodeSystem" => code_system(obj, expr, issues),
        "ValueSet" => value_set(obj, expr, issues),
        "SearchParameter" => search_parameter(model, obj, expr, issues),
        "CapabilityStatement" => capability_statement(model, obj, expr, issues),
        "StructureDefinition" => structure_definition(model, obj, expr, issues),
        _ => {}
    }
}

fn error(issues: &mut Vec<Issue>, at: String, msg: impl Into<String>) {
    issues.push(Issue::error("business-rule", msg).at(at));
}

/// R4 codesystem.html: a supplement's `content` is `supplement`; property
/// codes and URIs are unique; a concept's property value has the type the
/// property declares.
fn code_system(cs: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    if cs.contains_key("supplements") && cs.get("content").and_then(Value::as_str) != Some("supplement") {
        error(
            issues,
            Expr::Key(expr, "content").render(),
            "a CodeSystem that supplements another has content 'supplement'",
        );
    }
    let properties = items(cs.get("property"));
    let (mut codes, mut uris) = (HashSet::new(), HashSet::new());
    for (i, p) in properties.iter().enumerate() {
        let at = || Expr::Index(&Expr::Key(expr, "property"), i).render();
        if p["code"].as_str().is_some_and(|c| !codes.insert(c)) {
            error(issues, at(), "a property with this code is already defined");
        }
        if p["uri"].as_str().is_some_and(|u| !uris.insert(u)) {
            error(issues, at(), "a property with this URI is already defined");
        }
    }
    concept_properties(items(cs.get("concept")), properties, &Expr::Key(expr, "concept"), issues);
}

fn concept_properties(concepts: &[Value], declared: &[Value], expr: &Expr, issues: &mut Vec<Issue>) {
    for (i, c) in concepts.iter().enumerate() {
        let here = Expr::Index(expr, i);
        for (j, p) in items(c.get("property")).iter().enumerate() {
            let Some(ty) = declared.iter().find(|d| d["code"] == p["code"]).and_then(|d| d["type"].as_str()) else {
                continue;
            };
            let given = p.as_object().and_then(|o| o.keys().find_map(|k| k.strip_prefix("value")));
            if given.is_some_and(|g| !g.eq_ignore_ascii_case(ty)) {
                let at = Expr::Index(&Expr::Key(&here, "property"), j).render();
                error(issues, at, format!("this property is declared with the type {ty}"));
            }
        }
        concept_properties(items(c.get("concept")), declared, &Expr::Key(&here, "concept"), issues);
    }
}

/// R4 valueset.html: `compose.include.system` is a code system's canonical
/// URL (absolute; a contained code system is named by its URL, not `#id`);
/// SNOMED CT concepts and filters are well-formed; a filter value given by
/// an expression (tools `valueset-parameter`) is FHIRPath over declared
/// parameters.
fn value_set(vs: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    let parameters: HashSet<&str> = items(vs.get("extension"))
        .iter()
        .filter(|e| e["url"] == "http://hl7.org/fhir/tools/StructureDefinition/valueset-parameter")
        .flat_map(|e| items(e.get("extension")))
        .filter(|e| e["url"] == "name")
        .filter_map(|e| e["valueCode"].as_str())
        .collect();
    let compose = Expr::Key(expr, "compose");
    for part in ["include", "exclude"] {
        for (i, inc) in items(vs.get("compose").and_then(|c| c.get(part))).iter().enumerate() {
            let here = Expr::Index(&Expr::Key(&compose, part), i);
            let system = inc["system"].as_str();
            if system.is_some_and(|s| !super::is_absolute_url(s)) {
                error(
                    issues,
                    Expr::Key(&here, "system").render(),
                    "system must be a code system's absolute canonical URL",
                );
            }
            let snomed = system == Some(snomed::SYSTEM);
            for (j, c) in items(inc.get("concept")).iter().enumerate() {
                if snomed && c["code"].as_str().is_some_and(|code| !snomed::is_code(code)) {
                    let at = Expr::Key(&Expr::Index(&Expr::Key(&here, "concept"), j), "code").render();
                    error(issues, at, "not a well-formed SNOMED CT concept id");
                }
            }
            for (j, f) in items(inc.get("filter")).iter().enumerate() {
                let at = Expr::Index(&Expr::Key(&here, "filter"), j);
                if snomed {
                    snomed_filter(f, &at, issues);
                }
                filter_expressions(f, &parameters, &at, issues);
            }
        }
    }
}

fn snomed_filter(f: &Value, at: &Expr, issues: &mut Vec<Issue>) {
    let (Some(property), Some(op), Some(value)) = (f["property"].as_str(), f["op"].as_str(), f["value"].as_str())
    else {
        return;
    };
    let ok = match (property, op) {
        ("constraint", "=") => snomed::is_ecl(value),
        ("concept", "in" | "not-in") => value.split(',').all(|v| snomed::is_concept_id(v.trim())),
        ("concept", _) => snomed::is_concept_id(value),
        _ => true,
    };
    if !ok {
        error(
            issues,
            Expr::Key(at, "value").render(),
            format!("not a valid SNOMED CT value for the filter on {property}"),
        );
    }
}

fn filter_expressions(f: &Value, parameters: &HashSet<&str>, at: &Expr, issues: &mut Vec<Issue>) {
    for e in items(f["_value"].get("extension")).iter().filter(|e| e.get("valueExpression").is_some()) {
        let value = &e["valueExpression"];
        let at = Expr::Key(&Expr::Key(at, "_value"), "extension").render();
        if value["language"] != "text/fhirpath" {
            error(issues, at, "a filter value expression is FHIRPath (text/fhirpath)");
            continue;
        }
        let Some(text) = value["expression"].as_str() else { continue };
        if fhirpath::parse(text).is_err() {
            error(issues, at, "the filter value expression is not valid FHIRPath");
        } else if variables(text).any(|v| !parameters.contains(v)) {
            error(issues, at, "the filter value expression names a parameter the ValueSet does not declare");
        }
    }
}

/// The `%name` variables an expression reads.
fn variables(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('%').map(move |(i, _)| {
        let rest = &text[i + 1..];
        &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len())]
    })
}

/// R4 searchparameter.html: a composite parameter combines two or more
/// components; one derived from an R4 parameter keeps its type and applies
/// to its bases only.
fn search_parameter(model: &Model, sp: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    let ty = sp.get("type").and_then(Value::as_str);
    if ty == Some("composite") && items(sp.get("component")).len() < 2 {
        error(issues, Expr::Key(expr, "component").render(), "a composite SearchParameter has two or more components");
    }
    let Some((core_type, core_bases)) =
        sp.get("derivedFrom").and_then(Value::as_str).and_then(|u| model.core_search_parameter(u))
    else {
        return;
    };
    if ty.is_some_and(|t| t != core_type) {
        error(
            issues,
            Expr::Key(expr, "type").render(),
            format!("the parameter it derives from has the type {core_type}"),
        );
    }
    let any = core_bases.iter().any(|b| b == "Resource" || b == "DomainResource");
    for (i, base) in items(sp.get("base")).iter().enumerate() {
        if !any && base.as_str().is_some_and(|b| !core_bases.iter().any(|c| c == b)) {
            let at = Expr::Index(&Expr::Key(expr, "base"), i).render();
            error(issues, at, "not a base of the parameter it derives from");
        }
    }
}

/// R4 capabilitystatement.html: a search parameter that names an R4
/// definition has that definition's type.
fn capability_statement(model: &Model, cs: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    for (r, rest) in items(cs.get("rest")).iter().enumerate() {
        let rest_at = Expr::Index(&Expr::Key(expr, "rest"), r);
        for (j, res) in items(rest.get("resource")).iter().enumerate() {
            let res_at = Expr::Index(&Expr::Key(&rest_at, "resource"), j);
            for (k, p) in items(res.get("searchParam")).iter().enumerate() {
                let core = p["definition"].as_str().and_then(|u| model.core_search_parameter(u));
                if let (Some((core_type, _)), Some(ty)) = (core, p["type"].as_str()) {
                    if ty != core_type {
                        let at = Expr::Index(&Expr::Key(&res_at, "searchParam"), k).render();
                        error(issues, at, format!("the definition it names has the type {core_type}"));
                    }
                }
            }
        }
    }
}

/// R4 structuredefinition.html: a constraint's differential describes
/// elements of the type it constrains (a snapshot cannot be generated
/// otherwise): `Observation.valueBla` names nothing.
fn structure_definition(model: &Model, sd: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    if sd.get("derivation").and_then(Value::as_str) != Some("constraint") {
        return;
    }
    let differential = Expr::Key(&Expr::Key(expr, "differential"), "element");
    for (i, el) in items(sd.get("differential").and_then(|d| d.get("element"))).iter().enumerate() {
        if el["path"].as_str().and_then(|p| model.path_exists(p)) == Some(false) {
            let at = Expr::Key(&Expr::Index(&differential, i), "path").render();
            error(issues, at, "no element of the constrained type has this path");
        }
    }
}
