//! The CapabilityStatement, built from what the functions declare so that it
//! cannot claim more than is implemented.

use serde_json::{json, Value};

/// What one resource type supports, declared by the function serving it.
#[derive(Clone)]
pub struct ResourceCapability {
    pub resource_type: &'static str,
    pub interactions: &'static [&'static str],
    /// (name, type, documentation)
    pub search_params: Vec<(&'static str, &'static str, &'static str)>,
    /// (name, OperationDefinition canonical)
    pub operations: &'static [(&'static str, &'static str)],
}

/// `$validate` is served for every R4 resource type by the validation
/// function, so it is declared once for the server; the profiles it knows
/// are listed in `rest.documentation`.
const VALIDATE: &str = "http://hl7.org/fhir/OperationDefinition/Resource-validate";

pub fn capability_statement(base_url: &str, resources: &[ResourceCapability]) -> Value {
    let profiles = super::validator::model().profile_urls().join(", ");
    let resources: Vec<Value> = resources
        .iter()
        .map(|r| {
            let has = |i: &str| r.interactions.contains(&i);
            // What the REST edge follows (`rest::results`): a record's link to
            // its patient, and on Patient every record linking to it.
            let links = super::clinical::patient_links().map(|(t, p)| format!("{t}:{p}"));
            let include: Vec<String> = links.clone().filter(|l| l.split(':').next() == Some(r.resource_type)).collect();
            let revinclude: Vec<String> = if r.resource_type == "Patient" { links.collect() } else { vec![] };
            let mut entry = json!({
                "type": r.resource_type,
                "interaction": r.interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": has("vread"),
                "updateCreate": false,
                // A conditional create searches first.
                "conditionalCreate": has("create") && has("search-type"),
                "conditionalRead": "not-supported",
                "conditionalUpdate": has("update"),
                "conditionalDelete": if has("delete") { "single" } else { "not-supported" },
            });
            // No empty arrays (ele-1).
            if !r.search_params.is_empty() {
                entry["searchParam"] = r
                    .search_params
                    .iter()
                    .map(|(name, ty, doc)| {
                        json!({
                            "name": name, "type": ty, "documentation": doc
                        })
                    })
                    .collect();
            }
            if !r.operations.is_empty() {
                entry["operation"] =
                    r.operations.iter().map(|(name, def)| json!({"name": name, "definition": def})).collect();
            }
            if !include.is_empty() {
                entry["searchInclude"] = json!(include);
            }
            if !revinclude.is_empty() {
                entry["searchRevInclude"] = json!(revinclude);
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "kind": "instance",
        "software": {"name": "medrec", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "medrec FHIR R4 server", "url": format!("{base_url}/fhir")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": format!("If-Match is honoured on update and patch (412 on a stale version; a deployment may require it, 428); without it the last writer wins. Patient search runs on keyed blind indexes: names start with the value (case- and accent-insensitive; :exact, :contains), identifiers, gender and birth dates match exactly; no range matching on Patient fields. Record searches name their patient (patient=) and match on the decrypted compartment. History (_history on an instance, a type or the server) covers one patient's compartment (patient=, or the token's patient context), with _since for incremental sync. Paging links carry encrypted, signed cursors bound to the caller. $validate (POST /fhir/{{type}}/$validate and /fhir/{{type}}/{{id}}/$validate, every R4 type) checks the base definitions, meta.profile and a `profile` parameter; known profiles: {profiles}."),
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "Bearer JWT (RS256/ES256) from the configured OpenID Connect issuer; roles from a configured claim narrowed by SMART v2 scopes; X-Purpose-Of-Use recorded on every access; ETREAT (break-glass) is read-only and needs X-Break-Glass-Reason-Code and a written X-Break-Glass-Reason; each use is alerted and queued for review. Consents are recorded by the consent authority roles only."
            },
            "resource": resources,
            "interaction": [
                {"code": "history-system", "documentation": "One patient's compartment: patient=Patient/{id} (or the token's patient context), _since, _count."},
                {"code": "batch", "documentation": "POST /fhir with a batch Bundle: each entry served as the same request alone (authorized, consent-checked, validated, audited), each with its own status; no links between entries. DocumentReference and Binary content comes inline; AuditEvent is not carried."},
                {"code": "transaction", "documentation": "POST /fhir with a transaction Bundle: urn:uuid/urn:oid links and conditional references resolved to server ids, entries run in R4 order as the same requests alone, then committed with every audit record in one atomic write, or nothing stored (the failing entry's status and outcome, located in the Bundle). Up to 1,000 entries of any kind (beyond one DynamoDB transaction through a journal and a commit marker); reads run on the committed state. DocumentReference and Binary content comes inline, stored with the transaction or not at all; AuditEvent is not carried."},
            ],
            "operation": [{"name": "validate", "definition": VALIDATE}],
        }],
    })
}
