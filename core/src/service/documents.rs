//! DocumentReference with its content, and Binary. The bytes of a document
//! live in the blob store, sealed under a key derived from the patient's data
//! key; the DocumentReference (encrypted like every record) says where they
//! are, their type, size, SHA-1 (FHIR's `hash`) and SHA-256 (medrec's
//! extension, checked again on every full download).
//!
//! Content is immutable: new content is a new DocumentReference (with
//! `relatesTo` replaces), as FHIR intends; updates change metadata only.
//! Small documents arrive inline; larger ones through a presigned upload
//! to a quarantine bucket, checked and sealed by the ingest.

use super::clinical::NewRecord;
use super::records::Stored;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::crypto::framed::{self, document_key, Layout};
use crate::crypto::{open, resource_aad, seal, sha256, DataKey};
use crate::documents::{content_matches, essence, DocumentConfig, MalwareScanner, ScanVerdict, SHA256_EXTENSION};
use crate::error::{Error, Result};
use crate::fhir::outcome::Issue;
use crate::ports::{BlobStore, KeyService, PresignedUpload, RecordStore, ResourceWrite, UploadTerms};
use aws_lc_rs::digest;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// The internal record of an upload that was promised but not yet checked.
/// Never served: a DocumentReference whose bytes do not exist yet must not
/// look `current` to a clinician, and R4 has no status for "pending".
const PENDING: &str = "DocumentUpload";

/// What document operations need besides the record store and keys.
pub struct DocumentDeps<'a, B> {
    pub blobs: &'a B,
    pub config: &'a DocumentConfig,
    pub scanner: &'a dyn MalwareScanner,
    pub uploads: Uploads,
}

/// Whether a new DocumentReference may promise its content by presigned upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploads {
    Offered,
    /// In a Bundle: a transaction commits its documents with the rest,
    /// and bytes that arrive later cannot join it; content comes inline.
    Refused,
}

pub enum Created {
    Stored(Stored),
    /// The DocumentReference id is reserved; it appears once the ingest has
    /// checked and sealed the upload.
    Pending {
        id: String,
        upload: PresignedUpload,
        expires: String,
    },
}

pub struct BinaryContent {
    pub content_type: String,
    /// The resource whose access decides the Binary's (`Type/id`).
    pub security_context: String,
    pub bytes: Vec<u8>,
    /// The whole document's size.
    pub size: u64,
    /// The bytes served when a range was asked for.
    pub range: Option<(u64, u64)>,
}

/// What the ingest did with one uploaded object.
#[derive(Debug)]
pub enum Ingested {
    Stored(String),
    /// Already ingested (a redelivered event): nothing done twice.
    Duplicate,
    /// Refused and discarded; audited.
    Rejected(Error),
    /// No upload was promised under this key; discarded.
    Unknown,
}

/// `Binary/{document}-{random}`: a Binary belongs to exactly one
/// DocumentReference, and its id says which.
fn new_binary_id(document: &str) -> String {
    format!("{document}-{}", &crate::crypto::random_id()[..16])
}

/// The Binary an upload becomes, fixed by its pending record: an ingest
/// retried after sealing the object (the commit failed, the answer was
/// lost) rewrites that object rather than leaving an orphan beside it.
fn upload_binary_id(document: &str, pending_version: u64) -> String {
    let digest = sha256(format!("medrec/upload-binary/v1|{document}|{pending_version}").as_bytes());
    format!("{document}-{}", &crate::crypto::hex(&digest)[..16])
}

fn document_of_binary(binary: &str) -> Option<&str> {
    let (doc, suffix) = binary.split_once('-')?;
    let hexish = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(doc, 32) && hexish(suffix, 16)).then_some(doc)
}

/// Where a Binary's sealed bytes live; also the identity its frames bind.
pub(crate) fn object_key(patient: &str, binary: &str) -> String {
    format!("{patient}/{binary}")
}

/// Stores a sealed object; a transaction's stage notes it, so the object
/// goes if the transaction fails.
pub(crate) async fn store_object<B: BlobStore>(blobs: &B, key: &str, sealed: Vec<u8>) -> Result<()> {
    blobs.put(key, sealed).await?;
    super::staging::object_stored(key);
    Ok(())
}

/// A Binary's bytes as stored: sealed under its own key, derived from the
/// patient's, bound to its object key.
pub fn seal_binary(patient_key: &DataKey, patient: &str, binary: &str, bytes: &[u8]) -> Vec<u8> {
    let object = object_key(patient, binary);
    framed::seal_document(&document_key(patient_key, &object), &object, bytes)
}

fn sha1_b64(bytes: &[u8]) -> String {
    B64.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bytes))
}

fn sha256_ext(attachment: &Value) -> Option<&str> {
    attachment["extension"].as_array()?.iter().find(|e| e["url"] == SHA256_EXTENSION)?["valueBase64Binary"].as_str()
}

fn at(i: usize, element: &str) -> String {
    format!("DocumentReference.content[{i}].attachment.{element}")
}

fn invalid(i: usize, element: &str, code: &'static str, text: &str) -> Error {
    Error::Invalid(vec![Issue::error(code, text.to_owned()).at(at(i, element))])
}

/// Records the stored content in an attachment: where, how large, hashes.
fn describe(attachment: &mut Value, binary: &str, bytes_len: u64, digests: Digests) {
    let a = attachment.as_object_mut().expect("attachment is an object");
    a.remove("data");
    a.insert("url".into(), json!(format!("Binary/{binary}")));
    a.insert("size".into(), json!(bytes_len));
    a.insert("hash".into(), json!(digests.sha1));
    let mut ext: Vec<Value> = a
        .get("extension")
        .and_then(Value::as_array)
        .map(|x| x.iter().filter(|e| e["url"] != SHA256_EXTENSION).cloned().collect())
        .unwrap_or_default();
    ext.push(json!({"url": SHA256_EXTENSION, "valueBase64Binary": digests.sha256}));
    a.insert("extension".into(), Value::Array(ext));
}

/// How one attachment of a new DocumentReference carries its content.
enum Content {
    Inline {
        index: usize,
        media: String,
        bytes: Vec<u8>,
    },
    Upload {
        index: usize,
        media: String,
        size: u64,
        sha256: String,
    },
    /// An external URL: metadata only, not served by medrec.
    External,
}

/// Reads each attachment of a new DocumentReference, taking inline data out
/// of the resource (it is stored as a Binary, never inside the record).
fn take_contents(resource: &mut Value, config: &DocumentConfig) -> Result<Vec<Content>> {
    let Some(contents) = resource["content"].as_array_mut() else {
        return Err(Error::Invalid(vec![
            Issue::error("required", "a DocumentReference needs content").at("DocumentReference.content")
        ]));
    };
    let mut out = vec![];
    for (i, c) in contents.iter_mut().enumerate() {
        let Some(a) = c.get_mut("attachment").and_then(Value::as_object_mut) else {
            return Err(invalid(i, "", "required", "every content needs an attachment"));
        };
        let media = a.get("contentType").and_then(Value::as_str).map(essence);
        if let Some(url) = a.get("url").and_then(Value::as_str) {
            if a.contains_key("data") || !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(i, "url", "value", "a new document carries its content inline or by upload; only external http(s) URLs may be referenced"));
            }
            out.push(Content::External);
            continue;
        }
        let media = media.ok_or_else(|| invalid(i, "contentType", "required", "content needs its contentType"))?;
        check_type(&media, config)?;
        match a.remove("data") {
            Some(Value::String(data)) => {
                // base64 inflates by 4/3: a string this long cannot fit.
                if data.len() / 4 * 3 > config.inline_max + 3 {
                    return Err(too_large_inline(config));
                }
                let bytes =
                    B64.decode(data.as_bytes()).map_err(|_| invalid(i, "data", "value", "data is not valid base64"))?;
                out.push(Content::Inline { index: i, media, bytes });
            }
            Some(_) => return Err(invalid(i, "data", "value", "data must be a base64 string")),
            None => {
                let size = a.get("size").and_then(Value::as_u64).filter(|s| *s > 0).ok_or_else(|| {
                    invalid(i, "size", "required", "an upload declares its size in bytes (no data, no url)")
                })?;
                if size > config.upload_max {
                    return Err(Error::TooLarge(format!("documents are limited to {} bytes", config.upload_max)));
                }
                let sha = sha256_ext(&Value::Object(a.clone())).map(str::to_owned);
                let sha = sha.filter(|s| B64.decode(s).is_ok_and(|d| d.len() == 32)).ok_or_else(|| {
                    invalid(
                        i,
                        "extension",
                        "required",
                        "an upload declares its SHA-256 (base64) in the attachment-sha256 extension",
                    )
                })?;
                out.push(Content::Upload { index: i, media, size, sha256: sha });
            }
        }
    }
    let uploads = out.iter().filter(|c| matches!(c, Content::Upload { .. })).count();
    if uploads > 1 || (uploads == 1 && out.len() > 1) {
        return Err(Error::Invalid(vec![Issue::error(
            "business-rule",
            "an uploaded document is the only content of its DocumentReference",
        )
        .at("DocumentReference.content")]));
    }
    Ok(out)
}

fn too_large_inline(config: &DocumentConfig) -> Error {
    Error::TooLarge(format!(
        "inline documents are limited to {} bytes; declare size and SHA-256 without data to get an upload URL",
        config.inline_max
    ))
}

/// A document's digests, base64, as FHIR (`hash`) and the extension record them.
pub struct Digests {
    pub sha1: String,
    pub sha256: String,
}

/// The checks every document's bytes pass, inline or uploaded: declared
/// size and hashes, bytes that are what the type says, the malware scan.
/// `i` locates the attachment in errors.
pub fn check_bytes(
    i: usize,
    attachment: &Value,
    media: &str,
    bytes: &[u8],
    scanner: &dyn MalwareScanner,
) -> Result<Digests> {
    let digests = Digests { sha1: sha1_b64(bytes), sha256: B64.encode(sha256(bytes)) };
    if attachment.get("size").is_some_and(|s| s.as_u64() != Some(bytes.len() as u64)) {
        return Err(invalid(i, "size", "value", "size does not match the content"));
    }
    if attachment.get("hash").is_some_and(|h| h.as_str() != Some(&digests.sha1)) {
        return Err(invalid(i, "hash", "value", "hash (SHA-1, base64) does not match the content"));
    }
    if sha256_ext(attachment).is_some_and(|h| h != digests.sha256) {
        return Err(invalid(i, "extension", "value", "the SHA-256 does not match the content"));
    }
    check_content(media, bytes, scanner, &at(i, "data"))?;
    Ok(digests)
}

/// A content type the deployment accepts (`MEDREC_DOCUMENT_TYPES`), for a
/// document's attachment or a Binary alike.
pub(crate) fn check_type(media: &str, config: &DocumentConfig) -> Result<()> {
    if config.allows(media) {
        return Ok(());
    }
    Err(Error::UnsupportedContent(format!(
        "content type not accepted here; accepted: {}",
        config.allowed_types.join(", ")
    )))
}

/// The checks any stored content passes, whatever describes it: bytes that
/// are what their type says, then the malware scan. `data` locates the
/// content in errors.
pub(crate) fn check_content(media: &str, bytes: &[u8], scanner: &dyn MalwareScanner, data: &str) -> Result<()> {
    if !content_matches(media, bytes) {
        return Err(Error::UnsupportedContent("the content is not what its contentType says".into()));
    }
    if let ScanVerdict::Infected(signature) = scanner.scan(bytes) {
        tracing::warn!(signature, "content refused by the malware scan");
        return Err(Error::Invalid(vec![Issue::error("security", "the content failed the malware scan").at(data)]));
    }
    Ok(())
}

/// An update may change a DocumentReference's metadata, not its content:
/// every Binary it points at must be one the current version points at, as
/// stored (url, type, size, hashes).
pub(crate) fn check_content_unchanged(before: &Value, after: &Value) -> Result<()> {
    let stored: Vec<&Value> =
        before["content"].as_array().map(|cs| cs.iter().map(|c| &c["attachment"]).collect()).unwrap_or_default();
    let fields = |a: &Value| {
        (
            a["url"].clone(),
            a["contentType"].clone(),
            a["size"].clone(),
            a["hash"].clone(),
            sha256_ext(a).map(str::to_owned),
        )
    };
    for (i, c) in after["content"].as_array().into_iter().flatten().enumerate() {
        let a = &c["attachment"];
        if a.get("data").is_some() {
            return Err(invalid(
                i,
                "data",
                "business-rule",
                "content is immutable: new content is a new DocumentReference that replaces this one",
            ));
        }
        let url = a["url"].as_str().unwrap_or_default();
        let external = url.starts_with("https://") || url.starts_with("http://");
        if !external && !stored.iter().any(|s| fields(s) == fields(a)) {
            return Err(invalid(
                i,
                "url",
                "business-rule",
                "an attachment must keep the stored content as it is (url, contentType, size, hash, SHA-256)",
            ));
        }
    }
    Ok(())
}

/// One `Range: bytes=` request, resolved against the document size.
pub fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Ok(None) };
    // Several ranges would need multipart/byteranges: serve the whole instead.
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Error::RangeNotSatisfiable(size))?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| Error::RangeNotSatisfiable(size));
    let (first, last) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (true, false) => (size.saturating_sub(num(b)?), size.saturating_sub(1)),
        (true, true) => return Err(Error::RangeNotSatisfiable(size)),
    };
    if size == 0 || first > last || first >= size {
        return Err(Error::RangeNotSatisfiable(size));
    }
    Ok(Some((first, last)))
}

/// A Binary's bytes, whole or a range (`Range: bytes=`), opened from the
/// blob store: every frame is authenticated before use, and a whole read
/// must also match the recorded size and SHA-256 (base64). Content that
/// fails either is refused (500), never served.
pub(crate) async fn open_content<B: BlobStore>(
    key: &DataKey,
    (patient, binary): (&str, &str),
    (size, sha256_b64): (u64, &str),
    range: Option<&str>,
    deps: &DocumentDeps<'_, B>,
) -> Result<(Vec<u8>, Option<(u64, u64)>)> {
    let range = range.map(|r| parse_range(r, size)).transpose()?.flatten();
    if range.is_none() && size > deps.config.inline_max as u64 {
        return Err(Error::TooLarge(format!(
            "documents above {} bytes are served in parts: send Range: bytes=first-last",
            deps.config.inline_max
        )));
    }
    if let Some((first, last)) = range {
        if last - first >= deps.config.inline_max as u64 {
            return Err(Error::TooLarge(format!("a range may span at most {} bytes", deps.config.inline_max)));
        }
    }
    let object = object_key(patient, binary);
    let dkey = document_key(key, &object);
    let layout = Layout { frame_size: framed::FRAME_SIZE, len: size };
    let integrity = |what: &str| {
        tracing::error!(what, "document failed its integrity check; refused");
        Error::Internal("document failed its integrity check".into())
    };
    let bytes = match range {
        None => {
            let sealed = deps.blobs.get(&object, None).await?.ok_or_else(|| integrity("object missing"))?;
            let plain = framed::open_document(&dkey, &object, &sealed).map_err(|_| integrity("authentication"))?;
            if plain.len() as u64 != size || B64.encode(sha256(&plain)) != sha256_b64 {
                return Err(integrity("sha-256"));
            }
            plain
        }
        Some((first, last)) => {
            // The header is not fetched: the expected one (frame size,
            // recorded length) is bound into every frame's AAD instead.
            let (frames, (from, to)) = layout.frames_for(first, last);
            let first_frame = *frames.start();
            let sealed = deps.blobs.get(&object, Some((from, to))).await?.ok_or_else(|| integrity("object missing"))?;
            let plain = framed::open_frames(&dkey, &object, layout, frames, &sealed)
                .map_err(|_| integrity("authentication"))?;
            let offset = (first - first_frame * framed::FRAME_SIZE as u64) as usize;
            plain[offset..offset + (last - first + 1) as usize].to_vec()
        }
    };
    Ok((bytes, range))
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    pub async fn create_document<B: BlobStore>(
        &self,
        caller: &Caller,
        mut resource: Value,
        deps: &DocumentDeps<'_, B>,
        audit: &mut AuditEntry,
    ) -> Result<Created> {
        if resource.get("id").is_some() {
            resource.as_object_mut().expect("resource is an object").remove("id");
        }
        let contents = take_contents(&mut resource, deps.config)?;
        if deps.uploads == Uploads::Refused && contents.iter().any(|c| matches!(c, Content::Upload { .. })) {
            return Err(Error::Invalid(vec![Issue::error(
                "not-supported",
                "a DocumentReference in a Bundle carries its content inline (attachment.data) or by external URL; \
                 uploads are promised by POST /fhir/DocumentReference alone",
            )
            .at("DocumentReference.content")]));
        }
        let new = self.prepare_create(caller, "DocumentReference", &resource, audit).await?;
        if let [Content::Upload { index, media, size, sha256 }] = contents.as_slice() {
            return self.promise_upload(caller, new, resource, (*index, media, *size, sha256), deps, audit).await;
        }
        for content in contents {
            let Content::Inline { index, media, bytes } = content else { continue };
            if bytes.len() > deps.config.inline_max {
                return Err(too_large_inline(deps.config));
            }
            let attachment = &mut resource["content"][index]["attachment"];
            let digests = check_bytes(index, attachment, &media, &bytes, deps.scanner)?;
            let binary = new_binary_id(&new.id);
            let sealed = seal_binary(&new.key, &new.patient, &binary, &bytes);
            store_object(deps.blobs, &object_key(&new.patient, &binary), sealed).await?;
            describe(attachment, &binary, bytes.len() as u64, digests);
        }
        // The objects are stored first: a committed DocumentReference never
        // points at missing bytes. A failed commit leaves sealed objects
        // that nothing references (unreadable without the record; the purge
        // sweeps them).
        Ok(Created::Stored(self.commit_new(new, resource, audit, vec![]).await?))
    }

    /// Reserves the DocumentReference id, stores what was promised (sealed
    /// like any record) and returns a presigned URL bound to those terms.
    async fn promise_upload<B: BlobStore>(
        &self,
        caller: &Caller,
        new: NewRecord,
        resource: Value,
        (index, media, size, sha): (usize, &str, u64, &str),
        deps: &DocumentDeps<'_, B>,
        audit: &mut AuditEntry,
    ) -> Result<Created> {
        let terms = UploadTerms {
            content_type: media.to_owned(),
            length: size,
            sha256: sha.to_owned(),
            expires_in: deps.config.upload_url_ttl,
        };
        let upload = deps.blobs.presign_upload(&new.id, &terms).await?;
        let now = time::OffsetDateTime::now_utc();
        let expires = crate::fhir::instant(now + deps.config.upload_url_ttl);
        let pending = json!({
            "documentReference": resource,
            "index": index,
            "contentType": media,
            "size": size,
            "sha256": sha,
            "requestedBy": caller.principal.subject,
            "requestedAt": crate::fhir::instant(now),
        });
        let ct = seal(&new.key, &resource_aad(&new.patient, PENDING, &new.id, 1), pending.to_string().as_bytes());
        audit.entities = vec![format!("DocumentReference/{}", new.id)];
        audit.status = 202;
        let write = ResourceWrite::first(&new.patient, PENDING, &new.id, &crate::fhir::instant(now), ct, vec![]);
        self.store.commit(write, audit, vec![]).await?;
        Ok(Created::Pending { id: new.id, upload, expires })
    }

    /// Checks an uploaded object against what was promised, seals it under
    /// the patient's key and makes the DocumentReference exist. Safe to run
    /// again for the same object: a redelivered event does nothing twice.
    /// Errors are transient (storage, keys): the event is retried.
    pub async fn ingest_upload<B: BlobStore>(&self, key: &str, deps: &DocumentDeps<'_, B>) -> Result<Ingested> {
        let id = key;
        let located = match crate::fhir::primitives::is_id(id) {
            true => self.store.locate(PENDING, id).await?,
            false => None,
        };
        let Some(patient) = located else {
            tracing::warn!("upload without a promise; discarded");
            deps.blobs.discard_upload(key).await?;
            return Ok(Ingested::Unknown);
        };
        if self.store.current(&patient, "DocumentReference", id).await?.is_some() {
            deps.blobs.discard_upload(key).await?;
            return Ok(Ingested::Duplicate);
        }
        let current = self.store.current(&patient, PENDING, id).await?.ok_or(Error::NotFound)?;
        let patient_key = self.patient_key(&patient).await?;
        let ct = current.ciphertext.ok_or_else(|| Error::Internal("pending upload without ciphertext".into()))?;
        let plain = open(&patient_key, &resource_aad(&patient, PENDING, id, current.version), &ct)
            .map_err(|_| Error::Internal("pending upload failed its integrity check".into()))?;
        let pending: Value = serde_json::from_slice(&plain).map_err(|_| Error::Internal("pending upload".into()))?;
        let (index, size) = (pending["index"].as_u64().unwrap_or(0) as usize, pending["size"].as_u64().unwrap_or(0));
        let media = pending["contentType"].as_str().unwrap_or_default().to_owned();
        let mut audit = self.draft(None, "create");
        audit.agent.subject = pending["requestedBy"].as_str().map(str::to_owned);
        audit.patient = Some(patient.clone());
        audit.entities = vec![format!("DocumentReference/{id}")];
        // One byte more than promised is enough to know it is too large.
        let Some(bytes) = deps.blobs.fetch_upload(key, size).await? else {
            return Ok(Ingested::Duplicate);
        };
        let mut resource = pending["documentReference"].clone();
        let checked = if bytes.len() as u64 != size {
            Err(invalid(index, "size", "value", "the upload's size differs from the declared size"))
        } else {
            check_bytes(index, &resource["content"][index]["attachment"], &media, &bytes, deps.scanner)
        };
        let digests = match checked {
            Ok(d) => d,
            Err(e) => {
                let status = e.status();
                self.audit_failure(audit, status, None, None).await;
                deps.blobs.discard_upload(key).await?;
                return Ok(Ingested::Rejected(e));
            }
        };
        let binary = upload_binary_id(id, current.version);
        let sealed = seal_binary(&patient_key, &patient, &binary, &bytes);
        deps.blobs.put(&object_key(&patient, &binary), sealed).await?;
        describe(&mut resource["content"][index]["attachment"], &binary, size, digests);
        let new = NewRecord {
            ty: "DocumentReference",
            event: "DocumentStored",
            patient,
            key: patient_key,
            new_wrapped_key: None,
            id: id.to_owned(),
            // The ingest answers no client.
            readable: false,
        };
        match self.commit_new(new, resource, &mut audit, vec![]).await {
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        deps.blobs.discard_upload(key).await?;
        Ok(Ingested::Stored(id.to_owned()))
    }

    /// `GET Binary/{id}`: authorized and consent-checked as a read of its
    /// DocumentReference; every frame is authenticated before use, and a
    /// whole download must also match the recorded SHA-256. A document that
    /// fails either is refused (500, audited), never served.
    pub async fn read_binary<B: BlobStore>(
        &self,
        caller: &Caller,
        binary: &str,
        range: Option<&str>,
        deps: &DocumentDeps<'_, B>,
        audit: &mut AuditEntry,
    ) -> Result<BinaryContent> {
        audit.entities = vec![format!("Binary/{binary}")];
        let Some(doc) = document_of_binary(binary) else {
            return self.read_standalone_binary(caller, binary, range, deps, audit).await;
        };
        let patient = self.store.locate("DocumentReference", doc).await?.ok_or(Error::NotFound)?;
        audit.patient = Some(patient.clone());
        self.check(caller, "DocumentReference", Action::Read, Some(&patient))?;
        let consents = self.consent_gate(caller, &patient, "DocumentReference").await?;
        let current = self.store.current(&patient, "DocumentReference", doc).await?.ok_or(Error::NotFound)?;
        if current.deleted {
            return Err(Error::Gone);
        }
        let key = self.patient_key(&patient).await?;
        let reference = self.decrypt_record(
            &key,
            &patient,
            "DocumentReference",
            doc,
            current.version,
            current.ciphertext.as_deref(),
        )?;
        // The content is the DocumentReference's: what its consent refuses, its bytes are too.
        self.consent_on(caller, &consents, super::consent_gate::Subject::read("DocumentReference", doc, &reference))?;
        let url = format!("Binary/{binary}");
        let attachment = reference["content"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["attachment"])
            .find(|a| a["url"] == url.as_str())
            .ok_or(Error::NotFound)?;
        let size = attachment["size"].as_u64().ok_or_else(|| Error::Internal("attachment without size".into()))?;
        let content_type = attachment["contentType"].as_str().unwrap_or("application/octet-stream").to_owned();
        let sha = sha256_ext(attachment).unwrap_or_default();
        let (bytes, range) = open_content(&key, (&patient, binary), (size, sha), range, deps).await?;
        audit.entities.push(format!("DocumentReference/{doc}/_history/{}", current.version));
        self.audit_read(caller, audit).await?;
        let security_context = format!("DocumentReference/{doc}");
        Ok(BinaryContent { content_type, security_context, bytes, size, range })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_ids_name_their_document_and_nothing_else_parses() {
        let doc = crate::crypto::random_id();
        for b in [new_binary_id(&doc), upload_binary_id(&doc, 1)] {
            assert_eq!(document_of_binary(&b), Some(doc.as_str()));
            assert!(b.len() <= 64);
        }
        assert_eq!(upload_binary_id(&doc, 1), upload_binary_id(&doc, 1), "a retried ingest writes the same object");
        assert_ne!(upload_binary_id(&doc, 1), upload_binary_id(&doc, 2));
        for bad in ["", "x", &doc, &format!("{doc}-"), &format!("{doc}-zz"), &format!("../{doc}-0123456789abcdef")] {
            assert_eq!(document_of_binary(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100).unwrap(), Some((95, 99)));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        for bad in ["bytes=100-", "bytes=5-1", "bytes=-", "bytes=a-b"] {
            assert!(matches!(parse_range(bad, 100), Err(Error::RangeNotSatisfiable(100))), "{bad}");
        }
    }

    #[test]
    fn updates_keep_content_as_stored() {
        let before = json!({"content": [{"attachment": {"url": "Binary/x", "contentType": "text/plain", "size": 3, "hash": "h",
            "extension": [{"url": SHA256_EXTENSION, "valueBase64Binary": "s"}]}}]});
        let mut after = before.clone();
        after["description"] = json!("new metadata");
        assert!(check_content_unchanged(&before, &after).is_ok());
        for (path, v) in [("size", json!(4)), ("url", json!("Binary/y")), ("data", json!("aGk="))] {
            let mut changed = before.clone();
            changed["content"][0]["attachment"][path] = v;
            assert!(check_content_unchanged(&before, &changed).is_err(), "{path}");
        }
        let mut ext = before.clone();
        ext["content"][0]["attachment"]["extension"][0]["valueBase64Binary"] = json!("t");
        assert!(check_content_unchanged(&before, &ext).is_err());
    }
}
