//! A Lambda Runtime API on loopback for one invocation: what the Lambda
//! service offers a function's bootstrap (`AWS_LAMBDA_RUNTIME_API`), so a
//! function process can be measured from its start to its first answer as
//! Lambda runs it, through `lambda_runtime`'s own loop.
//!
//! It hands out one event (`GET /2018-06-01/runtime/invocation/next`), then
//! holds every later `next` open, as Lambda does while no request comes, and
//! reports the function's response or error (`POST .../response`,
//! `.../error`, `/runtime/init/error`) with the moment it arrived.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000001";
/// The deadline given with the event, as Lambda gives a function's timeout.
const DEADLINE_MS: u128 = 30_000;

/// What the function posted back, and when it arrived.
#[derive(Debug)]
pub enum Outcome {
    Response { body: Bytes, at: Instant },
    Error { path: String, body: Bytes, at: Instant },
}

/// A Runtime API serving one event.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

struct State {
    event: Mutex<Option<Bytes>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl RuntimeApi {
    /// Listens on a free loopback port with `event` to hand out.
    pub async fn start(event: String) -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, outcomes) = mpsc::unbounded_channel();
        let state = Arc::new(State { event: Mutex::new(Some(Bytes::from(event))), outcomes: tx });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(state.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(RuntimeApi { addr, outcomes })
    }

    /// The function's response or error; None once the server is gone.
    pub async fn outcome(&mut self) -> Option<Outcome> {
        self.outcomes.recv().await
    }
}

async fn answer(
    state: Arc<State>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = |status: u16, body: Bytes| {
        Ok(hyper::Response::builder().status(status).body(Full::new(body)).expect("static response"))
    };
    if req.method() == hyper::Method::GET && path == NEXT {
        let event = state.event.lock().expect("event lock").take();
        let Some(event) = event else {
            // No second request comes: hold the call, as Lambda does.
            std::future::pending::<()>().await;
            unreachable!("a pending future never completes");
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis();
        let response = hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", REQUEST_ID)
            .header("lambda-runtime-deadline-ms", (now + DEADLINE_MS).to_string())
            .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:local")
            .body(Full::new(event))
            .expect("event response");
        return Ok(response);
    }
    if req.method() != hyper::Method::POST {
        return reply(404, Bytes::new());
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let at = Instant::now();
    let outcome = if path == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response") {
        Outcome::Response { body, at }
    } else {
        Outcome::Error { path, body, at }
    };
    let _ = state.outcomes.send(outcome);
    reply(202, Bytes::from_static(b"{\"status\":\"OK\"}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call(addr: SocketAddr, method: &str, path: &str, body: &'static str) -> (u16, Bytes) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn one_event_is_handed_out_and_the_answer_reported() {
        let mut api = RuntimeApi::start(r#"{"n": 41}"#.into()).await.unwrap();
        assert_eq!(call(api.addr, "GET", NEXT, "").await, (200, Bytes::from_static(br#"{"n": 41}"#)));
        let answered = format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response").leak();
        assert_eq!(call(api.addr, "POST", answered, "42").await.0, 202);
        assert!(matches!(api.outcome().await, Some(Outcome::Response { body, .. }) if &body[..] == b"42"));
        assert_eq!(call(api.addr, "POST", "/2018-06-01/runtime/init/error", "{}").await.0, 202);
        let init_error = api.outcome().await;
        assert!(matches!(init_error, Some(Outcome::Error { path, .. }) if path == "/2018-06-01/runtime/init/error"));
        // A second `next` waits, as Lambda waits for a request.
        let second = tokio::time::timeout(std::time::Duration::from_millis(200), call(api.addr, "GET", NEXT, ""));
        assert!(second.await.is_err());
    }
}
