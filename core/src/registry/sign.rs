//! Request and response signing agreed with the registry: HMAC-SHA256 over
//! the method, path, a timestamp, a one-time nonce and the body's SHA-256,
//! so a captured request cannot be replayed or altered, and a response
//! cannot be forged by whoever sits between medrec and the registry.

use crate::crypto::{hex, sha256};
use aws_lc_rs::hmac;

pub const TIMESTAMP: &str = "x-iis-timestamp";
pub const NONCE: &str = "x-iis-nonce";
pub const SIGNATURE: &str = "x-iis-signature";
/// How far a timestamp may be from the receiver's clock.
pub const MAX_SKEW_SECONDS: i64 = 300;

fn canonical(method: &str, path: &str, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    format!("{method}\n{path}\n{timestamp}\n{nonce}\n{}", hex(&sha256(body)))
}

pub fn sign(key: &[u8], method: &str, path: &str, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex(hmac::sign(&key, canonical(method, path, timestamp, nonce, body).as_bytes()).as_ref())
}

/// Constant-time check of a signature, and of the timestamp's freshness.
pub fn verify(
    key: &[u8],
    (method, path, timestamp, nonce, body): (&str, &str, &str, &str, &[u8]),
    signature: &str,
    now_unix: i64,
) -> bool {
    let fresh = timestamp.parse::<i64>().is_ok_and(|t| (now_unix - t).abs() <= MAX_SKEW_SECONDS);
    let Some(tag) = crate::crypto::unhex(signature) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    fresh && hmac::verify(&key, canonical(method, path, timestamp, nonce, body).as_bytes(), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_part_and_expire() {
        let now = 1_800_000_000;
        let ts = now.to_string();
        let sig = sign(b"k", "POST", "/hl7", &ts, "n1", b"MSH|");
        assert!(verify(b"k", ("POST", "/hl7", &ts, "n1", b"MSH|"), &sig, now));
        assert!(!verify(b"other", ("POST", "/hl7", &ts, "n1", b"MSH|"), &sig, now));
        assert!(!verify(b"k", ("GET", "/hl7", &ts, "n1", b"MSH|"), &sig, now));
        assert!(!verify(b"k", ("POST", "/fhir", &ts, "n1", b"MSH|"), &sig, now));
        assert!(!verify(b"k", ("POST", "/hl7", &ts, "n2", b"MSH|"), &sig, now));
        assert!(!verify(b"k", ("POST", "/hl7", &ts, "n1", b"MSH!"), &sig, now));
        assert!(!verify(b"k", ("POST", "/hl7", &ts, "n1", b"MSH|"), &sig, now + 301), "stale");
        assert!(!verify(b"k", ("POST", "/hl7", &ts, "n1", b"MSH|"), "zz", now));
    }
}
