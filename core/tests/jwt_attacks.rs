//! The JWT attack playbook (what `jwt_tool` runs, and one case per
//! requirement of RFC 8725 §3) against medrec's verifier, with a JWKS of one
//! ES256 and one RS256 key. Target: zero forged or malformed tokens
//! accepted, while the genuine ones are (so a rejection means something).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use medrec_core::auth::jwks::{JwksCache, KeySetSource};
use medrec_core::auth::jwt::Verifier;
use medrec_core::auth::{AuthError, TokenPolicy};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool";
const AUD: &str = "medrec-client";

/// A JWKS served from memory, counting fetches (a token must never make
/// medrec fetch a key from where it says).
struct Keys {
    doc: Vec<u8>,
    fetches: Arc<AtomicUsize>,
}

impl KeySetSource for Keys {
    async fn fetch(&self) -> Result<Vec<u8>, AuthError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(self.doc.clone())
    }
}

struct Fixture {
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
    weak_rsa: RsaKeyPair,
    jwks: Value,
    fetches: Arc<AtomicUsize>,
    verifier: Verifier<Keys>,
}

fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn claims() -> Value {
    json!({"iss": ISS, "client_id": AUD, "sub": "dr-1", "exp": NOW + 600, "iat": NOW, "nbf": NOW - 10,
        "token_use": "access", "cognito:groups": ["clinician"], "scope": "user/*.cruds", "jti": "j-1"})
}

impl Fixture {
    fn new() -> Fixture {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let weak_rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let point = ec.public_key().as_ref();
        let rsa_jwk = |kp: &RsaKeyPair, kid: &str, truncate: bool| {
            let n = kp.public_key().modulus().big_endian_without_leading_zero().to_vec();
            // A "1024-bit" key as a weak IdP would publish it: the verifier
            // must skip it (RFC 8725 §3.5).
            let n = if truncate { n[..128].to_vec() } else { n };
            json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n),
                "e": b64(kp.public_key().exponent().big_endian_without_leading_zero())})
        };
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
             "x": b64(&point[1..33]), "y": b64(&point[33..])},
            rsa_jwk(&rsa, "rsa-1", false),
            rsa_jwk(&weak_rsa, "rsa-weak", true),
        ]});
        let fetches = Arc::new(AtomicUsize::new(0));
        let policy = TokenPolicy {
            issuer: ISS.into(),
            audience: AUD.into(),
            roles_claim: "cognito:groups".into(),
            clock_skew: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 3600),
        };
        let keys = Keys { doc: jwks.to_string().into_bytes(), fetches: fetches.clone() };
        let verifier = Verifier::new(policy, JwksCache::new(keys, false));
        Fixture { ec, rsa, weak_rsa, jwks, fetches, verifier }
    }

    fn es(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.ec.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn rs_with(&self, kp: &RsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64(sig))
    }

    fn rs(&self, header: &Value, claims: &Value) -> String {
        self.rs_with(&self.rsa, header, claims)
    }

    fn es_claims(&self, claims: &Value) -> String {
        self.es(&json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}), claims)
    }

    async fn accepts(&self, token: &str) -> bool {
        self.verifier.verify(Some(&format!("Bearer {token}")), NOW).await.is_ok()
    }
}

fn hs(alg: &str, secret: &[u8], header: &Value, claims: &Value) -> String {
    let algorithm = match alg {
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
        _ => aws_lc_rs::hmac::HMAC_SHA256,
    };
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// Every casing of a word.
fn casings(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    (0..1u32 << chars.len())
        .map(|mask| {
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| if mask & (1 << i) != 0 { c.to_ascii_uppercase() } else { *c })
                .collect()
        })
        .collect()
}

/// Runs every case; each must be rejected. Returns how many ran.
async fn all_rejected(f: &Fixture, suite: &str, cases: Vec<(String, String)>) -> usize {
    let mut accepted = vec![];
    for (name, token) in &cases {
        if f.accepts(token).await {
            accepted.push(name.clone());
        }
    }
    assert!(accepted.is_empty(), "{suite}: accepted {accepted:?}");
    println!("{suite}: {} cases, 0 accepted", cases.len());
    cases.len()
}

#[tokio::test]
async fn the_jwt_playbook_is_refused_entirely() {
    let f = Fixture::new();
    // The genuine tokens pass: the rejections below are the attacks'.
    assert!(f.accepts(&f.es_claims(&claims())).await, "a genuine ES256 token");
    assert!(f.accepts(&f.rs(&json!({"alg": "RS256", "kid": "rsa-1"}), &claims())).await, "a genuine RS256 token");
    let mut total = 0;
    let es_header = json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"});
    let genuine = f.es_claims(&claims());
    let (head, rest) = genuine.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();

    // alg none, every casing, with no, the genuine and a junk signature.
    let mut cases = vec![];
    for alg in casings("none") {
        for s in ["", sig, "AAAA"] {
            let token = format!("{}.{}.{s}", b64(json!({"alg": alg, "kid": "ec-1"}).to_string()), payload);
            cases.push((format!("alg {alg} sig {:.4}", s), token));
        }
    }
    total += all_rejected(&f, "alg none", cases).await;

    // HMAC with blank, weak and public secrets (key confusion: the public
    // key, its JWK, the JWKS, the RSA modulus, the EC point, PEM of the SPKI).
    let point = f.ec.public_key().as_ref().to_vec();
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(&point);
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(&spki));
    let secrets: Vec<(String, Vec<u8>)> = vec![
        ("blank".into(), vec![]),
        ("secret".into(), b"secret".to_vec()),
        ("password".into(), b"password".to_vec()),
        ("changeme".into(), b"changeme".to_vec()),
        ("your-256-bit-secret".into(), b"your-256-bit-secret".to_vec()),
        ("medrec".into(), b"medrec".to_vec()),
        ("jwks".into(), f.jwks.to_string().into_bytes()),
        ("ec jwk".into(), f.jwks["keys"][0].to_string().into_bytes()),
        ("rsa jwk".into(), f.jwks["keys"][1].to_string().into_bytes()),
        ("ec point".into(), point.clone()),
        ("ec spki der".into(), spki.clone()),
        ("ec spki pem".into(), pem.into_bytes()),
        ("rsa modulus".into(), f.rsa.public_key().modulus().big_endian_without_leading_zero().to_vec()),
        ("rsa pkcs1 der".into(), f.rsa.public_key().as_ref().to_vec()),
    ];
    let mut cases = vec![];
    for alg in ["HS256", "HS384", "HS512", "hs256"] {
        for kid in ["ec-1", "rsa-1", "unknown"] {
            for (name, secret) in &secrets {
                let header = json!({"alg": alg, "kid": kid});
                cases.push((format!("{alg} kid {kid} secret {name}"), hs(alg, secret, &header, &claims())));
            }
        }
    }
    total += all_rejected(&f, "HMAC and key confusion", cases).await;

    // Algorithms medrec does not accept, signed as well as they can be.
    let mut cases = vec![];
    for alg in
        ["ES384", "ES512", "RS384", "RS512", "PS256", "PS512", "EdDSA", "ES256K", "es256", "ES256 ", " ES256", "ES-256"]
    {
        cases.push((format!("alg {alg:?} on the EC key"), f.es(&json!({"alg": alg, "kid": "ec-1"}), &claims())));
        cases.push((format!("alg {alg:?} on the RSA key"), f.rs(&json!({"alg": alg, "kid": "rsa-1"}), &claims())));
    }
    for alg in [json!(null), json!(256), json!(["ES256"]), json!({"alg": "ES256"}), json!(true)] {
        cases.push((format!("alg {alg}"), f.es(&json!({"alg": alg, "kid": "ec-1"}), &claims())));
    }
    cases.push(("no alg".into(), f.es(&json!({"kid": "ec-1"}), &claims())));
    // RFC 8725 §3.1: the algorithm must be the key's.
    cases.push(("RS256 header, EC key id".into(), f.es(&json!({"alg": "RS256", "kid": "ec-1"}), &claims())));
    cases.push(("ES256 header, RSA key id".into(), f.rs(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims())));
    cases.push(("RS256 signed by RSA, EC key id".into(), f.rs(&json!({"alg": "RS256", "kid": "ec-1"}), &claims())));
    total += all_rejected(&f, "algorithms", cases).await;

    // Header parameters that would let the token pick its key or change
    // processing; the verifier never fetches what they point at.
    let fetched_before = f.fetches.load(Ordering::SeqCst);
    let mut cases = vec![];
    for (k, v) in [
        ("jwk", f.jwks["keys"][0].clone()),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("jku", json!("http://127.0.0.1:8080/.well-known/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!([STANDARD.encode(&spki)])),
        ("crit", json!(["exp"])),
        ("b64", json!(false)),
        ("zip", json!("DEF")),
        ("enc", json!("A256GCM")),
    ] {
        let mut header = es_header.clone();
        header[k] = v.clone();
        cases.push((format!("header {k}={v}"), f.es(&header, &claims())));
    }
    total += all_rejected(&f, "key-choosing headers", cases).await;
    assert_eq!(f.fetches.load(Ordering::SeqCst), fetched_before, "no header made medrec fetch a key");

    // kid injection and kid type confusion (validly signed by the EC key).
    let mut cases = vec![];
    for kid in [
        json!("../../../../dev/null"),
        json!("/dev/null"),
        json!("..\\..\\windows\\win.ini"),
        json!("' OR '1'='1"),
        json!("ec-1' --"),
        json!("ec-1\u{0000}"),
        json!("ec-1 "),
        json!("EC-1"),
        json!(""),
        json!("x".repeat(10_000)),
        json!("|/bin/sh"),
        json!("$(curl attacker.example)"),
        json!(1),
        json!(null),
        json!(["ec-1"]),
        json!({"kid": "ec-1"}),
    ] {
        let header = json!({"alg": "ES256", "kid": kid});
        cases.push((format!("kid {:.40}", kid.to_string()), f.es(&header, &claims())));
    }
    cases.push((
        "a weak (1024-bit) RSA key id".into(),
        f.rs_with(&f.weak_rsa, &json!({"alg": "RS256", "kid": "rsa-weak"}), &claims()),
    ));
    total += all_rejected(&f, "kid injection", cases).await;

    // Claim type confusion: every claim with every JSON type it must not have.
    let values = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(NOW + 600),
        json!("x"),
        json!(""),
        json!([]),
        json!([null]),
        json!(["x"]),
        json!({}),
    ];
    let wrong_type = |claim: &str, v: &Value| match claim {
        "exp" | "nbf" | "iat" => !(v.is_i64() || v.is_u64()),
        "cognito:groups" => !(v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))),
        _ => !v.is_string(),
    };
    let mut cases = vec![];
    for claim in [
        "iss",
        "client_id",
        "sub",
        "exp",
        "nbf",
        "iat",
        "token_use",
        "cognito:groups",
        "scope",
        "patient",
        "fhirUser",
        "jti",
    ] {
        for v in values.iter().filter(|v| wrong_type(claim, v)) {
            let mut c = claims();
            c[claim] = v.clone();
            cases.push((format!("{claim}={v}"), f.es_claims(&c)));
        }
    }
    total += all_rejected(&f, "claim type confusion", cases).await;

    // Times, issuer, audience, subject, type and token kind.
    let mut cases = vec![];
    let mut with = |name: &str, k: &str, v: Value| {
        let mut c = claims();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        cases.push((name.to_owned(), f.es_claims(&c)));
    };
    with("expired", "exp", json!(NOW - 61));
    with("expired long ago", "exp", json!(0));
    with("no exp", "exp", Value::Null);
    with("far-future exp", "exp", json!(NOW + 30 * 86400));
    with("exp at i64::MAX", "exp", json!(i64::MAX));
    with("exp at i64::MIN", "exp", json!(i64::MIN));
    with("exp beyond i64", "exp", json!(u64::MAX));
    with("not yet valid", "nbf", json!(NOW + 3600));
    with("issued in the future", "iat", json!(NOW + 3600));
    with("no iss", "iss", Value::Null);
    with("iss trailing slash", "iss", json!(format!("{ISS}/")));
    with("iss http", "iss", json!(ISS.replace("https", "http")));
    with("iss other pool", "iss", json!(ISS.replace("_pool", "_other")));
    with("iss uppercase", "iss", json!(ISS.to_uppercase()));
    with("no audience", "client_id", Value::Null);
    with("other client", "client_id", json!("another-app"));
    with("client case", "client_id", json!(AUD.to_uppercase()));
    with("no sub", "sub", Value::Null);
    with("empty sub", "sub", json!(""));
    with("control chars in sub", "sub", json!("dr-1\n"));
    with("huge sub", "sub", json!("s".repeat(300)));
    with("ID token (RFC 8725 §3.12)", "token_use", json!("id"));
    with("refresh token", "token_use", json!("refresh"));
    with("patient traversal", "patient", json!("../p2"));
    with("fhirUser not a person", "fhirUser", json!("https://idp.example/fhir/Device/d1"));
    let mut aud = claims();
    aud.as_object_mut().unwrap().remove("client_id");
    for (name, v) in [
        ("aud other", json!("another-app")),
        ("aud list without us", json!(["a", "b"])),
        ("aud mixed", json!([AUD, 1])),
    ] {
        let mut c = aud.clone();
        c["aud"] = v;
        cases.push((name.to_owned(), f.es_claims(&c)));
    }
    for typ in ["JWE", "JOSE", "JOSE+JSON", "application/jose", "secevent+jwt", "dpop+jwt", "id_token", "", "JWS"] {
        cases.push((format!("typ {typ:?}"), f.es(&json!({"alg": "ES256", "kid": "ec-1", "typ": typ}), &claims())));
    }
    total += all_rejected(&f, "claims and types", cases).await;

    // Signatures: every bit flipped, truncations, DER instead of raw r||s,
    // the all-zero "psychic" signature (CVE-2022-21449), another token's.
    let raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut cases = vec![];
    for bit in 0..raw.len() * 8 {
        let mut s = raw.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        cases.push((format!("sig bit {bit}"), format!("{head}.{payload}.{}", b64(&s))));
    }
    for len in [0usize, 1, 31, 32, 63, 65] {
        let s: Vec<u8> = raw.iter().copied().cycle().take(len).collect();
        cases.push((format!("sig length {len}"), format!("{head}.{payload}.{}", b64(&s))));
    }
    let (r, s) = raw.split_at(32);
    let der_int = |x: &[u8]| {
        let mut v = x.to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let mut der = vec![0x30];
    let body = [der_int(r), der_int(s)].concat();
    der.push(body.len() as u8);
    der.extend(body);
    cases.push(("DER-encoded ECDSA signature".into(), format!("{head}.{payload}.{}", b64(&der))));
    cases.push(("psychic signature".into(), format!("{head}.{payload}.{}", b64([0u8; 64]))));
    let other = f.es_claims(&json!({"iss": ISS, "client_id": AUD, "sub": "someone-else", "exp": NOW + 600}));
    cases.push(("another token's signature".into(), format!("{head}.{payload}.{}", other.rsplit('.').next().unwrap())));
    let mut escalated = claims();
    escalated["cognito:groups"] = json!(["admin"]);
    cases.push((
        "payload swapped under a valid signature".into(),
        format!("{head}.{}.{sig}", b64(escalated.to_string())),
    ));
    cases.push((
        "header swapped under a valid signature".into(),
        format!("{}.{payload}.{sig}", b64(json!({"alg": "ES256", "kid": "ec-1"}).to_string())),
    ));
    total += all_rejected(&f, "signatures", cases).await;

    // Encodings and shapes: JWE (five parts), padding, standard base64,
    // whitespace, non-UTF-8, oversized, nested and empty parts.
    let mut cases = vec![
        ("JWE compact".to_owned(), format!("{head}.{payload}.AAAA.AAAA.{sig}")),
        ("four parts".to_owned(), format!("{genuine}.x")),
        ("two parts".to_owned(), format!("{head}.{payload}")),
        ("empty signature part".to_owned(), format!("{head}.{payload}.")),
        ("empty payload part".to_owned(), format!("{head}..{sig}")),
        ("padded".to_owned(), format!("{}.{}.{}", URL_SAFE.encode(es_header.to_string()), payload, sig)),
        ("standard base64 signature".to_owned(), format!("{head}.{payload}.{}", STANDARD.encode(&raw))),
        ("space inside".to_owned(), format!("{head} .{payload}.{sig}")),
        (
            "oversized".to_owned(),
            f.es_claims(
                &json!({"iss": ISS, "client_id": AUD, "sub": "dr-1", "exp": NOW + 600, "pad": "x".repeat(9000)}),
            ),
        ),
        ("non-UTF-8 header".to_owned(), format!("{}.{payload}.{sig}", b64([0xff, 0xfe, b'{', b'}']))),
        ("non-UTF-8 payload".to_owned(), format!("{head}.{}.{sig}", b64([b'{', 0xc3, 0x28, b'}']))),
        ("header not an object".to_owned(), format!("{}.{payload}.{sig}", b64("[\"ES256\"]"))),
        ("payload not an object".to_owned(), format!("{head}.{}.{sig}", b64("\"dr-1\""))),
        (
            "duplicate alg keys".to_owned(),
            format!("{}.{payload}.{sig}", b64(r#"{"alg":"none","alg":"ES256","kid":"ec-1"}"#)),
        ),
        ("nested JWT as payload".to_owned(), format!("{head}.{}.{sig}", b64(genuine.as_bytes()))),
    ];
    // The same signature over non-UTF-8 input signed properly: still refused.
    let bad_utf8 = format!("{}.{}", b64([0x7b, 0xff, 0x7d]), payload);
    let s = f.ec.sign(&SystemRandom::new(), bad_utf8.as_bytes()).unwrap();
    cases.push(("signed non-UTF-8 header".into(), format!("{bad_utf8}.{}", b64(s.as_ref()))));
    total += all_rejected(&f, "encodings", cases).await;

    // Authorization headers that are not a bearer token.
    let mut rejected = 0;
    for header in [
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Basic {}", STANDARD.encode("admin:admin"))),
        Some(format!("Token {genuine}")),
        Some(format!("Bearer {genuine} {genuine}")),
        Some(format!("Bearer\t{genuine}")),
    ] {
        assert!(f.verifier.verify(header.as_deref(), NOW).await.is_err(), "{header:?}");
        rejected += 1;
    }
    println!("authorization headers: {rejected} cases, 0 accepted");
    total += rejected;
    println!("JWT playbook: {total} cases, 0 accepted");
    assert!(total > 500);
}

// One test per requirement of RFC 8725 (JWT Best Current Practices) §3.

async fn refused(f: &Fixture, token: &str) -> bool {
    !f.accepts(token).await
}

/// §3.1 Perform algorithm verification: the algorithm is the key's, not the token's.
#[tokio::test]
async fn rfc8725_3_1_algorithm_verification() {
    let f = Fixture::new();
    assert!(refused(&f, &f.es(&json!({"alg": "RS256", "kid": "ec-1"}), &claims())).await);
    assert!(refused(&f, &f.rs(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims())).await);
}

/// §3.2 Use appropriate algorithms: only RS256 and ES256; never `none` or HMAC.
#[tokio::test]
async fn rfc8725_3_2_appropriate_algorithms() {
    let f = Fixture::new();
    let none = format!("{}.{}.", b64(json!({"alg": "none", "kid": "ec-1"}).to_string()), b64(claims().to_string()));
    assert!(refused(&f, &none).await);
    assert!(refused(&f, &hs("HS256", b"secret", &json!({"alg": "HS256", "kid": "ec-1"}), &claims())).await);
    assert!(refused(&f, &f.es(&json!({"alg": "ES512", "kid": "ec-1"}), &claims())).await);
}

/// §3.3 Validate all cryptographic operations: a bad signature fails the token.
#[tokio::test]
async fn rfc8725_3_3_validate_all_cryptographic_operations() {
    let f = Fixture::new();
    let t = f.es_claims(&claims());
    let (rest, sig) = t.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 1;
    assert!(refused(&f, &format!("{rest}.{}", b64(raw))).await);
}

/// §3.4 Validate cryptographic inputs: signatures of the wrong size or
/// encoding, and the all-zero ECDSA signature, are refused.
#[tokio::test]
async fn rfc8725_3_4_validate_cryptographic_inputs() {
    let f = Fixture::new();
    let t = f.es_claims(&claims());
    let rest = t.rsplit_once('.').unwrap().0;
    for sig in [vec![0u8; 64], vec![0u8; 63], vec![1u8; 65]] {
        assert!(refused(&f, &format!("{rest}.{}", b64(sig))).await);
    }
}

/// §3.5 Ensure cryptographic keys have sufficient entropy: no HMAC secret is
/// ever accepted, and RSA keys under 2048 bits in the key set are ignored.
#[tokio::test]
async fn rfc8725_3_5_sufficient_key_strength() {
    let f = Fixture::new();
    assert!(refused(&f, &hs("HS256", b"", &json!({"alg": "HS256", "kid": "ec-1"}), &claims())).await);
    let weak = f.rs_with(&f.weak_rsa, &json!({"alg": "RS256", "kid": "rsa-weak"}), &claims());
    assert!(refused(&f, &weak).await);
}

/// §3.6 Avoid compression of encryption inputs: `zip` is refused.
#[tokio::test]
async fn rfc8725_3_6_no_compression() {
    let f = Fixture::new();
    assert!(refused(&f, &f.es(&json!({"alg": "ES256", "kid": "ec-1", "zip": "DEF"}), &claims())).await);
}

/// §3.7 Use UTF-8: header and claims that are not UTF-8 are refused.
#[tokio::test]
async fn rfc8725_3_7_utf8_only() {
    let f = Fixture::new();
    let input = format!("{}.{}", b64([0x7b, 0xff, 0x7d]), b64(claims().to_string()));
    let s = f.ec.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    assert!(refused(&f, &format!("{input}.{}", b64(s.as_ref()))).await);
    let input =
        format!("{}.{}", b64(json!({"alg": "ES256", "kid": "ec-1"}).to_string()), b64([0x7b, 0xc3, 0x28, 0x7d]));
    let s = f.ec.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    assert!(refused(&f, &format!("{input}.{}", b64(s.as_ref()))).await);
}

/// §3.8 Validate issuer and subject.
#[tokio::test]
async fn rfc8725_3_8_issuer_and_subject() {
    let f = Fixture::new();
    let mut c = claims();
    c["iss"] = json!("https://attacker.example");
    assert!(refused(&f, &f.es_claims(&c)).await);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert!(refused(&f, &f.es_claims(&c)).await);
}

/// §3.9 Use and validate audience.
#[tokio::test]
async fn rfc8725_3_9_audience() {
    let f = Fixture::new();
    let mut c = claims();
    c["client_id"] = json!("another-app");
    assert!(refused(&f, &f.es_claims(&c)).await);
    c.as_object_mut().unwrap().remove("client_id");
    assert!(refused(&f, &f.es_claims(&c)).await, "no audience at all");
}

/// §3.10 Do not trust received claims: `kid`, `jku`, `x5u`, `jwk` choose no
/// key and cause no fetch.
#[tokio::test]
async fn rfc8725_3_10_untrusted_claims() {
    let f = Fixture::new();
    assert!(f.accepts(&f.es_claims(&claims())).await);
    let before = f.fetches.load(Ordering::SeqCst);
    for (k, v) in [
        ("jku", json!("https://attacker.example/k")),
        ("x5u", json!("https://attacker.example/c")),
        ("jwk", f.jwks["keys"][0].clone()),
    ] {
        assert!(refused(&f, &f.es(&json!({"alg": "ES256", "kid": "ec-1", k: v}), &claims())).await);
    }
    assert!(refused(&f, &f.es(&json!({"alg": "ES256", "kid": "../../dev/null"}), &claims())).await);
    assert!(f.fetches.load(Ordering::SeqCst) <= before + 1, "at most one refetch for an unknown kid");
}

/// §3.11 Use explicit typing: only JWT access-token types pass.
#[tokio::test]
async fn rfc8725_3_11_explicit_typing() {
    let f = Fixture::new();
    assert!(f.accepts(&f.es(&json!({"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"}), &claims())).await);
    for typ in ["secevent+jwt", "JOSE", "dpop+jwt"] {
        assert!(refused(&f, &f.es(&json!({"alg": "ES256", "kid": "ec-1", "typ": typ}), &claims())).await);
    }
}

/// §3.12 Use mutually exclusive validation rules for different kinds of
/// JWTs: an ID token does not pass as an access token.
#[tokio::test]
async fn rfc8725_3_12_token_kinds_do_not_mix() {
    let f = Fixture::new();
    let mut id_token = claims();
    id_token["token_use"] = json!("id");
    id_token.as_object_mut().unwrap().remove("client_id");
    id_token["aud"] = json!(AUD);
    assert!(refused(&f, &f.es_claims(&id_token)).await);
}
