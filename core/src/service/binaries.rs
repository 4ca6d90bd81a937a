//! Binary as a resource of its own (`POST /fhir/Binary`): content that no
//! DocumentReference describes (an image a DiagnosticReport presents, a
//! scanned form), placed by its `securityContext`: the record, or the
//! Patient, whose access decides the Binary's, and whose patient's key
//! seals it. The bytes pass the checks document content passes (accepted
//! type, bytes that are what the type says, the malware scan, the inline
//! size bound) and are sealed the same way; the Binary's record (type,
//! context, size, SHA-256, never the bytes) is committed with its audit
//! record. A Binary cannot be changed: new content is a new Binary.

use super::clinical::{served, NewRecord};
use super::consent_gate::Subject;
use super::documents::{
    check_content, check_type, object_key, open_content, seal_binary, store_object, BinaryContent, DocumentDeps,
};
use super::records::Stored;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::crypto::sha256;
use crate::documents::essence;
use crate::error::{Error, Result};
use crate::fhir::outcome::Issue;
use crate::ports::{BlobStore, KeyService, RecordStore};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// The record type of a standalone Binary: internal (the generic routes
/// and `$everything` do not serve it); `GET /fhir/Binary/{id}` does.
const BINARY: &str = "Binary";

/// What a client sends to create a Binary, from FHIR JSON or raw bytes.
pub struct NewBinary {
    pub content_type: String,
    /// `Type/id` of the record (or Patient) it belongs to.
    pub security_context: String,
    pub bytes: Vec<u8>,
}

impl NewBinary {
    /// From a FHIR Binary resource, valid by the R4 definitions:
    /// `contentType`, `securityContext`, base64 `data`.
    pub fn from_resource(resource: &Value) -> Result<Self> {
        let issues = super::validation::rules_for(BINARY, resource);
        if issues.iter().any(Issue::is_error) {
            return Err(Error::Invalid(issues));
        }
        let text = |name: &str| resource[name].as_str().filter(|s| !s.trim().is_empty());
        let content_type =
            text("contentType").ok_or_else(|| invalid("Binary.contentType", "required", "contentType is required"))?;
        let security_context = resource["securityContext"]["reference"].as_str().unwrap_or_default();
        let data = text("data").ok_or_else(|| invalid("Binary.data", "required", "a Binary carries its data"))?;
        let bytes = B64.decode(data).map_err(|_| invalid("Binary.data", "value", "data is not valid base64"))?;
        Ok(NewBinary { content_type: content_type.to_owned(), security_context: security_context.to_owned(), bytes })
    }
}

fn invalid(at: &str, code: &'static str, text: &str) -> Error {
    Error::Invalid(vec![Issue::error(code, text.to_owned()).at(at)])
}

/// `Type/id` of a resource medrec stores in a patient's compartment.
fn context_of(reference: &str) -> Result<(&'static str, &str)> {
    let refused = || {
        invalid(
            "Binary.securityContext",
            "value",
            "securityContext names the record (or Patient) the Binary belongs to, as Type/id",
        )
    };
    let (ty, id) = reference.split_once('/').ok_or_else(refused)?;
    let (ty, _) = served(ty).map_err(|_| refused())?;
    match crate::fhir::resources::directory_type(ty).is_none() && crate::fhir::primitives::is_id(id) {
        true => Ok((ty, id)),
        false => Err(refused()),
    }
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// Stores a Binary in its context's compartment. The caller must be
    /// allowed to create a Binary there and to read the context (what they
    /// attach to, they see); the patient's consents decide the write.
    pub async fn create_binary<B: BlobStore>(
        &self,
        caller: &Caller,
        new: NewBinary,
        deps: &DocumentDeps<'_, B>,
        audit: &mut AuditEntry,
    ) -> Result<Stored> {
        let (ctx_ty, ctx_id) = context_of(&new.security_context)?;
        let patient = match self.compartment_of_record(ctx_ty, ctx_id).await {
            Err(Error::NotFound) => {
                return Err(invalid("Binary.securityContext", "not-found", "the securityContext does not exist"))
            }
            other => other?,
        };
        audit.patient = Some(patient.clone());
        self.check(caller, BINARY, Action::Create, Some(&patient))?;
        self.check(caller, ctx_ty, Action::Read, Some(&patient))?;
        let id = super::staging::new_id();
        let media = essence(&new.content_type);
        let record = json!({
            "resourceType": BINARY,
            "contentType": new.content_type,
            "securityContext": {"reference": format!("{ctx_ty}/{ctx_id}")},
            "size": new.bytes.len(),
            "sha256": B64.encode(sha256(&new.bytes)),
        });
        let consents = self.write_gate(caller, &patient, BINARY, &id, (None, Some(&record))).await?;
        self.consent_before(caller, &consents, ctx_ty)?;
        let context = match self.current_record(ctx_ty, &patient, ctx_id).await {
            Err(Error::NotFound | Error::Gone) => {
                return Err(invalid("Binary.securityContext", "not-found", "the securityContext does not exist"))
            }
            other => other?.1,
        };
        self.consent_on(caller, &consents, Subject::read(ctx_ty, ctx_id, &context))?;
        check_type(&media, deps.config)?;
        if new.bytes.len() > deps.config.inline_max {
            return Err(Error::TooLarge(format!(
                "a Binary holds at most {} bytes; larger content is a DocumentReference upload",
                deps.config.inline_max
            )));
        }
        check_content(&media, &new.bytes, deps.scanner, "Binary.data")?;
        let key = self.patient_key(&patient).await?;
        // The object first: a committed Binary never points at missing bytes.
        let sealed = seal_binary(&key, &patient, &id, &new.bytes);
        store_object(deps.blobs, &object_key(&patient, &id), sealed).await?;
        let readable = self.may_read(caller, &consents, &patient, Subject::read(ctx_ty, ctx_id, &context));
        let new_record =
            NewRecord { ty: BINARY, event: "ResourceCreated", patient, key, new_wrapped_key: None, id, readable };
        let stored = self.commit_new(new_record, record, audit, vec![]).await?;
        Ok(Stored { resource: served_form(&stored.resource, &new.bytes), ..stored })
    }

    /// `GET Binary/{id}` of a standalone Binary: authorized and
    /// consent-checked as a read of its securityContext, which must still
    /// exist (a Binary goes with its record).
    pub(crate) async fn read_standalone_binary<B: BlobStore>(
        &self,
        caller: &Caller,
        id: &str,
        range: Option<&str>,
        deps: &DocumentDeps<'_, B>,
        audit: &mut AuditEntry,
    ) -> Result<BinaryContent> {
        if !crate::fhir::primitives::is_id(id) {
            return Err(Error::NotFound);
        }
        let patient = self.store.locate(BINARY, id).await?.ok_or(Error::NotFound)?;
        audit.patient = Some(patient.clone());
        self.check(caller, BINARY, Action::Read, Some(&patient))?;
        let (current, record) = self.current_record(BINARY, &patient, id).await?;
        let reference = record["securityContext"]["reference"].as_str().unwrap_or_default().to_owned();
        let (ctx_ty, ctx_id) =
            context_of(&reference).map_err(|_| Error::Internal("a Binary without its context".into()))?;
        self.check(caller, ctx_ty, Action::Read, Some(&patient))?;
        let consents = self.consent_gate(caller, &patient, ctx_ty).await?;
        let (context_version, context) = self.current_record(ctx_ty, &patient, ctx_id).await?;
        self.consent_on(caller, &consents, Subject::read(ctx_ty, ctx_id, &context))?;
        let size = record["size"].as_u64().ok_or_else(|| Error::Internal("a Binary without its size".into()))?;
        let sha = record["sha256"].as_str().unwrap_or_default();
        let key = self.patient_key(&patient).await?;
        let (bytes, range) = open_content(&key, (&patient, id), (size, sha), range, deps).await?;
        audit.entities = vec![
            format!("{BINARY}/{id}/_history/{}", current.version),
            format!("{reference}/_history/{}", context_version.version),
        ];
        self.audit_read(caller, audit).await?;
        let content_type = record["contentType"].as_str().unwrap_or("application/octet-stream").to_owned();
        Ok(BinaryContent { content_type, security_context: reference, bytes, size, range })
    }
}

/// A Binary as FHIR has it: its record without the size and hash medrec
/// keeps beside it, with its data.
fn served_form(record: &Value, bytes: &[u8]) -> Value {
    let mut out = record.clone();
    if let Some(o) = out.as_object_mut() {
        o.remove("size");
        o.remove("sha256");
        o.insert("data".into(), json!(B64.encode(bytes)));
    }
    out
}
