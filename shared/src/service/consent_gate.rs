//! Consent at access time: every read and search of a patient's records
//! asks the decision point (`crate::consent`) with the patient's current
//! Consent resources, read fresh (a revocation applies to the next request).

use super::{Caller, Services};
use crate::consent::{decide, AccessRequest, Decision, DefaultPolicy};
use crate::error::{Error, Result};
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// Err(403) when the patient's consents deny this caller reading
    /// `resource_type`; break-glass passes (audited and alerted by the read).
    /// The patient's own token is never blocked by their consents.
    pub(crate) async fn consent_gate(&self, caller: &Caller, patient: &str, resource_type: &str) -> Result<()> {
        let consents = self.consents_of(caller, patient).await?;
        self.consent_allows(caller, &consents, resource_type)
    }

    /// Writes are gated like reads: an actor the patient's consent refuses
    /// may not change the record either (FHIR Consent's `correct` and
    /// `collect` fall under a provision without actions), and in particular
    /// may not rewrite the consent that refuses them. Only the first
    /// consent of a patient is written under role rules alone: under opt-in
    /// nothing could ever be recorded otherwise.
    pub(crate) async fn write_gate(&self, caller: &Caller, patient: &str, resource_type: &str) -> Result<()> {
        let consents = self.consents_of(caller, patient).await?;
        if resource_type == "Consent" && consents.as_ref().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        self.consent_allows(caller, &consents, resource_type)
    }

    /// The patient's live Consent resources, as the gate needs them: None
    /// when nothing can deny (the patient's own token, or no consent under
    /// the opt-out default), so no key is unwrapped for nothing.
    pub(crate) async fn consents_of(&self, caller: &Caller, patient: &str) -> Result<Option<Vec<Value>>> {
        if caller.principal.patient.as_deref() == Some(patient) {
            return Ok(None);
        }
        let live: Vec<_> =
            self.store.compartment(patient, "Consent").await?.into_iter().filter(|(_, c)| !c.deleted).collect();
        if live.is_empty() && self.consent_default == DefaultPolicy::OptOut {
            return Ok(None);
        }
        let mut consents = Vec::with_capacity(live.len());
        if !live.is_empty() {
            let key = self.patient_key(patient).await?;
            for (id, c) in &live {
                consents.push(self.decrypt_record(&key, patient, "Consent", id, c.version, c.ciphertext.as_deref())?);
            }
        }
        Ok(Some(consents))
    }

    /// The decision for one resource type, given `consents_of`.
    pub(crate) fn consent_allows(
        &self,
        caller: &Caller,
        consents: &Option<Vec<Value>>,
        resource_type: &str,
    ) -> Result<()> {
        let Some(consents) = consents else { return Ok(()) };
        // Consent actors are FHIR references: the token's fhirUser, or else
        // its subject taken as a Practitioner id (see docs/decisions/0005).
        let refs = [caller
            .principal
            .fhir_user
            .clone()
            .unwrap_or_else(|| format!("Practitioner/{}", caller.principal.subject))];
        let roles: Vec<String> = caller.principal.role_names().into_iter().map(str::to_owned).collect();
        let now = crate::fhir::now_instant();
        let request = AccessRequest {
            actor_refs: &refs,
            actor_roles: &roles,
            purpose: caller.purpose.code,
            resource_type,
            action: "access",
            break_glass: caller.purpose.is_break_glass(),
            now: &now,
        };
        match decide(consents, &request, self.consent_default) {
            Decision::Deny { consent: Some(id) } => {
                Err(Error::Forbidden(format!("consent: Consent/{id} does not permit this access")))
            }
            Decision::Deny { consent: None } => {
                Err(Error::Forbidden("consent: the patient has not consented to this access (opt-in)".into()))
            }
            Decision::Permit | Decision::BreakGlass { .. } => Ok(()),
        }
    }
}
