//! The bounds on one request's work that the use cases enforce; each is a
//! setting the edge reads and validates at cold start.

/// Upper bound on request bodies, and the default. DynamoDB items are
/// limited to 400 KB and the current item carries the latest ciphertext plus
/// metadata, so bodies above 256 KiB could not be stored whole. Real records
/// come near it: a Synthea Provenance naming a patient's whole record is
/// 80 KiB, HL7's examples with embedded images exceed 64 KiB.
pub const MAX_BODY_LIMIT: usize = 256 * 1024;

/// Bounds on the work of one request, each a setting (`MEDREC_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MEDREC_SEARCH_MAX_VALUES`: comma-separated values of one search parameter.
    pub search_values: usize,
    /// `MEDREC_SEARCH_SCAN_PER_PAGE`: candidates a Patient search page examines.
    pub search_scan: usize,
    /// `MEDREC_SEARCH_CONSENT_LOOKUPS`: patients' consents one search page reads.
    pub consent_lookups: usize,
    /// `MEDREC_PATCH_MAX_OPERATIONS`: operations in one JSON Patch.
    pub patch_operations: usize,
    /// `MEDREC_PATCH_MAX_BYTES`: the patched document, during and after.
    pub patch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            search_values: 10,
            search_scan: 500,
            consent_lookups: 200,
            patch_operations: 100,
            patch_bytes: MAX_BODY_LIMIT,
        }
    }
}
