//! Audit exports for SIEMs: the AuditEvents of a time window as NDJSON, in
//! fixed-size chunks, each beside its OCSF (API Activity, class 6003)
//! rendering, and a manifest listing every chunk's SHA-256, chained to the
//! previous manifest and signed like a checkpoint. The chunking is a pure
//! function of the window's records, so an export resumed after a crash
//! rewrites the same chunks: no gap, no duplicate.

use crate::crypto::{hex, sha256};
use serde_json::{json, Value};

/// OCSF 1.x API Activity (class 6003) for one FHIR AuditEvent.
pub fn ocsf(e: &Value) -> Value {
    let activity = match e["action"].as_str() {
        Some("C") => (1, "Create"),
        Some("R") | Some("E") => (2, "Read"),
        Some("U") => (3, "Update"),
        Some("D") => (4, "Delete"),
        _ => (99, "Other"),
    };
    let status = match e["outcome"].as_str() {
        Some("0") => (1, "Success"),
        _ => (2, "Failure"),
    };
    let time = e["recorded"]
        .as_str()
        .and_then(crate::fhir::primitives::datetime_bounds)
        .map(|(t, _)| t.unix_timestamp() * 1000 + i64::from(t.millisecond()));
    let agent = &e["agent"][0];
    json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "activity_id": activity.0,
        "activity_name": activity.1,
        "type_uid": 600300 + activity.0,
        "severity_id": 1,
        "status_id": status.0,
        "status": status.1,
        "status_code": e["outcomeDesc"],
        "time": time,
        "metadata": {"version": "1.1.0", "uid": e["id"], "product": {"name": "medrec", "vendor_name": "medrec"}},
        "actor": {"user": {"uid": agent["who"]["identifier"]["value"]}},
        "src_endpoint": {"ip": agent["network"]["address"]},
        "api": {"operation": e["subtype"][0]["code"], "service": {"name": e["source"]["observer"]["display"]}},
        "resources": e["entity"].as_array().into_iter().flatten()
            .filter_map(|en| en["what"]["reference"].as_str())
            .map(|r| json!({"uid": r, "type": r.split('/').next()}))
            .collect::<Vec<_>>(),
        "unmapped": {"purposeOfEvent": e["purposeOfEvent"]},
    })
}

/// One chunk: its object keys, SHA-256s and record count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub fhir_key: String,
    pub fhir_sha256: String,
    pub ocsf_key: String,
    pub ocsf_sha256: String,
    pub records: usize,
}

/// The bytes of chunk `index` of `events` (already in export order):
/// (FHIR NDJSON, OCSF NDJSON, record count).
pub fn render_chunk(events: &[Value], index: usize, size: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let part = events.iter().skip(index * size).take(size);
    let (mut fhir, mut ocsf_lines, mut n) = (Vec::new(), Vec::new(), 0);
    for e in part {
        fhir.extend_from_slice(e.to_string().as_bytes());
        fhir.push(b'\n');
        ocsf_lines.extend_from_slice(ocsf(e).to_string().as_bytes());
        ocsf_lines.push(b'\n');
        n += 1;
    }
    (fhir, ocsf_lines, n)
}

pub fn digest(bytes: &[u8]) -> String {
    hex(&sha256(bytes))
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub export: String,
    pub since: String,
    pub until: String,
    pub chunks: Vec<Chunk>,
    /// SHA-256 (hex) of the previous manifest's body, if any.
    pub previous: Option<String>,
}

impl Manifest {
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a manifest serialises")
    }

    /// What is signed (RAW, ECDSA_SHA_256), as for checkpoints.
    pub fn statement(body: &str) -> String {
        format!("medrec-audit-export-v1\n{}", digest(body.as_bytes()))
    }
}

/// What verifying an export found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFinding {
    BadSignature,
    /// A chunk whose bytes are not what the manifest says (key named).
    Chunk(String),
}

/// Verifies a manifest's signature and every chunk it lists against the
/// bytes given by `fetch` (None: missing).
pub fn verify(
    public_key_spki: &[u8],
    manifest_body: &str,
    signature: &[u8],
    mut fetch: impl FnMut(&str) -> Option<Vec<u8>>,
) -> Result<Manifest, ExportFinding> {
    if !super::checkpoint::verify_statement(public_key_spki, &Manifest::statement(manifest_body), signature) {
        return Err(ExportFinding::BadSignature);
    }
    let m: Manifest = serde_json::from_str(manifest_body).map_err(|_| ExportFinding::BadSignature)?;
    for c in &m.chunks {
        for (key, sha) in [(&c.fhir_key, &c.fhir_sha256), (&c.ocsf_key, &c.ocsf_sha256)] {
            if fetch(key).map(|b| digest(&b)).as_ref() != Some(sha) {
                return Err(ExportFinding::Chunk(key.clone()));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Value {
        json!({"resourceType": "AuditEvent", "id": format!("e{i}"), "action": "R", "outcome": "0",
            "recorded": "2026-11-20T10:00:00.123Z", "outcomeDesc": "HTTP 200",
            "subtype": [{"code": "read"}], "source": {"observer": {"display": "PatientsFunction"}},
            "agent": [{"who": {"identifier": {"value": "dr"}}, "network": {"address": "203.0.113.1"}}],
            "entity": [{"what": {"reference": "Patient/p1"}}]})
    }

    #[test]
    fn ocsf_maps_the_activity_and_time() {
        let o = ocsf(&event(1));
        assert_eq!(
            (o["class_uid"].as_u64(), o["activity_id"].as_u64(), o["type_uid"].as_u64()),
            (Some(6003), Some(2), Some(600302))
        );
        assert_eq!(o["time"].as_i64(), Some(1_795_168_800_123));
        assert_eq!(o["actor"]["user"]["uid"], "dr");
        assert_eq!(o["resources"][0]["type"], "Patient");
    }

    #[test]
    fn chunks_partition_the_events_exactly() {
        let events: Vec<Value> = (0..7).map(event).collect();
        let lines: Vec<usize> = (0..3).map(|i| render_chunk(&events, i, 3).2).collect();
        assert_eq!(lines, [3, 3, 1]);
        assert_eq!(render_chunk(&events, 1, 3), render_chunk(&events, 1, 3), "deterministic");
    }
}
