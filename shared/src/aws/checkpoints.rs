//! Audit checkpoints and exports on AWS: the heads read from the audit table, the
//! checkpoint signed by KMS (`Sign`, ECDSA P-256 over a statement of the
//! body's SHA-256),
//! stored in the audit table (numbered, conditional: no two checkpoints
//! share a number) and written to the archive bucket, whose Object Lock in
//! compliance mode keeps it unchanged for the retention period.

use super::dynamo::{get_n, get_s, query_all};
use super::port_error;
use crate::audit::checkpoint::{Checkpoint, Signed};
use crate::audit::export;
use crate::error::PortError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::collections::HashMap;

const PK: &str = "CHECKPOINT";
/// Records per chunk of a scheduled export.
const SCHEDULED_CHUNK_RECORDS: usize = 10_000;
/// Tries at numbering a manifest while other exports take the numbers.
const MANIFEST_ATTEMPTS: usize = 5;

/// Where an export stands.
#[derive(Debug)]
pub struct ExportProgress {
    pub chunks_done: usize,
    pub chunks: usize,
    pub records: usize,
    /// Set when the export is complete.
    pub manifest: Option<export::Manifest>,
}

pub struct Checkpoints {
    pub ddb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub s3: aws_sdk_s3::Client,
    pub audit_table: String,
    pub archive_bucket: String,
    pub signing_key_id: String,
    pub shards: u32,
}

impl Checkpoints {
    async fn heads(&self) -> Result<BTreeMap<u32, (u64, String)>, PortError> {
        let mut heads = BTreeMap::new();
        for shard in 0..self.shards {
            if let Some(item) = self.item(&format!("HEAD#{shard}"), 0).await? {
                let seq = get_n(&item, "seq").ok_or_else(|| PortError::Integrity("head without seq".into()))?;
                heads.insert(shard, (seq, get_s(&item, "hash").unwrap_or_default().to_owned()));
            }
        }
        Ok(heads)
    }

    /// Every stored checkpoint, oldest first.
    pub async fn all(&self) -> Result<Vec<Signed>, PortError> {
        let items = query_all(&self.ddb, &self.audit_table, &|q| {
            q.key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(PK.into()))
                .consistent_read(true)
        })
        .await?;
        Ok(items
            .iter()
            .map(|item| Signed {
                body: get_s(item, "body").unwrap_or_default().to_owned(),
                signature: item.get("sig").and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec()).unwrap_or_default(),
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

    /// KMS `Sign` (ECDSA_SHA_256) of a statement, DER signature.
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

    async fn put_object(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), PortError> {
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

    /// Every chain record's AuditEvent recorded from `since` to `until`,
    /// in export order (recorded, id).
    async fn window(&self, since: &str, until: &str) -> Result<Vec<Value>, PortError> {
        let mut events = vec![];
        for shard in 0..self.shards {
            let items = query_all(&self.ddb, &self.audit_table, &|q| {
                q.key_condition_expression("pk = :pk")
                    .filter_expression("#at BETWEEN :since AND :until")
                    .expression_attribute_names("#at", "at")
                    .expression_attribute_values(":pk", AttributeValue::S(format!("CHAIN#{shard}")))
                    .expression_attribute_values(":since", AttributeValue::S(since.into()))
                    .expression_attribute_values(":until", AttributeValue::S(until.into()))
                    .consistent_read(true)
            })
            .await?;
            for item in &items {
                let body = get_s(item, "body").unwrap_or_default();
                events.push(serde_json::from_str(body).map_err(|_| PortError::Integrity("audit body".into()))?);
            }
        }
        let key =
            |e: &Value| (e["recorded"].as_str().unwrap_or("").to_owned(), e["id"].as_str().unwrap_or("").to_owned());
        events.sort_by_key(key);
        Ok(events)
    }

    /// Exports the window as chunks and a signed manifest, writing at most
    /// `chunk_limit` chunks in this call (to stay inside a Lambda's time
    /// limit). Progress is recorded after each chunk; a rerun with the same
    /// id continues, rewriting an interrupted chunk with identical bytes.
    pub async fn export(
        &self,
        id: &str,
        since: &str,
        until: &str,
        chunk_records: usize,
        chunk_limit: usize,
    ) -> Result<ExportProgress, PortError> {
        let progress_key = |done: usize| {
            HashMap::from([
                ("pk".to_owned(), AttributeValue::S(format!("EXPORT#{id}"))),
                ("sk".to_owned(), AttributeValue::N("0".into())),
                ("terms".to_owned(), AttributeValue::S(format!("{since}|{until}|{chunk_records}"))),
                ("done".to_owned(), AttributeValue::N(done.to_string())),
            ])
        };
        let stored = self.item(&format!("EXPORT#{id}"), 0).await?;
        let mut done = 0usize;
        let mut committed = None;
        if let Some(item) = &stored {
            if get_s(item, "terms") != Some(&format!("{since}|{until}|{chunk_records}")) {
                return Err(PortError::ConditionFailed(0));
            }
            done = get_n(item, "done").unwrap_or(0) as usize;
            committed = get_n(item, "manifest");
        }
        let events = self.window(since, until).await?;
        let chunks = events.len().div_ceil(chunk_records).max(1);
        let object = |i: usize, kind: &str| format!("exports/{id}/{i:06}.{kind}.ndjson");
        let mut written = 0;
        while done < chunks && written < chunk_limit {
            let (fhir, ocsf, _) = export::render_chunk(&events, done, chunk_records);
            self.put_object(&object(done, "fhir"), fhir, "application/fhir+ndjson").await?;
            self.put_object(&object(done, "ocsf"), ocsf, "application/x-ndjson").await?;
            done += 1;
            written += 1;
            self.ddb
                .put_item()
                .table_name(&self.audit_table)
                .set_item(Some(progress_key(done)))
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
        }
        if done < chunks {
            return Ok(ExportProgress { chunks_done: done, chunks, records: events.len(), manifest: None });
        }
        let body = match committed {
            Some(number) => self.numbered_body("MANIFEST", number).await?,
            None => {
                let chunks = (0..chunks)
                    .map(|i| {
                        let (fhir, ocsf, records) = export::render_chunk(&events, i, chunk_records);
                        export::Chunk {
                            fhir_key: object(i, "fhir"),
                            fhir_sha256: export::digest(&fhir),
                            ocsf_key: object(i, "ocsf"),
                            ocsf_sha256: export::digest(&ocsf),
                            records,
                        }
                    })
                    .collect::<Vec<_>>();
                let manifest = |previous| export::Manifest {
                    export: id.to_owned(),
                    since: since.to_owned(),
                    until: until.to_owned(),
                    chunks: chunks.clone(),
                    previous,
                };
                self.chain_manifest(id, manifest).await?
            }
        };
        let manifest: export::Manifest =
            serde_json::from_str(&body).map_err(|_| PortError::Integrity("manifest".into()))?;
        let signature = self.sign(&export::Manifest::statement(&body)).await?;
        let object = json!({
            "manifest": body,
            "signature": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &signature),
            "keyId": self.signing_key_id,
            "algorithm": "ECDSA_SHA_256",
        });
        self.put_object(&format!("exports/{id}/manifest.json"), object.to_string().into_bytes(), "application/json")
            .await?;
        Ok(ExportProgress { chunks_done: chunks, chunks, records: events.len(), manifest: Some(manifest) })
    }

    /// Numbers the export's manifest into the chain and records the number
    /// in the export's progress, in one transaction: a rerun after a crash
    /// (or after the answer was lost) finds the number there and archives
    /// the same body; an export that lost the race for a number chains
    /// after the winner. The manifest's body is returned.
    async fn chain_manifest(
        &self,
        id: &str,
        manifest: impl Fn(Option<String>) -> export::Manifest,
    ) -> Result<String, PortError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
        let built =
            |e: aws_sdk_dynamodb::error::BuildError| PortError::Backend { service: "dynamodb", detail: e.to_string() };
        for _ in 0..MANIFEST_ATTEMPTS {
            if let Some(number) = self.item(&format!("EXPORT#{id}"), 0).await?.and_then(|i| get_n(&i, "manifest")) {
                return self.numbered_body("MANIFEST", number).await;
            }
            let previous = self.last("MANIFEST").await?;
            let number = previous.as_ref().map_or(1, |(n, _)| n + 1);
            let body = manifest(previous.map(|(_, body)| export::digest(body.as_bytes()))).body();
            let put = Put::builder()
                .table_name(&self.audit_table)
                .item("pk", AttributeValue::S("MANIFEST".into()))
                .item("sk", AttributeValue::N(number.to_string()))
                .item("body", AttributeValue::S(body.clone()))
                .item("export", AttributeValue::S(id.into()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(built)?;
            let progress = Update::builder()
                .table_name(&self.audit_table)
                .key("pk", AttributeValue::S(format!("EXPORT#{id}")))
                .key("sk", AttributeValue::N("0".into()))
                .update_expression("SET manifest = :n")
                .condition_expression("attribute_not_exists(manifest)")
                .expression_attribute_values(":n", AttributeValue::N(number.to_string()))
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
                Ok(_) => return Ok(body),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_transaction_canceled_exception()) => continue,
                Err(e) => return Err(port_error("dynamodb", &e)),
            }
        }
        Err(PortError::Backend { service: "dynamodb", detail: "manifest chain contention".into() })
    }

    /// An item of the audit table (a head, a numbered checkpoint or
    /// manifest, an export's progress), read consistently.
    async fn item(&self, pk: &str, sk: u64) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.audit_table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::N(sk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(out.item)
    }

    async fn numbered_body(&self, pk: &str, number: u64) -> Result<String, PortError> {
        let item = self.item(pk, number).await?;
        item.as_ref()
            .and_then(|i| get_s(i, "body"))
            .map(str::to_owned)
            .ok_or_else(|| PortError::Integrity(format!("{pk} {number} is missing")))
    }

    /// The scheduled export: resumes the export in progress, or starts one
    /// from the end of the last manifested window to `now - settle` (records
    /// are stamped when a request starts and committed when it ends, so the
    /// window stops short of the present). None when there is nothing new.
    pub async fn scheduled_export(
        &self,
        now: time::OffsetDateTime,
        settle: time::Duration,
        chunk_limit: usize,
    ) -> Result<Option<ExportProgress>, PortError> {
        let pending = self.item("EXPORT#pending", 0).await?;
        let (id, since, until) = match &pending {
            Some(item) => (
                get_s(item, "id").unwrap_or_default().to_owned(),
                get_s(item, "since").unwrap_or_default().to_owned(),
                get_s(item, "until").unwrap_or_default().to_owned(),
            ),
            None => {
                let since = match self.last("MANIFEST").await? {
                    Some((_, body)) => {
                        let last: export::Manifest =
                            serde_json::from_str(&body).map_err(|_| PortError::Integrity("manifest".into()))?;
                        let (end, _) = crate::fhir::primitives::datetime_bounds(&last.until)
                            .ok_or_else(|| PortError::Integrity("manifest window".into()))?;
                        crate::fhir::instant(end + time::Duration::milliseconds(1))
                    }
                    None => "2000-01-01T00:00:00.000Z".to_owned(),
                };
                let until = crate::fhir::instant(now - settle);
                if until <= since {
                    return Ok(None);
                }
                let id = format!("scheduled-{}", until.replace(':', ""));
                self.ddb
                    .put_item()
                    .table_name(&self.audit_table)
                    .item("pk", AttributeValue::S("EXPORT#pending".into()))
                    .item("sk", AttributeValue::N("0".into()))
                    .item("id", AttributeValue::S(id.clone()))
                    .item("since", AttributeValue::S(since.clone()))
                    .item("until", AttributeValue::S(until.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await
                    .map_err(|e| port_error("dynamodb", &e))?;
                (id, since, until)
            }
        };
        let progress = self.export(&id, &since, &until, SCHEDULED_CHUNK_RECORDS, chunk_limit).await?;
        if progress.manifest.is_some() {
            self.ddb
                .delete_item()
                .table_name(&self.audit_table)
                .key("pk", AttributeValue::S("EXPORT#pending".into()))
                .key("sk", AttributeValue::N("0".into()))
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
        }
        Ok(Some(progress))
    }

    /// The newest item of a numbered partition (checkpoints, manifests):
    /// (number, body), if any. One item read, however long the history.
    async fn last(&self, pk: &str) -> Result<Option<(u64, String)>, PortError> {
        let out = self
            .ddb
            .query()
            .table_name(&self.audit_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(out.items().first().map(|i| (get_n(i, "sk").unwrap_or(0), get_s(i, "body").unwrap_or_default().to_owned())))
    }

    /// Signs and stores the next checkpoint of the current heads. The one
    /// before is archived first if it is not yet: a run that stored its
    /// checkpoint and then failed to archive it leaves the Object Lock copy
    /// to the next run, never missing.
    pub async fn write(&self, at: &str) -> Result<Checkpoint, PortError> {
        let previous = self.last(PK).await?;
        if let Some((number, body)) = &previous {
            if !self.archived(&checkpoint_object(*number)).await? {
                let signature = self
                    .item(PK, *number)
                    .await?
                    .and_then(|i| i.get("sig").and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec()));
                let signature =
                    signature.ok_or_else(|| PortError::Integrity(format!("checkpoint {number} has no signature")))?;
                self.archive_checkpoint(*number, body, &signature).await?;
            }
        }
        let heads = self.heads().await?;
        let cp = Checkpoint {
            number: previous.as_ref().map_or(1, |(n, _)| n + 1),
            at: at.to_owned(),
            heads,
            previous: previous.map(|(_, body)| Checkpoint::digest_of(&body)),
        };
        let body = cp.body();
        let signature = self.sign(&Checkpoint::statement(&body)).await?;
        self.ddb
            .put_item()
            .table_name(&self.audit_table)
            .item("pk", AttributeValue::S(PK.into()))
            .item("sk", AttributeValue::N(cp.number.to_string()))
            .item("body", AttributeValue::S(body.clone()))
            .item("sig", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(signature.clone())))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => PortError::ConditionFailed(0),
                _ => port_error("dynamodb", &e),
            })?;
        self.archive_checkpoint(cp.number, &body, &signature).await?;
        Ok(cp)
    }

    async fn archive_checkpoint(&self, number: u64, body: &str, signature: &[u8]) -> Result<(), PortError> {
        let object = json!({
            "checkpoint": body,
            "signature": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature),
            "keyId": self.signing_key_id,
            "algorithm": "ECDSA_SHA_256",
        });
        self.put_object(&checkpoint_object(number), object.to_string().into_bytes(), "application/json").await
    }

    async fn archived(&self, key: &str) -> Result<bool, PortError> {
        match self.s3.head_object().bucket(&self.archive_bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(port_error("s3", &e)),
        }
    }
}

fn checkpoint_object(number: u64) -> String {
    format!("checkpoints/{number:012}.json")
}
