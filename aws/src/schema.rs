//! The layout of medrec's DynamoDB tables, in one place: every key and every
//! item, as types. Adapters write items by serializing these structs
//! (`to_item`) and read them back by deserializing (`from_item`), never by
//! hand-built attribute maps; the end-to-end tests import the key functions
//! to find what is stored, so a change of layout is a change here alone.
//!
//! Only opaque ids, versions, timestamps, blind-index tokens and
//! ciphertext are plaintext attributes (decision 0001): no field here may
//! hold PHI.

use crate::error::PortError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The attributes of a typed item.
pub fn to_item(value: &impl Serialize) -> Item {
    // Every item type here is a struct of strings, numbers, booleans, byte
    // strings and lists of them, which always serialize.
    serde_dynamo::to_item(value).expect("a schema item serializes")
}

/// A stored item as its type; a missing or mistyped attribute is an
/// integrity failure (the table holds something this code did not write).
pub fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T, PortError> {
    serde_dynamo::from_item(item.clone()).map_err(|e| PortError::Integrity(format!("stored item: {e}")))
}

/// One attribute value of a typed value (a nested map or list).
pub fn to_attribute(value: &impl Serialize) -> AttributeValue {
    serde_dynamo::to_attribute_value(value).expect("a schema value serializes")
}

/// A nested attribute as its type.
pub fn from_attribute<T: DeserializeOwned>(value: &AttributeValue) -> Result<T, PortError> {
    serde_dynamo::from_attribute_value(value.clone()).map_err(|e| PortError::Integrity(format!("stored value: {e}")))
}

/// The key of an item of a table keyed by string `pk` and `sk`.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk.into())), ("sk".to_owned(), AttributeValue::S(sk.into()))])
}

/// The key of an audit-table item (`sk` is a number there).
pub fn audit_key(pk: impl Into<String>, sk: u64) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::N(sk.to_string())),
    ])
}

// ---- Records table (`pk`, `sk`; the `search` index on `ix`, `ixs`) ----

/// A patient compartment's partition (the directory's too, `_directory`).
pub fn patient_pk(patient: &str) -> String {
    format!("P#{patient}")
}
/// The patient a compartment partition belongs to.
pub fn patient_of_pk(pk: &str) -> Option<&str> {
    pk.strip_prefix("P#")
}
/// The sort key of a compartment's wrapped data key, and of a service
/// secret under `CONFIG_PK`.
pub const DATA_KEY_SK: &str = "KEY";
/// The partition of the KMS-wrapped service secrets (sort key: the name).
pub const CONFIG_PK: &str = "CONFIG";

/// A resource's current item.
pub fn current_sk(ty: &str, id: &str) -> String {
    format!("C#{ty}#{id}")
}
/// The prefix of every current item of a compartment, or of one type's.
pub fn current_prefix(ty: Option<&str>) -> String {
    ty.map_or_else(|| "C#".to_owned(), |ty| format!("C#{ty}#"))
}
/// Type and id of a current item's sort key.
pub fn parse_current_sk(sk: &str) -> Option<(&str, &str)> {
    sk.strip_prefix("C#")?.split_once('#')
}

/// One version of a resource, zero-padded so versions sort in order.
pub fn version_sk(ty: &str, id: &str, version: u64) -> String {
    format!("V#{ty}#{id}#{version:010}")
}
/// The prefix of a compartment's versions: all, one type's, or one resource's.
pub fn version_prefix(ty: Option<&str>, id: Option<&str>) -> String {
    match (ty, id) {
        (Some(ty), Some(id)) => format!("V#{ty}#{id}#"),
        (Some(ty), None) => format!("V#{ty}#"),
        _ => "V#".to_owned(),
    }
}
/// Type and id of a version item's sort key.
pub fn parse_version_sk(sk: &str) -> Option<(&str, &str)> {
    let (ty, rest) = sk.strip_prefix("V#")?.split_once('#')?;
    Some((ty, rest.rsplit_once('#')?.0))
}

/// A blind-index entry of a resource, in its compartment.
pub fn index_sk(ty: &str, id: &str, token: &str) -> String {
    format!("I#{ty}#{id}#{token}")
}
/// The prefix of a resource's index entries, or of a compartment's.
pub fn index_prefix(ty_id: Option<(&str, &str)>) -> String {
    ty_id.map_or_else(|| "I#".to_owned(), |(ty, id)| format!("I#{ty}#{id}#"))
}
/// The `search` index's hash key of a token of a type.
pub fn search_key(ty: &str, token: &str) -> String {
    format!("{ty}#{token}")
}
pub const SEARCH_INDEX: &str = "search";

/// The locator of a resource that is not a Patient: its compartment.
pub fn locator_pk(ty: &str, id: &str) -> String {
    format!("L#{ty}#{id}")
}
pub const LOCATOR_SK: &str = "L";

/// A break-glass access kept for review, in the patient's partition.
pub fn break_glass_sk(audit_id: &str) -> String {
    format!("BG#{audit_id}")
}
pub const BREAK_GLASS_PREFIX: &str = "BG#";
/// The search-index key of break-glass accesses awaiting review, and of those reviewed.
pub const BREAK_GLASS_PENDING: &str = "BREAKGLASS#pending";
pub const BREAK_GLASS_REVIEWED: &str = "BREAKGLASS#reviewed";
/// The locator type of break-glass accesses: a review names the access by
/// its audit id alone, and the locator says whose partition holds it.
pub const BREAK_GLASS_LOCATOR: &str = "BreakGlass";

/// The marker of an audit recorded at most once (`audit_once`).
pub fn once_key(key: &str) -> Item {
    self::key(format!("ONCE#{key}"), "ONCE")
}
/// The failed-authentication counter of a window.
pub fn failures_key(window: &str) -> Item {
    key(format!("FAILS#{window}"), "FAILS")
}

/// The partition of every large transaction's header (sort key: its id).
pub const TRANSACTION_HEADERS: &str = "TX";
/// A large transaction's journal.
pub fn journal_pk(id: &str) -> String {
    format!("TX#{id}")
}
/// A journal page: `K` lists prepared keys, `R` holds records to append,
/// `D` marks an `R` page done.
pub fn journal_page_sk(kind: char, page: usize) -> String {
    format!("{kind}#{page:05}")
}

/// Legal holds (sort key: the held reference) and erasure requests (sort
/// key: the patient).
pub const HOLD_PK: &str = "HOLD";
pub const ERASE_PK: &str = "ERASE";

/// A wrapped key: a compartment's data key (`P#<patient>`/`KEY`, with its
/// creation time) or a service secret (`CONFIG`/`<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    pub pk: String,
    pub sk: String,
    #[serde(with = "serde_bytes")]
    pub wk: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The CMK (ARN) a re-wrap moved it under, and when (`rekey`); absent:
    /// the CMK configured when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrapped: Option<String>,
}

/// Where a resource that is not a Patient lives (`L#<type>#<id>`/`L`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Locator {
    pub pk: String,
    pub sk: String,
    /// The compartment's patient id.
    pub p: String,
}

/// A resource version: the current item (`C#`, with its index tokens) or a
/// history item (`V#`). Its content is ciphertext (absent once deleted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordItem {
    pub pk: String,
    pub sk: String,
    pub ver: u64,
    #[serde(default)]
    pub del: bool,
    #[serde(default)]
    pub upd: String,
    #[serde(rename = "type", default)]
    pub resource_type: String,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub ct: Option<Vec<u8>>,
    /// The blind-index tokens, on the current item only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tok: Option<Vec<String>>,
}

/// A blind-index entry, projected into the `search` index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexEntry {
    pub pk: String,
    pub sk: String,
    /// `<type>#<token>`.
    pub ix: String,
    /// The resource id.
    pub ixs: String,
}

/// A break-glass access kept for review. The reason and the reviewer's
/// note are sealed under the patient's data key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakGlassItem {
    pub pk: String,
    pub sk: String,
    pub ix: String,
    pub ixs: String,
    pub at: String,
    pub code: String,
    /// The access's FHIR AuditEvent (no PHI).
    pub body: String,
    #[serde(with = "serde_bytes")]
    pub reason: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// When it was reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rat: Option<String>,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub note: Option<Vec<u8>>,
}

/// Every attribute of a break-glass item (template.yaml lets the audit
/// function read these and no others).
pub const BREAK_GLASS_ATTRIBUTES: [&str; 12] =
    ["pk", "sk", "ix", "ixs", "at", "code", "body", "reason", "outcome", "reviewer", "rat", "note"];

/// A large transaction's header (`TX`/`<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionHeader {
    pub pk: String,
    pub sk: String,
    /// pending, committed or aborted.
    pub state: String,
    /// Epoch milliseconds after which the sweep aborts it while pending.
    pub deadline: u64,
    pub created: String,
    /// Set once nothing of the journal is left to do; absent until then,
    /// as the sweep finds unfinished headers by `attribute_not_exists(done)`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// A journal page of audit records and outbox events to append once the
/// transaction commits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalRecords {
    pub pk: String,
    pub sk: String,
    pub records: Vec<ChainEntry>,
    pub events: Vec<OutboxEvent>,
}

/// A legal hold: a reason code and a ticket, never free text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub pk: String,
    /// The held reference (`Patient/<id>` or `<type>/<id>`).
    pub sk: String,
    pub p: String,
    pub by: String,
    pub reason: String,
    pub ticket: String,
    pub at: String,
}

/// An erasure request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub pk: String,
    /// The patient.
    pub sk: String,
    pub by: String,
    pub ticket: String,
    pub at: String,
}

// ---- Audit table (`pk`, `sk` number; `by-patient`, `by-agent` on `at`) ----

/// A shard's chain of records.
pub fn chain_pk(shard: u32) -> String {
    format!("CHAIN#{shard}")
}
/// A shard's head (sort key 0).
pub fn head_pk(shard: u32) -> String {
    format!("HEAD#{shard}")
}
/// The shard of a chain partition.
pub fn shard_of_chain(pk: &str) -> Option<u32> {
    pk.strip_prefix("CHAIN#")?.parse().ok()
}
/// The shard of a head partition.
pub fn shard_of_head(pk: &str) -> Option<u32> {
    pk.strip_prefix("HEAD#")?.parse().ok()
}
/// The pending audit export, and one export's progress (sort key 0).
pub const PENDING_EXPORT_PK: &str = "EXPORT#pending";
pub fn export_pk(id: &str) -> String {
    format!("EXPORT#{id}")
}
pub const CHECKPOINT_PK: &str = "CHECKPOINT";
pub const MANIFEST_PK: &str = "MANIFEST";

/// An audit record as its chain item and a journal page carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub id: String,
    pub at: String,
    /// The FHIR AuditEvent JSON.
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Who acted, for the security alerts' per-agent queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// A chain record: the entry, linked to its predecessor by MAC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainItem {
    pub pk: String,
    pub sk: u64,
    pub prev: String,
    pub hash: String,
    #[serde(flatten)]
    pub entry: ChainEntry,
}

/// A shard's head: its last sequence number and hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadItem {
    pub pk: String,
    pub sk: u64,
    pub seq: u64,
    pub hash: String,
}

/// A signed checkpoint (with its signature) or a numbered export manifest
/// (with its export's id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveItem {
    pub pk: String,
    pub sk: u64,
    pub body: String,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub sig: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

/// An audit export's progress: its terms, the records done, and the
/// manifest number once numbered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportProgress {
    pub pk: String,
    pub sk: u64,
    pub terms: String,
    pub done: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<u64>,
}

/// The audit export waiting to run (one at a time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingExportItem {
    pub pk: String,
    pub sk: u64,
    pub id: String,
    pub since: String,
    pub until: String,
}

// ---- Outbox table (`pk` = aggregate, `sk` = time#id) ----

/// A domain event waiting for the relay (`pending`), or relayed (`sent`,
/// kept until `expires`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub pk: String,
    pub sk: String,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub detail: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

// ---- Claims table (`pk`): consumers' event claims and the registry roster ----

/// A consumer's claim on an event.
pub fn claim_pk(consumer: &str, event_id: &str) -> String {
    format!("{consumer}#{event_id}")
}
/// A consumer's claim: `claimed` (its lease protecting the processing)
/// or `done`; TTL removes it at `expires`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimItem {
    pub pk: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<i64>,
    pub expires: i64,
}

/// A patient reported to the registry, and since when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RosterItem {
    pub pk: String,
    pub since: String,
}

/// A patient reported to the registry.
pub fn roster_pk(patient: &str) -> String {
    format!("ROSTER#{patient}")
}
pub fn patient_of_roster(pk: &str) -> Option<&str> {
    pk.strip_prefix("ROSTER#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_and_parse_back() {
        assert_eq!(version_sk("Observation", "o1", 7), "V#Observation#o1#0000000007");
        assert!(version_sk("Observation", "o1", 9) < version_sk("Observation", "o1", 10));
        assert_eq!(parse_version_sk(&version_sk("Observation", "o#1", 3)), Some(("Observation", "o#1")));
        assert_eq!(parse_current_sk(&current_sk("Patient", "p1")), Some(("Patient", "p1")));
        assert_eq!(shard_of_chain(&chain_pk(3)), Some(3));
        assert_eq!(shard_of_head(&chain_pk(3)), None);
        assert!(version_sk("A", "b", 1).starts_with(&version_prefix(Some("A"), Some("b"))));
        assert!(index_sk("A", "b", "t").starts_with(&index_prefix(Some(("A", "b")))));
    }

    #[test]
    fn items_are_the_attributes_the_tables_hold() {
        let record = RecordItem {
            pk: patient_pk("p1"),
            sk: current_sk("Patient", "p1"),
            ver: 2,
            del: false,
            upd: "2026-12-07T10:00:00Z".into(),
            resource_type: "Patient".into(),
            ct: Some(vec![1, 2, 3]),
            tok: Some(vec!["t1".into()]),
        };
        let item = to_item(&record);
        assert_eq!(item["ver"], AttributeValue::N("2".into()));
        assert_eq!(item["del"], AttributeValue::Bool(false));
        assert_eq!(item["type"], AttributeValue::S("Patient".into()));
        assert_eq!(item["ct"], AttributeValue::B(vec![1, 2, 3].into()));
        assert_eq!(item["tok"], AttributeValue::L(vec![AttributeValue::S("t1".into())]));
        let back: RecordItem = from_item(&item).unwrap();
        assert_eq!((back.ver, back.ct, back.tok), (2, Some(vec![1, 2, 3]), Some(vec!["t1".into()])));

        // An absent optional attribute is left out, never stored as NULL.
        let deleted = to_item(&RecordItem { ct: None, tok: None, del: true, ..record });
        assert!(!deleted.contains_key("ct") && !deleted.contains_key("tok"));

        let chain = to_item(&ChainItem {
            pk: chain_pk(0),
            sk: 5,
            prev: "a".into(),
            hash: "b".into(),
            entry: ChainEntry { id: "i".into(), at: "t".into(), body: "{}".into(), patient: None, agent: None },
        });
        assert_eq!(chain["sk"], AttributeValue::N("5".into()));
        assert_eq!(chain["id"], AttributeValue::S("i".into()));
        assert!(!chain.contains_key("patient"));
        let header = TransactionHeader {
            pk: TRANSACTION_HEADERS.into(),
            sk: "t1".into(),
            state: "pending".into(),
            deadline: 1,
            created: "t".into(),
            done: false,
        };
        assert!(!to_item(&header).contains_key("done"), "the sweep looks for headers without `done`");
        assert_eq!(to_item(&TransactionHeader { done: true, ..header })["done"], AttributeValue::Bool(true));

        let back: ChainItem = from_item(&chain).unwrap();
        assert_eq!((back.sk, back.entry.id.as_str(), back.entry.patient), (5, "i", None));
    }

    #[test]
    fn an_item_this_code_did_not_write_is_an_integrity_failure() {
        let item = key(patient_pk("p1"), current_sk("Patient", "p1"));
        assert!(matches!(from_item::<RecordItem>(&item), Err(PortError::Integrity(_))));
    }
}
