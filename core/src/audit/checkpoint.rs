//! Signed checkpoints of the audit chains. A checkpoint records every
//! shard's head (sequence and link hash) at a moment, names the previous
//! checkpoint by digest, and is signed with a KMS asymmetric key (ECDSA
//! P-256) whose private half never leaves KMS. What a chain alone cannot
//! show, a checkpoint does: a tail cut off with the head rolled back, or a
//! chain rewritten by someone holding the MAC key, contradicts the
//! checkpoints signed before.

use super::chain::Record;
use crate::crypto::{hex, sha256};
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// 1, 2, 3...: a gap or a repeat is a finding.
    pub number: u64,
    pub at: String,
    /// shard -> (sequence, link hash) of its head.
    pub heads: BTreeMap<u32, (u64, String)>,
    /// SHA-256 (hex) of the previous checkpoint's body.
    pub previous: Option<String>,
}

impl Checkpoint {
    /// The signed bytes: field order and sorted shards make them canonical.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serialises")
    }

    pub fn digest_of(body: &str) -> String {
        hex(&sha256(body.as_bytes()))
    }
    /// What KMS signs (as a RAW message, ECDSA_SHA_256): a fixed-size
    /// statement of the body's digest, so a body of any size stays within
    /// KMS's 4 KB message limit without relying on pre-hashed (DIGEST)
    /// signing, which not every KMS implementation offers.
    pub fn statement(body: &str) -> String {
        format!("medrec-audit-checkpoint-v1\n{}", Self::digest_of(body))
    }
}

/// A checkpoint as stored: its body and the DER signature over it.
#[derive(Debug, Clone)]
pub struct Signed {
    pub body: String,
    pub signature: Vec<u8>,
}

/// The DER header of a P-256 SubjectPublicKeyInfo (what KMS GetPublicKey
/// returns) before its 65-byte uncompressed point.
pub const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed P-256 point of a SubjectPublicKeyInfo.
fn spki_point(spki: &[u8]) -> Option<&[u8]> {
    (spki.len() == 91 && spki[..26] == P256_SPKI_HEADER).then(|| &spki[26..])
}

pub fn signature_ok(public_key_spki: &[u8], body: &str, signature: &[u8]) -> bool {
    verify_statement(public_key_spki, &Checkpoint::statement(body), signature)
}

/// Verifies a KMS ECDSA_SHA_256 signature over a signed statement.
pub fn verify_statement(public_key_spki: &[u8], statement: &str, signature: &[u8]) -> bool {
    spki_point(public_key_spki).is_some_and(|point| {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(statement.as_bytes(), signature).is_ok()
    })
}

/// Where the checkpoints and the chains disagree, or the checkpoints
/// among themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub checkpoint: u64,
    pub shard: Option<u32>,
    pub seq: Option<u64>,
    pub reason: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint {}", self.checkpoint)?;
        if let (Some(shard), Some(seq)) = (self.shard, self.seq) {
            write!(f, ", shard {shard} record {seq}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Verifies every checkpoint (oldest first): signature, numbering, link to
/// the previous one, and that each shard's chain still holds the head it
/// recorded. Returns how many checkpoints were verified.
pub fn verify(public_key_spki: &[u8], signed: &[Signed], chains: &HashMap<u32, Vec<Record>>) -> Result<usize, Finding> {
    let mut previous: Option<&Signed> = None;
    for (i, s) in signed.iter().enumerate() {
        let expected = i as u64 + 1;
        let finding = |shard, seq, reason| Finding { checkpoint: expected, shard, seq, reason };
        if !signature_ok(public_key_spki, &s.body, &s.signature) {
            return Err(finding(None, None, "signature does not verify (checkpoint replaced or edited)"));
        }
        let cp: Checkpoint =
            serde_json::from_str(&s.body).map_err(|_| finding(None, None, "checkpoint is malformed"))?;
        if cp.number != expected {
            return Err(finding(None, None, "checkpoint numbering has a gap or a repeat (one deleted or inserted)"));
        }
        if cp.previous != previous.map(|p| Checkpoint::digest_of(&p.body)) {
            return Err(finding(None, None, "does not name the previous checkpoint"));
        }
        for (shard, (seq, hash)) in &cp.heads {
            let record = chains.get(shard).and_then(|rs| rs.iter().find(|r| r.seq == *seq));
            match record {
                None => return Err(finding(Some(*shard), Some(*seq), "a checkpointed record is gone (truncated)")),
                Some(r) if r.hash != *hash => {
                    return Err(finding(Some(*shard), Some(*seq), "the record differs from the checkpoint (rewritten)"))
                }
                Some(_) => {}
            }
        }
        previous = Some(s);
    }
    Ok(signed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn key() -> (EcdsaKeyPair, Vec<u8>) {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        (pair, spki)
    }

    fn sign(pair: &EcdsaKeyPair, cp: &Checkpoint) -> Signed {
        let body = cp.body();
        let statement = Checkpoint::statement(&body);
        let signature = pair.sign(&SystemRandom::new(), statement.as_bytes()).unwrap().as_ref().to_vec();
        Signed { body, signature }
    }

    fn chain(n: u64) -> HashMap<u32, Vec<Record>> {
        let recs = (1..=n).map(|seq| Record { seq, prev: String::new(), hash: format!("h{seq}"), body: String::new() });
        HashMap::from([(0, recs.collect())])
    }

    fn checkpoints(pair: &EcdsaKeyPair) -> Vec<Signed> {
        let first =
            Checkpoint { number: 1, at: "t1".into(), heads: BTreeMap::from([(0, (2, "h2".into()))]), previous: None };
        let s1 = sign(pair, &first);
        let second = Checkpoint {
            number: 2,
            at: "t2".into(),
            heads: BTreeMap::from([(0, (4, "h4".into()))]),
            previous: Some(Checkpoint::digest_of(&s1.body)),
        };
        let s2 = sign(pair, &second);
        vec![s1, s2]
    }

    #[test]
    fn consistent_checkpoints_verify() {
        let (pair, spki) = key();
        assert_eq!(verify(&spki, &checkpoints(&pair), &chain(5)), Ok(2));
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let (pair, spki) = key();
        let cps = checkpoints(&pair);
        let truncated = verify(&spki, &cps, &chain(3)).unwrap_err();
        assert_eq!((truncated.checkpoint, truncated.shard, truncated.seq), (2, Some(0), Some(4)));
        let mut rewritten = chain(5);
        rewritten.get_mut(&0).unwrap()[1].hash = "forged".into();
        assert_eq!(verify(&spki, &cps, &rewritten).unwrap_err().seq, Some(2));
        let mut edited = cps.clone();
        edited[1].body = edited[1].body.replace("\"h4\"", "\"h3\"");
        assert!(verify(&spki, &edited, &chain(5)).unwrap_err().reason.contains("signature"));
        let (other, _) = key();
        let replaced = vec![cps[0].clone(), sign(&other, &serde_json::from_str(&cps[1].body).unwrap())];
        assert!(verify(&spki, &replaced, &chain(5)).unwrap_err().reason.contains("signature"));
        assert!(verify(&spki, &cps[1..], &chain(5)).unwrap_err().reason.contains("numbering"));
        let relinked = Checkpoint { number: 2, at: "t2".into(), heads: BTreeMap::new(), previous: None };
        let relinked = vec![cps[0].clone(), sign(&pair, &relinked)];
        assert!(verify(&spki, &relinked, &chain(5)).unwrap_err().reason.contains("previous"));
    }
}
