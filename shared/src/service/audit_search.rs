//! The audit trail, read back: AuditEvent search for auditors, and a
//! patient's accounting of disclosures (HIPAA §164.528): who accessed the
//! patient's records, when and why. Both read one patient's or one agent's
//! records through an index by time, and both are audited themselves.
//! Audit records hold ids and codes only, so they are returned as stored.

use super::records::{Query, SearchResult, Stored, DEFAULT_PAGE, MAX_PAGE};
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::fhir::primitives::{datetime_bounds, is_id};
use crate::fhir::search::{date_matches, token_matches};
use crate::ports::{AuditKey, AuditLog, KeyService, RecordStore};
use serde_json::Value;

/// (name, type, documentation), for the CapabilityStatement.
pub const AUDIT_PARAMS: &[(&str, &str, &str)] = &[
    ("patient", "reference", "Patient/{id} or {id}; a search names a patient or an agent."),
    ("agent", "token", "The agent's verified subject (urn:medrec:sub|value or value)."),
    ("date", "date", "recorded, with eq, gt, lt, ge, le prefixes (one or two)."),
    ("entity", "reference", "A resource the event names (any version of it)."),
    ("type", "token", "Event type (rest, 110114 for authentication)."),
    ("subtype", "token", "The interaction (read, search-type, create, ...)."),
    ("outcome", "token", "0 success, 4 denied or rejected, 8 server failure."),
    ("purpose", "token", "Purpose of use (TREAT, ETREAT, ...)."),
    ("_count", "number", "Page size, 1 to 100."),
];

const EARLIEST: &str = "0000-01-01T00:00:00.000Z";
const LATEST: &str = "9999-12-31T23:59:59.999Z";

/// The instant bounds a `date` parameter puts on the index query (the
/// exact comparison is made afterwards, on each record).
fn narrow(value: &str, from: &mut String, to: &mut String) -> Result<()> {
    let bad = || Error::BadRequest("'date' has a value that is not a valid date".into());
    let (prefix, date) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (first, last) = datetime_bounds(date).ok_or_else(bad)?;
    let (first, last) = (crate::fhir::instant(first), crate::fhir::instant(last));
    if matches!(prefix, "eq" | "ge" | "gt") && first > *from {
        *from = first;
    }
    if matches!(prefix, "eq" | "le" | "lt") && last < *to {
        *to = last;
    }
    Ok(())
}

fn agent_of(e: &Value) -> &str {
    e["agent"][0]["who"]["identifier"]["value"].as_str().unwrap_or_default()
}

fn references(e: &Value) -> impl Iterator<Item = &str> {
    e["entity"].as_array().into_iter().flatten().filter_map(|en| en["what"]["reference"].as_str())
}

/// Does one record satisfy one (name, value) filter? Dates were checked
/// when the index range was narrowed; the others take comma-separated values.
fn matches(e: &Value, name: &str, value: &str) -> bool {
    if name == "date" {
        let when = e["recorded"].as_str().and_then(datetime_bounds);
        return when.is_some_and(|w| date_matches(w, value).unwrap_or(false));
    }
    value.split(',').any(|v| match name {
        "agent" => agent_of(e) == v.strip_prefix("urn:medrec:sub|").unwrap_or(v),
        "entity" => {
            references(e).any(|r| r == v || r.strip_prefix(v).is_some_and(|rest| rest.starts_with("/_history/")))
        }
        "type" => token_matches(&e["type"], v),
        "subtype" => e["subtype"].as_array().into_iter().flatten().any(|s| token_matches(s, v)),
        "outcome" => e["outcome"] == v,
        "purpose" => e["purposeOfEvent"].as_array().into_iter().flatten().any(|p| token_matches(p, v)),
        _ => false,
    })
}

impl<S: RecordStore + AuditLog, K: KeyService> Services<S, K> {
    /// `GET /fhir/AuditEvent`: auditors (and admins) only.
    pub async fn search_audit(&self, caller: &Caller, params: Query, audit: &mut AuditEntry) -> Result<SearchResult> {
        self.check(caller, "AuditEvent", Action::Search, None)?;
        let (params, after) = self.search_params(caller, "AuditEvent", params)?;
        audit.query_params = params
            .iter()
            .map(|(k, _)| match AUDIT_PARAMS.iter().find(|(p, _, _)| p == k) {
                Some((p, _, _)) => (*p).to_owned(),
                None => "unrecognised".to_owned(),
            })
            .collect();
        let (mut from, mut to) = (EARLIEST.to_owned(), LATEST.to_owned());
        let (mut patient, mut agent, mut count, mut filters) = (None, None, DEFAULT_PAGE, vec![]);
        for (name, value) in &params {
            if value.is_empty() {
                return Err(Error::BadRequest(format!("'{name}' has an empty value")));
            }
            match name.as_str() {
                "patient" => {
                    let id = value.strip_prefix("Patient/").unwrap_or(value);
                    if !is_id(id) {
                        return Err(Error::BadRequest("patient must be Patient/{id} or {id}".into()));
                    }
                    patient = Some(id.to_owned())
                }
                "_count" => {
                    count =
                        value.parse().ok().filter(|c| (1..=MAX_PAGE).contains(c)).ok_or_else(|| {
                            Error::BadRequest(format!("_count must be an integer from 1 to {MAX_PAGE}"))
                        })?
                }
                "date" => {
                    narrow(value, &mut from, &mut to)?;
                    filters.push((name.as_str(), value.as_str()));
                }
                // The subject a token may carry (at most 256 characters, no controls).
                "agent" if value.len() > 256 || value.chars().any(char::is_control) => {
                    return Err(Error::BadRequest("agent is not a subject".into()))
                }
                "agent" => {
                    agent.get_or_insert_with(|| value.strip_prefix("urn:medrec:sub|").unwrap_or(value).to_owned());
                    filters.push((name.as_str(), value.as_str()));
                }
                "entity" | "type" | "subtype" | "outcome" | "purpose" => filters.push((name.as_str(), value.as_str())),
                other => return Err(Error::BadRequest(format!("unsupported AuditEvent search parameter '{other}'"))),
            }
        }
        let key = match (&patient, &agent) {
            (Some(p), _) => AuditKey::Patient(p),
            (None, Some(a)) => AuditKey::Agent(a),
            (None, None) => return Err(Error::BadRequest("an AuditEvent search names a patient or an agent".into())),
        };
        audit.patient = patient.clone();
        let mut events = vec![];
        for body in self.store.audit_records(key, &from, &to).await? {
            let e: Value =
                serde_json::from_str(&body).map_err(|_| Error::Internal("audit record is not JSON".into()))?;
            if filters.iter().all(|(name, value)| matches(&e, name, value)) {
                events.push(e);
            }
        }
        let sort_key =
            |e: &Value| format!("{}|{}", e["recorded"].as_str().unwrap_or(""), e["id"].as_str().unwrap_or(""));
        events.sort_by_key(sort_key);
        let total = events.len();
        let start = after.as_ref().map_or(0, |a| events.partition_point(|e| sort_key(e) <= *a));
        let page: Vec<Value> = events.into_iter().skip(start).take(count).collect();
        let has_more = start + page.len() < total;
        let next_cursor = page
            .last()
            .filter(|_| has_more)
            .map(|last| self.next_page(caller, "AuditEvent", params.clone(), count, sort_key(last)));
        self.audit_read(caller, audit).await?;
        let resources = page
            .into_iter()
            .map(|e| Stored {
                id: e["id"].as_str().unwrap_or_default().to_owned(),
                version: 1,
                last_updated: e["recorded"].as_str().unwrap_or_default().to_owned(),
                resource: e,
            })
            .collect();
        Ok(SearchResult { total, resources, next_cursor })
    }

    /// The accounting of disclosures of `patient` from `start` to `end`
    /// (dates or instants, both optional): every successful read, search or
    /// export that touched the patient's compartment, oldest first. For
    /// auditors, admins and the patient themself.
    pub async fn disclosures(
        &self,
        caller: &Caller,
        patient: &str,
        start: Option<&str>,
        end: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<Vec<Value>> {
        audit.patient = Some(patient.to_owned());
        audit.entities = vec![format!("Patient/{patient}")];
        self.check(caller, "AuditEvent", Action::Read, Some(patient))?;
        let (mut from, mut to) = (EARLIEST.to_owned(), LATEST.to_owned());
        if let Some(s) = start {
            narrow(&format!("ge{s}"), &mut from, &mut to)?;
        }
        if let Some(e) = end {
            narrow(&format!("le{e}"), &mut from, &mut to)?;
        }
        let mut out = vec![];
        for body in self.store.audit_records(AuditKey::Patient(patient), &from, &to).await? {
            let e: Value =
                serde_json::from_str(&body).map_err(|_| Error::Internal("audit record is not JSON".into()))?;
            if e["outcome"] == "0" && matches!(e["action"].as_str(), Some("R" | "E")) {
                out.push(e);
            }
        }
        self.audit_read(caller, audit).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn date_parameters_narrow_the_index_range() {
        let (mut from, mut to) = (EARLIEST.to_owned(), LATEST.to_owned());
        narrow("ge2026-11-01", &mut from, &mut to).unwrap();
        narrow("le2026-11-30", &mut from, &mut to).unwrap();
        assert_eq!(from, "2026-11-01T00:00:00.000Z");
        assert!(to.starts_with("2026-11-30T23:59:59"));
        assert!(narrow("ge-yesterday", &mut from, &mut to).is_err());
    }

    #[test]
    fn filters_read_the_stored_event() {
        let e = json!({"recorded": "2026-11-20T10:00:00.000Z", "outcome": "0",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "purposeOfEvent": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}],
            "agent": [{"who": {"identifier": {"system": "urn:medrec:sub", "value": "dr-1"}}}],
            "entity": [{"what": {"reference": "Observation/o1/_history/2"}}]});
        for (name, value, expected) in [
            ("agent", "dr-1", true),
            ("agent", "urn:medrec:sub|dr-2", false),
            ("entity", "Observation/o1", true),
            ("entity", "Observation/o", false),
            ("subtype", "read", true),
            ("subtype", "create,read", true),
            ("outcome", "4", false),
            ("purpose", "TREAT", true),
            ("date", "ge2026-11-20", true),
            ("date", "lt2026-11-20", false),
        ] {
            assert_eq!(matches(&e, name, value), expected, "{name}={value}");
        }
    }
}
