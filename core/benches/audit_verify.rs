//! Audit chain verification against this machine's raw SHA-256, side by
//! side in one run: records/s and MB/s of `verify_shard` over a synthetic
//! chain of realistic AuditEvent bodies, and SHA-256 over the same bytes.
//! Run with `cargo bench -p medrec-core --bench audit_verify`.

use medrec_core::audit::chain::{link, verify_shard, Head, Record, GENESIS};
use medrec_core::audit::{Agent, AuditEntry, Outcome};
use medrec_core::crypto::{sha256, DataKey};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn body(i: usize) -> String {
    AuditEntry {
        id: format!("{i:032x}"),
        recorded: "2026-11-23T10:00:00.000Z".into(),
        interaction: "read",
        outcome: Outcome::Success,
        status: 200,
        agent: Agent {
            subject: Some("dr-bench".into()),
            fhir_user: Some("Practitioner/dr-bench".into()),
            roles: vec!["clinician"],
            token_id: Some("jti-1".into()),
            source_ip: Some("203.0.113.10".into()),
        },
        purpose: "TREAT",
        break_glass: None,
        patient: Some(format!("{:032x}", i % 977)),
        entities: vec![format!("Observation/{i:032x}/_history/1")],
        query_params: vec![],
        observer: "ClinicalFunction".into(),
        request_id: Some("req".into()),
    }
    .to_fhir()
    .to_string()
}

fn best(rounds: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let key = DataKey::random();
    let n = 100_000;
    let mut records = Vec::with_capacity(n);
    let mut prev = GENESIS.to_owned();
    for i in 0..n {
        let b = body(i);
        let seq = i as u64 + 1;
        let hash = link(&key, 0, seq, &prev, &b);
        records.push(Record { seq, prev: prev.clone(), hash: hash.clone(), body: b });
        prev = hash;
    }
    let head = Head { seq: n as u64, hash: prev };
    let bytes: usize = records.iter().map(|r| r.body.len()).sum();
    let verify = best(5, || {
        assert_eq!(black_box(verify_shard(&key, 0, &records, Some(&head))), Ok(n as u64));
    });
    let raw = best(5, || {
        for r in &records {
            black_box(sha256(r.body.as_bytes()));
        }
    });
    let mb = bytes as f64 / 1e6;
    println!("{n} records, {:.1} MB of AuditEvent bodies (mean {} bytes), best of 5:", mb, bytes / n);
    println!(
        "  verify_shard (HMAC-SHA256 links)   {:>9.0} records/s {:>7.0} MB/s",
        n as f64 / verify.as_secs_f64(),
        mb / verify.as_secs_f64()
    );
    println!(
        "  raw SHA-256 of the same bodies     {:>9.0} records/s {:>7.0} MB/s",
        n as f64 / raw.as_secs_f64(),
        mb / raw.as_secs_f64()
    );
    println!("  verification / raw SHA-256: {:.2}", raw.as_secs_f64() / verify.as_secs_f64());
}
