//! What the registry sync reads and records: each submission is a
//! public-health disclosure (45 CFR 164.512(b)) made by the registry-sync
//! service under purpose PUBHLTH, so it is authorized, consent-gated (a
//! patient's consent that refuses public-health use stops it) and audited
//! like any access, and the transmission itself is audited with its
//! outcome, which is what the accounting of disclosures shows.

use super::{Caller, Services};
use crate::audit::Outcome;
use crate::auth::policy::Scope;
use crate::auth::{Principal, Purpose, Role};
use crate::error::{Error, Result};
use crate::ports::{KeyService, RecordStore};
use crate::registry::VaccinationRecord;

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
        purpose: Purpose { code: "PUBHLTH", break_glass_reason: None },
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
    ) -> Result<VaccinationRecord> {
        let mut audit = self.draft(Some(caller), "read");
        let demographics = match self.read_patient(caller, patient, &mut audit).await {
            Ok(s) => s.resource,
            Err(e) => return Err(self.refused(audit, caller, e).await),
        };
        let mut audit = self.draft(Some(caller), "vread");
        let content_version = if deleted { version.saturating_sub(1) } else { version };
        let stored =
            match self.read_record(caller, "Immunization", immunization, Some(content_version), &mut audit).await {
                Ok(s) => s,
                Err(e) => return Err(self.refused(audit, caller, e).await),
            };
        VaccinationRecord::from_fhir(&demographics, &stored.resource, deleted)
            .map_err(|e| Error::Invalid(vec![crate::fhir::outcome::Issue::error("required", e.to_string())]))
    }

    /// A read refused or failed is audited as the API edge would audit it.
    async fn refused(&self, audit: crate::audit::AuditEntry, caller: &Caller, e: Error) -> Error {
        let status = crate::http::error_response(&e).status().as_u16();
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
