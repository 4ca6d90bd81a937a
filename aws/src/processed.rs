//! The event claims of idempotent consumers (`ports::EventClaims`) in a
//! DynamoDB table whose items TTL removes once no redelivery can come (SQS
//! keeps a message at most 14 days), and SQS batches handed to the core's
//! `consumer::consume` (which decides order, duplicates and failures).

use super::dynamo::{get_s, n, s};
use super::port_error;
use super::schema::{claim_pk, to_item, ClaimItem};
use crate::consumer::{self, Delivery};
use crate::error::PortError;
use crate::events::Envelope;
use crate::ports::{Claim, EventClaims};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
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

impl EventClaims for ProcessedEvents {
    async fn claim(&self, event_id: &str) -> Result<Claim, PortError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let out = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&ClaimItem {
                pk: self.key(event_id),
                state: "claimed".into(),
                lease: Some(now + self.lease_seconds),
                expires: now + KEEP_SECONDS,
            })))
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

    async fn done(&self, event_id: &str) -> Result<(), PortError> {
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

    async fn release(&self, event_id: &str) -> Result<(), PortError> {
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
}

impl ProcessedEvents {
    fn key(&self, event_id: &str) -> String {
        claim_pk(&self.consumer, event_id)
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

    /// Runs `process` once per event of an SQS batch (`consumer::consume`)
    /// and answers with a partial batch response naming what to redeliver.
    pub async fn consume<F, Fut, E>(&self, event: SqsEvent, process: F) -> SqsBatchResponse
    where
        F: Fn(Envelope) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let batch = event
            .records
            .into_iter()
            .map(|m| Delivery { message_id: m.message_id.unwrap_or_default(), body: m.body.unwrap_or_default() })
            .collect();
        let failed = consumer::consume(self, batch, process).await;
        SqsBatchResponse {
            batch_item_failures: failed
                .into_iter()
                .map(|item_identifier| BatchItemFailure { item_identifier })
                .collect(),
        }
    }
}
