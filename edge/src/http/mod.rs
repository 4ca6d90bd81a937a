//! The HTTP edge: request parsing and validation, responses with security
//! headers, and the single mapping from service errors to OperationOutcome.

use crate::error::Error;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::FHIR_JSON;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

/// Headers on every response. `no-store` because any response may carry PHI.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
];

pub fn response(status: u16, body: Option<&Value>, headers: &[(&str, String)]) -> Response<Body> {
    json_response(status, body.map(Value::to_string), headers)
}

/// `response` for a body already serialised (a cached one).
pub fn json_response(status: u16, body: Option<String>, headers: &[(&str, String)]) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in SECURITY_HEADERS {
        b = b.header(*k, *v);
    }
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    match body {
        Some(text) => b.header("content-type", FHIR_JSON).body(Body::Text(text)),
        None => b.body(Body::Empty),
    }
    .expect("static headers are valid")
}

/// A response carrying raw bytes (a Binary in its own media type). Served
/// as an attachment: with `nosniff` and the CSP above, a browser never
/// renders or runs a stored document in medrec's origin.
pub fn bytes_response(status: u16, content_type: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in SECURITY_HEADERS {
        b = b.header(*k, *v);
    }
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.header("content-type", content_type)
        .header("content-disposition", "attachment")
        .body(Body::Binary(body))
        .expect("valid headers")
}

/// A human-readable page (a report). It runs no script and loads nothing:
/// the CSP above applies to it unchanged.
pub fn html_response(status: u16, page: String) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in SECURITY_HEADERS {
        b = b.header(*k, *v);
    }
    b.header("content-type", "text/html; charset=utf-8").body(Body::Text(page)).expect("valid headers")
}

/// The one place a service error becomes a status and an OperationOutcome.
pub fn error_response(e: &Error) -> Response<Body> {
    let status = e.status();
    let (code, text): (&'static str, String) = match e {
        Error::BadRequest(m) => ("invalid", m.clone()),
        Error::Unauthenticated(_) => ("login", "authentication required: a valid bearer token is needed".into()),
        Error::Forbidden(m) => ("forbidden", format!("access denied: {m}")),
        Error::NotFound => ("not-found", "resource not found".into()),
        Error::Gone => ("deleted", "resource has been deleted".into()),
        Error::PreconditionFailed(m) | Error::Conflict(m) => ("conflict", m.clone()),
        Error::PreconditionRequired(m) => ("required", m.clone()),
        Error::PayloadTooLarge(limit) => ("too-long", format!("request body exceeds {limit} bytes")),
        Error::UnsupportedMediaType => (
            "not-supported",
            "send application/fhir+json (application/json-patch+json for PATCH, form encoding for _search)".into(),
        ),
        Error::UnsupportedContent(m) => ("not-supported", m.clone()),
        Error::TooLarge(m) => ("too-long", m.clone()),
        Error::RangeNotSatisfiable(_) => ("invalid", "the requested range is outside the document".into()),
        Error::NotAcceptable => ("not-supported", "medrec answers with application/fhir+json only".into()),
        Error::MethodNotAllowed => ("not-supported", "method not allowed on this resource".into()),
        Error::Invalid(issues) | Error::Malformed(issues) => {
            return response(status, Some(&operation_outcome(issues)), &[])
        }
        Error::EntryFailed { outcome, .. } => {
            let retry = matches!(status, 429 | 503).then(|| ("retry-after", "1".to_owned()));
            return response(status, Some(outcome), &retry.into_iter().collect::<Vec<_>>());
        }
        Error::Throttled => ("throttled", "too many requests; retry later".into()),
        Error::TooCostly(m) => ("too-costly", m.clone()),
        Error::Unavailable(_) => ("transient", "a dependency is unavailable; retry later".into()),
        Error::Internal(_) => ("exception", "internal error".into()),
    };
    let mut headers = vec![];
    if status == 401 {
        headers.push(("www-authenticate", "Bearer error=\"invalid_token\"".to_owned()));
    }
    if let Error::RangeNotSatisfiable(len) = e {
        headers.push(("content-range", format!("bytes */{len}")));
    }
    if status == 429 || status == 503 {
        headers.push(("retry-after", "1".to_owned()));
    }
    response(status, Some(&operation_outcome(&[Issue::error(code, text)])), &headers)
}

/// `error_response` for a request to `path`: a 405 names the methods the
/// path serves in `Allow` (RFC 9110 §15.5.6).
pub fn error_response_at(e: &Error, path: &str) -> Response<Body> {
    let mut resp = error_response(e);
    if matches!(e, Error::MethodNotAllowed) {
        let allowed = crate::api::allowed_methods(path).join(", ");
        if let Ok(v) = lambda_http::http::HeaderValue::from_str(&allowed) {
            resp.headers_mut().insert("allow", v);
        }
    }
    resp
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn authorization(req: &Request) -> Option<&str> {
    header(req, "authorization")
}

pub fn purpose_headers(req: &Request) -> crate::auth::PurposeHeaders<'_> {
    crate::auth::PurposeHeaders {
        purpose: header(req, "x-purpose-of-use"),
        reason_code: header(req, "x-break-glass-reason-code"),
        reason: header(req, "x-break-glass-reason"),
    }
}

/// (source IP, API Gateway request id) from the request context.
pub fn origin(req: &Request) -> (Option<String>, Option<String>) {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (Some(ctx.http.source_ip.clone()).flatten(), ctx.request_id.clone()),
        _ => (None, None),
    }
}

/// `_format` naming FHIR JSON (R4 http.html#mime-type): every form
/// clients send.
fn json_format(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(media.as_str(), "json" | "application/json" | "application/fhir+json" | "application/json+fhir")
}

/// Refuses an `Accept` or a `_format` that rules out FHIR JSON (`_format`
/// `html` is left to the one report that has an HTML form).
pub fn check_accept(req: &Request) -> Result<(), Error> {
    let formats = parse_form(req.uri().query().unwrap_or("")).unwrap_or_default();
    if formats.iter().any(|(k, v)| k == "_format" && !json_format(v) && v != "html") {
        return Err(Error::NotAcceptable);
    }
    let Some(accept) = header(req, "accept") else { return Ok(()) };
    let ok = accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(
            media.as_str(),
            "" | "*/*" | "application/*" | "application/fhir+json" | "application/json" | "application/json+fhir"
        )
    });
    if ok {
        Ok(())
    } else {
        Err(Error::NotAcceptable)
    }
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
    }
}

fn check_size(req: &Request, max: usize) -> Result<&[u8], Error> {
    let bytes = body_bytes(req);
    if bytes.len() > max {
        return Err(Error::PayloadTooLarge(max));
    }
    Ok(bytes)
}

/// Whether the request body says it is FHIR JSON (else it is raw content,
/// as a Binary may be sent).
pub fn is_fhir_json(req: &Request) -> bool {
    let ct = header(req, "content-type").unwrap_or("").to_ascii_lowercase();
    matches!(
        ct.split(';').next().unwrap_or("").trim(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// A raw request body (at most `max` bytes) with its content type.
pub fn raw_body(req: &Request, max: usize) -> Result<(String, &[u8]), Error> {
    let content_type =
        header(req, "content-type").filter(|c| !c.trim().is_empty()).ok_or(Error::UnsupportedMediaType)?;
    Ok((content_type.to_owned(), check_size(req, max)?))
}

/// Parses a FHIR JSON request body (a JSON object with a resourceType).
pub fn json_body(req: &Request, max: usize) -> Result<Value, Error> {
    let ct = header(req, "content-type").unwrap_or("").to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/fhir+json" | "application/json" | "application/json+fhir") {
        return Err(Error::UnsupportedMediaType);
    }
    let bytes = check_size(req, max)?;
    if bytes.is_empty() {
        return Err(Error::BadRequest("request body is empty".into()));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::BadRequest(format!("body is not valid JSON (line {}, column {})", e.line(), e.column())))?;
    match value.get("resourceType") {
        Some(Value::String(_)) => Ok(value),
        _ if !value.is_object() => Err(Error::BadRequest("body must be a JSON object".into())),
        _ => Err(Error::BadRequest("resourceType is missing".into())),
    }
}

/// Parses a FHIR JSON request body of the expected resource type.
pub fn json_resource(req: &Request, max: usize, resource_type: &str) -> Result<Value, Error> {
    let value = json_body(req, max)?;
    if value["resourceType"] == resource_type {
        Ok(value)
    } else {
        Err(Error::BadRequest(format!("resourceType must be {resource_type}")))
    }
}

/// A JSON Patch document (`application/json-patch+json`), for PATCH.
pub fn json_patch_body(req: &Request, max: usize) -> Result<Value, Error> {
    let ct = header(req, "content-type").unwrap_or("").to_ascii_lowercase();
    if ct.split(';').next().unwrap_or("").trim() != "application/json-patch+json" {
        return Err(Error::UnsupportedMediaType);
    }
    let bytes = check_size(req, max)?;
    let patch = serde_json::from_slice(bytes)
        .map_err(|e| Error::BadRequest(format!("body is not valid JSON (line {}, column {})", e.line(), e.column())))?;
    crate::fhir::json_patch::check(&patch).map_err(|e| Error::BadRequest(format!("invalid JSON Patch: {e}")))?;
    Ok(patch)
}

/// Form-encoded parameters of a `POST .../_search` body.
pub fn form_body(req: &Request, max: usize) -> Result<Vec<(String, String)>, Error> {
    let ct = header(req, "content-type").unwrap_or("").to_ascii_lowercase();
    if ct.split(';').next().unwrap_or("").trim() != "application/x-www-form-urlencoded" {
        return Err(Error::UnsupportedMediaType);
    }
    let bytes = check_size(req, max)?;
    let text = std::str::from_utf8(bytes).map_err(|_| Error::BadRequest("form body is not UTF-8".into()))?;
    let mut form = parse_form(text)?;
    form.retain(|(k, v)| !(k == "_format" && json_format(v)));
    Ok(form)
}

/// The raw query string's parameters, in order; a `_format` of FHIR JSON
/// (what every answer is) is taken out.
pub fn query(req: &Request) -> Result<Vec<(String, String)>, Error> {
    let mut q = parse_form(req.uri().query().unwrap_or(""))?;
    q.retain(|(k, v)| !(k == "_format" && json_format(v)));
    Ok(q)
}

/// Strict `application/x-www-form-urlencoded` parsing: bad escapes and
/// non-UTF-8 are errors rather than silently replaced.
pub fn parse_form(s: &str) -> Result<Vec<(String, String)>, Error> {
    if s.len() > 8192 {
        return Err(Error::BadRequest("query is too long".into()));
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

fn decode_component(s: &str) -> Result<String, Error> {
    let bad = || Error::BadRequest("malformed percent-encoding in parameters".into());
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).map_err(|_| bad())?, 16).map_err(|_| bad())?;
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::BadRequest("parameters are not UTF-8".into()))
}

/// `If-Match: W/"3"` (or `"3"`) as a version number (1 or more). An empty
/// field is no precondition at all (RFC 9110 §5.5: an empty list), so it is
/// treated as absent: a write that needs one still answers 428.
pub fn if_match(req: &Request) -> Result<Option<u64>, Error> {
    let bad = || Error::BadRequest("If-Match must be an ETag such as W/\"1\"".into());
    let Some(raw) = req.headers().get("if-match") else { return Ok(None) };
    let v = raw.to_str().map_err(|_| bad())?.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let quoted = v.strip_prefix("W/").unwrap_or(v);
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(bad)
}

/// The public base URL for links: configured, or from the request's host.
pub fn base_url(req: &Request, configured: Option<&str>) -> String {
    if let Some(b) = configured {
        return b.trim_end_matches('/').to_owned();
    }
    let host = header(req, "host")
        .filter(|h| h.bytes().all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c)))
        .unwrap_or("localhost");
    format!("https://{host}")
}

/// The request path without the API Gateway stage prefix (HTTP APIs put
/// `/{stage}` in front of `rawPath` for any stage but `$default`).
pub fn path(req: &Request) -> String {
    let raw = req.raw_http_path();
    let raw = if raw.is_empty() { req.uri().path() } else { raw };
    if let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() {
        if let Some(stage) = ctx.stage.as_deref().filter(|s| *s != "$default") {
            if let Some(rest) = raw.strip_prefix('/').and_then(|r| r.strip_prefix(stage)).filter(|r| r.starts_with('/'))
            {
                return rest.to_owned();
            }
        }
    }
    raw.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing_is_strict() {
        assert_eq!(parse_form("a=1&b=x%20y+z").unwrap(), vec![("a".into(), "1".into()), ("b".into(), "x y z".into())]);
        assert!(parse_form("a=%zz").is_err());
        assert!(parse_form("a=%ff").is_err());
        assert!(parse_form("a=%4").is_err());
        assert_eq!(parse_form("").unwrap(), vec![]);
    }

    #[test]
    fn every_error_has_an_outcome_and_a_client_status() {
        let cases = [
            (Error::BadRequest("x".into()), 400),
            (Error::Unauthenticated("x"), 401),
            (Error::Forbidden("x".into()), 403),
            (Error::NotFound, 404),
            (Error::Gone, 410),
            (Error::PreconditionFailed("x".into()), 412),
            (Error::PayloadTooLarge(1), 413),
            (Error::UnsupportedMediaType, 415),
            (Error::Invalid(vec![]), 422),
            (Error::PreconditionRequired("x".into()), 428),
            (Error::Throttled, 429),
            (Error::TooCostly("x".into()), 400),
            (Error::Internal("secret detail".into()), 500),
        ];
        for (e, status) in cases {
            let r = error_response(&e);
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers()["cache-control"], "no-store");
            let Body::Text(t) = r.body() else { panic!("no body") };
            assert!(t.contains("OperationOutcome"));
            assert!(!t.contains("secret detail"));
        }
    }
}
