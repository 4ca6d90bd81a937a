//! Stored PHI ciphertexts under attack, and the data-key cache under a grid
//! of limits. Records: every bit flipped and every truncation of a sample,
//! swaps between items, types, patients and versions, an old version
//! replayed as a newer one, a patient's ciphertext under another patient's
//! key. Documents (64 KiB frames): bit flips spread over every frame,
//! truncations around and between frame boundaries, an object moved to
//! another key or patient. Target: 100 % rejected, nothing opened across
//! patients. The cache: no key served past its age or use limit, never more
//! entries than allowed, never another patient's key.

use medrec_core::crypto::framed::{open_document, seal_document};
use medrec_core::crypto::keycache::{KeyCache, Limits};
use medrec_core::crypto::{open, resource_aad, seal, DataKey};
use std::sync::Arc;
use std::time::Duration;

fn key(b: u8) -> DataKey {
    DataKey::from_slice(&[b; 32]).unwrap()
}

#[test]
fn record_ciphertexts_open_only_intact_and_in_place() {
    let (k1, k2) = (key(1), key(2));
    let plain = br#"{"resourceType":"Patient","name":[{"family":"CanaryFamily","given":["CanaryGiven"]}],"birthDate":"1961-07-13"}"#;
    let aad = resource_aad("p1", "Patient", "p1", 3);
    let sealed = seal(&k1, &aad, plain);
    assert_eq!(open(&k1, &aad, &sealed).unwrap().as_slice(), plain);
    let mut rejected = 0;
    for bit in 0..sealed.len() * 8 {
        let mut s = sealed.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        assert!(open(&k1, &aad, &s).is_err(), "bit {bit}");
        rejected += 1;
    }
    for len in 0..sealed.len() {
        assert!(open(&k1, &aad, &sealed[..len]).is_err(), "truncated to {len}");
        rejected += 1;
    }
    let mut extended = sealed.clone();
    extended.push(0);
    assert!(open(&k1, &aad, &extended).is_err());
    rejected += 1;
    // Moved to another item, type, patient or version, or opened with
    // another patient's key: the AAD or the key differs, GCM refuses.
    for other in [
        resource_aad("p2", "Patient", "p1", 3),
        resource_aad("p1", "Observation", "p1", 3),
        resource_aad("p1", "Patient", "p9", 3),
        resource_aad("p1", "Patient", "p1", 4),
        resource_aad("p1", "Patient", "p1", 2),
        resource_aad("p1", "Patient", "p1", 0),
        vec![],
    ] {
        assert!(open(&k1, &other, &sealed).is_err());
        rejected += 1;
    }
    assert!(open(&k2, &aad, &sealed).is_err(), "another patient's key");
    rejected += 1;
    // Two ciphertexts of the same record differ (fresh nonces), and each is
    // bound to its own version: version 3's ciphertext replayed as 4 fails.
    let again = seal(&k1, &aad, plain);
    assert_ne!(again, sealed);
    assert!(open(&k1, &resource_aad("p1", "Patient", "p1", 4), &again).is_err());
    rejected += 1;
    println!("records: {rejected} tampered, moved or replayed ciphertexts, 100% rejected");
}

#[test]
fn document_frames_open_only_intact_and_in_place() {
    let (k1, k2) = (key(1), key(2));
    let doc: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let object = "p1/0123456789abcdef0123456789abcdef-0123456789abcdef";
    let sealed = seal_document(&k1, object, &doc);
    assert_eq!(open_document(&k1, object, &sealed).unwrap(), doc);
    let mut rejected = 0;
    // A bit flipped every 331 bits reaches every frame, header and tag.
    for bit in (0..sealed.len() * 8).step_by(331) {
        let mut s = sealed.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        assert!(open_document(&k1, object, &s).is_err(), "bit {bit}");
        rejected += 1;
    }
    let frame: usize = 64 * 1024;
    let mut lengths: Vec<usize> = (0..sealed.len()).step_by(997).collect();
    for boundary in [frame, 2 * frame, 3 * frame] {
        lengths.extend([boundary.saturating_sub(1), boundary, boundary + 1, boundary + 16, boundary + 40]);
    }
    for len in lengths.into_iter().filter(|l| *l < sealed.len()) {
        assert!(open_document(&k1, object, &sealed[..len]).is_err(), "truncated to {len}");
        rejected += 1;
    }
    for (k, o) in [
        (&k1, "p2/0123456789abcdef0123456789abcdef-0123456789abcdef"),
        (&k1, "p1/0123456789abcdef0123456789abcdef-fedcba9876543210"),
        (&k2, object),
    ] {
        assert!(open_document(k, o, &sealed).is_err());
        rejected += 1;
    }
    println!("documents: {rejected} tampered, truncated or moved objects, 100% rejected");
}

#[test]
fn the_key_cache_honours_every_limit_in_a_grid() {
    let mut cells = 0;
    for max_uses in [1u64, 2, 3, 10] {
        for max_entries in [1usize, 2, 5] {
            for (max_age, max_bytes) in [Duration::ZERO, Duration::from_millis(30), Duration::from_secs(3600)]
                .into_iter()
                .flat_map(|age| [(age, 100u64), (age, u64::MAX)])
            {
                let cache = KeyCache::new(Limits { max_age, max_uses, max_bytes, max_entries });
                let keys: Vec<Arc<DataKey>> = (0..6u8).map(|i| Arc::new(key(10 + i))).collect();
                for (i, k) in keys.iter().enumerate() {
                    cache.insert(&format!("p{i}"), k.clone());
                    assert!(cache.len() <= max_entries, "entries {} > {max_entries}", cache.len());
                }
                // The newest patient's key: served at most max_uses times in
                // all (the load counts as one), only while young enough and
                // under its byte limit (each use seals 40 bytes), and only as
                // that patient's key.
                let newest = keys.len() - 1;
                let mut served = 1;
                while let Some(k) = cache.get(&format!("p{newest}")) {
                    assert!(Arc::ptr_eq(&k, &keys[newest]), "another patient's key served");
                    assert!(k.bytes_processed() < max_bytes, "served past its byte limit");
                    seal(&k, b"aad", &[7u8; 40]);
                    served += 1;
                    assert!(served <= max_uses, "served {served} times past {max_uses}");
                }
                if max_age.is_zero() {
                    assert_eq!(served, 1, "an expired key is never served");
                } else if max_age >= Duration::from_secs(1) {
                    // 100 bytes allow three uses of 40 (0, 40, 80 bytes before each).
                    let expected = if max_bytes == 100 { max_uses.min(4) } else { max_uses };
                    assert_eq!(served, expected, "served exactly up to the use and byte limits");
                }
                // Age: after max_age nothing is served, whatever the uses left.
                if max_age == Duration::from_millis(30) {
                    let fresh = Arc::new(key(99));
                    cache.insert("late", fresh);
                    std::thread::sleep(Duration::from_millis(40));
                    assert!(cache.get("late").is_none(), "served past its age");
                }
                // Evicted patients are misses, never someone else's key.
                for (i, k) in keys.iter().enumerate() {
                    if let Some(got) = cache.get(&format!("p{i}")) {
                        assert!(Arc::ptr_eq(&got, k));
                    }
                }
                cells += 1;
            }
        }
    }
    println!(
        "key cache: {cells} limit settings (age, uses, bytes, entries), every limit honoured, no cross-patient hit"
    );
}
