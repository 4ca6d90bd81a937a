//! Document ingest throughput against this machine's raw AES-256-GCM, side
//! by side in one run: (1) AES-256-GCM over the whole buffer in one call,
//! (2) medrec's framed seal alone, (3) everything the ingest does to the
//! bytes in process (SHA-256, SHA-1, type check, malware hook, framed
//! seal), (4) the whole ingest over the local stack: promise, presigned PUT,
//! S3 -> SQS -> ingest -> DocumentReference current. Run with
//! `cargo bench -p medrec-e2e --bench document_ingest`.

use aws_lc_rs::aead::{Aad, RandomizedNonceKey, AES_256_GCM};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use medrec_e2e::{canary_patient, pdf, Harness};
use medrec_edge::crypto::{sha256, DataKey};
use medrec_edge::documents::TestSignatureScanner;
use medrec_edge::service::documents::{check_bytes, seal_binary};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// Best MB/s of `rounds` runs of `f` over `len` bytes.
fn rate(len: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    len as f64 / 1e6 / best.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let size = 32 * MIB;
    let doc = pdf(size, "bench");
    let key = DataKey::random();
    let raw = rate(size, 5, || {
        let k = RandomizedNonceKey::new(&AES_256_GCM, key.expose()).unwrap();
        let mut buf = doc.clone();
        black_box(k.seal_in_place_append_tag(Aad::from(b"bench"), &mut buf).unwrap());
        black_box(buf);
    });
    let framed = rate(size, 5, || {
        black_box(seal_binary(&key, "patient", "binary", &doc));
    });
    let attachment = json!({"contentType": "application/pdf", "size": size,
        "extension": [{"url": medrec_edge::documents::SHA256_EXTENSION, "valueBase64Binary": B64.encode(sha256(&doc))}]});
    let pipeline = rate(size, 5, || {
        check_bytes(0, &attachment, "application/pdf", &doc, &TestSignatureScanner).unwrap();
        black_box(seal_binary(&key, "patient", "binary", &doc));
    });
    let sha256_rate = rate(size, 5, || {
        black_box(sha256(&doc));
    });
    let sha1_rate = rate(size, 5, || {
        black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &doc));
    });
    println!("in process, 32 MiB, best of 5:");
    println!("  raw AES-256-GCM, one call           {raw:>8.0} MB/s  (1.00x)");
    println!("  framed seal (64 KiB frames)         {framed:>8.0} MB/s  ({:.2}x)", framed / raw);
    println!(
        "  raw SHA-256 / raw SHA-1             {sha256_rate:>8.0} / {sha1_rate:.0} MB/s (the ingest computes both)"
    );
    println!("  ingest CPU path (hashes, checks, seal) {pipeline:>5.0} MB/s  ({:.2}x)", pipeline / raw);

    // The whole ingest over the local stack (moto's S3 and SQS in Python).
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-bench");
    let patient = h.create_id(&t, &canary_patient("ingestbench")).await;
    println!("over the local stack (presigned PUT -> S3 event -> SQS -> ingest -> current):");
    for mib in [1usize, 8, 32] {
        let bytes = pdf(mib * MIB, "bench");
        let pending = h.promise_upload(&t, &patient, &bytes).await;
        let start = Instant::now();
        assert_eq!(h.upload(&pending, &bytes).await, 200);
        let uploaded = start.elapsed();
        while h.get(&format!("/fhir/DocumentReference/{}", pending.id), &t).await.status != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let total = start.elapsed();
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "  {mib:>2} MiB: PUT {:>6.0} ms, then ingest {:>6.0} ms; {:.1} MB/s end to end",
            uploaded.as_secs_f64() * 1e3,
            (total - uploaded).as_secs_f64() * 1e3,
            mb / total.as_secs_f64()
        );
    }
}
