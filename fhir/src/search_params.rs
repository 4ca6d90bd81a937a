//! A search parameter of the resource table evaluated on a decrypted
//! resource: the values at its element paths, compared as R4 search
//! compares its type (search.html), with the modifiers that make sense for
//! it. Compartment records are matched in memory after decryption, so no
//! clinical value needs a plaintext index.

use super::resources::SearchParam;
use super::search::{date_matches, date_range, quantity_matches, token_matches};
use serde_json::Value;

/// A modifier on a parameter name (`code:not`, `name:exact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Missing,
    Not,
    Text,
    Exact,
    Contains,
}

impl Modifier {
    /// The modifier of `name:modifier`, when the parameter's type takes it.
    pub fn parse(kind: &str, modifier: &str) -> Option<Modifier> {
        let m = match modifier {
            "missing" => Modifier::Missing,
            "not" => Modifier::Not,
            "text" => Modifier::Text,
            "exact" => Modifier::Exact,
            "contains" => Modifier::Contains,
            _ => return None,
        };
        let fits = match m {
            Modifier::Missing => true,
            Modifier::Not | Modifier::Text => kind == "token",
            Modifier::Exact | Modifier::Contains => kind == "string",
        };
        fits.then_some(m)
    }
}

/// What a client may send to a parameter of this type, for the
/// CapabilityStatement and the OpenAPI document.
pub fn documentation(kind: &str) -> &'static str {
    match kind {
        "token" => "system|code, |code or code; :not, :text, :missing.",
        "string" => "Starts with, case-insensitive; :exact, :contains, :missing.",
        "date" => "With eq, ne, gt, lt, ge, le prefixes; :missing.",
        "reference" => "Type/id or id; :missing.",
        "quantity" => "[prefix]number|system|code; :missing.",
        "number" => "[prefix]number; :missing.",
        _ => "Exact; :missing.",
    }
}

/// The values a parameter finds in a resource (arrays flattened at every step).
pub fn values<'v>(param: &SearchParam, resource: &'v Value) -> Vec<(&'v Value, &'static str)> {
    let mut out = vec![];
    for p in &param.paths {
        let mut here = vec![resource];
        for step in &p.path {
            here = here
                .into_iter()
                .filter_map(|v| v.get(step))
                .flat_map(|v| match v {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    v => vec![v],
                })
                .collect();
        }
        let wanted = p.target.as_deref().map(|t| format!("{t}/"));
        for v in here {
            // `resolve() is Patient`: a reference of that type only.
            if let Some(prefix) = &wanted {
                if !v["reference"].as_str().is_some_and(|r| r.starts_with(prefix.as_str())) {
                    continue;
                }
            }
            out.push((v, kind_of(&p.of)));
        }
    }
    out
}

/// The FHIR types the comparisons tell apart.
fn kind_of(of: &str) -> &'static str {
    match of {
        "CodeableConcept" => "CodeableConcept",
        "Coding" => "Coding",
        "Identifier" => "Identifier",
        "ContactPoint" => "ContactPoint",
        "HumanName" | "Address" => "composite-string",
        "boolean" => "boolean",
        "Timing" => "Timing",
        _ => "value",
    }
}

/// Whether one value of a parameter can be read as its type.
pub fn well_formed(param: &SearchParam, modifier: Option<Modifier>, value: &str) -> bool {
    if modifier == Some(Modifier::Missing) {
        return matches!(value, "true" | "false");
    }
    let probe = (time::OffsetDateTime::UNIX_EPOCH, time::OffsetDateTime::UNIX_EPOCH);
    match param.kind.as_str() {
        // A FHIR date or dateTime after the prefix, not whatever the
        // bounds parser tolerates (`0`, `+5`).
        "date" => {
            let v = super::search::prefixed(value).1;
            (super::primitives::is_date(v) || super::primitives::is_date_time(v))
                && date_matches(probe, value).is_some()
        }
        "quantity" | "number" => quantity_matches(&Value::Null, value).is_some(),
        "token" if param.name == "_id" => super::primitives::is_id(value),
        "reference" => is_reference(value),
        _ => !value.trim().is_empty(),
    }
}

/// A reference parameter's value: `id`, `Type/id`, or an absolute URL.
fn is_reference(value: &str) -> bool {
    let is_id = super::primitives::is_id;
    if ["http://", "https://", "urn:"].iter().any(|p| value.starts_with(p)) {
        return !value.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    }
    match value.split_once('/') {
        None => is_id(value),
        Some((ty, id)) => {
            ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.bytes().all(|b| b.is_ascii_alphabetic()) && is_id(id)
        }
    }
}

/// Does a resource satisfy one parameter, any of its comma-separated values
/// (already checked with `well_formed`)?
pub fn matches(param: &SearchParam, modifier: Option<Modifier>, resource: &Value, values: &str) -> bool {
    let found = self::values(param, resource);
    if modifier == Some(Modifier::Missing) {
        return found.is_empty() == (values == "true");
    }
    let any = |wanted: &str| found.iter().any(|(v, kind)| one(&param.kind, modifier, v, kind, wanted));
    match modifier {
        // `:not` is true of a resource none of whose values is any of them.
        Some(Modifier::Not) => !values.split(',').any(any),
        _ => values.split(',').any(any),
    }
}

/// The strings a string parameter compares (every part of a HumanName or
/// Address): what a blind index of their prefixes must cover.
pub fn string_values(param: &SearchParam, resource: &Value) -> Vec<String> {
    let mut out = vec![];
    for (v, _) in values(param, resource) {
        strings(v, &mut out);
    }
    out
}

fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Every string of a HumanName or Address (family, given, line, city...).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(o) => o.iter().filter(|(k, _)| *k != "use" && *k != "period").for_each(|(_, v)| strings(v, out)),
        _ => {}
    }
}

fn one(kind: &str, modifier: Option<Modifier>, v: &Value, of: &str, wanted: &str) -> bool {
    match kind {
        "token" => token(modifier, v, of, wanted),
        "string" => {
            let mut found = vec![];
            strings(v, &mut found);
            let w = fold(wanted);
            found.iter().any(|s| match modifier {
                Some(Modifier::Exact) => s == wanted,
                Some(Modifier::Contains) => fold(s).contains(&w),
                _ => fold(s).starts_with(&w),
            })
        }
        "date" => {
            let ranges: Vec<Value> = match (of, v) {
                ("Timing", _) => v["event"].as_array().cloned().unwrap_or_default(),
                _ => vec![v.clone()],
            };
            ranges.iter().filter_map(date_range).any(|r| date_matches(r, wanted) == Some(true))
        }
        "reference" => reference(v, wanted),
        "quantity" => v.is_object() && quantity_matches(v, wanted) == Some(true),
        "number" => v.is_number() && quantity_matches(&serde_json::json!({ "value": v }), wanted) == Some(true),
        "uri" => v.as_str() == Some(wanted),
        _ => false,
    }
}

fn token(modifier: Option<Modifier>, v: &Value, of: &str, wanted: &str) -> bool {
    if modifier == Some(Modifier::Text) {
        let w = fold(wanted);
        let text = |s: &Value| s.as_str().is_some_and(|t| fold(t).starts_with(&w));
        return text(&v["text"]) || v["coding"].as_array().into_iter().flatten().any(|c| text(&c["display"]));
    }
    match of {
        "Identifier" | "ContactPoint" => {
            let (system, value) = match wanted.split_once('|') {
                Some((s, c)) => (Some(s), c),
                None => (None, wanted),
            };
            let sys = v["system"].as_str();
            let any_value = value.is_empty() && system.is_some_and(|s| !s.is_empty());
            (any_value || v["value"].as_str() == Some(value))
                && match system {
                    None => true,
                    Some("") => sys.is_none(),
                    Some(s) => sys == Some(s),
                }
        }
        "boolean" => v.as_bool().map(|b| b.to_string()).as_deref() == Some(wanted),
        _ => token_matches(v, wanted),
    }
}

/// `Type/id`, a bare `id` (any type), or an absolute URL, as stored.
fn reference(v: &Value, wanted: &str) -> bool {
    let stored = v["reference"].as_str().or_else(|| v.as_str());
    let Some(stored) = stored else { return false };
    if wanted.contains('/') {
        stored == wanted
    } else {
        stored.rsplit_once('/').is_some_and(|(_, id)| id == wanted)
    }
}

/// The key that orders a resource for `_sort` on this parameter: the first
/// value's text (dates as instants), None when it has none.
pub fn sort_value(param: &SearchParam, resource: &Value) -> Option<SortValue> {
    let (v, of) = values(param, resource).into_iter().next()?;
    match param.kind.as_str() {
        // Milliseconds: instants (`meta.lastUpdated`) written in the same
        // second still sort in the order they were written.
        "date" => date_range(v).map(|r| SortValue::Instant((r.0.unix_timestamp_nanos() / 1_000_000) as i64)),
        "number" | "quantity" => {
            let n = if v.is_number() { v.as_f64() } else { v["value"].as_f64() };
            n.map(SortValue::Number)
        }
        "token" => {
            let code = match of {
                "CodeableConcept" => v["coding"][0]["code"].as_str(),
                "Coding" => v["code"].as_str(),
                "Identifier" | "ContactPoint" => v["value"].as_str(),
                _ => v.as_str(),
            };
            code.map(|c| SortValue::Text(c.to_owned()))
        }
        _ => {
            let mut found = vec![];
            strings(v, &mut found);
            found.into_iter().next().map(|s| SortValue::Text(fold(&s)))
        }
    }
}

/// A sortable value of a resource.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    /// Milliseconds since the epoch.
    Instant(i64),
    Number(f64),
    Text(String),
}

impl SortValue {
    /// A string that sorts as the value does, ascending or descending;
    /// fixed-width numbers, and text as code points (a terminator keeps a
    /// prefix before its extensions, or after them when descending).
    pub fn key(&self, descending: bool) -> String {
        let flip = |n: u64| if descending { u64::MAX - n } else { n };
        match self {
            SortValue::Instant(t) => format!("{:020}", flip((*t as i128 + (1i128 << 62)) as u64)),
            SortValue::Number(n) => {
                // Order-preserving bits of an f64.
                let bits = n.to_bits();
                let ordered = if *n < 0.0 { !bits } else { bits | (1 << 63) };
                format!("{:020}", flip(ordered))
            }
            SortValue::Text(s) => {
                let mut k: String = s
                    .chars()
                    .map(|c| {
                        let c = c as u32;
                        format!("{:06x}", if descending { 0xff_ffff - c } else { c + 1 })
                    })
                    .collect();
                k.push_str(if descending { "ffffff" } else { "000000" });
                k
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::compartment_type;
    use serde_json::json;

    fn hit(ty: &str, r: &Value, name: &str, value: &str) -> bool {
        let (base, modifier) = match name.split_once(':') {
            Some((b, m)) => (b, Some(m)),
            None => (name, None),
        };
        let p = compartment_type(ty).unwrap().param(base).unwrap();
        let m = modifier.map(|m| Modifier::parse(&p.kind, m).unwrap());
        assert!(value.split(',').all(|v| well_formed(p, m, v)), "{name}={value}");
        matches(p, m, r, value)
    }

    #[test]
    fn a_date_value_is_a_fhir_date_or_date_time() {
        let p = compartment_type("Condition").unwrap().param("_lastUpdated").unwrap();
        for ok in ["2020", "ge2020-02", "lt2020-02-29", "2020-02-01T10:00:00Z", "ne2020-02-01T10:00:00+01:00"] {
            assert!(well_formed(p, None, ok), "{ok}");
        }
        for bad in ["0", "+5", "1-1-1", "ge", "2020-13", "2020-02-30", "2020-02-01T10:00", "x2020"] {
            assert!(!well_formed(p, None, bad), "{bad}");
        }
    }

    #[test]
    fn every_parameter_type_on_a_condition() {
        let c = json!({"resourceType": "Condition", "id": "c1",
            "meta": {"lastUpdated": "2026-11-20T09:00:00Z", "tag": [{"system": "urn:t", "code": "vip"}]},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}], "text": "Type 2 diabetes"},
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
            "onsetDateTime": "2019-03-01", "recordedDate": "2019-03-02",
            "identifier": [{"system": "urn:ids", "value": "A-7"}],
            "note": [{"text": "watch"}]});
        assert!(hit("Condition", &c, "code", "http://snomed.info/sct|44054006"));
        assert!(!hit("Condition", &c, "code", "http://loinc.org|44054006"));
        assert!(hit("Condition", &c, "code:not", "1234"));
        assert!(!hit("Condition", &c, "code:not", "44054006"));
        assert!(hit("Condition", &c, "code:text", "type 2"), "text of the concept");
        assert!(hit("Condition", &c, "code:text", "diabetes"), "display of a coding");
        assert!(hit("Condition", &c, "clinical-status", "active"));
        assert!(hit("Condition", &c, "identifier", "urn:ids|A-7") && !hit("Condition", &c, "identifier", "urn:x|A-7"));
        // `system|`: any value, any code, of that system.
        assert!(hit("Condition", &c, "identifier", "urn:ids|") && !hit("Condition", &c, "identifier", "urn:x|"));
        assert!(
            hit("Condition", &c, "code", "http://snomed.info/sct|")
                && !hit("Condition", &c, "code", "http://loinc.org|")
        );
        assert!(hit("Condition", &c, "onset-date", "ge2019-01-01") && !hit("Condition", &c, "onset-date", "lt2019"));
        assert!(hit("Condition", &c, "patient", "Patient/p1") && hit("Condition", &c, "subject", "p1"));
        assert!(!hit("Condition", &c, "patient", "Patient/p2"));
        assert!(hit("Condition", &c, "encounter", "Encounter/e1"));
        assert!(hit("Condition", &c, "abatement-date:missing", "true"));
        assert!(hit("Condition", &c, "onset-date:missing", "false"));
        assert!(hit("Condition", &c, "_tag", "urn:t|vip") && hit("Condition", &c, "_id", "c1"));
        assert!(hit("Condition", &c, "_lastUpdated", "2026-11"));
    }

    #[test]
    fn strings_start_with_by_default() {
        let r = json!({"resourceType": "RelatedPerson", "patient": {"reference": "Patient/p1"},
            "name": [{"family": "Müller", "given": ["Anna"]}], "address": [{"city": "Zürich", "line": ["Main 1"]}]});
        assert!(hit("RelatedPerson", &r, "name", "mül") && hit("RelatedPerson", &r, "name", "ANNA"));
        assert!(!hit("RelatedPerson", &r, "name", "ller"));
        assert!(hit("RelatedPerson", &r, "name:contains", "ller"));
        assert!(hit("RelatedPerson", &r, "name:exact", "Müller") && !hit("RelatedPerson", &r, "name:exact", "müller"));
        assert!(hit("RelatedPerson", &r, "address-city", "zü"));
    }

    #[test]
    fn quantities_numbers_and_choices() {
        let o = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2026-11-01", "end": "2026-11-02"},
            "valueQuantity": {"value": 7.20, "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
        assert!(
            hit("Observation", &o, "date", "2026-11")
                && hit("Observation", &o, "value-quantity", "gt7|http://unitsofmeasure.org|mmol/L")
        );
        let r = json!({"resourceType": "RiskAssessment", "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": 0.25}]});
        assert!(
            hit("RiskAssessment", &r, "probability", "gt0.2") && !hit("RiskAssessment", &r, "probability", "gt0.3")
        );
    }

    #[test]
    fn reference_values_are_ids_typed_ids_or_urls() {
        for ok in ["p1", "Patient/p1", "https://other.example/fhir/Patient/p1", "urn:uuid:1b4e28ba"] {
            assert!(is_reference(ok), "{ok}");
        }
        for bad in ["", "__main__", "qo*", "patient/p1", "Patient/a b", "a/b/c", "ftp://x", "http://a b"] {
            assert!(!is_reference(bad), "{bad}");
        }
    }

    #[test]
    fn sort_keys_order_as_their_values() {
        let asc = |a: SortValue, b: SortValue| a.key(false) < b.key(false) && a.key(true) > b.key(true);
        assert!(asc(SortValue::Instant(-5), SortValue::Instant(3)));
        assert!(asc(SortValue::Number(-2.5), SortValue::Number(-1.0)));
        assert!(asc(SortValue::Number(0.5), SortValue::Number(10.0)));
        assert!(asc(SortValue::Text("ab".into()), SortValue::Text("abc".into())));
        assert!(asc(SortValue::Text("abc".into()), SortValue::Text("b".into())));
    }
}
