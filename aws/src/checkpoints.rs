//! The audit archive (`ports::AuditArchive`) on AWS: chain heads, numbered
//! checkpoints and manifests and export progress in the audit table,
//! signatures by KMS (`Sign`, ECDSA P-256 over a statement of the body's
//! SHA-256), the archive bucket whose Object Lock in compliance mode keeps
//! every object unchanged for the retention period. What is written when
//! is `audit::archive`'s decision; this is I/O only.

use super::dynamo::{get_s, n, query_all, s};
use super::port_error;
use super::schema::{
    audit_key, chain_pk, export_pk, from_item, head_pk, to_item, ArchiveItem, ExportProgress, HeadItem,
    PendingExportItem, CHECKPOINT_PK, MANIFEST_PK, PENDING_EXPORT_PK,
};
use crate::audit::checkpoint::Signed;
use crate::error::PortError;
use crate::ports::{AuditArchive, ExportState, PendingExport, Series};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub struct Checkpoints {
    pub ddb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub s3: aws_sdk_s3::Client,
    pub audit_table: String,
    pub archive_bucket: String,
    pub signing_key_id: String,
    pub shards: u32,
}

fn partition(series: Series) -> &'static str {
    match series {
        Series::Checkpoint => CHECKPOINT_PK,
        Series::Manifest => MANIFEST_PK,
    }
}

impl Checkpoints {
    /// Every stored checkpoint, oldest first.
    pub async fn all(&self) -> Result<Vec<Signed>, PortError> {
        let items = query_all(&self.ddb, &self.audit_table, &|q| {
            q.key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(partition(Series::Checkpoint)))
                .consistent_read(true)
        })
        .await?;
        // Read as found, not as typed items: verification reports a
        // checkpoint stripped of its body or signature (the signature then
        // fails), it does not stop at it.
        Ok(items
            .iter()
            .map(|item| {
                let body = get_s(item, "body").unwrap_or_default().to_owned();
                let signature = item.get("sig").and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec());
                Signed { body, signature: signature.unwrap_or_default() }
            })
            .collect())
    }

    /// The signing key's public half (SubjectPublicKeyInfo DER).
    pub async fn public_key(&self) -> Result<Vec<u8>, PortError> {
        let out =
            self.kms.get_public_key().key_id(&self.signing_key_id).send().await.map_err(|e| port_error("kms", &e))?;
        out.public_key()
            .map(|k| k.as_ref().to_vec())
            .ok_or(PortError::Backend { service: "kms", detail: "no public key".into() })
    }

    /// An item of the audit table, read consistently.
    async fn item(&self, pk: &str, sk: u64) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        get(&self.ddb, &self.audit_table, pk.to_owned(), sk, None).await
    }
}

/// How far a chain record's `recorded` may trail the record appended after
/// it in its shard: a record is stamped when its request starts and
/// appended when it ends, and no function runs longer than 15 minutes.
const APPEND_SKEW: time::Duration = time::Duration::minutes(15);

/// `instant` moved by `by`, or None at the ends of time (the searches then
/// start at the chain's first record, or end at its head).
fn shifted(instant: &str, by: time::Duration) -> Option<String> {
    let (t, _) = crate::fhir::primitives::datetime_bounds(instant)?;
    let moved = t.checked_add(by)?;
    (1..=9999).contains(&moved.year()).then(|| crate::fhir::instant(moved))
}

/// One audit-table item, read consistently; only `projection` of it if given.
async fn get(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: String,
    sk: u64,
    projection: Option<&str>,
) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
    let mut req = ddb
        .get_item()
        .table_name(table)
        .set_key(Some(audit_key(pk, sk)))
        .set_projection_expression(projection.map(str::to_owned));
    if projection.is_some_and(|p| p.contains("#at")) {
        req = req.expression_attribute_names("#at", "at");
    }
    let out = req.consistent_read(true).send().await.map_err(|e| port_error("dynamodb", &e))?;
    Ok(out.item)
}

/// The first sequence number of `shard` (1..=`head`) recorded at or after
/// `instant`, `head + 1` if none: a binary search, exact because a later
/// record is never stamped more than `APPEND_SKEW` before an earlier one and
/// `instant` already has that margin taken off (or added).
async fn first_at_or_after(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    shard: u32,
    head: u64,
    instant: &str,
) -> Result<u64, PortError> {
    let (mut lo, mut hi) = (1, head + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let item = get(ddb, table, chain_pk(shard), mid, Some("#at")).await;
        // A record that cannot be read counts as inside: the window then
        // reads more, never less.
        let at = item?.as_ref().and_then(|i| get_s(i, "at").map(str::to_owned));
        if at.is_none_or(|at| at.as_str() >= instant) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Every chain record's AuditEvent recorded from `since` to `until`, in
/// (recorded, id) order. The chains are keyed by sequence, not time (that
/// is what makes appends race-free): each shard's sequence range is found
/// by binary search on `recorded`, with `APPEND_SKEW` of margin, then read
/// by one query, so a window costs its own size and a few dozen reads, not
/// the whole trail.
pub async fn chain_window(
    ddb: &aws_sdk_dynamodb::Client,
    audit_table: &str,
    shards: u32,
    since: &str,
    until: &str,
) -> Result<Vec<Value>, PortError> {
    let mut events = vec![];
    for shard in 0..shards {
        let head = get(ddb, audit_table, head_pk(shard), 0, Some("seq")).await?;
        let Some(head) = head.as_ref().and_then(|h| h.get("seq")?.as_n().ok()?.parse::<u64>().ok()) else {
            continue;
        };
        let first = match shifted(since, -APPEND_SKEW) {
            Some(from) => first_at_or_after(ddb, audit_table, shard, head, &from).await?,
            None => 1,
        };
        let end = match shifted(until, APPEND_SKEW) {
            Some(to) => first_at_or_after(ddb, audit_table, shard, head, &to).await?,
            None => head + 1,
        };
        if first >= end {
            continue;
        }
        let items = query_all(ddb, audit_table, &|q| {
            q.key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                .filter_expression("#at BETWEEN :since AND :until")
                .expression_attribute_names("#at", "at")
                .expression_attribute_values(":pk", s(chain_pk(shard)))
                .expression_attribute_values(":first", n(first))
                .expression_attribute_values(":last", n(end - 1))
                .expression_attribute_values(":since", s(since))
                .expression_attribute_values(":until", s(until))
                .consistent_read(true)
        })
        .await?;
        for item in &items {
            let body = get_s(item, "body").unwrap_or_default();
            events.push(serde_json::from_str(body).map_err(|_| PortError::Integrity("audit body".into()))?);
        }
    }
    let key = |e: &Value| (e["recorded"].as_str().unwrap_or("").to_owned(), e["id"].as_str().unwrap_or("").to_owned());
    events.sort_by_key(key);
    Ok(events)
}

impl AuditArchive for Checkpoints {
    async fn heads(&self) -> Result<BTreeMap<u32, (u64, String)>, PortError> {
        let mut heads = BTreeMap::new();
        for shard in 0..self.shards {
            if let Some(item) = self.item(&head_pk(shard), 0).await? {
                let head: HeadItem = from_item(&item)?;
                heads.insert(shard, (head.seq, head.hash));
            }
        }
        Ok(heads)
    }

    /// One item read, however long the series.
    async fn last(&self, series: Series) -> Result<Option<(u64, String)>, PortError> {
        let out = self
            .ddb
            .query()
            .table_name(&self.audit_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(partition(series)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        let last = out.items().first().map(from_item::<ArchiveItem>).transpose()?;
        Ok(last.map(|a| (a.sk, a.body)))
    }

    async fn numbered(&self, series: Series, number: u64) -> Result<Option<(String, Vec<u8>)>, PortError> {
        let item = self.item(partition(series), number).await?;
        let stored = item.as_ref().map(from_item::<ArchiveItem>).transpose()?;
        Ok(stored.map(|a| (a.body, a.sig.unwrap_or_default())))
    }

    async fn store_checkpoint(&self, number: u64, body: &str, signature: &[u8]) -> Result<(), PortError> {
        self.ddb
            .put_item()
            .table_name(&self.audit_table)
            .set_item(Some(to_item(&ArchiveItem {
                pk: CHECKPOINT_PK.into(),
                sk: number,
                body: body.into(),
                sig: Some(signature.to_vec()),
                export: None,
            })))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => PortError::ConditionFailed(0),
                _ => port_error("dynamodb", &e),
            })?;
        Ok(())
    }

    async fn number_manifest(&self, export: &str, number: u64, body: &str) -> Result<bool, PortError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
        let built =
            |e: aws_sdk_dynamodb::error::BuildError| PortError::Backend { service: "dynamodb", detail: e.to_string() };
        let put = Put::builder()
            .table_name(&self.audit_table)
            .set_item(Some(to_item(&ArchiveItem {
                pk: MANIFEST_PK.into(),
                sk: number,
                body: body.into(),
                sig: None,
                export: Some(export.into()),
            })))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(built)?;
        let progress = Update::builder()
            .table_name(&self.audit_table)
            .set_key(Some(audit_key(export_pk(export), 0)))
            .update_expression("SET manifest = :n")
            .condition_expression("attribute_not_exists(manifest)")
            .expression_attribute_values(":n", n(number))
            .build()
            .map_err(built)?;
        let committed = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(progress).build())
            .send()
            .await;
        match committed {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_transaction_canceled_exception()) => Ok(false),
            Err(e) => Err(port_error("dynamodb", &e)),
        }
    }

    async fn sign(&self, statement: &str) -> Result<Vec<u8>, PortError> {
        let signed = self
            .kms
            .sign()
            .key_id(&self.signing_key_id)
            .message(Blob::new(statement.as_bytes().to_vec()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| port_error("kms", &e))?;
        signed
            .signature()
            .map(|s| s.as_ref().to_vec())
            .ok_or(PortError::Backend { service: "kms", detail: "no signature".into() })
    }

    fn signing_key_id(&self) -> &str {
        &self.signing_key_id
    }

    async fn archive(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), PortError> {
        self.s3
            .put_object()
            .bucket(&self.archive_bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(|e| port_error("s3", &e))?;
        Ok(())
    }

    async fn archived(&self, key: &str) -> Result<bool, PortError> {
        match self.s3.head_object().bucket(&self.archive_bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(port_error("s3", &e)),
        }
    }

    async fn window(&self, since: &str, until: &str) -> Result<Vec<Value>, PortError> {
        chain_window(&self.ddb, &self.audit_table, self.shards, since, until).await
    }

    async fn export_state(&self, export: &str) -> Result<Option<ExportState>, PortError> {
        let item = self.item(&export_pk(export), 0).await?;
        let progress = item.as_ref().map(from_item::<ExportProgress>).transpose()?;
        Ok(progress.map(|p| ExportState { terms: p.terms, done: p.done as usize, manifest: p.manifest }))
    }

    async fn record_export_progress(&self, export: &str, terms: &str, done: usize) -> Result<(), PortError> {
        self.ddb
            .put_item()
            .table_name(&self.audit_table)
            .set_item(Some(to_item(&ExportProgress {
                pk: export_pk(export),
                sk: 0,
                terms: terms.into(),
                done: done as u64,
                manifest: None,
            })))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(())
    }

    async fn pending_export(&self) -> Result<Option<PendingExport>, PortError> {
        let item = self.item(PENDING_EXPORT_PK, 0).await?;
        let pending = item.as_ref().map(from_item::<PendingExportItem>).transpose()?;
        Ok(pending.map(|p| PendingExport { id: p.id, since: p.since, until: p.until }))
    }

    async fn start_pending_export(&self, export: &PendingExport) -> Result<(), PortError> {
        self.ddb
            .put_item()
            .table_name(&self.audit_table)
            .set_item(Some(to_item(&PendingExportItem {
                pk: PENDING_EXPORT_PK.into(),
                sk: 0,
                id: export.id.clone(),
                since: export.since.clone(),
                until: export.until.clone(),
            })))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(())
    }

    async fn finish_pending_export(&self) -> Result<(), PortError> {
        self.ddb
            .delete_item()
            .table_name(&self.audit_table)
            .set_key(Some(audit_key(PENDING_EXPORT_PK, 0)))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(())
    }
}
