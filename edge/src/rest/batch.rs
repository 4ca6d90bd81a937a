//! `POST /fhir` with a batch or transaction Bundle (R4
//! http.html#transaction). The Bundle is read here; a batch's entries are
//! each served as the same request sent alone would be, through the same
//! REST code with the caller's own credentials, so each is authorized,
//! consent-checked, validated and audited exactly as that request, and the
//! Bundle as a whole leaves one more audit record. A transaction's entries
//! are served the same way by `transaction`, which commits them as one.

use super::documents::DocumentRest;
use super::serve_type;
use crate::audit::AuditEntry;
use crate::error::{Error, Result};
use crate::fhir::bundle_request::{self, EntryRequest, Kind};
use crate::fhir::outcome::Issue;
use crate::http;
use crate::lambda::{Ctx, Route};
use crate::runtime::Runtime;
use crate::service::Caller;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

/// The most entries one Bundle may carry: each is a request of its own,
/// and the whole must answer within API Gateway's 30-second limit.
const MAX_ENTRIES: usize = 1_000;

/// A Bundle may be as large as a Lambda invocation's payload (6 MB); each
/// entry still meets the single-request bound.
const MAX_BUNDLE_BYTES: usize = 6 * 1024 * 1024;

/// Entries served at once. A batch's entries are independent (R4
/// http.html#brules), and storage latency, not CPU, bounds a batch's time:
/// four at a time (in chunks) answer 1,000 entries within the function's timeout.
const IN_FLIGHT: usize = 4;

/// The requests an entry may make: the record routes, `{type}` standing
/// for any type a Bundle may name (`entry_type`).
const ENTRY_ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/{type}", interaction: "create" },
    Route { method: "GET", path: "/fhir/{type}", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/{type}", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/{type}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/{type}/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/{type}/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/{type}/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/{type}/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/{type}/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/{type}/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "GET", path: "/fhir/{type}/{id}/{operation}", interaction: "operation" },
];

/// Headers of the Bundle's request that every entry's request carries: who
/// is asking, why, and how they want writes answered.
const CARRIED_HEADERS: [&str; 6] =
    ["authorization", "host", "x-purpose-of-use", "x-break-glass-reason-code", "x-break-glass-reason", "prefer"];

/// What serves a Bundle's entries: the Bundle's request (whose caller,
/// purpose and origin every entry carries), the runtime, and the document
/// REST where the function has it.
#[derive(Clone, Copy)]
pub(super) struct EntryServer<'a> {
    pub rt: &'a Runtime,
    pub documents: Option<&'a DocumentRest>,
    pub outer: &'a Request,
    pub caller: &'a Caller,
    pub base: &'a str,
}

/// Serves a batch Bundle. A Bundle that is not well formed is refused
/// whole (400, each problem at its entry); a well-formed one is answered
/// 200 with one entry per request, each with its own status.
pub async fn serve(
    rt: &Runtime,
    documents: Option<&DocumentRest>,
    ctx: Ctx<'_>,
    audit: &mut AuditEntry,
) -> Result<Response<Body>> {
    let server = EntryServer { rt, documents, outer: ctx.req, caller: ctx.caller, base: ctx.base };
    let bundle = http::json_resource(ctx.req, MAX_BUNDLE_BYTES, "Bundle")?;
    if bundle["type"] == "transaction" {
        audit.interaction = "transaction";
    }
    let (kind, entries) = bundle_request::parse(&bundle, MAX_ENTRIES).map_err(Error::Malformed)?;
    if kind == Kind::Transaction {
        return super::transaction::serve(server, audit, entries).await;
    }
    let full_urls: Vec<&str> = entries.iter().filter_map(|e| e.full_url.as_deref()).collect();
    let mut answered = Vec::with_capacity(entries.len());
    let indexed: Vec<(usize, &EntryRequest)> = entries.iter().enumerate().collect();
    for chunk in indexed.chunks(IN_FLIGHT) {
        let running = chunk.iter().map(|(i, entry)| server.answer(*i, entry, &full_urls));
        answered.extend(futures_util::future::join_all(running).await);
    }
    audit.status = 200;
    rt.services.record_audits(std::slice::from_ref(audit)).await?;
    let mut out = json!({"resourceType": "Bundle", "type": kind.response_type()});
    if !answered.is_empty() {
        out["entry"] = Value::Array(answered);
    }
    Ok(http::response(200, Some(&out), &[]))
}

impl EntryServer<'_> {
    /// One batch entry's response entry; a link to another entry is refused here.
    async fn answer(&self, i: usize, entry: &EntryRequest, full_urls: &[&str]) -> Value {
        let resp = if entry.body.as_ref().is_some_and(|b| bundle_request::links_to_entries(b, full_urls)) {
            let issue = Issue::error("invalid", "a batch entry cannot refer to another entry; send a transaction")
                .at(format!("Bundle.entry[{i}].resource"));
            http::error_response(&Error::Malformed(vec![issue]))
        } else {
            self.serve(entry).await
        };
        response_entry(self.base, entry.method, resp)
    }

    /// One entry, served and audited as the same request alone: routed, then
    /// answered by the record (or document) REST code; a failure is audited
    /// as a failed request is.
    pub(super) async fn serve(&self, entry: &EntryRequest) -> Response<Body> {
        let req = match entry_request(self.outer, entry) {
            Ok(r) => r,
            Err(e) => return http::error_response(&e),
        };
        let path = http::path(&req);
        // HEAD is a GET answered without its body.
        let method = if entry.method == "HEAD" { "GET" } else { entry.method };
        let documents = self.documents.filter(|_| is_document_path(&path));
        let routes = if documents.is_some() { super::documents::ROUTES } else { ENTRY_ROUTES };
        let (route, params) = match crate::lambda::route(routes, method, &path) {
            Ok(found) => found,
            Err(e) => return http::error_response(&e),
        };
        let mut audit = self.rt.services.draft(Some(self.caller), route.interaction);
        let ctx = Ctx { route, params: &params, req: &req, caller: self.caller, base: self.base };
        let served = match documents {
            Some(documents) => documents.serve(self.rt, ctx, &mut audit).await,
            None => {
                let (ty, params) = params.split_first().expect("every entry route starts with {type}");
                if !entry_type(ty) {
                    return http::error_response(&Error::NotFound);
                }
                serve_type(self.rt, ty, Ctx { params, ..ctx }, &mut audit).await
            }
        };
        match served {
            Ok(resp) if entry.method == "HEAD" => http::response(resp.status().as_u16(), None, &[]),
            Ok(resp) => resp,
            Err(e) => crate::lambda::failed(self.rt, self.caller, &audit, &e, &path).await,
        }
    }
}

/// Whether an entry's path is a document's (`/fhir/DocumentReference...`,
/// `/fhir/Binary...`), served by the document REST.
fn is_document_path(path: &str) -> bool {
    matches!(path.split('/').nth(2), Some("DocumentReference" | "Binary"))
}

/// The types a Bundle entry may name on the record routes: every type of
/// the resource table but those whose function adds to the record's REST
/// (a document's content, served by the document REST; the audit trail,
/// which a Bundle does not carry).
fn entry_type(ty: &str) -> bool {
    crate::fhir::resources::served_type(ty).is_some() && !matches!(ty, "DocumentReference" | "AuditEvent")
}

/// The request an entry stands for: its method, url, body and conditional
/// headers, with the Bundle's credentials, purpose and origin.
fn entry_request(outer: &Request, entry: &EntryRequest) -> Result<Request> {
    let mut b = lambda_http::http::Request::builder().method(entry.method).uri(format!("/fhir/{}", entry.url));
    for name in CARRIED_HEADERS {
        if let Some(v) = outer.headers().get(name) {
            b = b.header(name, v);
        }
    }
    for (name, value) in &entry.headers {
        b = b.header(*name, value.as_str());
    }
    // A response entry holds a resource: a Binary is answered as FHIR JSON.
    b = b.header("accept", crate::fhir::FHIR_JSON);
    let body = match &entry.body {
        Some(body) => {
            let media = if entry.method == "PATCH" { "application/json-patch+json" } else { crate::fhir::FHIR_JSON };
            b = b.header("content-type", media);
            Body::Text(body.to_string())
        }
        None => Body::Empty,
    };
    let req = b.body(body).map_err(|_| Error::BadRequest("the entry's request is not a valid HTTP request".into()))?;
    Ok(match outer.request_context_ref() {
        Some(context) => req.with_request_context(context.clone()),
        None => req,
    })
}

/// A response Bundle's entry: the status, with the resource and its
/// version for a success, the OperationOutcome for a failure.
pub(super) fn response_entry(base: &str, method: &str, resp: Response<Body>) -> Value {
    let status = resp.status();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default());
    let mut response = json!({"status": text});
    for (element, name) in [("location", "location"), ("etag", "etag")] {
        if let Some(v) = header(name) {
            response[element] = json!(v);
        }
    }
    let body: Option<Value> = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).ok(),
        _ => None,
    };
    let mut entry = json!({});
    match body {
        Some(outcome) if !status.is_success() => response["outcome"] = outcome,
        Some(resource) if method != "HEAD" => {
            if let Some(updated) = resource["meta"]["lastUpdated"].as_str() {
                response["lastModified"] = json!(updated);
            }
            if let (Some(ty), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str()) {
                if ty != "Bundle" && ty != "OperationOutcome" {
                    entry["fullUrl"] = json!(format!("{base}/fhir/{ty}/{id}"));
                }
            }
            entry["resource"] = resource;
        }
        _ => {}
    }
    entry["response"] = response;
    entry
}
