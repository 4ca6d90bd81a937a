//! Consent at access time: every read and search of a patient's records
//! asks the decision point (`crate::consent`) with the patient's current
//! Consent resources, read fresh (a revocation applies to the next request).

use super::{Caller, Services};
use crate::consent::{decide, AccessRequest, Decision, DefaultPolicy};
use crate::error::{Error, Result};
use crate::ports::{KeyService, RecordStore};

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// Err(403) when the patient's consents deny this caller reading
    /// `resource_type`; break-glass passes (audited and alerted by the read).
    /// The patient's own token is never blocked by their consents.
    pub(crate) async fn consent_gate(&self, caller: &Caller, patient: &str, resource_type: &str) -> Result<()> {
        if caller.principal.patient.as_deref() == Some(patient) {
            return Ok(());
        }
        let live: Vec<_> =
            self.store.compartment(patient, "Consent").await?.into_iter().filter(|(_, c)| !c.deleted).collect();
        if live.is_empty() && self.consent_default == DefaultPolicy::OptOut {
            return Ok(());
        }
        let mut consents = Vec::with_capacity(live.len());
        if !live.is_empty() {
            let key = self.patient_key(patient).await?;
            for (id, c) in &live {
                consents.push(self.decrypt_record(&key, patient, "Consent", id, c.version, c.ciphertext.as_deref())?);
            }
        }
        // Consent actors are FHIR references; a token's subject is the
        // Practitioner id by convention (see docs/decisions/0005).
        let refs = [format!("Practitioner/{}", caller.principal.subject)];
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
        match decide(&consents, &request, self.consent_default) {
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
