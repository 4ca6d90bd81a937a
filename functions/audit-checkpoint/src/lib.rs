//! The audit archive Lambda, on an EventBridge schedule: signs every chain
//! shard's head with the KMS signing key and archives the checkpoint, then
//! exports the records since the last export (FHIR NDJSON + OCSF, signed
//! manifest), resuming an export a previous run left unfinished
//! (`medrec_edge::aws::checkpoints`). Audit records hold no PHI. Two runs
//! at once cannot both store a checkpoint of one number; the loser fails and
//! the next run signs the newer heads.

use lambda_http::LambdaEvent;
use medrec_edge::audit::archive;
use medrec_edge::aws::checkpoints::Checkpoints;
use medrec_edge::config::{ConfigError, Deployment, Settings};
use medrec_edge::runtime::BootError;
use serde_json::{json, Value};
use std::sync::Arc;

/// How far behind the present an export window ends: longer than any
/// request runs, so every record stamped inside it is committed.
const EXPORT_SETTLE: time::Duration = time::Duration::minutes(5);
/// Chunks per run, well inside the function's timeout.
const EXPORT_CHUNKS_PER_RUN: usize = 20;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    checkpoints: Checkpoints,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let req = |k: &'static str| get(k).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(k));
    let sdk = medrec_edge::aws::sdk_config(config.aws_endpoint.as_deref()).await;
    let checkpoints = Checkpoints {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        s3: medrec_edge::aws::s3_client(&sdk, config.deployment == Deployment::Local),
        audit_table: config.audit_table.clone(),
        archive_bucket: req("MEDREC_AUDIT_ARCHIVE_BUCKET")?,
        signing_key_id: req("MEDREC_AUDIT_SIGNING_KEY_ID")?,
        shards: config.audit_shards,
    };
    Ok(App { name: settings.config.function_name.clone(), checkpoints })
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, _event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let cp = archive::write_checkpoint(&self.checkpoints, &medrec_edge::fhir::now_instant()).await?;
        tracing::info!(checkpoint = cp.number, shards = cp.heads.len(), "audit checkpoint signed");
        let now = time::OffsetDateTime::now_utc();
        let export = archive::scheduled_export(&self.checkpoints, now, EXPORT_SETTLE, EXPORT_CHUNKS_PER_RUN).await?;
        let (chunks, done) = export.map_or((0, true), |p| (p.chunks_done, p.manifest.is_some()));
        tracing::info!(chunks, complete = done, "audit export run");
        Ok(json!({"checkpoint": cp.number, "exportChunks": chunks, "exportComplete": done}))
    }
}
