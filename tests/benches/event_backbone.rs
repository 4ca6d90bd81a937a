//! Events per second through the backbone on the local stack: outbox items
//! (as the services write them) -> stream -> relay -> EventBridge -> rule ->
//! queue -> an idempotent consumer (claims in DynamoDB), and the AWS calls
//! per event. Run with `cargo bench -p medrec-e2e --bench event_backbone`.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{AttributeValue as AV, PutRequest, WriteRequest};
use medrec_e2e::Harness;
use medrec_edge::aws::processed::ProcessedEvents;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const EVENTS: usize = 500;

#[tokio::main]
async fn main() {
    let h = Harness::start_without(&["RegistrySyncFunction"]).await;
    let ddb = &h.stack.clients.dynamodb;
    let sqs = &h.stack.clients.sqs;
    let outbox = h.table("OutboxTable");
    let queue = h.table("RegistrySyncQueue");
    let sdk = medrec_edge::aws::sdk_config(Some(&h.stack.endpoint)).await;
    let consumer = ProcessedEvents {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        table: h.table("ProcessedEventsTable"),
        consumer: "bench".into(),
        lease_seconds: 60,
    };
    h.aws_calls().await;
    let started = Instant::now();
    let items: Vec<WriteRequest> = (0..EVENTS)
        .map(|i| {
            let item = HashMap::from([
                ("pk".to_owned(), AV::S(format!("patient{}", i % 50))),
                ("sk".to_owned(), AV::S(format!("2026-11-23T10:00:00.000Z#{i:06}"))),
                ("id".to_owned(), AV::S(format!("event{i:06}"))),
                ("type".to_owned(), AV::S("ImmunizationRecorded".into())),
                (
                    "detail".to_owned(),
                    AV::S(format!("{{\"resourceType\":\"Immunization\",\"id\":\"i{i}\",\"versionId\":\"1\"}}")),
                ),
                ("status".to_owned(), AV::S("pending".into())),
            ]);
            WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().unwrap()).build()
        })
        .collect();
    medrec_edge::aws::dynamo::batch_write_all(ddb, &outbox, items).await.unwrap();
    let mut consumed = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while consumed < EVENTS && Instant::now() < deadline {
        let out = sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send().await.unwrap();
        if out.messages().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let event = SqsEvent {
            records: out
                .messages()
                .iter()
                .map(|m| SqsMessage { message_id: m.message_id.clone(), body: m.body.clone(), ..Default::default() })
                .collect(),
        };
        let response = consumer.consume(event, |_| async { Ok::<(), String>(()) }).await;
        assert!(response.batch_item_failures.is_empty());
        // As Lambda's event source mapping does: one batch delete.
        let entries = out
            .messages()
            .iter()
            .map(|m| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(m.message_id().unwrap())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap()
            })
            .collect();
        sqs.delete_message_batch().queue_url(&queue).set_entries(Some(entries)).send().await.unwrap();
        consumed += out.messages().len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counted = h.aws_calls().await;
    assert_eq!(consumed, EVENTS, "every event consumed");
    println!(
        "{EVENTS} events outbox -> stream -> relay -> bus -> queue -> consumer in {elapsed:.2}s: {:.0} events/s",
        EVENTS as f64 / elapsed
    );
    let per: Vec<String> = counted
        .iter()
        .map(|(k, v)| format!("{}={:.3}", k.rsplit('.').next().unwrap_or(k), *v as f64 / EVENTS as f64))
        .collect();
    println!("  AWS calls per event (outbox writes, stream reads, relay, consumer): {}", per.join(" "));
}
