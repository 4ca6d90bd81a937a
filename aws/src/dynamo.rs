//! DynamoDB adapter.
//!
//! Records table (`pk`, `sk`), one partition per patient compartment:
//! - `P#<patient>` / `KEY`: the patient's KMS-wrapped data key.
//! - `P#<patient>` / `C#<type>#<id>`: current version, its ciphertext, tokens.
//! - `P#<patient>` / `V#<type>#<id>#<version>`: every version (history).
//! - `P#<patient>` / `I#<type>#<id>#<token>`: blind-index entries, projected
//!   into the `search` GSI (`ix` = `<type>#<token>`, `ixs` = id).
//! - `L#<type>#<id>` / `L`: the compartment (`p`) of a resource that is not
//!   a Patient, so a read by id finds its partition.
//! - `P#_directory`: the directory resources (Practitioner, Organization...),
//!   laid out as a compartment with its own data key; `_directory` is no
//!   FHIR id, so it is never a patient's.
//! - `CONFIG` / `<name>`: KMS-wrapped service secrets.
//!
//! Audit table (`pk`, `sk` number): `HEAD#<shard>`/0 holds a shard's head,
//! `CHAIN#<shard>`/<seq> its records. Outbox table (`pk` = aggregate, `sk` =
//! time#id). Only opaque ids, versions, timestamps, tokens and ciphertext are
//! stored in plaintext attributes.

use super::port_error;
use crate::audit::chain::{self, Head, Record, GENESIS};
use crate::audit::AuditEntry;
use crate::crypto::DataKey;
use crate::error::PortError;
use crate::ports::{Current, DomainEvent, RecordStore, ResourceWrite, Version};
use crate::schema::{
    self, break_glass_sk, chain_pk, current_prefix, current_sk, from_item, head_pk, key, locator_pk, patient_pk,
    search_key, to_item, version_prefix, version_sk, BreakGlassItem, ChainEntry, ChainItem, HeadItem, IndexEntry,
    Locator, OutboxEvent, RecordItem, WrappedKey, BREAK_GLASS_ATTRIBUTES, BREAK_GLASS_LOCATOR, BREAK_GLASS_PENDING,
    BREAK_GLASS_REVIEWED, CONFIG_PK, DATA_KEY_SK, LOCATOR_SK, SEARCH_INDEX,
};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::builders::KeysAndAttributesBuilder;
use aws_sdk_dynamodb::types::{AttributeValue as AV, Delete, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::sync::Mutex;

mod journal;
mod shards;

/// DynamoDB's limit on items in one TransactWriteItems call.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// The condition of a change to a record's current item: still the version
/// read, and held by no transaction (a large transaction holds the items it
/// changes from prepare until it is finished; decision 0011).
const REPLACES: &str = "ver = :ev AND attribute_not_exists(tx)";
/// Attempts to append to a contended audit shard before giving up (fail closed).
const AUDIT_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone)]
pub struct Tables {
    pub records: String,
    pub audit: String,
    pub outbox: String,
}

pub struct DynamoStore {
    client: Client,
    tables: Tables,
    chain_key: DataKey,
    shards: shards::Shards,
    /// Transactions known committed (true) or aborted (false): final, so
    /// a reader asks each header once.
    tx_states: Mutex<HashMap<String, bool>>,
    /// How long a transaction may stay pending before the sweep aborts it.
    transaction_deadline: std::time::Duration,
}

/// A string attribute; every adapter builds its items with these two.
pub(crate) fn s(v: impl Into<String>) -> AV {
    AV::S(v.into())
}
/// A number attribute.
pub(crate) fn n(v: impl ToString) -> AV {
    AV::N(v.to_string())
}
fn b(v: &[u8]) -> AV {
    AV::B(Blob::new(v))
}
fn current_from(item: &HashMap<String, AV>) -> Result<Current, PortError> {
    let r: RecordItem = from_item(item)?;
    Ok(Current {
        version: r.ver,
        deleted: r.del,
        last_updated: r.upd,
        tokens: r.tok.unwrap_or_default(),
        ciphertext: r.ct,
    })
}

pub(crate) fn get_s<'a>(item: &'a HashMap<String, AV>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}
fn get_bool(item: &HashMap<String, AV>, k: &str) -> bool {
    item.get(k).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
}

fn put(table: &str, item: HashMap<String, AV>, condition: Option<&str>, values: &[(&str, AV)]) -> TransactWriteItem {
    let mut p = Put::builder().table_name(table).set_item(Some(item));
    if let Some(c) = condition {
        p = p.condition_expression(c);
    }
    for (k, v) in values {
        p = p.expression_attribute_values(*k, v.clone());
    }
    TransactWriteItem::builder().put(p.build().expect("table and item set")).build()
}

fn version_from(item: &HashMap<String, AV>) -> Result<Version, PortError> {
    let r: RecordItem = from_item(item)?;
    Ok(Version { version: r.ver, deleted: r.del, last_updated: r.upd, ciphertext: r.ct })
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables, chain_key: DataKey, shards: u32) -> Self {
        DynamoStore {
            client,
            tables,
            chain_key,
            shards: shards::Shards::new(shards),
            tx_states: Mutex::new(HashMap::new()),
            transaction_deadline: std::time::Duration::from_secs(120),
        }
    }

    pub fn with_transaction_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.transaction_deadline = deadline;
        self
    }

    async fn read_head(&self, shard: u32) -> Result<Head, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.audit)
            .set_key(Some(schema::audit_key(head_pk(shard), 0)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(match out.item() {
            Some(item) => {
                let head: HeadItem = from_item(item)?;
                Head { seq: head.seq, hash: head.hash }
            }
            None => Head { seq: 0, hash: GENESIS.to_owned() },
        })
    }

    fn outbox_items(&self, events: &[DomainEvent]) -> Vec<TransactWriteItem> {
        events
            .iter()
            .map(|e| {
                let item = to_item(&outbox_event(e));
                put(&self.tables.outbox, item, Some("attribute_not_exists(pk)"), &[])
            })
            .collect()
    }

    /// The item that keeps a break-glass access for review: in the
    /// patient's partition (so the purge takes it with them), its reason
    /// sealed under the patient's key, queued through the search index.
    fn break_glass_items(&self, audit: &AuditEntry, body: &str) -> Vec<TransactWriteItem> {
        let Some((bg, patient)) = audit.break_glass.as_ref().zip(audit.patient.as_ref()) else { return vec![] };
        let Some(sealed) = bg.sealed_reason.as_ref() else { return vec![] };
        let locator =
            Locator { pk: locator_pk(BREAK_GLASS_LOCATOR, &audit.id), sk: LOCATOR_SK.into(), p: patient.clone() };
        let item = BreakGlassItem {
            pk: patient_pk(patient),
            sk: break_glass_sk(&audit.id),
            ix: BREAK_GLASS_PENDING.into(),
            ixs: crate::ports::break_glass_position(&audit.recorded, &audit.id),
            at: audit.recorded.clone(),
            code: bg.code.clone(),
            body: body.to_owned(),
            reason: sealed.clone(),
            outcome: None,
            reviewer: None,
            rat: None,
            note: None,
        };
        vec![
            put(&self.tables.records, to_item(&locator), Some("attribute_not_exists(pk)"), &[]),
            put(&self.tables.records, to_item(&item), Some("attribute_not_exists(pk)"), &[]),
        ]
    }

    /// Appends `audits` to a chain shard (consecutive records) together with
    /// `items`, in one transaction. Retries on head contention (another
    /// writer advanced the shard); a failed condition among `items` is
    /// returned as is.
    async fn commit_with_audit(&self, items: Vec<TransactWriteItem>, audits: &[AuditEntry]) -> Result<(), PortError> {
        let records: Vec<ChainEntry> = audits.iter().map(chain_entry).collect();
        let side_items: Vec<TransactWriteItem> =
            audits.iter().zip(&records).flat_map(|(a, r)| self.break_glass_items(a, &r.body)).collect();
        self.append_chain(items, side_items, &records).await
    }

    /// `commit_with_audit` for records already rendered (a transaction's,
    /// kept in its journal until they are appended).
    async fn append_chain(
        &self,
        items: Vec<TransactWriteItem>,
        side_items: Vec<TransactWriteItem>,
        records: &[ChainEntry],
    ) -> Result<(), PortError> {
        use crate::metrics::{add, Counter};
        let appended = self.try_append_chain(items, side_items, records).await;
        let n = records.len() as u64;
        match &appended {
            Ok(()) => add(Counter::AuditWrites, n),
            // A condition of the change itself (a version conflict), not of
            // the trail: nothing failed to be recorded that had to be.
            Err(PortError::ConditionFailed(_)) => {}
            Err(_) => add(Counter::AuditWriteFailures, n),
        }
        appended
    }

    async fn try_append_chain(
        &self,
        items: Vec<TransactWriteItem>,
        side_items: Vec<TransactWriteItem>,
        records: &[ChainEntry],
    ) -> Result<(), PortError> {
        let last_id = &records.last().ok_or_else(|| PortError::Integrity("no audit record to append".into()))?.id;
        let mut lease = self.shards.lease(None);
        for attempt in 0..AUDIT_ATTEMPTS {
            let pause = shards::backoff(attempt);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let shard = lease.shard;
            let head = match lease.cached_head() {
                Some(h) if attempt == 0 => h,
                _ => self.read_head(shard).await?,
            };
            let mut all = items.clone();
            let domain_len = all.len();
            all.extend(side_items.iter().cloned());
            let (mut seq, mut hash) = (head.seq, head.hash.clone());
            for r in records {
                seq += 1;
                let next = chain::link(&self.chain_key, shard, seq, &hash, &r.body);
                let prev = std::mem::replace(&mut hash, next);
                let record = ChainItem { pk: chain_pk(shard), sk: seq, prev, hash: hash.clone(), entry: r.clone() };
                all.push(put(&self.tables.audit, to_item(&record), Some("attribute_not_exists(pk)"), &[]));
            }
            let head_item = to_item(&HeadItem { pk: head_pk(shard), sk: 0, seq, hash: hash.clone() });
            all.push(if head.seq == 0 {
                put(&self.tables.audit, head_item, Some("attribute_not_exists(pk)"), &[])
            } else {
                put(&self.tables.audit, head_item, Some("seq = :seq"), &[(":seq", n(head.seq))])
            });
            if all.len() > MAX_TRANSACTION_ITEMS {
                return Err(PortError::TooLarge { items: all.len(), limit: MAX_TRANSACTION_ITEMS });
            }
            // The token makes the SDK's own retries of this attempt idempotent:
            // a retry after a lost response must not look like a lost race.
            let token = crate::crypto::random_id();
            match self
                .client
                .transact_write_items()
                .client_request_token(token)
                .set_transact_items(Some(all))
                .send()
                .await
            {
                Ok(_) => {
                    lease.advanced(Head { seq, hash });
                    return Ok(());
                }
                Err(e) => {
                    let failed = cancelled_items(&e);
                    if let Some(i) = failed.iter().find(|i| **i < domain_len) {
                        return Err(PortError::ConditionFailed(*i));
                    }
                    if failed.is_empty() {
                        return Err(port_error("dynamodb", &e));
                    }
                    // A retry of an attempt that was applied, its answer
                    // lost, meets its own records (DynamoDB's request token
                    // covers this; the emulator ignores it): done, not a
                    // race to retry elsewhere, which would record them twice.
                    if self.recorded(shard, seq, last_id).await? {
                        lease.advanced(Head { seq, hash });
                        return Ok(());
                    }
                    lease.lost();
                    lease = self.shards.lease(Some(shard));
                }
            }
        }
        Err(PortError::Backend { service: "dynamodb", detail: "audit chain contention".into() })
    }
}

/// An audit record as its chain item carries it.
fn chain_entry(audit: &AuditEntry) -> ChainEntry {
    ChainEntry {
        id: audit.id.clone(),
        at: audit.recorded.clone(),
        body: audit.to_fhir().to_string(),
        patient: audit.audited_patient(),
        agent: audit.agent_key(),
    }
}

/// A domain event as the outbox holds it until the relay sends it.
fn outbox_event(e: &DomainEvent) -> OutboxEvent {
    OutboxEvent {
        pk: e.aggregate.clone(),
        sk: format!("{}#{}", e.at, e.id),
        id: e.id.clone(),
        event_type: e.event_type.to_owned(),
        detail: e.detail.to_string(),
        status: "pending".into(),
        expires: None,
    }
}

impl DynamoStore {
    /// An item of the records table, read consistently, with only the
    /// attributes named: the audit function's role may read no others of
    /// that table (never a record's ciphertext).
    async fn projected_item(
        &self,
        pk: &str,
        sk: &str,
        attributes: &[&str],
    ) -> Result<Option<HashMap<String, AV>>, PortError> {
        let mut get =
            self.client.get_item().table_name(&self.tables.records).set_key(Some(key(pk, sk))).consistent_read(true);
        // Names, not the words: several are DynamoDB reserved words.
        let mut projection = vec![];
        for (i, name) in attributes.iter().enumerate() {
            get = get.expression_attribute_names(format!("#a{i}"), *name);
            projection.push(format!("#a{i}"));
        }
        let out =
            get.projection_expression(projection.join(", ")).send().await.map_err(|e| port_error("dynamodb", &e))?;
        Ok(out.item().cloned())
    }

    /// At most `limit` keys of the search index under `ix`, in sort-key
    /// order after `after`. A GSI Query's Limit caps items evaluated per
    /// call; the pages are followed until `limit` or the index ends.
    async fn index_page(
        &self,
        ix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HashMap<String, AV>>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AV>> = None;
        while items.len() < limit {
            let mut q = self
                .client
                .query()
                .table_name(&self.tables.records)
                .index_name(SEARCH_INDEX)
                .expression_attribute_values(":ix", s(ix))
                .limit((limit - items.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take());
            q = match after {
                Some(a) => {
                    q.key_condition_expression("ix = :ix AND ixs > :after").expression_attribute_values(":after", s(a))
                }
                None => q.key_condition_expression("ix = :ix"),
            };
            let out = q.send().await.map_err(|e| port_error("dynamodb", &e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(items)
    }

    /// Whether the chain record at (`shard`, `seq`) is the audit record `id`.
    async fn recorded(&self, shard: u32, seq: u64, id: &str) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.audit)
            .set_key(Some(schema::audit_key(chain_pk(shard), seq)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(out.item().and_then(|i| get_s(i, "id")) == Some(id))
    }

    /// Whether the version `w` writes is stored exactly as `w` has it: the
    /// same ciphertext (a fresh random nonce each time) and timestamp.
    /// The items of one resource change: its compartment's key when it
    /// opens one, its locator when it is new, the current and version
    /// items (conditional on the version it replaces) and its index entries.
    fn resource_items(&self, w: &ResourceWrite) -> Vec<TransactWriteItem> {
        let t = &self.tables.records;
        let pk = patient_pk(&w.patient);
        let mut items = Vec::new();
        if let Some(wrapped) = &w.new_wrapped_key {
            let item = WrappedKey {
                pk: pk.clone(),
                sk: DATA_KEY_SK.into(),
                wk: wrapped.clone(),
                created: Some(w.last_updated.clone()),
                cmk: None,
                rewrapped: None,
            };
            items.push(put(t, to_item(&item), Some("attribute_not_exists(pk)"), &[]));
        }
        if w.expected_version.is_none() && w.resource_type != "Patient" {
            let item = Locator { pk: locator_pk(w.resource_type, &w.id), sk: LOCATOR_SK.into(), p: w.patient.clone() };
            items.push(put(t, to_item(&item), Some("attribute_not_exists(pk)"), &[]));
        }
        let version = RecordItem {
            pk: pk.clone(),
            sk: version_sk(w.resource_type, &w.id, w.version),
            ver: w.version,
            del: w.deleted,
            upd: w.last_updated.clone(),
            resource_type: w.resource_type.to_owned(),
            ct: w.ciphertext.clone(),
            tok: None,
        };
        let current =
            RecordItem { sk: current_sk(w.resource_type, &w.id), tok: Some(w.tokens.clone()), ..version.clone() };
        items.push(match w.expected_version {
            None => put(t, to_item(&current), Some("attribute_not_exists(pk)"), &[]),
            Some(ev) => put(t, to_item(&current), Some(REPLACES), &[(":ev", n(ev))]),
        });
        items.push(put(t, to_item(&version), Some("attribute_not_exists(pk)"), &[]));
        for token in w.tokens.iter().filter(|t| !w.previous_tokens.contains(t)) {
            let item = IndexEntry {
                pk: pk.clone(),
                sk: schema::index_sk(w.resource_type, &w.id, token),
                ix: search_key(w.resource_type, token),
                ixs: w.id.clone(),
            };
            items.push(put(t, to_item(&item), None, &[]));
        }
        for token in w.previous_tokens.iter().filter(|t| !w.tokens.contains(t)) {
            let del = Delete::builder()
                .table_name(t)
                .set_key(Some(key(&pk, schema::index_sk(w.resource_type, &w.id, token))))
                .build()
                .expect("table and key set");
            items.push(TransactWriteItem::builder().delete(del).build());
        }
        items
    }

    async fn applied(&self, pk: &str, w: &ResourceWrite) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(pk, version_sk(w.resource_type, &w.id, w.version))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        let Some(item) = out.item() else { return Ok(false) };
        let ct = item.get("ct").and_then(|v| v.as_b().ok()).map(|b| b.as_ref());
        let upd = item.get("upd").and_then(|v| v.as_s().ok());
        Ok(ct == w.ciphertext.as_deref() && upd == Some(&w.last_updated))
    }
}

/// Indexes of the transaction items whose condition failed.
fn cancelled_items<R>(e: &SdkError<TransactWriteItemsError, R>) -> Vec<usize> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(tce)) => tce
            .cancellation_reasons()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
            .map(|(i, _)| i)
            .collect(),
        _ => vec![],
    }
}

/// Reads the secret `name` or creates it on first use. Creation races are
/// settled by a conditional put: every instance ends up with the same secret.
pub async fn load_or_create_secret<F, Fut, U, UFut>(
    client: &Client,
    records_table: &str,
    name: &str,
    generate: F,
    unwrap: U,
) -> Result<DataKey, PortError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(DataKey, Vec<u8>), PortError>>,
    U: Fn(Vec<u8>) -> UFut,
    UFut: std::future::Future<Output = Result<DataKey, PortError>>,
{
    let read = || async {
        let out = client
            .get_item()
            .table_name(records_table)
            .set_key(Some(key(CONFIG_PK, name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok::<_, PortError>(out.item().map(from_item::<WrappedKey>).transpose()?.map(|k| k.wk))
    };
    if let Some(wrapped) = read().await? {
        return unwrap(wrapped).await;
    }
    let (key, wrapped) = generate().await?;
    let res = client
        .put_item()
        .table_name(records_table)
        .set_item(Some(to_item(&WrappedKey {
            pk: CONFIG_PK.into(),
            sk: name.into(),
            wk: wrapped,
            created: Some(crate::fhir::now_instant()),
            cmk: None,
            rewrapped: None,
        })))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match res {
        Ok(_) => Ok(key),
        Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
            let wrapped = read().await?.ok_or_else(|| PortError::Integrity("secret vanished".into()))?;
            unwrap(wrapped).await
        }
        Err(e) => Err(port_error("dynamodb", &e)),
    }
}

/// The shape of one Query (key condition, filters, index), applied to
/// every page.
pub type QueryShape<'a> = &'a (dyn Fn(QueryFluentBuilder) -> QueryFluentBuilder + Sync);

/// Every item a Query on `table` matches, across pages.
pub async fn query_all(
    client: &Client,
    table: &str,
    shape: QueryShape<'_>,
) -> Result<Vec<HashMap<String, AV>>, PortError> {
    query_at_most(client, table, shape, None).await
}

/// The first `limit` items (all, without one) a Query on `table` matches,
/// across pages: a page stops at `Limit` items or at 1 MB, whichever
/// comes first.
pub async fn query_at_most(
    client: &Client,
    table: &str,
    shape: QueryShape<'_>,
    limit: Option<usize>,
) -> Result<Vec<HashMap<String, AV>>, PortError> {
    let mut items = Vec::new();
    if limit == Some(0) {
        return Ok(items);
    }
    let mut start = None;
    loop {
        let left = limit.map(|l| i32::try_from(l - items.len()).unwrap_or(i32::MAX));
        let out = shape(client.query().table_name(table))
            .set_limit(left)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() && limit.is_none_or(|l| items.len() < l) => start = Some(k.clone()),
            _ => return Ok(items),
        }
    }
}

impl DynamoStore {
    /// Every item a Query on the records table matches, across pages.
    async fn query_all(&self, shape: QueryShape<'_>) -> Result<Vec<HashMap<String, AV>>, PortError> {
        query_all(&self.client, &self.tables.records, shape).await
    }
}

impl RecordStore for DynamoStore {
    async fn locate(&self, ty: &str, id: &str) -> Result<Option<String>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(locator_pk(ty, id), LOCATOR_SK)))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        Ok(self.resolved(out.item()).await?.as_ref().map(from_item::<Locator>).transpose()?.map(|l| l.p))
    }

    async fn wrapped_key(&self, patient: &str) -> Result<Option<Vec<u8>>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(patient_pk(patient), DATA_KEY_SK)))
            .projection_expression("wk, tx")
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        let item = self.resolved(out.item()).await?;
        Ok(item.and_then(|i| i.get("wk").and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec())))
    }

    async fn current(&self, patient: &str, ty: &str, id: &str) -> Result<Option<Current>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(patient_pk(patient), current_sk(ty, id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.resolved(out.item()).await?.as_ref().map(current_from).transpose()
    }

    async fn compartment(&self, patient: &str, ty: &str) -> Result<Vec<(String, Current)>, PortError> {
        let prefix = current_prefix(Some(ty));
        let items = self
            .query_all(&|q| {
                q.key_condition_expression("pk = :pk AND begins_with(sk, :c)")
                    .expression_attribute_values(":pk", s(patient_pk(patient)))
                    .expression_attribute_values(":c", s(&prefix))
                    .consistent_read(true)
            })
            .await?;
        let items = self.all_resolved(items).await?;
        items
            .iter()
            .map(|item| {
                let id = get_s(item, "sk").and_then(|sk| sk.strip_prefix(&prefix)).unwrap_or_default().to_owned();
                Ok((id, current_from(item)?))
            })
            .collect()
    }

    async fn compartment_index(&self, patient: &str) -> Result<Vec<(String, String, bool)>, PortError> {
        // Keys and the deleted mark only: the ciphertext stays in the table
        // (a record mid-transaction brings its pending item, to resolve it).
        let items = self
            .query_all(&|q| {
                q.key_condition_expression("pk = :pk AND begins_with(sk, :c)")
                    .expression_attribute_values(":pk", s(patient_pk(patient)))
                    .expression_attribute_values(":c", s(current_prefix(None)))
                    .projection_expression("pk, sk, del, tx, pend")
                    .consistent_read(true)
            })
            .await?;
        let items = self.all_resolved(items).await?;
        Ok(items
            .iter()
            .map(|item| {
                let (ty, id) = get_s(item, "sk").and_then(schema::parse_current_sk).unwrap_or_default();
                (ty.to_owned(), id.to_owned(), get_bool(item, "del"))
            })
            .collect())
    }

    async fn currents(&self, patient: &str, records: &[(String, String)]) -> Result<Vec<Option<Current>>, PortError> {
        if records.is_empty() {
            return Ok(vec![]);
        }
        let keys = records.iter().map(|(ty, id)| key(patient_pk(patient), current_sk(ty, id))).collect();
        let items = batch_get_all(&self.client, &self.tables.records, keys, |k| k).await?;
        let mut found: HashMap<String, Current> = HashMap::with_capacity(records.len());
        for item in self.all_resolved(items).await? {
            let sk = get_s(&item, "sk").unwrap_or_default().to_owned();
            found.insert(sk, current_from(&item)?);
        }
        Ok(records.iter().map(|(ty, id)| found.remove(&current_sk(ty, id))).collect())
    }

    async fn compartment_versions(
        &self,
        patient: &str,
        ty: Option<&str>,
    ) -> Result<Vec<(String, String, Version)>, PortError> {
        let prefix = version_prefix(ty, None);
        let items = self
            .query_all(&|q| {
                q.key_condition_expression("pk = :pk AND begins_with(sk, :v)")
                    .expression_attribute_values(":pk", s(patient_pk(patient)))
                    .expression_attribute_values(":v", s(&prefix))
                    .consistent_read(true)
            })
            .await?;
        let items = self.all_resolved(items).await?;
        items
            .iter()
            .map(|item| {
                let (ty, id) = get_s(item, "sk").and_then(schema::parse_version_sk).unwrap_or_default();
                Ok((ty.to_owned(), id.to_owned(), version_from(item)?))
            })
            .collect()
    }

    async fn version(&self, patient: &str, ty: &str, id: &str, version: u64) -> Result<Option<Version>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.records)
            .set_key(Some(key(patient_pk(patient), version_sk(ty, id, version))))
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.resolved(out.item()).await?.as_ref().map(version_from).transpose()
    }

    async fn versions(
        &self,
        patient: &str,
        ty: &str,
        id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Version>, PortError> {
        let hi = before.map_or_else(|| version_sk(ty, id, 9_999_999_999), |b| version_sk(ty, id, b.saturating_sub(1)));
        let out = self
            .client
            .query()
            .table_name(&self.tables.records)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(patient_pk(patient)))
            .expression_attribute_values(":lo", s(version_sk(ty, id, 1)))
            .expression_attribute_values(":hi", s(hi))
            .scan_index_forward(false)
            .limit(limit.min(1000) as i32)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        self.all_resolved(out.items().to_vec()).await?.iter().map(version_from).collect()
    }

    async fn ids_for_token_page(
        &self,
        ty: &str,
        token: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        let items = self.index_page(&search_key(ty, token), after, limit).await?;
        let mut ids: Vec<String> = items.iter().filter_map(|i| get_s(i, "ixs").map(str::to_owned)).collect();
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn ids_for_token(&self, ty: &str, token: &str) -> Result<Vec<String>, PortError> {
        let items = self
            .query_all(&|q| {
                q.index_name(SEARCH_INDEX)
                    .key_condition_expression("ix = :ix")
                    .expression_attribute_values(":ix", s(search_key(ty, token)))
            })
            .await?;
        let mut ids: Vec<String> = items.iter().filter_map(|i| get_s(i, "ixs").map(str::to_owned)).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn commit(&self, w: ResourceWrite, audit: &AuditEntry, events: Vec<DomainEvent>) -> Result<(), PortError> {
        let pk = patient_pk(&w.patient);
        let mut items = self.resource_items(&w);
        items.extend(self.outbox_items(&events));
        match self.commit_with_audit(items, std::slice::from_ref(audit)).await {
            // A lost answer, then the SDK's retry meets the conditions the
            // first attempt satisfied. DynamoDB's request token covers that
            // for ten minutes (the emulator not at all); the version item
            // holding this very ciphertext proves the commit was applied,
            // its audit record and events with it in the one transaction.
            Err(PortError::ConditionFailed(i)) => match self.applied(&pk, &w).await? {
                true => Ok(()),
                false => Err(PortError::ConditionFailed(i)),
            },
            other => other,
        }
    }

    async fn commit_all(
        &self,
        writes: Vec<ResourceWrite>,
        audits: &[AuditEntry],
        events: Vec<DomainEvent>,
    ) -> Result<(), PortError> {
        let mut items: Vec<TransactWriteItem> = writes.iter().flat_map(|w| self.resource_items(w)).collect();
        items.extend(self.outbox_items(&events));
        // Each audit record is a chain item, and the chain head one more.
        if items.len() + audits.len() + 1 > MAX_TRANSACTION_ITEMS {
            return self.commit_journaled(writes, audits, events).await;
        }
        match (self.commit_with_audit(items, audits).await, writes.first()) {
            // As for one change: a lost answer, then a retry meeting its own
            // first version item, was applied whole.
            (Err(PortError::ConditionFailed(i)), Some(w)) => match self.applied(&patient_pk(&w.patient), w).await? {
                true => Ok(()),
                false => Err(PortError::ConditionFailed(i)),
            },
            (other, _) => other,
        }
    }

    async fn finish_transactions(&self) -> Result<usize, PortError> {
        self.sweep().await
    }

    async fn audit_batch(&self, audits: &[AuditEntry], events: Vec<DomainEvent>) -> Result<(), PortError> {
        // Each record is a chain item (a break-glass one also its review
        // item and that item's locator), each event an outbox item, and one item is the head; a
        // transaction holds 100: the records go in as many as it takes,
        // each with its share of the events.
        let mut events = self.outbox_items(&events).into_iter();
        let per_record = events.len().div_ceil(audits.len().max(1));
        let mut rest = audits;
        while !rest.is_empty() {
            let (mut used, mut take) = (1, 0);
            for a in rest {
                let cost =
                    1 + per_record + 2 * usize::from(a.break_glass.as_ref().is_some_and(|b| b.sealed_reason.is_some()));
                if take > 0 && used + cost > MAX_TRANSACTION_ITEMS {
                    break;
                }
                used += cost;
                take += 1;
            }
            let (chunk, next) = rest.split_at(take);
            let items: Vec<_> = events.by_ref().take(per_record * take).collect();
            self.commit_with_audit(items, chunk).await?;
            rest = next;
        }
        Ok(())
    }

    async fn audit_once(&self, key: &str, audit: &AuditEntry, events: Vec<DomainEvent>) -> Result<bool, PortError> {
        let mut marker = schema::once_key(key);
        marker.insert("at".into(), s(&audit.recorded));
        let mut items = vec![put(&self.tables.records, marker, Some("attribute_not_exists(pk)"), &[])];
        items.extend(self.outbox_items(&events));
        match self.commit_with_audit(items, std::slice::from_ref(audit)).await {
            Ok(()) => Ok(true),
            Err(PortError::ConditionFailed(0)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn break_glass_from(item: &HashMap<String, AV>) -> Result<crate::ports::BreakGlassAccess, PortError> {
    let bg: BreakGlassItem = from_item(item)?;
    let review = bg.outcome.map(|outcome| crate::ports::BreakGlassReview {
        outcome,
        reviewer: bg.reviewer.unwrap_or_default(),
        at: bg.rat.unwrap_or_default(),
        sealed_note: bg.note,
    });
    let misplaced = || PortError::Integrity("break-glass item outside its place".into());
    Ok(crate::ports::BreakGlassAccess {
        patient: schema::patient_of_pk(&bg.pk).ok_or_else(misplaced)?.to_owned(),
        audit_id: bg.sk.strip_prefix(schema::BREAK_GLASS_PREFIX).ok_or_else(misplaced)?.to_owned(),
        recorded: bg.at,
        code: bg.code,
        audit_event: bg.body,
        sealed_reason: bg.reason,
        review,
    })
}

impl crate::ports::AuditLog for DynamoStore {
    async fn trail(&self, from: &str, to: &str) -> Result<Vec<serde_json::Value>, PortError> {
        super::checkpoints::chain_window(&self.client, &self.tables.audit, self.shards.count(), from, to).await
    }

    async fn break_glass_accesses(
        &self,
        reviewed: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::ports::BreakGlassAccess>, PortError> {
        let ix = if reviewed { BREAK_GLASS_REVIEWED } else { BREAK_GLASS_PENDING };
        // One page of the index, never the whole queue: a burst of
        // break-glass use must not make its own review slower.
        let keys = self.index_page(ix, after, limit).await?;
        let mut found = Vec::with_capacity(keys.len());
        // The index holds keys only; each access is read whole, consistently
        // (a review may have just moved it).
        for key in keys {
            let (Some(pk), Some(sk)) = (get_s(&key, "pk"), get_s(&key, "sk")) else { continue };
            let item = self.projected_item(pk, sk, &BREAK_GLASS_ATTRIBUTES).await?;
            if let Some(item) = item.filter(|i| get_s(i, "ix") == Some(ix)) {
                found.push(break_glass_from(&item)?);
            }
        }
        Ok(found)
    }

    async fn break_glass_access(&self, audit_id: &str) -> Result<Option<crate::ports::BreakGlassAccess>, PortError> {
        let locator = self.projected_item(&locator_pk(BREAK_GLASS_LOCATOR, audit_id), LOCATOR_SK, &["p"]).await?;
        let Some(patient) = locator.as_ref().and_then(|l| get_s(l, "p")) else { return Ok(None) };
        let item =
            self.projected_item(&patient_pk(patient), &break_glass_sk(audit_id), &BREAK_GLASS_ATTRIBUTES).await?;
        item.as_ref().map(break_glass_from).transpose()
    }

    async fn review_break_glass(
        &self,
        access: &crate::ports::BreakGlassAccess,
        review: &crate::ports::BreakGlassReview,
        audit: &AuditEntry,
    ) -> Result<(), PortError> {
        let mut update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.tables.records)
            .set_key(Some(key(patient_pk(&access.patient), break_glass_sk(&access.audit_id))))
            .condition_expression("#ix = :pending")
            .expression_attribute_values(":pending", s(BREAK_GLASS_PENDING))
            .expression_attribute_values(":reviewed", s(BREAK_GLASS_REVIEWED))
            .expression_attribute_values(":outcome", s(&review.outcome))
            .expression_attribute_values(":reviewer", s(&review.reviewer))
            .expression_attribute_values(":at", s(&review.at));
        for name in ["ix", "outcome", "reviewer", "rat"] {
            update = update.expression_attribute_names(format!("#{name}"), name);
        }
        let mut set = "SET #ix = :reviewed, #outcome = :outcome, #reviewer = :reviewer, #rat = :at".to_owned();
        if let Some(note) = &review.sealed_note {
            update = update.expression_attribute_values(":note", b(note)).expression_attribute_names("#note", "note");
            set.push_str(", #note = :note");
        }
        let update = update.update_expression(set).build().expect("table, key and expression set");
        let items = vec![TransactWriteItem::builder().update(update).build()];
        self.commit_with_audit(items, std::slice::from_ref(audit)).await
    }

    async fn count_failure(&self, current: &str, previous: &str, expires: i64) -> Result<u64, PortError> {
        let key = schema::failures_key;
        let counted = |item: Option<&HashMap<String, AV>>| {
            item.and_then(|i| i.get("n")).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
        };
        let (now, before) = tokio::join!(
            self.client
                .update_item()
                .table_name(&self.tables.records)
                .set_key(Some(key(current)))
                .update_expression("ADD n :one SET expires = :expires")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":expires", n(expires.max(0) as u64))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send(),
            self.client.get_item().table_name(&self.tables.records).set_key(Some(key(previous))).send(),
        );
        let now = now.map_err(|e| port_error("dynamodb", &e))?;
        let before = before.map_err(|e| port_error("dynamodb", &e))?;
        Ok(counted(now.attributes.as_ref()) + counted(before.item()))
    }

    async fn audit_records(
        &self,
        key: crate::ports::AuditKey<'_>,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<String>, PortError> {
        let (index, attr, value) = match key {
            crate::ports::AuditKey::Patient(p) => ("by-patient", "patient", p),
            crate::ports::AuditKey::Agent(a) => ("by-agent", "agent", a),
        };
        let items = query_at_most(
            &self.client,
            &self.tables.audit,
            &|q| {
                q.index_name(index)
                    .key_condition_expression("#k = :k AND #at BETWEEN :from AND :to")
                    .expression_attribute_names("#k", attr)
                    .expression_attribute_names("#at", "at")
                    .expression_attribute_values(":k", s(value))
                    .expression_attribute_values(":from", s(from))
                    .expression_attribute_values(":to", s(to))
            },
            Some(limit),
        )
        .await?;
        Ok(items.iter().filter_map(|i| get_s(i, "body").map(str::to_owned)).collect())
    }
}

/// DynamoDB's limit on requests in one BatchWriteItem call.
const BATCH_WRITE_LIMIT: usize = 25;

/// Writes (puts or deletes) in batches, retrying with backoff what DynamoDB
/// left unprocessed; throttled after a few rounds.
pub async fn batch_write_all(
    client: &Client,
    table: &str,
    requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
) -> Result<(), PortError> {
    for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
        let mut pending = chunk.to_vec();
        for attempt in 0u32.. {
            let out = client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
            pending = out.unprocessed_items().and_then(|m| m.get(table)).cloned().unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            if attempt == 5 {
                return Err(PortError::Throttled("dynamodb"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
    }
    Ok(())
}

/// DynamoDB's limit on keys in one BatchGetItem call.
const BATCH_GET_LIMIT: usize = 100;

/// Reads items by key, strongly consistent, in batches, asking again with
/// backoff for what DynamoDB left unprocessed (throttling, or its 16 MB
/// answer limit); throttled after a few rounds. `shape` adds a projection.
/// Items come back in no particular order; keys not found are absent.
pub async fn batch_get_all(
    client: &Client,
    table: &str,
    keys: Vec<HashMap<String, AV>>,
    shape: impl Fn(KeysAndAttributesBuilder) -> KeysAndAttributesBuilder,
) -> Result<Vec<HashMap<String, AV>>, PortError> {
    let mut items = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH_GET_LIMIT) {
        let mut pending = chunk.to_vec();
        for attempt in 0u32.. {
            let request = shape(KeysAndAttributes::builder().set_keys(Some(pending)).consistent_read(true))
                .build()
                .map_err(|e| PortError::Integrity(e.to_string()))?;
            let mut out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
            items.extend(out.responses.as_mut().and_then(|r| r.remove(table)).unwrap_or_default());
            pending = out.unprocessed_keys.as_mut().and_then(|u| u.remove(table)).map(|k| k.keys).unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            if attempt == 5 {
                return Err(PortError::Throttled("dynamodb"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
    }
    Ok(items)
}

/// Reads every chain record and head of the audit table, grouped by shard,
/// for verification.
pub async fn read_audit_chains(
    client: &Client,
    audit_table: &str,
) -> Result<(HashMap<u32, Vec<Record>>, HashMap<u32, Head>), PortError> {
    let mut records: HashMap<u32, Vec<Record>> = HashMap::new();
    let mut heads = HashMap::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(audit_table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| port_error("dynamodb", &e))?;
        for item in out.items() {
            // Verification reads what is there instead of typed items: a
            // record stripped of an attribute is a break to report (its
            // hash no longer holds), not a reason to stop verifying.
            let text = |k| get_s(item, k).unwrap_or_default().to_owned();
            let number = |k| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
            let pk = get_s(item, "pk").unwrap_or_default();
            if let Some(shard) = schema::shard_of_chain(pk) {
                let record = Record { seq: number("sk"), prev: text("prev"), hash: text("hash"), body: text("body") };
                records.entry(shard).or_default().push(record);
            } else if let Some(shard) = schema::shard_of_head(pk) {
                heads.insert(shard, Head { seq: number("seq"), hash: text("hash") });
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    for recs in records.values_mut() {
        recs.sort_by_key(|r| r.seq);
    }
    Ok((records, heads))
}
