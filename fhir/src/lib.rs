//! FHIR R4 as medrec reads and writes it: the validator generated from the
//! official definitions (with its FHIRPath engine and profiles), the JSON
//! forms medrec exchanges (OperationOutcome, Bundles, the
//! CapabilityStatement, search matching, `_summary`, JSON Patch) and the
//! per-type business rules that are pure functions of one resource.
//!
//! Owns: everything that can be decided from FHIR JSON alone. Must never
//! import the AWS SDK, HTTP or Lambda crates, nor `medrec-edge`: its
//! Cargo.toml lists none of them, so the compiler keeps it that way, and a
//! rule that needs stored state (a patient's birth date, their consents)
//! takes it as an argument from the service layer.

pub mod bundle;
pub mod bundle_request;
pub mod capability;
pub mod clinical;
pub mod cvx;
pub mod decimal;
mod embedded;
pub mod fhirpath;
pub mod json_patch;
pub mod outcome;
pub mod patient;
pub mod primitives;
pub mod profiles;
pub mod resources;
pub mod search;
pub mod search_params;
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

/// An HTTP date (RFC 9110 IMF-fixdate) for a FHIR instant, for
/// `Last-Modified`; None if `instant` is not one.
pub fn http_date(instant: &str) -> Option<String> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = time::OffsetDateTime::parse(instant, &time::format_description::well_known::Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    Some(format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    ))
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

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates_are_imf_fixdates_in_gmt() {
        assert_eq!(super::http_date("2026-12-03T17:51:17.846Z").as_deref(), Some("Thu, 03 Dec 2026 17:51:17 GMT"));
        assert_eq!(super::http_date("2024-02-29T23:30:00+02:00").as_deref(), Some("Thu, 29 Feb 2024 21:30:00 GMT"));
        assert_eq!(super::http_date("2026-12-03"), None);
    }
}
