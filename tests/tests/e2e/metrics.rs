//! Every function's metrics as the local stack collects them (CloudWatch
//! in AWS, from the same EMF lines): requests, errors and latency by route,
//! AWS calls by service, and what each request or background run counted.
//! Dimensions name functions, route templates and services, never a value
//! a request carried.

use medrec_e2e::{canary_patient, consent, unique_tag, Harness};
use serde_json::json;

/// The value of one Prometheus series (0 when absent).
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_background_runs_show_in_the_metrics() {
    let h = Harness::start().await;
    let page = || async {
        String::from_utf8_lossy(&h.client.send("GET", &h.url("/metrics"), &[], None).await.unwrap().body).into_owned()
    };
    let registrar = h.token("registrar", "desk-m");
    let dr = h.token("clinician", "dr-m");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let read = format!("/fhir/Patient/{patient}");
    assert_eq!(h.get(&read, &dr).await.status, 200);
    assert_eq!(h.get(&read, &dr).await.status, 200);
    let refusal = consent(&patient, json!({"type": "deny"}));
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&refusal.to_string())).await.status, 201);
    assert_eq!(h.get(&read, &dr).await.status, 403, "the consent refuses dr-m");
    let glass = [
        ("x-purpose-of-use", "ETREAT"),
        ("x-break-glass-reason-code", "patient-unconscious"),
        ("x-break-glass-reason", "unconscious on arrival, needs history"),
    ];
    assert_eq!(h.call("GET", &read, Some(&dr), &glass, None).await.status, 200);
    let invalid = json!({"resourceType": "Patient", "gender": "sometimes"}).to_string();
    assert_eq!(h.call("POST", "/fhir/Patient", Some(&registrar), &[], Some(&invalid)).await.status, 422);

    // The relay publishes the creates' events in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut text = page().await;
    while value(&text, "medrec_events_relayed_total{function=\"OutboxRelayFunction\"}") < 2.0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        text = page().await;
    }
    let patients = "function=\"PatientsFunction\"";
    let reads = format!("{patients},route=\"GET /fhir/Patient/{{id}}\"");
    assert_eq!(value(&text, &format!("medrec_requests_total{{{reads}}}")), 4.0, "{text}");
    assert_eq!(value(&text, &format!("medrec_server_errors_total{{{reads}}}")), 0.0);
    assert_eq!(value(&text, &format!("medrec_latency_ms_count{{{reads}}}")), 4.0);
    assert!(value(&text, &format!("medrec_latency_ms_sum{{{reads}}}")) > 0.0);
    let creates = format!("{patients},route=\"POST /fhir/Patient\"");
    assert_eq!(value(&text, &format!("medrec_requests_total{{{creates}}}")), 2.0);
    assert_eq!(value(&text, &format!("medrec_validation_failures_total{{{patients}}}")), 1.0);
    assert_eq!(value(&text, &format!("medrec_consent_denials_total{{{patients}}}")), 1.0);
    assert_eq!(value(&text, &format!("medrec_break_glass_uses_total{{{patients}}}")), 1.0);
    // A create, four reads (the refused one audited as a denial too) and
    // the invalid create's failure record.
    assert!(value(&text, &format!("medrec_audit_writes_total{{{patients}}}")) >= 6.0, "{text}");
    assert_eq!(value(&text, &format!("medrec_audit_write_failures_total{{{patients}}}")), 0.0);
    assert!(value(&text, &format!("medrec_key_cache_hits_total{{{patients}}}")) >= 1.0, "{text}");
    assert!(value(&text, "medrec_events_relayed_total{function=\"OutboxRelayFunction\"}") >= 2.0, "{text}");
    assert_eq!(value(&text, "medrec_invocation_failures_total{function=\"OutboxRelayFunction\"}"), 0.0);
    for service in ["dynamodb", "kms", "s3", "events"] {
        assert!(
            value(&text, &format!("medrec_aws_calls_total{{aws_service=\"{service}\"}}")) >= 1.0,
            "{service}: {text}"
        );
    }
    assert_eq!(
        value(&text, "medrec_aws_calls_total{aws_service=\"other\"}"),
        0.0,
        "every service medrec calls is named"
    );
    assert!(!text.contains(&patient), "no id in any dimension");
    let dashboard = h.client.send("GET", &h.url("/dashboard"), &[], None).await.unwrap();
    assert_eq!(dashboard.status, 200);
    let dashboard = String::from_utf8_lossy(&dashboard.body);
    assert!(
        dashboard.contains("<svg") && dashboard.contains("PatientsFunction · GET /fhir/Patient/{id}"),
        "{dashboard}"
    );
}
