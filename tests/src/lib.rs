//! End-to-end harness: one emulator per test process (moto over the wire on
//! loopback), and for each test a full local stack provisioned from
//! template.yaml under its own resource prefix, so tests run in parallel
//! without sharing a table. Tests talk HTTP to the local API gateway.

pub mod cohort;

use medrec_infra::client::{HttpClient, Reply};
use medrec_infra::devkey::{DevKey, TokenSpec};
use medrec_infra::emulator::Emulator;
use medrec_infra::stack::{LocalStack, StackOptions};
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static LOGS: OnceLock<LogBuffer> = OnceLock::new();

/// Every log line medrec wrote in this test process, as JSON text.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

/// Every test process's logs also go to `target/test-logs/<pid>.jsonl`, so
/// that `make test` can search all of them for canaries after the suite.
static LOG_FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();

fn log_file() -> Option<&'static Mutex<std::fs::File>> {
    LOG_FILE
        .get_or_init(|| {
            let dir = medrec_infra::emulator::repo_root().join("target/test-logs");
            std::fs::create_dir_all(&dir).ok()?;
            let path = dir.join(format!("{}.jsonl", std::process::id()));
            std::fs::OpenOptions::new().create(true).append(true).open(path).ok().map(Mutex::new)
        })
        .as_ref()
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        if let Some(f) = log_file() {
            f.lock().expect("log file").write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// Captures logs with the production filter, medrec's own crates at trace.
pub fn logs() -> &'static LogBuffer {
    LOGS.get_or_init(|| {
        let buf = LogBuffer::default();
        let filter = format!(
            "{},medrec_edge=trace,medrec_patients=trace,medrec_documents=trace,medrec_document_ingest=trace,medrec_infra=trace",
            medrec_edge::log::DEFAULT_FILTER
        );
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(buf.clone())
            .try_init();
        buf
    })
}

fn emulator_endpoint() -> String {
    EMULATOR.get_or_init(|| Emulator::start().expect("start the emulator (run `make setup` first)")).endpoint.clone()
}

pub struct Harness {
    pub stack: LocalStack,
    pub client: HttpClient,
    pub key: Arc<DevKey>,
}

/// Everything a stack stores, raw, as (where, text): every item of every
/// table, every object of every bucket (its key, and its bytes as lossy
/// text) and every message waiting in every queue the template declares.
/// A resource a test removed (to play an outage) stores nothing.
pub async fn stored_contents(
    clients: &medrec_infra::provision::Clients,
    template: &medrec_infra::template::Template,
    provisioned: &medrec_infra::provision::Provisioned,
) -> Vec<(String, String)> {
    let mut out = table_items(clients, template, provisioned).await;
    out.extend(bucket_objects(clients, template, provisioned).await);
    out.extend(queued_messages(clients, template, provisioned).await);
    out
}

/// The template's resources of one kind, with their physical names.
fn resources<'a>(
    template: &'a medrec_infra::template::Template,
    provisioned: &'a medrec_infra::provision::Provisioned,
    kind: &'static str,
) -> impl Iterator<Item = (&'a str, String)> {
    template
        .resources
        .iter()
        .filter(move |r| r.kind == kind)
        .map(|r| (r.logical_id.as_str(), provisioned.reference(&r.logical_id).unwrap_or_default().to_owned()))
}

async fn table_items(
    clients: &medrec_infra::provision::Clients,
    template: &medrec_infra::template::Template,
    provisioned: &medrec_infra::provision::Provisioned,
) -> Vec<(String, String)> {
    let mut out = vec![];
    for (id, table) in resources(template, provisioned, "AWS::DynamoDB::Table") {
        let items = match try_scan(&clients.dynamodb, &table).await {
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => continue,
            items => items.expect("scan"),
        };
        out.extend(items.iter().map(|item| (format!("table {id}"), format!("{item:?}"))));
    }
    out
}

async fn bucket_objects(
    clients: &medrec_infra::provision::Clients,
    template: &medrec_infra::template::Template,
    provisioned: &medrec_infra::provision::Provisioned,
) -> Vec<(String, String)> {
    let mut out = vec![];
    for (id, bucket) in resources(template, provisioned, "AWS::S3::Bucket") {
        let listed = match clients.s3.list_objects_v2().bucket(&bucket).send().await {
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => continue,
            listed => listed.expect("list objects"),
        };
        for key in listed.contents().iter().filter_map(|o| o.key()) {
            out.push((format!("object key in {id}"), key.to_owned()));
            // An upload may be ingested (and deleted) between list and read.
            let Ok(got) = clients.s3.get_object().bucket(&bucket).key(key).send().await else { continue };
            let bytes = got.body.collect().await.expect("object body").to_vec();
            out.push((format!("bucket {id}"), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

async fn queued_messages(
    clients: &medrec_infra::provision::Clients,
    template: &medrec_infra::template::Template,
    provisioned: &medrec_infra::provision::Provisioned,
) -> Vec<(String, String)> {
    let mut out = vec![];
    for (id, queue) in resources(template, provisioned, "AWS::SQS::Queue") {
        let received = clients
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await;
        let received = match received {
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => continue,
            received => received.expect("receive"),
        };
        out.extend(
            received.messages().iter().map(|m| (format!("queue {id}"), m.body().unwrap_or_default().to_owned())),
        );
    }
    out
}

type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;
type ScanError = aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::scan::ScanError>;

async fn try_scan(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<Item>, ScanError> {
    let mut items = vec![];
    let mut start = None;
    loop {
        let out = ddb.scan().table_name(table).set_exclusive_start_key(start).send().await?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(items),
        }
    }
}

/// The canary values `canary_patient` seeds (prefix and a 12-hex tag) in `text`.
pub fn canaries_in(text: &str) -> Vec<String> {
    const PREFIXES: [&str; 6] = ["MRN", "Family", "Given", "mail", "Street", "City"];
    let mut found = vec![];
    for prefix in PREFIXES {
        for (at, _) in text.match_indices(prefix) {
            let tag = &text.as_bytes()[at + prefix.len()..];
            if tag.len() >= 12 && tag[..12].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
                found.push(text[at..at + prefix.len() + 12].to_owned());
            }
        }
    }
    found
}

/// When a test ends (and did not fail), everything its stack stored is
/// searched for canary PHI; what is found goes beside the test's logs in
/// `target/test-logs`, where `make test`'s sweep fails on it. A test's
/// emulator ends with its process, so this is the last look at its data.
impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let (endpoint, template, provisioned) =
            (self.stack.endpoint.clone(), self.stack.template.clone(), self.stack.provisioned.clone());
        // Its own runtime and clients: the test's are busy dropping.
        let swept = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                // Whole-table scans of a long test's stack (the 300-entry
                // fault run's) take the emulator longer than a request may.
                let timeouts = aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(std::time::Duration::from_secs(300))
                    .operation_timeout(std::time::Duration::from_secs(300))
                    .build();
                let sdk =
                    medrec_edge::aws::sdk_config(Some(&endpoint)).await.to_builder().timeout_config(timeouts).build();
                let clients = medrec_infra::provision::Clients::new(&sdk);
                stored_contents(&clients, &template, &provisioned).await
            })
        })
        .join()
        .expect("the store sweep");
        let found: Vec<String> = swept
            .iter()
            .flat_map(|(place, text)| canaries_in(text).into_iter().map(move |c| format!("{c} in {place}")))
            .collect();
        let line = serde_json::json!({"store_sweep": {"stack": self.stack.provisioned.prefix, "stored": swept.len(), "found": found}});
        if let Some(f) = log_file() {
            let _ = writeln!(f.lock().expect("log file"), "{line}");
        }
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(vec![]).await
    }

    pub async fn start_with(env_overrides: Vec<(String, String)>) -> Harness {
        Self::start_full(env_overrides, vec![]).await
    }

    /// A stack where the test itself plays the `unmounted` functions (reads
    /// their queues, for instance).
    pub async fn start_without(unmounted: &[&str]) -> Harness {
        Self::start_full(vec![], unmounted.iter().map(|s| s.to_string()).collect()).await
    }

    pub async fn start_full(env_overrides: Vec<(String, String)>, unmounted: Vec<String>) -> Harness {
        logs();
        let key = Arc::new(DevKey::generate());
        let prefix = format!("t{}", &medrec_edge::crypto::random_id()[..10]);
        // Boxed: inline, the stack's start (provisioning, every function's
        // boot) made each test's future too deep for a test thread's stack.
        let stack = Box::pin(LocalStack::start(StackOptions {
            endpoint: Some(emulator_endpoint()),
            port: 0,
            prefix,
            dev_key: key.clone(),
            env_overrides,
            unmounted,
        }))
        .await
        .expect("local stack starts");
        Harness { stack, client: HttpClient::default(), key }
    }

    /// A stack whose functions reach the emulator through a fault-injecting
    /// proxy (the test's own checks go to the emulator directly).
    pub async fn start_behind_faults(unmounted: &[&str]) -> (Harness, medrec_infra::fault_proxy::FaultProxy) {
        let proxy = medrec_infra::fault_proxy::FaultProxy::start(&emulator_endpoint()).await.expect("fault proxy");
        let h = Self::start_full(
            vec![("MEDREC_AWS_ENDPOINT".into(), proxy.endpoint.clone())],
            unmounted.iter().map(|s| s.to_string()).collect(),
        )
        .await;
        (h, proxy)
    }

    /// A fault-injecting proxy in front of this stack's emulator for work a
    /// test runs itself (a purge, an ingest it plays): only that work's calls
    /// pass it, never the stack's own background functions'.
    pub async fn fault_proxy(&self) -> medrec_infra::fault_proxy::FaultProxy {
        medrec_infra::fault_proxy::FaultProxy::start(&self.stack.endpoint).await.expect("fault proxy")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.base_url)
    }

    pub fn token(&self, role: &str, sub: &str) -> String {
        self.key.mint(&TokenSpec::for_role(role, sub))
    }

    pub fn token_with(&self, role: &str, sub: &str, scopes: &[&str], patient: Option<&str>) -> String {
        let mut spec = TokenSpec::for_role(role, sub);
        spec.scopes = scopes.iter().map(|s| s.to_string()).collect();
        spec.patient = patient.map(str::to_owned);
        if role == "patient" {
            spec.fhir_user = patient.map(|p| format!("Patient/{p}"));
        }
        self.key.mint(&spec)
    }

    /// A token that does not say who its user is (no `fhirUser`).
    pub fn token_without_fhir_user(&self, role: &str, sub: &str) -> String {
        let mut spec = TokenSpec::for_role(role, sub);
        spec.fhir_user = None;
        self.key.mint(&spec)
    }

    /// A token whose user is `fhir_user` (SMART `fhirUser`).
    pub fn token_as(&self, role: &str, sub: &str, fhir_user: &str) -> String {
        let mut spec = TokenSpec::for_role(role, sub);
        spec.fhir_user = Some(fhir_user.to_owned());
        self.key.mint(&spec)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("authorization", a));
        }
        if body.is_some() && !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            h.push(("content-type", "application/fhir+json"));
        }
        self.client.send(method, &self.url(path), &h, body.map(|b| b.as_bytes().to_vec())).await.expect("HTTP exchange")
    }

    /// A request with a raw body, sent with exactly the headers given (no
    /// content type is assumed).
    pub async fn call_bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            h.push(("authorization", a));
        }
        self.client.send(method, &self.url(path), &h, Some(body)).await.expect("HTTP exchange")
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), &[], None).await
    }

    pub async fn create(&self, token: &str, patient: &Value) -> Reply {
        self.call("POST", "/fhir/Patient", Some(token), &[], Some(&patient.to_string())).await
    }

    /// Creates a resource (of its `resourceType`) and returns its id; panics
    /// unless the server says 201.
    pub async fn create_id(&self, token: &str, resource: &Value) -> String {
        let path = format!("/fhir/{}", resource["resourceType"].as_str().expect("a resourceType"));
        let r = self.call("POST", &path, Some(token), &[], Some(&resource.to_string())).await;
        assert_eq!(r.status, 201, "create failed: {}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_str().expect("id").to_owned()
    }

    pub fn table(&self, logical_id: &str) -> String {
        self.stack.table(logical_id)
    }

    /// A function's settings as the stack boots it, with `overrides`: what
    /// its `boot` takes, for a test that builds a second instance.
    pub fn settings(&self, function: &str, overrides: &[(&str, &str)]) -> medrec_edge::config::Settings {
        let mut env = self.stack.function_env[function].clone();
        env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        medrec_edge::config::Settings::from_map(env).expect("the stack's settings are valid")
    }

    /// Sets the stored `upd` of a resource's items (its current item and the
    /// given versions) to a past instant: the emulator's clock cannot be moved,
    /// the stored timestamps can.
    pub async fn backdate(&self, patient: &str, ty: &str, id: &str, versions: &[u64], to: &str) {
        use aws_sdk_dynamodb::types::AttributeValue as AV;
        use medrec_edge::aws::schema;
        let mut keys: Vec<String> = versions.iter().map(|v| schema::version_sk(ty, id, *v)).collect();
        keys.push(schema::current_sk(ty, id));
        for sk in keys {
            self.stack
                .clients
                .dynamodb
                .update_item()
                .table_name(self.table("RecordsTable"))
                .set_key(Some(schema::key(schema::patient_pk(patient), sk)))
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET upd = :u")
                .expression_attribute_values(":u", AV::S(to.into()))
                .send()
                .await
                .unwrap();
        }
    }

    /// The AWS calls the emulator served since the last call, by
    /// `service.Operation`; the counter restarts.
    pub async fn aws_calls(&self) -> std::collections::BTreeMap<String, u64> {
        serde_json::from_value(self.take_counter("calls").await).expect("counts")
    }

    /// The DynamoDB request units (read, write) the emulator counted since
    /// the last call of this function (it resets); counting starts with the
    /// first call.
    pub async fn request_units(&self) -> (f64, f64) {
        let units = self.take_counter("units").await;
        assert_eq!(units["unpriced"], 0, "a DynamoDB call the emulator could not price");
        (units["read"].as_f64().expect("read units"), units["write"].as_f64().expect("write units"))
    }

    /// One of the emulator's counters (`/_medrec/<name>`), read and reset.
    async fn take_counter(&self, name: &str) -> serde_json::Value {
        let url = format!("{}/_medrec/{name}", self.stack.endpoint);
        let r = self.client.send("GET", &url, &[], None).await.expect("counter");
        self.client.send("DELETE", &url, &[], None).await.expect("counter reset");
        serde_json::from_slice(&r.body).expect("counter")
    }

    /// Every item of every table of this stack, raw, as debug text.
    pub async fn raw_dump(&self) -> String {
        let items = table_items(&self.stack.clients, &self.stack.template, &self.stack.provisioned).await;
        items.into_iter().map(|(_, text)| text + "\n").collect()
    }

    /// Every object of every bucket of this stack: keys, and raw bytes as lossy text.
    pub async fn raw_s3_dump(&self) -> String {
        let objects = bucket_objects(&self.stack.clients, &self.stack.template, &self.stack.provisioned).await;
        objects.into_iter().map(|(_, text)| text + "\n").collect()
    }

    pub async fn scan(&self, table: &str) -> Vec<Item> {
        try_scan(&self.stack.clients.dynamodb, table).await.expect("scan")
    }

    /// The FHIR AuditEvents stored so far, in no particular order.
    pub async fn audit_events(&self) -> Vec<Value> {
        self.scan(&self.table("AuditTable"))
            .await
            .iter()
            .filter(|i| {
                i.get("pk")
                    .and_then(|p| p.as_s().ok())
                    .is_some_and(|p| medrec_edge::aws::schema::shard_of_chain(p).is_some())
            })
            .filter_map(|i| i.get("body").and_then(|b| b.as_s().ok()))
            .map(|b| serde_json::from_str(b).expect("audit body is JSON"))
            .collect()
    }

    /// AuditEvents whose agent is `sub`.
    pub async fn audit_events_of(&self, sub: &str) -> Vec<Value> {
        self.audit_events().await.into_iter().filter(|e| e["agent"][0]["who"]["identifier"]["value"] == sub).collect()
    }

    pub fn verify_target(&self) -> medrec_infra::audit_verify::Target {
        medrec_infra::audit_verify::Target {
            endpoint: Some(self.stack.endpoint.clone()),
            audit_table: self.table("AuditTable"),
            records_table: self.table("RecordsTable"),
            records_key_id: self.table("RecordsKey"),
            signing_key_id: Some(self.table("AuditSigningKey")),
            archive_bucket: Some(self.table("AuditArchiveBucket")),
            shards: self.stack.function_env["PatientsFunction"]["MEDREC_AUDIT_SHARDS"].parse().unwrap_or(8),
        }
    }
}

/// A patient with unique values in every PHI field, for leak searches.
pub fn canary_patient(tag: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:medrec:test-mrn", "value": format!("MRN{tag}")}],
        "name": [{"use": "official", "family": format!("Family{tag}"), "given": [format!("Given{tag}")]}],
        "telecom": [{"system": "email", "value": format!("mail{tag}@example.org")}],
        "gender": "female",
        "birthDate": "1961-07-13",
        "address": [{"line": [format!("Street{tag}")], "city": format!("City{tag}")}]
    })
}

/// A request with a bearer token as API Gateway hands it to a function
/// (payload 2.0, built as the local gateway builds it), for tests and
/// benches that invoke a function directly. FHIR JSON unless `headers`
/// name another content type.
pub fn gateway_event(
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &str,
    route_key: &str,
    params: std::collections::BTreeMap<String, String>,
) -> Value {
    let mut request =
        http::Request::builder().method(method).uri(path).header("authorization", format!("Bearer {token}"));
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        request = request.header("content-type", "application/fhir+json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let parts = request.body(()).expect("request").into_parts().0;
    let peer = "127.0.0.1:1".parse().expect("address");
    medrec_infra::gateway::api_gateway_v2_event(&parts, body.as_bytes(), route_key, params, peer)
}

/// The PHI strings of `canary_patient(tag)`.
pub fn canary_strings(tag: &str) -> Vec<String> {
    vec![
        format!("MRN{tag}"),
        format!("Family{tag}"),
        format!("Given{tag}"),
        format!("mail{tag}"),
        format!("Street{tag}"),
        format!("City{tag}"),
    ]
}

pub fn unique_tag() -> String {
    medrec_edge::crypto::random_id()[..12].to_owned()
}

/// A vaccination as the registry client takes it: patient `p1`,
/// immunization `imm<n>`.
pub fn sample_vaccination(n: u32) -> medrec_edge::registry::VaccinationRecord {
    medrec_edge::registry::VaccinationRecord {
        patient_id: "p1".into(),
        family: "Doe".into(),
        given: vec!["Jane".into()],
        birth_date: "19800102".into(),
        sex: "F".into(),
        immunization_id: format!("imm{n}"),
        cvx: "208".into(),
        cvx_display: String::new(),
        occurrence: "20261120".into(),
        lot: Some("L1".into()),
        expiration: None,
        dose_ml: Some(0.3),
        primary_source: true,
        completion: "CP",
        deleted: false,
    }
}

/// A FHIR Consent of the patient with the given provision (active,
/// patient-privacy, opt-out policy).
pub fn consent(patient: &str, provision: Value) -> Value {
    serde_json::json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-11-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision
    })
}

/// A PDF-looking document of `len` bytes that carries `canary` in its body.
pub fn pdf(len: usize, canary: &str) -> Vec<u8> {
    let mut b = format!("%PDF-1.7\n% {canary}\n").into_bytes();
    let mut i = 0u32;
    while b.len() < len {
        b.push((i.wrapping_mul(2654435761) >> 24) as u8);
        i += 1;
    }
    b.truncate(len);
    b
}

/// A DocumentReference waiting for its content: where and how to upload it.
pub struct PendingUpload {
    pub id: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// The S3 "object created" notification of an upload, as SQS delivers it.
pub fn upload_notification(key: &str, message_id: &str) -> aws_lambda_events::sqs::SqsEvent {
    let body = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": key}}}]});
    let message = aws_lambda_events::sqs::SqsMessage {
        message_id: Some(message_id.into()),
        body: Some(body.to_string()),
        ..Default::default()
    };
    aws_lambda_events::sqs::SqsEvent { records: vec![message] }
}

impl Harness {
    /// Asks for an upload URL for `bytes` (declared as a PDF) in the
    /// patient's compartment; panics unless the server answers 202.
    pub async fn promise_upload(&self, token: &str, patient: &str, bytes: &[u8]) -> PendingUpload {
        use base64::Engine;
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let attachment = serde_json::json!({"contentType": "application/pdf", "size": bytes.len(),
            "extension": [{"url": medrec_edge::documents::SHA256_EXTENSION,
                "valueBase64Binary": base64::engine::general_purpose::STANDARD.encode(sha256)}]});
        let body = serde_json::json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "subject": {"reference": format!("Patient/{patient}")}, "date": "2026-11-20T10:00:00Z",
            "content": [{"attachment": attachment}]});
        let r = self.call("POST", "/fhir/DocumentReference", Some(token), &[], Some(&body.to_string())).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let p = r.json();
        let params = p["parameter"].as_array().expect("parameters");
        let param = |name: &'static str| params.iter().filter(move |x| x["name"] == name);
        let reference = param("documentReference").next().expect("documentReference")["valueReference"]["reference"]
            .as_str()
            .expect("reference");
        let id = reference.trim_start_matches("DocumentReference/").to_owned();
        assert_eq!(r.header("content-location"), Some(self.url(&format!("/fhir/DocumentReference/{id}")).as_str()));
        assert_eq!(param("uploadMethod").next().expect("uploadMethod")["valueCode"], "PUT");
        let url = param("uploadUrl").next().expect("uploadUrl")["valueUrl"].as_str().expect("url").to_owned();
        let headers = param("uploadHeader")
            .filter_map(|x| x["valueString"].as_str()?.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        PendingUpload { id, url, headers }
    }

    /// PUTs `bytes` to a pending upload's URL, as the client would; the status.
    pub async fn upload(&self, pending: &PendingUpload, bytes: &[u8]) -> u16 {
        let hs: Vec<(&str, &str)> = pending.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.client.send("PUT", &pending.url, &hs, Some(bytes.to_vec())).await.expect("upload").status
    }

    /// Keys of the objects of a bucket of this stack under `prefix`.
    pub async fn object_keys(&self, bucket_id: &str, prefix: &str) -> Vec<String> {
        let listed = self.stack.clients.s3.list_objects_v2().bucket(self.table(bucket_id)).prefix(prefix).send().await;
        listed.expect("list").contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }
}

/// Every fault the proxy plays that a client sees as a failed call.
pub const FAILURES: [(&str, medrec_infra::fault_proxy::Fault); 4] = [
    ("500", medrec_infra::fault_proxy::Fault::ServerError),
    ("503", medrec_infra::fault_proxy::Fault::Unavailable),
    ("throttling", medrec_infra::fault_proxy::Fault::Throttle),
    ("connection reset", medrec_infra::fault_proxy::Fault::ResetBefore),
];

/// HL7's R4 examples (hl7.fhir.r4.examples 4.0.1, fetched pinned by `make
/// setup`) of every record type the generic routes serve, by file name,
/// sorted.
pub fn record_examples() -> Vec<(String, &'static medrec_edge::fhir::resources::ResourceDef, Value)> {
    let dir = medrec_infra::emulator::repo_root().join(".cache/fhir/hl7.fhir.r4.examples/package");
    assert!(dir.exists(), "{} missing: run `make setup`", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut out = vec![];
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let Ok(r) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else { continue };
        let ty = r["resourceType"].as_str().unwrap_or_default();
        let Some(def) = medrec_edge::fhir::resources::served_type(ty) else { continue };
        if !medrec_edge::rest::SERVED_BY_OWN_FUNCTION.contains(&ty) {
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), def, r));
        }
    }
    out
}

/// The API path of an absolute URL the server gave (a next link, a
/// Location), for `Harness::get`.
pub fn api_path(url: &str) -> String {
    url.split_once("/fhir/").map(|(_, p)| format!("/fhir/{p}")).expect("a URL of the FHIR API")
}

/// The path of a Bundle's next page, if it has one.
pub fn next_path(bundle: &Value) -> Option<String> {
    let next = bundle["link"].as_array()?.iter().find(|l| l["relation"] == "next")?;
    next["url"].as_str().map(api_path)
}

/// An example placed in the patient's compartment (a directory type's
/// stays in the directory), without its id and meta.
pub fn placed_in(def: &medrec_edge::fhir::resources::ResourceDef, mut r: Value, patient: &str) -> Value {
    let o = r.as_object_mut().unwrap();
    o.remove("id");
    o.remove("meta");
    let ours = serde_json::json!({"reference": format!("Patient/{patient}")});
    let is_patient = |r: &Value| r["reference"].as_str().is_some_and(|r| r.starts_with("Patient/"));
    // In a backbone list (Appointment.participant.actor): the items naming a
    // patient name ours, or one more item does.
    if let Some((outer, inner)) = def.compartment.as_deref().and_then(|e| e.split_once('.')) {
        let items = o.entry(outer).or_insert_with(|| serde_json::json!([])).as_array_mut().unwrap();
        let mut placed = false;
        for item in items.iter_mut().filter(|i| is_patient(&i[inner])) {
            item[inner] = ours.clone();
            placed = true;
        }
        if !placed {
            items.push(serde_json::json!({inner: ours, "status": "accepted"}));
        }
    } else if let Some(element) = &def.compartment {
        match o.get_mut(element).and_then(Value::as_array_mut) {
            // A list (Provenance.target) keeps what else it names.
            Some(list) => {
                list.retain(|r| !is_patient(r));
                list.push(ours);
            }
            None => _ = o.insert(element.clone(), ours),
        }
    }
    r
}
