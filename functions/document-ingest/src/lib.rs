//! The document ingest Lambda: S3 "object created" notifications of the
//! upload quarantine bucket, delivered through SQS. Each upload is checked
//! against what its DocumentReference promised and sealed under the
//! patient's key (`Services::ingest_upload`). A message whose processing
//! failed for a transient reason is reported back (partial batch response)
//! and retried; after the queue's maxReceiveCount it lands in the DLQ.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::LambdaEvent;
use medrec_edge::aws::s3::S3Blobs;
use medrec_edge::config::{Deployment, Settings};
use medrec_edge::documents::{DocumentConfig, TestSignatureScanner};
use medrec_edge::runtime::{BootError, Runtime};
use medrec_edge::service::documents::{DocumentDeps, Ingested, Uploads};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
    blobs: S3Blobs,
    documents: DocumentConfig,
    scanner: TestSignatureScanner,
}

/// The object keys an SQS message from S3 names. S3's test event (sent
/// when the notification is configured) names none.
fn object_keys(body: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(body).ok()?;
    if v["Event"] == "s3:TestEvent" {
        return Some(vec![]);
    }
    v["Records"]
        .as_array()?
        .iter()
        .map(|r| {
            r["eventName"].as_str().filter(|n| n.starts_with("ObjectCreated"))?;
            r["s3"]["object"]["key"].as_str().map(str::to_owned)
        })
        .collect()
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let documents = settings.documents()?;
    let rt = Runtime::from_config(config).await?;
    let local = rt.config.deployment == Deployment::Local;
    let blobs = S3Blobs::new(&rt.sdk, local, &documents.documents_bucket, &documents.uploads_bucket);
    Ok(App { name: settings.config.function_name.clone(), rt, blobs, documents, scanner: TestSignatureScanner })
}

impl App {
    /// Ingests one S3 object; what happened, or the transient error to retry on.
    pub async fn ingest(&self, key: &str) -> Result<Ingested, medrec_edge::error::Error> {
        // The ingest stores what an upload brought; it promises none.
        let deps = DocumentDeps {
            blobs: &self.blobs,
            config: &self.documents,
            scanner: &self.scanner,
            uploads: Uploads::Refused,
        };
        self.rt.services.ingest_upload(key, &deps).await
    }

    /// One SQS batch; failed messages are reported for redelivery.
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Infallible> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| {
            r.as_ref().is_ok_and(|b| !b.batch_item_failures.is_empty())
        })
        .await
    }

    async fn run(self: Arc<Self>, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Infallible> {
        let mut response = SqsBatchResponse::default();
        for message in event.payload.records {
            let id = message.message_id.clone().unwrap_or_default();
            let Some(keys) = message.body.as_deref().and_then(object_keys) else {
                // Not an S3 notification: retrying cannot help; the DLQ keeps it.
                tracing::error!("message is not an S3 notification");
                response.batch_item_failures.push(failure(id));
                continue;
            };
            for key in keys {
                match self.ingest(&key).await {
                    Ok(Ingested::Rejected(e)) => tracing::warn!(reason = %e, "upload rejected"),
                    Ok(outcome) => tracing::info!(outcome = ?outcome, "upload ingested"),
                    Err(e) => {
                        tracing::error!(error = %e, "ingest failed; will retry");
                        response.batch_item_failures.push(failure(id));
                        break;
                    }
                }
            }
        }
        Ok(response)
    }
}

fn failure(id: String) -> BatchItemFailure {
    BatchItemFailure { item_identifier: id }
}

#[cfg(test)]
mod tests {
    use super::object_keys;

    #[test]
    fn reads_created_keys_and_ignores_test_events() {
        let created = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"abc","size":3}}}]}"#;
        assert_eq!(object_keys(created), Some(vec!["abc".to_owned()]));
        assert_eq!(object_keys(r#"{"Event":"s3:TestEvent"}"#), Some(vec![]));
        assert_eq!(
            object_keys(r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"object":{"key":"a"}}}]}"#),
            None
        );
        assert_eq!(object_keys("not json"), None);
    }
}
