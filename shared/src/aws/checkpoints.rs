//! Audit checkpoints on AWS: the heads read from the audit table, the
//! checkpoint signed by KMS (`Sign`, ECDSA P-256 over a statement of the
//! body's SHA-256),
//! stored in the audit table (numbered, conditional: no two checkpoints
//! share a number) and written to the archive bucket, whose Object Lock in
//! compliance mode keeps it unchanged for the retention period.

use super::dynamo::{get_n, get_s};
use super::port_error;
use crate::audit::checkpoint::{Checkpoint, Signed};
use crate::error::PortError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use std::collections::BTreeMap;

const PK: &str = "CHECKPOINT";

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
            let out = self
                .ddb
                .get_item()
                .table_name(&self.audit_table)
                .key("pk", AttributeValue::S(format!("HEAD#{shard}")))
                .key("sk", AttributeValue::N("0".into()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
            if let Some(item) = out.item() {
                let seq = get_n(item, "seq").ok_or_else(|| PortError::Integrity("head without seq".into()))?;
                heads.insert(shard, (seq, get_s(item, "hash").unwrap_or_default().to_owned()));
            }
        }
        Ok(heads)
    }

    /// Every stored checkpoint, oldest first.
    pub async fn all(&self) -> Result<Vec<Signed>, PortError> {
        let mut out = vec![];
        let mut start = None;
        loop {
            let page = self
                .ddb
                .query()
                .table_name(&self.audit_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(PK.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
            for item in page.items() {
                let body = get_s(item, "body").unwrap_or_default().to_owned();
                let signature =
                    item.get("sig").and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec()).unwrap_or_default();
                out.push(Signed { body, signature });
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// The signing key's public half (SubjectPublicKeyInfo DER).
    pub async fn public_key(&self) -> Result<Vec<u8>, PortError> {
        let out =
            self.kms.get_public_key().key_id(&self.signing_key_id).send().await.map_err(|e| port_error("kms", &e))?;
        out.public_key()
            .map(|k| k.as_ref().to_vec())
            .ok_or(PortError::Backend { service: "kms", detail: "no public key".into() })
    }

    /// Signs and stores the next checkpoint of the current heads.
    pub async fn write(&self, at: &str) -> Result<Checkpoint, PortError> {
        let previous = self.all().await?;
        let heads = self.heads().await?;
        let cp = Checkpoint {
            number: previous.len() as u64 + 1,
            at: at.to_owned(),
            heads,
            previous: previous.last().map(|p| Checkpoint::digest_of(&p.body)),
        };
        let body = cp.body();
        let signed = self
            .kms
            .sign()
            .key_id(&self.signing_key_id)
            .message(Blob::new(Checkpoint::statement(&body).into_bytes()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| port_error("kms", &e))?;
        let signature = signed
            .signature()
            .map(|s| s.as_ref().to_vec())
            .ok_or(PortError::Backend { service: "kms", detail: "no signature".into() })?;
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
        let object = serde_json::json!({
            "checkpoint": body,
            "signature": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &signature),
            "keyId": self.signing_key_id,
            "algorithm": "ECDSA_SHA_256",
        });
        self.s3
            .put_object()
            .bucket(&self.archive_bucket)
            .key(format!("checkpoints/{:012}.json", cp.number))
            .content_type("application/json")
            .body(object.to_string().into_bytes().into())
            .send()
            .await
            .map_err(|e| port_error("s3", &e))?;
        Ok(cp)
    }
}
