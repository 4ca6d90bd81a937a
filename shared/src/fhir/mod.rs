//! FHIR R4 JSON: outcomes, bundles, the CapabilityStatement, the validator
//! generated from the official definitions (with its FHIRPath engine and
//! profiles) and the rules medrec adds per resource type.

pub mod bundle;
pub mod capability;
pub mod clinical;
pub mod cvx;
pub mod fhirpath;
pub mod json_patch;
pub mod outcome;
pub mod patient;
pub mod primitives;
pub mod profiles;
pub mod search;
pub mod subset;
pub mod ucum;
pub mod validator;

use serde_json::Value;

/// The content type medrec answers with.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// FHIR `instant` for now, to the millisecond, in UTC.
pub fn now_instant() -> String {
    instant(time::OffsetDateTime::now_utc())
}

pub fn instant(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Sets `id` and server-managed `meta` on a resource the server stores.
pub fn stamp(resource: &mut Value, id: &str, version: u64, last_updated: &str) {
    if let Some(obj) = resource.as_object_mut() {
        obj.insert("id".into(), Value::String(id.into()));
        let meta = obj.entry("meta").or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert("lastUpdated".into(), Value::String(last_updated.into()));
        }
    }
}
