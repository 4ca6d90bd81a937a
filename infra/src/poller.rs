//! Lambda's SQS event source mapping, played locally: polls a queue (short
//! polls, paced by `crate::idle`), hands each batch to the function as the
//! `SqsEvent` Lambda would, deletes the messages that succeeded and leaves
//! the reported failures to come back after their visibility timeout (and,
//! after maxReceiveCount, to the DLQ), as a partial batch response
//! (`ReportBatchItemFailures`) does in AWS.

use crate::idle::Activity;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type SqsHandler = Arc<dyn Fn(SqsEvent) -> Pin<Box<dyn Future<Output = SqsBatchResponse> + Send>> + Send + Sync>;

pub struct QueueSource {
    pub url: String,
    pub arn: String,
    pub batch_size: i32,
}

fn to_event(messages: Vec<aws_sdk_sqs::types::Message>, arn: &str) -> SqsEvent {
    let records = messages
        .into_iter()
        .map(|m| SqsMessage {
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            body: m.body,
            md5_of_body: m.md5_of_body,
            event_source: Some("aws:sqs".into()),
            event_source_arn: Some(arn.to_owned()),
            aws_region: Some("us-east-1".into()),
            attributes: m.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect(),
            ..Default::default()
        })
        .collect();
    SqsEvent { records }
}

/// Runs until aborted. A handler that panics fails its whole batch.
pub async fn run(sqs: aws_sdk_sqs::Client, source: QueueSource, handler: SqsHandler, activity: Activity) {
    let mut idle = activity.idle();
    loop {
        idle.polling();
        let received = sqs
            .receive_message()
            .queue_url(&source.url)
            .max_number_of_messages(source.batch_size.clamp(1, 10))
            // Short polls: the emulator serves a long poll by holding up
            // every other request to it.
            .wait_time_seconds(0)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if messages.is_empty() {
            idle.wait().await;
            continue;
        }
        idle.busy();
        let handles: Vec<(String, String)> =
            messages.iter().filter_map(|m| Some((m.message_id.clone()?, m.receipt_handle.clone()?))).collect();
        let event = to_event(messages, &source.arn);
        let h = handler.clone();
        let failed: HashSet<String> = match tokio::spawn(async move { h(event).await }).await {
            Ok(resp) => resp.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
            Err(_) => handles.iter().map(|(id, _)| id.clone()).collect(),
        };
        for (id, receipt) in handles.iter().filter(|(id, _)| !failed.contains(id)) {
            let _ = sqs.delete_message().queue_url(&source.url).receipt_handle(receipt).send().await;
            tracing::debug!(message_id = %id, "message processed");
        }
        activity.signal();
    }
}
