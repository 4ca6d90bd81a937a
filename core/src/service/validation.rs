//! `$validate` for every R4 resource type: the same checks a create or an
//! update of that type would run (base definitions, `meta.profile`, the
//! type's own rules), plus a profile the caller names. Nothing is stored;
//! the call is authorized as the create or update it rehearses, and audited.

use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::error::{Error, Result};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::{patient, validator::model};
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

/// The checks a write of `resource` (of any type) runs before it is stored.
pub fn rules_for(resource_type: &str, resource: &Value) -> Vec<Issue> {
    match resource_type {
        "Patient" => patient::validate(resource),
        _ => model().validate(resource),
    }
}

/// What a `$validate` request carries, from its body and query.
struct Request {
    resource: Value,
    profile: Option<String>,
}

fn parse(body: Value, query_profile: Option<String>) -> Result<Request> {
    if body["resourceType"] != "Parameters" {
        return Ok(Request { resource: body, profile: query_profile });
    }
    let params = body["parameter"].as_array().cloned().unwrap_or_default();
    let named = |name: &'static str| params.iter().filter(move |p| p["name"] == name);
    if let Some(mode) = named("mode").next() {
        match mode["valueCode"].as_str() {
            Some("create" | "update") => {}
            _ => return Err(Error::BadRequest("mode must be create or update".into())),
        }
    }
    let mut profiles = named("profile").map(|p| {
        ["valueUri", "valueCanonical", "valueString"]
            .iter()
            .find_map(|k| p[*k].as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::BadRequest("the profile parameter must be a uri or canonical".into()))
    });
    let profile = match (profiles.next().transpose()?, profiles.next(), query_profile) {
        (_, Some(_), _) => return Err(Error::BadRequest("one profile per request".into())),
        (Some(_), _, Some(_)) => {
            return Err(Error::BadRequest("profile given both as parameter and in the query".into()))
        }
        (p, None, q) => p.or(q),
    };
    let mut resources = named("resource");
    let resource = match (resources.next(), resources.next()) {
        (Some(r), None) => r["resource"].clone(),
        _ => return Err(Error::BadRequest("Parameters must carry exactly one 'resource' parameter".into())),
    };
    Ok(Request { resource, profile })
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// `POST /fhir/{type}/$validate` and `/fhir/{type}/{id}/$validate`.
    pub async fn validate_resource(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: Option<&str>,
        body: Value,
        query_profile: Option<String>,
        audit: &mut AuditEntry,
    ) -> Result<Value> {
        if !model().is_resource_type(resource_type) {
            return Err(Error::NotFound);
        }
        // A validation reads nothing stored: it names the id it was asked
        // about but no patient, so it is no disclosure in anyone's accounting.
        let compartment = if resource_type == "Patient" { id } else { None };
        audit.entities = id.map(|id| vec![format!("{resource_type}/{id}")]).unwrap_or_default();
        self.check(caller, resource_type, if id.is_some() { Action::Update } else { Action::Create }, compartment)?;
        let req = parse(body, query_profile)?;
        if !req.resource["resourceType"].as_str().is_some_and(|t| model().is_resource_type(t)) {
            return Err(Error::BadRequest("the body is not a FHIR R4 resource (resourceType)".into()));
        }
        let mut issues = rules_for(resource_type, &req.resource);
        // A resource of another type is a validation result, like an id
        // that differs from the URL's: the answer is the outcome, not a 400.
        if req.resource["resourceType"] != resource_type {
            issues.push(
                Issue::error("value", format!("this endpoint validates {resource_type} resources"))
                    .at(format!("{resource_type}.resourceType")),
            );
        }
        if let Some(url) = &req.profile {
            let declared = req.resource["meta"]["profile"].as_array().is_some_and(|p| p.iter().any(|p| p == url));
            match model().check_profile(&req.resource, url) {
                Some(found) if !declared => issues.extend(found),
                Some(_) => {}
                None => return Err(Error::BadRequest("the profile is not one this server validates against".into())),
            }
        }
        if let Some(id) = id {
            if req.resource.get("id").and_then(Value::as_str) != Some(id) {
                issues.push(
                    Issue::error("value", "the resource id must match the id in the URL")
                        .at(format!("{resource_type}.id")),
                );
            }
        }
        self.audit_read(caller, audit).await?;
        if issues.is_empty() {
            issues.push(Issue::information("informational", "All OK"));
        }
        Ok(operation_outcome(&issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_carry_one_resource_and_at_most_one_profile() {
        let p = json!({"resourceType": "Patient"});
        let params = |extra: Vec<Value>| {
            let mut list = vec![json!({"name": "resource", "resource": p})];
            list.extend(extra);
            json!({"resourceType": "Parameters", "parameter": list})
        };
        let ok = parse(params(vec![json!({"name": "profile", "valueCanonical": "http://x/p"})]), None).unwrap();
        assert_eq!(ok.profile.as_deref(), Some("http://x/p"));
        assert_eq!(parse(p.clone(), Some("http://q".into())).unwrap().profile.as_deref(), Some("http://q"));
        for bad in [
            params(vec![json!({"name": "mode", "valueCode": "delete"})]),
            params(vec![json!({"name": "profile", "valueInteger": 1})]),
            params(vec![json!({"name": "profile", "valueUri": "a"}), json!({"name": "profile", "valueUri": "b"})]),
            params(vec![json!({"name": "resource", "resource": p})]),
            json!({"resourceType": "Parameters", "parameter": []}),
        ] {
            assert!(matches!(parse(bad.clone(), None), Err(Error::BadRequest(_))), "{bad}");
        }
        let both = params(vec![json!({"name": "profile", "valueUri": "a"})]);
        assert!(parse(both, Some("b".into())).is_err());
    }
}
