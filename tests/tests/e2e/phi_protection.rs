//! PHI at rest and in logs: raw table dumps and captured logs hold none of a
//! canary patient's values; ciphertexts are bound to their item, patient and
//! version; wrapped keys unwrap only in their patient's KMS context.

use aws_sdk_dynamodb::types::AttributeValue;
use medrec_e2e::{canary_patient, canary_strings, logs, unique_tag, Harness};
use medrec_edge::aws::schema;
use serde_json::json;
use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_phi_in_tables_or_logs() {
    let h = Harness::start().await;
    let tag = unique_tag();
    let t = h.token("clinician", "dr-phi");
    let id = h.create_id(&t, &canary_patient(&tag)).await;
    let mut p = h.get(&format!("/fhir/Patient/{id}"), &t).await.json();
    p["name"][0]["given"] = json!([format!("Given{tag}"), format!("Second{tag}")]);
    assert_eq!(
        h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"1\"")], Some(&p.to_string()))
            .await
            .status,
        200
    );
    for q in [
        format!("family=Family{tag}"),
        format!("identifier=MRN{tag}"),
        "birthdate=1961-07-13".into(),
        format!("given=Nobody{tag}"),
    ] {
        assert_eq!(h.get(&format!("/fhir/Patient?{q}"), &t).await.status, 200);
    }
    assert_eq!(h.get(&format!("/fhir/Patient/{id}/_history"), &t).await.status, 200);
    // PHI misplaced into parameter names is refused and not recorded either.
    assert_eq!(h.get(&format!("/fhir/Patient?Family{tag}=1&name:Given{tag}=x"), &t).await.status, 400);
    let bad = h
        .call(
            "POST",
            "/fhir/Patient",
            Some(&t),
            &[],
            Some(&json!({"resourceType": "Patient", "gender": format!("Gender{tag}")}).to_string()),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(!String::from_utf8_lossy(&bad.body).contains(&tag), "errors do not echo submitted values");
    // $validate (another function) sees PHI too: its outcomes, logs and audit records keep none.
    let mut invalid = canary_patient(&tag);
    invalid["birthDate"] = json!(format!("Born{tag}"));
    invalid["meta"] = json!({"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]});
    invalid["telecom"][0]["system"] = json!(format!("System{tag}"));
    for path in
        ["/fhir/Patient/$validate", "/fhir/Patient/$validate?profile=http://hl7.org/fhir/StructureDefinition/bp"]
    {
        let r = h.call("POST", path, Some(&t), &[], Some(&invalid.to_string())).await;
        assert_eq!(r.status, 200);
        assert!(r.json()["issue"].as_array().is_some_and(|i| !i.is_empty()));
        assert!(!String::from_utf8_lossy(&r.body).contains(&tag), "{path}: outcomes do not echo submitted values");
    }

    // A clinical document carrying the same PHI, inline: sealed at rest.
    let letter = canary_strings(&tag).join(" ");
    let doc = json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{id}")}, "description": format!("Letter about Given{tag}"),
        "content": [{"attachment": {"contentType": "text/plain", "title": format!("Family{tag}.txt"),
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, letter.as_bytes())}}]});
    let stored = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&doc.to_string())).await;
    assert_eq!(stored.status, 201);
    let binary = format!("/fhir/{}", stored.json()["content"][0]["attachment"]["url"].as_str().unwrap());
    assert_eq!(h.get(&binary, &t).await.body.as_ref(), letter.as_bytes(), "it reads back");
    let objects = h.raw_s3_dump().await;
    assert!(objects.contains(&id), "the S3 dump is real: object keys name the opaque patient id");
    for s in canary_strings(&tag) {
        assert!(!objects.contains(s.as_str()), "plaintext {s} found in S3");
    }

    let dump = h.raw_dump().await;
    assert!(dump.contains(&id), "the dump is real: it holds the opaque id");
    let mut secrets = canary_strings(&tag);
    // "1961-" and not "1961": a bare year turns up in random hex ids by chance.
    secrets.extend([format!("Second{tag}"), "1961-07-13".into(), "1961-".into(), format!("Nobody{tag}")]);
    for s in &secrets {
        assert!(!dump.contains(s.as_str()), "plaintext {s} found in DynamoDB");
    }
    let log_text = logs().text();
    assert!(log_text.contains("\"request\""), "logs were captured");
    for s in &secrets {
        assert!(!log_text.contains(s.as_str()), "{s} found in logs");
    }
}

async fn get_item(h: &Harness, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    let key = schema::key(pk, sk);
    let out = h.stack.clients.dynamodb.get_item().table_name(h.table("RecordsTable")).set_key(Some(key)).send().await;
    out.unwrap().item.expect("item exists")
}

async fn put_attr(h: &Harness, pk: &str, sk: &str, attr: &str, value: AttributeValue) {
    let mut item = get_item(h, pk, sk).await;
    item.insert(attr.into(), value);
    h.stack.clients.dynamodb.put_item().table_name(h.table("RecordsTable")).set_item(Some(item)).send().await.unwrap();
}

async fn get_attr(h: &Harness, pk: &str, sk: &str, attr: &str) -> AttributeValue {
    get_item(h, pk, sk).await[attr].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphertexts_cannot_move_between_items_patients_or_versions() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-swap");
    let (ta, tb) = (unique_tag(), unique_tag());
    let a = h.create_id(&t, &canary_patient(&ta)).await;
    let b = h.create_id(&t, &canary_patient(&tb)).await;
    let mut pa = h.get(&format!("/fhir/Patient/{a}"), &t).await.json();
    pa["active"] = json!(false);
    assert_eq!(
        h.call("PUT", &format!("/fhir/Patient/{a}"), Some(&t), &[("if-match", "W/\"1\"")], Some(&pa.to_string()))
            .await
            .status,
        200
    );
    let (pk_a, pk_b) = (schema::patient_pk(&a), schema::patient_pk(&b));
    let cur = |id: &str| schema::current_sk("Patient", id);
    let ver = |id: &str, v: u64| schema::version_sk("Patient", id, v);

    // Patient A's ciphertext placed on patient B's item.
    let ct_a = get_attr(&h, &pk_a, &cur(&a), "ct").await;
    let ct_b = get_attr(&h, &pk_b, &cur(&b), "ct").await;
    put_attr(&h, &pk_b, &cur(&b), "ct", ct_a.clone()).await;
    let r = h.get(&format!("/fhir/Patient/{b}"), &t).await;
    assert_eq!(r.status, 500, "a foreign ciphertext must not decrypt");
    assert!(!String::from_utf8_lossy(&r.body).contains(&ta));
    put_attr(&h, &pk_b, &cur(&b), "ct", ct_b).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{b}"), &t).await.status, 200, "restored item reads again");

    // Replay: version 1's ciphertext as the current (version 2) body.
    let v1 = get_attr(&h, &pk_a, &ver(&a, 1), "ct").await;
    put_attr(&h, &pk_a, &cur(&a), "ct", v1.clone()).await;
    assert_eq!(
        h.get(&format!("/fhir/Patient/{a}"), &t).await.status,
        500,
        "an old version cannot be replayed as current"
    );
    // Swap between versions of the same resource.
    put_attr(&h, &pk_a, &ver(&a, 2), "ct", v1).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{a}/_history/2"), &t).await.status, 500);
    assert_eq!(h.get(&format!("/fhir/Patient/{a}/_history/1"), &t).await.status, 200);

    // A bit flipped in a stored ciphertext.
    let AttributeValue::B(blob) = ct_a else { panic!("ciphertext is binary") };
    let mut flipped = blob.into_inner();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    put_attr(&h, &pk_a, &ver(&a, 1), "ct", AttributeValue::B(flipped.into())).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{a}/_history/1"), &t).await.status, 500);

    // Each integrity failure was audited as a failed access.
    let failures = h.audit_events_of("dr-swap").await.into_iter().filter(|e| e["outcome"] == "8").count();
    assert_eq!(failures, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_keys_unwrap_only_in_their_patients_context() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-kms");
    let a = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let b = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let AttributeValue::B(wrapped) = get_attr(&h, &schema::patient_pk(&a), schema::DATA_KEY_SK, "wk").await else {
        panic!("wrapped key is binary")
    };
    let kms = &h.stack.clients.kms;
    let key_id = h.table("RecordsKey");
    let decrypt = |patient: Option<String>| {
        let mut req =
            kms.decrypt().key_id(&key_id).ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped.as_ref()));
        if let Some(p) = patient {
            req = req.encryption_context("medrec:patient", p);
        }
        req.send()
    };
    assert!(decrypt(Some(a.clone())).await.is_ok(), "own context unwraps");
    let wrong = decrypt(Some(b.clone())).await.unwrap_err();
    assert!(wrong.into_service_error().is_invalid_ciphertext_exception());
    assert!(decrypt(None).await.is_err(), "no context does not unwrap");
}
