//! Histories across a compartment: a type's (`GET /fhir/{type}/_history`)
//! and the whole compartment's (`GET /fhir/_history`), newest first, from
//! `_since` on: what a client syncs incrementally. A history covers one
//! compartment (the patient's, named as a search names it, or the
//! directory's for a directory type), read in one query: a history of every
//! patient at once is Bulk Data's job, not a page's. Versions the patient's
//! consents refuse the caller are left out, as from a search.

use super::clinical::{patient_of, served, DIRECTORY, PATIENT};
use super::consent_gate::{ConsentView, Subject};
use super::records::{HistoryItem, HistoryResult, Query, DEFAULT_PAGE};
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::fhir::{self, resources};
use crate::ports::{KeyService, RecordStore, Version};

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The history of one type (`resource_type`) or, with None, of every
    /// type in the compartment. A type's history is refused whole (403)
    /// when the caller may not search the type; the compartment's leaves
    /// out the types the caller's role, scopes or the patient's consents
    /// exclude, as `$everything` does.
    pub async fn history(
        &self,
        caller: &Caller,
        resource_type: Option<&str>,
        query: Query,
        audit: &mut AuditEntry,
    ) -> Result<HistoryResult> {
        let ty = resource_type.map(served).transpose()?.map(|(ty, _)| ty);
        let directory = ty.is_some_and(|ty| resources::directory_type(ty).is_some());
        let route = ty.map_or("_history".to_owned(), |ty| format!("{ty}/_history"));
        let (query, after) = self.search_params(caller, &route, query)?;
        let mut count = DEFAULT_PAGE;
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
                "patient" if !directory => {
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
                        "a history takes patient (except a directory type's), _since, _count and _cursor".into(),
                    ))
                }
            }
        }
        let compartment = match directory {
            true => DIRECTORY.to_owned(),
            false => patient.ok_or_else(|| {
                Error::BadRequest(
                    "a history names its patient (patient=Patient/{id}); a sync of every patient is Bulk Data's".into(),
                )
            })?,
        };
        let patient = patient_of(&compartment);
        audit.patient = patient.map(str::to_owned);
        let consents = match ty {
            Some(ty) => {
                self.check(caller, ty, Action::Search, patient)?;
                self.consent_gate(caller, &compartment, ty).await?
            }
            None => {
                self.check(caller, PATIENT, Action::Read, patient)?;
                self.consent_gate(caller, &compartment, PATIENT).await?
            }
        };
        let disclosed = |t: &str| {
            ty.is_some()
                || (self.check(caller, t, Action::Read, patient).is_ok()
                    && self.consent_before(caller, &consents, t).is_ok())
        };
        let mut versions: Vec<(&'static str, String, Version)> = self
            .store
            .compartment_versions(&compartment, ty)
            .await?
            .into_iter()
            .filter_map(|(t, id, v)| Some((resources::served_type(&t)?.name.as_str(), id, v)))
            .filter(|(t, _, v)| disclosed(t) && since.as_ref().is_none_or(|s| v.last_updated >= *s))
            .collect();
        // Newest first; the key is the cursor's place (instants are fixed-width UTC).
        let key = |(t, id, v): &(&str, String, Version)| format!("{}|{t}/{id}|{:010}", v.last_updated, v.version);
        versions.sort_by_key(|b| std::cmp::Reverse(key(b)));
        let keys: Vec<String> = versions.iter().map(key).collect();
        let start = after.as_ref().map_or(0, |a| keys.partition_point(|k| k >= a));
        let restricted = matches!(consents, ConsentView::Consents(_));
        let data_key = if versions.is_empty() { None } else { Some(self.patient_key(&compartment).await?) };
        let mut items = vec![];
        let mut total = 0;
        let mut last = None;
        for (i, (t, id, v)) in versions.iter().enumerate() {
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
                    Some(self.decrypt_record(k, &compartment, t, id, v.version, v.ciphertext.as_deref())?)
                }
                _ => None,
            };
            if resource.as_ref().is_some_and(|r| self.consent_on(caller, &consents, Subject::read(t, id, r)).is_err()) {
                // A caller refused the Patient is refused its record, as by
                // `$everything`: not answered a history without it.
                if *t == PATIENT {
                    return Err(Error::Forbidden("consent: the patient's consent does not permit this access".into()));
                }
                continue;
            }
            total += 1;
            if on_page {
                last = Some(i);
                items.push(HistoryItem {
                    resource_type: (*t).to_owned(),
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
        audit.entities = items.iter().map(|v| format!("{}/{}/_history/{}", v.resource_type, v.id, v.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor =
            last.filter(|_| has_more).map(|i| self.next_page(caller, &route, query, count, keys[i].clone()));
        Ok(HistoryResult { total, items, next_cursor })
    }
}
