//! The audit mirror's adapter: chain records from the audit table's
//! stream into the Object Lock archive (`mirror/`), one object per stream
//! batch, and back for the verifier. See `crate::audit::mirror`.

use super::port_error;
use super::stream::{ItemFailure, StreamBatchResponse, StreamEvent, StreamRecord};
use crate::audit::mirror::MirrorEntry;
use crate::error::PortError;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use std::collections::HashMap;

const PREFIX: &str = "mirror/";

pub struct AuditMirror {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

fn s<'a>(image: &'a HashMap<String, Value>, k: &str) -> Option<&'a str> {
    image.get(k).and_then(|v| v.get("S")).and_then(Value::as_str)
}

/// (shard, seq) of a chain record's image.
fn position(image: &HashMap<String, Value>) -> Option<(u32, u64)> {
    let shard = crate::schema::shard_of_chain(s(image, "pk")?)?;
    let seq = image.get("sk")?.get("N")?.as_str()?.parse().ok()?;
    Some((shard, seq))
}

/// What a stream record says about a chain record, if it is one. Heads
/// change with every append; only chain records are mirrored.
fn entry(r: &StreamRecord) -> Option<MirrorEntry> {
    let d = &r.dynamodb;
    match r.event_name.as_str() {
        "INSERT" => {
            let (shard, seq) = position(&d.new_image)?;
            let (hash, id) = (s(&d.new_image, "hash")?.to_owned(), s(&d.new_image, "id")?.to_owned());
            Some(MirrorEntry::Committed { shard, seq, hash, id })
        }
        event => {
            let (shard, seq) = position(&d.old_image).or_else(|| position(&d.new_image))?;
            Some(MirrorEntry::Changed {
                shard,
                seq,
                event: event.to_owned(),
                before: s(&d.old_image, "hash").unwrap_or_default().to_owned(),
                after: s(&d.new_image, "hash").map(str::to_owned),
            })
        }
    }
}

impl AuditMirror {
    /// Mirrors one stream batch as one object named by the batch's first and
    /// last sequence numbers, so a redelivered batch writes the same object
    /// again. A change to a committed record is logged as an error (a metric
    /// filter alarms on it) besides being mirrored.
    pub async fn record(&self, event: StreamEvent) -> StreamBatchResponse {
        let (Some(first), Some(last)) = (event.records.first(), event.records.last()) else {
            return StreamBatchResponse::default();
        };
        let first_seq = first.dynamodb.sequence_number.clone();
        let key = format!("{PREFIX}{first_seq}-{}.ndjson", last.dynamodb.sequence_number);
        let entries: Vec<MirrorEntry> = event.records.iter().filter_map(entry).collect();
        for e in &entries {
            if let MirrorEntry::Changed { shard, seq, event, .. } = e {
                tracing::error!(shard, seq, event = %event, "audit record changed after commit");
            }
        }
        if entries.is_empty() {
            return StreamBatchResponse::default();
        }
        let body: String =
            entries.iter().map(|e| serde_json::to_string(e).expect("entries serialise") + "\n").collect();
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await;
        match put {
            Ok(_) => StreamBatchResponse::default(),
            Err(e) => {
                tracing::error!(error = %port_error("s3", &e), "audit mirror write failed; the batch is retried");
                StreamBatchResponse { batch_item_failures: vec![ItemFailure { item_identifier: first_seq }] }
            }
        }
    }

    /// Every entry the mirror holds, in no particular order.
    pub async fn entries(&self) -> Result<Vec<MirrorEntry>, PortError> {
        let mut out = vec![];
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(PREFIX)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| port_error("s3", &e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let got = self.s3.get_object().bucket(&self.bucket).key(key).send().await;
                let body = got.map_err(|e| port_error("s3", &e))?.body.collect().await;
                let body = body.map_err(|_| PortError::Backend { service: "s3", detail: "body".into() })?.to_vec();
                for line in String::from_utf8_lossy(&body).lines().filter(|l| !l.is_empty()) {
                    let entry = serde_json::from_str(line)
                        .map_err(|_| PortError::Integrity(format!("mirror object {key} holds a malformed line")))?;
                    out.push(entry);
                }
            }
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(event: &str, old: Value, new: Value) -> StreamRecord {
        serde_json::from_value(
            json!({"eventName": event, "dynamodb": {"SequenceNumber": "100", "OldImage": old, "NewImage": new}}),
        )
        .unwrap()
    }

    #[test]
    fn chain_records_are_mirrored_and_changes_to_them_flagged() {
        let image =
            |hash: &str| json!({"pk": {"S": "CHAIN#2"}, "sk": {"N": "9"}, "hash": {"S": hash}, "id": {"S": "a1"}});
        assert_eq!(
            entry(&record("INSERT", json!({}), image("h"))),
            Some(MirrorEntry::Committed { shard: 2, seq: 9, hash: "h".into(), id: "a1".into() })
        );
        assert_eq!(
            entry(&record("MODIFY", image("h"), image("x"))),
            Some(MirrorEntry::Changed {
                shard: 2,
                seq: 9,
                event: "MODIFY".into(),
                before: "h".into(),
                after: Some("x".into())
            })
        );
        assert!(matches!(
            entry(&record("REMOVE", image("h"), json!({}))),
            Some(MirrorEntry::Changed { after: None, .. })
        ));
        let head = json!({"pk": {"S": "HEAD#2"}, "sk": {"N": "0"}, "hash": {"S": "h"}});
        assert_eq!(entry(&record("MODIFY", head.clone(), head)), None, "heads move with every append");
    }
}
