//! The outbox relay: publishes the events a DynamoDB stream shows written
//! to the outbox onto the EventBridge bus, in stream order, and marks them
//! sent. At least once: a failure stops the batch at the first event not
//! published and reports it, so Lambda retries from there (later events of
//! the same patient are never published before it). A replayed stream finds
//! its events already sent and publishes nothing twice.

use super::dynamo::{batch_get_all, batch_write_all, get_s};
use super::port_error;
use super::schema::{key, to_item, OutboxEvent};
use super::stream::{ItemFailure, StreamBatchResponse, StreamEvent};
use crate::error::PortError;
use crate::events::{Envelope, SOURCE};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use std::collections::HashSet;

/// EventBridge's limit on entries in one PutEvents call.
const PUT_EVENTS_LIMIT: usize = 10;
/// How long a sent event stays in the outbox (for operators and replays)
/// before DynamoDB's TTL removes it.
const SENT_KEEP_SECONDS: i64 = 7 * 24 * 3600;

pub struct Relay {
    pub ddb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub outbox_table: String,
    pub bus: String,
}

impl Relay {
    pub async fn relay(&self, event: StreamEvent) -> StreamBatchResponse {
        let pending: Vec<(String, Envelope)> = event
            .records
            .into_iter()
            .filter(|r| r.event_name == "INSERT")
            .filter_map(|r| Some((r.dynamodb.sequence_number, Envelope::from_outbox_image(&r.dynamodb.new_image)?)))
            .collect();
        let Some(first) = pending.first().map(|(seq, _)| seq.clone()) else {
            return StreamBatchResponse::default();
        };
        let sent = match self.already_sent(&pending).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %e, "outbox status unreadable; batch retried");
                return failure_at(first);
            }
        };
        let todo: Vec<&(String, Envelope)> = pending.iter().filter(|(_, e)| !sent.contains(&e.id)).collect();
        for chunk in todo.chunks(PUT_EVENTS_LIMIT) {
            let published = self.publish(chunk).await;
            crate::metrics::add(crate::metrics::Counter::EventsRelayed, published as u64);
            crate::metrics::add(crate::metrics::Counter::EventsFailed, (chunk.len() - published) as u64);
            let ok = &chunk[..published];
            if let Err(e) = self.mark_sent(ok).await {
                // Published but not marked: the retry publishes them again,
                // which consumers absorb (they deduplicate on the event id).
                tracing::warn!(error = %e, "events published but not marked sent");
            }
            if published < chunk.len() {
                return failure_at(chunk[published].0.clone());
            }
        }
        StreamBatchResponse::default()
    }

    async fn already_sent(&self, pending: &[(String, Envelope)]) -> Result<HashSet<String>, PortError> {
        let keys = pending.iter().map(|(_, e)| key(&e.aggregate, &e.sequence)).collect();
        let items = batch_get_all(&self.ddb, &self.outbox_table, keys, |k| {
            k.projection_expression("id, #s").expression_attribute_names("#s", "status")
        })
        .await?;
        let sent = items
            .iter()
            .filter(|item| get_s(item, "status") == Some("sent"))
            .filter_map(|item| get_s(item, "id").map(str::to_owned))
            .collect();
        Ok(sent)
    }

    /// Publishes in order; returns how many of the chunk, from its start,
    /// were accepted (EventBridge answers per entry).
    async fn publish(&self, chunk: &[&(String, Envelope)]) -> usize {
        let entries = chunk
            .iter()
            .map(|(_, e)| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(&e.event_type)
                    .detail(serde_json::to_string(e).expect("envelope serialises"))
                    .build()
            })
            .collect();
        match self.events.put_events().set_entries(Some(entries)).send().await {
            Ok(out) => out.entries().iter().take_while(|r| r.error_code().is_none() && r.event_id().is_some()).count(),
            Err(e) => {
                tracing::warn!(error = %port_error("eventbridge", &e), "publish failed; batch retried");
                0
            }
        }
    }

    async fn mark_sent(&self, published: &[&(String, Envelope)]) -> Result<(), PortError> {
        let expires = (time::OffsetDateTime::now_utc().unix_timestamp() + SENT_KEEP_SECONDS) as u64;
        let requests = published
            .iter()
            .map(|(_, e)| {
                let item = to_item(&OutboxEvent {
                    pk: e.aggregate.clone(),
                    sk: e.sequence.clone(),
                    id: e.id.clone(),
                    event_type: e.event_type.clone(),
                    detail: e.data.to_string(),
                    status: "sent".into(),
                    expires: Some(expires),
                });
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().expect("item set"))
                    .build()
            })
            .collect();
        batch_write_all(&self.ddb, &self.outbox_table, requests).await
    }
}

fn failure_at(sequence_number: String) -> StreamBatchResponse {
    StreamBatchResponse { batch_item_failures: vec![ItemFailure { item_identifier: sequence_number }] }
}
