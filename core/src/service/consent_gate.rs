//! Consent at access time: every read, search and write of a patient's
//! records asks the decision point (`crate::consent`) with the patient's
//! current Consent resources, read fresh (a revocation applies to the next
//! request). Type-level checks refuse early what no resource could pass;
//! each resource is decided once it is read, so provisions on codes,
//! labels, instances and data periods hold record by record.

use super::{Caller, Services};
use crate::auth::{authorize, Action, Role};
use crate::consent::{self, decide, decide_before_reading, AccessRequest, Consents, Data, Decision, DefaultPolicy};
use crate::error::{Error, Result};
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

/// A patient's consents as one request needs them.
pub(crate) enum ConsentView {
    /// Nothing can deny: the patient's own token, or no consent under the
    /// opt-out default.
    Unrestricted,
    Consents(Consents),
}

/// What a consent decision is asked about: a type, or one resource of it.
pub(crate) struct Subject<'a> {
    pub ty: &'a str,
    /// (id, resource) once read.
    pub resource: Option<(&'a str, &'a Value)>,
    /// consentaction: access, collect (create) or correct (change).
    pub action: &'static str,
}

impl<'a> Subject<'a> {
    pub fn read(ty: &'a str, id: &'a str, resource: &'a Value) -> Self {
        Subject { ty, resource: Some((id, resource)), action: "access" }
    }
}

/// Is the caller this patient, acting as themself? The consent bypass is
/// the patient's own identity (role and compartment), never a launch
/// context a staff token carries.
pub(crate) fn is_own_patient(caller: &Caller, patient: &str) -> bool {
    caller.principal.roles.contains(&Role::Patient) && caller.principal.patient.as_deref() == Some(patient)
}

fn refusal(decision: Decision) -> Result<()> {
    if matches!(decision, Decision::Deny { .. }) {
        crate::metrics::count(crate::metrics::Counter::ConsentDenials);
    }
    match decision {
        Decision::Deny { consent: Some(id) } => {
            Err(Error::Forbidden(format!("consent: Consent/{id} does not permit this access")))
        }
        Decision::Deny { consent: None } => {
            Err(Error::Forbidden("consent: the patient has not consented to this access (opt-in)".into()))
        }
        Decision::Permit | Decision::BreakGlass { .. } => Ok(()),
    }
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// Before reading: Err(403) when the patient's consents refuse this
    /// caller every resource of `ty`. Returns the consents for the
    /// per-resource decisions that follow (`consent_on`).
    pub(crate) async fn consent_gate(&self, caller: &Caller, patient: &str, ty: &str) -> Result<ConsentView> {
        let view = self.consents_of(caller, patient).await?;
        self.consent_before(caller, &view, ty)?;
        Ok(view)
    }

    /// The type-level check of `consent_gate`, with the consents in hand.
    pub(crate) fn consent_before(&self, caller: &Caller, view: &ConsentView, ty: &str) -> Result<()> {
        let ConsentView::Consents(consents) = view else { return Ok(()) };
        if ty == "Consent" && self.holds_consent_authority(caller) {
            return self.authority_refusal(caller, consents);
        }
        let roles = caller.principal.role_names();
        let now = crate::fhir::now_instant();
        let req = self.request(caller, &roles, ty, "access", &now);
        refusal(decide_before_reading(consents, &req, self.consent_default))
    }

    /// The decision on one resource (read, or written as `subject.action`).
    pub(crate) fn consent_on(&self, caller: &Caller, view: &ConsentView, subject: Subject) -> Result<()> {
        let ConsentView::Consents(consents) = view else { return Ok(()) };
        if subject.ty == "Consent" && self.holds_consent_authority(caller) {
            return self.authority_refusal(caller, consents);
        }
        let roles = caller.principal.role_names();
        let now = crate::fhir::now_instant();
        let reference = subject.resource.map(|(id, _)| format!("{}/{id}", subject.ty));
        let mut req = self.request(caller, &roles, subject.ty, subject.action, &now);
        req.data =
            subject.resource.zip(reference.as_deref()).map(|((_, resource), reference)| Data { reference, resource });
        refusal(decide(consents, &req, self.consent_default))
    }

    /// May the caller see this resource (a write's response body)? Their
    /// role and scopes must grant reading it, and the patient's consents.
    pub(crate) fn may_read(&self, caller: &Caller, view: &ConsentView, patient: &str, subject: Subject) -> bool {
        authorize(&caller.principal, subject.ty, Action::Read, super::clinical::patient_of(patient))
            == crate::auth::Decision::Allow
            && self.consent_on(caller, view, Subject { action: "access", ..subject }).is_ok()
    }

    /// The access as the decision point describes it, before any data.
    fn request<'a>(
        &self,
        caller: &'a Caller,
        roles: &'a [&'a str],
        ty: &'a str,
        action: &'static str,
        now: &'a str,
    ) -> AccessRequest<'a> {
        AccessRequest {
            actor: caller.principal.fhir_user.as_deref(),
            roles,
            purpose: caller.purpose.code,
            resource_type: ty,
            data: None,
            action: Some(action),
            break_glass: caller.purpose.is_break_glass(),
            now,
        }
    }

    /// Writes are decided like reads, as FHIR's `collect` (create) and
    /// `correct` (update, delete), on what the resource was and what it
    /// becomes: an actor the patient's consents refuse may not change the
    /// record either. Consents themselves follow `consent_write_gate`.
    pub(crate) async fn write_gate(
        &self,
        caller: &Caller,
        patient: &str,
        ty: &str,
        id: &str,
        (before, after): (Option<&Value>, Option<&Value>),
    ) -> Result<ConsentView> {
        let view = self.consents_of(caller, patient).await?;
        if ty == "Consent" {
            self.consent_write_gate(caller, patient, &view)?;
            return Ok(view);
        }
        let action = if before.is_none() { "collect" } else { "correct" };
        for resource in [before, after].into_iter().flatten() {
            self.consent_on(caller, &view, Subject { ty, resource: Some((id, resource)), action })?;
        }
        Ok(view)
    }

    /// Consent is the patient's decision: only the patient, or a role given
    /// consent authority (`MEDREC_CONSENT_AUTHORITY_ROLES`), records,
    /// changes or withdraws one; and nobody the patient's consents refuse
    /// (see `authority_refusal`) may, so no refused actor can lift a
    /// refusal. Under opt-in the first consent follows the same rule.
    fn consent_write_gate(&self, caller: &Caller, patient: &str, view: &ConsentView) -> Result<()> {
        if is_own_patient(caller, patient) {
            return Ok(());
        }
        if !self.holds_consent_authority(caller) {
            return Err(Error::Forbidden(
                "consent: only the patient or the privacy office (consent authority) records consents".into(),
            ));
        }
        match view {
            ConsentView::Consents(consents) => self.authority_refusal(caller, consents),
            ConsentView::Unrestricted => Ok(()),
        }
    }

    fn holds_consent_authority(&self, caller: &Caller) -> bool {
        caller.principal.roles.iter().any(|r| self.consent_authority.contains(r))
    }

    /// The consent authority administers a patient's consents (reads and
    /// writes them, the default policy notwithstanding) unless an active
    /// provision refuses them anything they could otherwise read, whatever
    /// its class, code or action, or names them at all.
    fn authority_refusal(&self, caller: &Caller, consents: &Consents) -> Result<()> {
        let roles = caller.principal.role_names();
        let now = crate::fhir::now_instant();
        let req = self.request(caller, &roles, "Consent", "correct", &now);
        let all = super::compartment_types();
        let reachable: Vec<&str> = all
            .iter()
            .copied()
            .filter(|ty| authorize(&caller.principal, ty, Action::Read, None) == crate::auth::Decision::Allow)
            .collect();
        match consent::refusing(consents, &req, &reachable, &all) {
            Some(id) => Err(Error::Forbidden(format!(
                "consent: Consent/{id} refuses this user; a refused user cannot read, record or change the patient's consents"
            ))),
            None => Ok(()),
        }
    }

    /// The patient's live Consent resources, decrypted, with what their
    /// `related` data entries refer to.
    pub(crate) async fn consents_of(&self, caller: &Caller, patient: &str) -> Result<ConsentView> {
        // The directory is nobody's record: roles alone decide it.
        if is_own_patient(caller, patient) || super::clinical::patient_of(patient).is_none() {
            return Ok(ConsentView::Unrestricted);
        }
        let live: Vec<_> =
            self.store.compartment(patient, "Consent").await?.into_iter().filter(|(_, c)| !c.deleted).collect();
        if live.is_empty() && self.consent_default == DefaultPolicy::OptOut {
            return Ok(ConsentView::Unrestricted);
        }
        let mut consents = Consents::default();
        if live.is_empty() {
            return Ok(ConsentView::Consents(consents));
        }
        let key = self.patient_key(patient).await?;
        for (id, c) in &live {
            let resource = self.decrypt_record(&key, patient, "Consent", id, c.version, c.ciphertext.as_deref())?;
            consents.resources.push(resource);
        }
        for target in consent::related_targets(&consents.resources) {
            let refs = match self.resource_in(patient, &key, &target).await? {
                Some(resource) => consent::references_in(&resource),
                None => vec![],
            };
            consents.related.insert(target, refs);
        }
        Ok(ConsentView::Consents(consents))
    }

    /// A live resource `Type/id` of this patient's compartment, decrypted.
    async fn resource_in(&self, patient: &str, key: &crate::crypto::DataKey, reference: &str) -> Result<Option<Value>> {
        let Some((ty, id)) = reference.split_once('/') else { return Ok(None) };
        let located = match ty {
            "Patient" => Some(id.to_owned()),
            _ => self.store.locate(ty, id).await?,
        };
        if located.as_deref() != Some(patient) {
            return Ok(None);
        }
        match self.store.current(patient, ty, id).await? {
            Some(c) if !c.deleted => {
                Ok(Some(self.decrypt_record(key, patient, ty, id, c.version, c.ciphertext.as_deref())?))
            }
            _ => Ok(None),
        }
    }
}
