//! Search of compartment records within one patient's compartment, by the
//! parameters the resource table gives each type.
//! A clinical search must name its patient (or come with a patient-context
//! token): minimum necessary, and no cross-patient fishing through clinical
//! codes. The compartment's records are read in one query, decrypted, and
//! matched in memory, so no clinical value needs a plaintext index.
//! A directory type is searched through its blind index (`directory_search`).

use super::consent_gate::{ConsentView, Subject};
use super::directory_search::DirectorySearch;
use super::records::{SearchResult, Stored, DEFAULT_PAGE};
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::fhir::primitives::is_id;
use crate::fhir::resources::{compartment_type, served_type, ResourceDef, SearchParam};
use crate::fhir::search_params::{matches, sort_value, well_formed, Modifier};
use crate::ports::{KeyService, RecordStore, MAX_CURRENTS};

/// A parameter of the search, with its modifier, as the request named it.
pub(crate) struct Filter<'q> {
    pub param: &'static SearchParam,
    pub modifier: Option<Modifier>,
    pub value: &'q str,
}

/// The one `_sort` parameter and whether it is descending.
pub(crate) type Sort = Option<(&'static SearchParam, bool)>;

/// A page of hits in the requested order, from after the cursor's key.
pub(crate) struct Ordered {
    pub resources: Vec<Stored>,
    pub total: usize,
    /// The key of the page's last hit, when more follow.
    pub next_after: Option<String>,
}

/// Orders every hit of a search (by `_sort`, then id) and takes the page
/// after `after`: the cursor resumes after the last key it gave.
pub(crate) fn in_order(hits: Vec<Stored>, sort: Sort, after: Option<&str>, count: usize) -> Ordered {
    let mut keyed: Vec<(String, Stored)> = hits.into_iter().map(|h| (sort_key(&h, sort), h)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let total = keyed.len();
    let start = after.map_or(0, |a| keyed.partition_point(|(k, _)| k.as_str() <= a));
    let has_more = start + count < total;
    let page: Vec<(String, Stored)> = keyed.into_iter().skip(start).take(count).collect();
    let next_after = page.last().map(|(k, _)| k.clone()).filter(|_| has_more);
    Ordered { resources: page.into_iter().map(|(_, s)| s).collect(), total, next_after }
}

/// The one `_sort` key: a date, string, token, number or quantity
/// parameter of the type, `_lastUpdated` or `_id`, `-` for descending.
pub(crate) fn sort_param(def: &'static ResourceDef, value: &str) -> Result<Sort> {
    let (descending, name) = match value.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, value),
    };
    if value.contains(',') {
        return Err(Error::BadRequest("_sort takes one parameter".into()));
    }
    match def.sortable_params().find(|p| p.name == name) {
        Some(p) => Ok(Some((p, descending))),
        None => Err(Error::BadRequest(
            "_sort takes a date, string, token, number or quantity parameter of the type, optionally with -".into(),
        )),
    }
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    pub async fn search_records(
        &self,
        caller: &Caller,
        resource_type: &str,
        params: Vec<(String, String)>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        let (ty, _) = super::clinical::served(resource_type)?;
        if ty == super::clinical::PATIENT {
            return self.search_patients(caller, params, audit).await;
        }
        let def = served_type(ty).ok_or(Error::NotFound)?;
        let (params, after) = self.search_params(caller, ty, params)?;
        // Names only, and only names medrec defines (audit attributes are plaintext).
        audit.query_params = params
            .iter()
            .map(|(k, _)| {
                let (base, modifier) = k.split_once(':').unwrap_or((k, ""));
                match def.param(base) {
                    Some(p) if modifier.is_empty() || Modifier::parse(&p.kind, modifier).is_some() => k.clone(),
                    Some(_) => format!("{base}:unrecognised"),
                    None if matches!(k.as_str(), "_count" | "_sort" | "patient") => k.clone(),
                    None => "unrecognised".to_owned(),
                }
            })
            .collect();
        let mut count = DEFAULT_PAGE;
        let mut sort = None;
        let mut patient = caller.principal.patient.clone();
        let mut filters = Vec::new();
        for (name, value) in &params {
            let (base, modifier) = match name.split_once(':') {
                Some((b, m)) => (b, Some(m)),
                None => (name.as_str(), None),
            };
            match (base, modifier) {
                ("_count", None) => count = super::records::page_size(value)?,
                ("_sort", None) => sort = sort_param(def, value)?,
                // The compartment: `patient`, or the compartment element's
                // own parameter naming a Patient (`subject=Patient/1`).
                (n, None)
                    if def.compartment.is_some()
                        && (n == "patient"
                            || (Some(n) == def.compartment.as_deref()
                                && value.starts_with("Patient/")
                                && !value.contains(','))) =>
                {
                    let id = value.strip_prefix("Patient/").unwrap_or(value);
                    if !is_id(id) {
                        return Err(Error::BadRequest(format!("{n} must be Patient/{{id}} or {{id}}")));
                    }
                    match &patient {
                        // A patient-context token asking for another compartment finds nothing.
                        Some(own) if own != id => return Err(Error::NotFound),
                        _ => patient = Some(id.to_owned()),
                    }
                }
                (n, m) => {
                    let names: Vec<&str> = def.all_params().map(|p| p.name.as_str()).collect();
                    let Some(param) = def.param(n) else {
                        return Err(super::unsupported_parameter(name, &names));
                    };
                    let modifier = match m {
                        None => None,
                        Some(m) => Some(Modifier::parse(&param.kind, m).ok_or_else(|| {
                            Error::BadRequest(format!(
                                "{n} ({}) does not take that modifier; medrec supports :missing on every parameter, :not and :text on tokens, :exact and :contains on strings",
                                param.kind
                            ))
                        })?),
                    };
                    // Checked before anything is read: a malformed value is a
                    // 400 whether or not the compartment holds records.
                    if !self.search_values(value)?.iter().all(|v| well_formed(param, modifier, v)) {
                        return Err(Error::BadRequest(format!("'{n}' has a value that is not a valid {}", param.kind)));
                    }
                    filters.push(Filter { param, modifier, value: value.as_str() })
                }
            }
        }
        if def.compartment.is_none() {
            let search = DirectorySearch { def, filters, sort, count, after };
            return self.search_directory(caller, search, params.clone(), audit).await;
        }
        let patient = patient
            .ok_or_else(|| Error::BadRequest(format!("a {ty} search names its patient (patient=Patient/{{id}})")))?;
        audit.patient = Some(patient.clone());
        self.check(caller, ty, Action::Search, Some(&patient))?;
        let consents = self.consent_gate(caller, &patient, ty).await?;
        let records = self.store.compartment(&patient, ty).await?;
        let mut hits = Vec::new();
        if records.iter().any(|(_, c)| !c.deleted) {
            let key = self.patient_key(&patient).await?;
            for (id, current) in records.into_iter().filter(|(_, c)| !c.deleted) {
                let resource =
                    self.decrypt_record(&key, &patient, ty, &id, current.version, current.ciphertext.as_deref())?;
                let keep = filters.iter().all(|f| matches(f.param, f.modifier, &resource, f.value));
                // What the patient's consents refuse this caller is not a match.
                if keep && self.consent_on(caller, &consents, Subject::read(ty, &id, &resource)).is_ok() {
                    hits.push(Stored::new(id, current.version, current.last_updated, resource));
                }
            }
        }
        let page = in_order(hits, sort, after.as_deref(), count);
        audit.entities = page.resources.iter().map(|r| format!("{ty}/{}/_history/{}", r.id, r.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor = page.next_after.map(|last| self.next_page(caller, ty, params, count, last));
        Ok(SearchResult { total: Some(page.total), resources: page.resources, next_cursor, notes: vec![] })
    }
}

/// The key that orders a hit for `_sort` (ascending, or descending); hits
/// without a value sort last either way, then by id.
fn sort_key(hit: &Stored, sort: Sort) -> String {
    let Some((param, descending)) = sort else { return hit.id.clone() };
    match sort_value(param, &hit.resource) {
        Some(v) => format!("0{}|{}", v.key(descending), hit.id),
        None => format!("1|{}", hit.id),
    }
}

/// The most record bytes (sealed, about the JSON's size) one `$everything`
/// page carries, under Lambda's 6 MB response with room for the Bundle.
const EVERYTHING_MAX_BYTES: usize = 4 << 20;

/// The largest `$everything` page: a whole record in few requests.
pub const EVERYTHING_MAX_PAGE: usize = 1000;

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// `Patient/{id}/$everything`: the Patient then every record of its
    /// compartment, paged; one audit record per page naming what it
    /// disclosed.
    pub async fn everything(
        &self,
        caller: &Caller,
        patient: &str,
        count: usize,
        cursor: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        audit.patient = Some(patient.to_owned());
        audit.entities = vec![format!("Patient/{patient}")];
        self.check(caller, "Patient", Action::Read, Some(patient))?;
        let consents = self.consent_gate(caller, patient, "Patient").await?;
        // Types the caller's scopes or the patient's consents exclude are left
        // out, not refused: the rest of the record is still disclosed.
        let disclosed = |ty: &str| {
            self.check(caller, ty, Action::Read, Some(patient)).is_ok()
                && self.consent_before(caller, &consents, ty).is_ok()
        };
        let route = format!("Patient/{patient}/$everything");
        let paging = cursor.map(|c| vec![("_cursor".to_owned(), c.to_owned())]).unwrap_or_default();
        let (_, after) = self.search_params(caller, &route, paging)?;
        let current = self.store.current(patient, "Patient", patient).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        // The first page shows the Patient just read rather than reading it again.
        let mut patient_record = Some(current);
        // (sort key, type, id): the Patient first (empty key), then by type
        // and id, every type of the record listed in one query.
        let mut index = vec![(String::new(), "Patient", patient.to_owned())];
        for (ty, id, deleted) in self.store.compartment_index(patient).await? {
            let Some(def) = compartment_type(&ty) else { continue };
            if !deleted && disclosed(&def.name) {
                index.push((format!("{ty}/{id}"), def.name.as_str(), id));
            }
        }
        index.sort_by(|a, b| a.0.cmp(&b.0));
        let total = index.len();
        let start = after.as_ref().map_or(0, |a| index.partition_point(|(k, ..)| k <= a));
        let mut has_more = start + count < total;
        let page = &index[start..(start + count).min(total)];
        let key = self.patient_key(patient).await?;
        let mut resources = Vec::with_capacity(page.len());
        let mut last = None;
        let mut bytes = 0;
        'page: for chunk in page.chunks(MAX_CURRENTS) {
            let named: Vec<(String, String)> = chunk
                .iter()
                .filter(|(sort_key, ..)| !sort_key.is_empty())
                .map(|(_, ty, id)| ((*ty).to_owned(), id.clone()))
                .collect();
            let mut currents = self.store.currents(patient, &named).await?.into_iter();
            for (sort_key, ty, id) in chunk {
                let c = if sort_key.is_empty() { patient_record.take() } else { currents.next().flatten() };
                // Deleted since the index was read: left out like the rest.
                let Some(c) = c.filter(|c| !c.deleted) else { continue };
                // A Lambda answer holds 6 MB: a page of large records ends
                // early and the next page goes on from there.
                bytes += c.ciphertext.as_ref().map_or(0, Vec::len);
                if bytes > EVERYTHING_MAX_BYTES && last.is_some() {
                    has_more = true;
                    break 'page;
                }
                last = Some(sort_key.clone());
                let resource = self.decrypt_record(&key, patient, ty, id, c.version, c.ciphertext.as_deref())?;
                // A record its consent provisions refuse (by code, label,
                // instance...) is left out like a refused type.
                if self.consent_on(caller, &consents, Subject::read(ty, id, &resource)).is_err() {
                    if *ty == "Patient" {
                        return Err(Error::Forbidden(
                            "consent: the patient's consent does not permit this access".into(),
                        ));
                    }
                    continue;
                }
                audit.entities.push(format!("{ty}/{id}/_history/{}", c.version));
                resources.push(Stored::new(id.clone(), c.version, c.last_updated, resource));
            }
        }
        self.audit_read(caller, audit).await?;
        // Records a consent refuses by their content are only known once
        // read: under such consents the total is given for a whole result only.
        let total = match consents {
            ConsentView::Unrestricted => Some(total),
            ConsentView::Consents(_) => (!has_more && start == 0).then_some(resources.len()),
        };
        let next_cursor = last.filter(|_| has_more).map(|after| self.next_page(caller, &route, vec![], count, after));
        Ok(SearchResult { total, resources, next_cursor, notes: vec![] })
    }
}
