//! The audit mirror Lambda, triggered by the audit table's DynamoDB stream
//! (`medrec_edge::aws::mirror`): copies each committed chain record's
//! position and hash into the Object Lock archive named by
//! `MEDREC_AUDIT_ARCHIVE_BUCKET`, where no API function's role can write,
//! so `medrec audit verify` detects a record rewritten after commit.

use lambda_http::LambdaEvent;
use medrec_edge::aws::mirror::AuditMirror;
use medrec_edge::aws::stream::{StreamBatchResponse, StreamEvent};
use medrec_edge::config::{ConfigError, Deployment, Settings};
use medrec_edge::runtime::BootError;
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    mirror: AuditMirror,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let bucket = get("MEDREC_AUDIT_ARCHIVE_BUCKET")
        .filter(|b| !b.is_empty())
        .ok_or(ConfigError::Missing("MEDREC_AUDIT_ARCHIVE_BUCKET"))?;
    let sdk = medrec_edge::aws::sdk_config(config.aws_endpoint.as_deref()).await;
    let s3 = medrec_edge::aws::s3_client(&sdk, config.deployment == Deployment::Local);
    Ok(App { name: settings.config.function_name.clone(), mirror: AuditMirror { s3, bucket } })
}

impl App {
    pub async fn handle(
        self: Arc<Self>,
        event: LambdaEvent<StreamEvent>,
    ) -> Result<StreamBatchResponse, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| {
            r.as_ref().map_or(true, |b| !b.batch_item_failures.is_empty())
        })
        .await
    }

    async fn run(self: Arc<Self>, event: LambdaEvent<StreamEvent>) -> Result<StreamBatchResponse, lambda_http::Error> {
        Ok(self.mirror.record(event.payload).await)
    }
}
