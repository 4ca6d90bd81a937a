//! PATCH with JSON Patch, for Patient and the compartment records: the
//! current version is patched and then goes through the update use case
//! (validation, business rules, If-Match, one audit record).
//!
//! Applying a patch reveals the document it applies to (a `test` that
//! passes or fails, a `remove` of a path that is or is not there), so PATCH
//! needs the right to read the resource as well as to update it.

use super::consent_gate::Subject;
use super::records::Stored;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::fhir::json_patch::{self, Bounds, PatchError};
use crate::fhir::outcome::Issue;
use crate::ports::{Current, KeyService, RecordStore};
use serde_json::Value;

/// `current` with `patch` applied; the server-owned identity must not move.
fn patched(current: &Value, patch: &Value, bounds: Bounds) -> Result<Value> {
    let mut doc = current.clone();
    let ty = current["resourceType"].as_str().unwrap_or("Resource").to_owned();
    json_patch::apply(&mut doc, patch, bounds).map_err(|e| match e {
        PatchError::Malformed(..) => Error::BadRequest(format!("invalid JSON Patch: {e}")),
        PatchError::Failed(..) => {
            Error::Invalid(vec![Issue::error("processing", format!("the patch does not apply: {e}")).at(ty)])
        }
        PatchError::TooCostly(n, ref why) => Error::Invalid(vec![Issue::error(
            "too-costly",
            format!("{why} (MEDREC_PATCH_MAX_OPERATIONS, MEDREC_PATCH_MAX_BYTES)"),
        )
        .at(format!("Patch[{n}]"))]),
    })?;
    if doc["resourceType"] != current["resourceType"] || doc["id"] != current["id"] {
        return Err(Error::BadRequest("a patch may not change resourceType or id".into()));
    }
    Ok(doc)
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The current version of a resource, decrypted, for a patch to apply
    /// to: the caller must be allowed to update it and to read it (no read
    /// audit record: the write's record covers it).
    async fn current_for_patch(&self, caller: &Caller, ty: &str, patient: &str, id: &str) -> Result<(Current, Value)> {
        let patient_id = super::clinical::patient_of(patient);
        self.check(caller, ty, Action::Update, patient_id)?;
        self.check(caller, ty, Action::Read, patient_id).map_err(|e| match e {
            Error::Forbidden(_) => Error::Forbidden(
                "PATCH reveals the resource it applies to and needs read access too; use PUT to replace it".into(),
            ),
            other => other,
        })?;
        let consents = self.consent_gate(caller, patient, ty).await?;
        let (current, resource) = self.current_record(ty, patient, id).await?;
        self.consent_on(caller, &consents, Subject::read(ty, id, &resource))?;
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
        // A patch that starts by testing /meta/versionId checks the
        // version itself (the form some clients send instead of If-Match).
        let if_match = if_match.or_else(|| tested_version(patch));
        // The compartment is located and the current version read once,
        // here; the update goes on from them.
        let (ty, events) = super::clinical::served(resource_type)?;
        let patient = self.compartment_of_record(ty, id).await?;
        audit.patient = super::clinical::patient_of(&patient).map(str::to_owned);
        audit.entities = vec![format!("{ty}/{id}")];
        let (current, before) = self.current_for_patch(caller, ty, &patient, id).await?;
        self.check_version(if_match, current.version)?;
        let bounds = Bounds { operations: self.limits.patch_operations, bytes: self.limits.patch_bytes };
        let resource = patched(&before, patch, bounds)?;
        let current = Some((current, before));
        self.update_in(caller, (ty, events, &patient), id, resource, if_match, current, audit).await
    }
}

/// The version a patch's first operation tests at `/meta/versionId`.
fn tested_version(patch: &Value) -> Option<u64> {
    let first = patch.as_array()?.first()?;
    (first["op"] == "test" && first["path"] == "/meta/versionId").then(|| first["value"].as_str()?.parse().ok())?
}
