//! The patients Lambda: FHIR R4 REST for Patient, plus the CapabilityStatement.
//! Routing and HTTP mapping only; the use cases live in `medrec_shared::service`.

use lambda_http::{Body, Request, Response};
use medrec_shared::config::Config;
use medrec_shared::error::Error;
use medrec_shared::fhir::bundle::{self, HistoryEntry, SearchPage};
use medrec_shared::fhir::capability::{capability_statement, ResourceCapability};
use medrec_shared::fhir::primitives::is_id;
use medrec_shared::http;
use medrec_shared::runtime::{BootError, Runtime};
use medrec_shared::service::patients::{Stored, DEFAULT_PAGE, MAX_PAGE, SEARCH_PARAMS};
use medrec_shared::service::Caller;
use std::convert::Infallible;
use std::time::Instant;

/// One API route of this function: method, path template (as API Gateway
/// declares it in template.yaml) and the FHIR interaction it serves.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub interaction: &'static str,
}

/// Every route this function serves. template.yaml declares the same routes;
/// a test keeps the two in step.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/fhir/metadata", interaction: "capabilities" },
    Route { method: "POST", path: "/fhir/Patient", interaction: "create" },
    Route { method: "GET", path: "/fhir/Patient", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/Patient/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Patient/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Patient/{id}", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Patient/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Patient/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Patient/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "POST", path: "/fhir/Patient/{operation}", interaction: "operation" },
    Route { method: "POST", path: "/fhir/Patient/{id}/{operation}", interaction: "operation" },
];

pub const CAPABILITIES: &[ResourceCapability] = &[ResourceCapability {
    resource_type: "Patient",
    interactions: &["read", "vread", "update", "delete", "history-instance", "create", "search-type"],
    search_params: SEARCH_PARAMS,
    operations: &[("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate")],
}];

/// Matches a request to a route as API Gateway does (the most specific route
/// wins: literal segments beat variables); path parameters in template order.
fn route<'a>(method: &str, path: &'a str) -> Result<(&'static Route, Vec<&'a str>), Error> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let matches: Vec<(&'static Route, Vec<&str>, usize)> = ROUTES
        .iter()
        .filter_map(|r| {
            let tpl: Vec<&str> = r.path.split('/').skip(1).collect();
            if tpl.len() != segments.len() {
                return None;
            }
            let mut params = vec![];
            for (t, s) in tpl.iter().zip(&segments) {
                if t.starts_with('{') {
                    params.push(*s);
                } else if t != s {
                    return None;
                }
            }
            Some((r, params, tpl.iter().filter(|t| !t.starts_with('{')).count()))
        })
        .collect();
    if matches.is_empty() {
        return Err(Error::NotFound);
    }
    matches
        .into_iter()
        .filter(|(r, _, _)| r.method == method)
        .max_by_key(|(_, _, literal)| *literal)
        .map(|(r, params, _)| (r, params))
        .ok_or(Error::MethodNotAllowed)
}

pub struct App {
    rt: Runtime,
}

impl App {
    /// Cold start in Lambda: config from the environment, validated.
    pub async fn from_env() -> Result<Self, BootError> {
        medrec_shared::log::init();
        Self::new(Config::from_env()?).await
    }

    pub async fn new(config: Config) -> Result<Self, BootError> {
        Ok(App { rt: Runtime::from_config(config).await? })
    }

    /// `handle` behind a panic guard: a bug that panics answers 500 with an
    /// OperationOutcome and leaves this instance serving. The panic message is
    /// not logged: it may quote request data.
    pub async fn handle_guarded(self: std::sync::Arc<Self>, req: Request) -> Result<Response<Body>, Infallible> {
        match tokio::spawn(async move { self.handle(req).await }).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(panicked = e.is_panic(), "request handler failed");
                Ok(http::error_response(&Error::Internal("handler failed".into())))
            }
        }
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let path = http::path(&req);
        let method = req.method().as_str().to_owned();
        let (resp, template) = match route(&method, &path) {
            Ok((r, params)) => (self.dispatch(r, &params, &req).await, r.path),
            Err(e) => (http::error_response(&e), "unmatched"),
        };
        let (_, request_id) = http::origin(&req);
        tracing::info!(
            method = %method,
            route = template,
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            request_id = request_id.as_deref().unwrap_or("-"),
            "request"
        );
        Ok(resp)
    }

    async fn dispatch(&self, route: &Route, params: &[&str], req: &Request) -> Response<Body> {
        let base = http::base_url(req, self.rt.config.public_base_url.as_deref());
        if route.interaction == "capabilities" {
            return http::response(200, Some(&capability_statement(&base, CAPABILITIES)), &[]);
        }
        if let Err(e) = http::check_accept(req) {
            return http::error_response(&e);
        }
        let caller = match self.rt.caller(req, route.interaction).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let mut audit = self.rt.services.draft(Some(&caller), route.interaction);
        match self.serve(route, params, req, &caller, &base, &mut audit).await {
            Ok(resp) => resp,
            Err(e) => {
                let resp = http::error_response(&e);
                if let Error::Internal(detail) | Error::Unavailable(detail) = &e {
                    tracing::error!(detail = %detail, audit_id = %audit.id, "request failed");
                }
                self.rt.services.audit_failure(audit, resp.status().as_u16(), Some(&caller), None).await;
                resp
            }
        }
    }

    async fn serve(
        &self,
        route: &Route,
        params: &[&str],
        req: &Request,
        caller: &Caller,
        base: &str,
        audit: &mut medrec_shared::audit::AuditEntry,
    ) -> Result<Response<Body>, Error> {
        let svc = &self.rt.services;
        let max = self.rt.config.max_body_bytes;
        if route.interaction == "operation" {
            let (id, operation) = match params {
                [op] => (None, *op),
                [id, _] if !is_id(id) => return Err(Error::BadRequest("resource id is not a valid FHIR id".into())),
                [id, op] => (Some(*id), *op),
                _ => return Err(Error::NotFound),
            };
            if operation != "$validate" {
                return Err(Error::NotFound);
            }
            let body = http::json_body(req, max)?;
            let outcome = svc.validate_patient(caller, body, id, audit).await?;
            return Ok(http::response(200, Some(&outcome), &[]));
        }
        let id = match params.first() {
            Some(id) if is_id(id) => Some(*id),
            Some(_) => return Err(Error::BadRequest("resource id is not a valid FHIR id".into())),
            None => None,
        };
        let resource_response = |status: u16, s: &Stored, location: bool| {
            let mut headers = vec![("etag", format!("W/\"{}\"", s.version))];
            if location {
                headers.push(("location", format!("{base}/fhir/Patient/{}/_history/{}", s.id, s.version)));
            }
            http::response(status, Some(&s.resource), &headers)
        };
        match (route.method, route.interaction, id) {
            ("POST", "create", None) => {
                let body = http::json_resource(req, max, "Patient")?;
                let stored = svc.create_patient(caller, body, audit).await?;
                Ok(resource_response(201, &stored, true))
            }
            ("GET", "read", Some(id)) => Ok(resource_response(200, &svc.read_patient(caller, id, audit).await?, false)),
            ("GET", "vread", Some(id)) => {
                let vid = params[1]
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| Error::BadRequest("version id must be a positive integer".into()))?;
                Ok(resource_response(200, &svc.vread_patient(caller, id, vid, audit).await?, false))
            }
            ("PUT", "update", Some(id)) => {
                let body = http::json_resource(req, max, "Patient")?;
                let if_match = http::if_match(req)?;
                Ok(resource_response(200, &svc.update_patient(caller, id, body, if_match, audit).await?, true))
            }
            ("DELETE", "delete", Some(id)) => {
                svc.delete_patient(caller, id, http::if_match(req)?, audit).await?;
                Ok(http::response(204, None, &[]))
            }
            ("GET", "history-instance", Some(id)) => {
                let q = http::query(req)?;
                let mut count = DEFAULT_PAGE;
                let mut cursor = None;
                for (k, v) in &q {
                    match k.as_str() {
                        "_count" => {
                            count = v
                                .parse()
                                .ok()
                                .filter(|c| (1..=MAX_PAGE).contains(c))
                                .ok_or_else(|| Error::BadRequest(format!("_count must be 1 to {MAX_PAGE}")))?
                        }
                        "_cursor" => cursor = Some(v.as_str()),
                        _ => return Err(Error::BadRequest("history supports _count and _cursor only".into())),
                    }
                }
                let h = svc.patient_history(caller, id, count, cursor, audit).await?;
                let entries = h
                    .items
                    .into_iter()
                    .map(|i| HistoryEntry {
                        full_url: format!("{base}/fhir/Patient/{id}"),
                        resource: i.resource,
                        method: if i.deleted {
                            "DELETE"
                        } else if i.first {
                            "POST"
                        } else {
                            "PUT"
                        },
                        url: if i.first { "Patient".into() } else { format!("Patient/{id}") },
                        status: if i.deleted {
                            "204"
                        } else if i.first {
                            "201"
                        } else {
                            "200"
                        },
                        version: i.version,
                        last_updated: i.last_updated,
                    })
                    .collect();
                let next = h.next_cursor.map(|c| format!("{base}/fhir/Patient/{id}/_history?_cursor={c}"));
                Ok(http::response(
                    200,
                    Some(&bundle::history(format!("{base}/fhir/Patient/{id}/_history"), next, h.total, entries)),
                    &[],
                ))
            }
            (_, "search-type", None) => {
                let q = if route.method == "POST" { http::form_body(req, max)? } else { http::query(req)? };
                let r = svc.search_patients(caller, q, audit).await?;
                let page = SearchPage {
                    self_link: format!("{base}/fhir/Patient"),
                    next_link: r.next_cursor.map(|c| format!("{base}/fhir/Patient?_cursor={c}")),
                    total: r.total,
                    entries: r
                        .resources
                        .into_iter()
                        .map(|s| (format!("{base}/fhir/Patient/{}", s.id), s.resource))
                        .collect(),
                };
                Ok(http::response(200, Some(&bundle::searchset(page)), &[]))
            }
            _ => Err(Error::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        assert_eq!(route("GET", "/fhir/Patient/abc").unwrap().0.interaction, "read");
        assert_eq!(route("GET", "/fhir/Patient/abc/_history/2").unwrap().1, vec!["abc", "2"]);
        assert_eq!(route("POST", "/fhir/Patient/_search").unwrap().0.interaction, "search-type");
        assert!(matches!(route("PATCH", "/fhir/Patient/abc"), Err(Error::MethodNotAllowed)));
        assert!(matches!(route("GET", "/fhir/Observation"), Err(Error::NotFound)));
        assert_eq!(route("POST", "/fhir/Patient/$validate").unwrap().0.interaction, "operation");
        assert_eq!(route("POST", "/fhir/Patient/abc/$validate").unwrap().1, vec!["abc", "$validate"]);
        assert_eq!(
            route("POST", "/fhir/Patient/_search").unwrap().0.interaction,
            "search-type",
            "literal beats variable"
        );
    }
}
