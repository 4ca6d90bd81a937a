//! The event backbone against the emulator: outbox (in the transaction of
//! the change) -> DynamoDB stream -> relay -> EventBridge bus -> rule ->
//! consumer queue -> idempotent consumer, with the DLQ and its redrive.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use medrec_e2e::{canary_patient, canary_strings, unique_tag, Harness};
use medrec_edge::aws::processed::ProcessedEvents;
use medrec_edge::aws::relay::Relay;
use medrec_edge::aws::stream::StreamEvent;
use medrec_edge::events::Envelope;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn immunization(patient: &str, day: u32) -> Value {
    json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": format!("2026-11-{day:02}T09:00:00Z"), "primarySource": true})
}

async fn record(h: &Harness, t: &str, patient: &str, day: u32) -> String {
    let r = h.call("POST", "/fhir/Immunization", Some(t), &[], Some(&immunization(patient, day).to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

/// Receives (and takes) messages from a queue until `want` arrived or the
/// deadline passed; then waits a little more for any extra (a duplicate).
async fn drain(h: &Harness, queue: &str, want: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = &h.stack.clients.sqs;
    let url = h.table(queue);
    let mut got = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_until = None;
    loop {
        let out = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
        for m in out.messages() {
            sqs.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
            got.push(m.clone());
        }
        if got.len() >= want && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(1500));
        }
        if quiet_until.is_some_and(|q| Instant::now() > q) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn envelopes(messages: &[aws_sdk_sqs::types::Message]) -> Vec<Envelope> {
    messages.iter().map(|m| Envelope::from_bus_message(m.body().unwrap()).expect("a medrec event")).collect()
}

/// The outbox as its stream first showed it: every event, still pending.
async fn replayed_stream(h: &Harness) -> StreamEvent {
    let items = h.scan(&h.table("OutboxTable")).await;
    let records: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut image = serde_json::Map::new();
            for (k, v) in item {
                if let Ok(s) = v.as_s() {
                    image.insert(k.clone(), json!({"S": s}));
                }
            }
            image.insert("status".into(), json!({"S": "pending"}));
            json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": format!("{i:020}"), "NewImage": image}})
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

async fn relay(h: &Harness, bus: &str) -> Relay {
    let sdk = medrec_edge::aws::sdk_config(Some(&h.stack.endpoint)).await;
    Relay {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        events: aws_sdk_eventbridge::Client::new(&sdk),
        outbox_table: h.table("OutboxTable"),
        bus: bus.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_events_reach_their_queue_once_in_order_without_phi() {
    let h = Harness::start_without(&["RegistrySyncFunction"]).await;
    let t = h.token("clinician", "dr-events");
    let tag = unique_tag();
    let patient = h.create_id(&t, &canary_patient(&tag)).await;
    let first = record(&h, &t, &patient, 18).await;
    let second = record(&h, &t, &patient, 19).await;

    let messages = drain(&h, "RegistrySyncQueue", 2).await;
    let events = envelopes(&messages);
    assert_eq!(events.len(), 2, "each event once: {events:?}");
    assert!(events.iter().all(|e| e.event_type == "ImmunizationRecorded" && e.aggregate == patient));
    let ids: Vec<&str> = events.iter().map(|e| e.data["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()], "in the order they were written");
    assert!(events[0].sequence < events[1].sequence);
    for m in &messages {
        for s in canary_strings(&tag) {
            assert!(!m.body().unwrap().contains(&s), "{s} in an event");
        }
    }
    // Only the events the rule routes: PatientCreated went nowhere here.
    // Every event of the outbox is marked sent.
    let outbox = h.scan(&h.table("OutboxTable")).await;
    assert!(outbox.len() >= 3);
    assert!(outbox.iter().all(|i| i["status"].as_s().unwrap() == "sent"), "all sent");

    // A replayed stream publishes nothing again.
    let response = relay(&h, &h.table("EventBus")).await.relay(replayed_stream(&h).await).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(drain(&h, "RegistrySyncQueue", 0).await.is_empty(), "nothing published twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_loses_nothing_and_the_retry_doubles_nothing() {
    // The deployed relay points at a bus that does not exist: every publish
    // fails between the commit and the bus.
    let h = Harness::start_full(
        vec![("OutboxRelayFunction:MEDREC_EVENT_BUS".into(), "medrec-no-such-bus".into())],
        vec!["RegistrySyncFunction".into()],
    )
    .await;
    let t = h.token("clinician", "dr-events");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let ids =
        [record(&h, &t, &patient, 10).await, record(&h, &t, &patient, 11).await, record(&h, &t, &patient, 12).await];
    assert!(drain(&h, "RegistrySyncQueue", 0).await.is_empty(), "nothing reached the bus");
    let outbox = h.scan(&h.table("OutboxTable")).await;
    assert!(outbox.iter().all(|i| i["status"].as_s().unwrap() == "pending"), "nothing lost: all still pending");
    // The failing relay reports the first record it could not publish.
    let failing = relay(&h, "medrec-no-such-bus").await.relay(replayed_stream(&h).await).await;
    assert_eq!(failing.batch_item_failures.len(), 1);
    assert_eq!(failing.batch_item_failures[0].item_identifier, format!("{:020}", 0));

    // Once the bus is reachable (a healthy relay), everything arrives, once,
    // in order, while the broken one keeps retrying and finds it sent.
    let healthy = relay(&h, &h.table("EventBus")).await.relay(replayed_stream(&h).await).await;
    assert!(healthy.batch_item_failures.is_empty());
    let events = envelopes(&drain(&h, "RegistrySyncQueue", 3).await);
    let got: Vec<&str> = events.iter().map(|e| e.data["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    SqsEvent {
        records: messages
            .iter()
            .map(|m| SqsMessage { message_id: m.message_id.clone(), body: m.body.clone(), ..Default::default() })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_apply_each_event_once_and_poison_goes_to_the_dlq_and_back() {
    let h = Harness::start_without(&["RegistrySyncFunction"]).await;
    let t = h.token("clinician", "dr-events");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    record(&h, &t, &patient, 15).await;
    let messages = drain(&h, "RegistrySyncQueue", 1).await;
    assert_eq!(messages.len(), 1);
    let sdk = medrec_edge::aws::sdk_config(Some(&h.stack.endpoint)).await;
    let consumer = ProcessedEvents {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        table: h.table("ProcessedEventsTable"),
        consumer: "test-consumer".into(),
        lease_seconds: 60,
    };
    let applied = AtomicUsize::new(0);
    let attempts = AtomicUsize::new(0);
    // The first attempt fails (reported, claim released); the redelivery
    // applies it; a duplicate delivery applies nothing.
    let process = |_e: Envelope| {
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        let applied = &applied;
        async move {
            if n == 0 {
                return Err("registry unavailable");
            }
            applied.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    };
    let first = consumer.consume(sqs_event(&messages), process).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    assert!(consumer.consume(sqs_event(&messages), process).await.batch_item_failures.is_empty());
    assert!(consumer.consume(sqs_event(&messages), process).await.batch_item_failures.is_empty());
    assert_eq!(applied.load(Ordering::SeqCst), 1, "applied once");
    let event = Envelope::from_bus_message(messages[0].body().unwrap()).unwrap();
    assert!(consumer.is_done(&event.id).await.unwrap());

    // A poison message: refused at every receive, in the DLQ after five.
    let sqs = &h.stack.clients.sqs;
    let url = h.table("RegistrySyncQueue");
    sqs.send_message().queue_url(&url).message_body("{\"not\": \"an event\"}").send().await.unwrap();
    let mut receives = 0;
    for _ in 0..40 {
        let out = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
        for m in out.messages() {
            receives += 1;
            let r = consumer.consume(sqs_event(std::slice::from_ref(m)), process).await;
            assert_eq!(r.batch_item_failures.len(), 1, "poison is reported");
            // What Lambda does after the visibility timeout, at once.
            sqs.change_message_visibility()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        if out.messages().is_empty() && receives >= 5 {
            break;
        }
    }
    assert_eq!(receives, 5, "maxReceiveCount");
    let template = &h.stack.template;
    let urls = h.stack.provisioned.resources.iter().map(|(k, v)| (k.clone(), v.reference.clone())).collect();
    let dlqs = medrec_infra::events::dead_letter_queues(template.as_ref(), &urls);
    let dlq = dlqs.iter().find(|d| d.logical_id == "RegistrySyncDeadLetterQueue").unwrap();
    assert_eq!(dlq.source, "RegistrySyncQueue");
    assert!(dlqs.iter().any(|d| d.logical_id == "DocumentIngestDeadLetterQueue"));
    let letters = medrec_infra::events::list(sqs, dlq).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event, None, "named as not a medrec event");
    assert_eq!(medrec_infra::events::redrive(sqs, dlq).await.unwrap(), 1);
    assert!(medrec_infra::events::list(sqs, dlq).await.unwrap().is_empty());
    let back = drain(&h, "RegistrySyncQueue", 1).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body().unwrap(), "{\"not\": \"an event\"}");
}
