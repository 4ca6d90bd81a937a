//! HL7's validator test cases (`validator/manifest.json` of
//! FHIR/fhir-test-cases, vendored byte for byte in `tests/hl7/validator`,
//! pinned in `PINNED`) against medrec's validator: the cases selected
//! mechanically as R4, JSON and core definitions only (no packages,
//! profiles, supporting files or options), each verdict (valid: no error)
//! compared with the Java reference validator's.
//!
//! A false rejection (medrec refuses what HL7 accepts) turns good data away
//! and is the worse disagreement; a miss lets bad data in. The test prints
//! the figures and every disagreement, and fails when agreement falls
//! behind the bar or on any false rejection.

#[path = "common/pinned.rs"]
mod pinned;

use medrec_fhir::validator::model;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Measured (2026-12-05): the bar agreement must not fall below (the goal
/// is ≥ 97%). No false rejection is ever accepted.
const AT_LEAST_AGREEING: usize = 110;
/// Selected cases whose Java outcome file upstream does not have.
const WITHOUT_EXPECTATION: usize = 9;

/// Manifest keys that ask for more than the core R4 definitions.
const NOT_CORE: &[&str] = &[
    "packages",
    "supporting",
    "supporting5",
    "profiles",
    "profile",
    "logical",
    "bundle-param",
    "ips",
    "examples",
    "security-checks",
    "for-publication",
    "package-map",
    "certificate",
    "fetcher",
    "matchetype",
    "advisor",
    "validateReference",
    "validateContains",
    "language",
    "best-practice",
    "allowed-extension-domain",
    "assumeValidRestReferences",
    "sct",
    "wrong-displays",
    "no-tx",
    "new-xver-mode",
    "allow-comments",
    "r5-bundle-relative-reference-policy",
    "noHtmlInMarkdown",
    "no-experimental-content",
    "fhir-validator-cli-options",
    "scoring",
    "ids-in-errors",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hl7/validator")
}

#[test]
fn the_vendored_cases_are_upstreams_byte_for_byte() {
    let dir = dir();
    pinned::assert_pinned(&dir, |upstream| dir.join(upstream.strip_prefix("validator/").expect("under validator/")));
}

/// HL7's verdict: whether the Java validator reports an error.
fn java_rejects(case: &Value, dir: &Path) -> Option<bool> {
    match &case["java"] {
        Value::Object(o) => Some(o.get("errorCount").and_then(Value::as_u64).unwrap_or(0) > 0),
        Value::String(file) => {
            let text = std::fs::read(dir.join("outcomes").join(file)).ok()?;
            let outcome: Value = serde_json::from_slice(&text).ok()?;
            Some(
                outcome["issue"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|i| matches!(i["severity"].as_str(), Some("error" | "fatal"))),
            )
        }
        _ => None,
    }
}

#[test]
fn hl7s_validator_cases_agree_within_the_bar() {
    let dir = dir();
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let selected: Vec<&Value> = manifest["test-cases"]
        .as_array()
        .expect("test-cases")
        .iter()
        .filter(|c| {
            c["version"] == "4.0"
                && c["file"].as_str().is_some_and(|f| f.ends_with(".json"))
                && c["use-test"] != false
                && !c.get("java").is_none_or(Value::is_null)
                && c.as_object().is_some_and(|o| !o.keys().any(|k| NOT_CORE.contains(&k.as_str())))
        })
        .collect();
    let (mut agree, mut without, mut false_rejections, mut misses) = (0, 0, vec![], vec![]);
    for case in &selected {
        let name = case["file"].as_str().unwrap();
        let Some(hl7_rejects) = java_rejects(case, &dir) else {
            without += 1;
            continue;
        };
        let text = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors: Vec<String> = match serde_json::from_slice::<Value>(&text) {
            Ok(resource) => model()
                .validate(&resource)
                .into_iter()
                .filter(|i| i.is_error())
                .map(|i| format!("{} ({})", i.expression.unwrap_or_default(), i.diagnostics))
                .collect(),
            Err(e) => vec![format!("not JSON: {e}")],
        };
        match (hl7_rejects, errors.is_empty()) {
            (true, false) | (false, true) => agree += 1,
            (false, false) => false_rejections.push(format!("{name}: {}", errors[0])),
            (true, true) => misses.push(name.to_owned()),
        }
    }
    for f in &false_rejections {
        println!("false rejection: {f}");
    }
    for m in &misses {
        println!("miss: {m}");
    }
    let compared = selected.len() - without;
    println!(
        "HL7 validator cases (R4, JSON, core): {} selected, {compared} with HL7's verdict: {agree} agree ({:.1}%), {} false rejections, {} misses",
        selected.len(),
        100.0 * agree as f64 / compared as f64,
        false_rejections.len(),
        misses.len()
    );
    assert_eq!(without, WITHOUT_EXPECTATION, "cases without HL7's verdict");
    assert!(agree >= AT_LEAST_AGREEING, "{agree} agree, the bar is {AT_LEAST_AGREEING}");
    assert!(false_rejections.is_empty(), "{} false rejections", false_rejections.len());
}
