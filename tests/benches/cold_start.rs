//! Cold start of each API function, as Lambda runs one: a fresh process
//! reads its environment, boots (SDK configuration, the service secret from
//! DynamoDB and KMS, TLS roots, then what the function adds: the FHIR model
//! and the CapabilityStatement) and answers its first request (which fetches
//! the JWKS and unwraps the patient's key). The process talks to the local
//! stack over loopback, so the AWS calls cost what the emulator takes, not
//! what AWS takes. The event comes through a Lambda Runtime API on loopback
//! (`medrec_infra::runtime_api`) and `lambda_runtime`'s own loop, as Lambda
//! delivers it. Run with `cargo bench -p medrec-e2e --bench cold_start`.

use medrec_e2e::{canary_patient, gateway_event, Harness};
use medrec_infra::runtime_api::{Outcome, RuntimeApi};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The API functions and a read each serves (method, path, role).
const FUNCTIONS: [(&str, &str, &str, &str); 6] = [
    ("PatientsFunction", "GET", "/fhir/Patient/{patient}", "clinician"),
    ("ClinicalFunction", "GET", "/fhir/Observation?patient={patient}", "clinician"),
    ("ConsentFunction", "GET", "/fhir/Consent?patient={patient}", "clinician"),
    ("ValidationFunction", "POST", "/fhir/Patient/$validate", "clinician"),
    ("AuditFunction", "GET", "/fhir/AuditEvent?patient={patient}", "auditor"),
    ("DocumentsFunction", "GET", "/fhir/DocumentReference?patient={patient}", "clinician"),
];

#[tokio::main]
async fn main() {
    if let Ok(function) = std::env::var("MEDREC_COLD_START_FUNCTION") {
        return child(&function).await;
    }
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-cold");
    let patient = h.create_id(&t, &canary_patient("cold")).await;
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "function", "settings", "sdk", "secret", "rng", "services", "tls", "function", "boot", "1st answer"
    );
    for (function, method, path, role) in FUNCTIONS {
        let token = h.token(role, "cold-start");
        let mut api = RuntimeApi::start(event(method, &path.replace("{patient}", &patient), &token)).await.unwrap();
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .envs(&h.stack.function_env[function])
            .env("MEDREC_COLD_START_FUNCTION", function)
            .env("MEDREC_LOG", "info")
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The function never exits (it waits for its next event): its log
        // lines are read beside it until it is stopped.
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            let (mut boot, mut booted) = (Value::Null, Value::Null);
            for line in BufReader::new(stdout).lines() {
                let line: Value = serde_json::from_str(&line.unwrap()).unwrap_or(Value::Null);
                match line["fields"]["message"].as_str().or(line["phase"].as_str()) {
                    Some("cold start") => boot = line["fields"].clone(),
                    Some("booted") => booted = line,
                    _ => {}
                }
            }
            (boot, booted)
        });
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), api.outcome()).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let (boot, phases) = lines.join().unwrap();
        let (answered, status) = match outcome {
            Ok(Some(Outcome::Response { body, at })) => {
                let response: Value = serde_json::from_slice(&body).unwrap();
                ((at - started).as_secs_f64() * 1e3, response["statusCode"].as_u64().unwrap_or(0))
            }
            other => panic!("{function}: no answer through the Runtime API: {other:?}"),
        };
        let ms = |v: &Value| v.as_f64().map_or("-".into(), |ms| format!("{ms:.1}"));
        println!(
            "{function:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12.1}",
            ms(&phases["settings_ms"]),
            ms(&boot["sdk_ms"]),
            ms(&boot["secret_ms"]),
            ms(&boot["rng_ms"]),
            ms(&boot["services_ms"]),
            ms(&boot["tls_ms"]),
            ms(&(phases["boot_ms"].as_f64().zip(boot["total_ms"].as_f64()).map(|(b, r)| b - r)).into()),
            ms(&phases["boot_ms"]),
            answered,
        );
        assert!(status < 300, "{function}: {status}");
    }
    println!(
        "ms; `function`: boot beyond the shared runtime (the FHIR model, the CapabilityStatement); \
         `1st answer`: process spawn to the first response posted to the Runtime API, the JWKS fetch included"
    );
}

/// The API Gateway event of one request, as the Runtime API hands it over.
fn event(method: &str, path: &str, token: &str) -> String {
    let body = if method == "POST" { canary_patient("cold-validate").to_string() } else { String::new() };
    gateway_event(method, path, token, &[], &body, "$default", Default::default()).to_string()
}

/// One cold instance: the function booted and run as its `main.rs` does,
/// `lambda_runtime`'s loop taking its first event from the Runtime API.
async fn child(function: &str) {
    let started = Instant::now();
    let settings = medrec_edge::lambda::settings_from_env().unwrap();
    let settings_ms = started.elapsed().as_secs_f64() * 1e3;
    macro_rules! run {
        ($app:expr) => {{
            let boot_started = Instant::now();
            let app = std::sync::Arc::new($app.unwrap());
            let boot_ms = boot_started.elapsed().as_secs_f64() * 1e3;
            println!("{}", serde_json::json!({"phase": "booted", "settings_ms": settings_ms, "boot_ms": boot_ms}));
            medrec_edge::lambda::run(move |req| medrec_edge::lambda::handle_guarded(app.clone(), req)).await.unwrap()
        }};
    }
    match function {
        "PatientsFunction" => run!(medrec_patients::boot(&settings).await),
        "ClinicalFunction" => run!(medrec_clinical::boot(&settings).await),
        "ConsentFunction" => run!(medrec_consent::boot(&settings).await),
        "ValidationFunction" => run!(medrec_validation::boot(&settings).await),
        "AuditFunction" => run!(medrec_audit::boot(&settings).await),
        "DocumentsFunction" => run!(medrec_documents::boot(&settings).await),
        other => panic!("{other} is not an API function"),
    }
}
