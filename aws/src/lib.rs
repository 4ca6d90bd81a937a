//! medrec's AWS adapters: the ports of `medrec-core` over DynamoDB
//! (records, audit chains, outbox, claims), KMS (data keys, signatures), S3
//! (documents, the archive), EventBridge (the relay) and the SQS batches of
//! consumers. Clients are built once per cold start from one SdkConfig.
//!
//! Owns: item layouts, key schemas, conditions and the calls that carry out
//! what the core decided. Must never import the Lambda/HTTP edge
//! (`medrec-edge`) nor decide anything a use case owns: its Cargo.toml
//! lists neither `lambda_http` nor the edge crate.

// The core's modules under the names the adapters use.
use medrec_core::{audit, consumer, crypto, error, events, fhir, metrics, ports, retention, service};

pub mod checkpoints;
pub mod dynamo;
pub mod kms;
pub mod mirror;
pub mod processed;
pub mod purge;
pub mod rekey;
pub mod relay;
pub mod roster;
pub mod s3;
pub mod schema;
pub mod stream;
pub mod timed_http;
pub mod verification;

use crate::error::PortError;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use std::time::Duration;

/// The SDK configuration for every client. `endpoint` points all clients at the
/// emulator in local mode; static test credentials go with it.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(15))
        .build();
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts).http_client(timed_http::client());
    if let Some(ep) = endpoint {
        loader = loader.endpoint_url(ep).region(Region::new("us-east-1")).credentials_provider(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "medrec-local"),
        );
    }
    loader.load().await
}

/// Name of the root secret item and the KMS context purpose that binds it.
pub(crate) const ROOT_SECRET: &str = "ROOT_SECRET";
pub(crate) const ROOT_PURPOSE: &str = "service-root";

/// The service keys (blind index, cursor, audit chain), derived from the
/// root secret that is kept KMS-wrapped in the records table and created on
/// first use: the one place any function or tool obtains them.
pub async fn service_keys(
    ddb: &aws_sdk_dynamodb::Client,
    kms: &kms::KmsKeys,
    records_table: &str,
) -> Result<crate::service::ServiceKeys, PortError> {
    let root = dynamo::load_or_create_secret(
        ddb,
        records_table,
        ROOT_SECRET,
        || kms.generate_secret(ROOT_PURPOSE),
        |w| async move { kms.unwrap_secret(ROOT_PURPOSE, &w).await },
    )
    .await?;
    Ok(crate::service::ServiceKeys::derive(&root))
}

/// An S3 client; `path_style` for the emulator, which serves buckets by
/// path, not by virtual host.
pub fn s3_client(sdk: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(path_style).build())
}

/// Translates an SDK error into a port error. Only the error code and the
/// service's message are kept; request contents never reach the error.
pub(crate) fn port_error<E: ProvideErrorMetadata>(service: &'static str, e: &E) -> PortError {
    let code = e.code().unwrap_or("unknown");
    if code.contains("Throttl") || code == "ProvisionedThroughputExceededException" || code == "RequestLimitExceeded" {
        return PortError::Throttled(service);
    }
    PortError::Backend { service, detail: code.to_owned() }
}
