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

/// The calls the local stack's event-source pollers make whether or not
/// anything happens (Lambda's own polling of streams and queues in AWS):
/// left out of every row.
const POLLS: &[&str] = &[
    "DynamoDBStreams_20120810.DescribeStream",
    "DynamoDBStreams_20120810.GetShardIterator",
    "DynamoDBStreams_20120810.GetRecords",
    "AmazonSQS.ReceiveMessage",
];
/// Long enough for a request's background work (stream to relay to bus to
/// queue to consumer, each hop a poll of at most half a second) to land.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Prints the calls and DynamoDB request units counted since the last call
/// (both reset), after the background work of the row's request has run
/// (the outbox relay, the audit mirror), and their cost per million such
/// rows, `requests` API requests each. Lambda compute is left out (its
/// duration here is not AWS's; the CPU table below has it).
async fn show(h: &Harness, label: &str, requests: f64) {
    tokio::time::sleep(SETTLE).await;
    let mut counts = h.aws_calls().await;
    counts.retain(|name, _| !POLLS.contains(&name.as_str()));
    let (read, write) = h.request_units().await;
    let calls: f64 = counts
        .iter()
        .filter_map(|(name, n)| PER_CALL.iter().find(|(p, _)| name.starts_with(p)).map(|(_, price)| price * *n as f64))
        .sum();
    let cost = PER_REQUEST * requests + calls + read * DYNAMODB_READ_UNIT + write * DYNAMODB_WRITE_UNIT;
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))).collect();
    println!(
        "| {label} | {cost:.2} | {read} / {write} | {} |",
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
    println!("AWS calls per request, with the background work each request causes (outbox relay, audit mirror):");
    println!("| route | $ per million | DynamoDB read / write units | calls |");
    println!("|---|---|---|---|");

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
    let consent_id = r.json()["id"].as_str().expect("consent id").to_owned();
    show(&h, "Consent create (registrar)", 1.0).await;
    assert_eq!(h.get(&format!("/fhir/Consent/{consent_id}"), &registrar).await.status, 200);
    show(&h, "Consent read", 1.0).await;
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

    // History, updates, conditional create, the directory, a transaction
    // Bundle, $validate, the audit trail and the CapabilityStatement.
    h.get(&format!("/fhir/Observation/{obs_id}/_history"), &t).await;
    show(&h, "Observation history (2 versions)", 1.0).await;
    assert_eq!(h.get(&format!("/fhir/Observation/{obs_id}/_history/1"), &t).await.status, 200);
    show(&h, "Observation vread", 1.0).await;
    let update = |version: usize| {
        let mut p = canary_patient("bench");
        p["id"] = serde_json::json!(id);
        (format!("/fhir/Patient/{id}"), format!("W/\"{version}\""), p.to_string())
    };
    let (path, version, body) = update(1);
    let r = h.call("PUT", &path, Some(&t), &[("if-match", &version)], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    show(&h, "Patient update (PUT, If-Match)", 1.0).await;
    let mut tagged = obs.clone();
    tagged["identifier"] = serde_json::json!([{"system": "urn:bench", "value": "obs-1"}]);
    // Clinical searches name the patient.
    let condition = format!("patient={id}&identifier=urn:bench|obs-1");
    let once = [("if-none-exist", condition.as_str())];
    let r = h.call("POST", "/fhir/Observation", Some(&t), &once, Some(&tagged.to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    show(&h, "Observation conditional create, none there", 1.0).await;
    assert_eq!(h.call("POST", "/fhir/Observation", Some(&t), &once, Some(&tagged.to_string())).await.status, 200);
    show(&h, "Observation conditional create, already there", 1.0).await;
    let practitioner = serde_json::json!({"resourceType": "Practitioner", "name": [{"family": "Bench"}]});
    let r = h.call("POST", "/fhir/Practitioner", Some(&registrar), &[], Some(&practitioner.to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let practitioner_id = r.json()["id"].as_str().expect("practitioner id").to_owned();
    show(&h, "Practitioner create (directory)", 1.0).await;
    assert_eq!(h.get(&format!("/fhir/Practitioner/{practitioner_id}"), &t).await.status, 200);
    show(&h, "Practitioner read (directory)", 1.0).await;
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
    assert_eq!(h.get(&format!("/fhir/Patient/{id}/$disclosures"), &auditor).await.status, 200);
    show(&h, "accounting of disclosures", 1.0).await;
    let glass = [
        ("x-purpose-of-use", "ETREAT"),
        ("x-break-glass-reason-code", "patient-unconscious"),
        ("x-break-glass-reason", "unconscious on arrival, needs history"),
    ];
    assert_eq!(h.call("GET", &format!("/fhir/Patient/{id}"), Some(&t), &glass, None).await.status, 200);
    show(&h, "Patient read under break-glass", 1.0).await;
    let queue = h.get("/fhir/AuditEvent?subtype=break-glass&_review=pending", &auditor).await;
    assert_eq!(queue.status, 200);
    let access = queue.json()["entry"][0]["resource"]["id"].as_str().expect("a pending access").to_owned();
    show(&h, "break-glass review queue", 1.0).await;
    let review = r#"{"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": "justified"}]}"#;
    let r = h.call("POST", &format!("/fhir/AuditEvent/{access}/$review"), Some(&auditor), &[], Some(review)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    show(&h, "break-glass review", 1.0).await;
    let doomed = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await.json();
    let doomed = format!("/fhir/Observation/{}", doomed["id"].as_str().expect("id"));
    show(&h, "Observation create", 1.0).await;
    let admin = h.token("admin", "admin-bench");
    assert_eq!(h.call("DELETE", &doomed, Some(&admin), &[], None).await.status, 204);
    show(&h, "Observation delete (admin)", 1.0).await;
    assert_eq!(h.get("/fhir/metadata", &t).await.status, 200);
    show(&h, "CapabilityStatement", 1.0).await;

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
    // The calls above made version 2.
    let patient_update = |i: usize| {
        let (path, version, body) = update(i + 2);
        Call {
            method: "PUT",
            path,
            route_key: "PUT /fhir/Patient/{id}",
            params: vec![("id", id.clone())],
            headers: vec![("if-match", version)],
            body,
        }
    };
    let everything = |_| {
        let params = vec![("id", id.clone()), ("operation", "$everything".into())];
        Call::get(format!("/fhir/Patient/{id}/$everything"), "GET /fhir/Patient/{id}/{operation}", params)
    };
    let metadata = |_| Call::get("/fhir/metadata".into(), "GET /fhir/metadata", vec![]);
    // Every bench patient's family starts "Family": a search by it walks
    // them all (the index holds 3-character prefixes) and decrypts each.
    let mut unique = canary_patient("unique");
    unique["name"][0]["family"] = serde_json::json!("Quenneville");
    let unique_id = h.create_id(&t, &unique).await;
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
    let obs_vread = |_| {
        let params = vec![("type", "Observation".into()), ("id", obs_id.clone()), ("vid", "1".into())];
        Call::get(format!("/fhir/Observation/{obs_id}/_history/1"), "GET /fhir/{type}/{id}/_history/{vid}", params)
    };
    let conditional_create = |_| Call {
        method: "POST",
        path: "/fhir/Observation".into(),
        route_key: "POST /fhir/{type}",
        params: vec![("type", "Observation".into())],
        headers: vec![("if-none-exist", condition.clone())],
        body: tagged.to_string(),
    };
    let practitioner_read = |_| {
        let params = vec![("type", "Practitioner".into()), ("id", practitioner_id.clone())];
        Call::get(format!("/fhir/Practitioner/{practitioner_id}"), "GET /fhir/{type}/{id}", params)
    };
    let consent_read = |_| {
        Call::get(format!("/fhir/Consent/{consent_id}"), "GET /fhir/Consent/{id}", vec![("id", consent_id.clone())])
    };
    let doc_create = |i: usize| {
        let mut d = doc.clone();
        d["description"] = serde_json::json!(format!("note {i}"));
        Call {
            method: "POST",
            path: "/fhir/DocumentReference".into(),
            route_key: "POST /fhir/DocumentReference",
            params: vec![],
            headers: vec![],
            body: d.to_string(),
        }
    };
    // The Quenneville patient's trail: a create and a search disclosure
    // for each of the Patient search rows' requests.
    let disclosures = |_| {
        let path = format!("/fhir/Patient/{unique_id}/$disclosures");
        Call::get(path, "GET /fhir/Patient/{id}/$disclosures", vec![("id", unique_id.clone())])
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
            ("Patient update (PUT, If-Match)", &patient_update),
            ("Patient $everything, first page", &everything),
            ("CapabilityStatement", &metadata),
        ],
    );
    rows.extend(handler_cpu(
        || async { medrec_clinical::boot(&h.settings("ClinicalFunction", &[])).await.expect("boot") },
        &t,
        &[
            ("Observation create", &obs_create),
            ("Observation read, one consent on file", &obs_read),
            ("Observation vread", &obs_vread),
            ("Observation PATCH", &obs_patch),
            ("Observation conditional create, already there", &conditional_create),
            ("Practitioner read (directory)", &practitioner_read),
            ("Observation search in the compartment", &obs_search),
            ("Observation history, one page of over 100 versions", &obs_history),
            ("transaction Bundle, 10 Observations", &obs_bundle),
        ],
    ));
    rows.extend(handler_cpu(
        || async { medrec_documents::boot(&h.settings("DocumentsFunction", &[])).await.expect("boot") },
        &t,
        &[("Binary read (whole document, S3)", &binary_read), ("DocumentReference create, inline", &doc_create)],
    ));
    rows.extend(handler_cpu(
        || async { medrec_consent::boot(&h.settings("ConsentFunction", &[])).await.expect("boot") },
        &registrar,
        &[("Consent read", &consent_read)],
    ));
    rows.extend(handler_cpu(
        || async { medrec_validation::boot(&h.settings("ValidationFunction", &[])).await.expect("boot") },
        &t,
        &[("Patient $validate", &validate)],
    ));
    rows.extend(handler_cpu(
        || async { medrec_audit::boot(&h.settings("AuditFunction", &[])).await.expect("boot") },
        &auditor,
        &[
            ("AuditEvent search by patient, first page of thousands", &audit_search),
            ("accounting of disclosures, 100 accesses", &disclosures),
        ],
    ));
    println!("handler CPU per request (one thread per instance, {CPU_RUNS} requests per route, after one to warm):");
    println!("| route | handler CPU ms | Lambda compute $ per million at that duration, 512 MB arm64 |");
    println!("|---|---|---|");
    for (label, ms) in rows {
        println!("| {label} | {ms:.2} | {:.3} |", ms * LAMBDA_MS_512MB);
    }
}
