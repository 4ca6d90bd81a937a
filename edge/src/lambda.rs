//! What every API Lambda does around its use cases: match the route as API
//! Gateway does, authenticate, draft the audit record, serve, audit a
//! failure, log one line per request without PHI, and survive a panic. A
//! function supplies its routes and `Api::serve`.

use crate::audit::AuditEntry;
use crate::error::Error;
use crate::http;
use crate::runtime::Runtime;
use crate::service::Caller;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, LambdaEvent, Request, RequestExt, Response};
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// One API route: method, path template (as template.yaml declares it) and
/// the FHIR interaction it serves.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub interaction: &'static str,
}

/// Matches a request to a route as API Gateway does (`routing`: the most
/// specific route wins); path parameters in template order. A trailing
/// slash is ignored, as FHIR clients send one on a type's URL.
pub fn route<'a>(
    routes: &'static [Route],
    method: &str,
    path: &'a str,
) -> Result<(&'static Route, Vec<&'a str>), Error> {
    let path = match path.trim_end_matches('/') {
        "" => path,
        trimmed => trimmed,
    };
    let fits = crate::routing::most_specific(routes.iter().map(|r| (r, r.path)), path);
    if fits.is_empty() {
        return Err(Error::NotFound);
    }
    // The most specific paths decide: PUT on `/fhir/Patient/_search` is a
    // method that path does not serve, not an update of a Patient "_search".
    fits.into_iter()
        .find(|(r, _)| r.method == method)
        .map(|(r, params)| (r, params.into_iter().map(|(_, value)| value).collect()))
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

/// Cold start in Lambda: logging, then the settings from the environment,
/// validated (a bad setting stops the function from starting).
pub fn settings_from_env() -> Result<crate::config::Settings, crate::runtime::BootError> {
    crate::log::init();
    Ok(crate::config::Settings::from_env()?)
}

/// Serves an API function in Lambda: API Gateway's HTTP API events (payload
/// 2.0) in, its responses out. lambda_http's own `run` turns the event into
/// a request before any handler runs, and panics when the event's path,
/// query or host do not form a URI (found by fuzzing the edge): Lambda
/// answers that with a bare 502. Here such a request is refused as the 400
/// it is, with an OperationOutcome.
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Infallible>>,
{
    let handler = &handler;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            let resp = match request_from_event(event.payload) {
                Ok(req) => handler(req.with_lambda_context(event.context)).await?,
                Err(e) => http::error_response(&e),
            };
            Ok::<_, Infallible>(api_gateway_response(resp))
        },
    ))
    .await
}

/// The request lambda_http makes of an API Gateway event, or a 400 where it
/// cannot make one (see `run`).
pub fn request_from_event(event: ApiGatewayV2httpRequest) -> Result<Request, Error> {
    let event = LambdaRequest::ApiGatewayV2(event);
    std::panic::catch_unwind(AssertUnwindSafe(|| Request::from(event)))
        .map_err(|_| Error::BadRequest("the request target is not a valid URI".into()))
}

fn api_gateway_response(resp: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = resp.into_parts();
    ApiGatewayV2httpResponse {
        status_code: i64::from(parts.status.as_u16()),
        headers: parts.headers,
        is_base64_encoded: matches!(body, Body::Binary(_)),
        body: (!matches!(body, Body::Empty)).then_some(body),
        ..Default::default()
    }
}

/// Serves one request.
pub async fn handle<A: Api>(api: &A, req: Request) -> Response<Body> {
    let started = Instant::now();
    let path = http::path(&req);
    let method = req.method().as_str().to_owned();
    // Boxed: the task-local scope around the whole request nests every
    // future of it once more, past the compiler's layout depth.
    let ((resp, matched), counted) = crate::metrics::measured(Box::pin(async {
        match route(api.routes(), &method, &path) {
            Ok((r, params)) => (dispatch(api, r, &params, &req).await, Some(r)),
            Err(e) => (http::error_response_at(&e, &path), None),
        }
    }))
    .await;
    let template = matched.map_or("unmatched", |r| r.path);
    // The route's own method and template: a method a caller made up
    // never becomes a metric's dimension.
    let route_key = matched.map_or_else(|| "unmatched".to_owned(), |r| format!("{} {}", r.method, r.path));
    let function = &api.runtime().config.function_name;
    let served = crate::emf::Served { function, route: &route_key, status: resp.status().as_u16(), started };
    crate::emf::request(&served, &counted);
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
        Err(e) => failed(rt, &caller, &audit, &e, &http::path(req)).await,
    }
}

/// The answer to a request that failed, audited as a failed attempt (and
/// counted towards the caller's security alerts).
pub async fn failed(rt: &Runtime, caller: &Caller, audit: &AuditEntry, e: &Error, path: &str) -> Response<Body> {
    let resp = http::error_response_at(e, path);
    if let Error::Invalid(_) = e {
        crate::metrics::count(crate::metrics::Counter::ValidationFailures);
    }
    if let Error::Internal(detail) | Error::Unavailable(detail) = e {
        tracing::error!(detail = %detail, audit_id = %audit.id, "request failed");
    }
    rt.services.audit_failure(audit.clone(), resp.status().as_u16(), Some(caller), None).await;
    rt.services.alert_on_repeated_failures(audit, rt.config.alerts).await;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route] = &[
        Route { method: "GET", path: "/fhir/Patient/{id}", interaction: "read" },
        Route { method: "POST", path: "/fhir/Patient/_search", interaction: "search-type" },
        Route { method: "POST", path: "/fhir/{type}/{operation}", interaction: "operation" },
    ];

    fn event(raw_path: &str, raw_query: &str) -> ApiGatewayV2httpRequest {
        serde_json::from_value(serde_json::json!({
            "version": "2.0", "routeKey": "GET /fhir/Patient", "rawPath": raw_path, "rawQueryString": raw_query,
            "headers": {"host": "api.example.org"},
            "requestContext": {"http": {"method": "GET", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": ""},
                "stage": "$default", "requestId": "r1", "accountId": "1", "apiId": "a", "domainName": "api.example.org",
                "domainPrefix": "api", "time": "", "timeEpoch": 0},
            "isBase64Encoded": false
        }))
        .unwrap()
    }

    #[test]
    fn events_that_form_no_uri_are_refused_as_bad_requests() {
        let req = request_from_event(event("/fhir/Patient", "family=chalmers")).unwrap();
        assert_eq!((req.uri().path(), req.uri().query()), ("/fhir/Patient", Some("family=chalmers")));
        for (path, query) in [("/fhir/Patient", "family=a\nb"), ("/fhir/Patient", "a=\u{7f}")] {
            let e = request_from_event(event(path, query)).err().unwrap_or_else(|| panic!("{path}?{query:?}"));
            assert_eq!(http::error_response(&e).status(), 400);
        }
    }

    #[test]
    fn responses_keep_status_headers_and_body_encoding() {
        let json = api_gateway_response(http::error_response(&Error::NotFound));
        assert_eq!(json.status_code, 404);
        assert_eq!(json.headers["cache-control"], "no-store");
        assert!(!json.is_base64_encoded && matches!(json.body, Some(Body::Text(_))));
        let bytes = api_gateway_response(http::bytes_response(200, "application/pdf", vec![0, 255], &[]));
        assert!(bytes.is_base64_encoded && bytes.body == Some(Body::Binary(vec![0, 255])));
        let empty = api_gateway_response(http::response(204, None, &[]));
        assert!(empty.body.is_none() && !empty.is_base64_encoded);
    }

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
