//! The audit archive's runs over the in-memory archive: checkpoints chain
//! and are signed, a lost archive object is restored by the next run, an
//! export resumes chunk by chunk to a signed manifest that chains to the
//! one before, and the scheduled export walks the trail window by window.

use super::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use medrec_core::audit::archive::{self, checkpoint_object, manifest_object};
use medrec_core::audit::checkpoint::{signature_ok, Checkpoint};
use medrec_core::audit::export;
use medrec_core::error::PortError;
use medrec_core::memory::MemoryArchive;

fn event(id: &str, recorded: &str) -> Value {
    json!({"resourceType": "AuditEvent", "id": id, "recorded": recorded, "action": "R",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "agent": [{"requestor": true, "who": {"identifier": {"value": "dr-a"}}}],
        "source": {"observer": {"display": "unit"}}})
}

/// An archived signed object: (body, signature).
fn signed(archive: &MemoryArchive, key: &str, field: &str) -> (String, Vec<u8>) {
    let object: Value = serde_json::from_slice(&archive.object(key).expect("archived")).unwrap();
    (object[field].as_str().unwrap().to_owned(), B64.decode(object["signature"].as_str().unwrap()).unwrap())
}

#[tokio::test]
async fn checkpoints_chain_are_signed_and_a_lost_archive_copy_is_restored() {
    let archive = MemoryArchive::default();
    archive.record(0, event("a1", "2026-12-01T10:00:00.000Z"));
    let first = archive::write_checkpoint(&archive, "2026-12-01T10:05:00.000Z").await.unwrap();
    assert_eq!((first.number, first.heads[&0].0, first.previous.as_deref()), (1, 1, None));
    let (body, signature) = signed(&archive, &checkpoint_object(1), "checkpoint");
    assert_eq!(body, first.body());
    assert!(signature_ok(&archive.public_key(), &body, &signature));
    assert!(!signature_ok(&archive.public_key(), &body.replace("\"number\":1", "\"number\":9"), &signature));

    // A run stored checkpoint 2 and crashed before archiving it.
    archive.record(1, event("a2", "2026-12-01T10:06:00.000Z"));
    archive::write_checkpoint(&archive, "2026-12-01T10:10:00.000Z").await.unwrap();
    archive.lose_object(&checkpoint_object(2));
    let third = archive::write_checkpoint(&archive, "2026-12-01T10:15:00.000Z").await.unwrap();
    assert_eq!(third.number, 3);
    let (second, _) = signed(&archive, &checkpoint_object(2), "checkpoint");
    assert_eq!(third.previous, Some(Checkpoint::digest_of(&second)), "restored and chained");
    assert_eq!(third.heads.len(), 2);
}

#[tokio::test]
async fn an_export_resumes_chunk_by_chunk_to_a_signed_manifest_chained_to_the_last() {
    let archive = MemoryArchive::default();
    for i in 0..5 {
        archive.record(i % 2, event(&format!("e{i}"), &format!("2026-12-01T10:0{i}:00.000Z")));
    }
    archive.record(0, event("late", "2026-12-02T00:00:00.000Z"));
    let (since, until) = ("2026-12-01T00:00:00.000Z", "2026-12-01T23:59:59.999Z");
    let mut runs = 0;
    let manifest = loop {
        runs += 1;
        let progress = archive::export(&archive, "x1", since, until, 2, 1).await.unwrap();
        assert_eq!((progress.chunks, progress.records), (3, 5));
        if let Some(m) = progress.manifest {
            break m;
        }
    };
    assert_eq!(runs, 3, "one chunk per run");
    let (body, signature) = signed(&archive, &manifest_object("x1"), "manifest");
    let verified = export::verify(&archive.public_key(), &body, &signature, |k| archive.object(k)).unwrap();
    assert_eq!(verified, manifest);
    assert_eq!(manifest.chunks.iter().map(|c| c.records).sum::<usize>(), 5, "the late record is outside the window");

    // A rerun changes nothing; other terms under the same id are refused.
    let before = archive.object_keys();
    let again = archive::export(&archive, "x1", since, until, 2, 10).await.unwrap();
    assert_eq!(again.manifest.unwrap(), manifest);
    assert_eq!(archive.object_keys(), before);
    let other = archive::export(&archive, "x1", since, "2026-12-03T00:00:00.000Z", 2, 10).await;
    assert!(matches!(other, Err(PortError::ConditionFailed(_))));

    let next = archive::export(&archive, "x2", "2026-12-02T00:00:00.000Z", "2026-12-02T23:59:59.999Z", 2, 10);
    let next = next.await.unwrap().manifest.unwrap();
    assert_eq!(next.previous, Some(export::digest(body.as_bytes())), "manifests form a chain");
    let mut tampered = archive.object(&manifest.chunks[0].fhir_key).unwrap();
    tampered[10] ^= 1;
    let fetch = |k: &str| if k == manifest.chunks[0].fhir_key { Some(tampered.clone()) } else { archive.object(k) };
    assert!(export::verify(&archive.public_key(), &body, &signature, fetch).is_err());
}

#[tokio::test]
async fn the_scheduled_export_walks_the_trail_window_by_window_short_of_now() {
    let archive = MemoryArchive::default();
    let now = time::OffsetDateTime::now_utc();
    let at = |minutes_ago: i64| medrec_core::fhir::instant(now - time::Duration::minutes(minutes_ago));
    archive.record(0, event("old", &at(60)));
    archive.record(0, event("recent", &at(1)));
    let settle = time::Duration::minutes(5);

    let first = archive::scheduled_export(&archive, now, settle, 10).await.unwrap().unwrap();
    let first = first.manifest.expect("complete");
    assert_eq!(first.chunks.iter().map(|c| c.records).sum::<usize>(), 1, "the last minutes settle first");
    assert_eq!(first.until, at(5));

    let later = now + time::Duration::minutes(10);
    let second = archive::scheduled_export(&archive, later, settle, 10).await.unwrap().unwrap().manifest.unwrap();
    assert!(second.since > first.until, "starts right after: {} {}", first.until, second.since);
    assert_eq!(second.chunks.iter().map(|c| c.records).sum::<usize>(), 1);
    assert!(archive::scheduled_export(&archive, later, settle, 10).await.unwrap().is_none(), "nothing new");
}
