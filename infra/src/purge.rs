//! `medrec purge plan|run` and `medrec hold place|release`: the retention
//! operations against a stack (the running local one by default), built
//! from the same service keys as the functions.

use crate::audit_verify::Target;
use medrec_shared::aws::dynamo::{DynamoStore, Tables};
use medrec_shared::aws::kms::KmsKeys;
use medrec_shared::aws::purge::Purger;
use medrec_shared::crypto::blind::BlindIndex;
use medrec_shared::runtime::root_secret;
use medrec_shared::service::ServiceKeys;

/// What a Purger needs, built once.
pub struct Context {
    pub store: DynamoStore,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub index: BlindIndex,
    pub records_table: String,
    pub documents_bucket: String,
}

impl Context {
    pub async fn new(target: &Target, outbox_table: &str, documents_bucket: &str) -> Result<Context, String> {
        let sdk = medrec_shared::aws::sdk_config(target.endpoint.as_deref()).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let kms = KmsKeys::new(aws_sdk_kms::Client::new(&sdk), &target.records_key_id);
        let root = root_secret(&ddb, &kms, &target.records_table).await.map_err(|e| e.to_string())?;
        let keys = ServiceKeys::derive(&root);
        let tables = Tables {
            records: target.records_table.clone(),
            audit: target.audit_table.clone(),
            outbox: outbox_table.to_owned(),
        };
        let s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(target.endpoint.is_some()).build();
        Ok(Context {
            store: DynamoStore::new(ddb.clone(), tables, keys.audit_chain, target.shards),
            ddb,
            s3: aws_sdk_s3::Client::from_conf(s3),
            index: BlindIndex::new(keys.blind_index),
            records_table: target.records_table.clone(),
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
