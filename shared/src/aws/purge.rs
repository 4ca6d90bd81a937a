//! Retention on AWS: legal holds, the purge plan and the purge itself.
//! A patient whose last activity is older than the retention period and
//! who is under no hold is crypto-shredded: the wrapped data key is deleted
//! (every ciphertext of the patient, in the table, in backups and in the
//! documents bucket, becomes unreadable) and the patient's sealed document
//! objects are deleted. The purge leaves one audit record per patient that
//! names what was purged (counts, the digest of the destroyed wrapped key,
//! the policy) and holds no PHI.

use super::dynamo::{get_s, patient_pk, query_all, DynamoStore};
use super::port_error;
use crate::audit::AuditEntry;
use crate::crypto::blind::BlindIndex;
use crate::crypto::{hex, sha256};
use crate::error::PortError;
use crate::ports::{DomainEvent, RecordStore};
use crate::retention::RetentionPolicy;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use std::collections::BTreeMap;

const HOLD_PK: &str = "HOLD";

/// One patient past retention, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub patient: String,
    pub last_activity: String,
    /// Current records by type (the Patient included).
    pub records: BTreeMap<String, usize>,
    pub held: bool,
    /// Already shredded by an earlier run.
    pub shredded: bool,
}

pub struct Purger<'a> {
    pub store: &'a DynamoStore,
    pub ddb: &'a aws_sdk_dynamodb::Client,
    pub s3: &'a aws_sdk_s3::Client,
    pub records_table: &'a str,
    pub documents_bucket: &'a str,
    pub index: &'a BlindIndex,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub shredded: usize,
    pub held: usize,
    pub already: usize,
    pub objects_deleted: usize,
}

impl Purger<'_> {
    /// Places a legal hold on a patient (reason code and ticket, never free
    /// text: holds are plaintext), audited.
    pub async fn place_hold(&self, patient: &str, by: &str, reason: &str, ticket: &str) -> Result<(), PortError> {
        self.ddb
            .put_item()
            .table_name(self.records_table)
            .item("pk", AttributeValue::S(HOLD_PK.into()))
            .item("sk", AttributeValue::S(patient.into()))
            .item("by", AttributeValue::S(by.into()))
            .item("reason", AttributeValue::S(reason.into()))
            .item("ticket", AttributeValue::S(ticket.into()))
            .item("at", AttributeValue::S(crate::fhir::now_instant()))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.audit(patient, by, "hold-place", vec![]).await
    }

    /// Releases a hold, audited.
    pub async fn release_hold(&self, patient: &str, by: &str) -> Result<(), PortError> {
        self.ddb
            .delete_item()
            .table_name(self.records_table)
            .key("pk", AttributeValue::S(HOLD_PK.into()))
            .key("sk", AttributeValue::S(patient.into()))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.audit(patient, by, "hold-release", vec![]).await
    }

    async fn audit(
        &self,
        patient: &str,
        by: &str,
        interaction: &'static str,
        entities: Vec<String>,
    ) -> Result<(), PortError> {
        let entry = AuditEntry {
            id: crate::crypto::random_id(),
            recorded: crate::fhir::now_instant(),
            interaction,
            outcome: crate::audit::Outcome::Success,
            status: 200,
            agent: crate::audit::Agent { subject: Some(by.into()), ..Default::default() },
            purpose: "HOPERAT",
            break_glass_reason_sha256: None,
            patient: Some(patient.into()),
            entities,
            query_params: vec![],
            observer: "medrec-purge".into(),
            request_id: None,
        };
        let events: Vec<DomainEvent> = match interaction {
            "purge" => vec![DomainEvent {
                id: crate::crypto::random_id(),
                event_type: "RecordsPurged",
                aggregate: patient.into(),
                at: entry.recorded.clone(),
                detail: json!({"patient": patient, "auditEventId": entry.id}),
            }],
            _ => vec![],
        };
        self.store.audit(&entry, events).await
    }

    async fn held(&self) -> Result<std::collections::BTreeSet<String>, PortError> {
        let items = query_all(self.ddb, self.records_table, &|q| {
            q.key_condition_expression("pk = :pk").expression_attribute_values(":pk", AttributeValue::S(HOLD_PK.into()))
        })
        .await?;
        Ok(items.iter().filter_map(|i| get_s(i, "sk").map(str::to_owned)).collect())
    }

    /// Every patient whose last activity is older than the policy allows,
    /// as of `now` (dry run: nothing changes).
    pub async fn plan(&self, policy: &RetentionPolicy, now: time::OffsetDateTime) -> Result<Vec<Candidate>, PortError> {
        let cutoff = crate::fhir::instant(policy.cutoff(now));
        let held = self.held().await?;
        let all = self.index.token("Patient", "_all", "");
        let mut out = vec![];
        for patient in self.store.ids_for_token("Patient", &all).await? {
            let items = query_all(self.ddb, self.records_table, &|q| {
                q.key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", AttributeValue::S(patient_pk(&patient)))
                    .consistent_read(true)
            })
            .await?;
            let mut records = BTreeMap::new();
            let mut last = String::new();
            let mut shredded = true;
            for item in &items {
                let sk = get_s(item, "sk").unwrap_or_default();
                if sk == "KEY" {
                    shredded = false;
                }
                if let Some(rest) = sk.strip_prefix("C#") {
                    *records.entry(rest.split('#').next().unwrap_or_default().to_owned()).or_insert(0) += 1;
                    last = last.max(get_s(item, "upd").unwrap_or_default().to_owned());
                }
            }
            if !last.is_empty() && last < cutoff {
                out.push(Candidate { held: held.contains(&patient), patient, last_activity: last, records, shredded });
            }
        }
        Ok(out)
    }

    /// Purges what the plan finds, at most `limit` patients per call (a
    /// Lambda's time limit); held patients are skipped, shredded ones not
    /// redone, so a rerun after a crash finishes the work without doubling it.
    pub async fn run(
        &self,
        policy: &RetentionPolicy,
        now: time::OffsetDateTime,
        limit: usize,
        by: &str,
    ) -> Result<PurgeReport, PortError> {
        let mut report = PurgeReport::default();
        for c in self.plan(policy, now).await? {
            if c.held {
                report.held += 1;
                continue;
            }
            if c.shredded {
                // What a run that stopped after the key left: removed now.
                report.objects_deleted += self.delete_objects(&c.patient).await?;
                self.drop_index_entries(&c.patient).await?;
                report.already += 1;
                continue;
            }
            if report.shredded == limit {
                continue;
            }
            // Objects first: a crash after them leaves the key, and the rerun
            // finds nothing left to delete and shreds then.
            report.objects_deleted += self.delete_objects(&c.patient).await?;
            let wrapped = self.store.wrapped_key(&c.patient).await?.unwrap_or_default();
            self.ddb
                .delete_item()
                .table_name(self.records_table)
                .key("pk", AttributeValue::S(patient_pk(&c.patient)))
                .key("sk", AttributeValue::S("KEY".into()))
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
            self.drop_index_entries(&c.patient).await?;
            let mut entities: Vec<String> =
                c.records.iter().map(|(ty, n)| format!("urn:medrec:purged:{ty}:{n}")).collect();
            entities.push(format!("urn:medrec:shredded-key-sha256:{}", hex(&sha256(&wrapped))));
            entities.push(format!("urn:medrec:policy:{}:{}y", policy.class, policy.years));
            self.audit(&c.patient, by, "purge", entities).await?;
            report.shredded += 1;
        }
        Ok(report)
    }

    /// The blind-index entries go too: a shredded patient must not match a
    /// search it can no longer answer (and the plan stops listing it).
    async fn drop_index_entries(&self, patient: &str) -> Result<(), PortError> {
        let index_items = query_all(self.ddb, self.records_table, &|q| {
            q.key_condition_expression("pk = :pk AND begins_with(sk, :i)")
                .expression_attribute_values(":pk", AttributeValue::S(patient_pk(patient)))
                .expression_attribute_values(":i", AttributeValue::S("I#".into()))
        })
        .await?;
        for item in &index_items {
            self.ddb
                .delete_item()
                .table_name(self.records_table)
                .key("pk", AttributeValue::S(patient_pk(patient)))
                .key("sk", AttributeValue::S(get_s(item, "sk").unwrap_or_default().to_owned()))
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
        }
        Ok(())
    }

    async fn delete_objects(&self, patient: &str) -> Result<usize, PortError> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(self.documents_bucket)
            .prefix(format!("{patient}/"))
            .send()
            .await
            .map_err(|e| port_error("s3", &e))?;
        let mut n = 0;
        for o in listed.contents() {
            let Some(key) = o.key() else { continue };
            self.s3
                .delete_object()
                .bucket(self.documents_bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| port_error("s3", &e))?;
            n += 1;
        }
        Ok(n)
    }
}

/// What a purge needs, built once from the service's configuration (the
/// scheduled function) or an operator's target (the CLI).
pub struct PurgeContext {
    pub store: DynamoStore,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub index: BlindIndex,
    pub records_table: String,
    pub documents_bucket: String,
}

impl PurgeContext {
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        local: bool,
        tables: super::dynamo::Tables,
        records_key_id: &str,
        shards: u32,
        documents_bucket: &str,
    ) -> Result<PurgeContext, PortError> {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let kms = super::kms::KmsKeys::new(aws_sdk_kms::Client::new(sdk), records_key_id);
        let root = crate::runtime::root_secret(&ddb, &kms, &tables.records).await?;
        let keys = crate::service::ServiceKeys::derive(&root);
        let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(local).build();
        Ok(PurgeContext {
            records_table: tables.records.clone(),
            store: DynamoStore::new(ddb.clone(), tables, keys.audit_chain, shards),
            ddb,
            s3: aws_sdk_s3::Client::from_conf(s3),
            index: BlindIndex::new(keys.blind_index),
            documents_bucket: documents_bucket.to_owned(),
        })
    }

    pub fn purger(&self) -> Purger<'_> {
        Purger {
            store: &self.store,
            ddb: &self.ddb,
            s3: &self.s3,
            records_table: &self.records_table,
            documents_bucket: &self.documents_bucket,
            index: &self.index,
        }
    }
}
