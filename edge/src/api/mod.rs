//! The deployment's API surface in one place: every resource type with its
//! interactions and search parameters, and the routes beyond them. The
//! CapabilityStatement, the OpenAPI document and the answer to a method a
//! path does not serve are all generated from it, so none of them can claim
//! or forget what the others say. A test keeps it in step with the routes
//! `template.yaml` declares.

pub mod openapi;

use crate::fhir::capability::ResourceCapability;
use crate::service::{audit_search, patients};
use std::sync::LazyLock;

/// What every type of the resource table supports, its history (in one
/// compartment, `_since` for incremental sync) included.
const TABLE_INTERACTIONS: &[&str] =
    &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];

const SORT: &str = "One date, string, token, number or quantity parameter, - for descending.";

static RESOURCES: LazyLock<Vec<ResourceCapability>> = LazyLock::new(|| {
    let mut out = vec![];
    for def in crate::fhir::resources::served_types() {
        if def.name == "Patient" {
            let kind = |p| def.param(p).map_or("token", |p| p.kind.as_str());
            let mut params: Vec<_> =
                patients::search_params().map(|p| (p, kind(p), patients::documentation(p))).collect();
            params.push(("_sort", "special", SORT));
            out.push(ResourceCapability {
                resource_type: "Patient",
                interactions: TABLE_INTERACTIONS,
                search_params: params,
                operations: &[("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything")],
            });
            continue;
        }
        let mut params = vec![];
        if def.compartment.is_some() {
            params.push((
                "patient",
                "reference",
                "Patient/{id} or {id}: the compartment searched; required unless the token has a patient context.",
            ));
        }
        params.extend(
            def.all_params()
                .filter(|p| def.compartment.is_none() || p.name != "patient")
                .map(|p| (p.name.as_str(), p.kind.as_str(), crate::fhir::search_params::documentation(&p.kind))),
        );
        params.push(("_sort", "special", SORT));
        out.push(ResourceCapability {
            resource_type: def.name.as_str(),
            interactions: TABLE_INTERACTIONS,
            search_params: params,
            operations: &[],
        });
    }
    out.push(ResourceCapability {
        resource_type: "Binary",
        interactions: &["read", "create"],
        search_params: vec![],
        operations: &[],
    });
    out.push(ResourceCapability {
        resource_type: "AuditEvent",
        interactions: &["search-type"],
        search_params: audit_search::AUDIT_PARAMS.to_vec(),
        operations: &[],
    });
    out
});

/// Every resource type medrec serves: every row of the resource table
/// (the Patient, the compartment's and the directory's), and the audit trail.
pub fn resources() -> &'static [ResourceCapability] {
    &RESOURCES
}

/// One HTTP operation: method, path (OpenAPI template) and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: &'static str,
    pub path: String,
    /// The resource type it acts on, when there is one.
    pub resource_type: Option<&'static str>,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Capabilities,
    OpenApi,
    Health,
    Create,
    Search,
    SearchPost,
    ConditionalUpdate,
    ConditionalDelete,
    Read,
    Update,
    Patch,
    Delete,
    History,
    /// A type's history in one compartment.
    TypeHistory,
    /// Every type's history in one compartment.
    SystemHistory,
    /// A batch Bundle at the base URL.
    Batch,
    Vread,
    Everything,
    Disclosures,
    /// An auditor's finding on a break-glass access.
    Review,
    Binary,
    BinaryCreate,
    Validate,
    ValidateInstance,
}

impl Kind {
    /// Served without a token: nothing behind it is PHI.
    pub fn public(self) -> bool {
        matches!(self, Kind::Capabilities | Kind::OpenApi | Kind::Health)
    }
}

/// Every operation of the deployment, in a stable order.
pub fn operations() -> Vec<Operation> {
    let op = |method, path: &str, resource_type, kind| Operation { method, path: path.to_owned(), resource_type, kind };
    let mut ops = vec![
        op("GET", "/fhir/metadata", None, Kind::Capabilities),
        op("GET", "/openapi.json", None, Kind::OpenApi),
        op("GET", "/health", None, Kind::Health),
    ];
    for r in resources() {
        let ty = r.resource_type;
        // Content, not a resource's JSON: read as bytes, created either way.
        if ty == "Binary" {
            ops.push(op("POST", "/fhir/Binary", Some(ty), Kind::BinaryCreate));
            ops.push(op("GET", "/fhir/Binary/{id}", Some(ty), Kind::Binary));
            continue;
        }
        let has = |i: &str| r.interactions.contains(&i);
        let t = Some(ty);
        if has("create") {
            ops.push(op("POST", &format!("/fhir/{ty}"), t, Kind::Create));
        }
        if has("search-type") {
            ops.push(op("GET", &format!("/fhir/{ty}"), t, Kind::Search));
            ops.push(op("POST", &format!("/fhir/{ty}/_search"), t, Kind::SearchPost));
        }
        if has("update") {
            ops.push(op("PUT", &format!("/fhir/{ty}"), t, Kind::ConditionalUpdate));
            ops.push(op("PUT", &format!("/fhir/{ty}/{{id}}"), t, Kind::Update));
        }
        if has("delete") {
            ops.push(op("DELETE", &format!("/fhir/{ty}"), t, Kind::ConditionalDelete));
            ops.push(op("DELETE", &format!("/fhir/{ty}/{{id}}"), t, Kind::Delete));
        }
        if has("read") {
            ops.push(op("GET", &format!("/fhir/{ty}/{{id}}"), t, Kind::Read));
        }
        if has("patch") {
            ops.push(op("PATCH", &format!("/fhir/{ty}/{{id}}"), t, Kind::Patch));
        }
        if has("history-instance") {
            ops.push(op("GET", &format!("/fhir/{ty}/{{id}}/_history"), t, Kind::History));
        }
        if has("history-type") {
            ops.push(op("GET", &format!("/fhir/{ty}/_history"), t, Kind::TypeHistory));
        }
        if has("vread") {
            ops.push(op("GET", &format!("/fhir/{ty}/{{id}}/_history/{{vid}}"), t, Kind::Vread));
        }
        if r.operations.iter().any(|(name, _)| *name == "everything") {
            ops.push(op("GET", &format!("/fhir/{ty}/{{id}}/$everything"), t, Kind::Everything));
        }
    }
    ops.push(op("GET", "/fhir/_history", None, Kind::SystemHistory));
    ops.push(op("POST", "/fhir", None, Kind::Batch));
    ops.push(op("GET", "/fhir/Patient/{id}/$disclosures", Some("Patient"), Kind::Disclosures));
    ops.push(op("POST", "/fhir/AuditEvent/{id}/$review", Some("AuditEvent"), Kind::Review));
    ops.push(op("POST", "/fhir/{type}/$validate", None, Kind::Validate));
    ops.push(op("POST", "/fhir/{type}/{id}/$validate", None, Kind::ValidateInstance));
    ops
}

/// Whether a concrete path fits an OpenAPI path template (`{x}` matches one
/// non-empty segment that is not an operation).
pub fn path_matches(template: &str, path: &str) -> bool {
    // No id or type name starts with `$`: such a segment is an operation,
    // matched only by its own name (`PUT /fhir/Account/$validate` is not
    // an update of a record called `$validate`).
    crate::routing::fit(template, path).is_some_and(|params| params.iter().all(|(_, p)| !p.starts_with('$')))
}

/// The methods served on a concrete path, for the `Allow` header of a 405;
/// empty when no operation has that path. The most specific templates
/// decide (`/fhir/Patient/_search` is not `/fhir/Patient/{id}`).
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let ops = operations();
    let served = ops.iter().filter(|o| path_matches(&o.path, path)).map(|o| (o.method, o.path.as_str()));
    let mut methods: Vec<&'static str> =
        crate::routing::most_specific(served, path).into_iter().map(|(method, _)| method).collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// The error for a request no operation serves: a path served with other
/// methods (`PUT /fhir/metadata`, `POST /fhir/Observation/_history`) is a
/// 405 there, any other path is unknown.
pub fn not_served(path: &str) -> crate::error::Error {
    if allowed_methods(path).is_empty() {
        crate::error::Error::NotFound
    } else {
        crate::error::Error::MethodNotAllowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_methods_follow_the_operations() {
        assert_eq!(allowed_methods("/fhir/Patient"), ["DELETE", "GET", "POST", "PUT"]);
        assert_eq!(allowed_methods("/fhir/Observation/o1"), ["DELETE", "GET", "PATCH", "PUT"]);
        assert_eq!(allowed_methods("/fhir/AuditEvent"), ["GET"]);
        assert_eq!(allowed_methods("/fhir/Binary/b1"), ["GET"]);
        assert_eq!(allowed_methods("/fhir/Patient/_search"), ["POST"]);
        assert_eq!(allowed_methods("/fhir/Observation/_history"), ["GET"]);
        assert_eq!(allowed_methods("/fhir/Account/$validate"), ["POST"], "an operation is no record id");
        assert!(allowed_methods("/fhir/Observation/$nothing").is_empty());
        assert!(allowed_methods("/fhir/Nothing/here/at/all").is_empty());
        assert!(allowed_methods("/fhir/Patient/").is_empty(), "an empty id is no path");
    }

    #[test]
    fn every_operation_is_unique() {
        let ops = operations();
        for (i, a) in ops.iter().enumerate() {
            assert!(!ops[i + 1..].iter().any(|b| a.method == b.method && a.path == b.path), "{a:?} twice");
        }
    }
}
