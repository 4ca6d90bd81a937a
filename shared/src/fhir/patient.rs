//! Structural rules for Patient (FHIR R4) and the values its search parameters
//! index. The schema below is a hand-kept subset of the R4 StructureDefinitions
//! for Patient and the data types it uses; the generated validation engine
//! supersedes it.

use super::outcome::Issue;
use super::primitives as p;
use serde_json::{Map, Value};

#[derive(Clone, Copy)]
enum Prim {
    Str,
    Code(Option<&'static [&'static str]>),
    Uri,
    Boolean,
    Date,
    DateTime,
    Instant,
    Integer,
    PositiveInt,
    UnsignedInt,
    Id,
    Base64,
    Xhtml,
    Decimal,
}

#[derive(Clone, Copy)]
enum Ty {
    P(Prim),
    C(&'static [El]),
    /// Reference with its allowed target types.
    Ref(&'static [&'static str]),
    Extension,
}

struct El {
    name: &'static str,
    ty: Ty,
    many: bool,
    min: usize,
}

const fn el(name: &'static str, ty: Ty) -> El {
    El { name, ty, many: false, min: 0 }
}
const fn many(name: &'static str, ty: Ty) -> El {
    El { name, ty, many: true, min: 0 }
}
const fn req(name: &'static str, ty: Ty) -> El {
    El { name, ty, many: false, min: 1 }
}

use Prim::*;
use Ty::*;

const STRING: Ty = P(Str);
const URI: Ty = P(Uri);
const DATETIME: Ty = P(DateTime);

const PERIOD: &[El] = &[el("start", DATETIME), el("end", DATETIME)];
const CODING: &[El] = &[
    el("system", URI),
    el("version", STRING),
    el("code", P(Code(None))),
    el("display", STRING),
    el("userSelected", P(Boolean)),
];
const CODEABLE_CONCEPT: &[El] = &[many("coding", C(CODING)), el("text", STRING)];
const IDENTIFIER: &[El] = &[
    el("use", P(Code(Some(&["usual", "official", "temp", "secondary", "old"])))),
    el("type", C(CODEABLE_CONCEPT)),
    el("system", URI),
    el("value", STRING),
    el("period", C(PERIOD)),
    el("assigner", Ref(&["Organization"])),
];
const HUMAN_NAME: &[El] = &[
    el("use", P(Code(Some(&["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"])))),
    el("text", STRING),
    el("family", STRING),
    many("given", STRING),
    many("prefix", STRING),
    many("suffix", STRING),
    el("period", C(PERIOD)),
];
const CONTACT_POINT: &[El] = &[
    el("system", P(Code(Some(&["phone", "fax", "email", "pager", "url", "sms", "other"])))),
    el("value", STRING),
    el("use", P(Code(Some(&["home", "work", "temp", "old", "mobile"])))),
    el("rank", P(PositiveInt)),
    el("period", C(PERIOD)),
];
const ADDRESS: &[El] = &[
    el("use", P(Code(Some(&["home", "work", "temp", "old", "billing"])))),
    el("type", P(Code(Some(&["postal", "physical", "both"])))),
    el("text", STRING),
    many("line", STRING),
    el("city", STRING),
    el("district", STRING),
    el("state", STRING),
    el("postalCode", STRING),
    el("country", STRING),
    el("period", C(PERIOD)),
];
const ATTACHMENT: &[El] = &[
    el("contentType", P(Code(None))),
    el("language", P(Code(None))),
    el("data", P(Base64)),
    el("url", URI),
    el("size", P(UnsignedInt)),
    el("hash", P(Base64)),
    el("title", STRING),
    el("creation", DATETIME),
];
const META: &[El] = &[
    el("versionId", P(Id)),
    el("lastUpdated", P(Instant)),
    el("source", URI),
    many("profile", URI),
    many("security", C(CODING)),
    many("tag", C(CODING)),
];
const NARRATIVE: &[El] =
    &[req("status", P(Code(Some(&["generated", "extensions", "additional", "empty"])))), req("div", P(Xhtml))];
const CONTACT: &[El] = &[
    many("modifierExtension", Extension),
    many("relationship", C(CODEABLE_CONCEPT)),
    el("name", C(HUMAN_NAME)),
    many("telecom", C(CONTACT_POINT)),
    el("address", C(ADDRESS)),
    el("gender", P(Code(Some(GENDERS)))),
    el("organization", Ref(&["Organization"])),
    el("period", C(PERIOD)),
];
const COMMUNICATION: &[El] =
    &[many("modifierExtension", Extension), req("language", C(CODEABLE_CONCEPT)), el("preferred", P(Boolean))];
const LINK: &[El] = &[
    many("modifierExtension", Extension),
    req("other", Ref(&["Patient", "RelatedPerson"])),
    req("type", P(Code(Some(&["replaced-by", "replaces", "refer", "seealso"])))),
];

/// http://hl7.org/fhir/ValueSet/administrative-gender (required binding).
pub const GENDERS: &[&str] = &["male", "female", "other", "unknown"];

const PATIENT: &[El] = &[
    el("id", P(Id)),
    el("meta", C(META)),
    el("implicitRules", URI),
    el("language", P(Code(None))),
    el("text", C(NARRATIVE)),
    many("modifierExtension", Extension),
    many("identifier", C(IDENTIFIER)),
    el("active", P(Boolean)),
    many("name", C(HUMAN_NAME)),
    many("telecom", C(CONTACT_POINT)),
    el("gender", P(Code(Some(GENDERS)))),
    el("birthDate", P(Date)),
    el("deceasedBoolean", P(Boolean)),
    el("deceasedDateTime", DATETIME),
    many("address", C(ADDRESS)),
    el("maritalStatus", C(CODEABLE_CONCEPT)),
    el("multipleBirthBoolean", P(Boolean)),
    el("multipleBirthInteger", P(Integer)),
    many("photo", C(ATTACHMENT)),
    many("contact", C(CONTACT)),
    many("communication", C(COMMUNICATION)),
    many("generalPractitioner", Ref(&["Organization", "Practitioner", "PractitionerRole"])),
    el("managingOrganization", Ref(&["Organization"])),
    many("link", C(LINK)),
];

/// Choice elements: at most one of the names in each group may appear.
const PATIENT_CHOICES: &[&[&str]] =
    &[&["deceasedBoolean", "deceasedDateTime"], &["multipleBirthBoolean", "multipleBirthInteger"]];

const REFERENCE: &[El] = &[el("reference", STRING), el("type", URI), el("display", STRING)];

/// The value[x] types an extension may carry in this subset.
const EXTENSION_VALUES: &[(&str, Ty)] = &[
    ("valueString", STRING),
    ("valueCode", P(Code(None))),
    ("valueBoolean", P(Boolean)),
    ("valueInteger", P(Integer)),
    ("valueDecimal", P(Decimal)),
    ("valueDate", P(Date)),
    ("valueDateTime", DATETIME),
    ("valueInstant", P(Instant)),
    ("valueUri", URI),
    ("valueCoding", C(CODING)),
    ("valueCodeableConcept", C(CODEABLE_CONCEPT)),
    ("valueIdentifier", C(IDENTIFIER)),
    ("valuePeriod", C(PERIOD)),
    ("valueAddress", C(ADDRESS)),
    ("valueHumanName", C(HUMAN_NAME)),
    ("valueReference", Ref(&[])),
];

/// Checks a Patient's structure. The caller has already checked `resourceType`.
pub fn validate(resource: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    let Some(obj) = resource.as_object() else {
        issues.push(Issue::error("structure", "resource must be a JSON object").at("Patient"));
        return issues;
    };
    let mut rest = obj.clone();
    rest.remove("resourceType");
    if rest.contains_key("contained") {
        issues.push(
            Issue::error("not-supported", "contained resources are not accepted on Patient").at("Patient.contained"),
        );
        rest.remove("contained");
    }
    for group in PATIENT_CHOICES {
        if group.iter().filter(|n| rest.contains_key(**n)).count() > 1 {
            issues.push(
                Issue::error("structure", format!("only one of {} may be present", group.join(", "))).at("Patient"),
            );
        }
    }
    // The resource itself may be empty (every Patient element is optional);
    // ele-1 forbids empty objects only below it.
    if !rest.is_empty() {
        check_object(&rest, PATIENT, "Patient", true, &mut issues);
    }
    issues
}

fn check_object(obj: &Map<String, Value>, schema: &[El], path: &str, is_element: bool, issues: &mut Vec<Issue>) {
    if obj.is_empty() {
        issues.push(Issue::error("structure", "objects must not be empty").at(path));
        return;
    }
    for (key, value) in obj {
        if let Some(prim_name) = key.strip_prefix('_') {
            match schema.iter().find(|e| e.name == prim_name) {
                Some(e) if matches!(e.ty, P(_)) => {
                    check_primitive_extension(value, e.many, &format!("{path}.{key}"), issues)
                }
                _ => issues.push(Issue::error("structure", format!("unknown element '{key}'")).at(path)),
            }
            continue;
        }
        if is_element && (key == "id" && !schema.iter().any(|e| e.name == "id")) {
            check_value(value, STRING, &format!("{path}.id"), issues);
            continue;
        }
        if is_element && key == "extension" {
            check_field(value, &many("extension", Extension), &format!("{path}.extension"), issues);
            continue;
        }
        match schema.iter().find(|e| e.name == key) {
            Some(e) => check_field(value, e, &format!("{path}.{key}"), issues),
            None => issues.push(Issue::error("structure", format!("unknown element '{key}'")).at(path)),
        }
    }
    for e in schema.iter().filter(|e| e.min > 0) {
        if !obj.contains_key(e.name) && !obj.contains_key(&format!("_{}", e.name)) {
            issues.push(
                Issue::error("required", format!("element '{}' is required", e.name)).at(format!("{path}.{}", e.name)),
            );
        }
    }
}

fn check_field(value: &Value, e: &El, path: &str, issues: &mut Vec<Issue>) {
    match (e.many, value) {
        (true, Value::Array(items)) => {
            if items.is_empty() {
                issues.push(Issue::error("structure", "arrays must not be empty").at(path));
            }
            for (i, item) in items.iter().enumerate() {
                check_value(item, e.ty, &format!("{path}[{i}]"), issues);
            }
        }
        (true, _) => issues.push(Issue::error("structure", "element must be an array").at(path)),
        (false, Value::Array(_)) => issues.push(Issue::error("structure", "element must not repeat").at(path)),
        (false, v) => check_value(v, e.ty, path, issues),
    }
}

fn check_primitive_extension(value: &Value, many: bool, path: &str, issues: &mut Vec<Issue>) {
    let check_one = |v: &Value, path: &str, issues: &mut Vec<Issue>| match v {
        Value::Object(o) => check_object(o, &[], path, true, issues),
        _ => issues.push(Issue::error("structure", "primitive extensions must be objects").at(path)),
    };
    match (many, value) {
        (true, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate().filter(|(_, v)| !v.is_null()) {
                check_one(item, &format!("{path}[{i}]"), issues);
            }
        }
        (false, v) => check_one(v, path, issues),
        (true, _) => issues.push(Issue::error("structure", "element must be an array").at(path)),
    }
}

fn check_value(value: &Value, ty: Ty, path: &str, issues: &mut Vec<Issue>) {
    match ty {
        P(prim) => check_primitive(value, prim, path, issues),
        C(schema) => match value {
            Value::Object(o) => check_object(o, schema, path, true, issues),
            _ => issues.push(Issue::error("structure", "element must be an object").at(path)),
        },
        Ref(targets) => match value {
            Value::Object(o) => {
                check_object(o, REFERENCE, path, true, issues);
                if let Some(r) = o.get("reference").and_then(Value::as_str) {
                    check_reference(r, targets, &format!("{path}.reference"), issues);
                }
            }
            _ => issues.push(Issue::error("structure", "element must be an object").at(path)),
        },
        Extension => check_extension(value, path, issues),
    }
}

fn check_reference(r: &str, targets: &[&str], path: &str, issues: &mut Vec<Issue>) {
    if r.starts_with('#') || r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
        return;
    }
    let relative = r.rsplit("/_history/").last().unwrap_or(r);
    let mut parts = relative.rsplitn(3, '/');
    let (id, ty) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let type_ok =
        !ty.is_empty() && ty.bytes().all(|b| b.is_ascii_alphabetic()) && ty.as_bytes()[0].is_ascii_uppercase();
    if !type_ok || !p::is_id(id) {
        issues.push(Issue::error("value", "reference must be Type/id, an absolute URL or a local #id").at(path));
    } else if !targets.is_empty() && !targets.contains(&ty) {
        issues.push(Issue::error("value", format!("reference must point to one of: {}", targets.join(", "))).at(path));
    }
}

fn check_extension(value: &Value, path: &str, issues: &mut Vec<Issue>) {
    let Value::Object(o) = value else {
        issues.push(Issue::error("structure", "extension must be an object").at(path));
        return;
    };
    match o.get("url") {
        Some(Value::String(u)) if p::is_uri(u) => {}
        _ => issues
            .push(Issue::error("required", "extension.url is required and must be a uri").at(format!("{path}.url"))),
    }
    let values: Vec<&String> = o.keys().filter(|k| k.starts_with("value")).collect();
    if values.len() > 1 {
        issues.push(Issue::error("structure", "an extension has at most one value[x]").at(path));
    }
    if !values.is_empty() && o.contains_key("extension") {
        issues
            .push(Issue::error("invariant", "ext-1: an extension has either extensions or a value, not both").at(path));
    }
    if values.is_empty() && !o.contains_key("extension") {
        issues.push(Issue::error("invariant", "ext-1: an extension needs a value or nested extensions").at(path));
    }
    for (k, v) in o {
        let child = format!("{path}.{k}");
        match k.as_str() {
            "url" => {}
            "id" => check_value(v, STRING, &child, issues),
            "extension" => check_field(v, &many("extension", Extension), &child, issues),
            _ => match EXTENSION_VALUES.iter().find(|(n, _)| n == k) {
                Some((_, ty)) => check_value(v, *ty, &child, issues),
                None => {
                    issues.push(Issue::error("structure", format!("unknown or unsupported element '{k}'")).at(path))
                }
            },
        }
    }
}

fn check_primitive(value: &Value, prim: Prim, path: &str, issues: &mut Vec<Issue>) {
    let bad = |issues: &mut Vec<Issue>, what: &str| {
        issues.push(Issue::error("value", format!("value is not a valid {what}")).at(path))
    };
    match (prim, value) {
        (Boolean, Value::Bool(_)) => {}
        (Boolean, _) => bad(issues, "boolean"),
        (Integer, Value::Number(n)) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {}
        (Integer, _) => bad(issues, "integer"),
        (PositiveInt, Value::Number(n)) if n.as_i64().is_some_and(|i| (1..=i32::MAX as i64).contains(&i)) => {}
        (PositiveInt, _) => bad(issues, "positiveInt"),
        (UnsignedInt, Value::Number(n)) if n.as_i64().is_some_and(|i| (0..=i32::MAX as i64).contains(&i)) => {}
        (UnsignedInt, _) => bad(issues, "unsignedInt"),
        (Decimal, Value::Number(_)) => {}
        (Decimal, _) => bad(issues, "decimal"),
        (_, Value::String(s)) => {
            let ok = match prim {
                Str => p::is_string(s),
                Code(allowed) => {
                    if p::is_code(s) && allowed.is_some_and(|a| !a.contains(&s.as_str())) {
                        issues.push(Issue::error("code-invalid", "code is not in the required value set").at(path));
                        return;
                    }
                    p::is_code(s)
                }
                Uri => p::is_uri(s),
                Date => p::is_date(s),
                DateTime => p::is_date_time(s),
                Instant => p::is_instant(s),
                Id => p::is_id(s),
                Base64 => is_base64(s),
                Xhtml => is_safe_narrative(s),
                Boolean | Integer | PositiveInt | UnsignedInt | Decimal => unreachable!("handled above"),
            };
            if !ok {
                bad(issues, prim_name(prim));
            }
        }
        _ => bad(issues, prim_name(prim)),
    }
}

fn prim_name(prim: Prim) -> &'static str {
    match prim {
        Str => "string",
        Code(_) => "code",
        Uri => "uri",
        Boolean => "boolean",
        Date => "date",
        DateTime => "dateTime",
        Instant => "instant",
        Integer => "integer",
        PositiveInt => "positiveInt",
        UnsignedInt => "unsignedInt",
        Id => "id",
        Base64 => "base64Binary",
        Xhtml => "xhtml narrative",
        Decimal => "decimal",
    }
}

fn is_base64(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).is_ok()
}

/// Narrative is rendered by clients, so active content in it is an XSS vector
/// (FHIR txt-1/txt-2 forbid scripts, forms and event attributes).
fn is_safe_narrative(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_start();
    (t.starts_with("<div") && lower.trim_end().ends_with("</div>"))
        && !["<script", "<iframe", "<object", "<embed", "<form", "<style", "javascript:", "data:text/html"]
            .iter()
            .any(|bad| lower.contains(bad))
        && !has_event_attribute(&lower)
}

fn has_event_attribute(lower: &str) -> bool {
    let b = lower.as_bytes();
    b.windows(3).enumerate().any(|(i, w)| {
        (w[0] == b' ' || w[0] == b'\t' || w[0] == b'\n' || w[0] == b'/')
            && w[1] == b'o'
            && w[2] == b'n'
            && b[i + 3..].iter().take_while(|c| c.is_ascii_alphabetic()).count() > 0
            && b[i + 3..].iter().find(|c| !c.is_ascii_alphabetic()).is_some_and(|c| *c == b'=' || *c == b' ')
    })
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
        validate(&v).into_iter().map(|i| i.expression.unwrap_or_default()).collect()
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
            "<div><a href=\"javascript:alert(1)\">x</a></div>",
            "no div",
        ] {
            let p = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
            assert_eq!(exprs(p), vec!["Patient.text.div"], "{div}");
        }
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
