//! Reliability under injected AWS faults: the functions reach the emulator
//! through `medrec_infra::fault_proxy`, which resets connections, answers
//! 500/503/throttling in each service's wire format, adds latency or plays
//! an outage. Nothing acknowledged is lost, nothing unacknowledged is
//! half-visible, nothing is doubled by a retry, reads fail closed when
//! their audit record cannot be written, and every path recovers when the
//! fault clears.

use medrec_e2e::{unique_tag, Harness, FAILURES};
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

/// Items of the records and outbox tables: a failed write adds none (the
/// security-alert failure counters aside, which count the failure itself).
async fn written(h: &Harness) -> usize {
    let counter = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        i.get("pk").and_then(|p| p.as_s().ok()).is_some_and(|p| p.starts_with("FAILS#"))
    };
    let records = h.scan(&h.table("RecordsTable")).await.into_iter().filter(|i| !counter(i)).count();
    records + h.scan(&h.table("OutboxTable")).await.len()
}

fn commit() -> Matcher {
    on("dynamodb", "TransactWriteItems")
}

#[tokio::test]
async fn a_create_is_whole_or_absent_under_every_fault_and_a_retry_never_doubles_it() {
    let (h, proxy) = Harness::start_behind_faults(&[]).await;
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

/// `PUT` of the patient renamed to `family`, over version `version`.
async fn rename(h: &Harness, token: &str, id: &str, family: &str, version: u64) -> medrec_infra::client::Reply {
    let mut changed = patient(family);
    changed["id"] = json!(id);
    let if_match = format!("W/\"{version}\"");
    h.call("PUT", &format!("/fhir/Patient/{id}"), Some(token), &[("if-match", &if_match)], Some(&changed.to_string()))
        .await
}

#[tokio::test]
async fn an_update_under_a_fault_leaves_the_previous_version_whole() {
    let (h, proxy) = Harness::start_behind_faults(&[]).await;
    let token = h.token("registrar", "reg-1");
    let family = format!("Fault{}", unique_tag());
    let id = h.create_id(&token, &patient(&family)).await;
    for (name, fault) in FAILURES {
        proxy.inject(commit(), fault, None);
        let r = rename(&h, &token, &id, "Renamed", 1).await;
        proxy.clear();
        assert!(matches!(r.status, 429 | 503), "{name}: {}", r.status);
        let now = h.get(&format!("/fhir/Patient/{id}"), &token).await.json();
        assert_eq!(now["meta"]["versionId"], "1", "{name}: still version 1");
        assert_eq!(now["name"][0]["family"], family.as_str(), "{name}: the old content, whole");
    }
    let r = rename(&h, &token, &id, "Renamed", 1).await;
    assert_eq!(r.status, 200, "recovers");
    assert_eq!(r.json()["meta"]["versionId"], "2");

    // The answer to an applied update is lost and the retry's condition
    // fails: recognised as applied, acknowledged once, one version added.
    proxy.inject(commit(), Fault::ResetAfter, Some(1));
    let r = rename(&h, &token, &id, "Again", 2).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let history = h.get(&format!("/fhir/Patient/{id}/_history"), &token).await.json();
    assert_eq!(history["total"], 3, "versions 1, 2 and 3, none twice");
}

#[tokio::test]
async fn a_read_fails_closed_when_its_audit_record_cannot_be_written() {
    let (h, proxy) = Harness::start_behind_faults(&[]).await;
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
    let (h, proxy) = Harness::start_behind_faults(&[]).await;
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
    let (h, proxy) = Harness::start_behind_faults(&[]).await;
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

/// Messages on a queue until `want` arrived and a quiet second followed, or
/// a deadline passed; each is taken off the queue.
async fn drain(h: &Harness, queue: &str, want: usize, wait: Duration) -> Vec<String> {
    let sqs = &h.stack.clients.sqs;
    let url = h.table(queue);
    let (mut got, deadline) = (vec![], Instant::now() + wait);
    let mut quiet_until = None;
    loop {
        let out = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
        for m in out.messages() {
            sqs.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
            got.push(m.body().unwrap_or_default().to_owned());
        }
        if got.len() >= want && want > 0 && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
        if quiet_until.is_some_and(|q| Instant::now() > q) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_loses_no_event_under_faults_and_consumers_see_one_id() {
    let (h, proxy) = Harness::start_behind_faults(&["RegistrySyncFunction"]).await;
    let token = h.token("clinician", "dr-1");
    let patient = h.create_id(&h.token("registrar", "reg-1"), &patient(&format!("Fault{}", unique_tag()))).await;
    let dose = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": "2026-11-20T09:00:00Z", "primarySource": true});
    for (name, fault) in FAILURES {
        // The write commits (its event in the outbox, in the same
        // transaction); only the publish fails, for as long as the fault lasts.
        let hits = proxy.inject(on("events", "PutEvents"), fault, None);
        let r = h.call("POST", "/fhir/Immunization", Some(&token), &[], Some(&dose.to_string())).await;
        assert_eq!(r.status, 201, "{name}");
        let id = r.json()["id"].as_str().unwrap().to_owned();
        assert!(
            drain(&h, "RegistrySyncQueue", 0, Duration::from_secs(3)).await.is_empty(),
            "{name}: nothing published"
        );
        assert!(hits.load(std::sync::atomic::Ordering::Relaxed) >= 1, "{name}: the relay tried");
        proxy.clear();
        let got = drain(&h, "RegistrySyncQueue", 1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1, "{name}: published once when the fault cleared");
        assert!(got[0].contains(&id), "{name}");
    }
    // The bus accepts the batch but the relay never hears so: it publishes
    // again (EventBridge has no idempotency key). Every copy carries the
    // same event id, which the consumers' ProcessedEvents claim applies once.
    proxy.inject(on("events", "PutEvents"), Fault::ResetAfter, Some(1));
    let r = h.call("POST", "/fhir/Immunization", Some(&token), &[], Some(&dose.to_string())).await;
    assert_eq!(r.status, 201);
    let got = drain(&h, "RegistrySyncQueue", 1, Duration::from_secs(20)).await;
    let ids: std::collections::BTreeSet<String> =
        got.iter().map(|m| medrec_edge::events::Envelope::from_bus_message(m).expect("an envelope").id).collect();
    assert!(!got.is_empty() && ids.len() == 1, "{} deliveries, {} event ids", got.len(), ids.len());
}

#[tokio::test]
async fn a_read_whose_audit_answer_was_lost_is_audited_once() {
    let (h, proxy) = Harness::start_behind_faults(&[]).await;
    let id = h.create_id(&h.token("registrar", "reg-1"), &patient(&format!("Fault{}", unique_tag()))).await;
    let token = h.token("clinician", "dr-lost-answer");
    // The audit record and its chain head are stored, the answer is lost;
    // the SDK's retry finds its own conditions already met.
    let audit_table = h.table("AuditTable");
    let lost = proxy.inject(commit().containing(&audit_table), Fault::ResetAfter, Some(1));
    let r = h.get(&format!("/fhir/Patient/{id}"), &token).await;
    proxy.clear();
    assert_eq!(lost.load(std::sync::atomic::Ordering::Relaxed), 1, "the answer was lost");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let reads: Vec<Value> =
        h.audit_events_of("dr-lost-answer").await.into_iter().filter(|e| e["subtype"][0]["code"] == "read").collect();
    assert_eq!(reads.len(), 1, "one audit record of the read: {reads:#?}");
    let report = medrec_infra::audit_verify::verify(&h.verify_target(), false).await.unwrap();
    assert!(report.breaks.is_empty(), "the chains verify: {:?}", report.breaks);
}
