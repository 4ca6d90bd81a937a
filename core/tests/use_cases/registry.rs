//! The immunization registry exchange as the domain sees it: a submission
//! is a public-health disclosure the patient's consent can refuse; a
//! reconciliation imports new doses once, matches known ones, flags a
//! contradiction once and never overwrites, and refuses invalid doses.

use super::*;
use medrec_core::registry::RegistryDose;
use medrec_core::service::registry_sync::registry_caller;

fn immunization(patient: &str) -> Value {
    json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": "2026-11-20T09:00:00Z", "primarySource": true, "lotNumber": "LOT-77",
        "doseQuantity": {"value": 0.3, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"}})
}

fn dose(registry_id: &str, date: &str, lot: &str) -> RegistryDose {
    RegistryDose {
        registry_id: registry_id.into(),
        date: date.into(),
        cvx: "208".into(),
        lot: Some(lot.into()),
        completion: "CP".into(),
    }
}

#[tokio::test]
async fn a_submission_is_a_disclosure_the_patients_consent_can_refuse() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let imm = create(&svc, &dr, immunization(&p)).await.unwrap();
    let sync = registry_caller();

    let record = svc.registry_disclosure(&sync, &p, &imm, 1, false).await.unwrap().expect("sent");
    assert_eq!((record.family.as_str(), record.birth_date.as_str()), (CANARY_FAMILY, "19610203"));
    assert_eq!((record.cvx.as_str(), record.lot.as_deref(), record.completion), ("208", Some("LOT-77"), "CP"));
    let trail = svc.store.audit_records().join("\n");
    assert!(trail.contains("PUBHLTH"), "read under the public-health purpose");

    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let no_public_health = json!({"type": "permit", "provision": [{"type": "deny",
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PUBHLTH"}]}]});
    create(&svc, &registrar, consent(&p, no_public_health)).await.unwrap();
    let audits = svc.store.audit_len();
    forbidden(svc.registry_disclosure(&sync, &p, &imm, 1, false).await);
    assert!(svc.store.audit_len() > audits, "the refusal is audited");
    // Treatment is untouched by that refusal.
    assert!(read(&svc, &dr, "Immunization", &imm).await.is_ok());
}

#[tokio::test]
async fn reconciliation_imports_once_flags_contradictions_once_and_overwrites_nothing() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let ours = create(&svc, &dr, immunization(&p)).await.unwrap();
    let sync = registry_caller();
    let doses =
        [dose("R-1", "20250310", "OLD-1"), dose("R-2", "20261120", "OTHER-LOT"), dose("R-3", "29991231", "FUTURE")];

    let first = svc.reconcile_registry(&sync, &p, &doses).await.unwrap();
    assert_eq!((first.imported, first.matched, first.conflicts, first.refused), (1, 0, 1, 1));
    let again = svc.reconcile_registry(&sync, &p, &doses).await.unwrap();
    assert_eq!((again.imported, again.matched, again.conflicts, again.refused), (0, 1, 1, 1));
    let flags = svc.store.events().into_iter().filter(|e| e.event_type == "RegistryConflictDetected").count();
    assert_eq!(flags, 1, "a contradiction is flagged once");

    let mut audit = svc.draft(Some(&dr), "search-type");
    let q = vec![("patient".to_string(), p.clone())];
    let all = svc.search_records(&dr, "Immunization", q, &mut audit).await.unwrap().resources;
    assert_eq!(all.len(), 2, "ours and the one imported");
    let ours = all.iter().find(|s| s.id == ours).unwrap();
    assert_eq!((ours.version, ours.resource["lotNumber"].as_str()), (1, Some("LOT-77")), "not overwritten");
    let imported = all.iter().find(|s| s.id != ours.id).unwrap();
    assert_eq!(imported.resource["primarySource"], false);
    assert_eq!(imported.resource["occurrenceDateTime"], "2025-03-10");
    let echo = svc.registry_disclosure(&sync, &p, &imported.id, 1, false).await.unwrap();
    assert!(echo.is_none(), "a dose from the registry is never sent back to it");
}
