//! The sample events in events/ are real API Gateway v2 events: each one,
//! given a live token (and a real id), becomes a request as the functions
//! make it in Lambda (`medrec_edge::lambda::request_from_event`) and is
//! served by a freshly built handler of its function, as `cargo lambda
//! invoke` would.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use medrec_infra::emulator::repo_root;

/// A sample API Gateway event from events/, with a live token and a real
/// patient id in place of the placeholders, as the function reads it.
fn sample(file: &str, token: &str, id: &str) -> lambda_http::Request {
    let text = std::fs::read_to_string(repo_root().join("events").join(file)).unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
    event["headers"]["authorization"] = format!("Bearer {token}").into();
    let event = event.to_string().replace("0123456789abcdef0123456789abcdef", id);
    let event = serde_json::from_str(&event).unwrap_or_else(|e| panic!("{file}: {e}"));
    medrec_edge::lambda::request_from_event(event).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_events_are_served_by_the_handler() {
    let h = Harness::start().await;
    let token = h.token("clinician", "dr-events");
    let id = h.create_id(&token, &canary_patient(&unique_tag())).await;
    let app = medrec_patients::boot(&h.settings("PatientsFunction", &[])).await.unwrap();
    let expected = [
        ("patients-metadata.json", 200),
        ("patients-create.json", 201),
        ("patients-read.json", 200),
        ("patients-search.json", 200),
        ("patients-update.json", 200),
    ];
    for (file, status) in expected {
        let response = medrec_edge::lambda::handle(&app, sample(file, &token, &id)).await;
        assert_eq!(response.status().as_u16(), status, "{file}: {:?}", response.body());
    }

    let clinical = medrec_clinical::boot(&h.settings("ClinicalFunction", &[])).await.unwrap();
    let response = medrec_edge::lambda::handle(&clinical, sample("clinical-create.json", &token, &id)).await;
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.body());

    let validation = medrec_validation::boot(&h.settings("ValidationFunction", &[])).await.unwrap();
    let response = medrec_edge::lambda::handle(&validation, sample("validation-validate.json", &token, &id)).await;
    assert_eq!(response.status().as_u16(), 200);
    let outcome: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");

    let documents = medrec_documents::boot(&h.settings("DocumentsFunction", &[])).await.unwrap();
    let response = medrec_edge::lambda::handle(&documents, sample("documents-create.json", &token, &id)).await;
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.body());

    // The ingest's SQS event deserialises as Lambda's and is handled; its
    // key names no promised upload, so the object is discarded, not retried.
    let ingest =
        std::sync::Arc::new(medrec_document_ingest::boot(&h.settings("DocumentIngestFunction", &[])).await.unwrap());
    let text = std::fs::read_to_string(repo_root().join("events/document-ingest-sqs.json")).unwrap();
    let event: aws_lambda_events::sqs::SqsEvent = serde_json::from_str(&text).unwrap();
    let invocation = lambda_http::LambdaEvent::new(event, lambda_http::Context::default());
    let response = ingest.handle(invocation).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_outbox_stream_and_registry_events_are_what_the_functions_take() {
    let h = Harness::start_without(&["RegistrySyncFunction"]).await;
    let text = std::fs::read_to_string(repo_root().join("events/outbox-relay-stream.json")).unwrap();
    let event: medrec_edge::aws::stream::StreamEvent = serde_json::from_str(&text).unwrap();
    let relay = std::sync::Arc::new(medrec_outbox_relay::boot(&h.settings("OutboxRelayFunction", &[])).await.unwrap());
    let response = relay.handle(lambda_http::LambdaEvent::new(event, lambda_http::Context::default())).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "published");

    let text = std::fs::read_to_string(repo_root().join("events/registry-sync-sqs.json")).unwrap();
    let event: aws_lambda_events::sqs::SqsEvent = serde_json::from_str(&text).unwrap();
    let body = event.records[0].body.clone().unwrap();
    let envelope = medrec_edge::events::Envelope::from_bus_message(&body).unwrap();
    assert_eq!(envelope.event_type, "ImmunizationRecorded");
    // The relay's own publication of the same event reaches the queue in
    // the same shape as the sample.
    let sqs = &h.stack.clients.sqs;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let published = loop {
        let out = sqs.receive_message().queue_url(h.table("RegistrySyncQueue")).send().await.unwrap();
        if let Some(m) = out.messages().first() {
            break m.body().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let published = medrec_edge::events::Envelope::from_bus_message(&published).unwrap();
    assert_eq!(published, envelope);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_audit_stream_event_is_what_the_mirror_takes() {
    let h = Harness::start_without(&["AuditMirrorFunction"]).await;
    let text = std::fs::read_to_string(repo_root().join("events/audit-mirror-stream.json")).unwrap();
    let event: medrec_edge::aws::stream::StreamEvent = serde_json::from_str(&text).unwrap();
    let mirror = std::sync::Arc::new(medrec_audit_mirror::boot(&h.settings("AuditMirrorFunction", &[])).await.unwrap());
    let response = mirror.handle(lambda_http::LambdaEvent::new(event, lambda_http::Context::default())).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let archive =
        medrec_edge::aws::mirror::AuditMirror { s3: h.stack.clients.s3.clone(), bucket: h.table("AuditArchiveBucket") };
    let entries = archive.entries().await.unwrap();
    assert_eq!(
        entries,
        vec![medrec_edge::audit::mirror::MirrorEntry::Committed {
            shard: 3,
            seq: 17,
            hash: "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea".into(),
            id: "5f0c2b7e9d4a4c1e8b3f6a2d7c9e1b40".into(),
        }],
        "the chain record, not its shard's head"
    );
}
