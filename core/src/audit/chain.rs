//! Tamper-evident audit chains. Records are spread over N shards (so no single
//! DynamoDB partition is hot); within a shard each record links to its
//! predecessor by a MAC over (shard, sequence, previous link, body). The MAC
//! key is wrapped by KMS, so someone who can write the table but cannot use
//! the key cannot recompute a chain after editing it. Shard heads advance by
//! conditional writes, so concurrent writers never fork a chain.

use crate::crypto::{hex, DataKey};
use aws_lc_rs::hmac;

/// The `prev` of the first record in every shard.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn link(key: &DataKey, shard: u32, seq: u64, prev: &str, body: &str) -> String {
    Linker::new(key).link(shard, seq, prev, body)
}

/// The chain MAC with its key schedule done once, for verifying many
/// records: the input is fed in parts, never copied into one string.
pub struct Linker(hmac::Key);

impl Linker {
    pub fn new(key: &DataKey) -> Self {
        Linker(hmac::Key::new(hmac::HMAC_SHA256, key.expose()))
    }

    pub fn link(&self, shard: u32, seq: u64, prev: &str, body: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"medrec-audit-v1\n");
        ctx.update(shard.to_string().as_bytes());
        ctx.update(b"\n");
        ctx.update(seq.to_string().as_bytes());
        ctx.update(b"\n");
        ctx.update(prev.as_bytes());
        ctx.update(b"\n");
        ctx.update(body.as_bytes());
        hex(ctx.sign().as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    pub body: String,
}

/// The first place a shard's chain stops being consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub shard: u32,
    /// The sequence number of the first record that does not match.
    pub seq: u64,
    pub reason: &'static str,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} record {}: {}", self.shard, self.seq, self.reason)
    }
}

/// Verifies one shard: `records` in stored (sequence) order, `head` as stored.
/// Returns the number of records verified.
pub fn verify_shard(key: &DataKey, shard: u32, records: &[Record], head: Option<&Head>) -> Result<u64, Break> {
    let linker = Linker::new(key);
    let mut prev = GENESIS.to_owned();
    let mut expected = 1u64;
    for r in records {
        let brk = |reason| Break { shard, seq: r.seq, reason };
        if r.seq < expected {
            return Err(brk("duplicate or reordered sequence number"));
        }
        if r.seq > expected {
            return Err(Break { shard, seq: expected, reason: "record missing (deleted)" });
        }
        if r.prev != prev {
            return Err(brk("link to previous record does not match (inserted, deleted or reordered)"));
        }
        if linker.link(shard, r.seq, &r.prev, &r.body) != r.hash {
            return Err(brk("record content does not match its MAC (modified)"));
        }
        prev = r.hash.clone();
        expected += 1;
    }
    let last = expected - 1;
    match head {
        None if last == 0 => Ok(0),
        None => Err(Break { shard, seq: last, reason: "chain head missing" }),
        Some(h) if h.seq > last => {
            Err(Break { shard, seq: last + 1, reason: "records missing at the end of the chain (deleted)" })
        }
        Some(h) if h.seq < last => {
            Err(Break { shard, seq: h.seq + 1, reason: "records beyond the chain head (inserted)" })
        }
        Some(h) if h.hash != prev => {
            Err(Break { shard, seq: last, reason: "chain head does not match the last record" })
        }
        Some(_) => Ok(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(key: &DataKey, n: u64) -> (Vec<Record>, Head) {
        let mut prev = GENESIS.to_owned();
        let mut out = vec![];
        for seq in 1..=n {
            let body = format!("{{\"n\":{seq}}}");
            let hash = link(key, 0, seq, &prev, &body);
            out.push(Record { seq, prev: prev.clone(), hash: hash.clone(), body });
            prev = hash;
        }
        (out, Head { seq: n, hash: prev })
    }

    #[test]
    fn intact_chain_verifies_and_each_tamper_is_named() {
        let key = DataKey::random();
        let (recs, head) = chain(&key, 5);
        assert_eq!(verify_shard(&key, 0, &recs, Some(&head)), Ok(5));

        let mut edited = recs.clone();
        edited[2].body = "{\"n\":99}".into();
        assert_eq!(verify_shard(&key, 0, &edited, Some(&head)).unwrap_err().seq, 3);

        let mut deleted = recs.clone();
        deleted.remove(1);
        assert_eq!(verify_shard(&key, 0, &deleted, Some(&head)).unwrap_err().seq, 2);

        let mut reordered = recs.clone();
        reordered.swap(1, 3);
        assert_eq!(verify_shard(&key, 0, &reordered, Some(&head)).unwrap_err().seq, 2);

        let mut renumbered = recs.clone();
        renumbered.swap(1, 3);
        renumbered[1].seq = 2;
        renumbered[3].seq = 4;
        assert_eq!(verify_shard(&key, 0, &renumbered, Some(&head)).unwrap_err().seq, 2);

        let mut tail_cut = recs.clone();
        tail_cut.pop();
        assert_eq!(verify_shard(&key, 0, &tail_cut, Some(&head)).unwrap_err().seq, 5);

        let (longer, _) = chain(&key, 6);
        assert_eq!(verify_shard(&key, 0, &longer, Some(&head)).unwrap_err().seq, 6);

        let forged_key = DataKey::random();
        let (forged, forged_head) = chain(&forged_key, 5);
        assert_eq!(verify_shard(&key, 0, &forged, Some(&forged_head)).unwrap_err().seq, 1);
    }
}
