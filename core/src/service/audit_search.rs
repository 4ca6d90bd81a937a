//! The audit trail, read back: AuditEvent search for auditors, and a
//! patient's accounting of disclosures (HIPAA §164.528): who accessed the
//! patient's records, when and why. Both read one patient's or one agent's
//! records through an index by time, and both are audited themselves.
//! Audit records hold ids and codes only, so they are returned as stored.

use super::clinical::DIRECTORY;
use super::records::{Query, SearchResult, Stored, DEFAULT_PAGE};
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::auth::Role;
use crate::error::{Error, Result};
use crate::fhir::primitives::{datetime_bounds, is_id};
use crate::fhir::search::{date_matches, token_matches};
use crate::ports::{AuditKey, AuditLog, BreakGlassReview, KeyService, RecordStore};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

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
    (
        "_review",
        "token",
        "With subtype=break-glass: pending or reviewed; the break-glass review queue, each access with its reason.",
    ),
    ("_count", "number", "Page size (at most 100 a page)."),
];

/// What an auditor may find of a break-glass access.
pub const REVIEW_OUTCOMES: [&str; 3] = ["justified", "unjustified", "follow-up"];

/// The most records one read of the trail asks for.
const MAX_CHUNK: usize = 500;
/// The records one search page may examine before it answers with what it
/// found and a cursor past them: a selective filter over a long trail then
/// costs more pages, never one unbounded request.
const MAX_SCANNED: usize = 5_000;

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

fn recorded(e: &Value) -> &str {
    e["recorded"].as_str().unwrap_or_default()
}

/// A record's place in the trail's order, and what a cursor holds.
fn sort_key(e: &Value) -> String {
    format!("{}|{}", recorded(e), e["id"].as_str().unwrap_or_default())
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
        if let Some((_, state)) = params.iter().find(|(k, _)| k == "_review") {
            return self.break_glass_queue(caller, &params, state == "reviewed", after, audit).await;
        }
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
                "_count" => count = super::records::page_size(value)?,
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
        // Resume at the cursor's instant: its group is read again and what
        // the cursor already passed is skipped by (instant, id).
        let start = match after.as_deref().and_then(|a| a.split_once('|')) {
            Some((at, _)) if at > from.as_str() => at.to_owned(),
            _ => from,
        };
        let (mut page, mut scanned, mut last_seen, mut more) = (vec![], 0, None, false);
        self.walk_audit(key, &start, &to, count + 1, |group| {
            for e in group {
                let k = sort_key(&e);
                if after.as_ref().is_some_and(|a| k <= *a) {
                    continue;
                }
                if filters.iter().all(|(name, value)| matches(&e, name, value)) {
                    if page.len() == count {
                        more = true;
                        return false;
                    }
                    page.push(e);
                }
                last_seen = Some(k);
                scanned += 1;
            }
            more = scanned >= MAX_SCANNED;
            !more
        })
        .await?;
        // The total is known only when one page held the whole answer.
        let total = (after.is_none() && !more).then_some(page.len());
        let next_cursor =
            last_seen.filter(|_| more).map(|last| self.next_page(caller, "AuditEvent", params.clone(), count, last));
        self.audit_read(caller, audit).await?;
        let resources = page
            .into_iter()
            .map(|e| {
                let (id, recorded) = (e["id"].as_str().unwrap_or_default(), e["recorded"].as_str().unwrap_or_default());
                Stored::new(id.to_owned(), 1, recorded.to_owned(), e)
            })
            .collect();
        Ok(SearchResult { total, resources, next_cursor, notes: vec![] })
    }

    /// Walks the records of `key` from `from` to `to`, oldest first, handing
    /// `visit` each group of records of one instant whole and ordered by id,
    /// until it answers false or the window ends. The reads start at `first`
    /// records and double up to `MAX_CHUNK`, so a page costs about its own
    /// size. The indexes order by instant alone: a chunk that ends inside a
    /// group is cut before it, and the next starts at the group's instant.
    async fn walk_audit(
        &self,
        key: AuditKey<'_>,
        from: &str,
        to: &str,
        first: usize,
        mut visit: impl FnMut(Vec<Value>) -> bool + Send,
    ) -> Result<()> {
        let mut from = from.to_owned();
        let mut chunk = first.max(1);
        loop {
            let bodies = self.store.audit_records(key, &from, to, chunk).await?;
            let full = bodies.len() == chunk;
            let mut events = bodies
                .iter()
                .map(|b| {
                    serde_json::from_str::<Value>(b).map_err(|_| Error::Internal("audit record is not JSON".into()))
                })
                .collect::<Result<Vec<_>>>()?;
            if full {
                let last = recorded(&events[chunk - 1]).to_owned();
                let cut = events.partition_point(|e| recorded(e) < last.as_str());
                if cut == 0 {
                    // One instant fills the chunk: read it whole.
                    chunk *= 2;
                    continue;
                }
                events.truncate(cut);
                from = last;
            }
            let mut events = events.into_iter().peekable();
            while let Some(e) = events.next() {
                let mut group = vec![e];
                while let Some(next) = events.next_if(|n| recorded(n) == recorded(&group[0])) {
                    group.push(next);
                }
                group.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                if !visit(group) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
            chunk = (chunk * 2).clamp(first, MAX_CHUNK.max(first));
        }
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
        let for_patient = super::consent_gate::is_own_patient(caller, patient);
        self.walk_audit(AuditKey::Patient(patient), &from, &to, MAX_CHUNK, |group| {
            out.extend(
                group.into_iter().filter(|e| e["outcome"] == "0" && matches!(e["action"].as_str(), Some("R" | "E"))),
            );
            true
        })
        .await?;
        let names = self.directory_names(&out).await?;
        for e in &mut out {
            if for_patient {
                as_patient_sees_it(e);
            }
            for agent in e["agent"].as_array_mut().into_iter().flatten() {
                let name = agent["who"]["reference"].as_str().and_then(|r| names.get(r));
                if let Some(name) = name {
                    agent["who"]["display"] = match agent["who"]["display"].as_str() {
                        Some(role) if for_patient => json!(format!("{name} ({role})")),
                        _ => json!(name),
                    };
                }
            }
        }
        self.audit_read(caller, audit).await?;
        Ok(out)
    }

    /// The directory's names of the staff an accounting names (their
    /// `fhirUser`, `Practitioner/{id}`), so a patient reads who, not an
    /// id; at most `MAX_NAMED_AGENTS` lookups, the rest stay ids.
    async fn directory_names(&self, events: &[Value]) -> Result<HashMap<String, String>> {
        let ids: BTreeSet<&str> = events
            .iter()
            .flat_map(|e| e["agent"].as_array().into_iter().flatten())
            .filter_map(|a| a["who"]["reference"].as_str()?.strip_prefix("Practitioner/"))
            .filter(|id| is_id(id))
            .collect();
        let mut names = HashMap::new();
        if ids.is_empty() || self.store.wrapped_key(DIRECTORY).await?.is_none() {
            return Ok(names);
        }
        let key = self.patient_key(DIRECTORY).await?;
        for id in ids.into_iter().take(MAX_NAMED_AGENTS) {
            let Some(c) = self.store.current(DIRECTORY, "Practitioner", id).await?.filter(|c| !c.deleted) else {
                continue;
            };
            let p = self.decrypt_record(&key, DIRECTORY, "Practitioner", id, c.version, c.ciphertext.as_deref())?;
            if let Some(name) = p["name"].as_array().and_then(|n| n.first()).and_then(display_name) {
                names.insert(format!("Practitioner/{id}"), name);
            }
        }
        Ok(names)
    }

    /// `AuditEvent?subtype=break-glass&_review=pending|reviewed`: the review
    /// queue, oldest first, each access with its reason (decrypted: the
    /// reviewer reads it, and that read is audited per patient) and, once
    /// reviewed, the finding.
    async fn break_glass_queue(
        &self,
        caller: &Caller,
        params: &Query,
        reviewed: bool,
        after: Option<String>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        let mut count = DEFAULT_PAGE;
        for (name, value) in params {
            match (name.as_str(), value.as_str()) {
                ("_review", "pending" | "reviewed") | ("subtype", crate::audit::BREAK_GLASS_SUBTYPE) => {}
                ("_count", c) => count = super::records::page_size(c)?,
                _ => {
                    return Err(Error::BadRequest(
                        "the review queue takes subtype=break-glass, _review=pending|reviewed and _count".into(),
                    ))
                }
            }
        }
        if !params.iter().any(|(k, v)| k == "subtype" && v == crate::audit::BREAK_GLASS_SUBTYPE) {
            return Err(Error::BadRequest("_review goes with subtype=break-glass".into()));
        }
        // One more than the page: whether there is a next one.
        let mut page = self.store.break_glass_accesses(reviewed, after.as_deref(), count + 1).await?;
        let has_more = page.len() > count;
        page.truncate(count);
        let mut resources = Vec::with_capacity(page.len());
        let mut disclosed: Vec<(String, Vec<String>)> = vec![];
        for access in &page {
            // An erased patient's key is gone, and with it the reason and
            // any note: the access itself stays to be reviewed.
            let patient_key = match self.patient_key(&access.patient).await {
                Ok(k) => Some(k),
                Err(Error::Gone) => None,
                Err(e) => return Err(e),
            };
            let reason = match &patient_key {
                Some(k) => {
                    let aad = super::break_glass_aad(&access.patient, &access.audit_id);
                    let reason = crate::crypto::open(k, &aad, &access.sealed_reason).map_err(|_| {
                        Error::Internal("a sealed break-glass reason failed its integrity check".into())
                    })?;
                    String::from_utf8_lossy(&reason).into_owned()
                }
                None => ERASED.to_owned(),
            };
            let mut event: Value = serde_json::from_str(&access.audit_event)
                .map_err(|_| Error::Internal("audit record is not JSON".into()))?;
            let mut detail = vec![json!({"type": "break-glass-reason", "valueString": reason})];
            let mut review =
                json!([{"url": "status", "valueCode": if access.review.is_some() { "reviewed" } else { "pending" }}]);
            if let Some(r) = &access.review {
                let list = review.as_array_mut().expect("an array");
                list.push(json!({"url": "outcome", "valueCode": r.outcome}));
                list.push(json!({"url": "reviewer", "valueString": r.reviewer}));
                list.push(json!({"url": "reviewed", "valueDateTime": r.at}));
                if let Some(note) = &r.sealed_note {
                    let note = match &patient_key {
                        Some(k) => crate::crypto::open(k, &review_note_aad(&access.patient, &access.audit_id), note)
                            .map(|n| String::from_utf8_lossy(&n).into_owned())
                            .map_err(|_| Error::Internal("a sealed review note failed its integrity check".into()))?,
                        None => ERASED.to_owned(),
                    };
                    detail.push(json!({"type": "review-note", "valueString": note}));
                }
            }
            push_array(&mut event, "entity", json!({"detail": detail}));
            push_array(&mut event, "extension", json!({"url": BREAK_GLASS_REVIEW_EXTENSION, "extension": review}));
            match disclosed.iter_mut().find(|(p, _)| *p == access.patient) {
                Some((_, entities)) => entities.push(format!("AuditEvent/{}", access.audit_id)),
                None => disclosed.push((access.patient.clone(), vec![format!("AuditEvent/{}", access.audit_id)])),
            }
            resources.push(Stored::new(access.audit_id.clone(), 1, access.recorded.clone(), event));
        }
        audit.query_params = vec!["subtype".into(), "_review".into()];
        let mut entries = Self::per_patient(audit, disclosed);
        self.audit_reads(caller, &mut entries).await?;
        let next_cursor = page
            .last()
            .filter(|_| has_more)
            .map(|last| self.next_page(caller, "AuditEvent", params.clone(), count, last.position()));
        // No total: counting the queue would read all of it on every page.
        Ok(SearchResult { total: None, resources, next_cursor, notes: vec![] })
    }

    /// `POST /fhir/AuditEvent/{id}/$review`: an auditor's finding on a
    /// break-glass access (`justified`, `unjustified`, `follow-up`) with an
    /// optional note (sealed under the patient's key), recorded once, by
    /// someone other than who broke the glass, and audited.
    pub async fn review_break_glass(
        &self,
        caller: &Caller,
        audit_id: &str,
        outcome: &str,
        note: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<()> {
        audit.interaction = crate::audit::BREAK_GLASS_REVIEW;
        audit.entities = vec![format!("AuditEvent/{audit_id}")];
        self.check(caller, "AuditEvent", Action::Search, None)?;
        if !caller.principal.roles.iter().any(|r| matches!(r, Role::Auditor | Role::Admin)) {
            return Err(Error::Forbidden("break-glass reviews are recorded by auditors".into()));
        }
        if !REVIEW_OUTCOMES.contains(&outcome) {
            return Err(Error::BadRequest(format!("outcome must be one of {}", REVIEW_OUTCOMES.join(", "))));
        }
        if note.is_some_and(|n| n.chars().count() > 2000 || n.chars().any(|c| c.is_control() && c != '\n')) {
            return Err(Error::BadRequest("note must be at most 2000 printable characters".into()));
        }
        let access = self.store.break_glass_access(audit_id).await?.ok_or(Error::NotFound)?;
        if access.review.is_some() {
            return Err(Error::Conflict("this access has been reviewed already".into()));
        }
        audit.patient = Some(access.patient.clone());
        let agent: Value = serde_json::from_str(&access.audit_event).unwrap_or_default();
        if agent["agent"][0]["who"]["identifier"]["value"] == caller.principal.subject.as_str() {
            return Err(Error::Forbidden("nobody reviews their own break-glass access".into()));
        }
        let sealed_note = match note {
            Some(n) => {
                let key = self.patient_key(&access.patient).await.map_err(|e| match e {
                    Error::Gone => Error::Conflict(
                        "the patient's record was erased: a note cannot be kept; record the review without one".into(),
                    ),
                    other => other,
                })?;
                Some(crate::crypto::seal(&key, &review_note_aad(&access.patient, audit_id), n.as_bytes()))
            }
            None => None,
        };
        let review = BreakGlassReview {
            outcome: outcome.to_owned(),
            reviewer: caller.principal.subject.clone(),
            at: crate::fhir::now_instant(),
            sealed_note,
        };
        audit.status = 200;
        audit.outcome = crate::audit::Outcome::Success;
        self.store.review_break_glass(&access, &review, audit).await.map_err(|e| match e {
            crate::error::PortError::ConditionFailed(_) => {
                Error::Conflict("this access has been reviewed already".into())
            }
            other => other.into(),
        })
    }
}

/// What stands for a reason or note sealed under an erased patient's key.
const ERASED: &str = "(erased with the patient's record)";

/// The extension carrying a break-glass access's review state.
pub const BREAK_GLASS_REVIEW_EXTENSION: &str = "urn:medrec:break-glass-review";

fn review_note_aad(patient: &str, audit_id: &str) -> Vec<u8> {
    format!("medrec/break-glass-review/{patient}/{audit_id}").into_bytes()
}

/// Staff names one accounting looks up in the directory.
const MAX_NAMED_AGENTS: usize = 50;

/// A HumanName as one line: its text, or prefix, given and family names.
fn display_name(name: &Value) -> Option<String> {
    if let Some(text) = name["text"].as_str() {
        return Some(text.to_owned());
    }
    let parts: Vec<&str> = ["prefix", "given"]
        .iter()
        .flat_map(|k| name[k].as_array().into_iter().flatten().filter_map(Value::as_str))
        .chain(name["family"].as_str())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn push_array(v: &mut Value, key: &str, item: Value) {
    match v[key].as_array_mut() {
        Some(list) => list.push(item),
        None => v[key] = json!([item]),
    }
}

/// An accounting entry as the patient sees it: who (the staff member as
/// FHIR names them, and their role), when, what and why; not the staff's
/// source addresses, token ids, login ids or request ids.
fn as_patient_sees_it(e: &mut Value) {
    if let Some(obj) = e.as_object_mut() {
        obj.remove("extension");
    }
    for agent in e["agent"].as_array_mut().into_iter().flatten() {
        let roles: Vec<String> = agent["role"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["text"].as_str())
            .map(str::to_owned)
            .collect();
        let reference = agent["who"]["reference"].clone();
        let display = if roles.is_empty() { "staff member".to_owned() } else { roles.join(", ") };
        agent["who"] = json!({"display": display});
        if reference.is_string() {
            agent["who"]["reference"] = reference;
        }
        if let Some(obj) = agent.as_object_mut() {
            obj.remove("network");
            obj.remove("policy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_reads_as_one_line() {
        assert_eq!(display_name(&json!({"text": "Dr Ann Lee"})).as_deref(), Some("Dr Ann Lee"));
        let parts = json!({"family": "Lee", "given": ["Ann", "B"], "prefix": ["Dr"]});
        assert_eq!(display_name(&parts).as_deref(), Some("Dr Ann B Lee"));
        assert_eq!(display_name(&json!({"use": "official"})), None);
    }

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
