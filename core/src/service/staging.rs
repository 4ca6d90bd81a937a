//! A transaction Bundle's staging (decision 0011): while its entries run,
//! the record store keeps their changes, audit records and events instead
//! of committing them, and every read sees them, so an entry finds the
//! Patient an earlier entry created (its data key too). The Bundle then
//! commits everything at once with `RecordStore::commit_all`, or nothing.
//!
//! Staging is scoped to the task serving the Bundle (`run`): every other
//! request, and every call outside the scope, passes straight through.

use crate::audit::AuditEntry;
use crate::crypto::random_id;
use crate::error::PortError;
use crate::ports::{
    AuditKey, AuditLog, BreakGlassAccess, BreakGlassReview, Current, DomainEvent, RecordStore, ResourceWrite, Version,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// What a transaction's entries did, not yet committed.
#[derive(Debug, Default)]
pub struct Stage {
    /// The id the next create takes: an entry's `urn:uuid:` fullUrl is
    /// given its id before any entry runs, so references between entries
    /// (cycles included) are rewritten up front.
    next_id: Option<String>,
    pub writes: Vec<ResourceWrite>,
    pub audits: Vec<AuditEntry>,
    pub events: Vec<DomainEvent>,
    /// Sealed document objects stored for the entries: S3 is no part of
    /// the DynamoDB commit, so they are written first (a committed record
    /// never names missing bytes) and removed if the transaction fails.
    pub objects: Vec<String>,
    /// Compartment queries already made, by (patient, type): every entry
    /// of a patient's record checks that patient's consents, and one query
    /// answers them all (the staged changes are laid over it each time).
    compartments: HashMap<(String, String), Vec<(String, Current)>>,
}

tokio::task_local! {
    static STAGE: Mutex<Stage>;
}

/// Runs `work` with the store staging, and returns what it staged.
pub async fn run<F: Future>(work: F) -> (F::Output, Stage) {
    STAGE
        .scope(Mutex::new(Stage::default()), async {
            let out = work.await;
            (out, STAGE.with(|s| std::mem::take(&mut *s.lock().expect("stage lock"))))
        })
        .await
}

/// Gives the next create in this scope the id `id` (None: a random one).
pub fn assign_next_id(id: Option<String>) {
    let _ = STAGE.try_with(|s| s.lock().expect("stage lock").next_id = id);
}

/// A new resource's id: the one a transaction assigned, else a random one.
pub(crate) fn new_id() -> String {
    STAGE.try_with(|s| s.lock().expect("stage lock").next_id.take()).ok().flatten().unwrap_or_else(random_id)
}

/// Notes a sealed object stored inside this scope.
pub(crate) fn object_stored(key: &str) {
    let _ = STAGE.try_with(|s| s.lock().expect("stage lock").objects.push(key.to_owned()));
}

/// `f` of the stage, when staging.
fn staged<T>(f: impl FnOnce(&mut Stage) -> T) -> Option<T> {
    STAGE.try_with(|s| f(&mut s.lock().expect("stage lock"))).ok()
}

fn current_of(w: &ResourceWrite) -> Current {
    Current {
        version: w.version,
        deleted: w.deleted,
        last_updated: w.last_updated.clone(),
        tokens: w.tokens.clone(),
        ciphertext: w.ciphertext.clone(),
    }
}

fn version_of(w: &ResourceWrite) -> Version {
    Version {
        version: w.version,
        deleted: w.deleted,
        last_updated: w.last_updated.clone(),
        ciphertext: w.ciphertext.clone(),
    }
}

/// The staged change to (patient, type, id), if any (one per resource).
fn staged_write(patient: &str, ty: &str, id: &str) -> Option<ResourceWrite> {
    staged(|s| s.writes.iter().find(|w| w.patient == patient && w.resource_type == ty && w.id == id).cloned()).flatten()
}

/// Every staged change in a compartment (of one type, or all).
fn staged_in(patient: &str, ty: Option<&str>) -> Vec<ResourceWrite> {
    staged(|s| {
        s.writes.iter().filter(|w| w.patient == patient && ty.is_none_or(|t| w.resource_type == t)).cloned().collect()
    })
    .unwrap_or_default()
}

/// Ids of a type staged under a blind-index token.
fn staged_ids(ty: &str, token: &str) -> Vec<String> {
    staged(|s| {
        s.writes
            .iter()
            .filter(|w| w.resource_type == ty && w.tokens.iter().any(|t| t == token))
            .map(|w| w.id.clone())
            .collect()
    })
    .unwrap_or_default()
}

/// The record store, staging inside a transaction's scope.
pub struct Staging<S>(pub S);

impl<S: RecordStore> RecordStore for Staging<S> {
    async fn locate(&self, ty: &str, id: &str) -> Result<Option<String>, PortError> {
        let found =
            staged(|s| s.writes.iter().find(|w| w.resource_type == ty && w.id == id).map(|w| w.patient.clone()))
                .flatten();
        match found {
            Some(patient) if ty != "Patient" => Ok(Some(patient)),
            _ => self.0.locate(ty, id).await,
        }
    }

    async fn wrapped_key(&self, patient: &str) -> Result<Option<Vec<u8>>, PortError> {
        let found = staged(|s| s.writes.iter().find(|w| w.patient == patient).and_then(|w| w.new_wrapped_key.clone()));
        match found.flatten() {
            Some(key) => Ok(Some(key)),
            None => self.0.wrapped_key(patient).await,
        }
    }

    async fn current(&self, patient: &str, ty: &str, id: &str) -> Result<Option<Current>, PortError> {
        match staged_write(patient, ty, id) {
            Some(w) => Ok(Some(current_of(&w))),
            None => self.0.current(patient, ty, id).await,
        }
    }

    async fn version(&self, patient: &str, ty: &str, id: &str, version: u64) -> Result<Option<Version>, PortError> {
        match staged_write(patient, ty, id).filter(|w| w.version == version) {
            Some(w) => Ok(Some(version_of(&w))),
            None => self.0.version(patient, ty, id, version).await,
        }
    }

    async fn versions(
        &self,
        patient: &str,
        ty: &str,
        id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Version>, PortError> {
        let mut out: Vec<Version> = staged_write(patient, ty, id)
            .filter(|w| before.is_none_or(|b| w.version < b))
            .map(|w| version_of(&w))
            .into_iter()
            .collect();
        out.extend(self.0.versions(patient, ty, id, before, limit).await?);
        out.truncate(limit);
        Ok(out)
    }

    async fn compartment(&self, patient: &str, ty: &str) -> Result<Vec<(String, Current)>, PortError> {
        let key = (patient.to_owned(), ty.to_owned());
        let mut all = match staged(|s| s.compartments.get(&key).cloned()).flatten() {
            Some(read) => read,
            None => {
                let read = self.0.compartment(patient, ty).await?;
                staged(|s| s.compartments.insert(key, read.clone()));
                read
            }
        };
        for w in staged_in(patient, Some(ty)) {
            all.retain(|(id, _)| *id != w.id);
            all.push((w.id.clone(), current_of(&w)));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn compartment_versions(
        &self,
        patient: &str,
        ty: Option<&str>,
    ) -> Result<Vec<(String, String, Version)>, PortError> {
        let mut all = self.0.compartment_versions(patient, ty).await?;
        all.extend(staged_in(patient, ty).iter().map(|w| (w.resource_type.to_owned(), w.id.clone(), version_of(w))));
        Ok(all)
    }

    async fn compartment_index(&self, patient: &str) -> Result<Vec<(String, String, bool)>, PortError> {
        let mut all = self.0.compartment_index(patient).await?;
        for w in staged_in(patient, None) {
            all.retain(|(t, id, _)| !(t == w.resource_type && *id == w.id));
            all.push((w.resource_type.to_owned(), w.id.clone(), w.deleted));
        }
        all.sort();
        Ok(all)
    }

    async fn ids_for_token_page(
        &self,
        ty: &str,
        token: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        let mut ids = self.0.ids_for_token_page(ty, token, after, limit).await?;
        ids.extend(staged_ids(ty, token).into_iter().filter(|id| after.is_none_or(|a| id.as_str() > a)));
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn ids_for_token(&self, ty: &str, token: &str) -> Result<Vec<String>, PortError> {
        let mut ids = self.0.ids_for_token(ty, token).await?;
        ids.extend(staged_ids(ty, token));
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn commit(
        &self,
        write: ResourceWrite,
        audit: &AuditEntry,
        events: Vec<DomainEvent>,
    ) -> Result<(), PortError> {
        let mut pending = Some((write, audit.clone(), events));
        let refused = staged(|s| {
            let (write, audit, events) = pending.take().expect("taken once");
            // One change per resource: a second would need the first's
            // version item to exist (R4 refuses a resource twice anyway).
            if s.writes.iter().any(|w| w.resource_type == write.resource_type && w.id == write.id) {
                return true;
            }
            s.writes.push(write);
            s.audits.push(audit);
            s.events.extend(events);
            false
        });
        match (refused, pending) {
            (Some(true), _) => Err(PortError::ConditionFailed(0)),
            (Some(false), _) => Ok(()),
            (None, Some((write, audit, events))) => self.0.commit(write, &audit, events).await,
            (None, None) => unreachable!("the change is either staged or still here"),
        }
    }

    async fn commit_all(
        &self,
        writes: Vec<ResourceWrite>,
        audits: &[AuditEntry],
        events: Vec<DomainEvent>,
    ) -> Result<(), PortError> {
        self.0.commit_all(writes, audits, events).await
    }

    async fn finish_transactions(&self) -> Result<usize, PortError> {
        self.0.finish_transactions().await
    }

    async fn audit_batch(&self, audits: &[AuditEntry], events: Vec<DomainEvent>) -> Result<(), PortError> {
        let mut pending = Some(events);
        let was_staged = staged(|s| {
            s.audits.extend_from_slice(audits);
            s.events.extend(pending.take().unwrap_or_default());
        });
        match was_staged {
            Some(()) => Ok(()),
            None => self.0.audit_batch(audits, pending.unwrap_or_default()).await,
        }
    }

    async fn audit_once(&self, key: &str, audit: &AuditEntry, events: Vec<DomainEvent>) -> Result<bool, PortError> {
        self.0.audit_once(key, audit, events).await
    }
}

impl<S: AuditLog> AuditLog for Staging<S> {
    async fn trail(&self, from: &str, to: &str) -> Result<Vec<serde_json::Value>, PortError> {
        self.0.trail(from, to).await
    }

    async fn audit_records(
        &self,
        key: AuditKey<'_>,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        self.0.audit_records(key, from, to, limit).await
    }

    async fn break_glass_accesses(
        &self,
        reviewed: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BreakGlassAccess>, PortError> {
        self.0.break_glass_accesses(reviewed, after, limit).await
    }

    async fn break_glass_access(&self, audit_id: &str) -> Result<Option<BreakGlassAccess>, PortError> {
        self.0.break_glass_access(audit_id).await
    }

    async fn review_break_glass(
        &self,
        access: &BreakGlassAccess,
        review: &BreakGlassReview,
        audit: &AuditEntry,
    ) -> Result<(), PortError> {
        self.0.review_break_glass(access, review, audit).await
    }

    async fn count_failure(&self, current: &str, previous: &str, expires: i64) -> Result<u64, PortError> {
        self.0.count_failure(current, previous, expires).await
    }
}

#[cfg(all(test, feature = "memory-ports"))]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    fn write(patient: &str, ty: &'static str, id: &str) -> ResourceWrite {
        ResourceWrite {
            new_wrapped_key: (ty == "Patient").then(|| b"wrapped".to_vec()),
            ..ResourceWrite::first(patient, ty, id, "2026-12-05T00:00:00Z", b"ct".to_vec(), vec!["tok".into()])
        }
    }

    fn audit() -> AuditEntry {
        AuditEntry {
            id: random_id(),
            recorded: "2026-12-05T00:00:00Z".into(),
            interaction: "create",
            outcome: crate::audit::Outcome::Success,
            status: 201,
            agent: crate::audit::Agent::default(),
            purpose: "TREAT",
            break_glass: None,
            patient: Some("p1".into()),
            entities: vec![],
            query_params: vec![],
            observer: "test".into(),
            request_id: None,
        }
    }

    #[tokio::test]
    async fn a_stage_is_seen_by_reads_in_its_scope_and_by_nothing_else() {
        let store = Staging(MemoryStore::default());
        let ((), stage) = run(async {
            assign_next_id(Some("p1".into()));
            assert_eq!(new_id(), "p1");
            assert_ne!(new_id(), "p1", "an assigned id is taken once");
            store.commit(write("p1", "Patient", "p1"), &audit(), vec![]).await.unwrap();
            store.commit(write("p1", "Observation", "o1"), &audit(), vec![]).await.unwrap();
            assert_eq!(store.wrapped_key("p1").await.unwrap().as_deref(), Some(&b"wrapped"[..]));
            assert_eq!(store.locate("Observation", "o1").await.unwrap().as_deref(), Some("p1"));
            assert_eq!(store.current("p1", "Observation", "o1").await.unwrap().map(|c| c.version), Some(1));
            assert_eq!(store.ids_for_token("Observation", "tok").await.unwrap(), ["o1"]);
            assert_eq!(store.compartment_index("p1").await.unwrap().len(), 2);
            assert!(matches!(
                store.commit(write("p1", "Observation", "o1"), &audit(), vec![]).await,
                Err(PortError::ConditionFailed(_))
            ));
        })
        .await;
        assert_eq!((stage.writes.len(), stage.audits.len()), (2, 2));
        assert!(store.current("p1", "Observation", "o1").await.unwrap().is_none(), "nothing committed");
        store.commit_all(stage.writes, &stage.audits, stage.events).await.unwrap();
        assert_eq!(store.locate("Observation", "o1").await.unwrap().as_deref(), Some("p1"));
        assert_eq!(store.0.audit_len(), 2);
    }
}
