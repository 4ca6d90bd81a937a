//! The public edge, served without a token and touching no PHI:
//! - `GET /health`: whether medrec's dependencies answer (DynamoDB, KMS, S3)
//!   and the registry breakers' state as the registry sync last reported it.
//!   Load balancers and uptime checks have no token, so it says pass/fail per
//!   dependency and nothing else: no endpoint, no error text, no version.
//! - `GET /openapi.json`: the API's OpenAPI document.
//! - API Gateway's `$default` route: a method a path does not serve is 405
//!   with `Allow` (RFC 9110), any other unrouted request 404; both as an
//!   OperationOutcome, like every other error.

use lambda_http::http::HeaderValue;
use lambda_http::{Body, Request, Response};
use medrec_edge::api;
use medrec_edge::config::{ConfigError, Settings};
use medrec_edge::error::Error;
use medrec_edge::http;
use medrec_edge::runtime::BootError;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct App {
    ddb: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
    s3: aws_sdk_s3::Client,
    records_table: String,
    key_id: String,
    bucket: String,
    processed_table: String,
    public_base_url: Option<String>,
    /// The request bounds the OpenAPI document states.
    limits: medrec_edge::config::Limits,
    require_if_match: bool,
}

async fn check<T, E>(f: impl Future<Output = Result<T, E>>) -> &'static str {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(_)) => "pass",
        _ => "fail",
    }
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let bucket = get("MEDREC_DOCUMENTS_BUCKET").ok_or(ConfigError::Missing("MEDREC_DOCUMENTS_BUCKET"))?;
    let processed_table =
        get("MEDREC_PROCESSED_EVENTS_TABLE").ok_or(ConfigError::Missing("MEDREC_PROCESSED_EVENTS_TABLE"))?;
    let sdk = medrec_edge::aws::sdk_config(config.aws_endpoint.as_deref()).await;
    let local = config.deployment == medrec_edge::config::Deployment::Local;
    Ok(App {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        s3: medrec_edge::aws::s3_client(&sdk, local),
        records_table: config.records_table,
        key_id: config.records_key_id,
        bucket,
        processed_table,
        public_base_url: config.public_base_url,
        limits: config.limits,
        require_if_match: config.require_if_match,
    })
}

impl App {
    /// The report and its status: 503 when a dependency fails.
    pub async fn report(&self) -> (u16, Value) {
        let (dynamodb, kms, s3, registry) = tokio::join!(
            check(self.ddb.describe_table().table_name(&self.records_table).send()),
            check(self.kms.describe_key().key_id(&self.key_id).send()),
            check(self.s3.head_bucket().bucket(&self.bucket).send()),
            self.registry(),
        );
        let down = [dynamodb, kms, s3].contains(&"fail");
        let breakers: Vec<&str> = registry
            .get("breakers")
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let registry_down = !breakers.is_empty() && breakers.iter().all(|b| *b == "open");
        let status = if down || registry_down {
            "fail"
        } else if breakers.iter().any(|b| *b != "closed") {
            "warn"
        } else {
            "pass"
        };
        let body =
            json!({"status": status, "checks": {"dynamodb": dynamodb, "kms": kms, "s3": s3, "registry": registry}});
        (if status == "fail" { 503 } else { 200 }, body)
    }

    async fn registry(&self) -> Value {
        let got = self
            .ddb
            .get_item()
            .table_name(&self.processed_table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(medrec_edge::registry::HEALTH_KEY.into()))
            .send();
        let Ok(Ok(out)) = tokio::time::timeout(CHECK_TIMEOUT, got).await else { return json!({"state": "unknown"}) };
        let Some(item) = out.item() else { return json!({"state": "not reported yet"}) };
        let breakers: Map<String, Value> = item
            .get("breakers")
            .and_then(|b| b.as_m().ok())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), json!(v.as_s().ok()?)))).collect())
            .unwrap_or_default();
        let at = item.get("at").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        json!({"breakers": breakers, "reportedAt": at})
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = req.uri().path();
        match (req.method().as_str(), path) {
            ("GET", "/health") => {
                let (status, body) = self.report().await;
                Response::builder()
                    .status(status)
                    .header("content-type", "application/health+json")
                    .header("cache-control", "no-store")
                    .body(Body::Text(body.to_string()))
                    .expect("valid response")
            }
            ("GET", "/openapi.json") => {
                let base = http::base_url(&req, self.public_base_url.as_deref());
                let mut resp =
                    http::response(200, Some(&api::openapi::document(&base, &self.limits, self.require_if_match)), &[]);
                resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
                resp
            }
            _ => {
                let e = if api::allowed_methods(path).is_empty() { Error::NotFound } else { Error::MethodNotAllowed };
                http::error_response_at(&e, path)
            }
        }
    }
}
