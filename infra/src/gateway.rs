//! The local API Gateway. Routes each request by the HTTP API routes declared
//! in template.yaml, builds the API Gateway HTTP API payload v2 event for it
//! (route key, path parameters, request context, base64 for binary bodies),
//! turns it into a request as the functions do in Lambda
//! (`medrec_edge::lambda::request_from_event`), and calls the function's
//! handler in-process: the handler sees what it sees in Lambda.
//! It also serves the local identity provider's JWKS, and the functions'
//! metrics as Prometheus text at `/metrics` and as charts at `/dashboard`
//! (`crate::metrics`).

use crate::idle::Activity;
use crate::template::Template;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

/// API Gateway HTTP APIs refuse payloads above 10 MB.
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
pub type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

pub struct Gateway {
    pub template: Arc<Template>,
    /// Function logical id -> handler.
    pub handlers: HashMap<String, Handler>,
    pub jwks: Value,
    /// Signalled after each function's answer: what it wrote is there to poll.
    pub activity: Activity,
}

fn plain(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

impl Gateway {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { continue };
            let gw = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, Infallible>(gw.handle(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    }

    async fn handle(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_PAYLOAD).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(413, json!({"message": "Request Entity Too Large"})),
        };
        let method = parts.method.as_str().to_owned();
        let path = parts.uri.path().to_owned();
        if method == "GET" && path == "/.well-known/jwks.json" {
            return plain(200, self.jwks.clone());
        }
        // What CloudWatch would hold, for a developer (loopback only).
        let page = match path.as_str() {
            "/metrics" => Some(("text/plain; version=0.0.4", crate::metrics::prometheus())),
            "/dashboard" => Some(("text/html; charset=utf-8", crate::metrics::dashboard())),
            _ => None,
        };
        if let (true, Some((content_type, body))) = (method == "GET", page) {
            return hyper::Response::builder()
                .header("content-type", content_type)
                .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'")
                .body(Full::new(Bytes::from(body)))
                .expect("valid response");
        }
        let Some((function, route_key, path_params)) = self.template.route(&method, &path) else {
            return plain(404, json!({"message": "Not Found"}));
        };
        let Some(handler) = self.handlers.get(&function.logical_id) else {
            return plain(502, json!({"message": "function not mounted locally"}));
        };
        let event = api_gateway_v2_event(&parts, &body, &route_key, path_params, peer);
        let Ok(event) = serde_json::from_value(event) else {
            return plain(400, json!({"message": "Bad Request"}));
        };
        let resp = match medrec_edge::lambda::request_from_event(event) {
            Ok(request) => handler(request).await,
            Err(e) => medrec_edge::http::error_response(&e),
        };
        self.activity.signal();
        let (rparts, rbody) = resp.into_parts();
        let bytes = match rbody {
            Body::Empty => Bytes::new(),
            Body::Text(t) => Bytes::from(t),
            Body::Binary(b) => Bytes::from(b),
        };
        hyper::Response::from_parts(rparts, Full::new(bytes))
    }
}

/// The payload format version 2.0 event API Gateway sends for this request.
pub fn api_gateway_v2_event(
    parts: &http::request::Parts,
    body: &[u8],
    route_key: &str,
    path_params: std::collections::BTreeMap<String, String>,
    peer: SocketAddr,
) -> Value {
    let mut headers = Map::new();
    let mut cookies = vec![];
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(v.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(v));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let mut query = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match query.get_mut(k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                query.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
    }
    let (body_value, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => {
            use base64::Engine;
            (Value::String(base64::engine::general_purpose::STANDARD.encode(body)), true)
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let host = headers.get("host").and_then(Value::as_str).unwrap_or("127.0.0.1").to_owned();
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "cookies": if cookies.is_empty() { Value::Null } else { json!(cookies) },
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "pathParameters": if path_params.is_empty() { Value::Null } else { json!(path_params) },
        "requestContext": {
            "accountId": crate::provision::ACCOUNT,
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": medrec_edge::crypto::random_id(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            "timeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        },
        "body": body_value,
        "isBase64Encoded": is_base64,
    })
}
