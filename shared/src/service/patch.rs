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
use crate::ports::{Current, KeyService, RecordStore};
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
    async fn current_for_write(&self, caller: &Caller, ty: &str, patient: &str, id: &str) -> Result<(Current, Value)> {
        self.check(caller, ty, Action::Update, Some(patient))?;
        // The patched resource is returned: what consent hides, a patch cannot show.
        self.consent_gate(caller, patient, ty).await?;
        let current = self.store.current(patient, ty, id).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(patient).await?;
        let resource = self.decrypt_record(&key, patient, ty, id, current.version, current.ciphertext.as_deref())?;
        Ok((current, resource))
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
        // The compartment is located and the current version read once,
        // here; the update goes on from them.
        let served = match resource_type {
            "Patient" => None,
            ty => Some(super::clinical::served(ty)?),
        };
        let patient = match served {
            None => id.to_owned(),
            Some((ty, _)) => self.store.locate(ty, id).await?.ok_or(Error::NotFound)?,
        };
        audit.patient = Some(patient.clone());
        audit.entities = vec![format!("{resource_type}/{id}")];
        let (current, resource) = self.current_for_write(caller, resource_type, &patient, id).await?;
        super::records::expect_version(expected, current.version)?;
        let resource = patched(&resource, patch)?;
        match served {
            None => self.update_patient(caller, id, resource, Some(expected), audit).await,
            Some((ty, events)) => {
                self.update_in(caller, (ty, events, &patient), id, resource, Some(expected), Some(current), audit).await
            }
        }
    }
}
