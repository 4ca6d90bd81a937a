//! The Patient use cases: create, read, vread, update, delete, history, search.

use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::crypto::{random_id, resource_aad, seal};
use crate::error::{Error, Result};
use crate::fhir::outcome::Issue;
use crate::fhir::{self, patient, primitives};
use crate::ports::{KeyService, RecordStore, ResourceWrite};
use serde_json::Value;

use super::records::expect_version;
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
        let mut events = vec![self.record_event("PatientCreated", &id, TYPE, &id, &now, 1)];
        events.extend(self.break_glass_events(caller, audit));
        let write =
            ResourceWrite { new_wrapped_key: Some(wrapped), ..ResourceWrite::first(&id, TYPE, &id, &now, ct, tokens) };
        self.store.commit(write, audit, events).await?;
        self.cache.insert(&id, std::sync::Arc::new(key));
        Ok(Stored { id, version: 1, last_updated: now, resource })
    }

    pub async fn read_patient(&self, caller: &Caller, id: &str, audit: &mut AuditEntry) -> Result<Stored> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}")];
        self.check(caller, TYPE, Action::Read, Some(id))?;
        self.consent_gate(caller, id, TYPE).await?;
        let current = self.store.current(id, TYPE, id).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(id).await?;
        let resource = self.decrypt_record(&key, id, TYPE, id, current.version, current.ciphertext.as_deref())?;
        audit.entities = vec![format!("Patient/{id}/_history/{}", current.version)];
        self.audit_read(caller, audit).await?;
        Ok(Stored { id: id.to_owned(), version: current.version, last_updated: current.last_updated, resource })
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
        self.consent_gate(caller, id, TYPE).await?;
        let v = self.store.version(id, TYPE, id, version).await?.ok_or(Error::NotFound)?;
        if v.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(id).await?;
        let resource = self.decrypt_record(&key, id, TYPE, id, v.version, v.ciphertext.as_deref())?;
        self.audit_read(caller, audit).await?;
        Ok(Stored { id: id.to_owned(), version, last_updated: v.last_updated, resource })
    }

    pub async fn update_patient(
        &self,
        caller: &Caller,
        id: &str,
        mut resource: Value,
        if_match: Option<u64>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        audit.patient = Some(id.to_owned());
        audit.entities = vec![format!("Patient/{id}")];
        self.check(caller, TYPE, Action::Update, Some(id))?;
        self.write_gate(caller, id, TYPE).await?;
        if resource.get("id").and_then(Value::as_str) != Some(id) {
            return Err(Error::BadRequest("the resource id must match the id in the URL".into()));
        }
        let expected = if_match
            .ok_or_else(|| Error::PreconditionRequired("updates require If-Match with the current version".into()))?;
        self.validated(&resource)?;
        let tokens = self.tokens(&resource)?;
        let current = self.store.current(id, TYPE, id).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        expect_version(expected, current.version)?;
        let key = self.patient_key(id).await?;
        let version = current.version + 1;
        let now = fhir::now_instant();
        fhir::stamp(&mut resource, id, version, &now);
        let ct = seal(&key, &resource_aad(id, TYPE, id, version), resource.to_string().as_bytes());
        self.commit_next_version(caller, audit, (id, TYPE, id), current, &now, Some(ct), tokens, "PatientUpdated")
            .await?;
        Ok(Stored { id: id.to_owned(), version, last_updated: now, resource })
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
        self.write_gate(caller, id, TYPE).await?;
        self.tombstone(caller, audit, (id, TYPE, id), if_match, "PatientDeleted").await
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
        self.consent_gate(caller, id, TYPE).await?;
        self.record_history(caller, (id, TYPE, id), count, cursor, audit).await
    }

    /// Search. `params` are (name, value) pairs as the client sent them, or
    /// as recovered from a cursor.
    pub async fn search_patients(
        &self,
        caller: &Caller,
        params: Vec<(String, String)>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        self.check(caller, TYPE, Action::Search, None)?;
        let (params, after) = self.search_params(caller, TYPE, params)?;
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
        let mut groups: Vec<Vec<String>> = Vec::new();
        for (name, value) in &params {
            if name == "_count" {
                count = value
                    .parse::<usize>()
                    .ok()
                    .filter(|c| (1..=MAX_PAGE).contains(c))
                    .ok_or_else(|| Error::BadRequest(format!("_count must be an integer from 1 to {MAX_PAGE}")))?;
                continue;
            }
            if name.contains(':') || !SEARCH_PARAMS.iter().any(|(p, _, _)| p == name) {
                let known: Vec<&str> = SEARCH_PARAMS.iter().map(|(p, _, _)| *p).collect();
                return Err(super::unsupported_parameter(name, &known));
            }
            let mut ids = Vec::new();
            for v in value.split(',') {
                ids.extend(self.match_value(name, v).await?);
            }
            ids.sort();
            ids.dedup();
            groups.push(ids);
        }
        let mut ids = match groups.split_first() {
            None => self.store.ids_for_token(TYPE, &self.index.token(TYPE, "_all", "")).await?,
            Some((first, rest)) => {
                first.iter().filter(|id| rest.iter().all(|g| g.binary_search(id).is_ok())).cloned().collect()
            }
        };
        if caller.principal.patient.is_some() || caller.principal.roles.contains(&crate::auth::Role::Patient) {
            ids.retain(|id| caller.principal.patient.as_deref() == Some(id.as_str()));
        }
        // Patients whose consent denies this caller are not in the results,
        // nor in the total or the paging (one compartment query per match).
        let mut permitted = Vec::with_capacity(ids.len());
        for id in ids {
            if self.consent_gate(caller, &id, TYPE).await.is_ok() {
                permitted.push(id);
            }
        }
        let ids = permitted;
        let total = ids.len();
        let start = after.as_ref().map_or(0, |a| ids.partition_point(|id| id <= a));
        let page: Vec<String> = ids[start..].iter().take(count).cloned().collect();
        let has_more = start + page.len() < ids.len();
        let mut resources = Vec::with_capacity(page.len());
        for id in &page {
            let Some(current) = self.store.current(id, TYPE, id).await? else { continue };
            if current.deleted {
                continue;
            }
            let key = self.patient_key(id).await?;
            let resource = self.decrypt_record(&key, id, TYPE, id, current.version, current.ciphertext.as_deref())?;
            resources.push(Stored {
                id: id.clone(),
                version: current.version,
                last_updated: current.last_updated,
                resource,
            });
        }
        audit.entities = resources.iter().map(|r| format!("Patient/{}/_history/{}", r.id, r.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor =
            page.last().filter(|_| has_more).map(|last| self.next_page(caller, TYPE, params, count, last.clone()));
        Ok(SearchResult { total, resources, next_cursor })
    }

    async fn match_value(&self, name: &str, value: &str) -> Result<Vec<String>> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Error::BadRequest(format!("search parameter '{name}' needs a value")));
        }
        let token = match name {
            "_id" => {
                if !primitives::is_id(value) {
                    return Err(Error::BadRequest("_id must be a valid id".into()));
                }
                return Ok(match self.store.current(value, TYPE, value).await? {
                    Some(c) if !c.deleted => vec![value.to_owned()],
                    _ => vec![],
                });
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
        Ok(self.store.ids_for_token(TYPE, &token).await?)
    }
}
