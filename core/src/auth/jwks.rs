//! JSON Web Key Sets: parsing (RSA ≥ 2048 bits and EC P-256 signature keys
//! only) and a cache that refetches on expiry or on an unknown `kid`, at most
//! once per cool-down so forged kids cannot turn medrec into a fetch amplifier.

pub use super::AuthError;
use super::DEV_KID_PREFIX;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point (0x04 || x || y).
    EcP256 { point: Vec<u8> },
}

#[derive(Clone)]
pub struct Jwk {
    pub kid: String,
    pub key: PublicKey,
}

#[derive(Clone, Default)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// Parses a JWKS document, skipping keys medrec would never accept.
    /// `trust_dev_keys` is true only in local mode.
    pub fn parse(doc: &[u8], trust_dev_keys: bool) -> Result<JwkSet, AuthError> {
        let v: Value = serde_json::from_slice(doc).map_err(|_| AuthError::KeySetUnavailable)?;
        let keys = v.get("keys").and_then(Value::as_array).ok_or(AuthError::KeySetUnavailable)?;
        let mut out = Vec::new();
        for k in keys {
            let Some(kid) = k.get("kid").and_then(Value::as_str) else { continue };
            if kid.starts_with(DEV_KID_PREFIX) && !trust_dev_keys {
                continue;
            }
            if k.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
                continue;
            }
            let b64 = |name: &str| k.get(name).and_then(Value::as_str).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
            let alg = k.get("alg").and_then(Value::as_str);
            let key = match (k.get("kty").and_then(Value::as_str), alg) {
                (Some("RSA"), None | Some("RS256")) => match (b64("n"), b64("e")) {
                    (Some(n), Some(e)) if significant_bits(&n) >= 2048 => PublicKey::Rsa { n, e },
                    _ => continue,
                },
                (Some("EC"), None | Some("ES256")) if k.get("crv").and_then(Value::as_str) == Some("P-256") => {
                    match (b64("x"), b64("y")) {
                        (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                            let mut point = vec![4u8];
                            point.extend(x);
                            point.extend(y);
                            PublicKey::EcP256 { point }
                        }
                        _ => continue,
                    }
                }
                _ => continue,
            };
            out.push(Jwk { kid: kid.to_owned(), key });
        }
        Ok(JwkSet { keys: out })
    }

    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

fn significant_bits(n: &[u8]) -> usize {
    let lead = n.iter().take_while(|b| **b == 0).count();
    match n.get(lead) {
        None => 0,
        Some(b) => (n.len() - lead - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

/// Where key sets come from: an HTTPS endpoint in the cloud (Cognito), the
/// local stack's JWKS endpoint locally.
pub trait KeySetSource: Send + Sync {
    fn fetch(&self) -> impl std::future::Future<Output = Result<Vec<u8>, AuthError>> + Send;
}

const TTL: Duration = Duration::from_secs(600);
const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

struct Cached {
    set: Arc<JwkSet>,
    fetched: Instant,
}

pub struct JwksCache<S> {
    source: S,
    trust_dev_keys: bool,
    state: RwLock<Option<Cached>>,
}

impl<S: KeySetSource> JwksCache<S> {
    pub fn new(source: S, trust_dev_keys: bool) -> Self {
        JwksCache { source, trust_dev_keys, state: RwLock::new(None) }
    }

    /// The key for `kid`, fetching the set if the cache is stale or lacks it.
    pub async fn key(&self, kid: &str) -> Result<Option<Jwk>, AuthError> {
        {
            let state = self.state.read().await;
            if let Some(c) = state.as_ref() {
                let fresh = c.fetched.elapsed() < TTL;
                if let Some(k) = c.set.find(kid).filter(|_| fresh) {
                    return Ok(Some(k.clone()));
                }
                if fresh && c.fetched.elapsed() < REFETCH_COOLDOWN {
                    return Ok(None);
                }
            }
        }
        let mut state = self.state.write().await;
        if let Some(c) = state.as_ref() {
            if c.fetched.elapsed() < REFETCH_COOLDOWN {
                return Ok(c.set.find(kid).cloned());
            }
        }
        let set = Arc::new(JwkSet::parse(&self.source.fetch().await?, self.trust_dev_keys)?);
        let found = set.find(kid).cloned();
        *state = Some(Cached { set, fetched: Instant::now() });
        Ok(found)
    }
}
