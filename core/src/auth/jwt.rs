//! JWT bearer-token verification (RFC 7519) following RFC 8725: the algorithm
//! is pinned to the key (RS256 for RSA keys, ES256 for P-256 keys, nothing
//! else), header-supplied keys and key URLs are refused, every claim is
//! type-checked, and lifetimes are bounded.

use super::jwks::{Jwk, JwksCache, KeySetSource, PublicKey};
use super::policy::{Role, Scope};
use super::AuthError;
use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use std::time::Duration;

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub roles: Vec<Role>,
    pub scopes: Vec<Scope>,
    /// SMART launch context: the only patient compartment this token reaches.
    pub patient: Option<String>,
    /// SMART `fhirUser`, as a relative reference (`Practitioner/123`): who
    /// the user is in FHIR terms, which is what Consent provisions name.
    pub fhir_user: Option<String>,
    pub token_id: Option<String>,
}

impl Principal {
    pub fn role_names(&self) -> Vec<&'static str> {
        self.roles.iter().map(|r| r.name()).collect()
    }
}

#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub roles_claim: String,
    pub clock_skew: Duration,
    pub max_lifetime: Duration,
}

const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Header parameters that point at keys or change processing: a verifier that
/// honoured them would let the token choose its own key (RFC 8725 §3.10).
const FORBIDDEN_HEADERS: &[&str] = &["jku", "x5u", "jwk", "x5c", "crit", "enc", "zip", "b64"];

pub struct Verifier<S> {
    policy: TokenPolicy,
    keys: JwksCache<S>,
}

impl<S: KeySetSource> Verifier<S> {
    pub fn new(policy: TokenPolicy, keys: JwksCache<S>) -> Self {
        Verifier { policy, keys }
    }

    /// Verifies `Authorization: Bearer <jwt>` and returns the principal.
    pub async fn verify(&self, authorization: Option<&str>, now: i64) -> Result<Principal, AuthError> {
        let token = bearer(authorization)?;
        let parts = split(token)?;
        let header = parse_header(parts.0)?;
        let key = self.keys.key(&header.kid).await?.ok_or(AuthError::Rejected("unknown key id"))?;
        verify_with_key(&parts, &header, &key, &self.policy, now)
    }
}

fn bearer(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Rejected("malformed authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Rejected("authorization scheme must be Bearer"));
    }
    Ok(token.trim())
}

type Parts<'a> = (&'a str, &'a str, &'a str);

fn split(token: &str) -> Result<Parts<'_>, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Rejected("token too large"));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(AuthError::Rejected("token is not compact JWS"));
    }
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => Ok((h, p, s)),
        _ => Err(AuthError::Rejected("token is not compact JWS")),
    }
}

#[derive(Debug)]
pub struct Header {
    pub alg: Alg,
    pub kid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
}

fn decode_json(part: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Rejected("bad base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(AuthError::Rejected("not a JSON object")),
    }
}

fn parse_header(part: &str) -> Result<Header, AuthError> {
    let h = decode_json(part)?;
    if FORBIDDEN_HEADERS.iter().any(|k| h.contains_key(*k)) {
        return Err(AuthError::Rejected("forbidden header parameter"));
    }
    let alg = match h.get("alg") {
        Some(Value::String(a)) if a == "RS256" => Alg::Rs256,
        Some(Value::String(a)) if a == "ES256" => Alg::Es256,
        _ => return Err(AuthError::Rejected("algorithm not allowed")),
    };
    match h.get("typ") {
        None => {}
        Some(Value::String(t))
            if ["jwt", "at+jwt", "application/at+jwt"].contains(&t.to_ascii_lowercase().as_str()) => {}
        _ => return Err(AuthError::Rejected("unexpected token type")),
    }
    let kid = match h.get("kid") {
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 128 => k.clone(),
        _ => return Err(AuthError::Rejected("missing or invalid kid")),
    };
    Ok(Header { alg, kid })
}

fn verify_with_key(
    parts: &Parts<'_>,
    header: &Header,
    jwk: &Jwk,
    policy: &TokenPolicy,
    now: i64,
) -> Result<Principal, AuthError> {
    let signed = format!("{}.{}", parts.0, parts.1);
    let sig = URL_SAFE_NO_PAD.decode(parts.2).map_err(|_| AuthError::Rejected("bad signature encoding"))?;
    let ok = match (&jwk.key, header.alg) {
        (PublicKey::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &sig)
            .is_ok(),
        (PublicKey::EcP256 { point }, Alg::Es256) => {
            sig.len() == 64
                && UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &sig)
                    .is_ok()
        }
        _ => return Err(AuthError::Rejected("algorithm does not match key")),
    };
    if !ok {
        return Err(AuthError::Rejected("bad signature"));
    }
    claims(&decode_json(parts.1)?, policy, now)
}

fn int_claim(c: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, AuthError> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(AuthError::Rejected("time claim is not an integer")),
        Some(_) => Err(AuthError::Rejected("time claim has the wrong type")),
    }
}

fn str_claim<'a>(c: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, AuthError> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::Rejected("string claim has the wrong type")),
    }
}

fn claims(c: &Map<String, Value>, policy: &TokenPolicy, now: i64) -> Result<Principal, AuthError> {
    let skew = policy.clock_skew.as_secs() as i64;
    if str_claim(c, "iss")? != Some(policy.issuer.as_str()) {
        return Err(AuthError::Rejected("wrong issuer"));
    }
    // Cognito access tokens carry `client_id` instead of `aud`.
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => *a == policy.audience,
        Some(Value::Array(list)) => {
            list.iter().all(Value::is_string) && list.iter().any(|a| a.as_str() == Some(policy.audience.as_str()))
        }
        None => str_claim(c, "client_id")? == Some(policy.audience.as_str()),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(AuthError::Rejected("wrong audience"));
    }
    // RFC 8725 §3.12: an ID token (Cognito's carry `aud` = the client id,
    // like the audience medrec checks) must not pass as an access token.
    match str_claim(c, "token_use")? {
        None | Some("access") => {}
        Some(_) => return Err(AuthError::Rejected("not an access token")),
    }
    let exp = int_claim(c, "exp")?.ok_or(AuthError::Rejected("missing exp"))?;
    // Saturating: an attacker's exp of i64::MAX or MIN must not overflow.
    if now > exp.saturating_add(skew) {
        return Err(AuthError::Rejected("token expired"));
    }
    if exp.saturating_sub(now) > policy.max_lifetime.as_secs() as i64 + skew {
        return Err(AuthError::Rejected("token lifetime too long"));
    }
    if int_claim(c, "nbf")?.is_some_and(|nbf| nbf > now + skew) {
        return Err(AuthError::Rejected("token not yet valid"));
    }
    if int_claim(c, "iat")?.is_some_and(|iat| iat > now + skew) {
        return Err(AuthError::Rejected("token issued in the future"));
    }
    let subject = match str_claim(c, "sub")? {
        Some(s) if !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) => s.to_owned(),
        _ => return Err(AuthError::Rejected("missing or invalid sub")),
    };
    let roles = match c.get(&policy.roles_claim) {
        None => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Some(_) => return Err(AuthError::Rejected("roles claim has the wrong type")),
    };
    let scopes = match str_claim(c, "scope")? {
        Some(s) => s.split(' ').filter_map(Scope::parse).collect(),
        None => vec![],
    };
    let patient = match str_claim(c, "patient")? {
        Some(p) if crate::fhir::primitives::is_id(p) => Some(p.to_owned()),
        Some(_) => return Err(AuthError::Rejected("invalid patient claim")),
        None => None,
    };
    let fhir_user = match str_claim(c, "fhirUser")? {
        Some(u) => Some(fhir_user_reference(u).ok_or(AuthError::Rejected("invalid fhirUser claim"))?),
        None => None,
    };
    let token_id = str_claim(c, "jti")?.map(|j| j.chars().take(128).collect());
    Ok(Principal {
        subject,
        roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
        scopes,
        patient,
        fhir_user,
        token_id,
    })
}

/// `fhirUser` (absolute or relative URL of a person resource) as a relative
/// reference; None for anything else, which rejects the token.
pub fn fhir_user_reference(url: &str) -> Option<String> {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let (id, ty) = (parts.next()?, parts.next()?);
    let person = matches!(ty, "Practitioner" | "PractitionerRole" | "Patient" | "RelatedPerson" | "Person");
    (person && crate::fhir::primitives::is_id(id) && !url.contains(['?', '#'])).then(|| format!("{ty}/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "https://issuer".into(),
            audience: "medrec".into(),
            roles_claim: "cognito:groups".into(),
            clock_skew: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(3600),
        }
    }

    fn keypair() -> (EcdsaKeyPair, Jwk) {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let jwk = Jwk { kid: "k1".into(), key: PublicKey::EcP256 { point: kp.public_key().as_ref().to_vec() } };
        (kp, jwk)
    }

    fn sign(kp: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = kp.sign(&SystemRandom::new(), format!("{h}.{c}").as_bytes()).unwrap();
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn check(token: &str, jwk: &Jwk, now: i64) -> Result<Principal, AuthError> {
        let parts = split(token)?;
        let header = parse_header(parts.0)?;
        verify_with_key(&parts, &header, jwk, &policy(), now)
    }

    fn good_claims(now: i64) -> Value {
        json!({"iss": "https://issuer", "aud": "medrec", "sub": "dr-1", "exp": now + 600, "iat": now,
               "cognito:groups": ["clinician"], "scope": "user/Patient.rs openid"})
    }

    #[test]
    fn a_good_token_verifies() {
        let (kp, jwk) = keypair();
        let now = 1_800_000_000;
        let p = check(&sign(&kp, &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}), &good_claims(now)), &jwk, now)
            .unwrap();
        assert_eq!(p.subject, "dr-1");
        assert_eq!(p.roles, vec![Role::Clinician]);
        assert_eq!(p.scopes.len(), 1);
    }

    #[test]
    fn claim_and_header_attacks_are_rejected() {
        let (kp, jwk) = keypair();
        let now = 1_800_000_000;
        let h = json!({"alg": "ES256", "kid": "k1"});
        let mut cases: Vec<(Value, Value)> = vec![];
        for (k, v) in [
            ("iss", json!("https://evil")),
            ("aud", json!("other")),
            ("aud", json!(["other", 1])),
            ("exp", json!(now - 3600)),
            ("exp", json!(now + 10 * 3600)),
            ("exp", json!("9999999999")),
            ("exp", json!(null)),
            ("nbf", json!(now + 3600)),
            ("iat", json!(now + 3600)),
            ("sub", json!("")),
            ("sub", json!(42)),
            ("sub", json!(null)),
            ("cognito:groups", json!(true)),
            ("scope", json!(["user/*.cruds"])),
            ("patient", json!("../other")),
            ("fhirUser", json!("https://idp.example/fhir/Device/d1")),
            ("fhirUser", json!("Practitioner/../../x")),
            ("fhirUser", json!(7)),
        ] {
            let mut c = good_claims(now);
            c[k] = v;
            cases.push((h.clone(), c));
        }
        let mut no_exp = good_claims(now);
        no_exp.as_object_mut().unwrap().remove("exp");
        cases.push((h.clone(), no_exp));
        for header in [
            json!({"alg": "none", "kid": "k1"}),
            json!({"alg": "HS256", "kid": "k1"}),
            json!({"alg": "RS256", "kid": "k1"}),
            json!({"alg": "ES256"}),
            json!({"alg": "ES256", "kid": "k1", "jku": "https://evil/jwks"}),
            json!({"alg": "ES256", "kid": "k1", "jwk": {"kty": "EC"}}),
            json!({"alg": "ES256", "kid": "k1", "typ": "JWE"}),
        ] {
            cases.push((header, good_claims(now)));
        }
        for (header, claims) in cases {
            let token = sign(&kp, &header, &claims);
            assert!(check(&token, &jwk, now).is_err(), "accepted {header} {claims}");
        }
    }

    #[test]
    fn rs256_with_an_rsa_key_verifies_and_is_pinned() {
        use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
        use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let parts: PublicKeyComponents<Vec<u8>> = rsa.public_key().into();
        let jwk = Jwk { kid: "r1".into(), key: PublicKey::Rsa { n: parts.n, e: parts.e } };
        let now = 1_800_000_000;
        let rs_sign = |header: &Value| {
            let h = URL_SAFE_NO_PAD.encode(header.to_string());
            let c = URL_SAFE_NO_PAD.encode(good_claims(now).to_string());
            let mut sig = vec![0u8; rsa.public_modulus_len()];
            rsa.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), format!("{h}.{c}").as_bytes(), &mut sig).unwrap();
            format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
        };
        assert_eq!(check(&rs_sign(&json!({"alg": "RS256", "kid": "r1"})), &jwk, now).unwrap().subject, "dr-1");
        // The same RSA signature presented as ES256 is refused: the key pins the algorithm.
        assert!(check(&rs_sign(&json!({"alg": "ES256", "kid": "r1"})), &jwk, now).is_err());
        let (ec, _) = keypair();
        assert!(check(&sign(&ec, &json!({"alg": "ES256", "kid": "r1"}), &good_claims(now)), &jwk, now).is_err());
    }

    #[test]
    fn signature_tampering_is_rejected() {
        let (kp, jwk) = keypair();
        let (_, other) = keypair();
        let now = 1_800_000_000;
        let token = sign(&kp, &json!({"alg": "ES256", "kid": "k1"}), &good_claims(now));
        assert!(check(&token, &other, now).is_err());
        let (h, c, s) = split(&token).unwrap();
        let mut claims = good_claims(now);
        claims["cognito:groups"] = json!(["admin"]);
        let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert!(check(&forged, &jwk, now).is_err());
        assert!(check(&format!("{h}.{c}."), &jwk, now).is_err());
        assert!(check(&format!("{h}.{c}"), &jwk, now).is_err());
        assert!(check(&format!("{h}.{c}.{s}="), &jwk, now).is_err());
        assert!(bearer(Some("Basic abc")).is_err());
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert!(split(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}
