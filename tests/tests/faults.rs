//! Reliability under injected AWS faults: the functions reach the emulator
//! through `medrec_infra::fault_proxy`, which resets connections, answers
//! 500/503/throttling in each service's wire format, adds latency or plays
//! an outage. Nothing acknowledged is lost, nothing unacknowledged is
//! half-visible, nothing is doubled by a retry, reads fail closed when
//! their audit record cannot be written, and every path recovers when the
//! fault clears.

use medrec_e2e::{unique_tag, Harness};
use medrec_infra::fault_proxy::{on, Fault, Matcher};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Fault"]}], "gender": "female", "birthDate": "1970-03-04"})
}

async fn matches(h: &Harness, token: &str, family: &str) -> Vec<Value> {
    let r = h.get(&format!("/fhir/Patient?family={family}"), token).await;
    assert_eq!(r.status, 200, "search after the fault");
    r.json()["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

/// Items of the records and outbox tables: a failed write adds none.
async fn written(h: &Harness) -> usize {
    h.scan(&h.table("RecordsTable")).await.len() + h.scan(&h.table("OutboxTable")).await.len()
}

/// Every fault the proxy plays that a client sees as a failed call.
const FAILURES: [(&str, Fault); 4] = [
    ("500", Fault::ServerError),
    ("503", Fault::Unavailable),
    ("throttling", Fault::Throttle),
    ("connection reset", Fault::ResetBefore),
];

fn commit() -> Matcher {
    on("dynamodb", "TransactWriteItems")
}

#[tokio::test]
async fn a_create_is_whole_or_absent_under_every_fault_and_a_retry_never_doubles_it() {
    let (h, proxy) = Harness::start_behind_faults().await;
    let token = h.token("registrar", "reg-1");
    for (name, fault) in FAILURES {
        let family = format!("Fault{}", unique_tag());
        let before = written(&h).await;
        let hits = proxy.inject(commit(), fault, None);
        let r = h.create(&token, &patient(&family)).await;
        proxy.clear();
        assert!(hits.load(std::sync::atomic::Ordering::Relaxed) >= 1, "{name}: the commit was reached");
        assert!(matches!(r.status, 429 | 503), "{name}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{name}");
        assert!(r.header("retry-after").is_some(), "{name}: the client is told to retry");
        assert_eq!(written(&h).await, before, "{name}: nothing half-written");
        assert!(matches(&h, &token, &family).await.is_empty(), "{name}: nothing visible");
        // Recovery: the same request succeeds once the fault clears.
        let r = h.create(&token, &patient(&family)).await;
        assert_eq!(r.status, 201, "{name}: recovers");
        assert_eq!(matches(&h, &token, &family).await.len(), 1, "{name}");
    }

    // A fault the SDK's retries absorb: two failed attempts, then success.
    let family = format!("Fault{}", unique_tag());
    proxy.inject(commit(), Fault::ServerError, Some(2));
    assert_eq!(h.create(&token, &patient(&family)).await.status, 201);
    assert_eq!(matches(&h, &token, &family).await.len(), 1, "retried once to success, stored once");

    // The emulator applies the commit but the answer is lost: the SDK
    // retries the same transaction, whose conditions now fail. The commit
    // is recognised as applied: the client gets its 201, and the patient
    // exists once, whole, with one audit record of its creation.
    let family = format!("Fault{}", unique_tag());
    proxy.inject(commit(), Fault::ResetAfter, Some(1));
    let r = h.create(&token, &patient(&family)).await;
    let found = matches(&h, &token, &family).await;
    assert_eq!(found.len(), 1, "applied once, never doubled (answered {})", r.status);
    let id = found[0]["id"].as_str().unwrap();
    let created: Vec<Value> = h
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["subtype"][0]["code"] == "create" && e["entity"].to_string().contains(id))
        .collect();
    assert_eq!(r.status, 201, "the applied commit is acknowledged: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(created.len(), 1, "one audit record of the creation");
    assert_eq!(created[0]["outcome"], "0");
}

#[tokio::test]
async fn an_update_under_a_fault_leaves_the_previous_version_whole() {
    let (h, proxy) = Harness::start_behind_faults().await;
    let token = h.token("registrar", "reg-1");
    let family = format!("Fault{}", unique_tag());
    let id = h.create_id(&token, &patient(&family)).await;
    for (name, fault) in FAILURES {
        let mut changed = patient("Renamed");
        changed["id"] = json!(id);
        proxy.inject(commit(), fault, None);
        let r = h
            .call(
                "PUT",
                &format!("/fhir/Patient/{id}"),
                Some(&token),
                &[("if-match", "W/\"1\"")],
                Some(&changed.to_string()),
            )
            .await;
        proxy.clear();
        assert!(matches!(r.status, 429 | 503), "{name}: {}", r.status);
        let now = h.get(&format!("/fhir/Patient/{id}"), &token).await.json();
        assert_eq!(now["meta"]["versionId"], "1", "{name}: still version 1");
        assert_eq!(now["name"][0]["family"], family.as_str(), "{name}: the old content, whole");
    }
    let mut changed = patient("Renamed");
    changed["id"] = json!(id);
    let r = h
        .call(
            "PUT",
            &format!("/fhir/Patient/{id}"),
            Some(&token),
            &[("if-match", "W/\"1\"")],
            Some(&changed.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "recovers");
    assert_eq!(r.json()["meta"]["versionId"], "2");

    // The answer to an applied update is lost and the retry's condition
    // fails: recognised as applied, acknowledged once, one version added.
    changed["name"][0]["family"] = json!("Again");
    proxy.inject(commit(), Fault::ResetAfter, Some(1));
    let r = h
        .call(
            "PUT",
            &format!("/fhir/Patient/{id}"),
            Some(&token),
            &[("if-match", "W/\"2\"")],
            Some(&changed.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let history = h.get(&format!("/fhir/Patient/{id}/_history"), &token).await.json();
    assert_eq!(history["total"], 3, "versions 1, 2 and 3, none twice");
}

#[tokio::test]
async fn a_read_fails_closed_when_its_audit_record_cannot_be_written() {
    let (h, proxy) = Harness::start_behind_faults().await;
    let token = h.token("clinician", "dr-1");
    let family = format!("Canary{}", unique_tag());
    let id = h.create_id(&h.token("registrar", "reg-1"), &patient(&family)).await;
    let audit_table = h.table("AuditTable");
    for (name, fault) in FAILURES {
        proxy.inject(
            Matcher { service: Some("dynamodb".into()), ..Default::default() }.containing(&audit_table),
            fault,
            None,
        );
        let r = h.get(&format!("/fhir/Patient/{id}"), &token).await;
        let search = h.get(&format!("/fhir/Patient?family={family}"), &token).await;
        proxy.clear();
        for (what, r) in [("read", &r), ("search", &search)] {
            assert!(matches!(r.status, 429 | 503), "{name} {what}: {}", r.status);
            let body = String::from_utf8_lossy(&r.body);
            assert!(!body.contains(&family) && !body.contains(&id), "{name} {what}: no PHI without its audit record");
        }
    }
    let r = h.get(&format!("/fhir/Patient/{id}"), &token).await;
    assert_eq!(r.status, 200, "recovers");
    assert_eq!(r.json()["name"][0]["family"], family.as_str());
}

#[tokio::test]
async fn an_outage_fails_every_request_cleanly_and_the_stack_recovers() {
    let (h, proxy) = Harness::start_behind_faults().await;
    let token = h.token("registrar", "reg-1");
    let id = h.create_id(&token, &patient(&format!("Fault{}", unique_tag()))).await;
    proxy.inject(Matcher::default(), Fault::Outage, None);
    let started = Instant::now();
    let health = h.call("GET", "/health", None, &[], None).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["checks"]["dynamodb"], "fail");
    for r in [
        h.create(&token, &patient("Down")).await,
        h.get(&format!("/fhir/Patient/{id}"), &token).await,
        h.get("/fhir/Patient?family=Down", &token).await,
    ] {
        assert!(matches!(r.status, 429 | 503), "{} {}", r.status, String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
    println!("outage: four requests answered in {:?}", started.elapsed());
    proxy.clear();
    assert_eq!(h.call("GET", "/health", None, &[], None).await.status, 200, "recovers");
    assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &token).await.status, 200);
    assert!(matches(&h, &token, "Down").await.is_empty(), "nothing written during the outage");
}

#[tokio::test]
async fn latency_slows_a_request_without_failing_it() {
    let (h, proxy) = Harness::start_behind_faults().await;
    let token = h.token("registrar", "reg-1");
    let id = h.create_id(&token, &patient(&format!("Fault{}", unique_tag()))).await;
    let delay = Duration::from_millis(300);
    let hits = proxy.inject(on("dynamodb", "GetItem"), Fault::Latency(delay), None);
    let started = Instant::now();
    let r = h.get(&format!("/fhir/Patient/{id}"), &token).await;
    let took = started.elapsed();
    proxy.clear();
    assert_eq!(r.status, 200);
    let slowed = hits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(slowed >= 1 && took >= delay * slowed as u32, "{slowed} delayed calls, {took:?}");
}
