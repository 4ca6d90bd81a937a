//! Use cases, written against the ports only. Each operation authorizes the
//! caller, does its work under the patient's data key and leaves exactly one
//! audit record: in the same transaction as a write, or stored before a read
//! returns anything (fail closed).

pub mod audit_search;
pub mod clinical;
pub mod clinical_search;
pub mod consent_expiry;
pub mod consent_gate;
pub mod documents;
pub mod patch;
pub mod patients;
pub mod records;
pub mod registry_sync;
pub mod security_alerts;
pub mod validation;

use crate::audit::{Agent, AuditEntry, Outcome};
use crate::auth::{authorize, Action, Decision, Principal, Purpose, Role};
use crate::consent::DefaultPolicy;
use crate::crypto::keycache::KeyCache;
use crate::crypto::{blind::BlindIndex, hex, open, random_id, resource_aad, sha256, DataKey};
use crate::cursor::CursorCodec;
use crate::error::{Error, PortError, Result};
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
        }
    }

    /// Sets the consent default (opt-out unless configured: HIPAA permits
    /// treatment, payment and operations disclosures without consent).
    pub fn with_consent_default(mut self, policy: DefaultPolicy) -> Self {
        self.consent_default = policy;
        self
    }

    /// An audit record for one interaction, completed as the operation runs.
    pub fn draft(&self, caller: Option<&Caller>, interaction: &'static str) -> AuditEntry {
        let (agent, purpose, reason, request_id) = match caller {
            Some(c) => (
                Agent {
                    subject: Some(c.principal.subject.clone()),
                    roles: c.principal.role_names(),
                    token_id: c.principal.token_id.clone(),
                    source_ip: c.source_ip.clone(),
                },
                c.purpose.code,
                c.purpose.break_glass_reason.as_ref().map(|r| hex(&sha256(r.as_bytes()))),
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
            break_glass_reason_sha256: reason,
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
        entry.status = 200;
        entry.outcome = Outcome::Success;
        let events = self.break_glass_events(caller, entry);
        self.store.audit(entry, events).await.map_err(|e| {
            tracing::error!(error = %e, "audit write failed; withholding data");
            Error::Unavailable("audit".into())
        })
    }

    /// Break-glass always raises an alert event, committed with its audit record.
    fn break_glass_events(&self, caller: &Caller, entry: &AuditEntry) -> Vec<DomainEvent> {
        if !caller.purpose.is_break_glass() {
            return vec![];
        }
        vec![DomainEvent {
            id: random_id(),
            event_type: "BreakGlassUsed",
            aggregate: entry.patient.clone().unwrap_or_else(|| "system".into()),
            at: entry.recorded.clone(),
            detail: json!({"auditEventId": entry.id, "subject": caller.principal.subject, "interaction": entry.interaction}),
        }]
    }

    fn check(&self, caller: &Caller, resource_type: &str, action: Action, compartment: Option<&str>) -> Result<()> {
        if caller.purpose.is_break_glass() && !caller.principal.roles.contains(&Role::Clinician) {
            return Err(Error::Forbidden("break-glass is reserved to clinicians".into()));
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
        caller: &Caller,
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
        let mut events = vec![self.record_event(event_type, patient, resource_type, id, now, version)];
        events.extend(self.break_glass_events(caller, audit));
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
            return Ok(k);
        }
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
