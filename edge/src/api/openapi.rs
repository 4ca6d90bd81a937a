//! The OpenAPI 3 document of the whole API, generated from the operations
//! in `api` (the source the CapabilityStatement is built from), for client
//! generators and contract testing (schemathesis runs it in CI).
//!
//! Request schemas state what JSON Schema can state of FHIR R4: the
//! elements medrec accepts on each type with their primitive patterns and
//! required bindings, closed to unknown elements as the validator is.
//! What it cannot state (a referenced patient must exist, a dose cannot
//! precede the birth, a body's id must match the URL, a vital sign's unit)
//! the server answers with 400/412/422 and an OperationOutcome.

use super::{operations, resources, Kind, Operation};
use crate::config::Limits;
use crate::fhir::patient::GENDERS;
use crate::service::records::MAX_PAGE;
use serde_json::{json, Map, Value};

/// FHIR R4 `id`.
const ID: &str = "^[A-Za-z0-9\\-\\.]{1,64}$";
/// A year of FHIR R4 `date` (0001 to 9999).
const YEAR: &str = "([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)";
/// FHIR R4 `date` that is a real calendar date (29 February in leap years only).
fn date_pattern(prefix: &str) -> String {
    let day = "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))";
    // A century year leaps when its first two digits divide by 4; 0000 is no FHIR year.
    let leap = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29";
    format!("^{prefix}({YEAR}(-(0[1-9]|1[0-2]))?|{YEAR}-{day}|{leap})$")
}
/// A past full date (the clinical rules refuse future events).
const PAST_DAY: &str = "^(19[0-9]{2}|20[01][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$";
/// FHIR R4 `code`: no leading, trailing or doubled whitespace (XML Schema
/// whitespace: space, tab, CR, LF).
const CODE: &str = "^[^ \\t\\r\\n]+([ \\t\\r\\n][^ \\t\\r\\n]+)*$";
/// FHIR R4 `uri`.
const URI: &str = "^[^ \\t\\r\\n]+$";
/// A patient reference in a search.
/// An instant the server parses (days to 28, so every generated one exists).
const INSTANT: &str = "^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$";
const PATIENT_REF: &str = "^(Patient/)?[A-Za-z0-9\\-\\.]{1,64}$";

/// FHIR `string`: any non-empty text.
fn string() -> Value {
    json!({"type": "string", "minLength": 1})
}

fn coding(system: Option<&str>, codes: Option<&[&str]>) -> Value {
    let system = match system {
        Some(s) => json!({"type": "string", "enum": [s]}),
        None => json!({"type": "string", "pattern": URI}),
    };
    let code = match codes {
        Some(c) => json!({"type": "string", "enum": c}),
        None => json!({"type": "string", "pattern": CODE}),
    };
    json!({"type": "object", "additionalProperties": false, "required": ["system", "code"],
        "properties": {"system": system, "code": code, "display": string()}})
}

fn concept(system: Option<&str>, codes: Option<&[&str]>) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["coding"],
        "properties": {"coding": {"type": "array", "minItems": 1, "items": coding(system, codes)},
            "text": string()}})
}

fn patient_reference() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["reference"],
        "properties": {"reference": {"type": "string", "pattern": "^Patient/[A-Za-z0-9\\-\\.]{1,64}$"}}})
}

fn closed(ty: &str, required: &[&str], mut properties: Map<String, Value>) -> Value {
    properties.insert("resourceType".into(), json!({"type": "string", "enum": [ty]}));
    properties.insert("id".into(), json!({"type": "string", "pattern": ID}));
    let mut req = vec!["resourceType"];
    req.extend_from_slice(required);
    json!({"type": "object", "additionalProperties": false, "required": req, "properties": properties})
}

fn props(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The request body schema of each writable type.
fn resource_schema(ty: &str) -> Value {
    match ty {
        "Patient" => closed(
            ty,
            &[],
            props(json!({
                "active": {"type": "boolean"},
                "name": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": false, "minProperties": 1,
                    "properties": {
                        "use": {"type": "string", "enum": ["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"]},
                        "family": string(),
                        "given": {"type": "array", "minItems": 1, "items": string()}}}},
                "gender": {"type": "string", "enum": GENDERS},
                "birthDate": {"type": "string", "pattern": date_pattern("")},
                "identifier": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": false, "minProperties": 1,
                    "properties": {"system": {"type": "string", "pattern": URI}, "value": string()}}}
            })),
        ),
        "Immunization" => closed(
            ty,
            &["status", "vaccineCode", "patient", "occurrenceDateTime"],
            props(json!({
                "status": {"type": "string", "enum": ["completed", "entered-in-error", "not-done"]},
                "vaccineCode": concept(Some("http://hl7.org/fhir/sid/cvx"), Some(&["08", "20", "140", "141", "208", "213"])),
                "patient": patient_reference(),
                "occurrenceDateTime": {"type": "string", "pattern": PAST_DAY},
                "primarySource": {"type": "boolean"},
                "lotNumber": string()
            })),
        ),
        "Observation" => closed(
            ty,
            &["status", "code", "subject"],
            props(json!({
                "status": {"type": "string", "enum": ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"]},
                "code": concept(None, None),
                "subject": patient_reference(),
                "effectiveDateTime": {"type": "string", "pattern": PAST_DAY},
                "valueString": string()
            })),
        ),
        "Consent" => closed(
            ty,
            &["status", "scope", "category", "patient", "policyRule"],
            props(json!({
                "status": {"type": "string", "enum": ["draft", "proposed", "active", "rejected", "inactive", "entered-in-error"]},
                "scope": concept(Some("http://terminology.hl7.org/CodeSystem/consentscope"), Some(&["patient-privacy"])),
                "category": {"type": "array", "minItems": 1, "maxItems": 1,
                    "items": concept(Some("http://loinc.org"), Some(&["59284-0"]))},
                "patient": patient_reference(),
                "dateTime": {"type": "string", "pattern": PAST_DAY},
                "policyRule": concept(Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"), Some(&["OPTIN", "OPTOUT"]))
            })),
        ),
        // A Binary of plain text on a patient (the raw form, bytes with
        // their content type and X-Security-Context, is not JSON to state).
        "Binary" => closed(
            ty,
            &["contentType", "securityContext", "data"],
            props(json!({
                "contentType": {"type": "string", "enum": ["text/plain"]},
                "securityContext": patient_reference(),
                "data": {"type": "string", "enum": ["aGVsbG8=", "Y2xpbmljYWwgbm90ZQ=="]}
            })),
        ),
        "DocumentReference" => closed(
            ty,
            &["status", "subject", "content"],
            props(json!({
                "status": {"type": "string", "enum": ["current"]},
                "subject": patient_reference(),
                "content": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                    "type": "object", "additionalProperties": false, "required": ["attachment"],
                    "properties": {"attachment": {
                        "type": "object", "additionalProperties": false, "required": ["contentType", "data"],
                        "properties": {
                            "contentType": {"type": "string", "enum": ["text/plain"]},
                            // Base64 of plain text: the content is checked against its type.
                            "data": {"type": "string", "enum": ["aGVsbG8=", "Y2xpbmljYWwgbm90ZQ=="]}}}}}}
            })),
        ),
        // Every other record type: its R4 definition (the validator's),
        // placed in a patient's compartment by its compartment element.
        ty if crate::fhir::resources::compartment_type(ty).is_some() => {
            let element =
                crate::fhir::resources::compartment_type(ty).and_then(|d| d.compartment.as_deref()).unwrap_or_default();
            // In a backbone list (Appointment.participant.actor): one item names the Patient.
            let (outer, schema) = match element.split_once('.') {
                Some((outer, inner)) => (
                    outer,
                    json!({"type": "array", "minItems": 1, "items": {"type": "object",
                    "required": [inner], "properties": {inner: patient_reference()}}}),
                ),
                None => (element, patient_reference()),
            };
            json!({"type": "object", "required": ["resourceType", outer],
                "properties": {"resourceType": {"type": "string", "enum": [ty]}, outer: schema}})
        }
        // A directory resource: its R4 definition, in no compartment.
        ty if crate::fhir::resources::directory_type(ty).is_some() => {
            json!({"type": "object", "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string", "enum": [ty]}}})
        }
        // $validate takes any resource; a Parameters body (resource and
        // profile as parameters) is described by the operation's text.
        _ => json!({"type": "object", "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string",
                "enum": crate::fhir::validator::model().resource_types().into_iter().filter(|t| *t != "Parameters").collect::<Vec<_>>()}}}),
    }
}

/// A search parameter's schema by its FHIR type: only values the server
/// parses, so a well-formed search is never refused.
/// A search parameter's schema; `values` bounds how many comma-separated
/// values a token or string parameter takes (`MEDREC_SEARCH_MAX_VALUES`).
fn search_param_schema(name: &str, ty: &str, values: usize) -> Value {
    match (name, ty) {
        // More than a page holds is served as a full page (and said so).
        ("_count", _) => json!({"type": "integer", "minimum": 1,
            "description": format!("Page size; above {MAX_PAGE}, pages hold {MAX_PAGE}.")}),
        ("_id", _) => json!({"type": "string", "pattern": ID}),
        ("_sort", _) => json!({"type": "string", "enum": ["date", "-date", "_lastUpdated", "-_lastUpdated"]}),
        ("birthdate", _) => json!({"type": "string", "pattern": date_pattern("")}),
        ("patient", "reference") => json!({"type": "string", "pattern": PATIENT_REF}),
        (_, "reference") => json!({"type": "string",
            "pattern": "^(([A-Z][A-Za-z]+/)?[A-Za-z0-9\\-\\.]{1,64}|https?://[!-+\\--~]+)$"}),
        (_, "number") => json!({"type": "string",
            "pattern": "^(eq|ne|gt|lt|ge|le)?-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?$"}),
        (_, "date") => json!({"type": "string", "pattern": date_pattern("(eq|gt|lt|ge|le)?")}),
        (_, "quantity") => json!({"type": "string",
            "pattern": "^(eq|ne|gt|lt|ge|le)?-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?(\\|[^|]*\\|[^|]*)?$"}),
        // Tokens and strings are matched as given (trimmed): values with
        // more than whitespace, several separated by commas (any matches).
        _ => json!({"type": "string",
            "pattern": format!("^[^,]*[^,\\s][^,]*(,[^,]*[^,\\s][^,]*){{0,{}}}$", values.saturating_sub(1))}),
    }
}

/// A Patient identifier search: its value after `system|` is not empty
/// (the blind index holds system|value pairs; on a record, `system|` is any
/// value in that system, as R4 says).
fn patient_identifier_schema(values: usize) -> Value {
    json!({"type": "string",
        "pattern": format!("^[^,]*[^,\\s|]\\s*(,[^,]*[^,\\s|]\\s*){{0,{}}}$", values.saturating_sub(1))})
}

fn outcome_ref() -> Value {
    json!({"$ref": "#/components/schemas/OperationOutcome"})
}

fn fhir(schema: Value) -> Value {
    json!({"application/fhir+json": {"schema": schema}})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": fhir(outcome_ref())})
}

fn path_param(name: &str) -> Value {
    let schema = match name {
        "vid" => json!({"type": "integer", "minimum": 1, "maximum": 1_000_000}),
        "type" => json!({"$ref": "#/components/schemas/ResourceType"}),
        _ => json!({"type": "string", "pattern": ID}),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn if_match(required: bool) -> Value {
    // Where it is optional, an empty field is the same as none (RFC 9110 §5.5).
    let pattern = if required { "^(W/)?\"[1-9][0-9]{0,18}\"$" } else { "^((W/)?\"[1-9][0-9]{0,18}\")?$" };
    json!({"name": "If-Match", "in": "header", "required": required,
        "description": "The version the client last read (W/\"n\"): a write over a newer version is refused (412).",
        "schema": {"type": "string", "pattern": pattern}})
}

/// The parameters, body and responses of one operation.
fn operation(o: &Operation, limits: &Limits, require_if_match: bool) -> Value {
    let ty = o.resource_type.unwrap_or("Resource");
    let resource = json!({"$ref": format!("#/components/schemas/{ty}Response")});
    let bundle = json!({"$ref": "#/components/schemas/Bundle"});
    let search_params = || -> Vec<Value> {
        let cap = resources().iter().find(|r| Some(r.resource_type) == o.resource_type);
        let mut params: Vec<Value> = cap
            .map(|c| c.search_params.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|(name, pty, doc)| {
                // A clinical search names its patient (minimum necessary); an
                // audit search names a patient or an agent.
                let required =
                    *name == "patient" && o.resource_type.and_then(crate::fhir::resources::compartment_type).is_some();
                let mut schema = match (*name, o.resource_type) {
                    // Patient search checks its gender values; elsewhere `gender` is a token.
                    ("gender", Some("Patient")) => json!({"type": "string", "enum": GENDERS}),
                    ("identifier", Some("Patient")) => patient_identifier_schema(limits.search_values),
                    _ => search_param_schema(name, pty, limits.search_values),
                };
                // A record type sorts on its own parameters.
                if let Some(def) = o.resource_type.and_then(crate::fhir::resources::served_type) {
                    if *name == "_sort" {
                        let keys: Vec<String> =
                            def.sortable_params().flat_map(|p| [p.name.clone(), format!("-{}", p.name)]).collect();
                        schema = json!({"type": "string", "enum": keys});
                    }
                }
                json!({"name": name, "in": "query", "required": required, "description": doc, "schema": schema})
            })
            .collect();
        if !params.iter().any(|p| p["name"] == "_count") {
            // A resource search also takes 0: the count alone (R4 search.html#count).
            let mut schema = search_param_schema("_count", "number", 1);
            schema["minimum"] = json!(0);
            schema["description"] =
                json!(format!("Page size; above {MAX_PAGE}, pages hold {MAX_PAGE}; 0 asks for the count alone."));
            params.push(json!({"name": "_count", "in": "query", "required": false, "schema": schema}));
        }
        params
    };
    let id_params = || {
        let mut p = vec![path_param("id")];
        if o.path.contains("{vid}") {
            p.push(path_param("vid"));
        }
        p
    };
    let body = |schema: Value, media: &str| json!({"required": true, "content": {media: {"schema": schema}}});
    let body_schema = json!({"$ref": format!("#/components/schemas/{ty}")});
    let mut responses = Map::new();
    let mut parameters: Vec<Value> = vec![];
    let mut request_body = Value::Null;
    let (summary, operation_id): (String, String) = match o.kind {
        Kind::Capabilities => {
            responses.insert("200".into(), json!({"description": "The CapabilityStatement", "content": fhir(json!({"$ref": "#/components/schemas/Resource"}))}));
            ("The server's CapabilityStatement".into(), "capabilities".into())
        }
        Kind::OpenApi => {
            responses.insert("200".into(), json!({"description": "This document", "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}}));
            ("This OpenAPI document".into(), "openapi".into())
        }
        Kind::Health => {
            let health = json!({"$ref": "#/components/schemas/Health"});
            responses.insert("200".into(), json!({"description": "Every dependency answers", "content": {"application/health+json": {"schema": health}}}));
            responses.insert("503".into(), json!({"description": "A dependency fails", "content": {"application/health+json": {"schema": health}}}));
            ("Pass or fail per dependency, nothing else".into(), "health".into())
        }
        Kind::Create => {
            request_body = body(body_schema, "application/fhir+json");
            responses.insert(
                "201".into(),
                json!({"description": "Created", "content": fhir(resource.clone()),
                "links": links(ty)}),
            );
            responses.insert(
                "200".into(),
                json!({"description": "Conditional create: the existing match", "content": fhir(resource.clone())}),
            );
            if ty == "DocumentReference" {
                responses.insert("202".into(), json!({"description": "Accepted: upload the content to the presigned URL", "content": fhir(json!({"type": "object"}))}));
            }
            for (s, d) in [
                ("412", "Conditional create matched several"),
                ("413", "Body too large"),
                ("415", "Not FHIR JSON"),
                ("422", "Not valid for this server (OperationOutcome says where)"),
            ] {
                responses.insert(s.into(), error(d));
            }
            (format!("Create a {ty}"), format!("create{ty}"))
        }
        Kind::Search | Kind::SearchPost => {
            if o.kind == Kind::Search {
                parameters = search_params();
            } else {
                let mut props = Map::new();
                let mut required = vec![];
                for p in search_params() {
                    if p["required"] == true {
                        required.push(p["name"].clone());
                    }
                    // A form carries text: `_count` as digits (one not 0 unless 0 is allowed).
                    let schema = match p["schema"]["type"].as_str() {
                        Some("integer") if p["schema"]["minimum"] == 0 => {
                            json!({"type": "string", "pattern": "^[0-9]+$"})
                        }
                        Some("integer") => json!({"type": "string", "pattern": "^[0-9]*[1-9][0-9]*$"}),
                        _ => p["schema"].clone(),
                    };
                    props.insert(p["name"].as_str().unwrap_or_default().to_owned(), schema);
                }
                let mut form = json!({"type": "object", "additionalProperties": false, "properties": props});
                if !required.is_empty() {
                    form["required"] = json!(required);
                }
                request_body = body(form, "application/x-www-form-urlencoded");
            }
            responses
                .insert("200".into(), json!({"description": "A searchset Bundle", "content": fhir(bundle.clone())}));
            if o.kind == Kind::SearchPost {
                responses.insert("415".into(), error("Not form-encoded"));
            }
            (format!("Search {ty}"), format!("search{ty}{}", if o.kind == Kind::SearchPost { "Post" } else { "" }))
        }
        Kind::ConditionalUpdate | Kind::ConditionalDelete => {
            parameters =
                search_params().into_iter().filter(|p| p["name"] != "_count" && p["name"] != "_sort").collect();
            if o.kind == Kind::ConditionalUpdate {
                parameters.push(if_match(false));
                request_body = body(body_schema, "application/fhir+json");
                responses.insert("200".into(), json!({"description": "Updated", "content": fhir(resource.clone())}));
                responses.insert("201".into(), json!({"description": "Created", "content": fhir(resource.clone())}));
                for (s, d) in [
                    ("413", "Body too large"),
                    ("415", "Not FHIR JSON"),
                    ("422", "Not valid for this server"),
                    ("428", "If-Match required"),
                ] {
                    responses.insert(s.into(), error(d));
                }
            } else {
                responses.insert("204".into(), json!({"description": "Deleted (or nothing matched)"}));
            }
            responses.insert("412".into(), error("Several resources matched, or the version changed"));
            (
                format!("Conditional {} of {ty}", if o.kind == Kind::ConditionalUpdate { "update" } else { "delete" }),
                format!("conditional{}{ty}", if o.kind == Kind::ConditionalUpdate { "Update" } else { "Delete" }),
            )
        }
        Kind::Read | Kind::Vread => {
            parameters = id_params();
            responses.insert("200".into(), json!({"description": "The resource", "content": fhir(resource.clone())}));
            responses.insert("410".into(), error("Deleted"));
            (
                format!("Read a {ty}{}", if o.kind == Kind::Vread { " version" } else { "" }),
                format!("{}{ty}", if o.kind == Kind::Vread { "vread" } else { "read" }),
            )
        }
        Kind::Update | Kind::Patch => {
            parameters = id_params();
            parameters.push(if_match(require_if_match));
            request_body = if o.kind == Kind::Update {
                body(body_schema, "application/fhir+json")
            } else {
                body(json!({"$ref": "#/components/schemas/JsonPatch"}), "application/json-patch+json")
            };
            responses.insert("200".into(), json!({"description": "Updated", "content": fhir(resource.clone())}));
            for (s, d) in [
                ("410", "Deleted"),
                ("412", "The version changed"),
                ("413", "Body too large"),
                ("415", "Wrong media type"),
                ("422", "Not valid for this server"),
            ] {
                responses.insert(s.into(), error(d));
            }
            if require_if_match {
                responses.insert("428".into(), error("If-Match required"));
            }
            (
                format!("{} a {ty}", if o.kind == Kind::Update { "Update" } else { "Patch" }),
                format!("{}{ty}", if o.kind == Kind::Update { "update" } else { "patch" }),
            )
        }
        Kind::Delete => {
            parameters = id_params();
            parameters.push(if_match(false));
            responses.insert("204".into(), json!({"description": "Deleted"}));
            responses.insert("412".into(), error("The version changed"));
            (format!("Delete a {ty}"), format!("delete{ty}"))
        }
        Kind::History => {
            parameters = id_params();
            parameters.push(json!({"name": "_count", "in": "query", "required": false, "schema": search_param_schema("_count", "number", 1)}));
            responses.insert("200".into(), json!({"description": "A history Bundle", "content": fhir(bundle.clone())}));
            responses.insert("410".into(), error("Deleted"));
            (format!("History of a {ty}"), format!("history{ty}"))
        }
        Kind::TypeHistory | Kind::SystemHistory => {
            let per_patient = o.resource_type.is_none_or(|t| crate::fhir::resources::directory_type(t).is_none());
            if per_patient {
                parameters.push(json!({"name": "patient", "in": "query", "required": true,
                    "description": "Patient/{id} or {id}: the compartment whose history this is.",
                    "schema": search_param_schema("patient", "reference", 1)}));
            }
            parameters.push(json!({"name": "_since", "in": "query", "required": false,
                "description": "Only versions recorded at or after this instant.",
                "schema": {"type": "string", "pattern": INSTANT}}));
            parameters.push(json!({"name": "_count", "in": "query", "required": false, "schema": search_param_schema("_count", "number", 1)}));
            responses.insert(
                "200".into(),
                json!({"description": "A history Bundle, newest first", "content": fhir(bundle.clone())}),
            );
            match o.resource_type {
                Some(ty) => (format!("History of every {ty} in a compartment"), format!("typeHistory{ty}")),
                None => ("History of every record in a patient's compartment".into(), "systemHistory".into()),
            }
        }
        Kind::Everything => {
            parameters = id_params();
            responses.insert(
                "200".into(),
                json!({"description": "The patient's compartment", "content": fhir(bundle.clone())}),
            );
            responses.insert("410".into(), error("Deleted"));
            ("Everything in the patient's compartment".into(), "everythingPatient".into())
        }
        Kind::Disclosures => {
            parameters = id_params();
            responses.insert("200".into(), json!({"description": "The accounting of disclosures (45 CFR 164.528)", "content": fhir(bundle.clone())}));
            ("Accounting of disclosures".into(), "disclosuresPatient".into())
        }
        Kind::Review => {
            parameters = id_params();
            let code = |name: &str, key: &str, schema: Value| {
                json!({"type": "object", "required": ["name", key], "additionalProperties": false,
                    "properties": {"name": {"const": name}, key: schema}})
            };
            let outcomes = json!({"type": "string", "enum": crate::service::audit_search::REVIEW_OUTCOMES});
            request_body = body(
                json!({"type": "object", "required": ["resourceType", "parameter"], "properties": {
                    "resourceType": {"const": "Parameters"},
                    "parameter": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"oneOf": [
                        code("outcome", "valueCode", outcomes),
                        code("note", "valueString", json!({"type": "string", "minLength": 1, "maxLength": 2000}))]}}}}),
                "application/fhir+json",
            );
            responses
                .insert("200".into(), json!({"description": "The review is recorded", "content": fhir(outcome_ref())}));
            responses.insert("409".into(), error("Reviewed already"));
            responses.insert("415".into(), error("Not FHIR JSON"));
            ("Review a break-glass access".into(), "reviewBreakGlass".into())
        }
        Kind::Batch => {
            // Entries are any request; a batch answers each in the response
            // Bundle with its own status, a transaction fails whole with
            // the failing entry's status, so only the envelope is stated
            // (the url's form and the 1,000-entry bound are the 400s).
            let entry = json!({"type": "object", "required": ["request"], "properties": {
                "fullUrl": {"type": "string"},
                "resource": {"type": "object"},
                "request": {"type": "object", "required": ["method", "url"], "properties": {
                    "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]},
                    "url": {"type": "string", "minLength": 1}}}}});
            let batch = json!({"type": "object", "required": ["resourceType", "type"], "properties": {
                "resourceType": {"type": "string", "enum": ["Bundle"]},
                "type": {"type": "string", "enum": ["batch", "transaction"]},
                "entry": {"type": "array", "items": entry}}});
            request_body = body(batch, "application/fhir+json");
            responses.insert(
                "200".into(),
                json!({"description": "A batch-response or transaction-response Bundle: one entry per request, in order, each with its status", "content": fhir(bundle.clone())}),
            );
            for (s, d) in [
                ("400", "Not a well-formed batch or transaction Bundle (each problem at its entry), or a transaction with more updates and deletes than one atomic commit holds"),
                ("409", "A resource of the transaction changed concurrently; nothing was stored"),
                ("412", "A transaction's conditional reference, create or update found no or several resources"),
                ("413", "Bundle too large"),
                ("415", "Not FHIR JSON"),
                ("422", "A transaction entry is not valid; nothing was stored"),
            ] {
                responses.insert(s.into(), error(d));
            }
            ("Run a batch or a transaction of requests".into(), "batch".into())
        }
        Kind::BinaryCreate => {
            request_body = body(body_schema, "application/fhir+json");
            responses.insert("201".into(), json!({"description": "Created", "content": fhir(resource.clone())}));
            for (s, d) in [
                ("413", "Body too large"),
                ("415", "Not FHIR JSON, or content of a type not accepted"),
                ("422", "No such securityContext, or not valid for this server"),
            ] {
                responses.insert(s.into(), error(d));
            }
            ("Create a Binary on a patient's record".into(), "createBinary".into())
        }
        Kind::Binary => {
            parameters = id_params();
            parameters.push(json!({"name": "Range", "in": "header", "required": false,
                "schema": {"type": "string", "pattern": "^bytes=[0-9]{1,6}-[0-9]{0,6}$"}}));
            responses.insert("200".into(), json!({"description": "The document's bytes", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}));
            responses.insert("206".into(), json!({"description": "A range of the document", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}));
            responses.insert("410".into(), error("Deleted"));
            responses.insert("416".into(), error("Range outside the document"));
            ("A document's content".into(), "readBinary".into())
        }
        Kind::Validate | Kind::ValidateInstance => {
            parameters.push(path_param("type"));
            if o.kind == Kind::ValidateInstance {
                parameters.push(path_param("id"));
            }
            request_body = body(resource_schema(""), "application/fhir+json");
            responses.insert(
                "200".into(),
                json!({"description": "The outcome (errors included)", "content": fhir(outcome_ref())}),
            );
            for (s, d) in [("413", "Body too large"), ("415", "Not FHIR JSON"), ("422", "Not a resource")] {
                responses.insert(s.into(), error(d));
            }
            ("$validate".into(), if o.kind == Kind::Validate { "validate".into() } else { "validateInstance".into() })
        }
    };
    if !o.kind.public() {
        for (s, d) in [
            ("400", "Malformed request"),
            ("401", "No valid bearer token"),
            ("403", "Not allowed for this caller, or refused by consent"),
            ("404", "Not found"),
            ("406", "Only FHIR JSON is served"),
            ("429", "Throttled"),
            ("503", "A dependency is unavailable; retry"),
        ] {
            responses.entry(s).or_insert_with(|| error(d));
        }
    }
    let mut op =
        json!({"operationId": operation_id, "summary": summary, "parameters": parameters, "responses": responses});
    if o.kind.public() {
        op["security"] = json!([]);
    } else {
        op["tags"] = json!([ty]);
    }
    if !request_body.is_null() {
        op["requestBody"] = request_body;
    }
    op
}

/// Links from a created resource to what a client does next with it (the
/// stateful part of contract testing follows them).
fn links(ty: &str) -> Value {
    let id = json!({"id": "$response.body#/id"});
    let versioned = json!({"id": "$response.body#/id", "header.If-Match": "$response.header.ETag"});
    let mut links = json!({
        format!("read{ty}"): {"operationId": format!("read{ty}"), "parameters": id},
        format!("history{ty}"): {"operationId": format!("history{ty}"), "parameters": id},
        format!("vread{ty}"): {"operationId": format!("vread{ty}"), "parameters": {"id": "$response.body#/id", "vid": "$response.body#/meta/versionId"}},
        format!("update{ty}"): {"operationId": format!("update{ty}"), "parameters": versioned},
        format!("patch{ty}"): {"operationId": format!("patch{ty}"), "parameters": versioned},
        format!("delete{ty}"): {"operationId": format!("delete{ty}"), "parameters": versioned},
    });
    if ty == "Patient" {
        links["everythingPatient"] = json!({"operationId": "everythingPatient", "parameters": id});
    }
    links
}

/// The whole document. `base_url` is where the API is served; `limits`
/// are the deployment's bounds on a request (they shape the parameters);
/// `require_if_match` whether updates must name a version.
pub fn document(base_url: &str, limits: &Limits, require_if_match: bool) -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let entry = paths.entry(o.path.clone()).or_insert_with(|| json!({}));
        entry[o.method.to_ascii_lowercase()] = operation(&o, limits, require_if_match);
    }
    let mut schemas = Map::new();
    for r in resources() {
        let ty = r.resource_type;
        schemas.insert(ty.to_owned(), resource_schema(ty));
        schemas.insert(
            format!("{ty}Response"),
            json!({"type": "object", "required": ["resourceType", "id", "meta"],
            "properties": {"resourceType": {"type": "string", "enum": [ty]}, "id": {"type": "string", "pattern": ID},
                "meta": {"type": "object", "required": ["versionId", "lastUpdated"]}}}),
        );
    }
    schemas.insert("Resource".into(), resource_schema(""));
    schemas.insert(
        "ResourceType".into(),
        json!({"type": "string", "enum": crate::fhir::validator::model().resource_types()}),
    );
    schemas.insert(
        "OperationOutcome".into(),
        json!({"type": "object", "required": ["resourceType", "issue"],
        "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["severity", "code"],
                "properties": {"severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"}, "diagnostics": {"type": "string"}}}}}}),
    );
    schemas.insert(
        "Bundle".into(),
        json!({"type": "object", "required": ["resourceType", "type"],
        "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["searchset", "history", "collection", "batch-response", "transaction-response"]},
            "total": {"type": "integer", "minimum": 0},
            "link": {"type": "array", "items": {"type": "object", "required": ["relation", "url"]}},
            "entry": {"type": "array", "items": {"type": "object"}}}}),
    );
    schemas.insert(
        "Health".into(),
        json!({"type": "object", "required": ["status", "checks"],
        "properties": {"status": {"type": "string", "enum": ["pass", "warn", "fail"]}, "checks": {"type": "object"}}}),
    );
    let pointer = json!({"type": "string", "pattern": "^(/[A-Za-z0-9]{1,20}){1,3}$"});
    schemas.insert("JsonPatch".into(), json!({"type": "array", "minItems": 1, "items": {"oneOf": [
        {"type": "object", "additionalProperties": false, "required": ["op", "path", "value"],
            "properties": {"op": {"type": "string", "enum": ["add", "replace", "test"]}, "path": pointer, "value": {}}},
        {"type": "object", "additionalProperties": false, "required": ["op", "path"],
            "properties": {"op": {"type": "string", "enum": ["remove"]}, "path": pointer}},
        {"type": "object", "additionalProperties": false, "required": ["op", "path", "from"],
            "properties": {"op": {"type": "string", "enum": ["move", "copy"]}, "path": pointer, "from": pointer}}
    ]}}));
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "medrec FHIR R4 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "FHIR R4 REST over the Patient, every resource type of the R4 Patient compartment that one patient's record holds, and AuditEvent. Every error is an OperationOutcome. Updates honour If-Match; reads are consent-checked and audited."
        },
        "servers": [{"url": base_url}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::date_pattern;
    use crate::fhir::primitives::is_date;

    #[test]
    fn the_date_pattern_accepts_exactly_the_dates_the_server_does() {
        let pattern = regex_lite::Regex::new(&date_pattern("")).unwrap();
        for year in ["0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "9999"] {
            let mut candidates = vec![year.to_owned()];
            for month in 0..=13 {
                candidates.push(format!("{year}-{month:02}"));
                candidates.extend((0..=32).map(|day| format!("{year}-{month:02}-{day:02}")));
            }
            for c in candidates {
                assert_eq!(pattern.is_match(&c), is_date(&c), "{c}");
            }
        }
    }
}
