//! `medrec audit verify`: recomputes every audit chain and names the first
//! record that does not match in each broken shard.

use medrec_shared::audit::chain::{verify_shard, Break};
use medrec_shared::aws::dynamo::read_audit_chains;
use medrec_shared::aws::kms::KmsKeys;
use medrec_shared::runtime::root_secret;
use medrec_shared::service::ServiceKeys;
use std::time::Instant;

pub struct Target {
    pub endpoint: Option<String>,
    pub audit_table: String,
    pub records_table: String,
    pub records_key_id: String,
}

pub struct Report {
    pub records: u64,
    pub shards: usize,
    pub breaks: Vec<Break>,
    pub seconds: f64,
}

pub async fn verify(target: &Target, progress: bool) -> Result<Report, String> {
    let sdk = medrec_shared::aws::sdk_config(target.endpoint.as_deref()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let kms = KmsKeys::new(aws_sdk_kms::Client::new(&sdk), &target.records_key_id);
    let root = root_secret(&ddb, &kms, &target.records_table).await.map_err(|e| e.to_string())?;
    let key = ServiceKeys::derive(&root).audit_chain;
    let started = Instant::now();
    let (records, heads) = read_audit_chains(&ddb, &target.audit_table).await.map_err(|e| e.to_string())?;
    let total: u64 = records.values().map(|r| r.len() as u64).sum();
    let bar = if progress { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut shards: Vec<u32> = records.keys().chain(heads.keys()).copied().collect();
    shards.sort();
    shards.dedup();
    let mut breaks = vec![];
    let mut verified = 0;
    for shard in &shards {
        let recs = records.get(shard).map(Vec::as_slice).unwrap_or(&[]);
        match verify_shard(&key, *shard, recs, heads.get(shard)) {
            Ok(n) => verified += n,
            Err(b) => breaks.push(b),
        }
        bar.inc(recs.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Report { records: verified, shards: shards.len(), breaks, seconds: started.elapsed().as_secs_f64() })
}
