//! Documents: inline content is checked (type, malware), sealed under the
//! patient's key and served back exactly, whole or by range; a promised
//! upload is taken in once, after the same checks; consent reaches the
//! bytes as it reaches the DocumentReference.

use super::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use medrec_core::documents::{DocumentConfig, TestSignatureScanner, SHA256_EXTENSION};
use medrec_core::memory::MemoryBlobs;
use medrec_core::service::binaries::NewBinary;
use medrec_core::service::documents::{Created, DocumentDeps, Ingested, Uploads};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn config() -> DocumentConfig {
    DocumentConfig::from_lookup(|k| match k {
        "MEDREC_DOCUMENTS_BUCKET" => Some("documents".into()),
        "MEDREC_UPLOADS_BUCKET" => Some("uploads".into()),
        _ => None,
    })
    .unwrap()
}

fn pdf(canary: &str) -> Vec<u8> {
    let mut b = format!("%PDF-1.7\n% {canary}\n").into_bytes();
    b.extend((0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
    b
}

fn document(patient: &str, attachment: Value) -> Value {
    json!({"resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "date": "2026-11-20T10:00:00Z",
        "content": [{"attachment": attachment}]})
}

fn sha256_extension(bytes: &[u8]) -> Value {
    json!([{"url": SHA256_EXTENSION, "valueBase64Binary": B64.encode(medrec_core::crypto::sha256(bytes))}])
}

async fn store_inline(
    svc: &Memory,
    who: &Caller,
    deps: &DocumentDeps<'_, MemoryBlobs>,
    patient: &str,
    media: &str,
    bytes: &[u8],
) -> Result<Value> {
    let mut audit = svc.draft(Some(who), "create");
    let body = document(patient, json!({"contentType": media, "data": B64.encode(bytes)}));
    match svc.create_document(who, body, deps, &mut audit).await? {
        Created::Stored(s) => Ok(s.resource),
        Created::Pending { .. } => panic!("inline content is stored at once"),
    }
}

#[tokio::test]
async fn inline_content_is_checked_sealed_and_served_back_exactly() {
    let svc = services();
    let (blobs, config) = (MemoryBlobs::default(), config());
    let deps =
        DocumentDeps { blobs: &blobs, config: &config, scanner: &TestSignatureScanner, uploads: Uploads::Offered };
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let bytes = pdf(CANARY_FAMILY);

    let stored = store_inline(&svc, &dr, &deps, &p, "application/pdf", &bytes).await.unwrap();
    let attachment = &stored["content"][0]["attachment"];
    assert!(attachment.get("data").is_none(), "the bytes are not kept in the record");
    assert_eq!(attachment["size"], bytes.len());
    let binary = attachment["url"].as_str().unwrap().strip_prefix("Binary/").unwrap().to_owned();

    let get = |range: Option<&'static str>| {
        let (svc, dr, deps, binary) = (&svc, &dr, &deps, binary.clone());
        async move {
            let mut audit = svc.draft(Some(dr), "read");
            svc.read_binary(dr, &binary, range, deps, &mut audit).await
        }
    };
    let whole = get(None).await.unwrap();
    assert_eq!((whole.bytes == bytes, whole.content_type.as_str()), (true, "application/pdf"));
    let part = get(Some("bytes=0-7")).await.unwrap();
    assert_eq!((&part.bytes[..], part.range, part.size), (&b"%PDF-1.7"[..], Some((0, 7)), bytes.len() as u64));
    assert!(matches!(get(Some("bytes=999999-")).await, Err(Error::RangeNotSatisfiable(_))));

    let objects = blobs.objects();
    assert_eq!(objects.len(), 1);
    let sealed = String::from_utf8_lossy(&objects[0].1);
    assert!(!sealed.contains(CANARY_FAMILY) && !sealed.contains("%PDF"), "sealed at rest");

    // A type the bytes are not, and the anti-malware test file, are refused; nothing more is stored.
    let refused = store_inline(&svc, &dr, &deps, &p, "image/png", &bytes).await;
    assert!(matches!(refused, Err(Error::UnsupportedContent(_))), "{:?}", refused.err());
    match store_inline(&svc, &dr, &deps, &p, "text/plain", EICAR).await {
        Err(Error::Invalid(issues)) => assert_eq!(issues[0].code, "security"),
        other => panic!("the malware scan refuses it: {:?}", other.err()),
    }
    assert_eq!(blobs.objects().len(), 1);

    // The patient's refusal of a clinician reaches the bytes.
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    create(&svc, &registrar, consent(&p, refusing("Practitioner/dr-no"))).await.unwrap();
    let dr_no = clinician("dr-no", "user/*.cruds");
    let mut audit = svc.draft(Some(&dr_no), "read");
    forbidden(svc.read_binary(&dr_no, &binary, None, &deps, &mut audit).await);
}

#[tokio::test]
async fn a_promised_upload_is_taken_in_once_and_only_as_promised() {
    let svc = services();
    let (blobs, config) = (MemoryBlobs::default(), config());
    let deps =
        DocumentDeps { blobs: &blobs, config: &config, scanner: &TestSignatureScanner, uploads: Uploads::Offered };
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let bytes = pdf("upload");
    let promise = |bytes: &[u8]| json!({"contentType": "application/pdf", "size": bytes.len(), "extension": sha256_extension(bytes)});
    let pending = |body: Value| {
        let (svc, dr, deps) = (&svc, &dr, &deps);
        let mut audit = svc.draft(Some(dr), "create");
        async move {
            match svc.create_document(dr, body, deps, &mut audit).await.unwrap() {
                Created::Pending { id, upload, .. } => (id, upload.url),
                Created::Stored(_) => panic!("content promised by upload"),
            }
        }
    };
    let (id, url) = pending(document(&p, promise(&bytes))).await;
    assert!(url.ends_with(&id), "{url}");
    assert!(read(&svc, &dr, "DocumentReference", &id).await.is_err(), "nothing to read until the bytes arrive");

    blobs.upload(&id, bytes.clone());
    assert!(matches!(svc.ingest_upload(&id, &deps).await.unwrap(), Ingested::Stored(ref s) if *s == id));
    assert!(matches!(svc.ingest_upload(&id, &deps).await.unwrap(), Ingested::Duplicate), "a redelivery does nothing");
    let stored = read(&svc, &dr, "DocumentReference", &id).await.unwrap();
    let binary = stored["content"][0]["attachment"]["url"].as_str().unwrap().trim_start_matches("Binary/").to_owned();
    let mut audit = svc.draft(Some(&dr), "read");
    assert!(svc.read_binary(&dr, &binary, None, &deps, &mut audit).await.unwrap().bytes == bytes);

    // Bytes other than those promised are discarded, not stored.
    let (other, _) = pending(document(&p, promise(&bytes))).await;
    let mut tampered = bytes.clone();
    tampered[100] ^= 1;
    blobs.upload(&other, tampered);
    assert!(matches!(svc.ingest_upload(&other, &deps).await.unwrap(), Ingested::Rejected(_)));
    assert!(read(&svc, &dr, "DocumentReference", &other).await.is_err());
    blobs.upload("no-such-promise", bytes);
    assert!(matches!(svc.ingest_upload("no-such-promise", &deps).await.unwrap(), Ingested::Unknown));
    assert!(blobs.pending_uploads().is_empty(), "every upload taken in or discarded");

    // Inside a Bundle content comes inline.
    let deps = DocumentDeps { uploads: Uploads::Refused, ..deps };
    let mut audit = svc.draft(Some(&dr), "create");
    let in_bundle = svc.create_document(&dr, document(&p, promise(b"x")), &deps, &mut audit).await;
    assert!(matches!(in_bundle, Err(Error::Invalid(_))));
}

#[tokio::test]
async fn a_binary_belongs_to_the_record_it_names_and_is_read_as_that_record() {
    let svc = services();
    let (blobs, config) = (MemoryBlobs::default(), config());
    let deps =
        DocumentDeps { blobs: &blobs, config: &config, scanner: &TestSignatureScanner, uploads: Uploads::Offered };
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let obs = create(&svc, &dr, temperature(&p, json!(37))).await.unwrap();
    let bytes = b"chart note: Zzyzxcanary afebrile".to_vec();
    let binary = |context: String, bytes: &[u8]| NewBinary {
        content_type: "text/plain".into(),
        security_context: context,
        bytes: bytes.to_vec(),
    };
    let mut audit = svc.draft(Some(&dr), "create");
    let stored = svc.create_binary(&dr, binary(format!("Observation/{obs}"), &bytes), &deps, &mut audit).await.unwrap();
    let mut audit = svc.draft(Some(&dr), "read");
    let back = svc.read_binary(&dr, &stored.id, None, &deps, &mut audit).await.unwrap();
    assert_eq!((back.bytes == bytes, back.security_context), (true, format!("Observation/{obs}")));
    assert!(!String::from_utf8_lossy(&blobs.objects()[0].1).contains(CANARY_FAMILY));

    for context in ["Observation/no-such-record".to_owned(), "Practitioner/x".to_owned(), "nonsense".to_owned()] {
        let mut audit = svc.draft(Some(&dr), "create");
        let refused = svc.create_binary(&dr, binary(context.clone(), &bytes), &deps, &mut audit).await;
        assert!(matches!(refused, Err(Error::Invalid(_))), "{context}: {:?}", refused.err());
    }
    let reader = clinician("dr-r", "user/*.rs");
    let mut audit = svc.draft(Some(&reader), "create");
    forbidden(svc.create_binary(&reader, binary(format!("Observation/{obs}"), &bytes), &deps, &mut audit).await);
    assert_eq!(blobs.objects().len(), 1, "nothing stored for the refused");

    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    create(&svc, &registrar, consent(&p, refusing("Practitioner/dr-no"))).await.unwrap();
    let dr_no = clinician("dr-no", "user/*.cruds");
    let mut audit = svc.draft(Some(&dr_no), "read");
    forbidden(svc.read_binary(&dr_no, &stored.id, None, &deps, &mut audit).await);
}
