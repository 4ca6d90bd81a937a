//! The documents Lambda: DocumentReference (FHIR REST, content inline or by
//! presigned upload) and Binary (the content, decrypted and verified).
//! Routing and HTTP mapping only; the use cases are
//! `medrec_shared::service::documents`.

use base64::Engine;
use lambda_http::{Body, Response};
use medrec_shared::audit::AuditEntry;
use medrec_shared::aws::s3::S3Blobs;
use medrec_shared::config::{Config, Deployment};
use medrec_shared::documents::{DocumentConfig, TestSignatureScanner};
use medrec_shared::error::Error;
use medrec_shared::http;
use medrec_shared::lambda::{Api, Ctx, Route};
use medrec_shared::rest::{self, resource_response, serve_compartment_record};
use medrec_shared::runtime::{BootError, Runtime};
use medrec_shared::service::binaries::NewBinary;
use medrec_shared::service::documents::{BinaryContent, Created, DocumentDeps};
use serde_json::json;

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/DocumentReference", interaction: "create" },
    Route { method: "GET", path: "/fhir/DocumentReference", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/DocumentReference", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/DocumentReference", interaction: "delete" },
    Route { method: "POST", path: "/fhir/DocumentReference/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/DocumentReference/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/DocumentReference/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/DocumentReference/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/DocumentReference/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/DocumentReference/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/DocumentReference/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "POST", path: "/fhir/Binary", interaction: "create" },
    Route { method: "GET", path: "/fhir/Binary/{id}", interaction: "read" },
];

pub struct App {
    rt: Runtime,
    blobs: S3Blobs,
    documents: DocumentConfig,
    scanner: TestSignatureScanner,
}

impl App {
    pub async fn from_env() -> Result<Self, BootError> {
        let config = medrec_shared::lambda::config_from_env()?;
        Self::new(config, DocumentConfig::from_lookup(|k| std::env::var(k).ok())?).await
    }

    pub async fn new(config: Config, documents: DocumentConfig) -> Result<Self, BootError> {
        medrec_shared::fhir::validator::model();
        let rt = Runtime::from_config(config).await?;
        let local = rt.config.deployment == Deployment::Local;
        let blobs = S3Blobs::new(&rt.sdk, local, &documents.documents_bucket, &documents.uploads_bucket);
        Ok(App { rt, blobs, documents, scanner: TestSignatureScanner })
    }

    fn deps(&self) -> DocumentDeps<'_, S3Blobs> {
        DocumentDeps { blobs: &self.blobs, config: &self.documents, scanner: &self.scanner }
    }

    async fn create(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        // Inline content arrives as base64 (4/3 larger) inside the JSON.
        let limit = self.documents.inline_max / 3 * 4 + 64 * 1024;
        let body = http::json_resource(ctx.req, limit, "DocumentReference")?;
        if let Some(existing) = rest::conditional_create(&self.rt, ctx.req, ctx.caller, "DocumentReference").await? {
            return Ok(resource_response(ctx.req, 200, ctx.base, "DocumentReference", &existing, false));
        }
        match self.rt.services.create_document(ctx.caller, body, &self.deps(), audit).await? {
            Created::Stored(stored) => {
                Ok(resource_response(ctx.req, 201, ctx.base, "DocumentReference", &stored, true))
            }
            Created::Pending { id, upload, expires } => {
                let mut parameter = vec![
                    json!({"name": "documentReference", "valueReference": {"reference": format!("DocumentReference/{id}")}}),
                    json!({"name": "uploadUrl", "valueUrl": upload.url}),
                    json!({"name": "uploadMethod", "valueCode": upload.method}),
                    json!({"name": "expires", "valueInstant": expires}),
                ];
                parameter.extend(
                    upload
                        .headers
                        .iter()
                        .map(|(k, v)| json!({"name": "uploadHeader", "valueString": format!("{k}: {v}")})),
                );
                let location = format!("{}/fhir/DocumentReference/{id}", ctx.base);
                let body = json!({"resourceType": "Parameters", "parameter": parameter});
                Ok(http::response(202, Some(&body), &[("content-location", location)]))
            }
        }
    }

    /// `POST /fhir/Binary`: FHIR JSON, or the raw bytes with their content
    /// type and the securityContext in `X-Security-Context` (as HAPI FHIR
    /// and Medplum take them).
    async fn create_binary(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let new = if http::is_fhir_json(ctx.req) {
            // Inline content arrives as base64 (4/3 larger) inside the JSON.
            let limit = self.documents.inline_max / 3 * 4 + 64 * 1024;
            NewBinary::from_resource(&http::json_resource(ctx.req, limit, "Binary")?)?
        } else {
            let (content_type, bytes) = http::raw_body(ctx.req, self.documents.inline_max)?;
            let security_context = http::header(ctx.req, "x-security-context").unwrap_or_default().to_owned();
            NewBinary { content_type, security_context, bytes: bytes.to_vec() }
        };
        let stored = self.rt.services.create_binary(ctx.caller, new, &self.deps(), audit).await?;
        Ok(resource_response(ctx.req, 201, ctx.base, "Binary", &stored, true))
    }

    async fn binary(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let id = ctx.params.first().copied().unwrap_or_default();
        let range = http::header(ctx.req, "range");
        let content = self.rt.services.read_binary(ctx.caller, id, range, &self.deps(), audit).await?;
        let BinaryContent { content_type, security_context, bytes, size, range } = content;
        if range.is_none() && wants_fhir_json(http::header(ctx.req, "accept")) {
            let body = json!({
                "resourceType": "Binary",
                "id": id,
                "contentType": content_type,
                "securityContext": {"reference": security_context},
                "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
            });
            return Ok(http::response(200, Some(&body), &[]));
        }
        let mut headers = vec![("accept-ranges", "bytes".to_owned())];
        let status = match range {
            Some((first, last)) => {
                headers.push(("content-range", format!("bytes {first}-{last}/{size}")));
                206
            }
            None => 200,
        };
        Ok(http::bytes_response(status, &content_type, bytes, &headers))
    }
}

/// A Binary is served as FHIR JSON only when the client asks for FHIR by
/// name; `*/*` or the document's own type get the raw bytes.
fn wants_fhir_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|p| {
            matches!(p.split(';').next().unwrap_or("").trim(), "application/fhir+json" | "application/json+fhir")
        })
    })
}

impl Api for App {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn negotiates_content(&self, route: &Route) -> bool {
        route.path == "/fhir/Binary/{id}"
    }

    async fn serve<'a>(&'a self, ctx: Ctx<'a>, audit: &'a mut AuditEntry) -> Result<Response<Body>, Error> {
        match (ctx.route.path, ctx.route.interaction) {
            ("/fhir/Binary/{id}", _) => self.binary(ctx, audit).await,
            ("/fhir/Binary", _) => self.create_binary(ctx, audit).await,
            ("/fhir/DocumentReference", "create") => self.create(ctx, audit).await,
            _ => serve_compartment_record(&self.rt, ctx, audit).await,
        }
    }
}
