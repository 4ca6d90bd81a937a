//! Lambda's DynamoDB stream event source mapping, played locally: reads
//! every shard of a table's stream from its start, hands each batch to the
//! function as the stream event Lambda would, and honours the partial batch
//! response (`ReportBatchItemFailures`): after a failure it reads again
//! from the first failed record, after a pause. Unlike Lambda it retries
//! without limit (a local stack has no on-failure destination to fill).

use crate::idle::Activity;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

const RETRY: Duration = Duration::from_millis(500);
const SHARDS_EVERY: Duration = Duration::from_secs(5);

/// Takes the stream event (JSON, as Lambda sends it), returns the
/// function's response (a partial batch response, or an error for a
/// failed invocation).
pub type StreamHandler =
    Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> + Send + Sync>;

/// DynamoDB JSON, as stream events carry attribute values.
fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::B(b) => {
            json!({"B": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b.as_ref())})
        }
        AttributeValue::L(l) => json!({"L": l.iter().map(attribute_json).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": image_json(m)}),
        AttributeValue::Ss(ss) => json!({"SS": ss}),
        AttributeValue::Ns(ns) => json!({"NS": ns}),
        _ => Value::Null,
    }
}

fn image_json(m: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect()
}

fn to_event(records: &[aws_sdk_dynamodbstreams::types::Record], stream_arn: &str) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let d = r.dynamodb();
            let mut data = json!({
                "SequenceNumber": d.and_then(|d| d.sequence_number()),
                "Keys": d.and_then(|d| d.keys()).map(image_json),
                "StreamViewType": d.and_then(|d| d.stream_view_type()).map(|v| v.as_str()),
            });
            // As Lambda sends them: an image the record has no part of is absent.
            if let Some(image) = d.and_then(|d| d.new_image()) {
                data["NewImage"] = Value::Object(image_json(image));
            }
            if let Some(image) = d.and_then(|d| d.old_image()) {
                data["OldImage"] = Value::Object(image_json(image));
            }
            json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|n| n.as_str()),
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn,
                "dynamodb": data,
            })
        })
        .collect();
    json!({"Records": records})
}

async fn iterator(
    client: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
    shard: &str,
    at: Option<&str>,
) -> Option<String> {
    let request = client.get_shard_iterator().stream_arn(arn).shard_id(shard);
    let request = match at {
        Some(seq) => request.shard_iterator_type(ShardIteratorType::AtSequenceNumber).sequence_number(seq),
        None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    request.send().await.ok()?.shard_iterator().map(str::to_owned)
}

/// Runs until aborted.
pub async fn run(
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    batch_size: i32,
    handler: StreamHandler,
    activity: Activity,
) {
    let mut iterators: HashMap<String, Option<String>> = HashMap::new();
    let mut described: Option<std::time::Instant> = None;
    let mut idle = activity.idle();
    loop {
        idle.polling();
        // New shards are rare: the stream is described every few seconds.
        let stale = described.is_none_or(|at| at.elapsed() > SHARDS_EVERY);
        let description = match stale {
            true => client.describe_stream().stream_arn(&stream_arn).send().await.ok(),
            false => None,
        };
        if let Some(out) = description {
            described = Some(std::time::Instant::now());
            for shard in out.stream_description().map(|d| d.shards()).unwrap_or_default() {
                let Some(id) = shard.shard_id() else { continue };
                if !iterators.contains_key(id) {
                    let it = iterator(&client, &stream_arn, id, None).await;
                    iterators.insert(id.to_owned(), it);
                }
            }
        }
        let mut busy = false;
        for (shard, it) in iterators.iter_mut() {
            let Some(current) = it.clone() else { continue };
            let Ok(out) = client.get_records().shard_iterator(&current).limit(batch_size.clamp(1, 1000)).send().await
            else {
                *it = iterator(&client, &stream_arn, shard, None).await;
                continue;
            };
            let records = out.records();
            if records.is_empty() {
                *it = out.next_shard_iterator().map(str::to_owned);
                continue;
            }
            busy = true;
            let h = handler.clone();
            let event = to_event(records, &stream_arn);
            let failed_at = match tokio::spawn(async move { h(event).await }).await {
                Ok(Ok(response)) => response["batchItemFailures"]
                    .as_array()
                    .and_then(|f| f.first())
                    .and_then(|f| f["itemIdentifier"].as_str())
                    .map(str::to_owned),
                // A failed or panicking invocation: the whole batch again.
                _ => records.first().and_then(|r| r.dynamodb()).and_then(|d| d.sequence_number()).map(str::to_owned),
            };
            match failed_at {
                None => *it = out.next_shard_iterator().map(str::to_owned),
                Some(seq) => {
                    tokio::time::sleep(RETRY).await;
                    *it = iterator(&client, &stream_arn, shard, Some(&seq)).await;
                }
            }
        }
        if busy {
            idle.busy();
            activity.signal();
        } else {
            idle.wait().await;
        }
    }
}
