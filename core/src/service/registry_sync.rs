//! What the registry sync reads and records: each submission is a
//! public-health disclosure (45 CFR 164.512(b)) made by the registry-sync
//! service under purpose PUBHLTH, so it is authorized, consent-gated (a
//! patient's consent that refuses public-health use stops it) and audited
//! like any access, and the transmission itself is audited with its
//! outcome, which is what the accounting of disclosures shows.

use super::{Caller, Services};
use crate::audit::Outcome;
use crate::auth::policy::Scope;
use crate::auth::{Action, Principal, Purpose, Role};
use crate::error::{Error, Result};
use crate::ports::{DomainEvent, KeyService, RecordStore};
use crate::registry::{RegistryDose, VaccinationRecord};
use serde_json::{json, Value};

/// Marks an Immunization that came from the registry (its id there): it
/// is never sent back.
pub const REGISTRY_ID_SYSTEM: &str = "urn:medrec:registry-immunization";

/// What one reconciliation of a patient found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Registry doses medrec did not have, now Immunizations.
    pub imported: usize,
    /// Registry doses medrec already has (its own submissions, earlier imports).
    pub matched: usize,
    /// Same vaccine and day, different lot: flagged, neither side overwritten.
    pub conflicts: usize,
    /// Registry doses medrec's validation refuses (a date in the future...).
    pub refused: usize,
}

fn has_registry_id(immunization: &Value, registry_id: Option<&str>) -> bool {
    immunization["identifier"].as_array().is_some_and(|ids| {
        ids.iter().any(|i| i["system"] == REGISTRY_ID_SYSTEM && registry_id.is_none_or(|r| i["value"] == r))
    })
}

fn day_digits(date: &str) -> String {
    date.chars().take(10).filter(char::is_ascii_digit).collect()
}

/// An Immunization from a registry dose: historical (not administered
/// here), its origin and the registry's id recorded.
fn imported(patient: &str, dose: &RegistryDose) -> Value {
    let d = &dose.date;
    let date = if d.len() == 8 { format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]) } else { d.clone() };
    let mut v = json!({
        "resourceType": "Immunization",
        "meta": {"source": "urn:medrec:registry"},
        "identifier": [{"system": REGISTRY_ID_SYSTEM, "value": dose.registry_id}],
        "status": if dose.completion == "CP" || dose.completion == "PA" { "completed" } else { "not-done" },
        "vaccineCode": {"coding": [{"system": crate::fhir::cvx::SYSTEM, "code": dose.cvx}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": date,
        "primarySource": false,
        "reportOrigin": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/immunization-origin", "code": "record"}],
            "text": "immunization registry"},
    });
    if let Some(lot) = &dose.lot {
        v["lotNumber"] = json!(lot);
    }
    if v["status"] == "not-done" {
        v["statusReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "OSTOCK"}],
            "text": "reported by the registry as not administered"});
    }
    v
}

/// The registry-sync service as a caller.
pub fn registry_caller() -> Caller {
    Caller {
        principal: Principal {
            subject: "system:registry-sync".into(),
            roles: vec![Role::RegistrySync],
            scopes: ["system/Patient.r", "system/Immunization.crs"].iter().filter_map(|s| Scope::parse(s)).collect(),
            patient: None,
            fhir_user: Some("Device/medrec-registry-sync".into()),
            token_id: None,
        },
        purpose: Purpose { code: "PUBHLTH", break_glass: None },
        source_ip: None,
        request_id: None,
    }
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The vaccination an immunization version discloses to the registry.
    /// A deleted immunization is reported from the version before its
    /// deletion, flagged deleted.
    pub async fn registry_disclosure(
        &self,
        caller: &Caller,
        patient: &str,
        immunization: &str,
        version: u64,
        deleted: bool,
    ) -> Result<Option<VaccinationRecord>> {
        let demographics = self.demographics(caller, patient).await?;
        let mut audit = self.draft(Some(caller), "vread");
        let content_version = if deleted { version.saturating_sub(1) } else { version };
        let stored =
            match self.read_record(caller, "Immunization", immunization, Some(content_version), &mut audit).await {
                Ok(s) => s,
                Err(e) => return Err(self.refused(audit, caller, e).await),
            };
        if has_registry_id(&stored.resource, None) {
            return Ok(None);
        }
        VaccinationRecord::from_fhir(&demographics, &stored.resource, deleted)
            .map(Some)
            .map_err(|e| Error::Invalid(vec![crate::fhir::outcome::Issue::error("required", e.to_string())]))
    }

    /// The patient as a registry query names them.
    pub async fn registry_query_subject(&self, caller: &Caller, patient: &str) -> Result<VaccinationRecord> {
        let demographics = self.demographics(caller, patient).await?;
        VaccinationRecord::subject(&demographics)
            .map_err(|e| Error::Invalid(vec![crate::fhir::outcome::Issue::error("required", e.to_string())]))
    }

    /// Brings the registry's doses of a patient into medrec: new ones become
    /// historical Immunizations (created, validated and audited as the
    /// registry-sync service), known ones are left alone, and a dose that
    /// contradicts medrec's record of the same vaccine on the same day is
    /// flagged once (`RegistryConflictDetected`), never overwritten.
    /// Idempotent: a second run imports and flags nothing new.
    pub async fn reconcile_registry(
        &self,
        caller: &Caller,
        patient: &str,
        doses: &[RegistryDose],
    ) -> Result<Reconciled> {
        let mut audit = self.draft(Some(caller), "search-type");
        audit.patient = Some(patient.to_owned());
        let mut mine = vec![];
        let listed: Result<()> = async {
            self.check(caller, "Immunization", Action::Search, Some(patient))?;
            let consents = self.consent_gate(caller, patient, "Immunization").await?;
            let live: Vec<_> = self
                .store
                .compartment(patient, "Immunization")
                .await?
                .into_iter()
                .filter(|(_, c)| !c.deleted)
                .collect();
            if !live.is_empty() {
                let key = self.patient_key(patient).await?;
                for (id, c) in &live {
                    let r =
                        self.decrypt_record(&key, patient, "Immunization", id, c.version, c.ciphertext.as_deref())?;
                    let subject = super::consent_gate::Subject::read("Immunization", id, &r);
                    if self.consent_on(caller, &consents, subject).is_err() {
                        continue;
                    }
                    audit.entities.push(format!("Immunization/{id}/_history/{}", c.version));
                    mine.push(r);
                }
            }
            Ok(())
        }
        .await;
        match listed {
            Ok(()) => self.audit_read(caller, &mut audit).await?,
            Err(e) => return Err(self.refused(audit, caller, e).await),
        }
        let mut report = Reconciled::default();
        for dose in doses {
            if mine.iter().any(|m| has_registry_id(m, Some(&dose.registry_id))) {
                report.matched += 1;
                continue;
            }
            let same_day = mine.iter().find(|m| {
                m["vaccineCode"]["coding"].as_array().is_some_and(|c| c.iter().any(|c| c["code"] == dose.cvx.as_str()))
                    && day_digits(m["occurrenceDateTime"].as_str().unwrap_or_default()) == dose.date
            });
            if let Some(m) = same_day {
                match (m["lotNumber"].as_str(), dose.lot.as_deref()) {
                    (Some(ours), Some(theirs)) if ours != theirs => {
                        report.conflicts += 1;
                        self.flag_conflict(caller, patient, m["id"].as_str().unwrap_or_default(), &dose.registry_id)
                            .await?;
                    }
                    _ => report.matched += 1,
                }
                continue;
            }
            let mut audit = self.draft(Some(caller), "create");
            match self.create_record(caller, "Immunization", imported(patient, dose), &mut audit).await {
                Ok(_) => report.imported += 1,
                Err(e @ (Error::Invalid(_) | Error::BadRequest(_))) => {
                    self.refused(audit, caller, e).await;
                    report.refused += 1;
                }
                Err(e) => return Err(self.refused(audit, caller, e).await),
            }
        }
        Ok(report)
    }

    async fn flag_conflict(&self, caller: &Caller, patient: &str, immunization: &str, registry_id: &str) -> Result<()> {
        let mut entry = self.draft(Some(caller), "registry-conflict");
        entry.patient = Some(patient.to_owned());
        entry.entities = vec![format!("Immunization/{immunization}"), format!("urn:medrec:registry:{registry_id}")];
        let event = DomainEvent {
            id: crate::crypto::random_id(),
            event_type: "RegistryConflictDetected",
            aggregate: patient.to_owned(),
            at: entry.recorded.clone(),
            detail: json!({"resourceType": "Immunization", "id": immunization, "registryId": registry_id, "field": "lotNumber"}),
        };
        let key = format!("registry-conflict:{immunization}:{registry_id}");
        self.store.audit_once(&key, &entry, vec![event]).await.map(|_| ()).map_err(Error::from)
    }

    /// The Patient, read as the caller (authorized, consent-gated, audited
    /// either way).
    async fn demographics(&self, caller: &Caller, patient: &str) -> Result<Value> {
        let mut audit = self.draft(Some(caller), "read");
        match self.read_record(caller, "Patient", patient, None, &mut audit).await {
            Ok(s) => Ok(s.resource),
            Err(e) => Err(self.refused(audit, caller, e).await),
        }
    }

    /// A read refused or failed is audited as the API edge would audit it.
    async fn refused(&self, audit: crate::audit::AuditEntry, caller: &Caller, e: Error) -> Error {
        let status = e.status();
        self.audit_failure(audit, status, Some(caller), None).await;
        e
    }

    /// Audits a transmission to the registry (`status`: 200 accepted, 422
    /// refused by the registry, 503 not delivered).
    pub async fn audit_transmission(&self, caller: &Caller, patient: &str, reference: &str, status: u16) -> Result<()> {
        let mut entry = self.draft(Some(caller), "transmit");
        entry.patient = Some(patient.to_owned());
        entry.entities = vec![reference.to_owned()];
        entry.status = status;
        entry.outcome = Outcome::from_status(status);
        self.store.audit(&entry, vec![]).await.map_err(Error::from)
    }
}
