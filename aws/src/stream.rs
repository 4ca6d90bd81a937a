//! DynamoDB stream events as Lambda delivers them, and the partial batch
//! response a stream consumer answers with.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The DynamoDB stream event Lambda delivers (what medrec's consumers read).
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventName")]
    pub event_name: String,
    pub dynamodb: StreamData,
}

#[derive(Debug, Deserialize)]
pub struct StreamData {
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
    #[serde(rename = "NewImage", default)]
    pub new_image: HashMap<String, Value>,
    /// The item before a change or removal (`NEW_AND_OLD_IMAGES` streams).
    #[serde(rename = "OldImage", default)]
    pub old_image: HashMap<String, Value>,
}

/// A partial batch response for a stream (`ReportBatchItemFailures`): Lambda
/// retries from the first failed record.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct StreamBatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}
