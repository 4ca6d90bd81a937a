//! `medrec events dlq list|redrive`: the operators' view of the dead-letter
//! queues the template declares (every queue's `RedrivePolicy`), and the
//! way back once the cause is fixed. A redrive may deliver a message twice
//! (it is sent before it is deleted); consumers are idempotent.

use crate::template::Template;
use serde_yaml::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    pub logical_id: String,
    pub url: String,
    /// The queue whose failures land here, and where a redrive sends them.
    pub source: String,
    pub source_url: String,
}

/// What an operator sees of a dead letter: ids and types, never a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    /// The event's type and id when the body is a medrec event.
    pub event: Option<(String, String)>,
    pub receive_count: u32,
}

/// The template's DLQs with their source queues, given the physical URLs
/// of the provisioned queues.
pub fn dead_letter_queues(template: &Template, urls: &BTreeMap<String, String>) -> Vec<DeadLetterQueue> {
    let mut out = vec![];
    for r in template.resources.iter().filter(|r| r.kind == "AWS::SQS::Queue") {
        let Some(Value::Tagged(t)) = r.properties.get("RedrivePolicy").and_then(|p| p.get("deadLetterTargetArn"))
        else {
            continue;
        };
        let Some(dlq) = t.value.as_str().and_then(|v| v.split('.').next()) else { continue };
        if let (Some(url), Some(source_url)) = (urls.get(dlq), urls.get(&r.logical_id)) {
            out.push(DeadLetterQueue {
                logical_id: dlq.to_owned(),
                url: url.clone(),
                source: r.logical_id.clone(),
                source_url: source_url.clone(),
            });
        }
    }
    out
}

fn sqs_error(e: impl std::fmt::Debug) -> String {
    format!("sqs: {}", format!("{e:?}").chars().take(200).collect::<String>())
}

/// The messages in a DLQ (read without taking them: visible again at once).
pub async fn list(sqs: &aws_sdk_sqs::Client, dlq: &DeadLetterQueue) -> Result<Vec<DeadLetter>, String> {
    let mut seen = BTreeMap::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&dlq.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sqs_error)?;
        let mut new = 0;
        for m in out.messages() {
            let Some(id) = m.message_id() else { continue };
            if seen.contains_key(id) {
                continue;
            }
            new += 1;
            let event = medrec_edge::events::Envelope::from_bus_message(m.body().unwrap_or_default())
                .ok()
                .map(|e| (e.event_type, e.id));
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            seen.insert(id.to_owned(), DeadLetter { message_id: id.to_owned(), event, receive_count });
        }
        if new == 0 {
            break;
        }
    }
    Ok(seen.into_values().collect())
}

/// Moves every message of a DLQ back to its source queue; returns how many.
pub async fn redrive(sqs: &aws_sdk_sqs::Client, dlq: &DeadLetterQueue) -> Result<usize, String> {
    let mut moved = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&dlq.url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(sqs_error)?;
        if out.messages().is_empty() {
            return Ok(moved);
        }
        for m in out.messages() {
            sqs.send_message()
                .queue_url(&dlq.source_url)
                .message_body(m.body().unwrap_or_default())
                .send()
                .await
                .map_err(sqs_error)?;
            sqs.delete_message()
                .queue_url(&dlq.url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(sqs_error)?;
            moved += 1;
        }
    }
}
