//! `medrec audit verify`: recomputes every audit chain and names the first
//! record that does not match in each broken shard, then checks every signed
//! checkpoint against the chains; `medrec audit checkpoint` signs one.

use medrec_edge::audit::archive;
use medrec_edge::audit::archive::ExportProgress;
use medrec_edge::audit::checkpoint::Checkpoint;
use medrec_edge::audit::export::{ExportFinding, Manifest};
use medrec_edge::aws::checkpoints::Checkpoints;
use medrec_edge::aws::kms::KmsKeys;
use medrec_edge::aws::mirror::AuditMirror;
pub use medrec_edge::aws::verification::{verify_trail, Verification as Report};

pub struct Target {
    pub endpoint: Option<String>,
    pub audit_table: String,
    pub records_table: String,
    pub records_key_id: String,
    /// The checkpoint signing key; None skips the checkpoints.
    pub signing_key_id: Option<String>,
    /// Where checkpoints are archived (needed to write one).
    pub archive_bucket: Option<String>,
    pub shards: u32,
}

async fn checkpoints(target: &Target, sdk: &aws_config::SdkConfig) -> Option<Checkpoints> {
    Some(Checkpoints {
        ddb: aws_sdk_dynamodb::Client::new(sdk),
        kms: aws_sdk_kms::Client::new(sdk),
        s3: medrec_edge::aws::s3_client(sdk, target.endpoint.is_some()),
        audit_table: target.audit_table.clone(),
        archive_bucket: target.archive_bucket.clone().unwrap_or_default(),
        signing_key_id: target.signing_key_id.clone()?,
        shards: target.shards,
    })
}

/// Exports a window of the audit trail (resumable; see `Checkpoints::export`).
pub async fn export(
    target: &Target,
    id: &str,
    window: (&str, &str),
    chunk_records: usize,
    chunk_limit: usize,
) -> Result<ExportProgress, String> {
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let cps = checkpoints(target, &sdk).await.ok_or("an export needs the signing key")?;
    archive::export(&cps, id, window.0, window.1, chunk_records, chunk_limit).await.map_err(|e| match e {
        medrec_edge::error::PortError::ConditionFailed(_) => format!("export {id} exists with other terms"),
        other => other.to_string(),
    })
}

/// Verifies an archived export: the manifest's signature and every chunk's
/// SHA-256, as a SIEM receiving it would.
pub async fn verify_export(target: &Target, id: &str) -> Result<Result<Manifest, ExportFinding>, String> {
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let cps = checkpoints(target, &sdk).await.ok_or("verifying an export needs the signing key")?;
    let get = |key: String| {
        let s3 = cps.s3.clone();
        let bucket = cps.archive_bucket.clone();
        async move {
            let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
            Some(out.body.collect().await.ok()?.to_vec())
        }
    };
    let object = get(format!("exports/{id}/manifest.json")).await.ok_or("the export has no manifest")?;
    let object: serde_json::Value = serde_json::from_slice(&object).map_err(|e| e.to_string())?;
    let body = object["manifest"].as_str().unwrap_or_default();
    let signature = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        object["signature"].as_str().unwrap_or_default(),
    )
    .unwrap_or_default();
    let manifest: Manifest = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut chunks = std::collections::HashMap::new();
    for c in &manifest.chunks {
        for key in [&c.fhir_key, &c.ocsf_key] {
            if let Some(bytes) = get(key.clone()).await {
                chunks.insert(key.clone(), bytes);
            }
        }
    }
    let public_key = cps.public_key().await.map_err(|e| e.to_string())?;
    Ok(medrec_edge::audit::export::verify(&public_key, body, &signature, |k| chunks.get(k).cloned()))
}

/// Signs and archives a checkpoint of the chains' current heads.
pub async fn checkpoint(target: &Target) -> Result<Checkpoint, String> {
    if target.archive_bucket.is_none() {
        return Err("a checkpoint needs the archive bucket".into());
    }
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let cps = checkpoints(target, &sdk).await.ok_or("a checkpoint needs the signing key")?;
    archive::write_checkpoint(&cps, &medrec_edge::fhir::now_instant()).await.map_err(|e| e.to_string())
}

pub async fn verify(target: &Target, progress: bool) -> Result<Report, String> {
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let kms = KmsKeys::new(aws_sdk_kms::Client::new(&sdk), &target.records_key_id);
    let key =
        medrec_edge::aws::service_keys(&ddb, &kms, &target.records_table).await.map_err(|e| e.to_string())?.audit_chain;
    let bar = if progress { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let cps = checkpoints(target, &sdk).await;
    let mirror = target.archive_bucket.as_ref().map(|bucket| AuditMirror {
        s3: medrec_edge::aws::s3_client(&sdk, target.endpoint.is_some()),
        bucket: bucket.clone(),
    });
    let report = verify_trail(&ddb, &target.audit_table, &key, cps.as_ref(), mirror.as_ref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    Ok(report)
}
