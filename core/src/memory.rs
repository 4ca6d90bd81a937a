//! In-memory ports, for benchmarks and domain unit tests only (feature
//! `memory-ports`); never a runtime backend. They honour the same conditions
//! as the DynamoDB adapter so domain behaviour is the same.

use crate::audit::AuditEntry;
use crate::crypto::{random_id, DataKey};
use crate::error::PortError;
use crate::ports::{Current, DomainEvent, KeyService, RecordStore, ResourceWrite, Version};
use crate::service::Services;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Inner {
    keys: HashMap<String, Vec<u8>>,
    locators: HashMap<(String, String), String>,
    current: HashMap<(String, String), Current>,
    versions: BTreeMap<(String, String, u64), Version>,
    index: BTreeSet<(String, String)>,
    audit: Vec<String>,
    /// Each audit record's keys in the trail's indexes, as the AWS adapter
    /// writes them: (instant, patient, agent).
    audit_index: Vec<(String, Option<String>, Option<String>)>,
    events: Vec<DomainEvent>,
    once: BTreeSet<String>,
    failures: HashMap<String, u64>,
    break_glass: BTreeMap<String, crate::ports::BreakGlassAccess>,
}

impl Inner {
    fn apply(&mut self, w: ResourceWrite) {
        let key = (w.resource_type.to_owned(), w.id.clone());
        if let Some(k) = w.new_wrapped_key {
            self.keys.insert(w.patient.clone(), k);
        }
        if w.expected_version.is_none() && w.resource_type != "Patient" {
            self.locators.insert(key.clone(), w.patient.clone());
        }
        for t in &w.previous_tokens {
            self.index.remove(&(format!("{}#{t}", w.resource_type), w.id.clone()));
        }
        for t in &w.tokens {
            self.index.insert((format!("{}#{t}", w.resource_type), w.id.clone()));
        }
        let v = Version {
            version: w.version,
            deleted: w.deleted,
            last_updated: w.last_updated.clone(),
            ciphertext: w.ciphertext.clone(),
        };
        self.versions.insert((key.0.clone(), key.1.clone(), w.version), v);
        let current = Current {
            version: w.version,
            deleted: w.deleted,
            last_updated: w.last_updated,
            tokens: w.tokens,
            ciphertext: w.ciphertext,
        };
        self.current.insert(key, current);
    }

    fn append(&mut self, audit: &AuditEntry) {
        let body = audit.to_fhir().to_string();
        if let (Some(bg), Some(patient)) = (&audit.break_glass, &audit.patient) {
            if let Some(sealed) = &bg.sealed_reason {
                let access = crate::ports::BreakGlassAccess {
                    patient: patient.clone(),
                    audit_id: audit.id.clone(),
                    recorded: audit.recorded.clone(),
                    code: bg.code.clone(),
                    audit_event: body.clone(),
                    sealed_reason: sealed.clone(),
                    review: None,
                };
                self.break_glass.insert(audit.id.clone(), access);
            }
        }
        self.audit.push(body);
        self.audit_index.push((audit.recorded.clone(), audit.audited_patient(), audit.agent_key()));
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    current_reads: std::sync::atomic::AtomicUsize,
    audit_reads: std::sync::atomic::AtomicUsize,
}

impl MemoryStore {
    /// How many records' current states were read one by one so far: what
    /// tells a page that reads its own records from one that reads the
    /// whole compartment.
    pub fn current_reads(&self) -> usize {
        self.current_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many audit records the trail's readers fetched so far: what
    /// tells a search that reads a page's worth from one that reads the
    /// whole window.
    pub fn audit_reads(&self) -> usize {
        self.audit_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn audit_len(&self) -> usize {
        self.inner.lock().expect("lock").audit.len()
    }

    /// The audit records as stored (FHIR AuditEvent JSON).
    pub fn audit_records(&self) -> Vec<String> {
        self.inner.lock().expect("lock").audit.clone()
    }

    /// The domain events committed so far, in order (what the outbox
    /// would relay).
    pub fn events(&self) -> Vec<DomainEvent> {
        self.inner.lock().expect("lock").events.clone()
    }

    /// Everything stored, as text: what a reader of the tables would see,
    /// for tests that search it for PHI.
    pub fn dump(&self) -> String {
        let inner = self.inner.lock().expect("lock");
        let bytes = inner
            .current
            .values()
            .filter_map(|c| c.ciphertext.as_deref())
            .chain(inner.versions.values().filter_map(|v| v.ciphertext.as_deref()))
            .chain(inner.keys.values().map(Vec::as_slice));
        let text: Vec<String> = bytes.map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        format!("{inner:?}\n{}", text.join("\n"))
    }
}

impl RecordStore for MemoryStore {
    async fn locate(&self, ty: &str, id: &str) -> Result<Option<String>, PortError> {
        Ok(self.inner.lock().expect("lock").locators.get(&(ty.to_owned(), id.to_owned())).cloned())
    }

    async fn compartment(&self, patient: &str, ty: &str) -> Result<Vec<(String, Current)>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let mut found: Vec<(String, Current)> = inner
            .current
            .iter()
            .filter(|((t, id), _)| {
                t == ty && inner.locators.get(&(t.clone(), id.clone())).is_some_and(|p| p == patient)
            })
            .map(|((_, id), c)| (id.clone(), c.clone()))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    async fn compartment_index(&self, patient: &str) -> Result<Vec<(String, String, bool)>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let mut found: Vec<(String, String, bool)> = inner
            .current
            .iter()
            .filter(|(key, _)| inner.locators.get(*key).is_some_and(|p| p == patient))
            .map(|((t, id), c)| (t.clone(), id.clone(), c.deleted))
            .collect();
        found.sort();
        Ok(found)
    }

    async fn compartment_versions(
        &self,
        patient: &str,
        ty: Option<&str>,
    ) -> Result<Vec<(String, String, Version)>, PortError> {
        let inner = self.inner.lock().expect("lock");
        Ok(inner
            .versions
            .iter()
            .filter(|((t, id, _), _)| {
                let placed = match t.as_str() {
                    "Patient" => id == patient,
                    _ => inner.locators.get(&(t.clone(), id.clone())).is_some_and(|p| p == patient),
                };
                ty.is_none_or(|ty| t == ty) && placed
            })
            .map(|((t, id, _), v)| (t.clone(), id.clone(), v.clone()))
            .collect())
    }

    async fn wrapped_key(&self, patient: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.inner.lock().expect("lock").keys.get(patient).cloned())
    }

    async fn current(&self, _patient: &str, ty: &str, id: &str) -> Result<Option<Current>, PortError> {
        self.current_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.inner.lock().expect("lock").current.get(&(ty.to_owned(), id.to_owned())).cloned())
    }

    async fn version(&self, _patient: &str, ty: &str, id: &str, version: u64) -> Result<Option<Version>, PortError> {
        Ok(self.inner.lock().expect("lock").versions.get(&(ty.to_owned(), id.to_owned(), version)).cloned())
    }

    async fn versions(
        &self,
        _p: &str,
        ty: &str,
        id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Version>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let hi = before.map_or(u64::MAX, |b| b.saturating_sub(1));
        Ok(inner
            .versions
            .range((ty.to_owned(), id.to_owned(), 1)..=(ty.to_owned(), id.to_owned(), hi))
            .rev()
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn ids_for_token_page(
        &self,
        ty: &str,
        token: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        let ix = format!("{ty}#{token}");
        let inner = self.inner.lock().expect("lock");
        Ok(inner
            .index
            .iter()
            .filter(|(i, id)| *i == ix && after.is_none_or(|a| id.as_str() > a))
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect())
    }

    async fn ids_for_token(&self, ty: &str, token: &str) -> Result<Vec<String>, PortError> {
        let ix = format!("{ty}#{token}");
        Ok(self.inner.lock().expect("lock").index.iter().filter(|(i, _)| *i == ix).map(|(_, id)| id.clone()).collect())
    }

    async fn commit(&self, w: ResourceWrite, audit: &AuditEntry, events: Vec<DomainEvent>) -> Result<(), PortError> {
        self.commit_all(vec![w], std::slice::from_ref(audit), events).await
    }

    async fn commit_all(
        &self,
        writes: Vec<ResourceWrite>,
        audits: &[AuditEntry],
        events: Vec<DomainEvent>,
    ) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        for (i, w) in writes.iter().enumerate() {
            let current_version = inner.current.get(&(w.resource_type.to_owned(), w.id.clone())).map(|c| c.version);
            if current_version != w.expected_version
                || (w.new_wrapped_key.is_some() && inner.keys.contains_key(&w.patient))
            {
                return Err(PortError::ConditionFailed(i));
            }
        }
        for w in writes {
            inner.apply(w);
        }
        audits.iter().for_each(|a| inner.append(a));
        inner.events.extend(events);
        Ok(())
    }

    async fn audit_batch(&self, audits: &[AuditEntry], events: Vec<DomainEvent>) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        audits.iter().for_each(|a| inner.append(a));
        inner.events.extend(events);
        Ok(())
    }

    async fn audit_once(&self, key: &str, audit: &AuditEntry, events: Vec<DomainEvent>) -> Result<bool, PortError> {
        let mut inner = self.inner.lock().expect("lock");
        if !inner.once.insert(key.to_owned()) {
            return Ok(false);
        }
        inner.append(audit);
        inner.events.extend(events);
        Ok(true)
    }
}

impl crate::ports::AuditLog for MemoryStore {
    async fn trail(&self, from: &str, to: &str) -> Result<Vec<serde_json::Value>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let mut found: Vec<serde_json::Value> = inner
            .audit_index
            .iter()
            .zip(&inner.audit)
            .filter(|((at, _, _), _)| (from..=to).contains(&at.as_str()))
            .filter_map(|(_, body)| serde_json::from_str(body).ok())
            .collect();
        found.sort_by_key(|e| {
            (e["recorded"].as_str().unwrap_or_default().to_owned(), e["id"].as_str().unwrap_or_default().to_owned())
        });
        Ok(found)
    }

    async fn break_glass_accesses(
        &self,
        reviewed: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::ports::BreakGlassAccess>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let mut found: Vec<_> = inner
            .break_glass
            .values()
            .filter(|a| a.review.is_some() == reviewed && after.is_none_or(|after| a.position().as_str() > after))
            .cloned()
            .collect();
        found.sort_by_key(|a| a.position());
        found.truncate(limit);
        Ok(found)
    }

    async fn break_glass_access(&self, audit_id: &str) -> Result<Option<crate::ports::BreakGlassAccess>, PortError> {
        Ok(self.inner.lock().expect("lock").break_glass.get(audit_id).cloned())
    }

    async fn review_break_glass(
        &self,
        access: &crate::ports::BreakGlassAccess,
        review: &crate::ports::BreakGlassReview,
        audit: &AuditEntry,
    ) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        match inner.break_glass.get_mut(&access.audit_id) {
            Some(a) if a.review.is_none() => a.review = Some(review.clone()),
            _ => return Err(PortError::ConditionFailed(0)),
        }
        inner.append(audit);
        Ok(())
    }

    async fn count_failure(&self, current: &str, previous: &str, _expires: i64) -> Result<u64, PortError> {
        let mut inner = self.inner.lock().expect("lock");
        *inner.failures.entry(current.to_owned()).or_default() += 1;
        Ok(inner.failures[current] + inner.failures.get(previous).copied().unwrap_or(0))
    }

    async fn audit_records(
        &self,
        key: crate::ports::AuditKey<'_>,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let mut found: Vec<(&str, &String)> = inner
            .audit_index
            .iter()
            .zip(&inner.audit)
            .filter(|((at, patient, agent), _)| {
                let hit = match key {
                    crate::ports::AuditKey::Patient(p) => patient.as_deref() == Some(p),
                    crate::ports::AuditKey::Agent(a) => agent.as_deref() == Some(a),
                };
                hit && at.as_str() >= from && at.as_str() <= to
            })
            .map(|((at, _, _), body)| (at.as_str(), body))
            .collect();
        // By instant alone, as the index orders them (a stable sort keeps
        // the records of one instant in the order they were written).
        found.sort_by_key(|(at, _)| *at);
        found.truncate(limit);
        self.audit_reads.fetch_add(found.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(found.into_iter().map(|(_, b)| b.clone()).collect())
    }
}

/// Stands in for the processed-events table: each event id claimed,
/// then done or released. (No lease: a claim stays until released.)
#[derive(Default)]
pub struct MemoryClaims {
    claims: Mutex<HashMap<String, bool>>,
}

impl crate::ports::EventClaims for MemoryClaims {
    async fn claim(&self, event_id: &str) -> Result<crate::ports::Claim, PortError> {
        use crate::ports::Claim;
        let mut claims = self.claims.lock().expect("lock");
        Ok(match claims.get(event_id) {
            Some(true) => Claim::Done,
            Some(false) => Claim::InProgress,
            None => {
                claims.insert(event_id.to_owned(), false);
                Claim::Mine
            }
        })
    }

    async fn done(&self, event_id: &str) -> Result<(), PortError> {
        self.claims.lock().expect("lock").insert(event_id.to_owned(), true);
        Ok(())
    }

    async fn release(&self, event_id: &str) -> Result<(), PortError> {
        let mut claims = self.claims.lock().expect("lock");
        if claims.get(event_id) == Some(&false) {
            claims.remove(event_id);
        }
        Ok(())
    }
}

/// (patient, wrapped handle) -> key bytes.
type KeyTable = HashMap<(String, Vec<u8>), [u8; 32]>;

/// Stands in for KMS: keys are random and "wrapped" as a lookup handle.
#[derive(Default)]
pub struct MemoryKeys {
    keys: Mutex<KeyTable>,
}

impl KeyService for MemoryKeys {
    async fn generate(&self, patient: &str) -> Result<(DataKey, Vec<u8>), PortError> {
        let key = DataKey::random();
        let handle = random_id().into_bytes();
        self.keys.lock().expect("lock").insert((patient.to_owned(), handle.clone()), *key.expose());
        Ok((key, handle))
    }

    async fn unwrap(&self, patient: &str, wrapped: &[u8]) -> Result<DataKey, PortError> {
        let keys = self.keys.lock().expect("lock");
        let k =
            keys.get(&(patient.to_owned(), wrapped.to_vec())).ok_or(PortError::Integrity("wrong context".into()))?;
        DataKey::from_slice(k).map_err(|_| PortError::Integrity("key".into()))
    }
}

/// Stands in for S3: objects by key, uploads by key.
#[derive(Default)]
pub struct MemoryBlobs {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryBlobs {
    /// What a client's PUT to a presigned URL would leave.
    pub fn upload(&self, key: &str, bytes: Vec<u8>) {
        self.uploads.lock().expect("lock").insert(key.to_owned(), bytes);
    }

    /// The stored objects by key, as a reader of the bucket would see them.
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let objects = self.objects.lock().expect("lock");
        let mut all: Vec<_> = objects.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort();
        all
    }

    /// Keys of the uploads not yet taken in or discarded.
    pub fn pending_uploads(&self) -> Vec<String> {
        self.uploads.lock().expect("lock").keys().cloned().collect()
    }
}

impl crate::ports::BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PortError> {
        self.objects.lock().expect("lock").insert(key.to_owned(), body);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.objects.lock().expect("lock").remove(key);
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, PortError> {
        let objects = self.objects.lock().expect("lock");
        Ok(objects.get(key).map(|o| match range {
            Some((a, b)) => {
                o.get(a as usize..=(b as usize).min(o.len().saturating_sub(1))).unwrap_or_default().to_vec()
            }
            None => o.clone(),
        }))
    }

    async fn presign_upload(
        &self,
        key: &str,
        terms: &crate::ports::UploadTerms,
    ) -> Result<crate::ports::PresignedUpload, PortError> {
        Ok(crate::ports::PresignedUpload {
            url: format!("memory://uploads/{key}"),
            method: "PUT".into(),
            headers: vec![("content-type".into(), terms.content_type.clone())],
        })
    }

    async fn fetch_upload(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>, PortError> {
        let uploads = self.uploads.lock().expect("lock");
        Ok(uploads.get(key).map(|u| u[..u.len().min(max as usize + 1)].to_vec()))
    }

    async fn discard_upload(&self, key: &str) -> Result<(), PortError> {
        self.uploads.lock().expect("lock").remove(key);
        Ok(())
    }
}

/// The use cases over the in-memory ports, with fresh random service keys
/// and a key cache that never retires a key: the domain alone, for unit
/// tests and benchmarks.
pub fn services(function_name: &str) -> Services<MemoryStore, MemoryKeys> {
    services_over(MemoryStore::default(), function_name)
}

/// `services` over another record store (a `Staging` around a
/// `MemoryStore`, for a transaction's use cases).
pub fn services_over<S: RecordStore>(store: S, function_name: &str) -> Services<S, MemoryKeys> {
    let limits = crate::crypto::keycache::Limits {
        max_age: std::time::Duration::from_secs(300),
        max_uses: u64::MAX,
        max_bytes: u64::MAX,
        max_entries: 100_000,
    };
    Services::new(
        store,
        MemoryKeys::default(),
        crate::crypto::keycache::KeyCache::new(limits),
        DataKey::random(),
        DataKey::random(),
        function_name,
    )
}

/// Stands in for the audit table's archive items, KMS `Sign` (a P-256 key
/// generated per instance) and the Object Lock bucket (which refuses to
/// overwrite an object with other bytes, as compliance mode would keep the
/// first version).
pub struct MemoryArchive {
    key: aws_lc_rs::signature::EcdsaKeyPair,
    inner: Mutex<ArchiveInner>,
}

#[derive(Default)]
struct ArchiveInner {
    heads: std::collections::BTreeMap<u32, (u64, String)>,
    records: Vec<serde_json::Value>,
    series: BTreeMap<(bool, u64), (String, Vec<u8>)>,
    exports: HashMap<String, crate::ports::ExportState>,
    pending: Option<crate::ports::PendingExport>,
    objects: BTreeMap<String, Vec<u8>>,
}

impl Default for MemoryArchive {
    fn default() -> Self {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key");
        MemoryArchive { key, inner: Mutex::default() }
    }
}

impl MemoryArchive {
    /// The signing key's public half as KMS `GetPublicKey` gives it
    /// (SubjectPublicKeyInfo DER of an uncompressed P-256 point).
    pub fn public_key(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        [&crate::audit::checkpoint::P256_SPKI_HEADER[..], self.key.public_key().as_ref()].concat()
    }

    /// A chain record (its AuditEvent) and the head it leaves on `shard`.
    pub fn record(&self, shard: u32, event: serde_json::Value) {
        let mut inner = self.inner.lock().expect("lock");
        let seq = inner.heads.get(&shard).map_or(1, |(s, _)| s + 1);
        let hash = crate::crypto::hex(&crate::crypto::sha256(event.to_string().as_bytes()));
        inner.heads.insert(shard, (seq, hash));
        inner.records.push(event);
    }

    /// An archived object's bytes.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.lock().expect("lock").objects.get(key).cloned()
    }

    /// Keys of every archived object, in order.
    pub fn object_keys(&self) -> Vec<String> {
        self.inner.lock().expect("lock").objects.keys().cloned().collect()
    }

    /// Loses an archived object (what a crash between storing a checkpoint
    /// and archiving it leaves).
    pub fn lose_object(&self, key: &str) {
        self.inner.lock().expect("lock").objects.remove(key);
    }
}

fn series_key(series: crate::ports::Series) -> bool {
    series == crate::ports::Series::Manifest
}

impl crate::ports::AuditArchive for MemoryArchive {
    async fn heads(&self) -> Result<std::collections::BTreeMap<u32, (u64, String)>, PortError> {
        Ok(self.inner.lock().expect("lock").heads.clone())
    }

    async fn last(&self, series: crate::ports::Series) -> Result<Option<(u64, String)>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let m = series_key(series);
        Ok(inner.series.range((m, 0)..=(m, u64::MAX)).next_back().map(|((_, n), (body, _))| (*n, body.clone())))
    }

    async fn numbered(
        &self,
        series: crate::ports::Series,
        number: u64,
    ) -> Result<Option<(String, Vec<u8>)>, PortError> {
        Ok(self.inner.lock().expect("lock").series.get(&(series_key(series), number)).cloned())
    }

    async fn store_checkpoint(&self, number: u64, body: &str, signature: &[u8]) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        if inner.series.contains_key(&(false, number)) {
            return Err(PortError::ConditionFailed(0));
        }
        inner.series.insert((false, number), (body.to_owned(), signature.to_vec()));
        Ok(())
    }

    async fn number_manifest(&self, export: &str, number: u64, body: &str) -> Result<bool, PortError> {
        let mut inner = self.inner.lock().expect("lock");
        let numbered = inner.exports.get(export).is_some_and(|e| e.manifest.is_some());
        if numbered || inner.series.contains_key(&(true, number)) {
            return Ok(false);
        }
        inner.series.insert((true, number), (body.to_owned(), vec![]));
        let state = inner.exports.entry(export.to_owned()).or_insert(crate::ports::ExportState {
            terms: String::new(),
            done: 0,
            manifest: None,
        });
        state.manifest = Some(number);
        Ok(true)
    }

    async fn sign(&self, statement: &str) -> Result<Vec<u8>, PortError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = self.key.sign(&rng, statement.as_bytes()).map_err(|_| PortError::Integrity("sign".into()))?;
        Ok(signature.as_ref().to_vec())
    }

    fn signing_key_id(&self) -> &str {
        "memory-archive-key"
    }

    async fn archive(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        match inner.objects.get(key) {
            Some(kept) if *kept != body && key.ends_with(".ndjson") => {
                Err(PortError::Integrity(format!("{key} is locked with other bytes")))
            }
            _ => {
                inner.objects.insert(key.to_owned(), body);
                Ok(())
            }
        }
    }

    async fn archived(&self, key: &str) -> Result<bool, PortError> {
        Ok(self.inner.lock().expect("lock").objects.contains_key(key))
    }

    async fn window(&self, since: &str, until: &str) -> Result<Vec<serde_json::Value>, PortError> {
        let inner = self.inner.lock().expect("lock");
        let at = |e: &serde_json::Value| e["recorded"].as_str().unwrap_or_default().to_owned();
        let mut events: Vec<_> =
            inner.records.iter().filter(|e| (since..=until).contains(&at(e).as_str())).cloned().collect();
        events.sort_by_key(|e| (at(e), e["id"].as_str().unwrap_or_default().to_owned()));
        Ok(events)
    }

    async fn export_state(&self, export: &str) -> Result<Option<crate::ports::ExportState>, PortError> {
        Ok(self.inner.lock().expect("lock").exports.get(export).cloned())
    }

    async fn record_export_progress(&self, export: &str, terms: &str, done: usize) -> Result<(), PortError> {
        let state = crate::ports::ExportState { terms: terms.to_owned(), done, manifest: None };
        self.inner.lock().expect("lock").exports.insert(export.to_owned(), state);
        Ok(())
    }

    async fn pending_export(&self) -> Result<Option<crate::ports::PendingExport>, PortError> {
        Ok(self.inner.lock().expect("lock").pending.clone())
    }

    async fn start_pending_export(&self, export: &crate::ports::PendingExport) -> Result<(), PortError> {
        let mut inner = self.inner.lock().expect("lock");
        if inner.pending.is_some() {
            return Err(PortError::ConditionFailed(0));
        }
        inner.pending = Some(export.clone());
        Ok(())
    }

    async fn finish_pending_export(&self) -> Result<(), PortError> {
        self.inner.lock().expect("lock").pending = None;
        Ok(())
    }
}
