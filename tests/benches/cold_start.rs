//! Cold start of each API function, as Lambda runs one: a fresh process
//! reads its environment, boots (SDK configuration, the service secret from
//! DynamoDB and KMS, TLS roots, then what the function adds: the FHIR model
//! and the CapabilityStatement) and answers its first request (which fetches
//! the JWKS and unwraps the patient's key). The process talks to the local
//! stack over loopback, so the AWS calls cost what the emulator takes, not
//! what AWS takes. Run with `cargo bench -p medrec-e2e --bench cold_start`.

use medrec_e2e::{canary_patient, Harness};
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
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "function", "settings", "sdk", "secret", "tls", "function", "boot", "1st answer"
    );
    for (function, method, path, role) in FUNCTIONS {
        let token = h.token(role, "cold-start");
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .envs(&h.stack.function_env[function])
            .env("MEDREC_COLD_START_FUNCTION", function)
            .env("MEDREC_COLD_START_REQUEST", format!("{method} {}", path.replace("{patient}", &patient)))
            .env("MEDREC_COLD_START_TOKEN", token)
            .env("MEDREC_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (mut boot, mut answered, mut phases) = (Value::Null, None, Value::Null);
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line: Value = serde_json::from_str(&line.unwrap()).unwrap_or(Value::Null);
            match line["fields"]["message"].as_str().or(line["phase"].as_str()) {
                Some("cold start") => boot = line["fields"].clone(),
                Some("answered") => {
                    answered = Some(started.elapsed().as_secs_f64() * 1e3);
                    phases = line;
                }
                _ => {}
            }
        }
        assert!(child.wait().unwrap().success(), "{function}");
        let ms = |v: &Value| v.as_f64().map_or("-".into(), |ms| format!("{ms:.1}"));
        println!(
            "{function:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>9}",
            ms(&phases["settings_ms"]),
            ms(&boot["sdk_ms"]),
            ms(&boot["secret_ms"]),
            ms(&boot["tls_ms"]),
            ms(&(phases["boot_ms"].as_f64().zip(boot["total_ms"].as_f64()).map(|(b, r)| b - r)).into()),
            ms(&phases["boot_ms"]),
            answered.map_or("-".into(), |a| format!("{a:.1}")),
        );
        assert_eq!(phases["status"].as_u64().map(|s| s < 300), Some(true), "{function}: {phases}");
    }
    println!(
        "ms; `function`: boot beyond the shared runtime (the FHIR model, the CapabilityStatement); \
         `1st answer`: process spawn to the first response, the JWKS fetch included"
    );
}

/// One cold instance: the function booted as its `main.rs` does, one request.
async fn child(function: &str) {
    let started = Instant::now();
    let settings = medrec_edge::lambda::settings_from_env().unwrap();
    let settings_ms = started.elapsed().as_secs_f64() * 1e3;
    let request = std::env::var("MEDREC_COLD_START_REQUEST").unwrap();
    let (method, path) = request.split_once(' ').unwrap();
    let token = std::env::var("MEDREC_COLD_START_TOKEN").unwrap();
    let body = if method == "POST" { canary_patient("cold-validate").to_string() } else { String::new() };
    let parts = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/fhir+json")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let event = medrec_infra::gateway::api_gateway_v2_event(
        &parts,
        body.as_bytes(),
        "$default",
        Default::default(),
        "127.0.0.1:1".parse().unwrap(),
    );
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    macro_rules! serve {
        ($app:expr) => {{
            let boot_started = Instant::now();
            let app = $app.unwrap();
            let boot_ms = boot_started.elapsed().as_secs_f64() * 1e3;
            (boot_ms, medrec_edge::lambda::handle(&app, req).await.status().as_u16())
        }};
    }
    let (boot_ms, status) = match function {
        "PatientsFunction" => serve!(medrec_patients::boot(&settings).await),
        "ClinicalFunction" => serve!(medrec_clinical::boot(&settings).await),
        "ConsentFunction" => serve!(medrec_consent::boot(&settings).await),
        "ValidationFunction" => serve!(medrec_validation::boot(&settings).await),
        "AuditFunction" => serve!(medrec_audit::boot(&settings).await),
        "DocumentsFunction" => serve!(medrec_documents::boot(&settings).await),
        other => panic!("{other} is not an API function"),
    };
    let answered =
        serde_json::json!({"phase": "answered", "settings_ms": settings_ms, "boot_ms": boot_ms, "status": status});
    println!("{answered}");
}
