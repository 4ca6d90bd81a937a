//! Business rules of the clinical resources beyond what FHIR's definitions
//! say: what a clinician would call impossible data. Each broken rule is
//! one error located at its element.

use super::outcome::Issue;
use super::primitives::datetime_bounds;
use super::ucum;
use serde_json::Value;
use time::OffsetDateTime;

/// The compartment types that `_include`/`_revinclude` may follow to or
/// from their Patient, by search parameter name.
pub const PATIENT_LINKS: [(&str, &str); 6] = [
    ("Immunization", "patient"),
    ("Observation", "subject"),
    ("Observation", "patient"),
    ("Consent", "patient"),
    ("DocumentReference", "subject"),
    ("DocumentReference", "patient"),
];

/// The compartment element of each clinical type: its patient reference.
pub fn compartment_element(resource_type: &str) -> Option<&'static str> {
    match resource_type {
        "Immunization" | "Consent" => Some("patient"),
        "Observation" | "DocumentReference" => Some("subject"),
        _ => None,
    }
}

/// The patient id a clinical resource belongs to: its compartment element
/// must be a relative `Patient/{id}` reference.
pub fn compartment_of(resource_type: &str, resource: &Value) -> Result<String, Issue> {
    let element = compartment_element(resource_type).unwrap_or("subject");
    let at = format!("{resource_type}.{element}");
    let reference = resource[element]["reference"].as_str().ok_or_else(|| {
        Issue::error("required", format!("{element} must reference the Patient this record belongs to")).at(at.clone())
    })?;
    match reference.strip_prefix("Patient/") {
        Some(id) if super::primitives::is_id(id) => Ok(id.to_owned()),
        _ => Err(Issue::error("value", format!("{element} must be a reference of the form Patient/{{id}}")).at(at)),
    }
}

fn in_future(value: &str, now: OffsetDateTime) -> bool {
    datetime_bounds(value).is_some_and(|(first, _)| first > now)
}

/// Immunization: occurrence neither in the future nor before the patient's
/// birth; the lot not expired on the day of the occurrence; dose numbers
/// within their series; `not-done` says why.
pub fn immunization_rules(imm: &Value, birth_date: Option<&str>, now: OffsetDateTime) -> Vec<Issue> {
    let mut issues = super::cvx::check_vaccine_code(imm);
    if imm["status"] == "not-done" && imm.get("statusReason").is_none() {
        issues.push(
            Issue::error("required", "an immunization that was not done needs a statusReason")
                .at("Immunization.statusReason"),
        );
    }
    if let Some(when) = imm["occurrenceDateTime"].as_str() {
        let at = "Immunization.occurrenceDateTime";
        if in_future(when, now) {
            issues.push(Issue::error("business-rule", "the occurrence is in the future").at(at));
        }
        let occurred = datetime_bounds(when);
        if let (Some((_, last)), Some((born, _))) = (occurred, birth_date.and_then(datetime_bounds)) {
            if last < born {
                issues.push(Issue::error("business-rule", "the occurrence is before the patient's birth").at(at));
            }
        }
        if let (Some((first, _)), Some((_, expires))) =
            (occurred, imm["expirationDate"].as_str().and_then(datetime_bounds))
        {
            if expires < first {
                issues.push(
                    Issue::error("business-rule", "the vaccine lot had expired before the occurrence")
                        .at("Immunization.expirationDate"),
                );
            }
        }
    }
    for (i, p) in imm["protocolApplied"].as_array().into_iter().flatten().enumerate() {
        if let (Some(dose), Some(series)) = (p["doseNumberPositiveInt"].as_u64(), p["seriesDosesPositiveInt"].as_u64())
        {
            if dose > series {
                issues.push(
                    Issue::error("business-rule", format!("dose {dose} of a {series}-dose series"))
                        .at(format!("Immunization.protocolApplied[{i}].doseNumberPositiveInt")),
                );
            }
        }
    }
    issues
}

/// Observation: nothing observed or issued in the future.
pub fn observation_rules(obs: &Value, now: OffsetDateTime) -> Vec<Issue> {
    let mut issues: Vec<Issue> = ["effectiveDateTime", "effectiveInstant", "issued"]
        .into_iter()
        .filter(|k| obs[*k].as_str().is_some_and(|v| in_future(v, now)))
        .map(|k| Issue::error("business-rule", "this date is in the future").at(format!("Observation.{k}")))
        .collect();
    issues.extend(vital_sign_unit(&obs["code"], &obs["valueQuantity"], "Observation.valueQuantity"));
    for (i, c) in obs["component"].as_array().into_iter().flatten().enumerate() {
        issues.extend(vital_sign_unit(
            &c["code"],
            &c["valueQuantity"],
            &format!("Observation.component[{i}].valueQuantity"),
        ));
    }
    issues.extend(reference_range_rules(obs));
    issues
}

/// A quantity's value in `unit` (its own when the codes agree or either is
/// missing), converting between UCUM units of one dimension.
fn value_in(q: &Value, unit: Option<&str>) -> Option<f64> {
    let v = q["value"].as_f64()?;
    match (q["code"].as_str(), unit) {
        (Some(from), Some(to)) if from != to => ucum::convert(v, from, to),
        _ => Some(v),
    }
}

/// Laboratory results: a reference range runs from low to high in the
/// value's dimension (errors); an interpretation the value contradicts
/// against the first range (H at or under its high, L at or over its low,
/// N outside it) is a warning, since a clinician may have applied another.
fn reference_range_rules(obs: &Value) -> Vec<Issue> {
    let mut issues = vec![];
    let unit = obs["valueQuantity"]["code"].as_str();
    let mut first = None;
    for (i, r) in obs["referenceRange"].as_array().into_iter().flatten().enumerate() {
        let at = format!("Observation.referenceRange[{i}]");
        let (low, high) = (&r["low"], &r["high"]);
        let (lo, hi) = (value_in(low, unit), value_in(high, unit));
        let unconvertible = |q: &Value| q.get("value").is_some() && value_in(q, unit).is_none();
        if unconvertible(low) || unconvertible(high) {
            issues
                .push(Issue::error("business-rule", "the reference range is not in the dimension of the value").at(at));
            continue;
        }
        if let (Some(l), Some(h)) = (lo, hi) {
            if l > h {
                issues.push(Issue::error("business-rule", "the reference range's low is above its high").at(at));
                continue;
            }
        }
        first.get_or_insert((lo, hi));
    }
    let (Some(v), Some((lo, hi))) = (obs["valueQuantity"]["value"].as_f64(), first) else { return issues };
    let codes = obs["interpretation"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten());
    for c in codes.filter(|c| c["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation") {
        let contradicted = match c["code"].as_str().unwrap_or_default() {
            "H" | "HH" | "HU" => hi.is_some_and(|h| v <= h),
            "L" | "LL" | "LU" => lo.is_some_and(|l| v >= l),
            "N" => lo.is_some_and(|l| v < l) || hi.is_some_and(|h| v > h),
            _ => false,
        };
        if contradicted {
            issues.push(
                Issue::warning(
                    "business-rule",
                    "the interpretation does not agree with the value and its reference range",
                )
                .at("Observation.interpretation"),
            );
        }
    }
    issues
}

/// A vital sign's quantity must be in a UCUM unit of the sign's dimension
/// (any such unit: 160 [lb_av] is a body weight, 160 cm is not).
fn vital_sign_unit(code: &Value, quantity: &Value, at: &str) -> Option<Issue> {
    let dim = code["coding"]
        .as_array()?
        .iter()
        .filter(|c| c["system"] == "http://loinc.org")
        .find_map(|c| ucum::vital_sign_dimension(c["code"].as_str()?))?;
    quantity.as_object()?;
    let unit = quantity["code"].as_str().unwrap_or_default();
    let accepted = || ucum::units_of(dim).join(", ");
    if quantity["system"] != ucum::SYSTEM {
        return Some(
            Issue::error("value", format!("a vital sign is recorded in UCUM units ({})", accepted()))
                .at(format!("{at}.system")),
        );
    }
    match ucum::dimension(unit) {
        Some(d) if d == dim => None,
        Some(_) => Some(
            Issue::error(
                "business-rule",
                format!("the unit has the wrong dimension for this vital sign (use {})", accepted()),
            )
            .at(format!("{at}.code")),
        ),
        None => Some(
            Issue::error("code-invalid", format!("unit not recognised for this vital sign (use {})", accepted()))
                .at(format!("{at}.code")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> OffsetDateTime {
        datetime_bounds("2026-11-23T10:00:00Z").unwrap().0
    }

    fn at(issues: &[Issue]) -> Vec<String> {
        issues.iter().map(|i| i.expression.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn compartments_are_relative_patient_references() {
        let imm = json!({"patient": {"reference": "Patient/p-1"}});
        assert_eq!(compartment_of("Immunization", &imm).unwrap(), "p-1");
        for bad in
            [json!({}), json!({"subject": {"reference": "Group/g"}}), json!({"subject": {"reference": "Patient/a b"}})]
        {
            let issue = compartment_of("Observation", &bad).unwrap_err();
            assert_eq!(issue.expression.as_deref(), Some("Observation.subject"));
        }
        let absolute = json!({"subject": {"reference": "https://elsewhere.example/fhir/Patient/p-1"}});
        assert!(compartment_of("Observation", &absolute).is_err(), "records live in this server's compartments");
    }

    #[test]
    fn reference_ranges_and_interpretations() {
        let glucose = |value: f64, interp: &str, range: Value| {
            json!({"code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": interp}]}],
                "referenceRange": [range]})
        };
        let q = |v: f64, code: &str| json!({"value": v, "system": "http://unitsofmeasure.org", "code": code});
        let normal = json!({"low": q(3.9, "mmol/L"), "high": q(5.6, "mmol/L")});
        assert!(observation_rules(&glucose(5.0, "N", normal.clone()), now()).is_empty());
        assert!(observation_rules(&glucose(7.2, "H", normal.clone()), now()).is_empty());
        // A range in another unit of the dimension is converted (3900..5600 umol/L).
        let micro = json!({"low": q(3900.0, "umol/L"), "high": q(5600.0, "umol/L")});
        assert!(observation_rules(&glucose(7.2, "H", micro), now()).is_empty());
        let contradicted = observation_rules(&glucose(5.0, "H", normal.clone()), now());
        assert_eq!(at(&contradicted), ["Observation.interpretation"]);
        assert!(!contradicted[0].is_error(), "a warning: another range may have applied");
        let inverted = json!({"low": q(5.6, "mmol/L"), "high": q(3.9, "mmol/L")});
        assert_eq!(at(&observation_rules(&glucose(5.0, "N", inverted), now())), ["Observation.referenceRange[0]"]);
        let wrong_dimension = json!({"low": q(70.0, "mg/dL"), "high": q(100.0, "mg/dL")});
        let issues = observation_rules(&glucose(5.0, "N", wrong_dimension), now());
        assert_eq!(at(&issues), ["Observation.referenceRange[0]"]);
        assert!(issues[0].is_error());
    }

    #[test]
    fn vital_sign_units_must_have_the_right_dimension() {
        let weight = |q: Value| json!({"code": {"coding": [{"system": "http://loinc.org", "code": "29463-3"}]}, "valueQuantity": q});
        let ucum = "http://unitsofmeasure.org";
        assert!(observation_rules(&weight(json!({"value": 160, "system": ucum, "code": "[lb_av]"})), now()).is_empty());
        let cases = [
            (json!({"value": 160, "system": ucum, "code": "cm"}), "Observation.valueQuantity.code"),
            (json!({"value": 160, "system": ucum, "code": "stone"}), "Observation.valueQuantity.code"),
            (json!({"value": 160, "unit": "lb"}), "Observation.valueQuantity.system"),
        ];
        for (q, expected) in cases {
            assert_eq!(at(&observation_rules(&weight(q.clone()), now())), [expected], "{q}");
        }
        let bp = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}, "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "system": ucum, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80, "system": ucum, "code": "/min"}}
        ]});
        assert_eq!(at(&observation_rules(&bp, now())), ["Observation.component[1].valueQuantity.code"]);
        let lab = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, "valueQuantity": {"value": 5, "unit": "whatever"}});
        assert!(observation_rules(&lab, now()).is_empty(), "only vital signs are held to a dimension");
    }

    #[test]
    fn immunization_rules_each_at_their_element() {
        let ok = json!({
            "status": "completed", "occurrenceDateTime": "2026-11-20", "expirationDate": "2027-01-01",
            "protocolApplied": [{"doseNumberPositiveInt": 2, "seriesDosesPositiveInt": 2}]
        });
        assert!(immunization_rules(&ok, Some("1961-07-13"), now()).is_empty());
        // Today, at year precision: not in the future.
        assert!(immunization_rules(&json!({"occurrenceDateTime": "2026"}), None, now()).is_empty());

        let cases = [
            (json!({"status": "not-done"}), None, "Immunization.statusReason"),
            (json!({"occurrenceDateTime": "2026-11-24"}), None, "Immunization.occurrenceDateTime"),
            (json!({"occurrenceDateTime": "2026-11-23T10:30:00Z"}), None, "Immunization.occurrenceDateTime"),
            (json!({"occurrenceDateTime": "1960-01-01"}), Some("1961-07-13"), "Immunization.occurrenceDateTime"),
            (
                json!({"occurrenceDateTime": "2026-11-20", "expirationDate": "2026-11-19"}),
                None,
                "Immunization.expirationDate",
            ),
            (
                json!({"protocolApplied": [{}, {"doseNumberPositiveInt": 3, "seriesDosesPositiveInt": 2}]}),
                None,
                "Immunization.protocolApplied[1].doseNumberPositiveInt",
            ),
        ];
        for (imm, born, expected) in cases {
            assert_eq!(at(&immunization_rules(&imm, born, now())), vec![expected.to_owned()], "{imm}");
        }
    }

    #[test]
    fn observations_are_not_from_the_future() {
        let o = json!({"effectiveDateTime": "2026-11-23T09:00:00Z", "issued": "2026-11-23T09:05:00Z"});
        assert!(observation_rules(&o, now()).is_empty());
        let o = json!({"effectiveDateTime": "2027-01-01", "issued": "2026-12-01T00:00:00Z"});
        assert_eq!(at(&observation_rules(&o, now())), vec!["Observation.effectiveDateTime", "Observation.issued"]);
    }
}
