//! Envelope encryption of PHI with aws-lc-rs (the crypto library the AWS SDK
//! already links, FIPS-capable): AES-256-GCM under a per-patient data key with
//! the item identity as AAD, HMAC-SHA256 for blind indexes and cursors.

pub mod blind;
pub mod framed;
pub mod keycache;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{digest, hmac, rand};
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// First byte of every ciphertext medrec writes, so the format can evolve.
const FORMAT_V1: u8 = 1;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext failed authentication")]
    Authentication,
    #[error("key material is invalid")]
    BadKey,
}

/// A 256-bit data key in plaintext. Never printed, zeroised on drop. It
/// counts the bytes it has sealed and opened, so a cache can retire it after
/// a byte limit (as the AWS Encryption SDK's caching limits do).
pub struct DataKey {
    material: Zeroizing<[u8; 32]>,
    processed: AtomicU64,
}

impl DataKey {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(DataKey::new(Zeroizing::new(arr)))
    }

    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::fill(k.as_mut()).expect("system RNG");
        DataKey::new(k)
    }

    fn new(material: Zeroizing<[u8; 32]>) -> Self {
        DataKey { material, processed: AtomicU64::new(0) }
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.material
    }

    /// Bytes sealed and opened under this key so far.
    pub fn bytes_processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    fn count(&self, bytes: usize) {
        self.processed.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Derives an independent sub-key for one purpose (HMAC-SHA256 as a PRF),
    /// so one stored secret can key several mechanisms without reuse.
    pub fn derive(&self, label: &str) -> DataKey {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, self.expose()), label.as_bytes());
        DataKey::from_slice(tag.as_ref()).expect("SHA-256 output is 32 bytes")
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Encrypts `plaintext` under `key`, binding `aad`. Output: version || nonce || ciphertext || tag.
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    key.count(plaintext.len());
    let k = RandomizedNonceKey::new(&AES_256_GCM, key.expose()).expect("32-byte key");
    let mut buf = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    let nonce = k.seal_in_place_append_tag(Aad::from(aad), &mut buf).expect("AES-GCM seal");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&buf);
    out
}

/// Decrypts what `seal` produced; fails unless key, AAD and every byte match.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed);
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).map_err(|_| CryptoError::Malformed)?;
    let k = RandomizedNonceKey::new(&AES_256_GCM, key.expose()).map_err(|_| CryptoError::BadKey)?;
    key.count(sealed.len() - 1 - NONCE_LEN - TAG_LEN);
    let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
    let len = k.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| CryptoError::Authentication)?.len();
    buf.truncate(len);
    Ok(buf)
}

pub fn hmac_sha256(key: &DataKey, data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()), data);
    tag.as_ref().try_into().expect("32 bytes")
}

pub fn hmac_verify(key: &DataKey, data: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()), data, tag).is_ok()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, data).as_ref().try_into().expect("32 bytes")
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Lowercase or uppercase hex to bytes; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok())).collect()
}

/// A random opaque identifier (128 bits, lowercase hex): server-assigned ids
/// carry no information about the patient or the order of creation.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b).expect("system RNG");
    hex(&b)
}

/// The AAD that binds a resource version's ciphertext to its identity, so a
/// ciphertext moved to another item, patient or version fails to decrypt.
pub fn resource_aad(patient: &str, resource_type: &str, id: &str, version: u64) -> Vec<u8> {
    format!("medrec:v1|patient={patient}|{resource_type}/{id}/_history/{version}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_tamper_fails() {
        let key = DataKey::random();
        let sealed = seal(&key, b"aad", b"secret PHI");
        assert_eq!(&**open(&key, b"aad", &sealed).unwrap(), b"secret PHI");
        assert_eq!(open(&key, b"other", &sealed), Err(CryptoError::Authentication));
        assert_eq!(open(&DataKey::random(), b"aad", &sealed), Err(CryptoError::Authentication));
        for bit in 0..sealed.len() * 8 {
            let mut t = sealed.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key, b"aad", &t).is_err(), "bit {bit}");
        }
        for len in 0..sealed.len() {
            assert!(open(&key, b"aad", &sealed[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn nonces_differ_and_debug_hides_key() {
        let key = DataKey::random();
        assert_ne!(seal(&key, b"", b"x"), seal(&key, b"", b"x"));
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
        assert_ne!(key.derive("a").expose(), key.derive("b").expose());
    }
}
