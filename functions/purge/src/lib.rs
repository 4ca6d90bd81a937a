//! The purge Lambda, on an EventBridge schedule: crypto-shreds the patients
//! past the clinical retention period (or past the legal floor after an
//! erasure request) and purges deleted resources and superseded versions
//! past it, under no legal hold (`medrec_edge::aws::purge`), at most
//! `MEDREC_PURGE_LIMIT` per run so a run stays inside the function's time
//! limit; the next run continues.

use lambda_http::LambdaEvent;
use medrec_edge::aws::purge::PurgeContext;
use medrec_edge::config::{ConfigError, Deployment, Settings};
use medrec_edge::retention::Retention;
use medrec_edge::runtime::BootError;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    ctx: PurgeContext,
    retention: Retention,
    limit: usize,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let num = |k: &'static str| -> Result<Option<u32>, ConfigError> {
        get(k).map(|v| v.trim().parse().map_err(|_| ConfigError::Invalid(k, "must be a number".into()))).transpose()
    };
    let retention = Retention::new(num("MEDREC_RETENTION_YEARS")?, num("MEDREC_ERASURE_FLOOR_YEARS")?)
        .map_err(|e| ConfigError::Invalid("MEDREC_RETENTION_YEARS", e))?
        .with_types(&get("MEDREC_RETENTION_BY_TYPE").unwrap_or_default())
        .map_err(|e| ConfigError::Invalid("MEDREC_RETENTION_BY_TYPE", e))?;
    let limit = num("MEDREC_PURGE_LIMIT")?.unwrap_or(100) as usize;
    let bucket = get("MEDREC_DOCUMENTS_BUCKET").ok_or(ConfigError::Missing("MEDREC_DOCUMENTS_BUCKET"))?;
    let sdk = medrec_edge::aws::sdk_config(config.aws_endpoint.as_deref()).await;
    let tables = medrec_edge::runtime::tables(&config);
    let local = config.deployment == Deployment::Local;
    let kms = medrec_edge::runtime::records_keys(&config, &sdk);
    let ctx = PurgeContext::new(&sdk, local, tables, kms, config.audit_shards, &bucket).await?;
    Ok(App { name: settings.config.function_name.clone(), ctx, retention, limit })
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, _event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let now = time::OffsetDateTime::now_utc();
        let r = self.ctx.purger().run(&self.retention, now, self.limit, "medrec-scheduled-purge").await?;
        tracing::info!(shredded = r.shredded, resources = r.resources, held = r.held, "purge run");
        Ok(json!({"shredded": r.shredded, "resources": r.resources, "versionsDeleted": r.versions_deleted,
            "held": r.held, "already": r.already, "objectsDeleted": r.objects_deleted}))
    }
}
