//! AWS calls per request and latency over the local stack, counted where they
//! land (the emulator's per-operation counter), not inferred, and what they
//! would cost at AWS list prices; then the handler's CPU time per request of
//! each route, measured on the function's own thread. Run with
//! `cargo bench -p medrec-e2e --bench aws_calls`.

use medrec_e2e::{canary_patient, gateway_event, Harness};
use medrec_edge::lambda::Api;
use std::future::Future;
use std::time::Instant;

/// US dollars per million, us-east-1 list prices (on-demand DynamoDB after
/// AWS's November 2024 cut; check the pricing pages before relying on them).
const DYNAMODB_READ_UNIT: f64 = 0.125;
const DYNAMODB_WRITE_UNIT: f64 = 0.625;
/// The price of one call by its counter name; unlisted calls are free or not
/// billed per call (DynamoDB is billed by request units, below; stream reads
/// by a Lambda trigger are free).
const PER_CALL: &[(&str, f64)] = &[
    ("TrentService.", 3.0),
    ("S3.PutObject", 5.0),
    ("S3.GetObject", 0.4),
    ("S3.HeadObject", 0.4),
    ("AWSEvents.PutEvents", 1.0),
    ("AmazonSQS.", 0.4),
];
/// Every API request: API Gateway's HTTP API and a Lambda invocation.
const PER_REQUEST: f64 = 1.0 + 0.2;
/// Lambda arm64 compute, US dollars per million requests per millisecond at
/// 512 MB ($0.0000133334 per GB-second).
const LAMBDA_MS_512MB: f64 = 0.0000133334 * 0.5 / 1000.0 * 1e6;
/// Requests per route for the handler CPU figures.
const CPU_RUNS: usize = 100;

/// Prints the calls and DynamoDB request units counted since the last call
/// (both reset) and their cost per million such rows, `requests` API
/// requests each. Lambda compute is left out (its duration here is not
/// AWS's): add $0.067 per million per 10 ms at 512 MB on arm64. Work done
/// after the answer (the outbox relay) lands in the row open when it runs.
async fn show(h: &Harness, label: &str, requests: f64) {
    let counts = h.aws_calls().await;
    let (read, write) = h.request_units().await;
    let calls: f64 = counts
        .iter()
        .filter_map(|(name, n)| PER_CALL.iter().find(|(p, _)| name.starts_with(p)).map(|(_, price)| price * *n as f64))
        .sum();
    let cost = PER_REQUEST * requests + calls + read * DYNAMODB_READ_UNIT + write * DYNAMODB_WRITE_UNIT;
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))).collect();
    println!(
        "{label:<44} ${cost:>6.2}/M  RRU={read} WRU={write}  {}",
        if parts.is_empty() { "none".into() } else { parts.join(" ") }
    );
}

/// One request as API Gateway hands it to a function: method, path (with
/// query), route key, path parameters, headers and body.
struct Call {
    method: &'static str,
    path: String,
    route_key: &'static str,
    params: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Call {
    fn get(path: String, route_key: &'static str, params: Vec<(&'static str, String)>) -> Call {
        Call { method: "GET", path, route_key, params, headers: vec![], body: String::new() }
    }

    /// The payload 2.0 event text the local gateway would send.
    fn event(&self, token: &str) -> String {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let params = self.params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        gateway_event(self.method, &self.path, token, &headers, &self.body, self.route_key, params).to_string()
    }
}

/// A transaction Bundle creating `n` copies of `resource`.
fn transaction_of(resource: &serde_json::Value, n: usize) -> String {
    let entries: Vec<serde_json::Value> = (0..n)
        .map(|_| serde_json::json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
}

/// The CPU time this thread has run, from the scheduler's own accounting.
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("run time")
}

/// A function's CPU milliseconds per request for each of `routes`: the
/// function booted on a thread of its own with a single-threaded runtime,
/// as a Lambda instance is, warmed by one request of each route, then
/// invoked `CPU_RUNS` times per route with the events the gateway would
/// send. Everything the instance does counts (event parsing, the token,
/// crypto, validation, the SDK's signing and HTTP), the emulator's work not.
/// `routes` makes the i-th request of a route (creates differ, a PATCH
/// names the version it changes).
fn handler_cpu<A, F, B>(boot: B, token: &str, routes: &[(&str, &(dyn Fn(usize) -> Call + Sync))]) -> Vec<(String, f64)>
where
    A: Api,
    F: Future<Output = A>,
    B: FnOnce() -> F + Send,
{
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let app = rt.block_on(boot());
                    let invoke = |call: &Call| {
                        let request = lambda_http::request::from_str(&call.event(token)).expect("event");
                        let status = rt.block_on(medrec_edge::lambda::handle(&app, request)).status();
                        assert!(status.is_success(), "{} {}: {status}", call.method, call.path);
                    };
                    routes
                        .iter()
                        .map(|(label, make)| {
                            invoke(&make(0));
                            let calls: Vec<Call> = (1..=CPU_RUNS).map(make).collect();
                            let before = thread_cpu_ns();
                            calls.iter().for_each(invoke);
                            let ms = (thread_cpu_ns() - before) as f64 / 1e6 / CPU_RUNS as f64;
                            (label.to_string(), ms)
                        })
                        .collect()
                })
                .join()
                .expect("function thread")
        })
    })
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-bench");

    h.aws_calls().await;
    h.request_units().await;
    let id = h.create_id(&t, &canary_patient("bench")).await;
    show(&h, "first create of an instance", 1.0).await;
    h.create_id(&t, &canary_patient("bench2")).await;
    show(&h, "create, warm instance", 1.0).await;
    h.get(&format!("/fhir/Patient/{id}"), &t).await;
    show(&h, "read, warm key cache", 1.0).await;
    h.get("/fhir/Patient?family=Familybench", &t).await;
    show(&h, "search, 1 result, warm", 1.0).await;

    // Clinical records and consent (functions clinical and consent).
    let obs = serde_json::json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{id}")}, "effectiveDateTime": "2026-11-23T08:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let r = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await;
    let obs_id = r.json()["id"].as_str().unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&r.body))).to_owned();
    show(&h, "Observation create, warm", 1.0).await;
    h.get(&format!("/fhir/Observation/{obs_id}"), &t).await;
    show(&h, "Observation read, no consent on file", 1.0).await;
    let patch = r#"[{"op": "add", "path": "/note", "value": [{"text": "rechecked"}]}]"#;
    let headers = [("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")];
    let r = h.call("PATCH", &format!("/fhir/Observation/{obs_id}"), Some(&t), &headers, Some(patch)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    show(&h, "Observation PATCH", 1.0).await;
    h.get(&format!("/fhir/Observation?patient={id}&code=8867-4"), &t).await;
    show(&h, "Observation search in the compartment", 1.0).await;
    let consent = serde_json::json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{id}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "permit"}
    });
    // Consents are recorded by the consent authority (registrar), not by clinicians.
    let registrar = h.token("registrar", "reg-bench");
    let r = h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&consent.to_string())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    show(&h, "Consent create (registrar)", 1.0).await;
    h.get(&format!("/fhir/Observation/{obs_id}"), &t).await;
    show(&h, "Observation read, one consent on file", 1.0).await;
    h.get(&format!("/fhir/Patient/{id}/$everything"), &t).await;
    show(&h, "Patient $everything (3 resources)", 1.0).await;

    // Documents: inline create (one sealed object) and Binary read.
    let note = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"bench note");
    let doc = serde_json::json!({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{id}")},
        "content": [{"attachment": {"contentType": "text/plain", "data": note}}]
    });
    let r = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&doc.to_string())).await;
    show(&h, "DocumentReference create, inline", 1.0).await;
    let binary = format!("/fhir/{}", r.json()["content"][0]["attachment"]["url"].as_str().unwrap());
    h.get(&binary, &t).await;
    show(&h, "Binary read (whole document)", 1.0).await;

    // History, a transaction Bundle, $validate and audit search.
    h.get(&format!("/fhir/Observation/{obs_id}/_history"), &t).await;
    show(&h, "Observation history (2 versions)", 1.0).await;
    let bundle = transaction_of(&obs, 10);
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&bundle)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    show(&h, "transaction Bundle, 10 Observations", 1.0).await;
    let r = h.call("POST", "/fhir/Patient/$validate", Some(&t), &[], Some(&canary_patient("v").to_string())).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    show(&h, "Patient $validate", 1.0).await;
    let auditor = h.token("auditor", "aud-bench");
    assert_eq!(h.get(&format!("/fhir/AuditEvent?patient={id}"), &auditor).await.status, 200);
    show(&h, "AuditEvent search by patient", 1.0).await;

    // A second function instance on the same resources: a cold start.
    let app = medrec_patients::boot(&h.settings("PatientsFunction", &[])).await.unwrap();
    show(&h, "cold start (root secret)", 0.0).await;
    let params = [("id".to_owned(), id.clone())].into();
    let event = gateway_event("GET", &format!("/fhir/Patient/{id}"), &t, &[], "", "GET /fhir/Patient/{id}", params);
    let resp = medrec_edge::lambda::handle(&app, lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!(resp.status(), 200);
    show(&h, "read on a cold instance (key not cached)", 1.0).await;

    // Latency over HTTP through gateway, handler and emulator, sequential.
    let n = 200;
    let started = Instant::now();
    let mut ids = vec![];
    for i in 0..n {
        ids.push(h.create_id(&t, &canary_patient(&format!("lat{i}"))).await);
    }
    let create_ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let started = Instant::now();
    for id in &ids {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let read_ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!(
        "mean latency over the local stack (n={n}, sequential): create {create_ms:.1} ms, warm read {read_ms:.1} ms"
    );

    // Handler CPU per request, route by route.
    let observation = |i: usize| {
        let mut o = obs.clone();
        o["valueQuantity"]["value"] = serde_json::json!(60 + i % 40);
        o.to_string()
    };
    let patient_create = |i: usize| Call {
        method: "POST",
        path: "/fhir/Patient".into(),
        route_key: "POST /fhir/Patient",
        params: vec![],
        headers: vec![],
        body: canary_patient(&format!("cpu{i}")).to_string(),
    };
    let patient_read = |_| Call::get(format!("/fhir/Patient/{id}"), "GET /fhir/Patient/{id}", vec![("id", id.clone())]);
    // Every bench patient's family starts "Family": a search by it walks
    // them all (the index holds 3-character prefixes) and decrypts each.
    let mut unique = canary_patient("unique");
    unique["name"][0]["family"] = serde_json::json!("Quenneville");
    h.create_id(&t, &unique).await;
    let patient_search = |_| Call::get("/fhir/Patient?family=Quenneville".into(), "GET /fhir/Patient", vec![]);
    let shared_search = |_| Call::get("/fhir/Patient?family=Familybench".into(), "GET /fhir/Patient", vec![]);
    let obs_create = |i: usize| Call {
        method: "POST",
        path: "/fhir/Observation".into(),
        route_key: "POST /fhir/{type}",
        params: vec![("type", "Observation".into())],
        headers: vec![],
        body: observation(i),
    };
    let obs_read = |_| {
        let params = vec![("type", "Observation".into()), ("id", obs_id.clone())];
        Call::get(format!("/fhir/Observation/{obs_id}"), "GET /fhir/{type}/{id}", params)
    };
    // The bench's own PATCH above made version 2.
    let obs_patch = |i: usize| Call {
        method: "PATCH",
        path: format!("/fhir/Observation/{obs_id}"),
        route_key: "PATCH /fhir/{type}/{id}",
        params: vec![("type", "Observation".into()), ("id", obs_id.clone())],
        headers: vec![("content-type", "application/json-patch+json".into()), ("if-match", format!("W/\"{}\"", i + 2))],
        body: patch.to_owned(),
    };
    let obs_search = |_| {
        let path = format!("/fhir/Observation?patient={id}&code=8867-4");
        Call::get(path, "GET /fhir/{type}", vec![("type", "Observation".into())])
    };
    let obs_history = |_| {
        let params = vec![("type", "Observation".into()), ("id", obs_id.clone())];
        Call::get(format!("/fhir/Observation/{obs_id}/_history"), "GET /fhir/{type}/{id}/_history", params)
    };
    let bundle = transaction_of(&obs, 10);
    let obs_bundle = |_| Call {
        method: "POST",
        path: "/fhir".into(),
        route_key: "POST /fhir",
        params: vec![],
        headers: vec![],
        body: bundle.clone(),
    };
    let validate = |i: usize| Call {
        method: "POST",
        path: "/fhir/Patient/$validate".into(),
        route_key: "POST /fhir/{type}/{id}",
        params: vec![("type", "Patient".into()), ("id", "$validate".into())],
        headers: vec![],
        body: canary_patient(&format!("v{i}")).to_string(),
    };
    let audit_search = |_| Call::get(format!("/fhir/AuditEvent?patient={id}"), "GET /fhir/AuditEvent", vec![]);
    let binary_read = |_| {
        let binary_id = binary.rsplit('/').next().expect("id").to_owned();
        Call::get(binary.clone(), "GET /fhir/Binary/{id}", vec![("id", binary_id)])
    };
    let mut rows = handler_cpu(
        || async { medrec_patients::boot(&h.settings("PatientsFunction", &[])).await.expect("boot") },
        &t,
        &[
            ("Patient create", &patient_create),
            ("Patient read", &patient_read),
            ("Patient search, 1 result", &patient_search),
            ("Patient search, a name prefix 300 patients share", &shared_search),
        ],
    );
    rows.extend(handler_cpu(
        || async { medrec_clinical::boot(&h.settings("ClinicalFunction", &[])).await.expect("boot") },
        &t,
        &[
            ("Observation create", &obs_create),
            ("Observation read, one consent on file", &obs_read),
            ("Observation PATCH", &obs_patch),
            ("Observation search in the compartment", &obs_search),
            ("Observation history, one page of over 100 versions", &obs_history),
            ("transaction Bundle, 10 Observations", &obs_bundle),
        ],
    ));
    rows.extend(handler_cpu(
        || async { medrec_documents::boot(&h.settings("DocumentsFunction", &[])).await.expect("boot") },
        &t,
        &[("Binary read (whole document, S3)", &binary_read)],
    ));
    rows.extend(handler_cpu(
        || async { medrec_validation::boot(&h.settings("ValidationFunction", &[])).await.expect("boot") },
        &t,
        &[("Patient $validate", &validate)],
    ));
    rows.extend(handler_cpu(
        || async { medrec_audit::boot(&h.settings("AuditFunction", &[])).await.expect("boot") },
        &auditor,
        &[("AuditEvent search by patient", &audit_search)],
    ));
    println!("handler CPU per request (one thread per instance, {CPU_RUNS} requests per route, after one to warm):");
    println!("| route | handler CPU ms | Lambda compute $ per million at that duration, 512 MB arm64 |");
    println!("|---|---|---|");
    for (label, ms) in rows {
        println!("| {label} | {ms:.2} | {:.3} |", ms * LAMBDA_MS_512MB);
    }
}
