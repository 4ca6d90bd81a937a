//! PATCH with JSON Patch, for Patient and the compartment records: the
//! current version is patched and then goes through the update use case
//! (validation, business rules, If-Match, one audit record).

use super::records::Stored;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::fhir::json_patch::{self, PatchError};
use crate::fhir::outcome::Issue;
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

/// `current` with `patch` applied; the server-owned identity must not move.
fn patched(current: &Value, patch: &Value) -> Result<Value> {
    let mut doc = current.clone();
    json_patch::apply(&mut doc, patch).map_err(|e| match e {
        PatchError::Malformed(..) => Error::BadRequest(format!("invalid JSON Patch: {e}")),
        PatchError::Failed(..) => {
            Error::Invalid(vec![Issue::error("processing", format!("the patch does not apply: {e}")).at(current
                ["resourceType"]
                .as_str()
                .unwrap_or("Resource")
                .to_owned())])
        }
    })?;
    if doc["resourceType"] != current["resourceType"] || doc["id"] != current["id"] {
        return Err(Error::BadRequest("a patch may not change resourceType or id".into()));
    }
    Ok(doc)
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The current version of a resource, decrypted, for a write that builds
    /// on it (no read audit record: the write's record covers it).
    async fn current_for_write(&self, caller: &Caller, ty: &str, patient: &str, id: &str) -> Result<(u64, Value)> {
        self.check(caller, ty, Action::Update, Some(patient))?;
        // The patched resource is returned: what consent hides, a patch cannot show.
        self.consent_gate(caller, patient, ty).await?;
        let current = self.store.current(patient, ty, id).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(patient).await?;
        let resource = self.decrypt_record(&key, patient, ty, id, current.version, current.ciphertext.as_deref())?;
        Ok((current.version, resource))
    }

    pub async fn patch_record(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        patch: &Value,
        if_match: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        let expected = if_match
            .ok_or_else(|| Error::PreconditionRequired("PATCH requires If-Match with the current version".into()))?;
        let patient = match resource_type {
            "Patient" => id.to_owned(),
            ty => {
                super::clinical::served(ty)?;
                self.store.locate(ty, id).await?.ok_or(Error::NotFound)?
            }
        };
        audit.patient = Some(patient.clone());
        audit.entities = vec![format!("{resource_type}/{id}")];
        let (version, current) = self.current_for_write(caller, resource_type, &patient, id).await?;
        super::records::expect_version(expected, version)?;
        let resource = patched(&current, patch)?;
        match resource_type {
            "Patient" => self.update_patient(caller, id, resource, Some(expected), audit).await,
            ty => self.update_record(caller, ty, id, resource, Some(expected), audit).await,
        }
    }
}
