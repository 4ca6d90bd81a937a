//! A fault-injecting proxy between the functions' AWS SDK clients and the
//! emulator, for reliability tests. Each request is recognised by service
//! (the SigV4 credential scope) and operation (`X-Amz-Target`, or the S3
//! REST shape), and the first matching rule decides what happens to it:
//! the connection reset before or after the emulator served it, an AWS
//! error (500, 503, throttling) in the service's own wire format, added
//! latency, or an outage (every connection dropped, as when the emulator
//! dies). A real kill of moto would lose its in-memory state, which AWS
//! never does; the outage gives the clients the same view and keeps the
//! data to check afterwards.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drop the connection before forwarding: nothing reached the emulator.
    ResetBefore,
    /// Forward, then drop the connection: the emulator applied the request
    /// but the client never hears so.
    ResetAfter,
    /// 500 Internal Server Error.
    ServerError,
    /// 503 Service Unavailable.
    Unavailable,
    /// The service's throttling error.
    Throttle,
    /// Forward after a delay.
    Latency(Duration),
    /// Every request fails at the connection, whatever its service.
    Outage,
}

/// Which requests a rule applies to.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// SigV4 service name: dynamodb, kms, s3, sqs, events, secretsmanager.
    pub service: Option<String>,
    /// `PutItem`, `TransactWriteItems`, `GetObject`, ...
    pub operation: Option<String>,
    /// A string the request body contains (a table name, say).
    pub body_contains: Option<String>,
}

struct Rule {
    matcher: Matcher,
    fault: Fault,
    /// Matching requests still let through untouched before it applies.
    skip: u32,
    /// How many more requests it applies to; None until cleared.
    remaining: Option<u32>,
    hits: Arc<AtomicU64>,
}

/// The handle tests hold: add and clear rules, read the endpoint.
pub struct FaultProxy {
    pub endpoint: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What a request is, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: String,
    pub operation: String,
}

impl Call {
    fn of(parts: &http::request::Parts) -> Call {
        let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        // Credential=AKID/20261123/us-east-1/dynamodb/aws4_request
        let service = header("authorization")
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or("")
            .to_owned();
        let target = header("x-amz-target");
        let operation = match target.rsplit_once('.') {
            Some((_, op)) => op.to_owned(),
            None if service == "s3" => s3_operation(parts),
            None => String::new(),
        };
        Call { service, operation }
    }
}

fn s3_operation(parts: &http::request::Parts) -> String {
    let query = parts.uri.query().unwrap_or("");
    let has = |k: &str| query.split('&').any(|p| p == k || p.starts_with(&format!("{k}=")));
    // Path style: `/bucket/key`; the SDK writes bucket operations as `/bucket/`.
    let key = parts.uri.path().trim_start_matches('/').split_once('/').map_or("", |(_, key)| key);
    let object = !key.is_empty();
    match (parts.method.as_str(), object) {
        ("POST", _) if has("delete") => "DeleteObjects",
        ("GET", false) => "ListObjectsV2",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("HEAD", false) => "HeadBucket",
        ("PUT", true) if parts.headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true) => "PutObject",
        ("DELETE", true) => "DeleteObject",
        _ => "",
    }
    .to_owned()
}

impl Matcher {
    /// Narrows the matcher to requests whose body contains `needle`.
    pub fn containing(mut self, needle: &str) -> Matcher {
        self.body_contains = Some(needle.to_owned());
        self
    }

    fn applies(&self, call: &Call, body: &[u8]) -> bool {
        self.service.as_ref().is_none_or(|s| *s == call.service)
            && self.operation.as_ref().is_none_or(|o| *o == call.operation)
            && self.body_contains.as_ref().is_none_or(|needle| {
                let n = needle.as_bytes();
                body.windows(n.len()).any(|w| w == n)
            })
    }
}

/// Builds a matcher: `on("dynamodb", "TransactWriteItems")`.
pub fn on(service: &str, operation: &str) -> Matcher {
    Matcher {
        service: Some(service.to_owned()),
        operation: (!operation.is_empty()).then(|| operation.to_owned()),
        body_contains: None,
    }
}

type Upstream = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

impl FaultProxy {
    /// Starts the proxy in front of `upstream` (the emulator's endpoint).
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::new(Mutex::new(vec![]));
        let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let state = rules.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (rules, client, upstream) = (state.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (rules, client, upstream) = (rules.clone(), client.clone(), upstream.clone());
                        async move { handle(&rules, &client, &upstream, req).await }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(FaultProxy { endpoint, rules, server })
    }

    /// Adds a rule for the next `times` matching requests (None: until
    /// cleared). Returns a counter of the requests it has hit.
    pub fn inject(&self, matcher: Matcher, fault: Fault, times: Option<u32>) -> Arc<AtomicU64> {
        self.inject_after(matcher, fault, 0, times)
    }

    /// `inject`, but the first `skip` matching requests pass untouched: a
    /// test places a crash at the n-th call of an operation.
    pub fn inject_after(&self, matcher: Matcher, fault: Fault, skip: u32, times: Option<u32>) -> Arc<AtomicU64> {
        let hits = Arc::new(AtomicU64::new(0));
        self.rules.lock().expect("rules").push(Rule { matcher, fault, skip, remaining: times, hits: hits.clone() });
        hits
    }

    /// Every request passes through untouched again.
    pub fn clear(&self) {
        self.rules.lock().expect("rules").clear();
    }
}

/// Why a connection was dropped without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    rules: &Mutex<Vec<Rule>>,
    client: &Upstream,
    upstream: &str,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let call = Call::of(&parts);
    let fault = {
        let mut rules = rules.lock().expect("rules");
        let hit = rules
            .iter_mut()
            .find(|r| r.remaining != Some(0) && (r.fault == Fault::Outage || r.matcher.applies(&call, &body)));
        hit.and_then(|r| {
            if r.skip > 0 {
                r.skip -= 1;
                return None;
            }
            r.hits.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            Some(r.fault)
        })
    };
    match fault {
        Some(Fault::ResetBefore | Fault::Outage) => return Err(Dropped),
        Some(f @ (Fault::ServerError | Fault::Unavailable | Fault::Throttle)) => return Ok(aws_error(&call, f)),
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetAfter) | None => {}
    }
    let uri = format!("{upstream}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut forward = http::Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let forward = forward.body(Full::new(body)).map_err(|_| Dropped)?;
    let resp = client.request(forward).await.map_err(|_| Dropped)?;
    let (rparts, rbody) = resp.into_parts();
    let rbody = rbody.collect().await.map_err(|_| Dropped)?.to_bytes();
    if fault == Some(Fault::ResetAfter) {
        return Err(Dropped);
    }
    Ok(hyper::Response::from_parts(rparts, Full::new(rbody)))
}

/// The error a service answers, in its protocol, so the SDK classifies it
/// (retryable or not) as it would in AWS.
fn aws_error(call: &Call, fault: Fault) -> hyper::Response<Full<Bytes>> {
    let (status, code) = match (fault, call.service.as_str()) {
        (Fault::Throttle, "dynamodb") => (400, "ProvisionedThroughputExceededException"),
        (Fault::Throttle, "s3") => (503, "SlowDown"),
        (Fault::Throttle, _) => (400, "ThrottlingException"),
        (Fault::ServerError, "dynamodb") => (500, "InternalServerError"),
        (Fault::ServerError, "s3") => (500, "InternalError"),
        (Fault::ServerError, _) => (500, "InternalFailure"),
        (_, "s3") => (503, "ServiceUnavailable"),
        _ => (503, "ServiceUnavailable"),
    };
    let (content_type, body) = if call.service == "s3" {
        (
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"),
        )
    } else {
        let version = if matches!(call.service.as_str(), "dynamodb" | "sqs") { "1.0" } else { "1.1" };
        (
            if version == "1.0" { "application/x-amz-json-1.0" } else { "application/x-amz-json-1.1" },
            format!("{{\"__type\":\"{code}\",\"message\":\"injected\"}}"),
        )
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn calls_are_recognised_by_service_and_operation() {
        let auth =
            |svc: &str| format!("AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/{svc}/aws4_request, Signature=x");
        let a = auth("dynamodb");
        let c = Call::of(&parts("POST", "/", &[("authorization", &a), ("x-amz-target", "DynamoDB_20120810.PutItem")]));
        assert_eq!(c, Call { service: "dynamodb".into(), operation: "PutItem".into() });
        let s = auth("s3");
        for (method, uri, op) in [
            ("PUT", "/bucket/key/part", "PutObject"),
            ("GET", "/bucket/key", "GetObject"),
            ("GET", "/bucket?list-type=2", "ListObjectsV2"),
            ("GET", "/bucket/?list-type=2&prefix=p%2F", "ListObjectsV2"),
            ("POST", "/bucket/?delete", "DeleteObjects"),
            ("HEAD", "/bucket/checkpoints/1.json", "HeadObject"),
        ] {
            assert_eq!(Call::of(&parts(method, uri, &[("authorization", &s)])).operation, op, "{method} {uri}");
        }
    }
}
