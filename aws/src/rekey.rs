//! Data keys moved to another records CMK (a CMK change, or a suspected
//! compromise of the old one) with KMS `ReEncrypt`: each wrapped key is
//! unwrapped and wrapped again inside KMS, its plaintext never leaves KMS,
//! and its encryption context (the patient, or the secret's purpose) stays
//! bound to it. Every patient's data key and the service root secret move.
//!
//! Crash-safe and resumable by construction: each key is replaced by one
//! conditional write (only if it still holds the bytes that were re-wrapped,
//! so a key the purge shredded meanwhile is never brought back), and a key
//! already under the target CMK is skipped. A run stopped at any call is
//! finished by running it again. Functions accept the old CMK meanwhile
//! (`MEDREC_PREVIOUS_RECORDS_KEY_IDS`); `status` says when none is left.

use super::dynamo::{get_s, s, DynamoStore};
use super::kms::{names_key, PATIENT_CONTEXT_KEY, PURPOSE_CONTEXT_KEY};
use super::port_error;
use super::schema::{patient_of_pk, CONFIG_PK, DATA_KEY_SK};
use crate::audit::AuditEntry;
use crate::error::PortError;
use crate::ports::RecordStore;
use aws_sdk_dynamodb::types::AttributeValue as AV;
use aws_sdk_kms::primitives::Blob;
use std::collections::{BTreeMap, HashMap};

/// The KMS context each service secret is bound to, by item name.
const SECRETS: [(&str, &str); 1] = [(super::ROOT_SECRET, super::ROOT_PURPOSE)];

pub struct Rekey<'a> {
    pub ddb: &'a aws_sdk_dynamodb::Client,
    pub kms: &'a aws_sdk_kms::Client,
    pub records_table: &'a str,
    /// Where the run's audit record goes.
    pub store: &'a DynamoStore,
}

/// What a re-wrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapRun {
    pub examined: u64,
    pub rewrapped: u64,
    /// Under the target CMK already.
    pub already: u64,
    /// Inside an unfinished transaction, or changed (shredded) meanwhile:
    /// the next run takes them.
    pub skipped: u64,
    /// The run stopped at its limit before the table's end.
    pub more: bool,
}

/// The wrapped keys, by CMK and age.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStatus {
    pub data_keys: u64,
    /// By the CMK a re-wrap recorded; keys never re-wrapped are under the
    /// CMK configured when they were made (`as created`).
    pub by_cmk: BTreeMap<String, u64>,
    /// Data keys by age: under 90 days, 90 days to a year, older.
    pub by_age: BTreeMap<&'static str, u64>,
    pub oldest: Option<String>,
    pub secrets: BTreeMap<String, String>,
}

/// A wrapped key's item: its KMS context and where it is.
fn context(item: &HashMap<String, AV>) -> Option<(&'static str, String)> {
    let (pk, sk) = (get_s(item, "pk")?, get_s(item, "sk")?);
    if pk == CONFIG_PK {
        return SECRETS
            .iter()
            .find(|(name, _)| *name == sk)
            .map(|(_, purpose)| (PURPOSE_CONTEXT_KEY, (*purpose).to_owned()));
    }
    (sk == DATA_KEY_SK).then(|| patient_of_pk(pk).map(|p| (PATIENT_CONTEXT_KEY, p.to_owned()))).flatten()
}

fn age_class(created: &str, now: time::OffsetDateTime) -> &'static str {
    let days = crate::fhir::primitives::datetime_bounds(created).map_or(0, |(t, _)| (now - t).whole_days());
    match days {
        d if d < 90 => "under 90 days",
        d if d < 365 => "90 days to a year",
        _ => "over a year",
    }
}

/// One page of the wrapped keys (compartments' and service secrets').
async fn page(
    ddb: &aws_sdk_dynamodb::Client,
    records_table: &str,
    projection: &str,
    start: Option<HashMap<String, AV>>,
) -> Result<(Vec<HashMap<String, AV>>, Option<HashMap<String, AV>>), PortError> {
    let out = ddb
        .scan()
        .table_name(records_table)
        .filter_expression("sk = :key OR pk = :config")
        .projection_expression(projection)
        .expression_attribute_values(":key", s(DATA_KEY_SK))
        .expression_attribute_values(":config", s(CONFIG_PK))
        .set_exclusive_start_key(start)
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| port_error("dynamodb", &e))?;
    Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
}

/// Every wrapped key by CMK and age (no key is read: no KMS call).
pub async fn key_status(
    ddb: &aws_sdk_dynamodb::Client,
    records_table: &str,
    now: time::OffsetDateTime,
) -> Result<KeyStatus, PortError> {
    let mut status = KeyStatus::default();
    let mut start = None;
    loop {
        let (items, next) = page(ddb, records_table, "pk, sk, cmk, created", start).await?;
        for item in &items {
            let Some((ctx, _)) = context(item) else { continue };
            let cmk = get_s(item, "cmk").unwrap_or("as created").to_owned();
            if ctx == PURPOSE_CONTEXT_KEY {
                status.secrets.insert(get_s(item, "sk").unwrap_or_default().to_owned(), cmk);
                continue;
            }
            status.data_keys += 1;
            *status.by_cmk.entry(cmk).or_default() += 1;
            if let Some(created) = get_s(item, "created") {
                *status.by_age.entry(age_class(created, now)).or_default() += 1;
                if status.oldest.as_deref().is_none_or(|o| created < o) {
                    status.oldest = Some(created.to_owned());
                }
            }
        }
        match next {
            Some(k) => start = Some(k),
            None => return Ok(status),
        }
    }
}

impl Rekey<'_> {
    /// Moves at most `limit` keys to the CMK `to`, in the table's order;
    /// `progress` after each. The run is audited (as `by`) before it moves
    /// anything, so no key moves without a record of it, however it ends.
    pub async fn rewrap(
        &self,
        to: &str,
        by: &str,
        limit: u64,
        progress: impl Fn(&RewrapRun),
    ) -> Result<RewrapRun, PortError> {
        let entry = AuditEntry {
            entities: vec![format!("urn:medrec:kms-key:{to}")],
            ..AuditEntry::by_operator(by, "key-rewrap", "medrec-rekey")
        };
        self.store.audit(&entry, vec![]).await?;
        let mut run = RewrapRun::default();
        let mut start = None;
        'pages: loop {
            let (items, next) = page(self.ddb, self.records_table, "pk, sk, wk, cmk, tx", start).await?;
            for item in &items {
                let Some((ctx, owner)) = context(item) else { continue };
                if run.rewrapped == limit {
                    run.more = true;
                    break 'pages;
                }
                run.examined += 1;
                if get_s(item, "cmk").is_some_and(|cmk| names_key(to, cmk)) {
                    run.already += 1;
                } else if item.contains_key("tx") {
                    run.skipped += 1;
                } else if self.rewrap_one(item, ctx, &owner, to).await? {
                    run.rewrapped += 1;
                } else {
                    run.skipped += 1;
                }
                progress(&run);
            }
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(run)
    }

    /// One key: re-wrapped inside KMS, then put back only over the bytes it
    /// was made from. False when the item changed meanwhile.
    async fn rewrap_one(
        &self,
        item: &HashMap<String, AV>,
        ctx: &str,
        owner: &str,
        to: &str,
    ) -> Result<bool, PortError> {
        let Some(AV::B(old)) = item.get("wk") else {
            return Err(PortError::Integrity("wrapped key without its bytes".into()));
        };
        let out = self
            .kms
            .re_encrypt()
            .ciphertext_blob(Blob::new(old.as_ref()))
            .source_encryption_context(ctx, owner)
            .destination_key_id(to)
            .destination_encryption_context(ctx, owner)
            .send()
            .await
            .map_err(|e| port_error("kms", &e))?;
        let (Some(new), Some(cmk)) = (out.ciphertext_blob(), out.key_id()) else {
            return Err(PortError::Backend { service: "kms", detail: "ReEncrypt answered without a key".into() });
        };
        let key: HashMap<String, AV> =
            ["pk", "sk"].iter().filter_map(|k| Some((k.to_string(), item.get(*k)?.clone()))).collect();
        let written = self
            .ddb
            .update_item()
            .table_name(self.records_table)
            .set_key(Some(key))
            .update_expression("SET wk = :new, cmk = :cmk, rewrapped = :at")
            .condition_expression("wk = :old AND attribute_not_exists(tx)")
            .expression_attribute_values(":new", AV::B(aws_sdk_dynamodb::primitives::Blob::new(new.as_ref())))
            .expression_attribute_values(":old", AV::B(old.clone()))
            .expression_attribute_values(":cmk", s(cmk))
            .expression_attribute_values(":at", s(crate::fhir::now_instant()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(port_error("dynamodb", &e)),
        }
    }
}
