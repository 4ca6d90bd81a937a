//! Compartment records (every type of the resource table): records that
//! live in one patient's compartment, encrypted under that patient's data
//! key. A read by id finds the compartment through the resource's
//! locator; every rule of the Patient use cases (authorization in the
//! compartment, If-Match, audit in the same transaction, fail-closed reads)
//! holds here too.
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
use crate::crypto::{random_id, resource_aad, seal, DataKey};
use crate::error::{Error, Result};
use crate::fhir::{self, clinical, outcome::Issue};
use crate::ports::{Current, KeyService, RecordStore, ResourceWrite};
use serde_json::Value;
use std::sync::Arc;

/// The event names (recorded, updated, deleted) of the types that had
/// their own before the resource table; every other type's changes are
/// `ResourceCreated`, `ResourceUpdated`, `ResourceDeleted`, naming the type.
const NAMED_EVENTS: [(&str, [&str; 3]); 4] = [
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
pub(crate) fn patient_of(compartment: &str) -> Option<&str> {
    (compartment != DIRECTORY).then_some(compartment)
}

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
        if patient == DIRECTORY {
            if issues.iter().any(Issue::is_error) {
                return Err(Error::Invalid(issues));
            }
            return self.patient_key(DIRECTORY).await;
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
        let business = clinical::rules(ty, resource, birth.as_deref(), now);
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

    /// For an interaction on a stored record: its served type and events,
    /// and its compartment (from the locator), with the caller authorized
    /// there and the audit record naming both.
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
        let patient = self.store.locate(ty, id).await?.ok_or(Error::NotFound)?;
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
        if fhir::resources::directory_type(ty).is_some() {
            return self.prepare_directory_create(caller, (ty, events[0]), resource).await;
        }
        let patient = clinical::compartment_of(ty, resource).map_err(|i| Error::Invalid(vec![i]))?;
        audit.patient = Some(patient.clone());
        self.check(caller, ty, Action::Create, Some(&patient))?;
        let id = random_id();
        let consents = self.write_gate(caller, &patient, ty, &id, (None, Some(resource))).await?;
        let key = self.admit(ty, resource, &patient).await?;
        let readable = self.may_read(caller, &consents, &patient, Subject::read(ty, &id, resource));
        Ok(NewRecord { ty, event: events[0], patient, key, new_wrapped_key: None, id, readable })
    }

    /// The checks of a directory resource's create: the caller's role,
    /// validation. The first one opens the directory's compartment with a
    /// new data key.
    async fn prepare_directory_create(
        &self,
        caller: &Caller,
        (ty, event): (&'static str, &'static str),
        resource: &Value,
    ) -> Result<NewRecord> {
        self.check(caller, ty, Action::Create, None)?;
        let issues = rules_for(ty, resource);
        if issues.iter().any(Issue::is_error) {
            return Err(Error::Invalid(issues));
        }
        let (key, new_wrapped_key) = match self.store.wrapped_key(DIRECTORY).await? {
            Some(_) => (self.patient_key(DIRECTORY).await?, None),
            None => {
                let (key, wrapped) = self.keys.generate(DIRECTORY).await?;
                (Arc::new(key), Some(wrapped))
            }
        };
        let readable = self.check(caller, ty, Action::Read, None).is_ok();
        Ok(NewRecord { ty, event, patient: DIRECTORY.to_owned(), key, new_wrapped_key, id: random_id(), readable })
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
        let write = ResourceWrite {
            new_wrapped_key,
            ..ResourceWrite::first(&patient, ty, &id, &now, ct, self.record_tokens(ty, &resource))
        };
        self.store.commit(write, audit, domain_events).await?;
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
        let tokens = self.record_tokens(ty, &resource);
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

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// `GET /fhir/{type}/_history`: every version of the type's resources
    /// in one compartment (the patient's, named as a search names it, or
    /// the directory), newest first, from `_since` on: what a client syncs
    /// incrementally. Versions the patient's consents refuse the caller are
    /// left out, as from a search.
    pub async fn type_history(
        &self,
        caller: &Caller,
        resource_type: &str,
        query: super::records::Query,
        audit: &mut AuditEntry,
    ) -> Result<HistoryResult> {
        let (ty, _) = served(resource_type)?;
        let def = fhir::resources::served_type(ty).ok_or(Error::NotFound)?;
        let route = format!("{ty}/_history");
        let (query, after) = self.search_params(caller, &route, query)?;
        let mut count = super::records::DEFAULT_PAGE;
        let mut since = None;
        let mut patient = caller.principal.patient.clone();
        for (name, value) in &query {
            match name.as_str() {
                "_count" => count = super::records::page_size(value)?,
                "_since" => {
                    let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                        .ok()
                        .filter(|_| fhir::primitives::is_instant(value))
                        .ok_or_else(|| Error::BadRequest("_since is an instant (2026-01-01T00:00:00Z)".into()))?;
                    since = Some(fhir::instant(at.to_offset(time::UtcOffset::UTC)));
                }
                "patient" if def.compartment.is_some() => {
                    let id = value.strip_prefix("Patient/").unwrap_or(value);
                    if !fhir::primitives::is_id(id) {
                        return Err(Error::BadRequest("patient must be Patient/{id} or {id}".into()));
                    }
                    match &patient {
                        Some(own) if own != id => return Err(Error::NotFound),
                        _ => patient = Some(id.to_owned()),
                    }
                }
                _ => {
                    return Err(Error::BadRequest(
                        "a type's history takes patient (on compartment types), _since, _count and _cursor".into(),
                    ))
                }
            }
        }
        let compartment = match def.compartment {
            None => DIRECTORY.to_owned(),
            Some(_) => patient.ok_or_else(|| {
                Error::BadRequest(format!("a {ty} history names its patient (patient=Patient/{{id}})"))
            })?,
        };
        audit.patient = patient_of(&compartment).map(str::to_owned);
        self.check(caller, ty, Action::Search, patient_of(&compartment))?;
        let consents = self.consent_gate(caller, &compartment, ty).await?;
        let mut versions: Vec<(String, crate::ports::Version)> = self.store.type_versions(&compartment, ty).await?;
        versions.retain(|(_, v)| since.as_ref().is_none_or(|s| v.last_updated >= *s));
        // Newest first; the key is the cursor's place (instants are fixed-width UTC).
        let key = |(id, v): &(String, crate::ports::Version)| format!("{}|{id}|{:010}", v.last_updated, v.version);
        versions.sort_by_key(|b| std::cmp::Reverse(key(b)));
        let key_of_versions: Vec<String> = versions.iter().map(key).collect();
        let start = after.as_ref().map_or(0, |a| key_of_versions.partition_point(|k| k >= a));
        let restricted = matches!(consents, super::consent_gate::ConsentView::Consents(_));
        let data_key = if versions.is_empty() { None } else { Some(self.patient_key(&compartment).await?) };
        let mut items = vec![];
        let mut total = 0;
        let mut last = None;
        for (i, (id, v)) in versions.iter().enumerate() {
            let on_page = i >= start && items.len() < count;
            // Under restricting consents every version is opened to decide
            // it (the total counts what the caller may see); otherwise only
            // the page's.
            if !on_page && !restricted {
                total += 1;
                continue;
            }
            let resource = match (&data_key, v.deleted) {
                (Some(k), false) => {
                    Some(self.decrypt_record(k, &compartment, ty, id, v.version, v.ciphertext.as_deref())?)
                }
                _ => None,
            };
            if resource.as_ref().is_some_and(|r| self.consent_on(caller, &consents, Subject::read(ty, id, r)).is_err())
            {
                continue;
            }
            total += 1;
            if on_page {
                last = Some(i);
                items.push(super::records::HistoryItem {
                    id: id.clone(),
                    version: v.version,
                    last_updated: v.last_updated.clone(),
                    deleted: v.deleted,
                    resource,
                    first: v.version == 1,
                });
            }
        }
        let has_more = items.len() == count && last.is_some_and(|i| i + 1 < versions.len());
        audit.entities = items.iter().map(|v| format!("{ty}/{}/_history/{}", v.id, v.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor =
            last.filter(|_| has_more).map(|i| self.next_page(caller, &route, query, count, key_of_versions[i].clone()));
        Ok(HistoryResult { total, items, next_cursor })
    }
}
