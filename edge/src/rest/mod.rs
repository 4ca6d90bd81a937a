//! The FHIR REST edge every resource function shares: the response for a
//! stored resource (ETag, Location), history paging parameters and the
//! history Bundle.

use crate::audit::AuditEntry;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, HistoryEntry, SearchPage};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::primitives::is_id;
use crate::http;
use crate::lambda::{Api, Ctx, Route};
use crate::runtime::{BootError, Runtime};
use crate::service::records::{HistoryResult, Query, SearchResult, Stored, DEFAULT_PAGE};
use crate::service::Caller;

mod batch;
pub mod documents;
mod results;
mod transaction;
use lambda_http::{Body, Request, Response};
pub use results::ResultParams;

/// A stored resource with its version as ETag. A write (create, update,
/// patch) also gets its Location and honours `Prefer: return=minimal`
/// (no body) or `return=OperationOutcome`; anything else returns the
/// representation, the default, unless the writer may not read it (then
/// the answer is minimal whatever they asked).
pub fn resource_response(
    req: &Request,
    status: u16,
    base: &str,
    resource_type: &str,
    s: &Stored,
    write: bool,
) -> Response<Body> {
    let mut headers = vec![("etag", format!("W/\"{}\"", s.version))];
    if let Some(date) = crate::fhir::http_date(&s.last_updated) {
        headers.push(("last-modified", date));
    }
    if !write {
        return http::response(status, Some(&s.resource), &headers);
    }
    headers.push(("location", format!("{base}/fhir/{resource_type}/{}/_history/{}", s.id, s.version)));
    let prefer = http::header(req, "prefer").unwrap_or("");
    let wants = |v: &str| prefer.split([',', ';']).any(|p| p.trim().eq_ignore_ascii_case(v));
    if wants("return=minimal") || s.withheld {
        http::response(status, None, &headers)
    } else if wants("return=OperationOutcome") {
        let done =
            Issue::information("informational", format!("{resource_type}/{} version {} stored", s.id, s.version));
        http::response(status, Some(&operation_outcome(&[done])), &headers)
    } else {
        http::response(status, Some(&s.resource), &headers)
    }
}

/// A search's parameters: the query string, or the form body of `POST _search`.
pub fn search_query(method: &str, req: &Request, max: usize) -> Result<Query> {
    if method == "POST" {
        http::form_body(req, max)
    } else {
        http::query(req)
    }
}

/// A searchset Bundle for a page of results, shaped by the result
/// parameters; `path` is the search's own path (`/fhir/Patient`,
/// `/fhir/Patient/{id}/$everything`), to which the next link adds its cursor
/// (and the result parameters). Entries are named by their own type and id.
pub fn searchset_response(
    base: &str,
    path: &str,
    mut r: SearchResult,
    params: &ResultParams,
    included: Vec<Stored>,
) -> Response<Body> {
    let named = |s: Stored| {
        (format!("{base}/fhir/{}/{}", s.resource["resourceType"].as_str().unwrap_or_default(), s.id), s.resource)
    };
    params.shape(&mut r.resources);
    let page = SearchPage {
        self_link: format!("{base}{path}"),
        // A count alone has no pages.
        next_link: r
            .next_cursor
            .filter(|_| params.summary != crate::fhir::subset::Summary::Count)
            .map(|c| format!("{base}{path}?_cursor={c}{}", params.link_suffix())),
        total: r.total.filter(|_| params.total),
        outcome: (!r.notes.is_empty()).then(|| operation_outcome(&r.notes)),
        entries: r.resources.into_iter().map(named).collect(),
        included: included.into_iter().map(named).collect(),
    };
    http::response(200, Some(&bundle::searchset(page)), &[])
}

/// A search of `ty` as the REST edge runs it: the result parameters taken
/// out, the search, what they include, the Bundle.
pub async fn search_response(
    rt: &Runtime,
    caller: &Caller,
    ty: &str,
    mut query: Query,
    base: &str,
    audit: &mut AuditEntry,
) -> Result<Response<Body>> {
    let params = ResultParams::take(&mut query, ty)?;
    let note = crate::service::records::count_note(&query);
    let mut r = rt.services.search_records(caller, ty, query, audit).await?;
    r.notes.extend(note);
    let (included, cut) = params.included(rt, caller, &r).await?;
    r.notes.extend(cut);
    Ok(searchset_response(base, &format!("/fhir/{ty}"), r, &params, included))
}

/// What a conditional interaction's query matches: searched as the caller
/// (and audited as that search: one disclosure per patient matched). None
/// for no match, 412 for several.
async fn single_match(rt: &Runtime, caller: &Caller, ty: &str, mut query: Query, what: &str) -> Result<Option<Stored>> {
    if query.is_empty() || query.iter().any(|(k, _)| k.starts_with('_') && k != "_id") {
        return Err(Error::BadRequest(format!("{what} needs search parameters (and no result parameters)")));
    }
    // Two matches are enough to know there is more than one.
    query.push(("_count".into(), "2".into()));
    let mut audit = rt.services.draft(Some(caller), "search-type");
    let found = rt.services.search_records(caller, ty, query, &mut audit).await?;
    if found.resources.len() > 1 {
        return Err(Error::PreconditionFailed(format!("{what} matches more than one resource")));
    }
    if found.next_cursor.is_some() {
        return Err(Error::TooCostly(format!(
            "{what} could not be decided within the search limits; narrow the query"
        )));
    }
    Ok(found.resources.into_iter().next())
}

/// Conditional create (`If-None-Exist: identifier=...`), None without the
/// header. One match: the create is skipped and it is returned (200).
pub async fn conditional_create(rt: &Runtime, req: &Request, caller: &Caller, ty: &str) -> Result<Option<Stored>> {
    let Some(condition) = http::header(req, "if-none-exist") else { return Ok(None) };
    let query = http::parse_form(condition.trim_start_matches('?'))?;
    single_match(rt, caller, ty, query, "If-None-Exist").await
}

/// Conditional update (`PUT /fhir/{type}?query`): one match is updated, with
/// its current version as the precondition unless If-Match names one; no
/// match creates (except a DocumentReference, whose content comes by POST).
/// Returns the status (200 or 201) and what was stored.
pub async fn conditional_update(
    rt: &Runtime,
    req: &Request,
    caller: &Caller,
    ty: &str,
    mut body: serde_json::Value,
    audit: &mut AuditEntry,
) -> Result<(u16, Stored)> {
    let svc = &rt.services;
    svc.authorize_type(caller, ty, crate::auth::Action::Update)?;
    let if_match = http::if_match(req)?;
    match single_match(rt, caller, ty, http::query(req)?, "a conditional update").await? {
        Some(found) => {
            if body.get("id").is_some_and(|id| *id != found.id.as_str()) {
                return Err(Error::BadRequest("the resource id differs from the resource the query matches".into()));
            }
            body["id"] = serde_json::Value::String(found.id.clone());
            let expected = Some(if_match.unwrap_or(found.version));
            Ok((200, svc.update_record(caller, ty, &found.id, body, expected, audit).await?))
        }
        None if ty == "DocumentReference" => {
            Err(Error::PreconditionFailed("no DocumentReference matches; create documents with POST".into()))
        }
        None if body.get("id").is_some() => {
            Err(Error::BadRequest("no resource matches; a new resource gets its id from the server".into()))
        }
        None => Ok((201, svc.create_record(caller, ty, body, audit).await?)),
    }
}

/// Conditional delete (`DELETE /fhir/{type}?query`) of a single match; no
/// match is a success with nothing to do.
pub async fn conditional_delete(
    rt: &Runtime,
    req: &Request,
    caller: &Caller,
    ty: &str,
    audit: &mut AuditEntry,
) -> Result<()> {
    rt.services.authorize_type(caller, ty, crate::auth::Action::Delete)?;
    let if_match = http::if_match(req)?;
    let Some(found) = single_match(rt, caller, ty, http::query(req)?, "a conditional delete").await? else {
        return Ok(());
    };
    rt.services.delete_record(caller, ty, &found.id, if_match, audit).await
}

/// A version id from the path: a positive integer.
pub fn version_id(raw: &str) -> Result<u64> {
    raw.parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| Error::BadRequest("version id must be a positive integer".into()))
}

/// `_count` and `_cursor`, the only parameters history takes.
pub fn history_params(req: &Request) -> Result<(usize, Option<String>)> {
    paging_params(req, crate::service::records::MAX_PAGE)
}

/// `_count` (at most `max`) and `_cursor`, the only parameters of a
/// history or `$everything`.
pub fn paging_params(req: &Request, max: usize) -> Result<(usize, Option<String>)> {
    let mut count = DEFAULT_PAGE;
    let mut cursor = None;
    for (k, v) in http::query(req)? {
        match k.as_str() {
            "_count" => count = crate::service::records::page_size_within(&v, max)?,
            "_cursor" => cursor = Some(v),
            _ => return Err(Error::BadRequest("history supports _count and _cursor only".into())),
        }
    }
    Ok((count, cursor))
}

/// A history Bundle; `path` is the history's own (`/fhir/Patient/1/_history`,
/// `/fhir/Observation/_history`, `/fhir/_history`).
pub fn history_response(base: &str, path: &str, h: HistoryResult) -> Response<Body> {
    let entries = h
        .items
        .into_iter()
        .map(|i| HistoryEntry {
            full_url: format!("{base}/fhir/{}/{}", i.resource_type, i.id),
            resource: i.resource,
            method: match (i.deleted, i.first) {
                (true, _) => "DELETE",
                (false, true) => "POST",
                (false, false) => "PUT",
            },
            url: if i.first { i.resource_type.clone() } else { format!("{}/{}", i.resource_type, i.id) },
            status: match (i.deleted, i.first) {
                (true, _) => "204",
                (false, true) => "201",
                (false, false) => "200",
            },
            version: i.version,
            last_updated: i.last_updated,
        })
        .collect();
    let self_link = format!("{base}{path}");
    let next = h.next_cursor.map(|c| format!("{self_link}?_cursor={c}"));
    http::response(200, Some(&bundle::history(self_link, next, h.total, entries)), &[])
}

/// An API function that serves the resource table's types on its routes
/// (the patients, clinical and consent functions differ only in their
/// routes), with the CapabilityStatement and `$everything` where its
/// routes name them.
pub struct CompartmentApi {
    rt: Runtime,
    routes: &'static [Route],
    /// Where a Bundle's document entries go (the function serving Bundles).
    documents: Option<documents::DocumentRest>,
    /// The CapabilityStatement last served, as (base URL, JSON): building
    /// it takes milliseconds, and the endpoint is public, so an instance
    /// builds it once for the base URL it is reached at.
    capabilities: std::sync::Mutex<Option<(String, String)>>,
}

impl CompartmentApi {
    pub async fn new(config: Config, routes: &'static [Route]) -> std::result::Result<Self, BootError> {
        // Parse the generated FHIR model now, not on the first request.
        crate::fhir::validator::model();
        let rt = Runtime::from_config(config).await?;
        Ok(CompartmentApi { rt, routes, documents: None, capabilities: Default::default() })
    }

    /// Serves a Bundle's DocumentReference and Binary entries, their
    /// content inline.
    pub fn with_documents(mut self, config: crate::documents::DocumentConfig) -> Self {
        self.documents = Some(documents::DocumentRest::new(&self.rt, config, documents::Uploads::Refused));
        self
    }
}

impl Api for CompartmentApi {
    fn routes(&self) -> &'static [Route] {
        self.routes
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn public(&self, route: &Route, base: &str) -> Option<Response<Body>> {
        (route.interaction == "capabilities").then(|| {
            let mut cached = self.capabilities.lock().expect("capabilities lock");
            let text = match cached.as_ref() {
                Some((b, text)) if b == base => text.clone(),
                _ => {
                    let built = crate::fhir::capability::capability_statement(base, crate::api::resources());
                    let text = built.to_string();
                    *cached = Some((base.to_owned(), text.clone()));
                    text
                }
            };
            http::json_response(200, Some(text), &[])
        })
    }

    async fn serve<'a>(&'a self, ctx: Ctx<'a>, audit: &'a mut AuditEntry) -> Result<Response<Body>> {
        match ctx.route.interaction {
            // Boxed: a Bundle's entries are whole requests, and their
            // futures inline would make every request's future as large
            // (a stack overflow where a caller holds it on a thread's stack).
            "batch" => Box::pin(batch::serve(&self.rt, self.documents.as_ref(), ctx, audit)).await,
            _ => serve_compartment_record(&self.rt, ctx, audit).await,
        }
    }
}

/// The id segment of an instance route. An operation name there
/// (`PUT /fhir/Account/$validate`) is a method the operation does not take
/// (405 with its Allow) or an operation not served (404), never a bad id.
pub fn instance_id<'a>(segment: Option<&'a str>, path: &str) -> Result<Option<&'a str>> {
    match segment {
        Some(id) if is_id(id) => Ok(Some(id)),
        Some(op) if op.starts_with('$') => Err(crate::api::not_served(path)),
        Some(_) => Err(Error::BadRequest("resource id is not a valid FHIR id".into())),
        None => Ok(None),
    }
}

/// Record types whose own function serves them, with what they add to the
/// record's REST (a consent's authority, a document's content): a generic
/// `/fhir/{type}` route never serves them.
pub const SERVED_BY_OWN_FUNCTION: [&str; 4] = ["Patient", "Consent", "DocumentReference", "AuditEvent"];

/// REST for a compartment record type: create, read, vread, update, patch,
/// delete, history, search. The type is the route's literal segment
/// (`/fhir/Consent/...`) or, on the generic routes, its first parameter
/// (`/fhir/{type}/...`), which must be a type of the resource table.
pub async fn serve_compartment_record(rt: &Runtime, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>> {
    let Ctx { route, params, req, caller, base } = ctx;
    if route.interaction == "history-system" {
        let h = rt.services.history(caller, None, http::query(req)?, audit).await?;
        return Ok(history_response(base, "/fhir/_history", h));
    }
    let (ty, params) = match route.path.split('/').nth(2).unwrap_or_default() {
        "{type}" => {
            let ty = params.first().copied().unwrap_or_default();
            if SERVED_BY_OWN_FUNCTION.contains(&ty) || crate::fhir::resources::served_type(ty).is_none() {
                return Err(crate::api::not_served(req.uri().path()));
            }
            (ty, &params[1..])
        }
        literal => (literal, params),
    };
    serve_type(rt, ty, Ctx { route, params, req, caller, base }, audit).await
}

/// REST for one served type, its name already checked; `params` follow
/// the type in the route (id, version, operation).
async fn serve_type(rt: &Runtime, ty: &str, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>> {
    let Ctx { route, params, req, caller, base } = ctx;
    let svc = &rt.services;
    let max = rt.config.max_body_bytes;
    // `/fhir/{type}/_history` arrives on the instance routes: GET is the
    // type's history, any other method is not served there.
    if params.first() == Some(&"_history") {
        if route.interaction != "read" {
            return Err(Error::MethodNotAllowed);
        }
        audit.interaction = "history-type";
        let h = svc.history(caller, Some(ty), http::query(req)?, audit).await?;
        return Ok(history_response(base, &format!("/fhir/{ty}/_history"), h));
    }
    let id = instance_id(params.first().copied(), req.uri().path())?;
    let respond = |status, s: &_, write| resource_response(req, status, base, ty, s, write);
    match (route.interaction, id) {
        ("create", None) => {
            let body = http::json_resource(req, max, ty)?;
            if let Some(existing) = conditional_create(rt, req, caller, ty).await? {
                return Ok(respond(200, &existing, false));
            }
            Ok(respond(201, &svc.create_record(caller, ty, body, audit).await?, true))
        }
        ("read", Some(id)) => Ok(respond(200, &svc.read_record(caller, ty, id, None, audit).await?, false)),
        ("vread", Some(id)) => {
            let vid = version_id(params[1])?;
            Ok(respond(200, &svc.read_record(caller, ty, id, Some(vid), audit).await?, false))
        }
        ("update", Some(id)) => {
            let body = http::json_resource(req, max, ty)?;
            let if_match = http::if_match(req)?;
            Ok(respond(200, &svc.update_record(caller, ty, id, body, if_match, audit).await?, true))
        }
        ("patch", Some(id)) => {
            let patch = http::json_patch_body(req, max)?;
            let if_match = http::if_match(req)?;
            Ok(respond(200, &svc.patch_record(caller, ty, id, &patch, if_match, audit).await?, true))
        }
        ("delete", Some(id)) => {
            svc.delete_record(caller, ty, id, http::if_match(req)?, audit).await?;
            Ok(http::response(204, None, &[]))
        }
        ("update", None) => {
            let body = http::json_resource(req, max, ty)?;
            let (status, stored) = conditional_update(rt, req, caller, ty, body, audit).await?;
            Ok(respond(status, &stored, true))
        }
        ("delete", None) => {
            conditional_delete(rt, req, caller, ty, audit).await?;
            Ok(http::response(204, None, &[]))
        }
        ("history-instance", Some(id)) => {
            let (count, cursor) = history_params(req)?;
            let h = svc.record_history_of(caller, ty, id, count, cursor.as_deref(), audit).await?;
            Ok(history_response(base, &format!("/fhir/{ty}/{id}/_history"), h))
        }
        ("search-type", None) => {
            search_response(rt, caller, ty, search_query(route.method, req, max)?, base, audit).await
        }
        ("operation", Some(id)) if ty == "Patient" && params[1] == "$everything" => {
            let (count, cursor) = paging_params(req, crate::service::clinical_search::EVERYTHING_MAX_PAGE)?;
            let r = svc.everything(caller, id, count, cursor.as_deref(), audit).await?;
            let path = format!("/fhir/Patient/{id}/$everything");
            Ok(searchset_response(base, &path, r, &ResultParams::default(), vec![]))
        }
        _ => Err(Error::NotFound),
    }
}
