//! Retention on AWS: legal holds, erasure requests, the purge plan and the
//! purge itself, over DynamoDB and S3. What may be destroyed, and what its
//! audit record names, is decided by `medrec_core::purge`; this module reads
//! and deletes. Two kinds of purge:
//! - a patient whose last activity is older than the retention period (or,
//!   after an erasure request, than the legal floor) and who is under no
//!   hold is crypto-shredded: the wrapped data key is deleted (every
//!   ciphertext of the patient, in the table, in backups and in the
//!   documents bucket, becomes unreadable) and the patient's sealed document
//!   objects are deleted;
//! - within a patient still retained, a resource deleted longer ago than the
//!   retention period loses every version, index entry and document object,
//!   and a version superseded longer ago loses its item.
//!
//! Each purge is audited before anything is destroyed, exactly once (a
//! crash never leaves a purge without its record), naming what goes: counts,
//! SHA-256 digests of the destroyed wrapped key or ciphertexts, the policy;
//! never PHI.

use super::dynamo::{batch_write_all, get_s, query_all, s, DynamoStore};
use super::port_error;
use super::schema::{
    self, current_sk, from_item, index_prefix, key, locator_pk, patient_pk, to_item, version_prefix, ErasureRequest,
    Hold, RecordItem, DATA_KEY_SK, ERASE_PK, HOLD_PK, LOCATOR_SK,
};
use crate::audit::AuditEntry;
use crate::crypto::blind::BlindIndex;
use crate::crypto::{hex, sha256};
use crate::error::PortError;
use crate::ports::{DomainEvent, RecordStore};
use crate::retention::{Retention, RetentionPolicy};
use crate::service::clinical::{patient_of, DIRECTORY};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use medrec_core::purge::{
    policy_urn, Compartment, HoldTarget, Holds, Plan, Planner, PurgeReport, ResourceCandidate, Step,
};
use serde_json::json;
use std::collections::HashMap;

/// S3's limit on keys in one DeleteObjects call.
const DELETE_OBJECTS_LIMIT: usize = 1000;

/// Every legal hold placed and not released.
pub async fn holds_in_force(ddb: &aws_sdk_dynamodb::Client, records_table: &str) -> Result<Vec<Hold>, PortError> {
    let items = query_all(ddb, records_table, &|q| {
        q.key_condition_expression("pk = :pk").expression_attribute_values(":pk", s(HOLD_PK)).consistent_read(true)
    })
    .await?;
    items.iter().map(from_item).collect()
}

pub struct Purger<'a> {
    pub store: &'a DynamoStore,
    pub ddb: &'a aws_sdk_dynamodb::Client,
    pub s3: &'a aws_sdk_s3::Client,
    pub records_table: &'a str,
    pub documents_bucket: &'a str,
    pub index: &'a BlindIndex,
}

impl Purger<'_> {
    /// Places a legal hold (a reason code and a ticket, never free text:
    /// holds are plaintext), audited. `false`: no such resource.
    pub async fn place_hold(
        &self,
        target: &HoldTarget,
        by: &str,
        reason: &str,
        ticket: &str,
    ) -> Result<bool, PortError> {
        let patient = match target {
            HoldTarget::Patient(id) => id.clone(),
            HoldTarget::Resource { resource_type, id } => match self.store.locate(resource_type, id).await? {
                Some(p) => p,
                None => return Ok(false),
            },
        };
        self.ddb
            .put_item()
            .table_name(self.records_table)
            .set_item(Some(to_item(&Hold {
                pk: HOLD_PK.into(),
                sk: target.reference(),
                p: patient.clone(),
                by: by.into(),
                reason: reason.into(),
                ticket: ticket.into(),
                at: crate::fhir::now_instant(),
            })))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.audit(&patient, by, "hold-place", vec![target.reference()]).await?;
        Ok(true)
    }

    /// Releases a hold, audited.
    pub async fn release_hold(&self, target: &HoldTarget, by: &str) -> Result<(), PortError> {
        let out = self
            .ddb
            .delete_item()
            .table_name(self.records_table)
            .set_key(Some(key(HOLD_PK, target.reference())))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        let patient = out.attributes().and_then(|a| get_s(a, "p")).unwrap_or_default().to_owned();
        self.audit(&patient, by, "hold-release", vec![target.reference()]).await
    }

    /// Records a patient's erasure request (verified and approved by the
    /// privacy office, who names the ticket), audited. The purge carries it
    /// out once no hold blocks and the legal floor has passed. `false`: the
    /// patient is unknown.
    pub async fn request_erasure(&self, patient: &str, by: &str, ticket: &str) -> Result<bool, PortError> {
        if self.store.wrapped_key(patient).await?.is_none() {
            return Ok(false);
        }
        self.ddb
            .put_item()
            .table_name(self.records_table)
            .set_item(Some(to_item(&ErasureRequest {
                pk: ERASE_PK.into(),
                sk: patient.into(),
                by: by.into(),
                ticket: ticket.into(),
                at: crate::fhir::now_instant(),
            })))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.audit(patient, by, "erasure-request", vec![format!("Patient/{patient}")]).await?;
        Ok(true)
    }

    fn entry(patient: &str, by: &str, interaction: &'static str, entities: Vec<String>) -> AuditEntry {
        AuditEntry {
            patient: patient_of(patient).map(str::to_owned),
            entities,
            ..AuditEntry::by_operator(by, interaction, "medrec-purge")
        }
    }

    async fn audit(
        &self,
        patient: &str,
        by: &str,
        interaction: &'static str,
        entities: Vec<String>,
    ) -> Result<(), PortError> {
        self.store.audit(&Self::entry(patient, by, interaction, entities), vec![]).await
    }

    /// Audits a purge before it happens, once per `key`: a rerun after a
    /// crash finds the record written and goes on with the destruction.
    async fn audit_purge(
        &self,
        key: &str,
        patient: &str,
        by: &str,
        interaction: &'static str,
        entities: Vec<String>,
    ) -> Result<(), PortError> {
        let entry = Self::entry(patient, by, interaction, entities);
        // A patient's record consumers must forget; the directory's purges
        // are in the audit trail only.
        let event = patient_of(patient).map(|patient| DomainEvent {
            id: crate::crypto::random_id(),
            event_type: "RecordsPurged",
            aggregate: patient.into(),
            at: entry.recorded.clone(),
            detail: json!({"patient": patient, "auditEventId": entry.id}),
        });
        self.store.audit_once(key, &entry, event.into_iter().collect()).await.map(|_| ())
    }

    async fn holds(&self) -> Result<Holds, PortError> {
        let mut holds = Holds::default();
        for hold in holds_in_force(self.ddb, self.records_table).await? {
            holds.compartments.insert(hold.p);
            holds.references.insert(hold.sk);
        }
        Ok(holds)
    }

    async fn partition(
        &self,
        pk: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        query_all(self.ddb, self.records_table, &|q| {
            let q = q.expression_attribute_values(":pk", s(pk)).consistent_read(true);
            match prefix {
                Some(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                None => q.key_condition_expression("pk = :pk"),
            }
        })
        .await
    }

    /// What retention and erasure requests allow to be purged as of `now`,
    /// and what holds block (dry run: nothing changes).
    pub async fn plan(&self, retention: &Retention, now: time::OffsetDateTime) -> Result<Plan, PortError> {
        let erasures: HashMap<String, String> = self
            .partition(ERASE_PK, None)
            .await?
            .iter()
            .map(|i| from_item::<ErasureRequest>(i).map(|e| (e.sk, e.at)))
            .collect::<Result<_, _>>()?;
        let mut planner = Planner::new(retention, now, self.holds().await?, erasures);
        let all = self.index.token("Patient", "_all", "");
        for patient in self.store.ids_for_token("Patient", &all).await? {
            let (resources, shredded) = self.compartment(&patient).await?;
            planner.patient(patient, resources, shredded);
        }
        let (directory, _) = self.compartment(DIRECTORY).await?;
        planner.directory(DIRECTORY, directory);
        Ok(planner.finish())
    }

    /// A compartment's resources as its items show them, and whether its
    /// data key is gone.
    async fn compartment(&self, compartment: &str) -> Result<(Compartment, bool), PortError> {
        let mut shredded = true;
        let mut resources = Compartment::new();
        for item in self.partition(&patient_pk(compartment), None).await? {
            let sk = get_s(&item, "sk").unwrap_or_default();
            if sk == DATA_KEY_SK {
                shredded = false;
            } else if let Some((ty, id)) = schema::parse_current_sk(sk) {
                let r: RecordItem = from_item(&item)?;
                resources.entry((ty.into(), id.into())).or_default().current = Some((r.ver, r.del, r.upd));
            } else if let Some((ty, id)) = schema::parse_version_sk(sk) {
                let r: RecordItem = from_item(&item)?;
                resources.entry((ty.into(), id.into())).or_default().history.push((r.ver, r.upd));
            }
        }
        Ok((resources, shredded))
    }

    /// Purges what the plan finds, at most `limit` patients and resources
    /// per call (a Lambda's time limit); held candidates are skipped,
    /// shredded patients not redone, so a rerun after a crash finishes the
    /// work without doubling it.
    pub async fn run(
        &self,
        retention: &Retention,
        now: time::OffsetDateTime,
        limit: usize,
        by: &str,
    ) -> Result<PurgeReport, PortError> {
        let plan = self.plan(retention, now).await?;
        let (steps, held) = plan.steps(limit);
        let mut report = PurgeReport { held, ..PurgeReport::default() };
        for step in steps {
            match step {
                Step::FinishShred(c) => {
                    report.objects_deleted += self.delete_objects(&format!("{}/", c.patient)).await?;
                    self.drop_index_entries(&c.patient).await?;
                    report.already += 1;
                }
                Step::Shred(c) => {
                    let wrapped = self.store.wrapped_key(&c.patient).await?.unwrap_or_default();
                    let entities = c.audit_entities(retention, &wrapped);
                    let once = format!("purge:Patient/{}", c.patient);
                    self.audit_purge(&once, &c.patient, by, "purge", entities).await?;
                    // Objects before the key: a crash between them leaves the
                    // key, and the rerun finds nothing left to delete and
                    // shreds then.
                    report.objects_deleted += self.delete_objects(&format!("{}/", c.patient)).await?;
                    self.delete_keys(vec![(patient_pk(&c.patient), DATA_KEY_SK.into())]).await?;
                    self.drop_index_entries(&c.patient).await?;
                    report.shredded += 1;
                }
                Step::Resource(r) => {
                    report.objects_deleted += self.purge_resource(r, retention.for_type(&r.resource_type), by).await?;
                    report.versions_deleted += r.versions.len();
                    report.resources += 1;
                }
            }
        }
        Ok(report)
    }

    /// Deletes a resource's versions past retention (and, when it is wholly
    /// past, its index entries, locator, document objects and current item,
    /// the current item last so a rerun still finds what is left).
    async fn purge_resource(
        &self,
        r: &ResourceCandidate,
        policy: &RetentionPolicy,
        by: &str,
    ) -> Result<usize, PortError> {
        let (pk, reference) = (patient_pk(&r.patient), format!("{}/{}", r.resource_type, r.id));
        let stored = self.partition(&pk, Some(&version_prefix(Some(&r.resource_type), Some(&r.id)))).await?;
        let mut entities = vec![reference.clone()];
        let mut keys = vec![];
        for item in &stored {
            let stored: RecordItem = from_item(item)?;
            if !r.versions.contains(&stored.ver) {
                continue;
            }
            let digest = hex(&sha256(stored.ct.as_deref().unwrap_or_default()));
            entities.push(format!("urn:medrec:purged-version-sha256:{reference}/_history/{}:{digest}", stored.ver));
            keys.push((pk.clone(), stored.sk));
        }
        entities.push(policy_urn(policy));
        self.audit_purge(&r.once_key(), &r.patient, by, "purge-resource", entities).await?;
        let mut objects = 0;
        if r.whole {
            // A document's objects are `{patient}/{document}-{n}`, a
            // standalone Binary's `{patient}/{binary}`.
            match r.resource_type.as_str() {
                "DocumentReference" => objects = self.delete_objects(&format!("{}/{}-", r.patient, r.id)).await?,
                "Binary" => objects = self.delete_objects(&format!("{}/{}", r.patient, r.id)).await?,
                _ => {}
            }
            let index = self.partition(&pk, Some(&index_prefix(Some((&r.resource_type, &r.id))))).await?;
            keys.extend(index.iter().map(|i| (pk.clone(), get_s(i, "sk").unwrap_or_default().to_owned())));
            keys.push((locator_pk(&r.resource_type, &r.id), LOCATOR_SK.into()));
        }
        self.delete_keys(keys).await?;
        if r.whole {
            self.delete_keys(vec![(pk, current_sk(&r.resource_type, &r.id))]).await?;
        }
        Ok(objects)
    }

    /// The blind-index entries go too: a shredded patient must not match a
    /// search it can no longer answer (and the plan stops listing it).
    async fn drop_index_entries(&self, patient: &str) -> Result<(), PortError> {
        let pk = patient_pk(patient);
        let index = self.partition(&pk, Some(&index_prefix(None))).await?;
        self.delete_keys(index.iter().map(|i| (pk.clone(), get_s(i, "sk").unwrap_or_default().to_owned())).collect())
            .await
    }

    async fn delete_keys(&self, keys: Vec<(String, String)>) -> Result<(), PortError> {
        let requests = keys
            .iter()
            .map(|(pk, sk)| {
                let delete = DeleteRequest::builder().set_key(Some(key(pk, sk))).build().expect("key set");
                WriteRequest::builder().delete_request(delete).build()
            })
            .collect();
        batch_write_all(self.ddb, self.records_table, requests).await
    }

    async fn delete_objects(&self, prefix: &str) -> Result<usize, PortError> {
        let mut keys = vec![];
        let mut token = None;
        loop {
            let listed = self
                .s3
                .list_objects_v2()
                .bucket(self.documents_bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| port_error("s3", &e))?;
            keys.extend(listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            token = listed.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        for chunk in keys.chunks(DELETE_OBJECTS_LIMIT) {
            let objects = chunk
                .iter()
                .map(|k| aws_sdk_s3::types::ObjectIdentifier::builder().key(k).build().expect("key set"))
                .collect();
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .expect("objects set");
            let out = self
                .s3
                .delete_objects()
                .bucket(self.documents_bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| port_error("s3", &e))?;
            if !out.errors().is_empty() {
                return Err(PortError::Backend {
                    service: "s3",
                    detail: format!("{} objects not deleted", out.errors().len()),
                });
            }
        }
        Ok(keys.len())
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
        kms: super::kms::KmsKeys,
        shards: u32,
        documents_bucket: &str,
    ) -> Result<PurgeContext, PortError> {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let keys = super::service_keys(&ddb, &kms, &tables.records).await?;
        Ok(PurgeContext {
            records_table: tables.records.clone(),
            store: DynamoStore::new(ddb.clone(), tables, keys.audit_chain, shards),
            ddb,
            s3: super::s3_client(sdk, local),
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
