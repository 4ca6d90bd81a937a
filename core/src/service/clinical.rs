//! The record use cases of every type of the resource table: records that
//! live in one patient's compartment, encrypted under that patient's data
//! key (authorization in the compartment, consent, If-Match, audit in the
//! same transaction, fail-closed reads). A read by id finds the
//! compartment through the resource's locator. The Patient is its own
//! compartment: its create opens it under a new data key, and its id names it.
//!
//! The directory types (Practitioner, Organization, Location...) take the
//! same path in one more compartment, `DIRECTORY`, under its own data key:
//! no patient's record, so no consent decides them and no audit record
//! names a patient for them; roles alone say who reads and keeps them.

use super::consent_gate::Subject;
use super::records::{HistoryResult, Stored};
use super::validation::rules_for;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::crypto::{resource_aad, seal, DataKey};
use crate::error::{Error, Result};
use crate::fhir::{self, clinical, outcome::Issue};
use crate::ports::{Current, KeyService, RecordStore, ResourceWrite};
use serde_json::Value;
use std::sync::Arc;

/// The event names (recorded, updated, deleted) of the types that had
/// their own before the resource table; every other type's changes are
/// `ResourceCreated`, `ResourceUpdated`, `ResourceDeleted`, naming the type.
const NAMED_EVENTS: [(&str, [&str; 3]); 5] = [
    ("Patient", ["PatientCreated", "PatientUpdated", "PatientDeleted"]),
    ("Immunization", ["ImmunizationRecorded", "ImmunizationUpdated", "ImmunizationDeleted"]),
    ("Observation", ["ObservationRecorded", "ObservationUpdated", "ObservationDeleted"]),
    // Consent events follow its status instead (see `consent_event`).
    ("Consent", ["ConsentRecorded", "ConsentUpdated", "ConsentRevoked"]),
    ("DocumentReference", ["DocumentStored", "DocumentUpdated", "DocumentDeleted"]),
];
const RESOURCE_EVENTS: [&str; 3] = ["ResourceCreated", "ResourceUpdated", "ResourceDeleted"];

/// A Consent's event by the status it had and has: granted when it becomes
/// active, revoked when an active consent stops being so.
fn consent_event(before: Option<&str>, after: Option<&str>, default: &'static str) -> &'static str {
    match (before == Some("active"), after == Some("active")) {
        (false, true) => "ConsentGranted",
        (true, false) => "ConsentRevoked",
        _ => default,
    }
}

/// A record that passed the checks of a create and awaits its commit.
pub(crate) struct NewRecord {
    pub ty: &'static str,
    pub event: &'static str,
    pub patient: String,
    pub key: Arc<DataKey>,
    /// The compartment's wrapped key, when this record opens it.
    pub new_wrapped_key: Option<Vec<u8>>,
    pub id: String,
    /// Whether the creator may read it back (else the answer has no body).
    pub readable: bool,
}

/// The compartment the directory resources live in. Not a FHIR id (`_` is
/// not allowed in one), so no request can name it as a patient.
pub const DIRECTORY: &str = "_directory";

/// The patient a compartment belongs to; none for the directory's.
pub fn patient_of(compartment: &str) -> Option<&str> {
    (compartment != DIRECTORY).then_some(compartment)
}

/// The Patient type: the compartment's owner.
pub(crate) const PATIENT: &str = "Patient";

/// The served type as a static name, with its events; 404 for any other.
pub(crate) fn served(resource_type: &str) -> Result<(&'static str, [&'static str; 3])> {
    let def = fhir::resources::served_type(resource_type).ok_or(Error::NotFound)?;
    let events = NAMED_EVENTS.iter().find(|(t, _)| *t == resource_type).map_or(RESOURCE_EVENTS, |(_, e)| *e);
    Ok((def.name.as_str(), events))
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// Validates a clinical resource for its compartment: the definitions,
    /// `meta.profile`, the compartment reference, an existing patient, and
    /// the type's business rules. Returns the patient's data key.
    async fn admit(&self, ty: &'static str, resource: &Value, patient: &str) -> Result<Arc<DataKey>> {
        let mut issues = rules_for(ty, resource);
        if patient == DIRECTORY || ty == PATIENT {
            if issues.iter().any(Issue::is_error) {
                return Err(Error::Invalid(issues));
            }
            return self.patient_key(patient).await;
        }
        let element = clinical::compartment_element(ty).unwrap_or("subject");
        let current = self.store.current(patient, "Patient", patient).await?.filter(|c| !c.deleted);
        let Some(current) = current else {
            issues
                .push(Issue::error("not-found", "the referenced Patient does not exist").at(format!("{ty}.{element}")));
            return Err(Error::Invalid(issues));
        };
        let key = self.patient_key(patient).await?;
        let now = time::OffsetDateTime::now_utc();
        let birth = if clinical::needs_birth_date(ty) {
            let pat =
                self.decrypt_record(&key, patient, "Patient", patient, current.version, current.ciphertext.as_deref())?;
            pat["birthDate"].as_str().map(str::to_owned)
        } else {
            None
        };
        let mut business = clinical::rules(ty, resource, birth.as_deref(), now);
        if ty == "Consent" {
            business.extend(crate::consent::enforceability_issues(resource));
        }
        // One error per element: a rule that repeats what the definitions
        // or a profile already said about it adds nothing.
        for b in business {
            if !issues.iter().any(|i| i.is_error() && i.expression == b.expression) {
                issues.push(b);
            }
        }
        if issues.iter().any(Issue::is_error) {
            return Err(Error::Invalid(issues));
        }
        Ok(key)
    }

    /// The blind-index tokens a record's current version is stored under:
    /// a Patient's search values, a directory resource's, an active
    /// Consent's end day.
    pub(crate) fn record_tokens(&self, ty: &str, resource: &Value) -> Result<Vec<String>> {
        if ty == PATIENT {
            return self.patient_tokens(resource);
        }
        match fhir::resources::directory_type(ty) {
            Some(def) => self.directory_tokens(def, resource),
            None => Ok(self.expiry_tokens(ty, resource)),
        }
    }

    /// The compartment a stored record lives in: a Patient's own, any
    /// other record's from its locator.
    pub(crate) async fn compartment_of_record(&self, ty: &str, id: &str) -> Result<String> {
        match ty {
            PATIENT => Ok(id.to_owned()),
            _ => self.store.locate(ty, id).await?.ok_or(Error::NotFound),
        }
    }

    /// For an interaction on a stored record: its served type and events,
    /// and its compartment, with the caller authorized there and the audit
    /// record naming both.
    async fn open_record(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        action: Action,
        audit: &mut AuditEntry,
    ) -> Result<(&'static str, [&'static str; 3], String)> {
        let (ty, events) = served(resource_type)?;
        audit.entities = vec![format!("{ty}/{id}")];
        let patient = self.compartment_of_record(ty, id).await?;
        audit.patient = patient_of(&patient).map(str::to_owned);
        self.check(caller, ty, action, patient_of(&patient))?;
        Ok((ty, events, patient))
    }

    pub async fn create_record(
        &self,
        caller: &Caller,
        resource_type: &str,
        resource: Value,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        let new = self.prepare_create(caller, resource_type, &resource, audit).await?;
        // Only the directory's first create can lose a race for a brand-new
        // id (the compartment's key is written on the condition that none
        // exists): the winner's key is then there, so store under it.
        let retry = (new.new_wrapped_key.is_some() && new.patient == DIRECTORY).then(|| resource.clone());
        match (self.commit_new(new, resource, audit, vec![]).await, retry) {
            (Err(Error::Conflict(_)), Some(resource)) => {
                let new = self.prepare_create(caller, resource_type, &resource, audit).await?;
                self.commit_new(new, resource, audit, vec![]).await
            }
            (result, _) => result,
        }
    }

    /// The checks of a create, before anything is stored: the compartment,
    /// the caller's right to write there, validation and business rules.
    /// Returns what the commit needs, with the new id chosen.
    pub(crate) async fn prepare_create(
        &self,
        caller: &Caller,
        resource_type: &str,
        resource: &Value,
        audit: &mut AuditEntry,
    ) -> Result<NewRecord> {
        let (ty, events) = served(resource_type)?;
        if ty == PATIENT || fhir::resources::directory_type(ty).is_some() {
            return self.prepare_owner_create(caller, (ty, events[0]), resource, audit).await;
        }
        let patient = clinical::compartment_of(ty, resource).map_err(|i| Error::Invalid(vec![i]))?;
        audit.patient = Some(patient.clone());
        self.check(caller, ty, Action::Create, Some(&patient))?;
        let id = super::staging::new_id();
        let consents = self.write_gate(caller, &patient, ty, &id, (None, Some(resource))).await?;
        let key = self.admit(ty, resource, &patient).await?;
        let readable = self.may_read(caller, &consents, &patient, Subject::read(ty, &id, resource));
        Ok(NewRecord { ty, event: events[0], patient, key, new_wrapped_key: None, id, readable })
    }

    /// The checks of a create placed in no existing patient's compartment:
    /// a Patient, which opens its own under a new data key, or a directory
    /// resource (the directory's first opens it). The caller's role decides,
    /// no consent: there is no record of the patient yet, or none at all.
    async fn prepare_owner_create(
        &self,
        caller: &Caller,
        (ty, event): (&'static str, &'static str),
        resource: &Value,
        audit: &mut AuditEntry,
    ) -> Result<NewRecord> {
        self.check(caller, ty, Action::Create, None)?;
        let issues = rules_for(ty, resource);
        if issues.iter().any(Issue::is_error) {
            return Err(Error::Invalid(issues));
        }
        self.record_tokens(ty, resource)?;
        let id = super::staging::new_id();
        let (compartment, opened) = match ty {
            PATIENT => (id.clone(), false),
            _ => (DIRECTORY.to_owned(), self.store.wrapped_key(DIRECTORY).await?.is_some()),
        };
        let (key, new_wrapped_key) = match opened {
            true => (self.patient_key(DIRECTORY).await?, None),
            false => {
                let (key, wrapped) = self.keys.generate(&compartment).await?;
                (Arc::new(key), Some(wrapped))
            }
        };
        audit.patient = patient_of(&compartment).map(str::to_owned);
        let readable = self.check(caller, ty, Action::Read, patient_of(&compartment)).is_ok();
        Ok(NewRecord { ty, event, patient: compartment, key, new_wrapped_key, id, readable })
    }

    /// Stores version 1 of a prepared record with its audit record and
    /// events (plus `extra_events`) in one transaction.
    pub(crate) async fn commit_new(
        &self,
        new: NewRecord,
        mut resource: Value,
        audit: &mut AuditEntry,
        extra_events: Vec<crate::ports::DomainEvent>,
    ) -> Result<Stored> {
        let NewRecord { ty, event, patient, key, new_wrapped_key, id, readable } = new;
        let now = fhir::now_instant();
        fhir::stamp(&mut resource, &id, 1, &now);
        let ct = seal(&key, &resource_aad(&patient, ty, &id, 1), resource.to_string().as_bytes());
        audit.entities = vec![format!("{ty}/{id}/_history/1")];
        audit.status = 201;
        let event = match ty {
            "Consent" => consent_event(None, resource["status"].as_str(), event),
            _ => event,
        };
        let mut domain_events = vec![self.record_event(event, &patient, ty, &id, &now, 1)];
        if ty == "Immunization" && resource["reaction"].as_array().is_some_and(|r| !r.is_empty()) {
            domain_events.push(self.record_event("ImmunizationReactionReported", &patient, ty, &id, &now, 1));
        }
        domain_events.extend(extra_events);
        let opens = new_wrapped_key.is_some();
        let write = ResourceWrite {
            new_wrapped_key,
            ..ResourceWrite::first(&patient, ty, &id, &now, ct, self.record_tokens(ty, &resource)?)
        };
        self.store.commit(write, audit, domain_events).await?;
        if opens {
            self.cache.insert(&patient, key);
        }
        Ok(Stored { withheld: !readable, ..Stored::new(id, 1, now, resource) })
    }

    /// Read (`version` None) or vread.
    pub async fn read_record(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        version: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        let (ty, _, patient) = self.open_record(caller, resource_type, id, Action::Read, audit).await?;
        let consents = self.consent_gate(caller, &patient, ty).await?;
        let (v, deleted, last_updated, ct) = match version {
            None => {
                let c = self.store.current(&patient, ty, id).await?.ok_or(Error::NotFound)?;
                (c.version, c.deleted, c.last_updated, c.ciphertext)
            }
            Some(n) => {
                let v = self.store.version(&patient, ty, id, n).await?.ok_or(Error::NotFound)?;
                (v.version, v.deleted, v.last_updated, v.ciphertext)
            }
        };
        if deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(&patient).await?;
        let resource = self.decrypt_record(&key, &patient, ty, id, v, ct.as_deref())?;
        self.consent_on(caller, &consents, Subject::read(ty, id, &resource))?;
        audit.entities = vec![format!("{ty}/{id}/_history/{v}")];
        self.audit_read(caller, audit).await?;
        Ok(Stored::new(id, v, last_updated, resource))
    }

    pub async fn update_record(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        let (ty, events, patient) = self.open_record(caller, resource_type, id, Action::Update, audit).await?;
        self.update_in(caller, (ty, events, &patient), id, resource, if_match, None, audit).await
    }

    /// The current version of a resource (a Patient too), decrypted, for a
    /// write to decide on.
    pub(crate) async fn current_record(&self, ty: &str, patient: &str, id: &str) -> Result<(Current, Value)> {
        let current = self.store.current(patient, ty, id).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(patient).await?;
        let resource = self.decrypt_record(&key, patient, ty, id, current.version, current.ciphertext.as_deref())?;
        Ok((current, resource))
    }

    /// An update in a known compartment, the caller authorized there;
    /// `current` when the caller (PATCH) has read it already.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_in(
        &self,
        caller: &Caller,
        (ty, events, patient): (&'static str, [&'static str; 3], &str),
        id: &str,
        mut resource: Value,
        if_match: Option<u64>,
        current: Option<(Current, Value)>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        let patient = patient.to_owned();
        if resource.get("id").and_then(Value::as_str) != Some(id) {
            return Err(Error::BadRequest("the resource id must match the id in the URL".into()));
        }
        let named = match patient_of(&patient) {
            Some(_) if ty == PATIENT => patient.clone(),
            Some(_) => clinical::compartment_of(ty, &resource).map_err(|i| Error::Invalid(vec![i]))?,
            None => DIRECTORY.to_owned(),
        };
        if named != patient {
            let element = clinical::compartment_element(ty).unwrap_or("subject");
            return Err(Error::Invalid(vec![Issue::error(
                "business-rule",
                "a record cannot move to another patient's compartment: delete it and create it there",
            )
            .at(format!("{ty}.{element}"))]));
        }
        let (current, before) = match current {
            Some(c) => c,
            None => self.current_record(ty, &patient, id).await?,
        };
        let consents = self.write_gate(caller, &patient, ty, id, (Some(&before), Some(&resource))).await?;
        let key = self.admit(ty, &resource, &patient).await?;
        self.check_version(if_match, current.version)?;
        let event = match ty {
            "Consent" => consent_event(before["status"].as_str(), resource["status"].as_str(), events[1]),
            "DocumentReference" => {
                super::documents::check_content_unchanged(&before, &resource)?;
                events[1]
            }
            _ => events[1],
        };
        let version = current.version + 1;
        let now = fhir::now_instant();
        fhir::stamp(&mut resource, id, version, &now);
        let ct = seal(&key, &resource_aad(&patient, ty, id, version), resource.to_string().as_bytes());
        let tokens = self.record_tokens(ty, &resource)?;
        self.commit_next_version(audit, (&patient, ty, id), current, &now, Some(ct), tokens, event).await?;
        let withheld = !self.may_read(caller, &consents, &patient, Subject::read(ty, id, &resource));
        Ok(Stored { withheld, ..Stored::new(id, version, now, resource) })
    }

    /// Logical delete: a tombstone version; history kept.
    pub async fn delete_record(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        if_match: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<()> {
        let (ty, events, patient) = self.open_record(caller, resource_type, id, Action::Delete, audit).await?;
        match self.current_record(ty, &patient, id).await {
            Ok((_, before)) => {
                self.write_gate(caller, &patient, ty, id, (Some(&before), None)).await?;
            }
            // Deleting again only audits (`tombstone`).
            Err(Error::Gone) => {}
            Err(e) => return Err(e),
        }
        self.tombstone(audit, (&patient, ty, id), if_match, events[2]).await
    }

    pub async fn record_history_of(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: &str,
        count: usize,
        cursor: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<HistoryResult> {
        let (ty, _, patient) = self.open_record(caller, resource_type, id, Action::Read, audit).await?;
        let consents = self.consent_gate(caller, &patient, ty).await?;
        self.record_history(caller, (&patient, ty, id), &consents, count, cursor, audit).await
    }
}
