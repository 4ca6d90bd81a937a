//! The document envelope: a large object sealed as fixed-size AES-256-GCM
//! frames under a per-document key, so a download can decrypt and verify
//! one frame at a time (and a byte range needs only the frames it covers)
//! without ever releasing unauthenticated plaintext.
//!
//! Layout: header (magic, frame size, plaintext length) then frames of
//! `nonce || ciphertext || tag`. Every frame's AAD binds the object's
//! identity, the whole header, the frame's index and whether it is the last,
//! so frames cannot be reordered, dropped, duplicated, moved to another
//! object, and the object cannot be truncated or extended.

use super::{CryptoError, DataKey};
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};

const MAGIC: &[u8; 4] = b"MRD1";
pub const HEADER_LEN: usize = 4 + 4 + 8;
const TAG_LEN: usize = 16;
/// 64 KiB: small enough that a ranged read wastes little, large enough that
/// the 28 bytes of nonce and tag per frame cost under 0.05 %.
pub const FRAME_SIZE: usize = 64 * 1024;

/// The per-document key: derived from the patient's data key and the
/// document's identity, so that crypto-shredding the patient key also
/// destroys every document and no two documents share a GCM key.
pub fn document_key(patient_key: &DataKey, object: &str) -> DataKey {
    patient_key.derive(&format!("medrec/document/v1|{object}"))
}

fn frame_aad(object: &[u8], header: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(object.len() + header.len() + 9);
    aad.extend_from_slice(object);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

fn header(frame_size: usize, len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&(frame_size as u32).to_be_bytes());
    h[8..].copy_from_slice(&len.to_be_bytes());
    h
}

/// Number of frames for a plaintext length (an empty document is one empty frame).
fn frame_count(len: u64, frame_size: usize) -> u64 {
    len.div_ceil(frame_size as u64).max(1)
}

/// Seals a whole document. `object` names it (patient and Binary id).
pub fn seal_document(key: &DataKey, object: &str, plaintext: &[u8]) -> Vec<u8> {
    seal_with_frame(key, object, plaintext, FRAME_SIZE)
}

fn seal_with_frame(key: &DataKey, object: &str, plaintext: &[u8], frame_size: usize) -> Vec<u8> {
    let k = RandomizedNonceKey::new(&AES_256_GCM, key.expose()).expect("32-byte key");
    let h = header(frame_size, plaintext.len() as u64);
    let frames = frame_count(plaintext.len() as u64, frame_size);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + frames as usize * (NONCE_LEN + TAG_LEN));
    out.extend_from_slice(&h);
    let mut buf = Vec::with_capacity(frame_size + TAG_LEN);
    for i in 0..frames {
        let start = (i as usize) * frame_size;
        let end = (start + frame_size).min(plaintext.len());
        buf.clear();
        buf.extend_from_slice(&plaintext[start..end]);
        let aad = frame_aad(object.as_bytes(), &h, i, i + 1 == frames);
        let nonce = k.seal_in_place_append_tag(Aad::from(&aad), &mut buf).expect("AES-GCM seal");
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buf);
    }
    out
}

/// What a sealed document's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub frame_size: usize,
    pub len: u64,
}

impl Layout {
    pub fn parse(sealed_header: &[u8]) -> Result<Layout, CryptoError> {
        let h = sealed_header.get(..HEADER_LEN).ok_or(CryptoError::Malformed)?;
        if &h[..4] != MAGIC {
            return Err(CryptoError::Malformed);
        }
        let frame_size = u32::from_be_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let len = u64::from_be_bytes(h[8..].try_into().expect("8 bytes"));
        // Bounds keep a forged header from asking for absurd allocations.
        if !(1024..=16 * 1024 * 1024).contains(&frame_size) {
            return Err(CryptoError::Malformed);
        }
        Ok(Layout { frame_size, len })
    }

    pub fn frames(&self) -> u64 {
        frame_count(self.len, self.frame_size)
    }

    fn sealed_frame_len(&self, index: u64) -> usize {
        let start = index * self.frame_size as u64;
        let plain = (self.len.saturating_sub(start)).min(self.frame_size as u64) as usize;
        NONCE_LEN + plain + TAG_LEN
    }

    /// Byte offset of a frame inside the sealed object.
    pub fn frame_offset(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * (NONCE_LEN + self.frame_size + TAG_LEN) as u64
    }

    /// The frames covering plaintext bytes `start..=end`, and the sealed byte
    /// range that holds them (for a ranged object read).
    pub fn frames_for(&self, start: u64, end: u64) -> (std::ops::RangeInclusive<u64>, (u64, u64)) {
        let first = start / self.frame_size as u64;
        let last = end / self.frame_size as u64;
        let from = self.frame_offset(first);
        let to = self.frame_offset(last) + self.sealed_frame_len(last) as u64 - 1;
        (first..=last, (from, to))
    }

    pub fn sealed_len(&self) -> u64 {
        let last = self.frames() - 1;
        self.frame_offset(last) + self.sealed_frame_len(last) as u64
    }
}

/// Opens frames `frames` of a document from `sealed` (the frames' bytes,
/// starting at the first requested frame) and returns their plaintext.
/// Each frame is authenticated before any of its bytes are used.
pub fn open_frames(
    key: &DataKey,
    object: &str,
    layout: Layout,
    frames: std::ops::RangeInclusive<u64>,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if *frames.end() >= layout.frames() {
        return Err(CryptoError::Malformed);
    }
    let k = RandomizedNonceKey::new(&AES_256_GCM, key.expose()).map_err(|_| CryptoError::BadKey)?;
    let h = header(layout.frame_size, layout.len);
    let mut out = Vec::with_capacity(sealed.len());
    let mut pos = 0usize;
    for i in frames {
        let n = layout.sealed_frame_len(i);
        let frame = sealed.get(pos..pos + n).ok_or(CryptoError::Malformed)?;
        pos += n;
        let nonce = Nonce::try_assume_unique_for_key(&frame[..NONCE_LEN]).map_err(|_| CryptoError::Malformed)?;
        let mut buf = frame[NONCE_LEN..].to_vec();
        let aad = frame_aad(object.as_bytes(), &h, i, i + 1 == layout.frames());
        let plain = k.open_in_place(nonce, Aad::from(&aad), &mut buf).map_err(|_| CryptoError::Authentication)?;
        out.extend_from_slice(plain);
    }
    if pos != sealed.len() {
        return Err(CryptoError::Malformed);
    }
    Ok(out)
}

/// Opens a whole sealed document.
pub fn open_document(key: &DataKey, object: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let layout = Layout::parse(sealed)?;
    if layout.sealed_len() != sealed.len() as u64 {
        return Err(CryptoError::Malformed);
    }
    open_frames(key, object, layout, 0..=layout.frames() - 1, &sealed[HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: usize = 1024;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_every_length_around_frame_boundaries() {
        let key = DataKey::random();
        for len in [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 3 * SMALL + 7] {
            let doc = sample(len);
            let sealed = seal_with_frame(&key, "p/b", &doc, SMALL);
            assert_eq!(Layout::parse(&sealed).unwrap().sealed_len(), sealed.len() as u64, "len {len}");
            assert_eq!(open_document(&key, "p/b", &sealed).unwrap(), doc, "len {len}");
        }
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let key = DataKey::random();
        let sealed = seal_with_frame(&key, "p/b", &sample(2 * SMALL + 100), SMALL);
        for bit in 0..sealed.len() * 8 {
            let mut t = sealed.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            assert!(open_document(&key, "p/b", &t).is_err(), "bit {bit}");
        }
        for len in 0..sealed.len() {
            assert!(open_document(&key, "p/b", &sealed[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn frames_cannot_move_between_positions_objects_or_keys() {
        let key = DataKey::random();
        let doc = sample(3 * SMALL);
        let sealed = seal_with_frame(&key, "p/b", &doc, SMALL);
        let frame = NONCE_LEN + SMALL + TAG_LEN;
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + frame);
        let first = sealed[a..a + frame].to_vec();
        swapped[a..a + frame].copy_from_slice(&sealed[b..b + frame]);
        swapped[b..b + frame].copy_from_slice(&first);
        assert_eq!(open_document(&key, "p/b", &swapped), Err(CryptoError::Authentication));
        assert_eq!(open_document(&key, "p/other", &sealed), Err(CryptoError::Authentication));
        assert_eq!(open_document(&DataKey::random(), "p/b", &sealed), Err(CryptoError::Authentication));
        // Dropping the last frame and relabelling the length: the new last
        // frame was sealed as "not last".
        let shorter = Layout { frame_size: SMALL, len: 2 * SMALL as u64 };
        let mut cut = header(SMALL, shorter.len).to_vec();
        cut.extend_from_slice(&sealed[HEADER_LEN..HEADER_LEN + 2 * frame]);
        assert_eq!(open_document(&key, "p/b", &cut), Err(CryptoError::Authentication));
    }

    #[test]
    fn a_range_opens_only_its_frames() {
        let key = DataKey::random();
        let doc = sample(5 * SMALL + 10);
        let sealed = seal_with_frame(&key, "p/b", &doc, SMALL);
        let layout = Layout::parse(&sealed).unwrap();
        let (frames, (from, to)) = layout.frames_for(SMALL as u64 + 5, 3 * SMALL as u64 + 2);
        assert_eq!(frames, 1..=3);
        let plain = open_frames(&key, "p/b", layout, frames, &sealed[from as usize..=to as usize]).unwrap();
        assert_eq!(plain, doc[SMALL..4 * SMALL]);
        let (last, (from, to)) = layout.frames_for(5 * SMALL as u64, 5 * SMALL as u64 + 9);
        assert_eq!(to + 1, sealed.len() as u64);
        let plain = open_frames(&key, "p/b", layout, last, &sealed[from as usize..]).unwrap();
        assert_eq!(plain, doc[5 * SMALL..]);
    }

    #[test]
    fn document_keys_differ_per_object() {
        let k = DataKey::random();
        assert_ne!(document_key(&k, "a").expose(), document_key(&k, "b").expose());
    }
}
