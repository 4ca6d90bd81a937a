//! Idempotent event consumers: a consumer claims an event id before it
//! acts and marks it done after, in a table whose items DynamoDB's TTL
//! removes once no redelivery can come (SQS keeps a message at most 14
//! days). A duplicate delivery (the relay's at-least-once, a redrive, a
//! replayed stream) finds the claim and does nothing; a claim whose consumer
//! died expires after its lease and the next delivery takes it over.

use super::dynamo::get_s;
use super::port_error;
use crate::error::PortError;
use crate::events::Envelope;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use std::future::Future;

/// Longer than the SQS retention of a message, so no duplicate outlives
/// its claim.
const KEEP_SECONDS: i64 = 15 * 24 * 3600;

pub struct ProcessedEvents {
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
    /// The consumer's name: each consumer processes each event once.
    pub consumer: String,
    /// How long a claim protects an event being processed (at least the
    /// function's timeout).
    pub lease_seconds: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Process it now.
    Mine,
    /// Already processed: a duplicate.
    Done,
    /// Being processed by a live consumer: this delivery comes back later
    /// (were it acknowledged, a failure of the other would lose the event).
    InProgress,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl ProcessedEvents {
    fn key(&self, event_id: &str) -> String {
        format!("{}#{event_id}", self.consumer)
    }

    pub async fn claim(&self, event_id: &str) -> Result<Claim, PortError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let out = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", s(self.key(event_id)))
            .item("state", s("claimed"))
            .item("lease", n(now + self.lease_seconds))
            .item("expires", n(now + KEEP_SECONDS))
            .condition_expression("attribute_not_exists(pk) OR (#s = :claimed AND #l < :now)")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#l", "lease")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Claim::Mine),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(if self.is_done(event_id).await? { Claim::Done } else { Claim::InProgress })
            }
            Err(e) => Err(port_error("dynamodb", &e)),
        }
    }

    pub async fn done(&self, event_id: &str) -> Result<(), PortError> {
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.key(event_id)))
            .update_expression("SET #s = :done REMOVE #l")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#l", "lease")
            .expression_attribute_values(":done", s("done"))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(())
    }

    /// Gives a claim back after a failure, so the redelivery processes it.
    pub async fn release(&self, event_id: &str) -> Result<(), PortError> {
        self.ddb
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(self.key(event_id)))
            .condition_expression("#s = :claimed")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":claimed", s("claimed"))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(())
    }

    /// Whether an event was processed (for operators and tests).
    pub async fn is_done(&self, event_id: &str) -> Result<bool, PortError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(self.key(event_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(out.item().and_then(|i| get_s(i, "state")) == Some("done"))
    }

    /// Runs `process` once per event of an SQS batch, in order, and answers
    /// with a partial batch response: a message that fails (or is not a
    /// medrec event: poison, for the DLQ after maxReceiveCount) is reported,
    /// and so is every later message of the same patient, so a patient's
    /// events are never applied out of order.
    pub async fn consume<F, Fut, E>(&self, event: SqsEvent, process: F) -> SqsBatchResponse
    where
        F: Fn(Envelope) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut failed = vec![];
        // Each patient's events in order, different patients side by side.
        let mut streams: Vec<(String, Vec<(String, Envelope)>)> = vec![];
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            match Envelope::from_bus_message(message.body.as_deref().unwrap_or_default()) {
                Ok(e) => match streams.iter_mut().find(|(a, _)| *a == e.aggregate) {
                    Some((_, s)) => s.push((id, e)),
                    None => streams.push((e.aggregate.clone(), vec![(id, e)])),
                },
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "poison message");
                    failed.push(id);
                }
            }
        }
        let process = &process;
        let outcomes = futures_util::future::join_all(streams.into_iter().map(|(_, stream)| async move {
            let mut failed = vec![];
            let mut blocked = false;
            for (id, envelope) in stream {
                if blocked {
                    failed.push(id);
                    continue;
                }
                if let Err(e) = self.once(&envelope, process).await {
                    tracing::warn!(event_id = %envelope.id, event_type = %envelope.event_type, error = %e, "event not processed");
                    blocked = true;
                    failed.push(id);
                }
            }
            failed
        }))
        .await;
        failed.extend(outcomes.into_iter().flatten());
        SqsBatchResponse {
            batch_item_failures: failed
                .into_iter()
                .map(|item_identifier| BatchItemFailure { item_identifier })
                .collect(),
        }
    }

    async fn once<F, Fut, E>(&self, envelope: &Envelope, process: &F) -> Result<(), String>
    where
        F: Fn(Envelope) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        match self.claim(&envelope.id).await.map_err(|e| e.to_string())? {
            Claim::Done => Ok(()),
            Claim::InProgress => Err("being processed by another delivery".into()),
            Claim::Mine => match process(envelope.clone()).await {
                Ok(()) => self.done(&envelope.id).await.map_err(|e| e.to_string()),
                Err(e) => {
                    let _ = self.release(&envelope.id).await;
                    Err(e.to_string())
                }
            },
        }
    }
}
