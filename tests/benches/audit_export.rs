//! Audit export throughput over the local stack: a trail of real audit
//! records (one per request), exported as FHIR + OCSF chunks with a signed
//! manifest, then verified as a SIEM would. Records/s, MB/s and AWS calls
//! per record. Run with `cargo bench -p medrec-e2e --bench audit_export`.

use medrec_e2e::{canary_patient, Harness};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-bench");
    let id = h.create_id(&t, &canary_patient("exportbench")).await;
    let n = 2_000;
    for _ in 0..n {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let target = h.verify_target();
    let until = medrec_edge::fhir::now_instant();
    h.aws_calls().await;
    let started = Instant::now();
    let done =
        medrec_infra::audit_verify::export(&target, "bench", ("2000-01-01T00:00:00.000Z", &until), 500, usize::MAX)
            .await
            .unwrap();
    let export_s = started.elapsed().as_secs_f64();
    let counted = h.aws_calls().await;
    let manifest = done.manifest.unwrap();
    let started = Instant::now();
    assert!(medrec_infra::audit_verify::verify_export(&target, "bench").await.unwrap().is_ok());
    let verify_s = started.elapsed().as_secs_f64();
    let bytes: usize = h.audit_events().await.iter().map(|e| e.to_string().len() + 1).sum();
    let records = done.records as f64;
    println!(
        "{} records ({:.1} MB of FHIR NDJSON) in {} chunks:",
        done.records,
        bytes as f64 / 1e6,
        manifest.chunks.len()
    );
    println!(
        "  export  {:.2}s: {:.0} records/s, {:.1} MB/s (FHIR + OCSF written)",
        export_s,
        records / export_s,
        bytes as f64 / 1e6 / export_s
    );
    println!("  verify  {:.2}s: {:.0} records/s", verify_s, records / verify_s);
    let per: Vec<String> = counted
        .iter()
        .map(|(k, v)| format!("{}={:.4}", k.rsplit('.').next().unwrap_or(k), *v as f64 / records))
        .collect();
    println!("  AWS calls per record: {}", per.join(" "));
}
