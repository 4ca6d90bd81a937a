//! Search of Immunization and Observation within one patient's compartment.
//! A clinical search must name its patient (or come with a patient-context
//! token): minimum necessary, and no cross-patient fishing through clinical
//! codes. The compartment's records are read in one query, decrypted, and
//! matched in memory, so no clinical value needs a plaintext index.

use super::consent_gate::{ConsentView, Subject};
use super::records::{SearchResult, Stored, DEFAULT_PAGE};
use super::{Caller, Services, COMPARTMENT_TYPES};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::documents::essence;
use crate::error::{Error, Result};
use crate::fhir::primitives::is_id;
use crate::fhir::search::{date_matches, date_range, quantity_matches, token_matches};
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

/// (name, type, documentation) per clinical type, for the CapabilityStatement.
pub const IMMUNIZATION_PARAMS: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/{id} or {id}; required unless the token has a patient context."),
    ("date", "date", "occurrence, with eq, ne, gt, lt, ge, le prefixes."),
    ("vaccine-code", "token", "system|code, |code or code."),
    ("status", "token", "Immunization status."),
    ("lot-number", "string", "Lot number, exact (case-insensitive)."),
    ("_sort", "special", "date, -date, _lastUpdated or -_lastUpdated (default: by id)."),
    ("_id", "token", "Logical id."),
];

pub const OBSERVATION_PARAMS: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/{id} or {id}; required unless the token has a patient context."),
    ("code", "token", "system|code, |code or code."),
    ("category", "token", "system|code, |code or code."),
    ("date", "date", "effective[x], with eq, ne, gt, lt, ge, le prefixes."),
    ("value-quantity", "quantity", "[prefix]number|system|code."),
    ("_sort", "special", "date, -date, _lastUpdated or -_lastUpdated (default: by id)."),
    ("status", "token", "Observation status."),
    ("_id", "token", "Logical id."),
];

pub const CONSENT_PARAMS: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/{id} or {id}; required unless the token has a patient context."),
    ("status", "token", "Consent state."),
    ("_id", "token", "Logical id."),
];

pub const DOCUMENT_PARAMS: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/{id} or {id}; required unless the token has a patient context."),
    ("status", "token", "DocumentReference status (current, superseded, entered-in-error)."),
    ("type", "token", "Document type: system|code, |code or code."),
    ("category", "token", "Document category: system|code, |code or code."),
    ("date", "date", "When the reference was created, with eq, ne, gt, lt, ge, le prefixes."),
    ("contenttype", "token", "MIME type of the content."),
    ("_sort", "special", "date, -date, _lastUpdated or -_lastUpdated (default: by id)."),
    ("_id", "token", "Logical id."),
];

fn params_of(ty: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match ty {
        "Immunization" => IMMUNIZATION_PARAMS,
        "Consent" => CONSENT_PARAMS,
        "DocumentReference" => DOCUMENT_PARAMS,
        _ => OBSERVATION_PARAMS,
    }
}

/// Whether one value of a parameter can be read as the parameter's type.
fn well_formed(name: &str, value: &str) -> bool {
    let probe = (time::OffsetDateTime::UNIX_EPOCH, time::OffsetDateTime::UNIX_EPOCH);
    match name {
        "date" => date_matches(probe, value).is_some(),
        "value-quantity" => quantity_matches(&Value::Null, value).is_some(),
        "_id" => is_id(value),
        _ => !value.is_empty(),
    }
}

/// Does one resource satisfy one parameter (any of its comma-separated
/// values)? A value that cannot be read as its type is a 400.
fn matches(ty: &str, r: &Value, name: &str, values: &str) -> Result<bool> {
    let bad = || Error::BadRequest(format!("'{name}' has a value that is not a valid {name}"));
    for v in values.split(',') {
        let hit = match name {
            "_id" => r["id"].as_str() == Some(v),
            "status" => token_matches(&r["status"], v),
            "vaccine-code" => token_matches(&r["vaccineCode"], v),
            "code" => token_matches(&r["code"], v),
            "type" => token_matches(&r["type"], v),
            "contenttype" => r["content"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| c["attachment"]["contentType"].as_str().is_some_and(|t| essence(t) == essence(v)))
            }),
            "category" => token_matches(&r["category"], v),
            "lot-number" => r["lotNumber"].as_str().is_some_and(|l| l.eq_ignore_ascii_case(v)),
            "date" => {
                let range = date_element(ty, r).and_then(date_range);
                let probe = range.unwrap_or((time::OffsetDateTime::UNIX_EPOCH, time::OffsetDateTime::UNIX_EPOCH));
                let hit = date_matches(probe, v).ok_or_else(bad)?;
                range.is_some() && hit
            }
            "value-quantity" => quantity_matches(r.get("valueQuantity").unwrap_or(&Value::Null), v).ok_or_else(bad)?,
            _ => false,
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
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
        let known = params_of(ty);
        let (params, after) = self.search_params(caller, ty, params)?;
        // Names only, and only names medrec defines (audit attributes are plaintext).
        audit.query_params = params
            .iter()
            .map(|(k, _)| match known.iter().find(|(p, _, _)| *p == k) {
                Some((p, _, _)) => (*p).to_owned(),
                None if k == "_count" || k == "_sort" => k.clone(),
                None => "unrecognised".to_owned(),
            })
            .collect();
        let mut count = DEFAULT_PAGE;
        let mut sort = None;
        let mut patient = caller.principal.patient.clone();
        let mut filters = Vec::new();
        for (name, value) in &params {
            match name.as_str() {
                "_count" => count = super::records::page_size(value)?,
                "_sort" => {
                    sort = match value.as_str() {
                        "date" | "-date" | "_lastUpdated" | "-_lastUpdated" => Some(value.clone()),
                        _ => {
                            return Err(Error::BadRequest(
                                "_sort takes date, -date, _lastUpdated or -_lastUpdated".into(),
                            ))
                        }
                    }
                }
                "patient" => {
                    let id = value.strip_prefix("Patient/").unwrap_or(value);
                    if !is_id(id) {
                        return Err(Error::BadRequest("patient must be Patient/{id} or {id}".into()));
                    }
                    match &patient {
                        // A patient-context token asking for another compartment finds nothing.
                        Some(own) if own != id => return Err(Error::NotFound),
                        _ => patient = Some(id.to_owned()),
                    }
                }
                n if n.contains(':') || !known.iter().any(|(p, _, _)| *p == n) => {
                    let names: Vec<&str> = known.iter().map(|(p, _, _)| *p).collect();
                    return Err(super::unsupported_parameter(n, &names));
                }
                n => {
                    // Checked before anything is read: a malformed value is a
                    // 400 whether or not the compartment holds records.
                    if !self.search_values(value)?.iter().all(|v| well_formed(n, v)) {
                        return Err(Error::BadRequest(format!("'{n}' has a value that is not a valid {n}")));
                    }
                    filters.push((n, value.as_str()))
                }
            }
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
                let mut keep = true;
                for (name, value) in &filters {
                    keep = keep && matches(ty, &resource, name, value)?;
                }
                // What the patient's consents refuse this caller is not a match.
                if keep && self.consent_on(caller, &consents, Subject::read(ty, &id, &resource)).is_ok() {
                    hits.push(Stored::new(id, current.version, current.last_updated, resource));
                }
            }
        }
        // Each hit's place in the requested order, as a string that sorts that
        // way (the id breaks ties): the cursor resumes after the last one.
        let mut keyed: Vec<(String, Stored)> =
            hits.into_iter().map(|h| (sort_key(ty, &h, sort.as_deref()), h)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let total = keyed.len();
        let start = after.as_ref().map_or(0, |a| keyed.partition_point(|(k, _)| k <= a));
        let has_more = start + count < total;
        let page: Vec<(String, Stored)> = keyed.into_iter().skip(start).take(count).collect();
        let last_key = page.last().map(|(k, _)| k.clone());
        let resources: Vec<Stored> = page.into_iter().map(|(_, s)| s).collect();
        audit.entities = resources.iter().map(|r| format!("{ty}/{}/_history/{}", r.id, r.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor = last_key.filter(|_| has_more).map(|last| self.next_page(caller, ty, params, count, last));
        Ok(SearchResult { total: Some(total), resources, next_cursor, notes: vec![] })
    }
}

/// The key that orders a hit for `_sort` (ascending, or descending with a
/// leading `-`); records without the date sort last either way.
fn sort_key(ty: &str, hit: &Stored, sort: Option<&str>) -> String {
    let Some(sort) = sort else { return hit.id.clone() };
    let (descending, field) = match sort.strip_prefix('-') {
        Some(f) => (true, f),
        None => (false, sort),
    };
    let value = match field {
        "date" => date_element(ty, &hit.resource).and_then(date_range).map(|r| r.0),
        _ => crate::fhir::primitives::datetime_bounds(&hit.last_updated).map(|r| r.0),
    };
    // Seconds shifted positive, inverted for descending, fixed width.
    let rank = match value {
        Some(t) => {
            let s = (t.unix_timestamp() + (1 << 40)) as u64;
            if descending {
                (1u64 << 42) - s
            } else {
                s
            }
        }
        None => u64::MAX,
    };
    format!("{rank:020}|{}", hit.id)
}

/// The element a type's `date` parameter searches.
fn date_element<'v>(ty: &str, r: &'v Value) -> Option<&'v Value> {
    if ty == "Immunization" {
        r.get("occurrenceDateTime")
    } else if ty == "DocumentReference" {
        r.get("date")
    } else {
        ["effectiveDateTime", "effectivePeriod", "effectiveInstant", "dateTime"].iter().find_map(|k| r.get(*k))
    }
}

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
        let types = COMPARTMENT_TYPES.into_iter().skip(1).filter(|ty| {
            self.check(caller, ty, Action::Read, Some(patient)).is_ok()
                && self.consent_before(caller, &consents, ty).is_ok()
        });
        let route = format!("Patient/{patient}/$everything");
        let paging = cursor.map(|c| vec![("_cursor".to_owned(), c.to_owned())]).unwrap_or_default();
        let (_, after) = self.search_params(caller, &route, paging)?;
        let current = self.store.current(patient, "Patient", patient).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        // (sort key, type, id, current): the Patient first (empty key), then by type and id.
        let mut all = vec![(String::new(), "Patient", patient.to_owned(), current)];
        for ty in types {
            for (id, c) in self.store.compartment(patient, ty).await?.into_iter().filter(|(_, c)| !c.deleted) {
                all.push((format!("{ty}/{id}"), ty, id, c));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let total = all.len();
        let start = after.as_ref().map_or(0, |a| all.partition_point(|(k, ..)| k <= a));
        let has_more = start + count < total;
        let key = self.patient_key(patient).await?;
        let mut resources = Vec::with_capacity(count);
        let mut last = None;
        for (sort_key, ty, id, c) in all.into_iter().skip(start).take(count) {
            last = Some(sort_key);
            let resource = self.decrypt_record(&key, patient, ty, &id, c.version, c.ciphertext.as_deref())?;
            // A record its consent provisions refuse (by code, label,
            // instance...) is left out like a refused type.
            if self.consent_on(caller, &consents, Subject::read(ty, &id, &resource)).is_err() {
                if ty == "Patient" {
                    return Err(Error::Forbidden("consent: the patient's consent does not permit this access".into()));
                }
                continue;
            }
            audit.entities.push(format!("{ty}/{id}/_history/{}", c.version));
            resources.push(Stored::new(id, c.version, c.last_updated, resource));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_match_decrypted_resources() {
        let imm = json!({"id": "i1", "status": "completed", "lotNumber": "AB12",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
            "occurrenceDateTime": "2026-11-20T09:00:00Z"});
        let m = |n, v| matches("Immunization", &imm, n, v).unwrap();
        assert!(m("vaccine-code", "http://hl7.org/fhir/sid/cvx|208"));
        assert!(m("vaccine-code", "140,208"), "comma is OR");
        assert!(!m("vaccine-code", "140"));
        assert!(m("lot-number", "ab12"));
        assert!(m("date", "ge2026-11-01") && !m("date", "lt2026-11-01"));
        assert!(m("_id", "i1"));
        assert!(matches("Immunization", &imm, "date", "soon").is_err());
        let obs = json!({"effectivePeriod": {"start": "2026-11-01", "end": "2026-11-02"},
            "valueQuantity": {"value": 120, "code": "mm[Hg]"}});
        assert!(matches("Observation", &obs, "date", "2026-11").unwrap());
        assert!(matches("Observation", &obs, "value-quantity", "gt100||mm[Hg]").unwrap());
        assert!(matches("Observation", &json!({}), "value-quantity", "nonsense").is_err());
    }
}
