//! Domain events as they travel: written to the outbox in the transaction
//! of the change, relayed onto the EventBridge bus, delivered by rules into
//! each consumer's queue. Events carry ids, types and codes, never PHI; a
//! consumer that needs the record reads it through the service, authorized
//! and audited.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// `source` of every medrec event on the bus.
pub const SOURCE: &str = "medrec";
/// Version of the envelope and of the `data` schemas in `docs/events/`;
/// a breaking change to either is a new version, published beside the old.
pub const SCHEMA_VERSION: u32 = 1;

/// Every event type the services emit (`docs/events/envelope.schema.json`
/// lists the same, and a test keeps the two and the code in step).
pub const EVENT_TYPES: &[&str] = &[
    "PatientCreated",
    "PatientUpdated",
    "PatientDeleted",
    "ImmunizationRecorded",
    "ImmunizationUpdated",
    "ImmunizationDeleted",
    "ImmunizationReactionReported",
    "ObservationRecorded",
    "ObservationUpdated",
    "ObservationDeleted",
    "ConsentRecorded",
    "ConsentUpdated",
    "ConsentGranted",
    "ConsentRevoked",
    "ConsentExpiring",
    "DocumentStored",
    "DocumentUpdated",
    "DocumentDeleted",
    // Every other record type of the resource table (`data.resourceType` says which).
    "ResourceCreated",
    "ResourceUpdated",
    "ResourceDeleted",
    "BreakGlassUsed",
    "SecurityAlert",
    "RecordsPurged",
    "RegistryConflictDetected",
];

/// What the bus carries in `detail` and consumers receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub schema_version: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The patient (or other aggregate) whose stream the event belongs to.
    pub aggregate: String,
    /// Position within the aggregate's stream (the outbox sort key, `at#id`):
    /// consumers that care about order compare it.
    pub sequence: String,
    pub at: String,
    pub data: Value,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("message is not an EventBridge event from medrec")]
    NotAnEvent,
    #[error("event envelope is malformed: {0}")]
    Malformed(String),
    #[error("unsupported event schema version {0}")]
    UnsupportedVersion(u32),
    #[error("unknown event type")]
    UnknownType,
}

impl Envelope {
    /// From an outbox item's stream image (DynamoDB JSON, `{"S": ..}`
    /// values); `None` unless it is an event still to be sent.
    pub fn from_outbox_image(image: &HashMap<String, Value>) -> Option<Self> {
        let s = |k: &str| image.get(k).and_then(|v| v.get("S")).and_then(Value::as_str);
        if s("status") != Some("pending") {
            return None;
        }
        let sequence = s("sk")?.to_owned();
        Some(Envelope {
            schema_version: SCHEMA_VERSION,
            id: s("id")?.to_owned(),
            event_type: s("type")?.to_owned(),
            aggregate: s("pk")?.to_owned(),
            at: sequence.split('#').next().unwrap_or_default().to_owned(),
            sequence,
            data: serde_json::from_str(s("detail")?).ok()?,
        })
    }

    /// The envelope inside an SQS message body that an EventBridge rule
    /// delivered; anything else is refused (a poison message, for the DLQ).
    pub fn from_bus_message(body: &str) -> Result<Self, EventError> {
        let event: Value = serde_json::from_str(body).map_err(|_| EventError::NotAnEvent)?;
        if event.get("source").and_then(Value::as_str) != Some(SOURCE) {
            return Err(EventError::NotAnEvent);
        }
        let detail = event.get("detail").cloned().ok_or(EventError::NotAnEvent)?;
        let envelope: Envelope = serde_json::from_value(detail).map_err(|e| EventError::Malformed(e.to_string()))?;
        if envelope.schema_version != SCHEMA_VERSION {
            return Err(EventError::UnsupportedVersion(envelope.schema_version));
        }
        if !EVENT_TYPES.contains(&envelope.event_type.as_str()) {
            return Err(EventError::UnknownType);
        }
        if event.get("detail-type").and_then(Value::as_str) != Some(envelope.event_type.as_str()) {
            return Err(EventError::Malformed("detail-type differs from the event type".into()));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(status: &str) -> HashMap<String, Value> {
        serde_json::from_value(json!({
            "pk": {"S": "p1"}, "sk": {"S": "2026-11-23T10:00:00.000Z#e1"}, "id": {"S": "e1"},
            "type": {"S": "ImmunizationRecorded"}, "status": {"S": status},
            "detail": {"S": "{\"resourceType\":\"Immunization\",\"id\":\"i1\",\"versionId\":\"1\"}"}
        }))
        .unwrap()
    }

    #[test]
    fn outbox_images_become_envelopes_and_bus_messages_come_back() {
        assert_eq!(Envelope::from_outbox_image(&image("sent")), None);
        let e = Envelope::from_outbox_image(&image("pending")).unwrap();
        assert_eq!(
            (e.aggregate.as_str(), e.at.as_str(), e.data["id"].as_str()),
            ("p1", "2026-11-23T10:00:00.000Z", Some("i1"))
        );
        let message = json!({"source": SOURCE, "detail-type": e.event_type, "detail": e}).to_string();
        assert_eq!(Envelope::from_bus_message(&message).unwrap(), e);
    }

    #[test]
    fn poison_messages_are_named() {
        let e = Envelope::from_outbox_image(&image("pending")).unwrap();
        let msg = |source: &str, ty: &str, detail: Value| {
            json!({"source": source, "detail-type": ty, "detail": detail}).to_string()
        };
        assert_eq!(Envelope::from_bus_message("not json"), Err(EventError::NotAnEvent));
        assert_eq!(Envelope::from_bus_message(&msg("other", &e.event_type, json!(e))), Err(EventError::NotAnEvent));
        let mut v2 = json!(e);
        v2["schemaVersion"] = json!(2);
        assert_eq!(Envelope::from_bus_message(&msg(SOURCE, &e.event_type, v2)), Err(EventError::UnsupportedVersion(2)));
        let mut unknown = json!(e);
        unknown["type"] = json!("PatientTeleported");
        assert_eq!(
            Envelope::from_bus_message(&msg(SOURCE, "PatientTeleported", unknown)),
            Err(EventError::UnknownType)
        );
        assert!(matches!(
            Envelope::from_bus_message(&msg(SOURCE, "PatientCreated", json!(e))),
            Err(EventError::Malformed(_))
        ));
        let mut extra = json!(e);
        extra["name"] = json!("Jane Doe");
        assert!(matches!(
            Envelope::from_bus_message(&msg(SOURCE, &e.event_type, extra)),
            Err(EventError::Malformed(_))
        ));
    }

    /// Every event type written anywhere in the services is listed here and
    /// in the published schema.
    #[test]
    fn every_emitted_type_is_declared_and_published() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("../docs/events/envelope.schema.json")).unwrap())
                .unwrap();
        let published: Vec<&str> =
            schema["properties"]["type"]["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(published, EVENT_TYPES);
        let mut sources = vec![];
        let mut dirs = vec![root.join("src"), root.join("../aws/src"), root.join("../edge/src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("events.rs") {
                    sources.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
        let code = sources.join("\n");
        for word in code.split(|c: char| !c.is_ascii_alphanumeric()) {
            let looks_like_event = [
                "Created", "Updated", "Deleted", "Recorded", "Reported", "Granted", "Revoked", "Expiring", "Stored",
                "Used", "Purged",
            ]
            .iter()
            .any(|suffix| {
                word.ends_with(suffix)
                    && word.len() > suffix.len()
                    && word.starts_with(|c: char| c.is_ascii_uppercase())
            });
            if looks_like_event && code.contains(&format!("\"{word}\"")) {
                assert!(EVENT_TYPES.contains(&word), "{word} is emitted but not declared");
            }
        }
    }
}
