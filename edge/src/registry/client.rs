//! The registry client: OAuth2 client credentials (token cached until it
//! expires), every request signed (`sign`) and every response's signature
//! checked, a timeout per attempt, retries with full-jitter backoff only for
//! what can succeed on retry (timeouts, dropped connections, 5xx, 429 and
//! 503 honouring `Retry-After`, stale acknowledgements, forged responses),
//! a circuit breaker per endpoint, failover from the primary to the
//! secondary, and a client-side rate limit. Errors name no PHI and no secret.

use super::hl7::{self, Parties};
use super::resilience::{unit_random, Backoff, Breaker, BreakerState, RateLimit};
use super::{sign, RegistryDose, VaccinationRecord};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the registry is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Hl7v2,
    Fhir,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "hl7v2" => Some(Transport::Hl7v2),
            "fhir" => Some(Transport::Fhir),
            _ => None,
        }
    }
}

/// From the secret store; never logged (Debug redacts).
#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    pub signing_key: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl Credentials {
    /// From the secret's JSON: `clientId`, `clientSecret`, `signingKey` (hex).
    pub fn from_json(text: &str) -> Option<Credentials> {
        let v: Value = serde_json::from_str(text).ok()?;
        Some(Credentials {
            client_id: v["clientId"].as_str()?.to_owned(),
            client_secret: v["clientSecret"].as_str()?.to_owned(),
            signing_key: crate::crypto::unhex(v["signingKey"].as_str()?)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URLs, primary first.
    pub endpoints: Vec<String>,
    pub transport: Transport,
    pub parties: Parties,
    pub attempt_timeout: Duration,
    /// Attempts per endpoint before failing over.
    pub attempts: u32,
    pub backoff: Backoff,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
    pub rate_per_second: f64,
    pub burst: u32,
    /// Loopback simulators speak plain HTTP; anywhere else is refused.
    pub allow_plain_http: bool,
}

impl ClientConfig {
    pub fn new(endpoints: Vec<String>, transport: Transport, parties: Parties) -> Self {
        ClientConfig {
            endpoints,
            transport,
            parties,
            attempt_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(5),
                max_retry_after: Duration::from_secs(10),
            },
            breaker_threshold: 5,
            breaker_open_for: Duration::from_secs(30),
            rate_per_second: 20.0,
            burst: 10,
            allow_plain_http: false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// Every endpoint failed or is shedding load: retry later (the message
    /// goes back to the queue).
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The registry refused the content: retrying will not help.
    #[error("registry rejected the message: {0}")]
    Rejected(String),
    /// Credentials refused: a configuration problem for an operator.
    #[error("registry refused medrec's credentials")]
    Unauthorized,
    #[error("invalid registry configuration: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Accepted,
    /// The registry already had it (a retry after a lost acknowledgement).
    AlreadyKnown,
}

struct Endpoint {
    base: String,
    breaker: Breaker,
    token: Mutex<Option<(String, Instant)>>,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

pub struct RegistryClient {
    cfg: ClientConfig,
    creds: Credentials,
    http: HttpClient,
    endpoints: Vec<Endpoint>,
    rate: RateLimit,
}

/// One attempt's failure, classified.
enum Failure {
    /// Try again (after `Option` if the registry said so).
    Retry(String, Option<Duration>),
    /// The cached token was refused: fetch a new one and try again.
    TokenExpired,
    Final(RegistryError),
}

struct Reply {
    status: u16,
    body: Bytes,
}

const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// A token is renewed this long before it expires.
const TOKEN_SKEW: Duration = Duration::from_secs(30);

impl RegistryClient {
    pub fn new(cfg: ClientConfig, creds: Credentials) -> Result<Self, RegistryError> {
        if cfg.endpoints.is_empty() {
            return Err(RegistryError::Config("no endpoint".into()));
        }
        for e in &cfg.endpoints {
            let uri: http::Uri = e.parse().map_err(|_| RegistryError::Config("endpoint is not a URL".into()))?;
            let plain_ok = cfg.allow_plain_http && matches!(uri.host(), Some("127.0.0.1" | "localhost"));
            if uri.scheme_str() != Some("https") && !plain_ok {
                return Err(RegistryError::Config("endpoints must be https".into()));
            }
        }
        let http = crate::outbound::https_client(cfg.allow_plain_http).map_err(RegistryError::Config)?;
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|base| Endpoint {
                base: base.trim_end_matches('/').to_owned(),
                breaker: Breaker::new(cfg.breaker_threshold, cfg.breaker_open_for),
                token: Mutex::new(None),
            })
            .collect();
        let rate = RateLimit::new(cfg.rate_per_second, cfg.burst, Instant::now());
        Ok(RegistryClient { cfg, creds, http, endpoints, rate })
    }

    /// Breaker state per endpoint (`primary`, `secondary`, ...), for health.
    pub fn breakers(&self) -> Vec<(&'static str, BreakerState)> {
        let now = Instant::now();
        let names = ["primary", "secondary", "tertiary"];
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (names.get(i).copied().unwrap_or("other"), e.breaker.state(now)))
            .collect()
    }

    /// Submits one vaccination. `message_id` names the submission for the
    /// registry (HL7 MSH-10) and stays the same across retries.
    pub async fn submit(&self, record: &VaccinationRecord, message_id: &str) -> Result<Submitted, RegistryError> {
        let (path, content_type, body) = match self.cfg.transport {
            Transport::Hl7v2 => ("/hl7", HL7_TYPE, hl7::vxu(&self.cfg.parties, record, message_id, &hl7_now())),
            Transport::Fhir => ("/fhir/Immunization", FHIR_TYPE, record.to_fhir().to_string()),
        };
        let transport = self.cfg.transport;
        self.call(path, content_type, body.into_bytes(), |reply| match transport {
            Transport::Hl7v2 => {
                let ack = hl7::parse_ack(&String::from_utf8_lossy(&reply.body))
                    .map_err(|e| Failure::Retry(format!("unreadable acknowledgement: {e}"), None))?;
                if ack.acknowledges != message_id {
                    return Err(Failure::Retry("acknowledgement of another message".into(), None));
                }
                match ack.code.as_str() {
                    "AA" if ack.errors.iter().any(|e| e.contains("duplicate")) => Ok(Submitted::AlreadyKnown),
                    "AA" => Ok(Submitted::Accepted),
                    _ => Err(Failure::Final(RegistryError::Rejected(ack.errors.join("; ")))),
                }
            }
            Transport::Fhir => match reply.status {
                201 => Ok(Submitted::Accepted),
                200 => Ok(Submitted::AlreadyKnown),
                s => Err(Failure::Retry(format!("unexpected status {s}"), None)),
            },
        })
        .await
    }

    /// The registry's history of the patient `record` names.
    pub async fn history(
        &self,
        record: &VaccinationRecord,
        query_id: &str,
    ) -> Result<Vec<RegistryDose>, RegistryError> {
        let body = hl7::qbp(&self.cfg.parties, record, query_id, &hl7_now());
        self.call("/hl7", HL7_TYPE, body.into_bytes(), |reply| {
            let rsp = hl7::parse_rsp(&String::from_utf8_lossy(&reply.body))
                .map_err(|e| Failure::Retry(format!("unreadable response: {e}"), None))?;
            if rsp.acknowledges != query_id {
                return Err(Failure::Retry("response to another query".into(), None));
            }
            match rsp.status.as_str() {
                "OK" => Ok(rsp.doses),
                "NF" => Ok(vec![]),
                other => Err(Failure::Final(RegistryError::Rejected(format!("query status {other}")))),
            }
        })
        .await
    }

    async fn call<T>(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        read: impl Fn(&Reply) -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let mut last = String::from("every endpoint's breaker is open");
        for endpoint in &self.endpoints {
            if !endpoint.breaker.allow(Instant::now()) {
                continue;
            }
            let mut attempt = 0;
            let mut token_renewed = false;
            while attempt < self.cfg.attempts {
                let outcome = match self.attempt(endpoint, path, content_type, &body).await {
                    Ok(reply) => read(&reply),
                    Err(f) => Err(f),
                };
                match outcome {
                    Ok(v) => {
                        endpoint.breaker.success();
                        return Ok(v);
                    }
                    Err(Failure::Final(e)) => {
                        // The registry answered: it is up.
                        endpoint.breaker.success();
                        return Err(e);
                    }
                    Err(Failure::TokenExpired) if !token_renewed => {
                        token_renewed = true;
                        *endpoint.token.lock().expect("token lock") = None;
                    }
                    Err(Failure::TokenExpired) => return Err(RegistryError::Unauthorized),
                    Err(Failure::Retry(why, retry_after)) => {
                        tracing::warn!(endpoint = %endpoint_name(&endpoint.base), attempt, reason = %why, "registry call failed");
                        endpoint.breaker.failure(Instant::now());
                        last = why;
                        attempt += 1;
                        if attempt < self.cfg.attempts && endpoint.breaker.allow(Instant::now()) {
                            tokio::time::sleep(self.cfg.backoff.delay(attempt - 1, retry_after, unit_random())).await;
                        } else {
                            break;
                        }
                    }
                }
            }
        }
        Err(RegistryError::Unavailable(last))
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Reply, Failure> {
        while let Some(wait) = self.rate.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let token = self.token(endpoint).await?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let nonce = crate::crypto::random_id();
        let signature = sign::sign(&self.creds.signing_key, "POST", path, &timestamp, &nonce, body);
        let request = http::Request::post(format!("{}{path}", endpoint.base))
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {token}"))
            .header(sign::TIMESTAMP, &timestamp)
            .header(sign::NONCE, &nonce)
            .header(sign::SIGNATURE, signature)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|_| Failure::Final(RegistryError::Config("request could not be built".into())))?;
        let (status, headers, body) = self.send(request).await?;
        match status {
            401 if String::from_utf8_lossy(&body).contains("invalid_token") => return Err(Failure::TokenExpired),
            401 | 403 => return Err(Failure::Final(RegistryError::Unauthorized)),
            429 | 503 => return Err(Failure::Retry(format!("status {status}"), retry_after(&headers))),
            s if s >= 500 || s == 408 => return Err(Failure::Retry(format!("status {s}"), None)),
            s if s >= 400 => return Err(Failure::Final(RegistryError::Rejected(format!("status {s}")))),
            _ => {}
        }
        // A response is believed only if the registry signed it.
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (timestamp, nonce) = (h(sign::TIMESTAMP), h(sign::NONCE));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let parts = ("RESPONSE", path, timestamp.as_str(), nonce.as_str(), body.as_ref());
        if !sign::verify(&self.creds.signing_key, parts, &h(sign::SIGNATURE), now) {
            return Err(Failure::Retry("response signature does not verify".into(), None));
        }
        Ok(Reply { status, body })
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<(u16, http::HeaderMap, Bytes), Failure> {
        let timeout = self.cfg.attempt_timeout;
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| Failure::Retry("timed out".into(), None))?
            .map_err(|_| Failure::Retry("connection failed".into(), None))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(timeout, http_body_util::Limited::new(body, MAX_RESPONSE_BYTES).collect())
            .await
            .map_err(|_| Failure::Retry("timed out reading the response".into(), None))?
            .map_err(|_| Failure::Retry("response cut off or too large".into(), None))?
            .to_bytes();
        Ok((status, parts.headers, body))
    }

    async fn token(&self, endpoint: &Endpoint) -> Result<String, Failure> {
        if let Some((token, until)) = endpoint.token.lock().expect("token lock").clone() {
            if Instant::now() < until {
                return Ok(token);
            }
        }
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", self.creds.client_id, self.creds.client_secret),
        );
        let request = http::Request::post(format!("{}/oauth2/token", endpoint.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from_static(b"grant_type=client_credentials")))
            .map_err(|_| Failure::Final(RegistryError::Config("token request could not be built".into())))?;
        let (status, headers, body) = self.send(request).await?;
        match status {
            200 => {}
            400 | 401 | 403 => return Err(Failure::Final(RegistryError::Unauthorized)),
            429 | 503 => return Err(Failure::Retry(format!("token endpoint status {status}"), retry_after(&headers))),
            s => return Err(Failure::Retry(format!("token endpoint status {s}"), None)),
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|_| Failure::Retry("token response unreadable".into(), None))?;
        let token = v["access_token"].as_str().ok_or(Failure::Retry("token response without a token".into(), None))?;
        let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(300));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_SKEW);
        *endpoint.token.lock().expect("token lock") = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }
}

const HL7_TYPE: &str = "x-application/hl7-v2+er7; charset=utf-8";
const FHIR_TYPE: &str = "application/fhir+json";

/// `Retry-After` in seconds (the HTTP-date form is not used by registries
/// medrec knows, and is ignored: backoff applies).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get("retry-after")?.to_str().ok()?.trim().parse().ok().map(Duration::from_secs)
}

/// An endpoint for logs: its host, not its full URL (which may carry a
/// tenant path).
fn endpoint_name(base: &str) -> String {
    base.parse::<http::Uri>().ok().and_then(|u| u.authority().map(|a| a.to_string())).unwrap_or_default()
}

fn hl7_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
