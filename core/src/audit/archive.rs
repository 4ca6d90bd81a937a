//! What a checkpoint run and an export do, and in which order, over the
//! `AuditArchive` port: the decisions that make them resumable after a
//! crash at any call. A checkpoint archives the one before it if a crash
//! left it unarchived; an export writes its chunks, records progress after
//! each, numbers its manifest into the chain once (a rerun finds the number
//! and archives the same body) and signs it; the scheduled export starts
//! where the last manifest ended and stops short of the present.

use super::checkpoint::Checkpoint;
use super::export::{self, Chunk, Manifest};
use crate::error::PortError;
use crate::ports::{AuditArchive, PendingExport, Series};
use base64::Engine;
use serde_json::json;

/// Records per chunk of a scheduled export.
pub const SCHEDULED_CHUNK_RECORDS: usize = 10_000;
/// Tries at numbering a manifest while other exports take the numbers.
const MANIFEST_ATTEMPTS: usize = 5;
/// Where the scheduled exports begin when nothing was exported yet.
const FIRST_WINDOW_START: &str = "2000-01-01T00:00:00.000Z";

/// Where an export stands.
#[derive(Debug)]
pub struct ExportProgress {
    pub chunks_done: usize,
    pub chunks: usize,
    pub records: usize,
    /// Set when the export is complete.
    pub manifest: Option<Manifest>,
}

/// The archive object of checkpoint `number`.
pub fn checkpoint_object(number: u64) -> String {
    format!("checkpoints/{number:012}.json")
}

/// The archive object of chunk `index` of an export (`kind`: fhir, ocsf).
pub fn chunk_object(export: &str, index: usize, kind: &str) -> String {
    format!("exports/{export}/{index:06}.{kind}.ndjson")
}

pub fn manifest_object(export: &str) -> String {
    format!("exports/{export}/manifest.json")
}

/// An archived, signed body: `field` holds the body, beside the signature
/// and what a verifier needs to find the key.
fn signed_object(field: &str, body: &str, signature: &[u8], key_id: &str) -> Vec<u8> {
    let object = json!({
        field: body,
        "signature": base64::engine::general_purpose::STANDARD.encode(signature),
        "keyId": key_id,
        "algorithm": "ECDSA_SHA_256",
    });
    object.to_string().into_bytes()
}

/// Signs and stores the next checkpoint of the current heads, archiving the
/// one before first if a run stored it and then failed to archive it.
pub async fn write_checkpoint<A: AuditArchive>(archive: &A, at: &str) -> Result<Checkpoint, PortError> {
    let previous = archive.last(Series::Checkpoint).await?;
    if let Some((number, body)) = &previous {
        if !archive.archived(&checkpoint_object(*number)).await? {
            let signature = archive
                .numbered(Series::Checkpoint, *number)
                .await?
                .map(|(_, sig)| sig)
                .filter(|sig| !sig.is_empty())
                .ok_or_else(|| PortError::Integrity(format!("checkpoint {number} has no signature")))?;
            archive_checkpoint(archive, *number, body, &signature).await?;
        }
    }
    let cp = Checkpoint {
        number: previous.as_ref().map_or(1, |(n, _)| n + 1),
        at: at.to_owned(),
        heads: archive.heads().await?,
        previous: previous.map(|(_, body)| Checkpoint::digest_of(&body)),
    };
    let body = cp.body();
    let signature = archive.sign(&Checkpoint::statement(&body)).await?;
    archive.store_checkpoint(cp.number, &body, &signature).await?;
    archive_checkpoint(archive, cp.number, &body, &signature).await?;
    Ok(cp)
}

async fn archive_checkpoint<A: AuditArchive>(
    archive: &A,
    number: u64,
    body: &str,
    signature: &[u8],
) -> Result<(), PortError> {
    let object = signed_object("checkpoint", body, signature, archive.signing_key_id());
    archive.archive(&checkpoint_object(number), object, "application/json").await
}

/// Exports the window as chunks and a signed manifest, writing at most
/// `chunk_limit` chunks in this call (to stay inside a Lambda's time
/// limit). A rerun with the same id continues, rewriting an interrupted
/// chunk with identical bytes; the same id with other terms is refused.
pub async fn export<A: AuditArchive>(
    archive: &A,
    id: &str,
    since: &str,
    until: &str,
    chunk_records: usize,
    chunk_limit: usize,
) -> Result<ExportProgress, PortError> {
    let terms = format!("{since}|{until}|{chunk_records}");
    let (mut done, committed) = match archive.export_state(id).await? {
        Some(state) if state.terms != terms => return Err(PortError::ConditionFailed(0)),
        Some(state) => (state.done, state.manifest),
        None => (0, None),
    };
    let events = archive.window(since, until).await?;
    let chunks = events.len().div_ceil(chunk_records).max(1);
    let mut written = 0;
    while done < chunks && written < chunk_limit {
        let (fhir, ocsf, _) = export::render_chunk(&events, done, chunk_records);
        archive.archive(&chunk_object(id, done, "fhir"), fhir, "application/fhir+ndjson").await?;
        archive.archive(&chunk_object(id, done, "ocsf"), ocsf, "application/x-ndjson").await?;
        done += 1;
        written += 1;
        archive.record_export_progress(id, &terms, done).await?;
    }
    if done < chunks {
        return Ok(ExportProgress { chunks_done: done, chunks, records: events.len(), manifest: None });
    }
    let body = match committed {
        Some(number) => manifest_body(archive, number).await?,
        None => {
            let chunks: Vec<Chunk> = (0..chunks)
                .map(|i| {
                    let (fhir, ocsf, records) = export::render_chunk(&events, i, chunk_records);
                    Chunk {
                        fhir_key: chunk_object(id, i, "fhir"),
                        fhir_sha256: export::digest(&fhir),
                        ocsf_key: chunk_object(id, i, "ocsf"),
                        ocsf_sha256: export::digest(&ocsf),
                        records,
                    }
                })
                .collect();
            let manifest = |previous| Manifest {
                export: id.to_owned(),
                since: since.to_owned(),
                until: until.to_owned(),
                chunks: chunks.clone(),
                previous,
            };
            chain_manifest(archive, id, manifest).await?
        }
    };
    let manifest: Manifest = serde_json::from_str(&body).map_err(|_| PortError::Integrity("manifest".into()))?;
    let signature = archive.sign(&Manifest::statement(&body)).await?;
    let object = signed_object("manifest", &body, &signature, archive.signing_key_id());
    archive.archive(&manifest_object(id), object, "application/json").await?;
    Ok(ExportProgress { chunks_done: chunks, chunks, records: events.len(), manifest: Some(manifest) })
}

async fn manifest_body<A: AuditArchive>(archive: &A, number: u64) -> Result<String, PortError> {
    let item = archive.numbered(Series::Manifest, number).await?;
    item.map(|(body, _)| body).ok_or_else(|| PortError::Integrity(format!("manifest {number} is missing")))
}

/// Numbers the export's manifest after the newest one. An export that lost
/// the race for a number chains after the winner; one that finds itself
/// numbered (a rerun after the answer was lost) takes that body.
async fn chain_manifest<A: AuditArchive>(
    archive: &A,
    id: &str,
    manifest: impl Fn(Option<String>) -> Manifest,
) -> Result<String, PortError> {
    for _ in 0..MANIFEST_ATTEMPTS {
        if let Some(number) = archive.export_state(id).await?.and_then(|s| s.manifest) {
            return manifest_body(archive, number).await;
        }
        let previous = archive.last(Series::Manifest).await?;
        let number = previous.as_ref().map_or(1, |(n, _)| n + 1);
        let body = manifest(previous.map(|(_, body)| export::digest(body.as_bytes()))).body();
        if archive.number_manifest(id, number, &body).await? {
            return Ok(body);
        }
    }
    Err(PortError::Backend { service: "dynamodb", detail: "manifest chain contention".into() })
}

/// The scheduled export: resumes the export in progress, or starts one
/// from the end of the last manifested window to `now - settle` (records
/// are stamped when a request starts and committed when it ends, so the
/// window stops short of the present). None when there is nothing new.
pub async fn scheduled_export<A: AuditArchive>(
    archive: &A,
    now: time::OffsetDateTime,
    settle: time::Duration,
    chunk_limit: usize,
) -> Result<Option<ExportProgress>, PortError> {
    let pending = match archive.pending_export().await? {
        Some(p) => p,
        None => {
            let since = match archive.last(Series::Manifest).await? {
                Some((_, body)) => {
                    let last: Manifest =
                        serde_json::from_str(&body).map_err(|_| PortError::Integrity("manifest".into()))?;
                    let (end, _) = crate::fhir::primitives::datetime_bounds(&last.until)
                        .ok_or_else(|| PortError::Integrity("manifest window".into()))?;
                    crate::fhir::instant(end + time::Duration::milliseconds(1))
                }
                None => FIRST_WINDOW_START.to_owned(),
            };
            let until = crate::fhir::instant(now - settle);
            if until <= since {
                return Ok(None);
            }
            let p = PendingExport { id: format!("scheduled-{}", until.replace(':', "")), since, until };
            archive.start_pending_export(&p).await?;
            p
        }
    };
    let progress =
        export(archive, &pending.id, &pending.since, &pending.until, SCHEDULED_CHUNK_RECORDS, chunk_limit).await?;
    if progress.manifest.is_some() {
        archive.finish_pending_export().await?;
    }
    Ok(Some(progress))
}
