//! The record use cases over the in-memory ports: fast, no emulator, and
//! the domain alone (validation, authorization, versioning, audit,
//! encryption at rest). The same flows run end to end against DynamoDB and
//! KMS in the emulator in `tests/`; these pin the rules themselves.

use medrec_core::auth::policy::Scope;
use medrec_core::auth::{Principal, Purpose, Role};
use medrec_core::error::Error;
use medrec_core::memory::{MemoryKeys, MemoryStore};
use medrec_core::service::{Caller, Services};
use serde_json::{json, Value};

const CANARY_FAMILY: &str = "Zzyzxcanary";

fn services() -> Services<MemoryStore, MemoryKeys> {
    medrec_core::memory::services("unit")
}

fn clinician(subject: &str, scope: &str) -> Caller {
    with_role(subject, Role::Clinician, scope)
}

fn with_role(subject: &str, role: Role, scope: &str) -> Caller {
    Caller {
        principal: Principal {
            subject: subject.into(),
            roles: vec![role],
            scopes: vec![Scope::parse(scope).unwrap()],
            patient: None,
            fhir_user: None,
            token_id: None,
        },
        purpose: Purpose::treatment(),
        source_ip: None,
        request_id: None,
    }
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": CANARY_FAMILY, "given": ["Quentin"]}],
        "gender": "male",
        "birthDate": "1961-02-03",
        "telecom": [{"system": "phone", "value": "555-0199"}]
    })
}

fn temperature(patient: &str, value: Value) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-30T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}
    })
}

/// `resource` as the service returns it: the sent resource with `id` and
/// `meta` (versionId, lastUpdated) set.
fn without_server_fields(mut stored: Value) -> Value {
    let obj = stored.as_object_mut().unwrap();
    obj.remove("id");
    obj.remove("meta");
    stored
}

async fn create(svc: &Services<MemoryStore, MemoryKeys>, who: &Caller, resource: Value) -> Result<String, Error> {
    let mut audit = svc.draft(Some(who), "create");
    let ty = resource["resourceType"].as_str().unwrap().to_owned();
    svc.create_record(who, &ty, resource, &mut audit).await.map(|s| s.id)
}

#[tokio::test]
async fn a_record_reads_back_exactly_and_every_version_is_kept() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    // 37.50: the decimal's precision is part of its value (R4 datatypes).
    let first = temperature(&p, serde_json::from_str("37.50").unwrap());
    let id = create(&svc, &dr, first.clone()).await.unwrap();

    let mut audit = svc.draft(Some(&dr), "read");
    let read = svc.read_record(&dr, "Observation", &id, None, &mut audit).await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.resource["valueQuantity"]["value"].to_string(), "37.50");
    assert_eq!(without_server_fields(read.resource), first);

    let with_id = |mut r: Value| {
        r["id"] = id.clone().into();
        r
    };
    let second = temperature(&p, serde_json::from_str("38.1").unwrap());
    let mut audit = svc.draft(Some(&dr), "update");
    let updated =
        svc.update_record(&dr, "Observation", &id, with_id(second.clone()), Some(1), &mut audit).await.unwrap();
    assert_eq!(updated.version, 2);
    // A writer who read version 1 cannot overwrite version 2.
    let mut audit = svc.draft(Some(&dr), "update");
    let stale = svc.update_record(&dr, "Observation", &id, with_id(first.clone()), Some(1), &mut audit).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_) | Error::Conflict(_))), "{:?}", stale.err());

    let mut audit = svc.draft(Some(&dr), "vread");
    let v1 = svc.read_record(&dr, "Observation", &id, Some(1), &mut audit).await.unwrap();
    assert_eq!(without_server_fields(v1.resource), first);

    // Clinicians do not delete records; an administrator does.
    let mut audit = svc.draft(Some(&dr), "delete");
    let refused = svc.delete_record(&dr, "Observation", &id, None, &mut audit).await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    let admin = with_role("admin-a", Role::Admin, "user/*.cruds");
    let mut audit = svc.draft(Some(&admin), "delete");
    svc.delete_record(&admin, "Observation", &id, None, &mut audit).await.unwrap();
    let mut audit = svc.draft(Some(&dr), "read");
    assert!(matches!(svc.read_record(&dr, "Observation", &id, None, &mut audit).await, Err(Error::Gone)));
    let mut audit = svc.draft(Some(&dr), "vread");
    let v2 = svc.read_record(&dr, "Observation", &id, Some(2), &mut audit).await.unwrap();
    assert_eq!(without_server_fields(v2.resource), second, "history survives the delete");
}

#[tokio::test]
async fn invalid_or_unauthorized_writes_store_nothing() {
    let svc = services();
    let dr = clinician("dr-b", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let stored = svc.store.dump();

    let mut no_status = temperature(&p, json!(37));
    no_status.as_object_mut().unwrap().remove("status");
    match create(&svc, &dr, no_status).await {
        Err(Error::Invalid(issues)) => {
            assert!(issues.iter().any(|i| i.expression.as_deref() == Some("Observation.status")), "{issues:?}")
        }
        other => panic!("{other:?}"),
    }
    // A body temperature of 37 metres is refused by its unit's dimension.
    let mut metres = temperature(&p, json!(37));
    metres["valueQuantity"]["code"] = "m".into();
    metres["valueQuantity"]["unit"] = "m".into();
    assert!(matches!(create(&svc, &dr, metres).await, Err(Error::Invalid(_))));

    let reader = clinician("dr-c", "user/*.rs");
    assert!(matches!(create(&svc, &reader, temperature(&p, json!(37))).await, Err(Error::Forbidden(_))));
    // Records unchanged; only audit records of the refusals were added.
    let without_audit = |dump: &str| dump.split("audit:").next().unwrap().to_owned();
    assert_eq!(without_audit(&svc.store.dump()), without_audit(&stored));
}

#[tokio::test]
async fn phi_is_sealed_at_rest_and_absent_from_audit_records() {
    let svc = services();
    let dr = clinician("dr-d", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let mut audit = svc.draft(Some(&dr), "read");
    svc.read_record(&dr, "Patient", &p, None, &mut audit).await.unwrap();

    let stored = svc.store.dump();
    for phi in [CANARY_FAMILY, "Quentin", "555-0199", "1961-02-03"] {
        assert!(!stored.contains(phi), "{phi} stored in plaintext");
    }
    let records = svc.store.audit_records();
    assert!(records.len() >= 2, "the create and the read are audited: {records:?}");
    assert!(records.iter().any(|r| r.contains("dr-d")), "audit records name who acted");
    assert!(records.iter().all(|r| !r.contains(CANARY_FAMILY) && !r.contains("555-0199")));
}
