//! The whole audit trail verified: every chain recomputed with the chain
//! key (the first record that does not match named per broken shard), every
//! signed checkpoint checked against the chains, and every committed record
//! compared with the archive's mirror. `medrec audit verify` prints it; the
//! compliance report cites it as evidence.

use crate::audit::chain::{verify_shard, Break};
use crate::audit::checkpoint::Finding;
use crate::audit::mirror::{compare, MirrorReport};
use crate::checkpoints::Checkpoints;
use crate::crypto::DataKey;
use crate::dynamo::read_audit_chains;
use crate::error::PortError;
use crate::mirror::AuditMirror;
use std::time::Instant;

pub struct Verification {
    pub records: u64,
    pub shards: usize,
    pub breaks: Vec<Break>,
    /// Checkpoints verified, and the first one that contradicts.
    pub checkpoints: usize,
    pub finding: Option<Finding>,
    /// The table against the archive's mirror of every committed record
    /// (None without the archive).
    pub mirror: Option<MirrorReport>,
    pub seconds: f64,
}

impl Verification {
    /// Whether anything was found tampered with.
    pub fn tampered(&self) -> bool {
        !self.breaks.is_empty() || self.finding.is_some() || self.mirror.as_ref().is_some_and(|m| m.finding.is_some())
    }
}

/// Verifies the trail; `progress(done, total)` after each shard.
pub async fn verify_trail(
    ddb: &aws_sdk_dynamodb::Client,
    audit_table: &str,
    chain_key: &DataKey,
    checkpoints: Option<&Checkpoints>,
    mirror: Option<&AuditMirror>,
    progress: impl Fn(u64, u64),
) -> Result<Verification, PortError> {
    let started = Instant::now();
    let (records, heads) = read_audit_chains(ddb, audit_table).await?;
    let total: u64 = records.values().map(|r| r.len() as u64).sum();
    let mut shards: Vec<u32> = records.keys().chain(heads.keys()).copied().collect();
    shards.sort();
    shards.dedup();
    let (mut breaks, mut verified, mut done) = (vec![], 0, 0);
    for shard in &shards {
        let recs = records.get(shard).map(Vec::as_slice).unwrap_or(&[]);
        match verify_shard(chain_key, *shard, recs, heads.get(shard)) {
            Ok(n) => verified += n,
            Err(b) => breaks.push(b),
        }
        done += recs.len() as u64;
        progress(done, total);
    }
    let (mut verified_checkpoints, mut finding) = (0, None);
    if let Some(cps) = checkpoints {
        let signed = cps.all().await?;
        let public_key = cps.public_key().await?;
        match crate::audit::checkpoint::verify(&public_key, &signed, &records) {
            Ok(n) => verified_checkpoints = n,
            Err(f) => finding = Some(f),
        }
    }
    let mirror = match mirror {
        Some(archive) => Some(compare(&records, &archive.entries().await?)),
        None => None,
    };
    Ok(Verification {
        records: verified,
        shards: shards.len(),
        breaks,
        checkpoints: verified_checkpoints,
        finding,
        mirror,
        seconds: started.elapsed().as_secs_f64(),
    })
}
