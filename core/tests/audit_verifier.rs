//! The audit verifier against each failure class CloudTrail's log file
//! validation reports, generated at every position of a chain and of a
//! checkpoint series: modified, deleted, inserted and moved (reordered)
//! records; missing, malformed and forged checkpoints; an unknown signing
//! key; a gap between checkpoints. Every case must be detected (100 %) and
//! the first bad record, or the checkpoint contradicted, named exactly.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use medrec_core::audit::chain::{link, verify_shard, Head, Record, GENESIS};
use medrec_core::audit::checkpoint::{verify, Checkpoint, Signed};
use medrec_core::crypto::DataKey;
use std::collections::{BTreeMap, HashMap};

const N: u64 = 40;

type Chains = HashMap<u32, Vec<Record>>;

fn chain(key: &DataKey) -> (Vec<Record>, Head) {
    let mut prev = GENESIS.to_owned();
    let mut out = vec![];
    for seq in 1..=N {
        let body = format!("{{\"resourceType\":\"AuditEvent\",\"n\":{seq}}}");
        let hash = link(key, 0, seq, &prev, &body);
        out.push(Record { seq, prev: prev.clone(), hash: hash.clone(), body });
        prev = hash;
    }
    (out, Head { seq: N, hash: prev })
}

/// Runs the cases; each must fail at the expected record.
fn expect_named(class: &str, key: &DataKey, cases: Vec<(Vec<Record>, Option<Head>, u64)>) -> usize {
    for (i, (records, head, expected)) in cases.iter().enumerate() {
        match verify_shard(key, 0, records, head.as_ref()) {
            Ok(_) => panic!("{class} case {i}: not detected"),
            Err(b) => assert_eq!(b.seq, *expected, "{class} case {i}: named record {} ({})", b.seq, b.reason),
        }
    }
    println!("{class}: {} cases, all detected, first bad record named", cases.len());
    cases.len()
}

#[test]
fn every_record_tampering_class_is_detected_and_named() {
    let key = DataKey::from_slice(&[9; 32]).unwrap();
    let (good, head) = chain(&key);
    assert_eq!(verify_shard(&key, 0, &good, Some(&head)), Ok(N));
    let mut total = 0;

    // Modified: a byte of the body, the stored MAC, the stored link.
    let mut cases = vec![];
    for i in 0..N as usize {
        let mut r = good.clone();
        r[i].body = r[i].body.replace("AuditEvent", "AuditEvenT");
        cases.push((r, Some(head.clone()), i as u64 + 1));
        let mut r = good.clone();
        let flipped = if r[i].hash.starts_with('0') { "1" } else { "0" };
        r[i].hash.replace_range(0..1, flipped);
        // A forged MAC is caught at the record (its MAC) or, for the last, by the head.
        cases.push((r, Some(head.clone()), i as u64 + 1));
    }
    total += expect_named("modified", &key, cases);

    // Deleted: each record, and the tail.
    let mut cases = vec![];
    for i in 0..N as usize {
        let mut r = good.clone();
        r.remove(i);
        let expected = if i + 1 == N as usize { N } else { i as u64 + 1 };
        cases.push((r, Some(head.clone()), expected));
    }
    for keep in 0..N as usize {
        cases.push((good[..keep].to_vec(), Some(head.clone()), keep as u64 + 1));
    }
    total += expect_named("deleted", &key, cases);

    // Inserted: a record slipped in at each position, the later ones
    // renumbered to make room (sequence numbers are the table's sort key),
    // its MAC made without medrec's key. (An insider holding the key is what
    // signed checkpoints are for: below.)
    let outsider = DataKey::from_slice(&[1; 32]).unwrap();
    let mut cases = vec![];
    for i in 0..=N as usize {
        let mut r = good.clone();
        let prev = if i == 0 { GENESIS.to_owned() } else { good[i - 1].hash.clone() };
        let body = "{\"resourceType\":\"AuditEvent\",\"forged\":true}".to_owned();
        let seq = i as u64 + 1;
        let forged = Record { seq, prev: prev.clone(), hash: link(&outsider, 0, seq, &prev, &body), body };
        for later in r.iter_mut().skip(i) {
            later.seq += 1;
        }
        r.insert(i, forged);
        cases.push((r, Some(head.clone()), seq));
    }
    total += expect_named("inserted", &key, cases);

    // Moved: each pair of neighbours swapped, as stored and renumbered.
    let mut cases = vec![];
    for i in 0..N as usize - 1 {
        let mut r = good.clone();
        r.swap(i, i + 1);
        cases.push((r, Some(head.clone()), i as u64 + 1));
        let mut r = good.clone();
        r.swap(i, i + 1);
        let (a, b) = (r[i].seq, r[i + 1].seq);
        r[i].seq = b;
        r[i + 1].seq = a;
        cases.push((r, Some(head.clone()), i as u64 + 1));
    }
    total += expect_named("moved", &key, cases);

    // Another key (a chain rebuilt by someone without medrec's key).
    let (foreign, foreign_head) = chain(&DataKey::from_slice(&[1; 32]).unwrap());
    total += expect_named("rebuilt under another key", &key, vec![(foreign, Some(foreign_head), 1)]);
    println!("record classes: {total} cases, 100% detected");
}

fn signer() -> (EcdsaKeyPair, Vec<u8>) {
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
    let signature = pair.sign(&SystemRandom::new(), Checkpoint::statement(&body).as_bytes()).unwrap().as_ref().to_vec();
    Signed { body, signature }
}

/// Checkpoints every 4 records of the chain, each naming the previous.
fn series(pair: &EcdsaKeyPair, records: &[Record]) -> Vec<Signed> {
    let mut out: Vec<Signed> = vec![];
    for (i, r) in records.iter().enumerate().filter(|(i, _)| (i + 1) % 4 == 0) {
        let cp = Checkpoint {
            number: out.len() as u64 + 1,
            at: format!("t{i}"),
            heads: BTreeMap::from([(0, (r.seq, r.hash.clone()))]),
            previous: out.last().map(|p| Checkpoint::digest_of(&p.body)),
        };
        out.push(sign(pair, &cp));
    }
    out
}

#[test]
fn every_checkpoint_failure_class_is_detected_and_named() {
    let key = DataKey::from_slice(&[9; 32]).unwrap();
    let (good, _) = chain(&key);
    let chains = HashMap::from([(0u32, good.clone())]);
    let (pair, spki) = signer();
    let cps = series(&pair, &good);
    let n = cps.len();
    assert_eq!(verify(&spki, &cps, &chains), Ok(n));
    let mut cases: Vec<(&str, Vec<Signed>, Chains, u64)> = vec![];

    for i in 0..n {
        // Missing: one checkpoint deleted (the next one is then out of number).
        let mut missing = cps.clone();
        missing.remove(i);
        if i + 1 < n {
            cases.push(("missing", missing, chains.clone(), i as u64 + 1));
        }
        // Malformed: the body cut short (re-signed, so only the shape is wrong).
        let mut malformed = cps.clone();
        let cut = &cps[i].body[..cps[i].body.len() / 2];
        let signature =
            pair.sign(&SystemRandom::new(), Checkpoint::statement(cut).as_bytes()).unwrap().as_ref().to_vec();
        malformed[i] = Signed { body: cut.to_owned(), signature };
        cases.push(("malformed", malformed, chains.clone(), i as u64 + 1));
        // Bad signature: one bit of it flipped; and an edited body under the old signature.
        let mut flipped = cps.clone();
        let last = flipped[i].signature.len() - 2;
        flipped[i].signature[last] ^= 1;
        cases.push(("bad signature", flipped, chains.clone(), i as u64 + 1));
        let mut edited = cps.clone();
        edited[i].body = edited[i].body.replace(&format!("\"t{}\"", 4 * i + 3), "\"t0\"");
        cases.push(("edited under its signature", edited, chains.clone(), i as u64 + 1));
        // Unknown signing key: re-signed by someone else.
        let (other, _) = signer();
        let mut foreign = cps.clone();
        foreign[i] = sign(&other, &serde_json::from_str(&cps[i].body).unwrap());
        cases.push(("unknown signing key", foreign, chains.clone(), i as u64 + 1));
        // Gap: numbering skips one (re-signed with the right key).
        let mut gap = cps.clone();
        let mut cp: Checkpoint = serde_json::from_str(&gap[i].body).unwrap();
        cp.number += 1;
        gap[i] = sign(&pair, &cp);
        cases.push(("gap between checkpoints", gap, chains.clone(), i as u64 + 1));
        // The records a checkpoint vouches for were rewritten, or cut off.
        let head_seq = 4 * (i as u64 + 1);
        let mut rewritten = chains.clone();
        rewritten.get_mut(&0).unwrap()[head_seq as usize - 1].hash = "f".repeat(64);
        cases.push(("records under a checkpoint rewritten", cps.clone(), rewritten, i as u64 + 1));
        let mut cut_chain = chains.clone();
        cut_chain.get_mut(&0).unwrap().truncate(head_seq as usize - 1);
        cases.push(("records under a checkpoint truncated", cps.clone(), cut_chain, i as u64 + 1));
    }
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (class, signed, chains, expected)) in cases.iter().enumerate() {
        match verify(&spki, signed, chains) {
            Ok(_) => panic!("{class} (case {i}): not detected"),
            Err(f) => {
                let named = f.checkpoint == *expected;
                assert!(named, "{class} (case {i}): named checkpoint {} ({})", f.checkpoint, f.reason);
            }
        }
        *by_class.entry(class).or_default() += 1;
    }
    for (class, count) in &by_class {
        println!("{class}: {count} cases, all detected");
    }
    println!("checkpoint classes: {} cases, 100% detected", cases.len());
}
