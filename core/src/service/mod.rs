//! Use cases, written against the ports only. Each operation authorizes the
//! caller, does its work under the patient's data key and leaves exactly one
//! audit record: in the same transaction as a write, or stored before a read
//! returns anything (fail closed).

pub mod anomalies;
pub mod audit_search;
pub mod binaries;
pub mod clinical;
pub mod clinical_search;
pub mod consent_expiry;
pub mod consent_gate;
pub mod directory_search;
pub mod documents;
pub mod history;
pub mod patch;
pub mod patients;
pub mod records;
pub mod registry_sync;
pub mod security_alerts;
pub mod staging;
pub mod validation;

use crate::audit::{Agent, AuditEntry, BreakGlassNote, Outcome};
use crate::auth::{authorize, Action, Decision, Principal, Purpose, Role};
use crate::consent::DefaultPolicy;
use crate::crypto::keycache::KeyCache;
use crate::crypto::{blind::BlindIndex, open, random_id, resource_aad, seal, DataKey};
use crate::cursor::CursorCodec;
use crate::error::{Error, PortError, Result};
use crate::limits::Limits;
use crate::ports::{Current, DomainEvent, KeyService, RecordStore, ResourceWrite};
use serde_json::json;
use std::sync::Arc;

/// A search parameter name medrec does not serve (or one with a modifier):
/// the answer names it only when it is one of `known`, since a client can
/// put anything, PHI included, where a name goes, and error bodies travel
/// through logs medrec does not control.
pub(crate) fn unsupported_parameter(name: &str, known: &[&str]) -> Error {
    let base = name.split(':').next().unwrap_or_default();
    match (name.contains(':'), known.contains(&base)) {
        (true, true) => Error::BadRequest(format!("search modifiers are not supported ({base})")),
        (true, false) => Error::BadRequest("search modifiers are not supported".into()),
        _ => Error::BadRequest(format!("unknown search parameter; this type supports {}", known.join(", "))),
    }
}

/// The resource types of a patient's compartment medrec serves: the
/// Patient and every type of the resource table.
pub(crate) fn compartment_types() -> Vec<&'static str> {
    let table = crate::fhir::resources::table();
    std::iter::once("Patient").chain(table.types.iter().map(|t| t.name.as_str())).collect()
}

/// The additional data a break-glass reason is sealed with: the patient and
/// the audit record it explains, so a sealed reason cannot be moved.
pub fn break_glass_aad(patient: &str, audit_id: &str) -> Vec<u8> {
    format!("medrec/break-glass/{patient}/{audit_id}").into_bytes()
}

/// Who is asking, why, and from where; built by the HTTP edge.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub purpose: Purpose,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

/// Keys derived from the service root secret, one per mechanism, so that no
/// key serves two purposes.
pub struct ServiceKeys {
    pub blind_index: DataKey,
    pub cursor: DataKey,
    pub audit_chain: DataKey,
}

impl ServiceKeys {
    pub fn derive(root: &DataKey) -> Self {
        ServiceKeys {
            blind_index: root.derive("medrec/blind-index/v1"),
            cursor: root.derive("medrec/cursor/v1"),
            audit_chain: root.derive("medrec/audit-chain/v1"),
        }
    }
}

pub struct Services<S, K> {
    pub store: S,
    keys: K,
    cache: KeyCache,
    index: BlindIndex,
    cursors: CursorCodec,
    observer: String,
    /// What applies when no consent of a patient decides an access.
    consent_default: DefaultPolicy,
    /// Roles that record consents on a patient's behalf.
    consent_authority: Vec<Role>,
    limits: Limits,
    /// Updates without a version check are refused (428).
    require_if_match: bool,
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    pub fn new(
        store: S,
        keys: K,
        cache: KeyCache,
        blind_index: DataKey,
        cursor: DataKey,
        observer: impl Into<String>,
    ) -> Self {
        Services {
            store,
            keys,
            cache,
            index: BlindIndex::new(blind_index),
            cursors: CursorCodec::new(cursor),
            observer: observer.into(),
            consent_default: DefaultPolicy::OptOut,
            consent_authority: vec![Role::Registrar, Role::Admin],
            limits: Limits::default(),
            require_if_match: false,
        }
    }

    /// Requires a version check (If-Match, or a patch's `test` of
    /// `/meta/versionId`) on every update.
    pub fn with_required_if_match(mut self, required: bool) -> Self {
        self.require_if_match = required;
        self
    }

    /// An update finds the version If-Match names (412 otherwise); without
    /// If-Match, whatever is current (last writer wins, as plain FHIR)
    /// unless the deployment requires the check (428).
    fn check_version(&self, if_match: Option<u64>, current: u64) -> Result<()> {
        match if_match {
            Some(v) => records::expect_version(v, current),
            None if self.require_if_match => {
                Err(Error::PreconditionRequired("updates require If-Match with the current version".into()))
            }
            None => Ok(()),
        }
    }

    /// A search parameter's comma-separated values (any matches), at most
    /// `MEDREC_SEARCH_MAX_VALUES` of them: each costs a lookup.
    fn search_values<'v>(&self, value: &'v str) -> Result<Vec<&'v str>> {
        let values: Vec<&str> = value.split(',').collect();
        if values.len() > self.limits.search_values {
            return Err(Error::TooCostly(format!(
                "a search parameter takes at most {} comma-separated values (MEDREC_SEARCH_MAX_VALUES)",
                self.limits.search_values
            )));
        }
        Ok(values)
    }

    /// Sets the roles that record consents on a patient's behalf.
    pub fn with_consent_authority(mut self, roles: Vec<Role>) -> Self {
        self.consent_authority = roles;
        self
    }

    /// Sets the bounds on one request's work.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the consent default (opt-out unless configured: HIPAA permits
    /// treatment, payment and operations disclosures without consent).
    pub fn with_consent_default(mut self, policy: DefaultPolicy) -> Self {
        self.consent_default = policy;
        self
    }

    /// An audit record for one interaction, completed as the operation runs.
    pub fn draft(&self, caller: Option<&Caller>, interaction: &'static str) -> AuditEntry {
        let (agent, purpose, break_glass, request_id) = match caller {
            Some(c) => (
                Agent {
                    subject: Some(c.principal.subject.clone()),
                    fhir_user: c.principal.fhir_user.clone(),
                    roles: c.principal.role_names(),
                    token_id: c.principal.token_id.clone(),
                    source_ip: c.source_ip.clone(),
                },
                c.purpose.code,
                c.purpose.break_glass.as_ref().map(|bg| BreakGlassNote { code: bg.code.clone(), sealed_reason: None }),
                c.request_id.clone(),
            ),
            None => (Agent::default(), "TREAT", None, None),
        };
        AuditEntry {
            id: random_id(),
            recorded: crate::fhir::now_instant(),
            interaction,
            outcome: Outcome::Success,
            status: 200,
            agent,
            purpose,
            break_glass,
            patient: None,
            entities: vec![],
            query_params: vec![],
            observer: self.observer.clone(),
            request_id,
        }
    }

    /// Type-level authorization, before a conditional write searches: a
    /// caller who may not do this at all learns nothing from the search.
    pub fn authorize_type(&self, caller: &Caller, resource_type: &str, action: Action) -> Result<()> {
        self.check(caller, resource_type, action, None)
    }

    /// Finishes the transactions a crash left unfinished (the sweep).
    pub async fn finish_transactions(&self) -> Result<usize> {
        self.store.finish_transactions().await.map_err(Into::into)
    }

    /// Stores audit records of requests that touched no record themselves
    /// (a batch Bundle, whose entries leave their own; the refused entry
    /// of a transaction that stored nothing).
    pub async fn record_audits(&self, entries: &[AuditEntry]) -> Result<()> {
        self.store.audit_batch(entries, vec![]).await.map_err(Into::into)
    }

    /// Commits what a transaction's entries staged with the Bundle's own
    /// audit record, which names every change: all of it, or nothing.
    pub async fn commit_staged(&self, stage: staging::Stage, bundle: &mut AuditEntry) -> Result<()> {
        bundle.entities =
            stage.writes.iter().map(|w| format!("{}/{}/_history/{}", w.resource_type, w.id, w.version)).collect();
        let mut audits = stage.audits;
        audits.push(bundle.clone());
        self.store.commit_all(stage.writes, &audits, stage.events).await.map_err(|e| match e {
            PortError::ConditionFailed(_) => {
                Error::Conflict("a resource of the transaction changed concurrently; nothing was stored".into())
            }
            other => other.into(),
        })
    }

    /// Records a failed or denied attempt. Best effort: the caller already
    /// gets an error, and a failure to audit it is logged, not hidden.
    pub async fn audit_failure(
        &self,
        mut entry: AuditEntry,
        status: u16,
        caller: Option<&Caller>,
        source_ip: Option<String>,
    ) {
        entry.status = status;
        entry.outcome = Outcome::from_status(status);
        if entry.agent.source_ip.is_none() {
            entry.agent.source_ip = source_ip;
        }
        let events = caller.map(|c| self.break_glass_events(c, &entry)).unwrap_or_default();
        if let Err(e) = self.store.audit(&entry, events).await {
            tracing::error!(error = %e, audit_id = %entry.id, "failed to store audit record of a failed request");
        }
    }

    /// Stores a successful read's audit record; the data is returned only if this succeeds.
    async fn audit_read(&self, caller: &Caller, entry: &mut AuditEntry) -> Result<()> {
        self.audit_reads(caller, std::slice::from_mut(entry)).await
    }

    /// Stores the audit records of one successful read that disclosed
    /// several patients' data (one record per patient, so each reaches that
    /// patient's accounting of disclosures); the data is returned only if
    /// every one is stored.
    async fn audit_reads(&self, caller: &Caller, entries: &mut [AuditEntry]) -> Result<()> {
        let mut events = vec![];
        for entry in entries.iter_mut() {
            entry.status = 200;
            entry.outcome = Outcome::Success;
            self.seal_break_glass_reason(caller, entry).await?;
            events.extend(self.break_glass_events(caller, entry));
        }
        self.store.audit_batch(entries, events).await.map_err(|e| {
            tracing::error!(error = %e, "audit write failed; withholding data");
            Error::Unavailable("audit".into())
        })
    }

    /// A read's audit record split per patient disclosed: `disclosed` maps
    /// each patient to the entities of theirs the read returned. With no
    /// patient the record stands as it is (nothing of anyone's was read).
    fn per_patient(entry: &AuditEntry, disclosed: Vec<(String, Vec<String>)>) -> Vec<AuditEntry> {
        if disclosed.is_empty() {
            return vec![entry.clone()];
        }
        disclosed
            .into_iter()
            .enumerate()
            .map(|(i, (patient, entities))| AuditEntry {
                id: if i == 0 { entry.id.clone() } else { random_id() },
                patient: Some(patient),
                entities,
                ..entry.clone()
            })
            .collect()
    }

    /// Seals a break-glass reason under the patient's key for the review:
    /// the free text may name the patient's condition, so it never enters
    /// the plaintext trail (which keeps only the reason code).
    async fn seal_break_glass_reason(&self, caller: &Caller, entry: &mut AuditEntry) -> Result<()> {
        let (Some(bg), Some(patient)) = (&caller.purpose.break_glass, entry.patient.clone()) else { return Ok(()) };
        let key = self.patient_key(&patient).await?;
        let sealed = seal(&key, &break_glass_aad(&patient, &entry.id), bg.reason.as_bytes());
        entry.break_glass = Some(BreakGlassNote { code: bg.code.clone(), sealed_reason: Some(sealed) });
        Ok(())
    }

    /// Break-glass always raises an alert event, committed with its audit
    /// record: the patient, the reason code and the record to review, no PHI.
    fn break_glass_events(&self, caller: &Caller, entry: &AuditEntry) -> Vec<DomainEvent> {
        let Some(bg) = &caller.purpose.break_glass else { return vec![] };
        crate::metrics::count(crate::metrics::Counter::BreakGlassUses);
        vec![DomainEvent {
            id: random_id(),
            event_type: "BreakGlassUsed",
            aggregate: entry.patient.clone().unwrap_or_else(|| "system".into()),
            at: entry.recorded.clone(),
            detail: json!({"auditEventId": entry.id, "subject": caller.principal.subject, "interaction": entry.interaction,
                "patient": entry.patient, "reasonCode": bg.code}),
        }]
    }

    fn check(&self, caller: &Caller, resource_type: &str, action: Action, compartment: Option<&str>) -> Result<()> {
        if caller.purpose.is_break_glass() && !caller.principal.roles.contains(&Role::Clinician) {
            return Err(Error::Forbidden("break-glass is reserved to clinicians".into()));
        }
        // Emergency access is to read what care needs now; it never changes
        // a record, and in particular never a consent that refused it.
        if caller.purpose.is_break_glass() && !matches!(action, Action::Read | Action::Search) {
            return Err(Error::Forbidden("break-glass is read-only".into()));
        }
        match authorize(&caller.principal, resource_type, action, compartment) {
            Decision::Allow => Ok(()),
            Decision::Deny(why) => Err(Error::Forbidden(why.into())),
            Decision::Hidden => Err(Error::NotFound),
        }
    }

    /// Opens a stored version: the ciphertext must authenticate under the
    /// patient's key and its own identity (patient, type, id, version).
    fn decrypt_record(
        &self,
        key: &DataKey,
        patient: &str,
        resource_type: &str,
        id: &str,
        version: u64,
        ct: Option<&[u8]>,
    ) -> Result<serde_json::Value> {
        let ct = ct.ok_or_else(|| Error::Internal("version without ciphertext".into()))?;
        let plain = open(key, &resource_aad(patient, resource_type, id, version), ct).map_err(|_| {
            tracing::error!(version, "ciphertext failed authentication");
            Error::Internal("stored record failed its integrity check".into())
        })?;
        serde_json::from_slice(&plain).map_err(|_| Error::Internal("stored record is not JSON".into()))
    }

    /// A domain event about one resource version: ids only, no PHI.
    fn record_event(
        &self,
        event_type: &'static str,
        patient: &str,
        resource_type: &str,
        id: &str,
        at: &str,
        version: u64,
    ) -> DomainEvent {
        DomainEvent {
            id: random_id(),
            event_type,
            aggregate: patient.to_owned(),
            at: at.to_owned(),
            detail: json!({"resourceType": resource_type, "id": id, "versionId": version.to_string()}),
        }
    }

    /// Commits the version after `current` of (patient, type, id): an update,
    /// or a tombstone when `ciphertext` is None. Losing a race to another
    /// writer is 412.
    #[allow(clippy::too_many_arguments)]
    async fn commit_next_version(
        &self,
        audit: &mut AuditEntry,
        (patient, resource_type, id): (&str, &'static str, &str),
        current: Current,
        now: &str,
        ciphertext: Option<Vec<u8>>,
        tokens: Vec<String>,
        event_type: &'static str,
    ) -> Result<()> {
        let version = current.version + 1;
        audit.entities = vec![format!("{resource_type}/{id}/_history/{version}")];
        let events = vec![self.record_event(event_type, patient, resource_type, id, now, version)];
        let write = ResourceWrite {
            patient: patient.to_owned(),
            new_wrapped_key: None,
            resource_type,
            id: id.to_owned(),
            version,
            expected_version: Some(current.version),
            deleted: ciphertext.is_none(),
            last_updated: now.to_owned(),
            ciphertext,
            tokens,
            previous_tokens: current.tokens,
        };
        self.store.commit(write, audit, events).await.map_err(|e| match e {
            PortError::ConditionFailed(_) => Error::PreconditionFailed("the resource changed concurrently".into()),
            other => other.into(),
        })
    }

    async fn patient_key(&self, patient: &str) -> Result<Arc<DataKey>> {
        if let Some(k) = self.cache.get(patient) {
            crate::metrics::count(crate::metrics::Counter::KeyCacheHits);
            return Ok(k);
        }
        crate::metrics::count(crate::metrics::Counter::KeyCacheMisses);
        // A compartment without its key was crypto-shredded by the purge:
        // its records are gone for good.
        let wrapped = self.store.wrapped_key(patient).await?.ok_or_else(|| {
            tracing::warn!("patient data key destroyed (purged)");
            Error::Gone
        })?;
        let key = Arc::new(self.keys.unwrap(patient, &wrapped).await?);
        self.cache.insert(patient, key.clone());
        Ok(key)
    }
}
