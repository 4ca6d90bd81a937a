//! Patient: validation (the generated R4 rules plus medrec's own), the
//! narrative safety rule, and the values its search parameters index.

use super::outcome::Issue;
use serde_json::Value;

/// http://hl7.org/fhir/ValueSet/administrative-gender (required binding).
pub const GENDERS: &[&str] = &["male", "female", "other", "unknown"];

/// Checks a Patient against the R4 definitions (the generated validator)
/// and medrec's own rule for it. The caller has already checked `resourceType`.
pub fn validate(resource: &Value) -> Vec<Issue> {
    let mut issues = super::validator::model().validate(resource);
    // Contained resources would live outside every compartment and index.
    if resource.get("contained").is_some() {
        issues.push(
            Issue::error("not-supported", "contained resources are not accepted on Patient").at("Patient.contained"),
        );
    }
    issues
}

/// The search parameters medrec indexes for Patient, with the raw values a
/// resource has for each. Values are normalised and blinded by the caller.
pub fn search_values(resource: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let strs = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => vec![],
        }
    };
    for name in resource.get("name").and_then(Value::as_array).into_iter().flatten() {
        for family in strs(name.get("family")) {
            out.push(("family", family.clone()));
            out.push(("name", family));
        }
        for given in strs(name.get("given")) {
            out.push(("given", given.clone()));
            out.push(("name", given));
        }
        for part in strs(name.get("prefix")).into_iter().chain(strs(name.get("suffix"))).chain(strs(name.get("text"))) {
            out.push(("name", part));
        }
    }
    if let Some(g) = resource.get("gender").and_then(Value::as_str) {
        out.push(("gender", g.to_owned()));
    }
    if let Some(d) = resource.get("birthDate").and_then(Value::as_str) {
        // Year and year-month too, so that `birthdate=1980` matches a full date
        // inside that year as FHIR date search requires.
        if d.len() >= 7 {
            out.push(("birthdate", d[..4].to_owned()));
        }
        if d.len() == 10 {
            out.push(("birthdate", d[..7].to_owned()));
        }
        out.push(("birthdate", d.to_owned()));
    }
    for ident in resource.get("identifier").and_then(Value::as_array).into_iter().flatten() {
        if let Some(value) = ident.get("value").and_then(Value::as_str) {
            let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
            out.push(("identifier", format!("|{value}")));
            out.push(("identifier", format!("{system}|{value}")));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exprs(v: Value) -> Vec<String> {
        validate(&v).into_iter().filter(Issue::is_error).map(|i| i.expression.unwrap_or_default()).collect()
    }

    #[test]
    fn a_complete_patient_is_valid() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "http://hospital.example/mrn", "value": "123"}],
            "active": true,
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
            "_gender": {"extension": [{"url": "http://example.org/x", "valueString": "x"}]},
            "gender": "male",
            "birthDate": "1974-12-25",
            "deceasedBoolean": false,
            "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
            "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
            "managingOrganization": {"reference": "Organization/1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter</div>"}
        });
        assert_eq!(validate(&p), vec![]);
        assert_eq!(validate(&json!({"resourceType": "Patient"})), vec![]);
    }

    #[test]
    fn structural_errors_are_located() {
        assert_eq!(exprs(json!({"resourceType": "Patient", "gender": "yes"})), vec!["Patient.gender"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "birthDate": "1981-02-29"})), vec!["Patient.birthDate"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "name": {"family": "x"}})), vec!["Patient.name"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "name": [{"given": "x"}]})), vec!["Patient.name[0].given"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "favouriteColour": "red"})), vec!["Patient"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "active": "true"})), vec!["Patient.active"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "name": []})), vec!["Patient.name"]);
        assert_eq!(exprs(json!({"resourceType": "Patient", "name": [{"family": ""}]})), vec!["Patient.name[0].family"]);
        assert_eq!(
            exprs(json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"})),
            vec!["Patient"]
        );
        assert_eq!(
            exprs(json!({"resourceType": "Patient", "link": [{"type": "refer"}]})),
            vec!["Patient.link[0].other"]
        );
        assert_eq!(
            exprs(json!({"resourceType": "Patient", "managingOrganization": {"reference": "Patient/1"}})),
            vec!["Patient.managingOrganization.reference"]
        );
        assert_eq!(
            exprs(json!({"resourceType": "Patient", "extension": [{"url": "http://x"}]})),
            vec!["Patient.extension[0]"]
        );
    }

    #[test]
    fn active_narrative_is_rejected() {
        for div in [
            "<div><script>alert(1)</script></div>",
            "<div><img src=x onerror=alert(1)></div>",
            "<div><img src=x ONERROR = alert(1)></div>",
            "<div><svg/onload=alert(1)></div>",
            "<div><a href=\"javascript:alert(1)\">x</a></div>",
            "no div",
        ] {
            let p = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
            assert_eq!(exprs(p), vec!["Patient.text.div"], "{div}");
        }
    }

    #[test]
    fn multibyte_text_in_tags_never_panics() {
        for div in [
            "<div><p title=\"Zoë ónly\">x</p></div>",
            "<div><é on></div>",
            "<div>< ü/onload=1></div>",
            "<div><a \u{1F600}onclick=1></div>",
        ] {
            let p = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
            let _ = validate(&p);
        }
        let p = json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p ü onclick=\"x\">x</p></div>"}});
        assert_eq!(exprs(p), vec!["Patient.text.div"]);
    }

    #[test]
    fn ordinary_narrative_is_accepted() {
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Consent only on weekdays; one=1</p><a href=\"http://x\">on</a></div>";
        let p = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
        assert_eq!(validate(&p), vec![]);
    }

    #[test]
    fn search_values_cover_each_parameter() {
        let p = json!({
            "resourceType": "Patient",
            "name": [{"family": "Chalmers", "given": ["Peter"]}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "identifier": [{"system": "urn:mrn", "value": "123"}]
        });
        let v = search_values(&p);
        for expected in [
            ("family", "Chalmers"),
            ("given", "Peter"),
            ("name", "Chalmers"),
            ("name", "Peter"),
            ("gender", "male"),
            ("birthdate", "1974"),
            ("birthdate", "1974-12"),
            ("birthdate", "1974-12-25"),
            ("identifier", "urn:mrn|123"),
            ("identifier", "|123"),
        ] {
            assert!(v.contains(&(expected.0, expected.1.to_owned())), "{expected:?}");
        }
    }
}
