//! Ports: what the domain needs from the outside world, in domain terms. The
//! AWS adapters in `aws/` implement them against DynamoDB and KMS.

use crate::audit::AuditEntry;
use crate::crypto::DataKey;
use crate::error::PortError;
use serde_json::Value;
use std::future::Future;

/// A domain event for the outbox. Carries ids and types, never PHI.
#[derive(Debug, Clone)]
pub struct DomainEvent {
    pub id: String,
    pub event_type: &'static str,
    /// The patient compartment the event belongs to (ordering key).
    pub aggregate: String,
    pub at: String,
    pub detail: Value,
}

/// The latest state of a resource.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: u64,
    pub deleted: bool,
    pub last_updated: String,
    /// Blind-index tokens the resource is indexed under now.
    pub tokens: Vec<String>,
    /// The latest version's ciphertext (absent when deleted), so a read is one
    /// GetItem.
    pub ciphertext: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Version {
    pub version: u64,
    pub deleted: bool,
    pub last_updated: String,
    pub ciphertext: Option<Vec<u8>>,
}

/// One resource change, committed atomically with its audit record and events.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub patient: String,
    /// Set when the change opens a new patient compartment.
    pub new_wrapped_key: Option<Vec<u8>>,
    pub resource_type: &'static str,
    pub id: String,
    pub version: u64,
    /// The version the change replaces; None for a create.
    pub expected_version: Option<u64>,
    pub deleted: bool,
    pub last_updated: String,
    pub ciphertext: Option<Vec<u8>>,
    pub tokens: Vec<String>,
    pub previous_tokens: Vec<String>,
}

impl ResourceWrite {
    /// Version 1 of a new resource (a create).
    pub fn first(
        patient: &str,
        resource_type: &'static str,
        id: &str,
        last_updated: &str,
        ciphertext: Vec<u8>,
        tokens: Vec<String>,
    ) -> Self {
        ResourceWrite {
            patient: patient.to_owned(),
            new_wrapped_key: None,
            resource_type,
            id: id.to_owned(),
            version: 1,
            expected_version: None,
            deleted: false,
            last_updated: last_updated.to_owned(),
            ciphertext: Some(ciphertext),
            tokens,
            previous_tokens: vec![],
        }
    }
}

/// The most records one [`RecordStore::currents`] call names: DynamoDB's
/// BatchGetItem limit.
pub const MAX_CURRENTS: usize = 100;

pub trait RecordStore: Send + Sync {
    /// The patient compartment a resource lives in (its locator, written
    /// when the resource was created). Patients are their own compartment.
    fn locate(&self, resource_type: &str, id: &str) -> impl Future<Output = Result<Option<String>, PortError>> + Send;
    fn wrapped_key(&self, patient: &str) -> impl Future<Output = Result<Option<Vec<u8>>, PortError>> + Send;
    fn current(
        &self,
        patient: &str,
        resource_type: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<Current>, PortError>> + Send;
    fn version(
        &self,
        patient: &str,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<Version>, PortError>> + Send;
    /// Versions newest first, below `before` if given, at most `limit`.
    fn versions(
        &self,
        patient: &str,
        resource_type: &str,
        id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, PortError>> + Send;
    /// The current state of every resource of a type in a patient's
    /// compartment, as (id, current), sorted by id.
    fn compartment(
        &self,
        patient: &str,
        resource_type: &str,
    ) -> impl Future<Output = Result<Vec<(String, Current)>, PortError>> + Send;
    /// Every version of every resource in a compartment (of one type, or
    /// of all), as (type, id, version): a history in one query.
    fn compartment_versions(
        &self,
        patient: &str,
        resource_type: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, String, Version)>, PortError>> + Send;
    /// Which resources a patient's compartment holds (the Patient too), as
    /// (type, id, deleted), sorted by type then id, without their contents:
    /// `$everything` pages through this and reads only its page, so a page
    /// costs its own size, not the whole record's.
    fn compartment_index(
        &self,
        patient: &str,
    ) -> impl Future<Output = Result<Vec<(String, String, bool)>, PortError>> + Send;
    /// The current state of each named (type, id) of a compartment, in the
    /// order given, None where absent: one page of `$everything`, at most
    /// [`MAX_CURRENTS`] at a time.
    fn currents(
        &self,
        patient: &str,
        records: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Option<Current>>, PortError>> + Send {
        async move {
            let mut out = Vec::with_capacity(records.len());
            for (ty, id) in records {
                out.push(self.current(patient, ty, id).await?);
            }
            Ok(out)
        }
    }
    /// At most `limit` ids indexed under a token, sorted, after `after`:
    /// a page of the index, so a search page never reads the whole index.
    fn ids_for_token_page(
        &self,
        resource_type: &str,
        token: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;
    /// Ids of resources of a type indexed under a blind-index token, sorted.
    fn ids_for_token(
        &self,
        resource_type: &str,
        token: &str,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;
    /// Commits a change, its audit record and its events in one transaction.
    /// `ConditionFailed` means the expected version no longer holds.
    fn commit(
        &self,
        write: ResourceWrite,
        audit: &AuditEntry,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Commits several changes (of any compartments), their audit records
    /// and events in one transaction: all or none, a transaction Bundle's
    /// commit. `TooLarge` when they exceed what one transaction holds.
    fn commit_all(
        &self,
        writes: Vec<ResourceWrite>,
        audits: &[AuditEntry],
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Finishes what transactions a crash left unfinished (rolled forward
    /// if they committed, back if not); how many. Stores whose commits are
    /// all single transactions have none.
    fn finish_transactions(&self) -> impl Future<Output = Result<usize, PortError>> + Send {
        async { Ok(0) }
    }
    /// Stores an audit record (and events) with no resource change.
    fn audit(
        &self,
        audit: &AuditEntry,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        self.audit_batch(std::slice::from_ref(audit), events)
    }
    /// Stores several audit records of one request (one per patient a
    /// read disclosed), with events, all or (as far as one transaction
    /// holds them) none. A break-glass record's sealed reason is stored
    /// with it, for the review.
    fn audit_batch(
        &self,
        audits: &[AuditEntry],
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Stores an audit record and events at most once per `key` (a notice
    /// a scheduled job must not repeat): false if `key` was already used.
    fn audit_once(
        &self,
        key: &str,
        audit: &AuditEntry,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
}

/// KMS: per-patient data keys bound to the patient by encryption context.
pub trait KeyService: Send + Sync {
    /// A new data key for a patient: (plaintext, wrapped).
    fn generate(&self, patient: &str) -> impl Future<Output = Result<(DataKey, Vec<u8>), PortError>> + Send;
    fn unwrap(&self, patient: &str, wrapped: &[u8]) -> impl Future<Output = Result<DataKey, PortError>> + Send;
}

/// Terms a presigned upload is bound to: the storage refuses any other
/// length, type or checksum.
#[derive(Debug, Clone)]
pub struct UploadTerms {
    pub content_type: String,
    pub length: u64,
    /// Base64 SHA-256 of the content.
    pub sha256: String,
    pub expires_in: std::time::Duration,
}

/// Where and how the client sends the bytes.
#[derive(Debug, Clone)]
pub struct PresignedUpload {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

/// Document objects: the encrypted store, and the quarantine area that
/// presigned uploads land in until the ingest has checked them.
pub trait BlobStore: Send + Sync {
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Removes a sealed object (one a failed transaction stored).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The whole object, or its bytes `first..=last`.
    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, PortError>> + Send;
    fn presign_upload(
        &self,
        key: &str,
        terms: &UploadTerms,
    ) -> impl Future<Output = Result<PresignedUpload, PortError>> + Send;
    /// An uploaded object, at most `max` bytes read (None if absent).
    fn fetch_upload(&self, key: &str, max: u64) -> impl Future<Output = Result<Option<Vec<u8>>, PortError>> + Send;
    fn discard_upload(&self, key: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A break-glass access awaiting (or past) an auditor's review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassAccess {
    pub patient: String,
    pub audit_id: String,
    pub recorded: String,
    pub code: String,
    /// The access's AuditEvent (ids and codes only).
    pub audit_event: String,
    /// The free-text reason, sealed under the patient's key.
    pub sealed_reason: Vec<u8>,
    pub review: Option<BreakGlassReview>,
}

impl BreakGlassAccess {
    pub fn position(&self) -> String {
        break_glass_position(&self.recorded, &self.audit_id)
    }
}

/// Where a break-glass access stands in the review queue: oldest first,
/// the audit id breaking ties (a page's cursor, the index's sort key).
pub fn break_glass_position(recorded: &str, audit_id: &str) -> String {
    format!("{recorded}|{audit_id}")
}

/// An auditor's finding on a break-glass access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassReview {
    /// `justified`, `unjustified` or `follow-up`.
    pub outcome: String,
    pub reviewer: String,
    pub at: String,
    /// The auditor's note, sealed under the patient's key (it may discuss
    /// the patient).
    pub sealed_note: Option<Vec<u8>>,
}

/// Whose audit records to read.
#[derive(Debug, Clone, Copy)]
pub enum AuditKey<'a> {
    Patient(&'a str),
    /// An agent's verified subject.
    Agent(&'a str),
}

/// Reads the audit trail by patient or agent and time, for audit search
/// and the accounting of disclosures.
pub trait AuditLog: Send + Sync {
    /// The FHIR AuditEvent JSON of at most `limit` records of `key` recorded
    /// from `from` to `to` (instants, inclusive), oldest first; fewer only
    /// when the window holds no more. Records of one instant come in any
    /// order (the indexes sort by instant alone).
    fn audit_records(
        &self,
        key: AuditKey<'_>,
        from: &str,
        to: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;

    /// Every AuditEvent recorded from `from` to `to` (inclusive), in
    /// (recorded, id) order: the whole trail of a window, for the access
    /// anomaly detectors (`service::anomalies`).
    fn trail(&self, from: &str, to: &str) -> impl Future<Output = Result<Vec<Value>, PortError>> + Send;

    /// At most `limit` break-glass accesses awaiting review (`reviewed`
    /// false) or reviewed, in queue order after the `position` `after`.
    fn break_glass_accesses(
        &self,
        reviewed: bool,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BreakGlassAccess>, PortError>> + Send;

    /// The break-glass access recorded by the audit record `audit_id`.
    fn break_glass_access(
        &self,
        audit_id: &str,
    ) -> impl Future<Output = Result<Option<BreakGlassAccess>, PortError>> + Send;

    /// Records a review of a pending access with its audit record, in one
    /// transaction; `ConditionFailed` when it is not pending (any more).
    fn review_break_glass(
        &self,
        access: &BreakGlassAccess,
        review: &BreakGlassReview,
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Adds one to the failure counter `current` (kept until `expires`, Unix
    /// seconds) and returns its new value plus the value of `previous`.
    fn count_failure(
        &self,
        current: &str,
        previous: &str,
        expires: i64,
    ) -> impl Future<Output = Result<u64, PortError>> + Send;
}

/// What claiming an event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Process it now.
    Mine,
    /// Already processed: a duplicate.
    Done,
    /// Being processed by a live consumer: this delivery comes back later
    /// (were it acknowledged, a failure of the other would lose the event).
    InProgress,
}

/// One consumer's record of the events it processed (`consumer`). A claim
/// whose consumer died expires after a lease, and the next delivery takes
/// it over.
pub trait EventClaims: Send + Sync {
    fn claim(&self, event_id: &str) -> impl Future<Output = Result<Claim, PortError>> + Send;
    fn done(&self, event_id: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Gives a claim back after a failure, so the redelivery processes it.
    fn release(&self, event_id: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A numbered series of the audit table, each item signed by the archive
/// key: checkpoints of the chain heads, manifests of exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Checkpoint,
    Manifest,
}

/// What an export has recorded of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportState {
    /// The window and chunk size it was started with (`since|until|records`).
    pub terms: String,
    /// Chunks written.
    pub done: usize,
    /// Its manifest's number in the manifest series, once numbered.
    pub manifest: Option<u64>,
}

/// The scheduled export being written (one at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingExport {
    pub id: String,
    pub since: String,
    pub until: String,
}

/// The audit trail's tamper evidence: chain heads, the signed series, the
/// write-once archive and exports' progress. Every write is conditional or
/// idempotent so a run that crashes after any call can be run again
/// (`audit::archive` decides the order).
pub trait AuditArchive: Send + Sync {
    /// Each shard's chain head: (sequence, hash).
    fn heads(&self) -> impl Future<Output = Result<std::collections::BTreeMap<u32, (u64, String)>, PortError>> + Send;
    /// The newest item of a series: (number, body).
    fn last(&self, series: Series) -> impl Future<Output = Result<Option<(u64, String)>, PortError>> + Send;
    /// Item `number` of a series: (body, signature; empty for a manifest,
    /// whose signature is made when it is archived).
    fn numbered(
        &self,
        series: Series,
        number: u64,
    ) -> impl Future<Output = Result<Option<(String, Vec<u8>)>, PortError>> + Send;
    /// Stores checkpoint `number`; `ConditionFailed` when it exists.
    fn store_checkpoint(
        &self,
        number: u64,
        body: &str,
        signature: &[u8],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Numbers an export's manifest and records the number in its progress,
    /// in one transaction; false when another export took the number (or
    /// this one is numbered already).
    fn number_manifest(
        &self,
        export: &str,
        number: u64,
        body: &str,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
    /// A signature of `statement` by the archive key (ECDSA P-256, DER).
    fn sign(&self, statement: &str) -> impl Future<Output = Result<Vec<u8>, PortError>> + Send;
    /// The archive key's id, as archived objects name it.
    fn signing_key_id(&self) -> &str;
    /// Writes an object to the write-once archive.
    fn archive(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn archived(&self, key: &str) -> impl Future<Output = Result<bool, PortError>> + Send;
    /// Every chain record's AuditEvent recorded from `since` to `until`
    /// (inclusive), in export order (recorded, id).
    fn window(&self, since: &str, until: &str) -> impl Future<Output = Result<Vec<Value>, PortError>> + Send;
    fn export_state(&self, export: &str) -> impl Future<Output = Result<Option<ExportState>, PortError>> + Send;
    fn record_export_progress(
        &self,
        export: &str,
        terms: &str,
        done: usize,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn pending_export(&self) -> impl Future<Output = Result<Option<PendingExport>, PortError>> + Send;
    /// Records the scheduled export to write; `ConditionFailed` when one is.
    fn start_pending_export(&self, export: &PendingExport) -> impl Future<Output = Result<(), PortError>> + Send;
    fn finish_pending_export(&self) -> impl Future<Output = Result<(), PortError>> + Send;
}
