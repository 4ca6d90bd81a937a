//! `medrec purge plan|run` and `medrec hold place|release`: the retention
//! operations against a stack (the running local one by default), built
//! from the same service keys as the functions.

use crate::audit_verify::Target;
use medrec_edge::aws::dynamo::Tables;
use medrec_edge::aws::purge::PurgeContext;

pub async fn context(target: &Target, outbox_table: &str, documents_bucket: &str) -> Result<PurgeContext, String> {
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let tables = Tables {
        records: target.records_table.clone(),
        audit: target.audit_table.clone(),
        outbox: outbox_table.to_owned(),
    };
    let kms = medrec_edge::aws::kms::KmsKeys::new(aws_sdk_kms::Client::new(&sdk), &target.records_key_id);
    PurgeContext::new(&sdk, target.endpoint.is_some(), tables, kms, target.shards, documents_bucket)
        .await
        .map_err(|e| e.to_string())
}
