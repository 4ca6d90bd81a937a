//! An immunization registry (IRIS) simulator for the local stack and the
//! tests: OAuth2 client credentials, signed requests and responses (nonces
//! never reused), HL7 v2.5.1 VXU/QBP and FHIR JSON submissions, one record
//! per immunization however often it is sent, and injected faults: latency,
//! error statuses (with `Retry-After`), dropped connections, expired
//! tokens, forged response signatures and stale acknowledgements.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use medrec_edge::registry::client::Credentials;
use medrec_edge::registry::hl7::{self, Message, Parties};
use medrec_edge::registry::{sign, RegistryDose};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Latency(Duration),
    /// An error status, with `Retry-After` seconds.
    Status(u16, Option<u64>),
    /// The connection closes without an answer.
    Drop,
    /// The bearer token is refused as expired.
    ExpiredToken,
    /// The answer's signature is forged.
    BadSignature,
    /// The acknowledgement of the previous message comes back instead.
    StaleAck,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub tokens_issued: usize,
    /// Authenticated, signed API requests that reached the registry.
    pub requests: usize,
    /// Distinct immunizations recorded.
    pub recorded: usize,
    /// Submissions of an immunization already recorded.
    pub duplicates: usize,
    pub refused_signatures: usize,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, i64>,
    nonces: HashSet<String>,
    /// Immunization id -> (patient id, dose).
    records: BTreeMap<String, (String, RegistryDose)>,
    /// Doses other providers reported, by medrec patient id.
    history: BTreeMap<String, Vec<RegistryDose>>,
    faults: VecDeque<Fault>,
    stats: Stats,
    last_ack: Option<String>,
}

pub struct RegistrySimulator {
    pub base_url: String,
    creds: Credentials,
    token_lifetime: u64,
    state: Mutex<State>,
}

fn parties() -> Parties {
    Parties {
        sending_application: "IRIS".into(),
        sending_facility: "IRIS".into(),
        receiving_application: "MEDREC".into(),
        receiving_facility: "MEDREC".into(),
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl RegistrySimulator {
    /// Starts on a free loopback port; runs until the runtime ends.
    pub async fn start(creds: Credentials, token_lifetime: u64) -> std::io::Result<Arc<RegistrySimulator>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sim = Arc::new(RegistrySimulator {
            base_url: format!("http://{}", listener.local_addr()?),
            creds,
            token_lifetime,
            state: Mutex::new(State::default()),
        });
        let server = sim.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let sim = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let sim = sim.clone();
                        async move { sim.handle(req).await }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(sim)
    }

    /// The next `times` API requests meet `fault`.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut s = self.state.lock().expect("state");
        s.faults.extend(std::iter::repeat_n(fault, times));
    }

    pub fn clear_faults(&self) {
        self.state.lock().expect("state").faults.clear();
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().expect("state").stats.clone()
    }

    /// Doses recorded for a medrec patient, submitted or seeded.
    pub fn doses_of(&self, patient: &str) -> Vec<RegistryDose> {
        let s = self.state.lock().expect("state");
        let mut doses: Vec<RegistryDose> = s.history.get(patient).cloned().unwrap_or_default();
        doses.extend(s.records.values().filter(|(p, _)| p == patient).map(|(_, d)| d.clone()));
        doses
    }

    /// A dose another provider reported for the patient.
    pub fn seed(&self, patient: &str, dose: RegistryDose) {
        self.state.lock().expect("state").history.entry(patient.to_owned()).or_default().push(dose);
    }

    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, String> {
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, 1024 * 1024).collect().await.map_err(|_| "body")?.to_bytes();
        let path = parts.uri.path().to_owned();
        let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if path == "/oauth2/token" {
            return Ok(self.token(&header("authorization"), &body));
        }
        let fault = self.state.lock().expect("state").faults.pop_front();
        match &fault {
            Some(Fault::Latency(d)) => tokio::time::sleep(*d).await,
            Some(Fault::Status(status, retry_after)) => {
                let mut r = plain(*status, json!({"error": "injected"}));
                if let Some(s) = retry_after {
                    r.headers_mut().insert("retry-after", s.to_string().parse().expect("digits"));
                }
                return Ok(r);
            }
            Some(Fault::Drop) => return Err("dropped".into()),
            _ => {}
        }
        let bearer = header("authorization").strip_prefix("Bearer ").map(str::to_owned).unwrap_or_default();
        {
            let mut s = self.state.lock().expect("state");
            let valid = s.tokens.get(&bearer).is_some_and(|exp| *exp > now_unix());
            if !valid || fault == Some(Fault::ExpiredToken) {
                s.tokens.remove(&bearer);
                return Ok(plain(401, json!({"error": "invalid_token"})));
            }
            let (ts, nonce) = (header(sign::TIMESTAMP), header(sign::NONCE));
            let parts = ("POST", path.as_str(), ts.as_str(), nonce.as_str(), body.as_ref());
            if !sign::verify(&self.creds.signing_key, parts, &header(sign::SIGNATURE), now_unix())
                || !s.nonces.insert(nonce)
            {
                s.stats.refused_signatures += 1;
                return Ok(plain(401, json!({"error": "invalid_signature"})));
            }
            s.stats.requests += 1;
        }
        let (status, content_type, answer) = match path.as_str() {
            "/hl7" => self.hl7(&String::from_utf8_lossy(&body), fault == Some(Fault::StaleAck)),
            "/fhir/Immunization" => self.fhir(&body),
            _ => (404, "application/json", json!({"error": "not found"}).to_string()),
        };
        Ok(self.signed(status, content_type, &path, answer.into_bytes(), fault == Some(Fault::BadSignature)))
    }

    fn token(&self, authorization: &str, body: &[u8]) -> hyper::Response<Full<Bytes>> {
        let expected = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", self.creds.client_id, self.creds.client_secret),
        );
        if authorization != format!("Basic {expected}") || body != b"grant_type=client_credentials" {
            return plain(401, json!({"error": "invalid_client"}));
        }
        let token = medrec_edge::crypto::random_id();
        let mut s = self.state.lock().expect("state");
        s.tokens.insert(token.clone(), now_unix() + self.token_lifetime as i64);
        s.stats.tokens_issued += 1;
        plain(200, json!({"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}))
    }

    fn hl7(&self, text: &str, stale: bool) -> (u16, &'static str, String) {
        const HL7: &str = "x-application/hl7-v2+er7";
        let Ok(m) = Message::parse(text) else { return (400, "text/plain", "not HL7 v2".into()) };
        let control = m.get("MSH", 10, 1).unwrap_or_default();
        let ack_id = medrec_edge::crypto::random_id();
        let now = "20261123000000+0000";
        let mut s = self.state.lock().expect("state");
        if m.message_type() == "QBP^Q11" {
            let patient = m.get("QPD", 3, 1).unwrap_or_default();
            drop(s);
            return (200, HL7, hl7::rsp(&parties(), &m, &self.doses_of(&patient), &ack_id, now));
        }
        if m.message_type() != "VXU^V04" {
            return (200, HL7, hl7::ack(&parties(), &control, "AR", Some("unsupported message type"), &ack_id, now));
        }
        let (Some(immunization), Some(patient), Some(cvx), Some(date)) =
            (m.get("ORC", 3, 1), m.get("PID", 3, 1), m.get("RXA", 5, 1), m.get("RXA", 3, 1))
        else {
            return (200, HL7, hl7::ack(&parties(), &control, "AR", Some("required field missing"), &ack_id, now));
        };
        let answer = if s.records.contains_key(&immunization) {
            s.stats.duplicates += 1;
            hl7::ack(&parties(), &control, "AA", Some("duplicate record"), &ack_id, now)
        } else {
            let dose = RegistryDose {
                registry_id: format!("IRIS-{}", s.records.len() + 1),
                date,
                cvx,
                lot: m.get("RXA", 15, 1),
                completion: m.get("RXA", 20, 1).unwrap_or_else(|| "CP".into()),
            };
            s.records.insert(immunization, (patient, dose));
            s.stats.recorded += 1;
            hl7::ack(&parties(), &control, "AA", None, &ack_id, now)
        };
        let previous = s.last_ack.replace(answer.clone());
        match previous {
            Some(old) if stale => (200, HL7, old),
            _ => (200, HL7, answer),
        }
    }

    fn fhir(&self, body: &[u8]) -> (u16, &'static str, String) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else { return (400, "application/json", "{}".into()) };
        let id = v["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
        let patient = v["contained"][0]["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
        let cvx = v["vaccineCode"]["coding"][0]["code"].as_str().unwrap_or_default().to_owned();
        if id.is_empty() || patient.is_empty() || cvx.is_empty() {
            return (422, "application/fhir+json", json!({"resourceType": "OperationOutcome"}).to_string());
        }
        let mut s = self.state.lock().expect("state");
        if s.records.contains_key(&id) {
            s.stats.duplicates += 1;
            return (200, "application/fhir+json", v.to_string());
        }
        let date: String =
            v["occurrenceDateTime"].as_str().unwrap_or_default().chars().filter(char::is_ascii_digit).take(8).collect();
        let dose = RegistryDose {
            registry_id: format!("IRIS-{}", s.records.len() + 1),
            date,
            cvx,
            lot: v["lotNumber"].as_str().map(str::to_owned),
            completion: "CP".into(),
        };
        s.records.insert(id, (patient, dose));
        s.stats.recorded += 1;
        (201, "application/fhir+json", v.to_string())
    }

    fn signed(
        &self,
        status: u16,
        content_type: &str,
        path: &str,
        body: Vec<u8>,
        forge: bool,
    ) -> hyper::Response<Full<Bytes>> {
        let ts = now_unix().to_string();
        let nonce = medrec_edge::crypto::random_id();
        let key: &[u8] = if forge { b"not the shared key" } else { &self.creds.signing_key };
        let signature = sign::sign(key, "RESPONSE", path, &ts, &nonce, &body);
        hyper::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header(sign::TIMESTAMP, ts)
            .header(sign::NONCE, nonce)
            .header(sign::SIGNATURE, signature)
            .body(Full::new(Bytes::from(body)))
            .expect("valid response")
    }
}

fn plain(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}
