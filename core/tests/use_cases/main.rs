//! The use cases over the in-memory ports: fast, no emulator, the domain
//! alone (validation, authorization, consent, versioning, audit, encryption
//! at rest, search, documents, transactions, the registry exchange). The
//! same flows run end to end against DynamoDB, KMS and S3 in the emulator
//! in `tests/`; these pin the rules themselves. One test binary, one module
//! per use-case family.

mod anomalies;
mod archive;
mod audit;
mod consent;
mod documents;
mod events;
mod records;
mod registry;
mod search;
mod transactions;

use medrec_core::auth::policy::Scope;
use medrec_core::auth::{Principal, Purpose, Role};
use medrec_core::error::{Error, Result};
use medrec_core::memory::{MemoryKeys, MemoryStore};
use medrec_core::ports::{KeyService, RecordStore};
use medrec_core::service::{Caller, Services};
use serde_json::{json, Value};

/// A family name no real record carries: tests search the stores for it.
pub const CANARY_FAMILY: &str = "Zzyzxcanary";

pub type Memory = Services<MemoryStore, MemoryKeys>;

pub fn services() -> Memory {
    medrec_core::memory::services("unit")
}

pub fn clinician(subject: &str, scope: &str) -> Caller {
    with_role(subject, Role::Clinician, scope)
}

/// A staff caller; `fhirUser` is `Practitioner/{subject}`, which is what
/// consent provisions name.
pub fn with_role(subject: &str, role: Role, scope: &str) -> Caller {
    Caller {
        principal: Principal {
            subject: subject.into(),
            roles: vec![role],
            scopes: vec![Scope::parse(scope).unwrap()],
            patient: None,
            fhir_user: Some(format!("Practitioner/{subject}")),
            token_id: None,
        },
        purpose: Purpose::treatment(),
        source_ip: None,
        request_id: None,
    }
}

/// The patient themself, as their own token says.
pub fn patient_self(patient: &str) -> Caller {
    let mut c = with_role(&format!("patient-{patient}"), Role::Patient, "patient/*.cruds");
    c.principal.patient = Some(patient.into());
    c.principal.fhir_user = Some(format!("Patient/{patient}"));
    c
}

pub fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": CANARY_FAMILY, "given": ["Quentin"]}],
        "gender": "male",
        "birthDate": "1961-02-03",
        "telecom": [{"system": "phone", "value": "555-0199"}]
    })
}

pub fn temperature(patient: &str, value: Value) -> Value {
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

/// An active opt-out Consent of the patient with the given provision.
pub fn consent(patient: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-11-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision
    })
}

/// A provision permitting everything but what `who` (a `Practitioner/x`) does.
pub fn refusing(who: &str) -> Value {
    json!({"type": "permit", "provision": [
        {"type": "deny", "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": who}}]}
    ]})
}

/// `resource` as the service returns it: the sent resource with `id` and
/// `meta` (versionId, lastUpdated) set.
pub fn without_server_fields(mut stored: Value) -> Value {
    let obj = stored.as_object_mut().unwrap();
    obj.remove("id");
    obj.remove("meta");
    stored
}

pub async fn create<S: RecordStore, K: KeyService>(
    svc: &Services<S, K>,
    who: &Caller,
    resource: Value,
) -> Result<String> {
    let mut audit = svc.draft(Some(who), "create");
    let ty = resource["resourceType"].as_str().unwrap().to_owned();
    svc.create_record(who, &ty, resource, &mut audit).await.map(|s| s.id)
}

pub async fn read<S: RecordStore, K: KeyService>(
    svc: &Services<S, K>,
    who: &Caller,
    ty: &str,
    id: &str,
) -> Result<Value> {
    let mut audit = svc.draft(Some(who), "read");
    svc.read_record(who, ty, id, None, &mut audit).await.map(|s| s.resource)
}

/// Asserts a 403 and returns its message. (Results carry records, which
/// are not `Debug`: PHI is never formatted.)
pub fn forbidden<T>(r: Result<T>) -> String {
    match r {
        Err(Error::Forbidden(m)) => m,
        Err(other) => panic!("expected 403, got {other:?}"),
        Ok(_) => panic!("expected 403, got a success"),
    }
}
