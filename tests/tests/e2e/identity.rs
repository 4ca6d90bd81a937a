//! Identity and access over HTTP: forged and broken tokens are all 401; the
//! role x scope x compartment matrix holds exactly, with no existence leaks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use medrec_e2e::{canary_patient, unique_tag, Harness};
use medrec_infra::devkey::{DevKey, DEV_AUDIENCE, DEV_ISSUER};
use serde_json::{json, Value};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims() -> Value {
    json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "attacker", "iat": now(), "exp": now() + 300,
           "cognito:groups": ["admin"], "scope": "system/*.cruds"})
}

fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_broken_tokens_are_all_rejected() {
    let h = Harness::start().await;
    let good = h.token("admin", "admin-1");
    let id = h.create_id(&good, &canary_patient(&unique_tag())).await;
    let kid = h.key.kid.clone();
    let jwks = h.key.jwks().to_string();
    let path = format!("/fhir/Patient/{id}");

    let mut tokens: Vec<(String, String)> = vec![];
    let mut add = |name: &str, t: String| tokens.push((name.to_owned(), t));
    for alg in ["none", "None", "NONE", "nOnE"] {
        add(&format!("alg {alg}"), unsigned(&json!({"alg": alg, "kid": kid}), &claims(), ""));
    }
    add("HS256 keyed with the public JWKS", hs256(jwks.as_bytes(), &json!({"alg": "HS256", "kid": kid}), &claims()));
    add("HS256 blank secret", hs256(b"", &json!({"alg": "HS256", "kid": kid}), &claims()));
    add("HS256 weak secret", hs256(b"secret", &json!({"alg": "HS256", "kid": kid}), &claims()));
    let sign = |header: Value, c: Value| h.key.sign(&header, &c);
    let hdr = json!({"alg": "ES256", "kid": kid});
    add("another key, same kid", DevKey::generate().sign(&hdr, &claims()));
    add("unknown kid", sign(json!({"alg": "ES256", "kid": "medrec-dev-unknown"}), claims()));
    add("kid path traversal", sign(json!({"alg": "ES256", "kid": "../../../../dev/null"}), claims()));
    add("kid injection", sign(json!({"alg": "ES256", "kid": "' OR '1'='1"}), claims()));
    add("embedded jwk", sign(json!({"alg": "ES256", "kid": kid, "jwk": h.key.jwks()["keys"][0]}), claims()));
    add("jku elsewhere", sign(json!({"alg": "ES256", "kid": kid, "jku": "http://127.0.0.2/jwks.json"}), claims()));
    add("x5u elsewhere", sign(json!({"alg": "ES256", "kid": kid, "x5u": "http://127.0.0.2/cert.pem"}), claims()));
    add("RS256 header on an EC key", sign(json!({"alg": "RS256", "kid": kid}), claims()));
    add("JWE-looking", sign(json!({"alg": "ES256", "kid": kid, "enc": "A256GCM"}), claims()));
    add("typ JWE", sign(json!({"alg": "ES256", "kid": kid, "typ": "JOSE+JSON"}), claims()));
    for (claim, value) in [
        ("iss", json!("https://evil.example")),
        ("aud", json!("another-app")),
        ("exp", json!(now() - 3600)),
        ("exp", json!(now() + 365 * 86400)),
        ("exp", json!(null)),
        ("exp", json!("never")),
        ("exp", json!(true)),
        ("nbf", json!(now() + 3600)),
        ("iat", json!(now() + 3600)),
        ("sub", json!(null)),
        ("sub", json!(7)),
        ("sub", json!("")),
        ("iss", json!(null)),
        ("aud", json!(false)),
        ("cognito:groups", json!({"admin": true})),
        ("patient", json!(1)),
    ] {
        let mut c = claims();
        c[claim] = value.clone();
        add(&format!("{claim}={value}"), sign(hdr.clone(), c));
    }
    let valid = sign(hdr.clone(), claims());
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut escalated = claims();
    escalated["sub"] = json!("someone-else");
    add(
        "payload swapped under a valid signature",
        format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(escalated.to_string())),
    );
    add("signature stripped", format!("{head}.{}.", rest.split_once('.').unwrap().0));
    add("oversized", format!("{head}.{}.{sig}", "A".repeat(20_000)));
    add("not base64", "!!!.@@@.###".to_owned());
    add("two parts", format!("{head}.{}", rest.split_once('.').unwrap().0));

    for (name, token) in &tokens {
        let r = h.call("GET", &path, Some(token), &[], None).await;
        assert_eq!(r.status, 401, "accepted: {name}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{name}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"), "{name}");
        assert!(!String::from_utf8_lossy(&r.body).contains("Family"), "{name}");
    }
    for (hname, hvalue) in [("authorization", "Basic YWRtaW46YWRtaW4="), ("authorization", "Bearer"), ("x-none", "")] {
        let r = h.call("GET", &path, None, &[(hname, hvalue)], None).await;
        assert_eq!(r.status, 401, "{hname}: {hvalue}");
    }
    // Every rejected token left a failed-authentication audit record.
    let events = h.audit_events().await;
    let auth_failures = events.iter().filter(|e| e["type"]["code"] == "110114" && e["outcome"] == "4").count();
    assert_eq!(auth_failures, tokens.len() + 3);
    // And the valid token still works.
    assert_eq!(h.get(&path, &good).await.status, 200);
}

/// (role, scopes, patient context) x (operation on own/other/new) -> status.
/// "own" is the patient in the token's context (or P1 for user tokens).
const MATRIX: &[(&str, &str, Option<&str>, &str, u16)] = &[
    ("clinician", "user/*.cruds", None, "read", 200),
    ("clinician", "user/*.cruds", None, "search", 200),
    ("clinician", "user/*.cruds", None, "create", 201),
    ("clinician", "user/*.cruds", None, "update", 200),
    ("clinician", "user/*.cruds", None, "delete", 403),
    ("clinician", "user/Patient.rs", None, "read", 200),
    ("clinician", "user/Patient.rs", None, "create", 403),
    ("clinician", "user/Patient.rs", None, "update", 403),
    ("clinician", "user/Observation.cruds", None, "read", 403),
    ("clinician", "", None, "read", 403),
    ("clinician", "user/Patient.rs?category=x", None, "read", 403),
    ("registrar", "user/*.cruds", None, "create", 201),
    ("registrar", "user/*.cruds", None, "update", 200),
    ("registrar", "user/*.cruds", None, "delete", 403),
    ("auditor", "user/*.cruds", None, "read", 403),
    ("auditor", "user/*.cruds", None, "search", 403),
    ("admin", "system/*.cruds", None, "delete", 204),
    ("admin", "system/*.cruds", None, "read", 200),
    ("admin", "user/Patient.r", None, "delete", 403),
    ("patient", "patient/*.rs", Some("own"), "read", 200),
    ("patient", "patient/*.rs", Some("own"), "history", 200),
    ("patient", "patient/*.rs", Some("own"), "read-other", 404),
    ("patient", "patient/*.rs", Some("own"), "vread-other", 404),
    ("patient", "patient/*.rs", Some("own"), "history-other", 404),
    ("patient", "patient/*.cruds", Some("own"), "update-other", 404),
    ("patient", "patient/*.cruds", Some("own"), "delete-other", 404),
    ("patient", "patient/*.cruds", Some("own"), "update", 403),
    ("patient", "patient/*.cruds", Some("own"), "create", 403),
    ("patient", "patient/*.rs", None, "read", 403),
    ("patient", "user/*.cruds", Some("own"), "read", 200),
    ("patient", "user/*.cruds", Some("own"), "read-other", 404),
    ("clinician", "patient/*.rs", None, "read", 403),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_holds_exactly() {
    let h = Harness::start().await;
    let admin = h.token("admin", "admin-matrix");
    let mut failures = vec![];
    for (i, (role, scopes, ctx, op, expected)) in MATRIX.iter().enumerate() {
        let own = h.create_id(&admin, &canary_patient(&format!("own{i}"))).await;
        let other = h.create_id(&admin, &canary_patient(&format!("other{i}"))).await;
        let scopes: Vec<&str> = scopes.split(' ').filter(|s| !s.is_empty()).collect();
        let t = h.token_with(role, &format!("matrix-{i}"), &scopes, ctx.map(|_| own.as_str()));
        let mut own_body = h.get(&format!("/fhir/Patient/{own}"), &admin).await.json();
        own_body["active"] = json!(false);
        let mut other_body = h.get(&format!("/fhir/Patient/{other}"), &admin).await.json();
        other_body["active"] = json!(false);
        let r = match *op {
            "read" => h.get(&format!("/fhir/Patient/{own}"), &t).await,
            "read-other" => h.get(&format!("/fhir/Patient/{other}"), &t).await,
            "vread-other" => h.get(&format!("/fhir/Patient/{other}/_history/1"), &t).await,
            "history" => h.get(&format!("/fhir/Patient/{own}/_history"), &t).await,
            "history-other" => h.get(&format!("/fhir/Patient/{other}/_history"), &t).await,
            "search" => h.get("/fhir/Patient", &t).await,
            "create" => h.create(&t, &canary_patient("new")).await,
            "update" => {
                h.call(
                    "PUT",
                    &format!("/fhir/Patient/{own}"),
                    Some(&t),
                    &[("if-match", "W/\"1\"")],
                    Some(&own_body.to_string()),
                )
                .await
            }
            "update-other" => {
                h.call(
                    "PUT",
                    &format!("/fhir/Patient/{other}"),
                    Some(&t),
                    &[("if-match", "W/\"1\"")],
                    Some(&other_body.to_string()),
                )
                .await
            }
            "delete" => h.call("DELETE", &format!("/fhir/Patient/{own}"), Some(&t), &[], None).await,
            "delete-other" => h.call("DELETE", &format!("/fhir/Patient/{other}"), Some(&t), &[], None).await,
            _ => unreachable!(),
        };
        if r.status != *expected {
            failures.push(format!("{role} {scopes:?} ctx={ctx:?} {op}: expected {expected}, got {}", r.status));
        }
        if r.status >= 400 {
            let text = String::from_utf8_lossy(&r.body);
            assert!(text.contains("OperationOutcome"), "{op}: {text}");
            assert!(!text.contains("Family"), "error bodies carry no PHI");
        }
    }
    assert!(failures.is_empty(), "matrix mismatches:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_tokens_search_only_their_own_compartment() {
    let h = Harness::start().await;
    let admin = h.token("admin", "admin-pc");
    let me = h.create_id(&admin, &canary_patient("Shared")).await;
    let _other = h.create_id(&admin, &canary_patient("Shared")).await;
    let _third = h.create_id(&admin, &canary_patient("Shared")).await;
    let t = h.token_with("patient", "pat-1", &["patient/*.rs"], Some(&me));
    for q in ["", "?family=FamilyShared", "?_count=1", "?gender=female"] {
        let b = h.get(&format!("/fhir/Patient{q}"), &t).await.json();
        assert_eq!(b["total"], 1, "{q}: counts must not reveal other patients");
        assert_eq!(b["entry"].as_array().unwrap().len(), 1);
        assert_eq!(b["entry"][0]["resource"]["id"], me.as_str());
        assert!(b["link"].as_array().unwrap().iter().all(|l| l["relation"] != "next"), "{q}: no paging into others");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_audited_and_raises_an_alert() {
    let h = Harness::start().await;
    let admin = h.token("admin", "admin-bg");
    let id = h.create_id(&admin, &canary_patient(&unique_tag())).await;
    let clin = h.token("clinician", "dr-bg");
    let path = format!("/fhir/Patient/{id}");
    let missing = h.call("GET", &path, Some(&clin), &[("x-purpose-of-use", "ETREAT")], None).await;
    assert_eq!(missing.status, 400);
    let bad_purpose = h.call("GET", &path, Some(&clin), &[("x-purpose-of-use", "BECAUSE")], None).await;
    assert_eq!(bad_purpose.status, 400);
    let reg = h.token("registrar", "reg-bg");
    let reason = "unconscious patient in the emergency department";
    let glass =
        |code| [("x-purpose-of-use", "ETREAT"), ("x-break-glass-reason-code", code), ("x-break-glass-reason", reason)];
    let curious = [
        ("x-purpose-of-use", "ETREAT"),
        ("x-break-glass-reason-code", "patient-unconscious"),
        ("x-break-glass-reason", "curious"),
    ];
    assert_eq!(h.call("GET", &path, Some(&clin), &curious, None).await.status, 400, "a reason of substance");
    assert_eq!(h.call("GET", &path, Some(&clin), &glass("because"), None).await.status, 400, "a listed reason code");
    let denied = h.call("GET", &path, Some(&reg), &glass("patient-unconscious"), None).await;
    assert_eq!(denied.status, 403);
    let ok = h.call("GET", &path, Some(&clin), &glass("patient-unconscious"), None).await;
    assert_eq!(ok.status, 200);

    let events = h.audit_events_of("dr-bg").await;
    let bg: Vec<&Value> = events.iter().filter(|e| e["outcome"] == "0").collect();
    assert_eq!(bg.len(), 1);
    let purposes: Vec<&str> =
        bg[0]["purposeOfEvent"].as_array().unwrap().iter().map(|p| p["coding"][0]["code"].as_str().unwrap()).collect();
    assert_eq!(purposes, vec!["ETREAT", "BGACCESS"]);
    assert!(!bg[0].to_string().contains(reason), "the free-text reason is not in the plaintext trail");
    assert!(bg[0].to_string().contains("patient-unconscious"), "its code is");
    // One alert for the successful break-glass read and one for the registrar's
    // denied attempt, each pointing at its audit record.
    let denied_audit = h.audit_events_of("reg-bg").await;
    assert_eq!(denied_audit.len(), 1);
    assert_eq!(denied_audit[0]["outcome"], "4");
    let outbox = h.scan(&h.table("OutboxTable")).await;
    let alerts: Vec<String> = outbox
        .iter()
        .filter(|i| i["type"].as_s().unwrap() == "BreakGlassUsed")
        .map(|i| i["detail"].as_s().unwrap().clone())
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    for audit in [bg[0], &denied_audit[0]] {
        assert_eq!(alerts.iter().filter(|a| a.contains(audit["id"].as_str().unwrap())).count(), 1);
    }
    assert!(outbox
        .iter()
        .filter(|i| i["type"].as_s().unwrap() == "BreakGlassUsed")
        .all(|i| i["pk"].as_s().unwrap() == &id));
    // Every other purpose of use is recorded as given.
    let hp = h.call("GET", &path, Some(&clin), &[("x-purpose-of-use", "HPAYMT")], None).await;
    assert_eq!(hp.status, 200);
    assert!(h.audit_events_of("dr-bg").await.iter().any(|e| e["purposeOfEvent"][0]["coding"][0]["code"] == "HPAYMT"));
}
