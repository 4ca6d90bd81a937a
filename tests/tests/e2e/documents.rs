//! DocumentReference and Binary over HTTP (the documents and ingest
//! functions) against the emulator: inline and presigned uploads, the checks
//! every document passes, sealed objects at rest, tamper refusal, and an
//! ingest that survives a failure without doing anything twice.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use medrec_e2e::{canary_patient, pdf, unique_tag, upload_notification, Harness};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SHA256_EXT: &str = "https://medrec.dev/fhir/StructureDefinition/attachment-sha256";

fn sha256_b64(bytes: &[u8]) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

fn document(patient: &str, attachment: Value) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": "2026-11-20T10:00:00Z",
        "content": [{"attachment": attachment}]
    })
}

fn inline(content_type: &str, bytes: &[u8]) -> Value {
    json!({"contentType": content_type, "data": B64.encode(bytes), "title": "note"})
}

async fn objects(h: &Harness, bucket_id: &str) -> Vec<(String, Vec<u8>)> {
    let s3 = &h.stack.clients.s3;
    let bucket = h.table(bucket_id);
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    let mut out = vec![];
    for o in listed.contents() {
        let key = o.key().unwrap_or_default().to_owned();
        // The ingest may delete an upload between the listing and the read.
        let Ok(got) = s3.get_object().bucket(&bucket).key(&key).send().await else { continue };
        out.push((key, got.body.collect().await.expect("body").to_vec()));
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn first_expression(v: &Value) -> String {
    v["issue"][0]["expression"][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_documents_are_sealed_served_and_searchable() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-docs");
    let tag = unique_tag();
    let patient = h.create_id(&t, &canary_patient(&tag)).await;
    let note = format!("Progress note: DOCCANARY{tag} reports chest pain since Tuesday.");

    let created = h
        .call(
            "POST",
            "/fhir/DocumentReference",
            Some(&t),
            &[],
            Some(&document(&patient, inline("text/plain", note.as_bytes())).to_string()),
        )
        .await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let doc = created.json();
    let id = doc["id"].as_str().unwrap().to_owned();
    let a = &doc["content"][0]["attachment"];
    assert!(a.get("data").is_none(), "the content is not kept in the record");
    let url = a["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("Binary/{id}-")), "{url}");
    assert_eq!(a["size"], note.len());
    let sha1 = B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, note.as_bytes()));
    assert_eq!(a["hash"], sha1);
    assert_eq!(a["extension"][0], json!({"url": SHA256_EXT, "valueBase64Binary": sha256_b64(note.as_bytes())}));

    // Raw bytes by default, FHIR Binary when asked by name, ranges as 206.
    let path = format!("/fhir/{url}");
    let raw = h.call("GET", &path, Some(&t), &[("accept", "*/*")], None).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body.as_ref(), note.as_bytes());
    assert_eq!(raw.header("content-type"), Some("text/plain"));
    assert_eq!(raw.header("content-disposition"), Some("attachment"));
    let fhir = h.call("GET", &path, Some(&t), &[("accept", "application/fhir+json")], None).await.json();
    assert_eq!(fhir["resourceType"], "Binary");
    assert_eq!(fhir["securityContext"]["reference"], format!("DocumentReference/{id}"));
    assert_eq!(B64.decode(fhir["data"].as_str().unwrap()).unwrap(), note.as_bytes());
    let part = h.call("GET", &path, Some(&t), &[("range", "bytes=15-24")], None).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body.as_ref(), &note.as_bytes()[15..25]);
    assert_eq!(part.header("content-range"), Some(format!("bytes 15-24/{}", note.len()).as_str()));
    let beyond = h.call("GET", &path, Some(&t), &[("range", "bytes=5000-")], None).await;
    assert_eq!(beyond.status, 416);
    let unknown = h.get(&format!("/fhir/Binary/{id}-0123456789abcdef"), &t).await;
    assert_eq!(unknown.status, 404);

    // Search by the document's own parameters, within the compartment.
    let search = |q: &'static str| {
        let (h, t, patient) = (&h, &t, &patient);
        async move { h.get(&format!("/fhir/DocumentReference?patient={patient}&{q}"), t).await.json()["total"].clone() }
    };
    assert_eq!(search("contenttype=text/plain").await, 1);
    assert_eq!(search("type=http://loinc.org|11506-3").await, 1);
    assert_eq!(search("date=ge2026-11-01&status=current").await, 1);
    assert_eq!(search("contenttype=application/pdf").await, 0);
    assert_eq!(search("status=superseded").await, 0);

    // Metadata may change; content may not (new content = new DocumentReference).
    let put = |body: Value, version: &'static str| {
        let (h, t, id) = (&h, &t, &id);
        async move {
            let etag = format!("W/\"{version}\"");
            h.call(
                "PUT",
                &format!("/fhir/DocumentReference/{id}"),
                Some(t),
                &[("if-match", &etag)],
                Some(&body.to_string()),
            )
            .await
        }
    };
    let mut described = doc.clone();
    described["description"] = json!("discharge letter");
    assert_eq!(put(described.clone(), "1").await.status, 200);
    let mut resized = described.clone();
    resized["content"][0]["attachment"]["size"] = json!(1);
    let refused = put(resized, "2").await;
    assert_eq!(refused.status, 422);
    assert_eq!(first_expression(&refused.json()), "DocumentReference.content[0].attachment.url");
    let mut with_data = described.clone();
    with_data["content"][0]["attachment"]["data"] = json!(B64.encode(b"other"));
    // Sized as the new data, so it is the stored document's bytes that refuse it.
    with_data["content"][0]["attachment"]["size"] = json!(5);
    let refused = put(with_data, "2").await;
    assert_eq!(refused.status, 422);
    assert_eq!(first_expression(&refused.json()), "DocumentReference.content[0].attachment.data");
    assert_eq!(h.call("GET", &path, Some(&t), &[], None).await.body.as_ref(), note.as_bytes());

    // Another patient's token sees nothing of it; $everything includes it.
    let other = h.token_with(
        "patient",
        "someone-else",
        &["patient/*.read"],
        Some(&h.create_id(&t, &canary_patient(&unique_tag())).await),
    );
    assert_eq!(h.get(&path, &other).await.status, 404);
    let everything = h.get(&format!("/fhir/Patient/{patient}/$everything"), &t).await.json();
    assert!(everything["entry"].as_array().unwrap().iter().any(|e| e["resource"]["id"] == id.as_str()));

    // At rest: only sealed objects, no PHI anywhere; the read is audited.
    let stored = objects(&h, "DocumentsBucket").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, format!("{patient}/{}", &url["Binary/".len()..]));
    assert!(stored[0].1.starts_with(b"MRD1"));
    assert!(!contains(&stored[0].1, &format!("DOCCANARY{tag}")));
    assert!(!contains(&stored[0].1, "chest pain"));
    assert!(!h.raw_dump().await.contains(&format!("DOCCANARY{tag}")));
    assert!(!medrec_e2e::logs().text().contains(&format!("DOCCANARY{tag}")), "no PHI in the logs");
    let audits = h.audit_events_of("dr-docs").await;
    let binary_reads = audits
        .iter()
        .filter(|e| e["entity"].as_array().into_iter().flatten().any(|en| en["what"]["reference"] == url.as_str()))
        .count();
    assert!(binary_reads >= 4, "every Binary read is audited ({binary_reads})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_content_is_checked_before_anything_is_stored() {
    let h = Harness::start_with(vec![("MEDREC_DOCUMENT_INLINE_MAX_BYTES".into(), "2048".into())]).await;
    let t = h.token("clinician", "dr-checks");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let post = |attachment: Value| {
        let (h, t, patient) = (&h, &t, &patient);
        async move {
            h.call("POST", "/fhir/DocumentReference", Some(t), &[], Some(&document(patient, attachment).to_string()))
                .await
        }
    };
    let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let mut wrong_hash = inline("text/plain", b"hello");
    wrong_hash["hash"] = json!(B64.encode([0u8; 20]));
    let mut wrong_size = inline("text/plain", b"hello");
    wrong_size["size"] = json!(6);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("type not allowed", inline("application/x-msdownload", b"MZ\x90\0"), 415, ""),
        ("bytes not of the type", inline("application/pdf", b"just text"), 415, ""),
        ("too large inline", inline("application/pdf", &pdf(4096, "x")), 413, ""),
        ("malware", inline("text/plain", eicar), 422, "DocumentReference.content[0].attachment.data"),
        ("SHA-1 mismatch", wrong_hash, 422, "DocumentReference.content[0].attachment.hash"),
        ("size mismatch", wrong_size, 422, "DocumentReference.content[0].attachment.size"),
        (
            "bad base64",
            json!({"contentType": "text/plain", "data": "%%%"}),
            422,
            "DocumentReference.content[0].attachment.data",
        ),
        (
            "points at a Binary",
            json!({"contentType": "text/plain", "url": "Binary/x"}),
            422,
            "DocumentReference.content[0].attachment.url",
        ),
        (
            "upload without SHA-256",
            json!({"contentType": "application/pdf", "size": 10}),
            422,
            "DocumentReference.content[0].attachment.extension",
        ),
        ("upload too large", json!({"contentType": "application/pdf", "size": 1u64 << 40}), 413, ""),
        (
            "no contentType",
            json!({"data": B64.encode(b"x")}),
            422,
            "DocumentReference.content[0].attachment.contentType",
        ),
    ];
    for (what, attachment, status, expression) in cases {
        let r = post(attachment).await;
        assert_eq!(r.status, status, "{what}: {}", String::from_utf8_lossy(&r.body));
        let outcome = r.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
        if !expression.is_empty() {
            assert_eq!(first_expression(&outcome), expression, "{what}");
        }
    }
    let mut not_patient = document(&patient, inline("text/plain", b"hello"));
    not_patient["subject"] = json!({"reference": "Group/abc"});
    let r = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&not_patient.to_string())).await;
    assert_eq!(r.status, 422);
    // A registrar may not write clinical documents.
    let registrar = h.token("registrar", "front-desk");
    let r = h
        .call(
            "POST",
            "/fhir/DocumentReference",
            Some(&registrar),
            &[],
            Some(&document(&patient, inline("text/plain", b"hi")).to_string()),
        )
        .await;
    assert_eq!(r.status, 403);

    // Nothing was half-written: no object, no record.
    assert!(objects(&h, "DocumentsBucket").await.is_empty());
    assert_eq!(h.get(&format!("/fhir/DocumentReference?patient={patient}"), &t).await.json()["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_documents_are_refused_and_audited() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-tamper");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let mut urls = vec![];
    for text in ["first document body", "second document body"] {
        let body = document(&patient, inline("text/plain", text.as_bytes())).to_string();
        let r = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&body)).await;
        assert_eq!(r.status, 201);
        urls.push(r.json()["content"][0]["attachment"]["url"].as_str().unwrap().to_owned());
    }
    let s3 = &h.stack.clients.s3;
    let bucket = h.table("DocumentsBucket");
    let stored = objects(&h, "DocumentsBucket").await;
    let key_of = |url: &str| stored.iter().find(|(k, _)| k.ends_with(&url["Binary/".len()..])).unwrap().clone();
    let (key0, sealed0) = key_of(&urls[0]);
    let (_, sealed1) = key_of(&urls[1]);
    let put = |bytes: Vec<u8>| {
        let (s3, bucket, key0) = (s3, &bucket, &key0);
        async move {
            s3.put_object().bucket(bucket).key(key0).body(bytes.into()).send().await.expect("raw put");
        }
    };
    let path = format!("/fhir/{}", urls[0]);
    let mut flipped = sealed0.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    for (what, bytes) in [
        ("bit flip", flipped),
        ("swapped object", sealed1.clone()),
        ("truncated", sealed0[..sealed0.len() - 5].to_vec()),
    ] {
        put(bytes).await;
        let r = h.get(&path, &t).await;
        assert_eq!(r.status, 500, "{what}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{what}");
        assert!(!contains(&r.body, "first document"), "{what}");
        let ranged = h.call("GET", &path, Some(&t), &[("range", "bytes=0-3")], None).await;
        assert_eq!(ranged.status, 500, "{what}: a range is verified too");
    }
    let refused = h
        .audit_events_of("dr-tamper")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "8" && e["entity"][0]["what"]["reference"] == urls[0].as_str())
        .count();
    assert_eq!(refused, 6, "every refused download is audited as a failure");
    put(sealed0).await;
    assert_eq!(h.get(&path, &t).await.body.as_ref(), b"first document body", "the original still opens");
}

async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ready().await {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_uploads_are_checked_sealed_and_served() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-upload");
    let tag = unique_tag();
    let patient = h.create_id(&t, &canary_patient(&tag)).await;
    // Larger than one 64 KiB frame, so ranges cross frames.
    let scan = pdf(200_000, &format!("SCANCANARY{tag}"));
    let pending = h.promise_upload(&t, &patient, &scan).await;
    let id = pending.id.clone();
    assert!(!pending.url.contains(&patient) && !pending.url.contains(&tag), "the URL names no patient");
    assert_eq!(
        h.get(&format!("/fhir/DocumentReference/{id}"), &t).await.status,
        404,
        "not current before the bytes are checked"
    );

    assert_eq!(h.upload(&pending, &scan).await, 200);
    let path = format!("/fhir/DocumentReference/{id}");
    wait_for("the ingest", async || h.get(&path, &t).await.status == 200).await;
    let doc = h.get(&path, &t).await.json();
    assert_eq!(doc["meta"]["versionId"], "1");
    assert_eq!(doc["content"][0]["attachment"]["size"], scan.len());
    let binary = format!("/fhir/{}", doc["content"][0]["attachment"]["url"].as_str().unwrap());
    assert_eq!(h.get(&binary, &t).await.body.as_ref(), scan.as_slice());
    let part = h.call("GET", &binary, Some(&t), &[("range", "bytes=65000-140000")], None).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body.as_ref(), &scan[65000..=140000]);

    // The quarantine is emptied (right after the commit); only a sealed copy remains.
    wait_for("the quarantine to empty", async || objects(&h, "UploadsBucket").await.is_empty()).await;
    let stored = objects(&h, "DocumentsBucket").await;
    assert_eq!(stored.len(), 1);
    assert!(!contains(&stored[0].1, &format!("SCANCANARY{tag}")));
    assert!(!h.raw_dump().await.contains(&format!("SCANCANARY{tag}")));
    assert!(!medrec_e2e::logs().text().contains(&format!("SCANCANARY{tag}")), "no PHI in the logs");
    let outbox = h.scan(&h.table("OutboxTable")).await;
    let stored_events = outbox
        .iter()
        .filter(|i| i["type"].as_s().is_ok_and(|t| t == "DocumentStored"))
        .filter(|i| i["detail"].as_s().is_ok_and(|d| d.contains(&id)))
        .count();
    assert_eq!(stored_events, 1);

    // Bytes that are not what was promised never become a document.
    let promised = pdf(1000, "a");
    let bad = h.promise_upload(&t, &patient, &promised).await;
    let other = pdf(1000, "b");
    let status = h.upload(&bad, &other).await;
    // S3 refuses a body whose checksum differs from the signed one; where it
    // does not (the emulator), the ingest does.
    if status == 200 {
        wait_for("the rejection", async || objects(&h, "UploadsBucket").await.is_empty()).await;
    }
    assert_eq!(h.get(&format!("/fhir/DocumentReference/{}", bad.id), &t).await.status, 404);
    let rejected =
        h.audit_events_of("dr-upload").await.into_iter().any(|e| {
            e["outcome"] == "4" && e["entity"][0]["what"]["reference"] == format!("DocumentReference/{}", bad.id)
        });
    assert!(rejected || status != 200, "the rejected upload is audited");
    assert_eq!(objects(&h, "DocumentsBucket").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_retries_after_a_failure_without_duplicates() {
    // The stack's ingest writes to a bucket that does not exist: it fails
    // after checking the upload, as if S3 were down for it.
    let h =
        Harness::start_with(vec![("DocumentIngestFunction:MEDREC_DOCUMENTS_BUCKET".into(), "no-such-bucket".into())])
            .await;
    let t = h.token("clinician", "dr-retry");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let scan = pdf(70_000, "retry");
    let pending = h.promise_upload(&t, &patient, &scan).await;
    let id = pending.id.clone();
    assert_eq!(h.upload(&pending, &scan).await, 200);

    // The failed message stays in flight (not deleted), the upload stays in
    // quarantine, and no DocumentReference exists.
    let sqs = &h.stack.clients.sqs;
    let queue = h.table("DocumentIngestQueue");
    wait_for("the failed attempt", async || {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        attrs.attributes().and_then(|a| a.values().next()).is_some_and(|v| v == "1")
    })
    .await;
    assert_eq!(objects(&h, "UploadsBucket").await.len(), 1);
    assert_eq!(h.get(&format!("/fhir/DocumentReference/{id}"), &t).await.status, 404);

    // Redelivered to a healthy ingest: stored once; delivered again: nothing twice.
    let bucket = h.table("DocumentsBucket");
    let settings = h.settings("DocumentIngestFunction", &[("MEDREC_DOCUMENTS_BUCKET", &bucket)]);
    let ingest = std::sync::Arc::new(medrec_document_ingest::boot(&settings).await.unwrap());
    for _ in 0..2 {
        let event =
            lambda_http::LambdaEvent::new(upload_notification(&id, "redelivered"), lambda_http::Context::default());
        let response = ingest.clone().handle(event).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let doc = h.get(&format!("/fhir/DocumentReference/{id}"), &t).await.json();
    assert_eq!(doc["meta"]["versionId"], "1");
    let binary = format!("/fhir/{}", doc["content"][0]["attachment"]["url"].as_str().unwrap());
    assert_eq!(h.get(&binary, &t).await.body.as_ref(), scan.as_slice());
    assert_eq!(objects(&h, "DocumentsBucket").await.len(), 1);
    assert!(objects(&h, "UploadsBucket").await.is_empty());
    let stored_events = h
        .scan(&h.table("OutboxTable"))
        .await
        .iter()
        .filter(|i| i["type"].as_s().is_ok_and(|t| t == "DocumentStored"))
        .count();
    assert_eq!(stored_events, 1);
}

/// `POST /fhir/Binary`: content no DocumentReference describes, placed by
/// its securityContext (a record or the Patient), as FHIR JSON or raw bytes
/// with `X-Security-Context`; checked and sealed as document content is,
/// served as a read of its context, and gone with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_binaries_belong_to_their_security_context() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-binary");
    let tag = unique_tag();
    let patient = h.create_id(&t, &canary_patient(&tag)).await;
    let observation = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z"});
    let obs = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&observation.to_string())).await.json();
    let obs_id = obs["id"].as_str().unwrap().to_owned();
    let note = format!("Scanned form: BINCANARY{tag} signed by the patient.");
    let binary = |context: &str, content_type: &str, bytes: &[u8]| {
        json!({"resourceType": "Binary", "contentType": content_type,
            "securityContext": {"reference": context}, "data": B64.encode(bytes)})
    };

    let created = h
        .call(
            "POST",
            "/fhir/Binary",
            Some(&t),
            &[],
            Some(&binary(&format!("Observation/{obs_id}"), "text/plain", note.as_bytes()).to_string()),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(created.header("location").unwrap().ends_with(&format!("/fhir/Binary/{id}/_history/1")));
    assert_eq!(B64.decode(body["data"].as_str().unwrap()).unwrap(), note.as_bytes(), "what goes in comes out");
    assert!(body.get("size").is_none() && body.get("sha256").is_none());

    let path = format!("/fhir/Binary/{id}");
    let raw = h.call("GET", &path, Some(&t), &[("accept", "*/*")], None).await;
    assert_eq!((raw.status, raw.body.as_ref()), (200, note.as_bytes()));
    assert_eq!(raw.header("content-type"), Some("text/plain"));
    let fhir = h.call("GET", &path, Some(&t), &[("accept", "application/fhir+json")], None).await.json();
    assert_eq!(fhir["securityContext"]["reference"], format!("Observation/{obs_id}"));
    let part = h.call("GET", &path, Some(&t), &[("range", "bytes=0-11")], None).await;
    assert_eq!((part.status, part.body.as_ref()), (206, &note.as_bytes()[..12]));

    // Raw bytes with their type, placed on the Patient by header.
    let scan = pdf(2048, &format!("form {tag}"));
    let context = format!("Patient/{patient}");
    let headers = [("content-type", "application/pdf"), ("x-security-context", context.as_str())];
    let posted = h.call_bytes("POST", "/fhir/Binary", Some(&t), &headers, scan.clone()).await;
    assert_eq!(posted.status, 201, "{}", posted.text());
    let scan_id = posted.json()["id"].as_str().unwrap().to_owned();
    let back =
        h.call("GET", &format!("/fhir/Binary/{scan_id}"), Some(&t), &[("accept", "application/pdf")], None).await;
    assert_eq!(back.body.as_ref(), scan.as_slice());

    // Sealed at rest: no stored object holds the text.
    for (key, bytes) in objects(&h, "DocumentsBucket").await {
        assert!(!contains(&bytes, &format!("BINCANARY{tag}")), "{key} holds plaintext");
    }

    // Refused before anything is stored.
    let refusals = [
        (binary("", "text/plain", b"x"), 422, "Binary.securityContext"),
        (binary("Observation/0123456789abcdef", "text/plain", b"x"), 422, "Binary.securityContext"),
        (binary("Organization/x", "text/plain", b"x"), 422, "Binary.securityContext"),
        (binary("Unknown/x", "text/plain", b"x"), 422, "Binary.securityContext"),
        (binary(&context, "application/pdf", b"not a pdf"), 415, ""),
        (binary(&context, "image/gif", b"GIF89a"), 415, ""),
        (
            json!({"resourceType": "Binary", "contentType": "text/plain", "securityContext": {"reference": context}, "data": "***"}),
            422,
            "Binary.data",
        ),
        (
            json!({"resourceType": "Binary", "securityContext": {"reference": context}, "data": "aGk="}),
            422,
            "Binary.contentType",
        ),
        (
            json!({"resourceType": "Binary", "contentType": "text/plain", "securityContext": {"reference": context},
                "data": "aGk=", "note": "not an element of Binary"}),
            422,
            "Binary",
        ),
    ];
    for (body, status, at) in refusals {
        let r = h.call("POST", "/fhir/Binary", Some(&t), &[], Some(&body.to_string())).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
        assert!(first_expression(&r.json()).starts_with(at), "{body}: {}", r.text());
    }
    let untyped = h
        .call_bytes("POST", "/fhir/Binary", Some(&t), &[("x-security-context", context.as_str())], b"x".to_vec())
        .await;
    assert_eq!(untyped.status, 415);
    let huge = vec![b'a'; 6 * 1024 * 1024];
    let headers = [("content-type", "text/plain"), ("x-security-context", context.as_str())];
    assert_eq!(h.call_bytes("POST", "/fhir/Binary", Some(&t), &headers, huge).await.status, 413);
    let registrar = h.token("registrar", "desk-binary");
    let desk = h
        .call("POST", "/fhir/Binary", Some(&registrar), &[], Some(&binary(&context, "text/plain", b"x").to_string()))
        .await;
    assert_eq!(desk.status, 403);

    // Read as its context is: another patient's token finds nothing, a
    // clinician the patient's consent refuses is refused.
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let theirs = h.token_with("patient", "pt-binary-other", &["patient/*.rs"], Some(&other));
    assert_eq!(h.get(&path, &theirs).await.status, 404);
    let own = h.token_with("patient", "pt-binary", &["patient/*.rs"], Some(&patient));
    assert_eq!(h.call("GET", &path, Some(&own), &[("accept", "*/*")], None).await.status, 200);
    let refusal = medrec_e2e::consent(
        &patient,
        json!({"type": "permit", "provision": [{"type": "deny",
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-binary-refused"}}]}]}),
    );
    let admin = h.token("admin", "adm-binary");
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&admin), &[], Some(&refusal.to_string())).await.status, 201);
    let refused = h.token("clinician", "dr-binary-refused");
    assert_eq!(h.get(&path, &refused).await.status, 403);
    let write = h
        .call("POST", "/fhir/Binary", Some(&refused), &[], Some(&binary(&context, "text/plain", b"x").to_string()))
        .await;
    assert_eq!(write.status, 403);

    // The read is audited naming the Binary and its context, no content.
    let events = h.audit_events_of("dr-binary").await;
    let read = events
        .iter()
        .find(|e| e["subtype"][0]["code"] == "read" && e.to_string().contains(&format!("Binary/{id}")))
        .expect("the read is audited");
    assert!(read.to_string().contains(&format!("Observation/{obs_id}")), "{read}");
    assert!(events.iter().all(|e| !e.to_string().contains(&format!("BINCANARY{tag}"))));

    // A Binary goes with its record.
    let gone = h.call("DELETE", &format!("/fhir/Observation/{obs_id}"), Some(&admin), &[], None).await;
    assert_eq!(gone.status, 204);
    assert_eq!(h.get(&path, &t).await.status, 410);
}
