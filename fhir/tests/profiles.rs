//! Profiles: the core vital-signs profiles of R4 and US Core 6.1.0 Patient,
//! Immunization and Observation, checked on the official examples and on
//! mutations of them that each break one rule of the profile.

use medrec_fhir::outcome::Issue;
use medrec_fhir::validator::model;
use serde_json::{json, Value};
use std::path::PathBuf;

const CORE: &str = "http://hl7.org/fhir/StructureDefinition/";
const US_CORE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/";

fn example(name: &str) -> Value {
    let dir = std::env::var("MEDREC_FHIR_EXAMPLES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/fhir/hl7.fhir.r4.examples/package")
    });
    let text = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e} (run `make setup`)"));
    serde_json::from_slice(&text).unwrap()
}

fn errors(resource: &Value, profile: &str) -> Vec<Issue> {
    let issues = model().validate_against(resource, profile).unwrap_or_else(|| panic!("{profile} is known"));
    issues.into_iter().filter(Issue::is_error).collect()
}

fn describe(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("{} @ {}", i.diagnostics, i.expression.clone().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

const VITALS: [(&str, &str); 12] = [
    ("Observation-heart-rate.json", "heartrate"),
    ("Observation-blood-pressure.json", "bp"),
    ("Observation-body-height.json", "bodyheight"),
    ("Observation-respiratory-rate.json", "resprate"),
    ("Observation-body-temperature.json", "bodytemp"),
    ("Observation-bmi.json", "bmi"),
    ("Observation-head-circumference.json", "headcircum"),
    ("Observation-satO2.json", "oxygensat"),
    ("Observation-vitals-panel.json", "vitalspanel"),
    ("Observation-blood-pressure.json", "us-core-blood-pressure"),
    ("Observation-heart-rate.json", "us-core-vital-signs"),
    ("Immunization-example.json", "us-core-immunization"),
];

fn url(name: &str) -> String {
    if name.starts_with("us-core") {
        format!("{US_CORE}{name}")
    } else {
        format!("{CORE}{name}")
    }
}

#[test]
fn the_official_examples_conform_to_their_profiles() {
    for (file, profile) in VITALS {
        let found = errors(&example(file), &url(profile));
        assert!(found.is_empty(), "{file} against {profile}:\n{}", describe(&found));
    }
}

/// Each mutation breaks one rule of the profile; every one must be reported.
#[test]
fn every_profile_mutation_is_caught() {
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 6] = [
        ("a code outside the profile's LOINC slice", |o| {
            o["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "0000-0"}]})
        }),
        ("no vital-signs category", |o| {
            o.as_object_mut().unwrap().remove("category");
        }),
        ("category without the vital-signs coding", |o| o["category"] = json!([{"text": "vitals"}])),
        ("no subject", |o| {
            o.as_object_mut().unwrap().remove("subject");
        }),
        ("effective date less precise than a day (vs-1)", |o| {
            let obj = o.as_object_mut().unwrap();
            obj.retain(|k, _| !k.starts_with("effective"));
            obj.insert("effectiveDateTime".into(), json!("2020"));
        }),
        ("neither value, components, members nor dataAbsentReason (vs-2)", |o| {
            o.as_object_mut().unwrap().retain(|k, _| !k.starts_with("value") && k != "component" && k != "hasMember");
        }),
    ];
    let mut missed = vec![];
    let mut total = 0;
    for (file, profile) in VITALS.iter().filter(|(f, _)| f.starts_with("Observation")) {
        for (what, mutate) in &mutations {
            // These two bind the code (extensibly) or slice it optionally: any code may do.
            if what.starts_with("a code") && matches!(*profile, "vitalspanel" | "us-core-vital-signs") {
                continue;
            }
            let mut o = example(file);
            mutate(&mut o);
            total += 1;
            if errors(&o, &url(profile)).is_empty() {
                missed.push(format!("{what}: {file} against {profile}"));
            }
        }
    }
    println!("profile mutations: {}/{total} caught", total - missed.len());
    assert!(missed.is_empty(), "not caught:\n{}", missed.join("\n"));
}

#[test]
fn fixed_units_and_component_slices_are_enforced() {
    let mut hr = example("Observation-heart-rate.json");
    hr["valueQuantity"]["code"] = json!("/h");
    let found = errors(&hr, &url("heartrate"));
    assert!(
        found.iter().any(|i| i.expression.as_deref() == Some("Observation.valueQuantity.code")),
        "{}",
        describe(&found)
    );

    let mut bp = example("Observation-blood-pressure.json");
    let diastolic = bp["component"][1].clone();
    bp["component"] = json!([diastolic.clone(), diastolic]);
    let found = errors(&bp, &url("us-core-blood-pressure"));
    let text = describe(&found);
    assert!(text.contains("component:systolic needs at least 1 (found 0)"), "{text}");
    assert!(text.contains("component:diastolic allows at most 1 (found 2)"), "{text}");
    assert!(found.iter().all(|i| i.expression.as_deref() == Some("Observation.component")), "{text}");
}

fn us_core_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "meta": {"profile": [url("us-core-patient")]},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": "000-00-0000"}],
        "name": [{"family": "Example", "given": ["Pat"]}],
        "gender": "female",
        "extension": [{
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}},
                {"url": "text", "valueString": "White"}
            ]
        }]
    })
}

#[test]
fn us_core_patient_is_enforced_from_meta_profile() {
    let ok = model().validate(&us_core_patient());
    assert!(ok.iter().all(|i| !i.is_error()), "{}", describe(&ok));

    let mut p = us_core_patient();
    p.as_object_mut().unwrap().remove("identifier");
    let found: Vec<Issue> = model().validate(&p).into_iter().filter(Issue::is_error).collect();
    assert!(found.iter().any(|i| i.expression.as_deref() == Some("Patient.identifier")), "{}", describe(&found));

    // The race extension's own profile applies: its `text` part is required.
    let mut p = us_core_patient();
    p["extension"][0]["extension"].as_array_mut().unwrap().pop();
    let found: Vec<Issue> = model().validate(&p).into_iter().filter(Issue::is_error).collect();
    assert!(
        found.iter().any(|i| i.expression.as_deref() == Some("Patient.extension[0].extension")),
        "{}",
        describe(&found)
    );

    // us-core-6: a name needs a family or given name, or a data-absent-reason.
    let mut p = us_core_patient();
    p["name"] = json!([{"text": "Pat Example"}]);
    let found: Vec<Issue> = model().validate(&p).into_iter().filter(Issue::is_error).collect();
    assert!(describe(&found).contains("us-core-6"), "{}", describe(&found));

    // The official Patient example is not US Core: its first telecom has no system or value.
    let found = errors(&example("Patient-example.json"), &url("us-core-patient"));
    assert!(found.iter().any(|i| i.expression.as_deref() == Some("Patient.telecom[0].system")), "{}", describe(&found));
}

#[test]
fn us_core_lab_observation_needs_its_category() {
    let mut o = example("Observation-f001.json");
    let found = errors(&o, &url("us-core-observation-lab"));
    assert!(found.iter().any(|i| i.expression.as_deref() == Some("Observation.category")), "{}", describe(&found));
    o["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
    let found = errors(&o, &url("us-core-observation-lab"));
    assert!(found.is_empty(), "{}", describe(&found));
}

#[test]
fn unknown_and_mismatched_profiles() {
    let hr = example("Observation-heart-rate.json");
    assert!(model().validate_against(&hr, "http://example.org/StructureDefinition/nope").is_none());
    let found = errors(&hr, &url("us-core-patient"));
    assert!(describe(&found).contains("applies to Patient, not Observation"), "{}", describe(&found));

    // A meta.profile medrec does not know is a warning, never a silent pass or an error.
    let mut p = us_core_patient();
    p["meta"]["profile"] = json!(["http://example.org/StructureDefinition/local-patient"]);
    let issues = model().validate(&p);
    assert!(issues.iter().all(|i| !i.is_error()));
    assert!(issues.iter().any(|i| i.code == "not-supported"), "{}", describe(&issues));
}

#[test]
fn the_profiles_medrec_knows() {
    let urls = model().profile_urls();
    for p in ["vitalsigns", "bp", "heartrate", "bodyweight", "bmi"] {
        assert!(urls.contains(&url(p).as_str()), "{p}");
    }
    for p in
        ["us-core-patient", "us-core-immunization", "us-core-vital-signs", "us-core-observation-lab", "us-core-race"]
    {
        assert!(urls.contains(&url(p).as_str()), "{p}");
    }
}

#[test]
fn vital_signs_codes_imply_their_profiles() {
    // R4: an Observation with a vital-signs LOINC code SHALL meet that sign's profile.
    let mut hr = example("Observation-heart-rate.json");
    hr.as_object_mut().unwrap().remove("meta");
    assert_eq!(model().implied_profiles(&hr), vec![url("heartrate").as_str()]);
    assert!(model().validate(&hr).iter().all(|i| !i.is_error()));
    hr["valueQuantity"]["code"] = json!("/h");
    let found: Vec<Issue> = model().validate(&hr).into_iter().filter(Issue::is_error).collect();
    assert!(
        found.iter().any(|i| i.expression.as_deref() == Some("Observation.valueQuantity.code")),
        "{}",
        describe(&found)
    );
    // Other codes imply nothing.
    let lab = example("Observation-f001.json");
    assert!(model().implied_profiles(&lab).is_empty());
}
