//! The REST of DocumentReference (FHIR REST, content inline or by
//! presigned upload) and Binary (the content, decrypted and verified): the
//! documents function serves it on its routes, and a Bundle's entries of
//! those types go through it too, so a document in a transaction is stored
//! and checked exactly as alone.

use super::{conditional_create, resource_response, serve_compartment_record};
use crate::audit::AuditEntry;
use crate::aws::s3::S3Blobs;
use crate::config::Deployment;
use crate::documents::{DocumentConfig, TestSignatureScanner};
use crate::error::Result;
use crate::http;
use crate::lambda::{Ctx, Route};
use crate::ports::BlobStore;
use crate::runtime::Runtime;
use crate::service::binaries::NewBinary;
pub use crate::service::documents::Uploads;
use crate::service::documents::{BinaryContent, Created, DocumentDeps};
use base64::Engine;
use lambda_http::{Body, Response};
use serde_json::json;

/// The document routes; template.yaml declares the same for the documents function.
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

/// Document REST with what it needs besides the runtime: the sealed
/// objects' store, the content rules, the malware hook.
pub struct DocumentRest {
    blobs: S3Blobs,
    config: DocumentConfig,
    scanner: TestSignatureScanner,
    uploads: Uploads,
}

impl DocumentRest {
    pub fn new(rt: &Runtime, config: DocumentConfig, uploads: Uploads) -> Self {
        let local = rt.config.deployment == Deployment::Local;
        let blobs = S3Blobs::new(&rt.sdk, local, &config.documents_bucket, &config.uploads_bucket);
        DocumentRest { blobs, config, scanner: TestSignatureScanner, uploads }
    }

    fn deps(&self) -> DocumentDeps<'_, S3Blobs> {
        DocumentDeps { blobs: &self.blobs, config: &self.config, scanner: &self.scanner, uploads: self.uploads }
    }

    /// Serves one of `ROUTES`.
    pub async fn serve(&self, rt: &Runtime, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>> {
        match (ctx.route.path, ctx.route.interaction) {
            ("/fhir/Binary/{id}", _) => self.binary(rt, ctx, audit).await,
            ("/fhir/Binary", _) => self.create_binary(rt, ctx, audit).await,
            ("/fhir/DocumentReference", "create") => self.create(rt, ctx, audit).await,
            _ => serve_compartment_record(rt, ctx, audit).await,
        }
    }

    /// Removes sealed objects no record will ever name (a transaction that
    /// stored them failed). Best effort: an object left is unreadable
    /// without its record, and sealed under the patient's key.
    pub async fn discard(&self, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.blobs.delete(key).await {
                tracing::warn!(error = %e, "a failed transaction's document object was not deleted");
            }
        }
    }

    async fn create(&self, rt: &Runtime, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>> {
        // Inline content arrives as base64 (4/3 larger) inside the JSON.
        let limit = self.config.inline_max / 3 * 4 + 64 * 1024;
        let body = http::json_resource(ctx.req, limit, "DocumentReference")?;
        if let Some(existing) = conditional_create(rt, ctx.req, ctx.caller, "DocumentReference").await? {
            return Ok(resource_response(ctx.req, 200, ctx.base, "DocumentReference", &existing, false));
        }
        match rt.services.create_document(ctx.caller, body, &self.deps(), audit).await? {
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
    async fn create_binary(&self, rt: &Runtime, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>> {
        let new = if http::is_fhir_json(ctx.req) {
            // Inline content arrives as base64 (4/3 larger) inside the JSON.
            let limit = self.config.inline_max / 3 * 4 + 64 * 1024;
            NewBinary::from_resource(&http::json_resource(ctx.req, limit, "Binary")?)?
        } else {
            let (content_type, bytes) = http::raw_body(ctx.req, self.config.inline_max)?;
            let security_context = http::header(ctx.req, "x-security-context").unwrap_or_default().to_owned();
            NewBinary { content_type, security_context, bytes: bytes.to_vec() }
        };
        let stored = rt.services.create_binary(ctx.caller, new, &self.deps(), audit).await?;
        Ok(resource_response(ctx.req, 201, ctx.base, "Binary", &stored, true))
    }

    async fn binary(&self, rt: &Runtime, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>> {
        let id = ctx.params.first().copied().unwrap_or_default();
        let range = http::header(ctx.req, "range");
        let content = rt.services.read_binary(ctx.caller, id, range, &self.deps(), audit).await?;
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
