//! What every API Lambda does around its use cases: match the route as API
//! Gateway does, authenticate, draft the audit record, serve, audit a
//! failure, log one line per request without PHI, and survive a panic. A
//! function supplies its routes and `Api::serve`.

use crate::audit::AuditEntry;
use crate::error::Error;
use crate::http;
use crate::runtime::Runtime;
use crate::service::Caller;
use lambda_http::{Body, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// One API route: method, path template (as template.yaml declares it) and
/// the FHIR interaction it serves.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub interaction: &'static str,
}

/// Matches a request to a route as API Gateway does (the most specific route
/// wins: literal segments beat variables); path parameters in template order.
pub fn route<'a>(
    routes: &'static [Route],
    method: &str,
    path: &'a str,
) -> Result<(&'static Route, Vec<&'a str>), Error> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let matches: Vec<(&'static Route, Vec<&str>, usize)> = routes
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
    // The most specific paths decide: PUT on `/fhir/Patient/_search` is a
    // method that path does not serve, not an update of a Patient "_search".
    let most = matches.iter().map(|(_, _, literal)| *literal).max().ok_or(Error::NotFound)?;
    matches
        .into_iter()
        .find(|(r, _, literal)| *literal == most && r.method == method)
        .map(|(r, params, _)| (r, params))
        .ok_or(Error::MethodNotAllowed)
}

/// An authenticated request, routed.
pub struct Ctx<'a> {
    pub route: &'static Route,
    pub params: &'a [&'a str],
    pub req: &'a Request,
    pub caller: &'a Caller,
    /// The public base URL (for Location headers and bundle links).
    pub base: &'a str,
}

/// An API Lambda.
pub trait Api: Send + Sync + 'static {
    fn routes(&self) -> &'static [Route];
    fn runtime(&self) -> &Runtime;

    /// Answers routes that need no caller (the CapabilityStatement).
    fn public(&self, _route: &Route, _base: &str) -> Option<Response<Body>> {
        None
    }

    /// Routes that answer in other media types than FHIR JSON (Binary)
    /// negotiate `Accept` themselves.
    fn negotiates_content(&self, _route: &Route) -> bool {
        false
    }

    fn serve<'a>(
        &'a self,
        ctx: Ctx<'a>,
        audit: &'a mut AuditEntry,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send + 'a;
}

/// Cold start in Lambda: logging, then the configuration from the
/// environment, validated (a bad setting stops the function from starting).
pub fn config_from_env() -> Result<crate::config::Config, crate::runtime::BootError> {
    crate::log::init();
    Ok(crate::config::Config::from_env()?)
}

/// Serves one request.
pub async fn handle<A: Api>(api: &A, req: Request) -> Response<Body> {
    let started = Instant::now();
    let path = http::path(&req);
    let method = req.method().as_str().to_owned();
    let (resp, template) = match route(api.routes(), &method, &path) {
        Ok((r, params)) => (dispatch(api, r, &params, &req).await, r.path),
        Err(e) => (http::error_response_at(&e, &path), "unmatched"),
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
    resp
}

/// `handle` behind a panic guard: a bug that panics answers 500 with an
/// OperationOutcome and leaves this instance serving. The panic message is
/// not logged: it may quote request data.
pub async fn handle_guarded<A: Api>(api: Arc<A>, req: Request) -> Result<Response<Body>, Infallible> {
    match tokio::spawn(async move { handle(api.as_ref(), req).await }).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            tracing::error!(panicked = e.is_panic(), "request handler failed");
            Ok(http::error_response(&Error::Internal("handler failed".into())))
        }
    }
}

async fn dispatch<A: Api>(api: &A, route: &'static Route, params: &[&str], req: &Request) -> Response<Body> {
    let rt = api.runtime();
    let base = http::base_url(req, rt.config.public_base_url.as_deref());
    if let Some(resp) = api.public(route, &base) {
        return resp;
    }
    if !api.negotiates_content(route) {
        if let Err(e) = http::check_accept(req) {
            return http::error_response(&e);
        }
    }
    let caller = match rt.caller(req, route.interaction).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let mut audit = rt.services.draft(Some(&caller), route.interaction);
    let ctx = Ctx { route, params, req, caller: &caller, base: &base };
    match api.serve(ctx, &mut audit).await {
        Ok(resp) => resp,
        Err(e) => {
            let resp = http::error_response(&e);
            if let Error::Internal(detail) | Error::Unavailable(detail) = &e {
                tracing::error!(detail = %detail, audit_id = %audit.id, "request failed");
            }
            rt.services.audit_failure(audit.clone(), resp.status().as_u16(), Some(&caller), None).await;
            rt.services.alert_on_repeated_failures(&audit, rt.config.alerts).await;
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route] = &[
        Route { method: "GET", path: "/fhir/Patient/{id}", interaction: "read" },
        Route { method: "POST", path: "/fhir/Patient/_search", interaction: "search-type" },
        Route { method: "POST", path: "/fhir/{type}/{operation}", interaction: "operation" },
    ];

    #[test]
    fn routing_prefers_literal_segments_and_reports_the_method() {
        assert_eq!(route(ROUTES, "GET", "/fhir/Patient/abc").unwrap().1, vec!["abc"]);
        assert_eq!(route(ROUTES, "POST", "/fhir/Patient/_search").unwrap().0.interaction, "search-type");
        assert_eq!(route(ROUTES, "POST", "/fhir/Observation/$validate").unwrap().1, vec!["Observation", "$validate"]);
        assert!(matches!(route(ROUTES, "PATCH", "/fhir/Patient/abc"), Err(Error::MethodNotAllowed)));
        assert!(matches!(route(ROUTES, "GET", "/fhir/Patient/_search"), Err(Error::MethodNotAllowed)));
        assert!(matches!(route(ROUTES, "GET", "/fhir/a/b/c"), Err(Error::NotFound)));
    }
}
