//! The local identity provider: an ES256 signing key whose JWKS the local
//! stack serves and trusts, and `dev-token` minting. Its key ids start with
//! `medrec-dev-` and its issuer with `http://127.0.0.1`, both of which a
//! deployed function refuses.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use medrec_edge::auth::DEV_KID_PREFIX;
use serde_json::{json, Value};
use std::path::Path;

/// Issuer and audience of dev tokens; the local stack configures the
/// functions with these.
pub const DEV_ISSUER: &str = "http://127.0.0.1/medrec-dev-idp";
pub const DEV_AUDIENCE: &str = "medrec-local";

pub struct DevKey {
    pair: EcdsaKeyPair,
    pub kid: String,
}

impl DevKey {
    pub fn generate() -> DevKey {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("keygen");
        Self::from_pkcs8(doc.as_ref()).expect("fresh key parses")
    }

    fn from_pkcs8(der: &[u8]) -> Result<DevKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| e.to_string())?;
        let digest = medrec_edge::crypto::sha256(pair.public_key().as_ref());
        let kid = format!("{DEV_KID_PREFIX}{}", medrec_edge::crypto::hex(&digest[..8]));
        Ok(DevKey { pair, kid })
    }

    /// Loads the key kept in the local state directory, creating it once.
    pub fn load_or_create(path: &Path) -> Result<DevKey, String> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let der = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| e.to_string())?;
            return Self::from_pkcs8(&der);
        }
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, base64::engine::general_purpose::STANDARD.encode(doc.as_ref()))
            .map_err(|e| e.to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Self::from_pkcs8(doc.as_ref())
    }

    pub fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
    }

    /// Signs arbitrary claims (tests use this to forge edge cases).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = self.pair.sign(&SystemRandom::new(), format!("{h}.{c}").as_bytes()).expect("sign");
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    pub fn mint(&self, spec: &TokenSpec) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": spec.subject,
            "iat": now,
            "nbf": now,
            "exp": now + spec.ttl_seconds,
            "jti": medrec_edge::crypto::random_id(),
            "cognito:groups": [spec.role],
            "scope": spec.scopes.join(" "),
        });
        if let Some(p) = &spec.patient {
            claims["patient"] = json!(p);
        }
        if let Some(u) = &spec.fhir_user {
            claims["fhirUser"] = json!(u);
        }
        self.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}), &claims)
    }
}

pub struct TokenSpec {
    pub role: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub patient: Option<String>,
    /// SMART `fhirUser` (e.g. `Practitioner/123`).
    pub fhir_user: Option<String>,
    pub ttl_seconds: i64,
}

impl TokenSpec {
    /// A token with the scopes a role's typical app would be granted.
    pub fn for_role(role: &str, subject: &str) -> TokenSpec {
        let scopes = match role {
            "patient" => vec!["patient/*.rs".to_owned()],
            "admin" => vec!["system/*.cruds".to_owned()],
            "auditor" => vec!["user/AuditEvent.rs".to_owned()],
            _ => vec!["user/*.cruds".to_owned()],
        };
        // Staff are Practitioners named by their login (the dev identity
        // directory); patient tokens name their Patient once a context is set.
        let fhir_user = (role != "patient" && medrec_edge::fhir::primitives::is_id(subject))
            .then(|| format!("Practitioner/{subject}"));
        TokenSpec { role: role.into(), subject: subject.into(), scopes, patient: None, fhir_user, ttl_seconds: 3600 }
    }
}
