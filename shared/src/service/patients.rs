//! The Patient use cases: create, read, vread, update, delete, history, search.

use super::consent_gate::Subject;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::{authorize, Action};
use crate::crypto::{random_id, resource_aad, seal};
use crate::error::{Error, Result};
use crate::fhir::outcome::Issue;
use crate::fhir::{self, patient, primitives};
use crate::ports::{KeyService, RecordStore, ResourceWrite};
use serde_json::Value;

pub use super::records::{HistoryResult, SearchResult, Stored, DEFAULT_PAGE, MAX_PAGE};

const TYPE: &str = "Patient";
/// Blind-index tokens per resource. Each is a transaction item and DynamoDB
/// allows 100 per transaction, updates may remove and add a full set.
const MAX_TOKENS: usize = 40;

/// The search parameters Patient supports, with their semantics.
pub const SEARCH_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "Exact logical id."),
    (
        "name",
        "string",
        "Any part of any name (family, given, prefix, suffix, text); exact match after case/accent folding.",
    ),
    ("family", "string", "Family name; exact match after case/accent folding."),
    ("given", "string", "Given name; exact match after case/accent folding."),
    ("birthdate", "date", "Birth date equal to YYYY, YYYY-MM or YYYY-MM-DD (eq only)."),
    ("gender", "token", "administrative-gender code."),
    ("identifier", "token", "system|value or value (|value means any system)."),
];

impl<S: RecordStore, K: KeyService> Services<S, K> {
    fn tokens(&self, resource: &Value) -> Result<Vec<String>> {
        let mut tokens: Vec<String> =
            patient::search_values(resource).iter().map(|(p, v)| self.index.token(TYPE, p, v)).collect();
        tokens.push(self.index.token(TYPE, "_all", ""));
        tokens.sort();
        tokens.dedup();
        if tokens.len() > MAX_TOKENS {
            return Err(Error::Invalid(vec![Issue::error(
                "too-costly",
                format!("too many searchable values (names, identifiers, dates): at most {MAX_TOKENS} index entries"),
            )
            .at("Patient")]));
        }
        Ok(tokens)
    }

    fn validated(&self, resource: &Value) -> Result<()> {
        let issues = patient::validate(resource);
        if issues.iter().any(Issue::is_error) {
            Err(Error::Invalid(issues))
        } else {
            Ok(())
        }
    }

    pub async fn create_patient(&self, caller: &Caller, mut resource: Value, audit: &mut AuditEntry) -> Result<Stored> {
        self.check(caller, TYPE, Action::Create, None)?;
        self.validated(&resource)?;
        let tokens = self.tokens(&resource)?;
        let id = random_id();
        let now = fhir::now_instant();
        fhir::stamp(&mut resource, &id, 1, &now);
        let (key, wrapped) = self.keys.generate(&id).await?;
        let ct = seal(&key, &resource_aad(&id, TYPE, &id, 1), resource.to_string().as_bytes());
        audit.patient = Some(id.clone());
        audit.entities = vec![format!("Patient/{id}/_history/1")];
        audit.status = 201;
        let events = vec![self.record_event("PatientCreated", &id, TYPE, &id, &now, 1)];
        let write =
            ResourceWrite { new_wrapped_key: Some(wrapped), ..ResourceWrite::first(&id, TYPE, &id, &now, ct, tokens) };
        self.store.commit(write, audit, events).await?;
        self.cache.insert(&id, std::sync::Arc::new(key));
        let withheld = authorize(&caller.principal, TYPE, Action::Read, Some(&id)) != crate::auth::Decision::Allow;
        Ok(Stored { withheld, ..Stored::new(id, 1, now, resource) })
    }

    pub async fn read_patient(&self, caller: &Caller, id: &str, audit: &mut AuditEntry) -> Result<Stored> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}")];
        self.check(caller, TYPE, Action::Read, Some(id))?;
        let consents = self.consent_gate(caller, id, TYPE).await?;
        let current = self.store.current(id, TYPE, id).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(id).await?;
        let resource = self.decrypt_record(&key, id, TYPE, id, current.version, current.ciphertext.as_deref())?;
        self.consent_on(caller, &consents, Subject::read(TYPE, id, &resource))?;
        audit.entities = vec![format!("Patient/{id}/_history/{}", current.version)];
        self.audit_read(caller, audit).await?;
        Ok(Stored::new(id, current.version, current.last_updated, resource))
    }

    pub async fn vread_patient(
        &self,
        caller: &Caller,
        id: &str,
        version: u64,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}/_history/{version}")];
        self.check(caller, TYPE, Action::Read, Some(id))?;
        let consents = self.consent_gate(caller, id, TYPE).await?;
        let v = self.store.version(id, TYPE, id, version).await?.ok_or(Error::NotFound)?;
        if v.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(id).await?;
        let resource = self.decrypt_record(&key, id, TYPE, id, v.version, v.ciphertext.as_deref())?;
        self.consent_on(caller, &consents, Subject::read(TYPE, id, &resource))?;
        self.audit_read(caller, audit).await?;
        Ok(Stored::new(id, version, v.last_updated, resource))
    }

    pub async fn update_patient(
        &self,
        caller: &Caller,
        id: &str,
        resource: Value,
        if_match: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        self.update_patient_from(caller, id, resource, if_match, None, audit).await
    }

    /// An update from the current version when PATCH has read it already.
    pub(crate) async fn update_patient_from(
        &self,
        caller: &Caller,
        id: &str,
        mut resource: Value,
        if_match: Option<u64>,
        current: Option<(crate::ports::Current, Value)>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}")];
        self.check(caller, TYPE, Action::Update, Some(id))?;
        if resource.get("id").and_then(Value::as_str) != Some(id) {
            return Err(Error::BadRequest("the resource id must match the id in the URL".into()));
        }
        self.validated(&resource)?;
        let tokens = self.tokens(&resource)?;
        let (current, before) = match current {
            Some(c) => c,
            None => self.current_record(TYPE, id, id).await?,
        };
        let consents = self.write_gate(caller, id, TYPE, id, (Some(&before), Some(&resource))).await?;
        self.check_version(if_match, current.version)?;
        let key = self.patient_key(id).await?;
        let version = current.version + 1;
        let now = fhir::now_instant();
        fhir::stamp(&mut resource, id, version, &now);
        let ct = seal(&key, &resource_aad(id, TYPE, id, version), resource.to_string().as_bytes());
        self.commit_next_version(audit, (id, TYPE, id), current, &now, Some(ct), tokens, "PatientUpdated").await?;
        let withheld = !self.may_read(caller, &consents, id, Subject::read(TYPE, id, &resource));
        Ok(Stored { withheld, ..Stored::new(id, version, now, resource) })
    }

    /// Logical delete: a tombstone version, index entries removed, history kept.
    pub async fn delete_patient(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<()> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}")];
        self.check(caller, TYPE, Action::Delete, Some(id))?;
        match self.current_record(TYPE, id, id).await {
            Ok((_, before)) => {
                self.write_gate(caller, id, TYPE, id, (Some(&before), None)).await?;
            }
            // Deleting again only audits (below).
            Err(Error::Gone) => {}
            Err(e) => return Err(e),
        }
        self.tombstone(audit, (id, TYPE, id), if_match, "PatientDeleted").await
    }

    pub async fn patient_history(
        &self,
        caller: &Caller,
        id: &str,
        count: usize,
        cursor: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<HistoryResult> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}")];
        self.check(caller, TYPE, Action::Read, Some(id))?;
        let consents = self.consent_gate(caller, id, TYPE).await?;
        self.record_history(caller, (id, TYPE, id), &consents, count, cursor, audit).await
    }

    /// Search. `params` are (name, value) pairs as the client sent them, or
    /// as recovered from a cursor. A page walks one parameter's index (the
    /// most selective there is, or every patient) in id order from the
    /// cursor, checks the other parameters against each candidate's index
    /// entries, then its consents: so a page costs what it examines, never
    /// the whole index, and both are bounded (`Limits`). Patients whose
    /// consent refuses the caller are skipped, in the entries and the total.
    /// Every patient returned gets their own audit record.
    pub async fn search_patients(
        &self,
        caller: &Caller,
        params: Vec<(String, String)>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        self.check(caller, TYPE, Action::Search, None)?;
        let (params, after, carried_total) = self.search_resume(caller, TYPE, params)?;
        // Names only, and only names medrec defines: a client could put PHI
        // in an unknown parameter's name, and audit attributes are plaintext.
        audit.query_params = params
            .iter()
            .map(|(k, _)| {
                let base = k.split(':').next().unwrap_or("");
                let known = base == "_count" || SEARCH_PARAMS.iter().any(|(p, _, _)| *p == base);
                if known {
                    base.to_owned()
                } else {
                    "unrecognised".to_owned()
                }
            })
            .collect();
        let mut count = DEFAULT_PAGE;
        let mut groups: Vec<Group> = Vec::new();
        for (name, value) in &params {
            if name == "_count" {
                count = super::records::page_size(value)?;
                continue;
            }
            if name.contains(':') || !SEARCH_PARAMS.iter().any(|(p, _, _)| p == name) {
                let known: Vec<&str> = SEARCH_PARAMS.iter().map(|(p, _, _)| *p).collect();
                return Err(super::unsupported_parameter(name, &known));
            }
            let values = self.search_values(value)?;
            let mut group = match name.as_str() {
                "_id" => Group::Ids(vec![]),
                _ => Group::Tokens(vec![]),
            };
            for v in values {
                match (&mut group, self.search_value(name, v)?) {
                    (Group::Ids(ids), Searched::Id(id)) => ids.push(id),
                    (Group::Tokens(tokens), Searched::Token(t)) => tokens.push(t),
                    _ => unreachable!("a parameter is either _id or indexed"),
                }
            }
            groups.push(group);
        }
        // A patient-bound token (authorization refused one without its
        // patient) searches its own compartment only.
        let own = caller.principal.patient.clone();
        let scan = self.limits.search_scan;
        // The driver: the ids asked for, the caller's own, or one index.
        groups.sort_by_key(Group::rank);
        let driver = groups.first().filter(|g| matches!(g, Group::Ids(_))).cloned();
        let (candidates, exhausted) = match (driver, &own) {
            (Some(Group::Ids(mut ids)), _) => {
                ids.retain(|id| after.as_ref().is_none_or(|a| id > a));
                ids.sort();
                ids.dedup();
                (ids, true)
            }
            (_, Some(own)) => (after.as_ref().is_none_or(|a| own > a).then(|| own.clone()).into_iter().collect(), true),
            _ => {
                let tokens = match groups.first() {
                    Some(Group::Tokens(t)) => t.clone(),
                    _ => vec![self.index.token(TYPE, "_all", "")],
                };
                let mut merged = Vec::new();
                let mut complete = true;
                for t in &tokens {
                    let page = self.store.ids_for_token_page(TYPE, t, after.as_deref(), scan + 1).await?;
                    complete &= page.len() <= scan;
                    merged.extend(page);
                }
                merged.sort();
                merged.dedup();
                complete &= merged.len() <= scan;
                merged.truncate(scan);
                (merged, complete)
            }
        };
        // The first page of a result that fits the scan also counts it (the
        // total then rides on the cursor); a larger one has no total.
        let counting = after.is_none() && exhausted;
        let (mut page, mut examined, mut lookups, mut permitted, mut notes) = (vec![], 0, 0, 0, vec![]);
        let mut last_examined = None;
        let mut counted = counting;
        for id in &candidates {
            let paging = page.len() < count;
            if !paging && !counting {
                break;
            }
            let current = match own.as_ref().is_none_or(|o| o == id) {
                true => self.store.current(id, TYPE, id).await?.filter(|c| !c.deleted),
                false => None,
            };
            let current = current.filter(|c| groups.iter().all(|g| g.admits(id, &c.tokens)));
            if current.is_some() && lookups == self.limits.consent_lookups {
                match paging {
                    true => notes.push(Issue::warning(
                        "too-costly",
                        format!("this page stopped after reading {lookups} patients' consents (MEDREC_SEARCH_CONSENT_LOOKUPS); the next link continues"),
                    )),
                    false => counted = false,
                }
                break;
            }
            if paging {
                examined += 1;
                last_examined = Some(id.clone());
            }
            let Some(current) = current else { continue };
            lookups += 1;
            let consents = self.consents_of(caller, id).await?;
            if self.consent_before(caller, &consents, TYPE).is_err() {
                continue;
            }
            let key = self.patient_key(id).await?;
            let resource = self.decrypt_record(&key, id, TYPE, id, current.version, current.ciphertext.as_deref())?;
            if self.consent_on(caller, &consents, Subject::read(TYPE, id, &resource)).is_ok() {
                permitted += 1;
                if paging {
                    page.push(Stored::new(id.clone(), current.version, current.last_updated, resource));
                }
            }
        }
        let has_more = match counting && counted {
            // Every match was counted: more pages only if more were permitted.
            true => permitted > page.len(),
            false => examined < candidates.len() || !exhausted,
        };
        if has_more && page.len() < count && notes.is_empty() {
            notes.push(Issue::warning(
                "too-costly",
                format!("this page stopped after examining {examined} patients (MEDREC_SEARCH_SCAN_PER_PAGE); the next link continues"),
            ));
        }
        let disclosed =
            page.iter().map(|r| (r.id.clone(), vec![format!("Patient/{}/_history/{}", r.id, r.version)])).collect();
        let mut entries = Self::per_patient(audit, disclosed);
        self.audit_reads(caller, &mut entries).await?;
        let total = if counting { counted.then_some(permitted) } else { carried_total };
        let next_cursor = last_examined
            .filter(|_| has_more)
            .map(|last| self.next_page_counted(caller, TYPE, params, count, last, total));
        Ok(SearchResult { total, resources: page, next_cursor, notes })
    }

    /// One search value, checked and turned into what the index holds.
    fn search_value(&self, name: &str, value: &str) -> Result<Searched> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Error::BadRequest(format!("search parameter '{name}' needs a value")));
        }
        let token = match name {
            "_id" => {
                if !primitives::is_id(value) {
                    return Err(Error::BadRequest("_id must be a valid id".into()));
                }
                return Ok(Searched::Id(value.to_owned()));
            }
            "gender" => {
                if !patient::GENDERS.contains(&value) {
                    return Err(Error::BadRequest("gender must be one of male, female, other, unknown".into()));
                }
                self.index.token(TYPE, name, value)
            }
            "birthdate" => {
                let date = value.strip_prefix("eq").unwrap_or(value);
                if !primitives::is_date(date) {
                    return Err(Error::BadRequest(
                        "birthdate must be YYYY, YYYY-MM or YYYY-MM-DD (only eq is supported)".into(),
                    ));
                }
                self.index.token(TYPE, name, date)
            }
            "identifier" => {
                let v = if value.contains('|') { value.to_owned() } else { format!("|{value}") };
                if v.ends_with('|') {
                    return Err(Error::BadRequest("identifier needs a value after '|'".into()));
                }
                self.index.token(TYPE, name, &v)
            }
            _ => self.index.token(TYPE, name, value),
        };
        Ok(Searched::Token(token))
    }
}

/// One search value as the index knows it.
enum Searched {
    Id(String),
    Token(String),
}

/// One search parameter: the ids it names, or the index tokens any of
/// which a match carries.
#[derive(Clone)]
enum Group {
    Ids(Vec<String>),
    Tokens(Vec<String>),
}

impl Group {
    /// Which parameter drives a page: named ids first, then the one with
    /// fewest values (each value is one index walk).
    fn rank(&self) -> (u8, usize) {
        match self {
            Group::Ids(ids) => (0, ids.len()),
            Group::Tokens(t) => (1, t.len()),
        }
    }

    fn admits(&self, id: &str, tokens: &[String]) -> bool {
        match self {
            Group::Ids(ids) => ids.iter().any(|i| i == id),
            Group::Tokens(t) => t.iter().any(|x| tokens.contains(x)),
        }
    }
}
