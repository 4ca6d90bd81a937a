//! The official FHIR R4 examples (npm hl7.fhir.r4.examples 4.0.1, fetched by
//! `make setup` into .cache/) validate with zero errors for the resource types
//! medrec serves, except examples known to be invalid themselves (listed with
//! the reason). The count over the whole package is printed for the record.

use medrec_fhir::validator::model;
use std::path::PathBuf;

const SERVED: &[&str] = &[
    "Patient",
    "Immunization",
    "Observation",
    "DocumentReference",
    "Binary",
    "Consent",
    "Provenance",
    "AuditEvent",
    "Bundle",
];

/// Examples that break the R4 rules themselves, with the reason.
const KNOWN_INVALID: &[(&str, &str)] = &[
    (
        "Observation-clinical-gender.json",
        "performer references an Encounter; R4 Observation.performer allows Practitioner, PractitionerRole, Organization, CareTeam, Patient and RelatedPerson only",
    ),
    (
        "Observation-f202.json",
        "a body temperature (LOINC 8310-5) with no effective[x]: R4 says vital-signs Observations SHALL meet the vital-signs profile, which requires it",
    ),
    (
        "Bundle-dataelements.json",
        "bdl-7: seven fullUrls appear several times in this collection bundle with no versionId to tell them apart",
    ),
    (
        "Bundle-lri-example.json",
        "fullUrl .../Observation/lri-gramstain1 holds the Observation gramstain1: R4 Bundle.entry.fullUrl says a RESTful fullUrl's id SHALL end with Resource.id",
    ),
    (
        "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json",
        "fullUrl .../Patient/pat12 holds the Patient pat2: a RESTful fullUrl's id SHALL end with Resource.id",
    ),
    (
        "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json",
        "fullUrl .../Patient/pat12 holds the Patient pat2: a RESTful fullUrl's id SHALL end with Resource.id",
    ),
    (
        "Bundle-valuesets.json",
        "the SNOMED CT CodeSystem in it declares three properties with the same placeholder URI 'http://.........?'",
    ),
];

fn corpus() -> PathBuf {
    std::env::var("MEDREC_FHIR_EXAMPLES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/fhir/hl7.fhir.r4.examples/package")
    })
}

#[test]
fn official_examples_validate() {
    let dir = corpus();
    let files = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", dir.display()));
    let (mut total, mut clean, mut served, mut failures) = (0, 0, 0, vec![]);
    for f in files.map(|f| f.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "package.json" || name.starts_with('.') {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&f).unwrap()) else { continue };
        let Some(rt) = v["resourceType"].as_str().map(str::to_owned) else { continue };
        total += 1;
        let issues: Vec<_> = model().validate(&v).into_iter().filter(|i| i.is_error()).collect();
        if issues.is_empty() {
            clean += 1;
        } else if !SERVED.contains(&rt.as_str()) {
            let first = &issues[0];
            println!("invalid: {name}: {} ({})", first.expression.clone().unwrap_or_default(), first.diagnostics);
        }
        if SERVED.contains(&rt.as_str()) {
            served += 1;
            if !issues.is_empty() && !KNOWN_INVALID.iter().any(|(n, _)| *n == name) {
                failures.push(format!(
                    "{name}: {}",
                    issues
                        .iter()
                        .take(3)
                        .map(|i| format!("{} ({})", i.expression.clone().unwrap_or_default(), i.diagnostics))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    println!(
        "official examples: {clean}/{total} valid overall; {served} of the served types checked, {} failing",
        failures.len()
    );
    assert!(served > 100, "the corpus is there");
    assert!(failures.is_empty(), "{} examples fail:\n{}", failures.len(), failures.join("\n"));
}

/// Every R4 invariant is either native or parsed by the FHIRPath engine, and
/// none of those exercised by the examples fails to evaluate.
#[test]
fn invariants_are_covered_and_evaluate_on_the_corpus() {
    let c = model().invariant_coverage();
    assert!(c.unparsed.is_empty(), "outside the FHIRPath subset: {:?}", c.unparsed);
    let (mut exercised, mut errors) = (std::collections::BTreeSet::new(), vec![]);
    for f in std::fs::read_dir(corpus()).expect("run `make setup`").map(|f| f.unwrap().path()) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&f).unwrap()) else { continue };
        for (key, outcome) in model().invariant_outcomes(&v) {
            if let Err(e) = outcome {
                errors.push(format!("{key} on {}: {}", f.display(), e.0));
            }
            exercised.insert(key);
        }
    }
    println!(
        "invariants: {} in R4, {} native, {} by FHIRPath, {} of those exercised by the examples",
        c.total,
        c.native,
        c.fhirpath,
        exercised.len()
    );
    assert!(exercised.len() > 200, "the corpus exercises the engine");
    assert!(errors.is_empty(), "{} evaluations failed:\n{}", errors.len(), errors[..errors.len().min(20)].join("\n"));
}
