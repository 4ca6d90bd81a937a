//! Paging cursors: the rest of a search (its parameters and position) sealed
//! with AES-256-GCM under a server key, bound to the caller and the route by
//! AAD, with an expiry. Clients see an opaque token; a tampered, expired,
//! replayed-by-another-user or cross-route cursor is rejected. Sealing (not
//! only signing) keeps PHI search values out of `next` URLs and access logs.

use crate::crypto::{open, seal, DataKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Search parameters of the original query, in order.
    pub q: Vec<(String, String)>,
    /// Position: the last key returned on the previous page.
    pub after: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The search's total, counted on its first page (when that was cheap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the paging cursor is invalid or expired")]
pub struct CursorError;

/// Cursors longer than this are rejected before any decoding work.
const MAX_CURSOR_LEN: usize = 4096;

pub struct CursorCodec {
    key: DataKey,
}

impl CursorCodec {
    pub fn new(key: DataKey) -> Self {
        CursorCodec { key }
    }

    fn aad(subject: &str, route: &str) -> Vec<u8> {
        format!("medrec:cursor:v1|{route}|{subject}").into_bytes()
    }

    pub fn encode(&self, cursor: &Cursor, subject: &str, route: &str) -> String {
        let json = serde_json::to_vec(cursor).expect("cursor serialises");
        URL_SAFE_NO_PAD.encode(seal(&self.key, &Self::aad(subject, route), &json))
    }

    pub fn decode(&self, token: &str, subject: &str, route: &str, now: i64) -> Result<Cursor, CursorError> {
        if token.len() > MAX_CURSOR_LEN {
            return Err(CursorError);
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| CursorError)?;
        let json = open(&self.key, &Self::aad(subject, route), &raw).map_err(|_| CursorError)?;
        let cursor: Cursor = serde_json::from_slice(&json).map_err(|_| CursorError)?;
        if cursor.exp < now {
            return Err(CursorError);
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tamper_expiry_subject_and_route_are_enforced() {
        let codec = CursorCodec::new(DataKey::random());
        let c = Cursor { q: vec![("family".into(), "Smith".into())], after: "abc".into(), exp: 1000, total: Some(3) };
        let t = codec.encode(&c, "dr-1", "Patient");
        assert!(!t.contains("Smith"));
        assert_eq!(codec.decode(&t, "dr-1", "Patient", 999), Ok(c));
        assert_eq!(codec.decode(&t, "dr-1", "Patient", 1001), Err(CursorError));
        assert_eq!(codec.decode(&t, "dr-2", "Patient", 999), Err(CursorError));
        assert_eq!(codec.decode(&t, "dr-1", "Patient/x/_history", 999), Err(CursorError));
        let mut chars: Vec<char> = t.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(codec.decode(&tampered, "dr-1", "Patient", 999), Err(CursorError));
        assert_eq!(codec.decode("!!!", "dr-1", "Patient", 999), Err(CursorError));
        assert_eq!(codec.decode(&"A".repeat(5000), "dr-1", "Patient", 999), Err(CursorError));
    }
}
