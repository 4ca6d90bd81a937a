//! Business rules of the clinical resources beyond what FHIR's definitions
//! say: what a clinician would call impossible data. Each broken rule is
//! one error located at its element.

use super::outcome::Issue;
use super::primitives::datetime_bounds;
use super::ucum;
use serde_json::Value;
use time::OffsetDateTime;

/// Every (type, search parameter) that links a compartment record to its
/// Patient: what `_include` follows to the Patient and `_revinclude` back.
pub fn patient_links() -> impl Iterator<Item = (&'static str, &'static str)> + Clone {
    super::resources::table()
        .types
        .iter()
        .flat_map(|t| t.patient_params().map(move |p| (t.name.as_str(), p.name.as_str())))
}

/// The compartment element of each clinical type: its patient reference.
pub fn compartment_element(resource_type: &str) -> Option<&'static str> {
    super::resources::compartment_type(resource_type).and_then(|t| t.compartment.as_deref())
}

/// The patient id a clinical resource belongs to: its compartment element
/// must be a relative `Patient/{id}` reference. A list (Provenance `target`,
/// Appointment `participant.actor`) may name other records too, but exactly
/// one patient: a record lives in one compartment, under one patient's key.
pub fn compartment_of(resource_type: &str, resource: &Value) -> Result<String, Issue> {
    let element = compartment_element(resource_type).unwrap_or("subject");
    let at = format!("{resource_type}.{element}");
    let missing =
        || Issue::error("required", format!("{element} must reference the Patient this record belongs to")).at(&at);
    let malformed =
        || Issue::error("value", format!("{element} must be a reference of the form Patient/{{id}}")).at(&at);
    let patient = |reference: &str| match reference.strip_prefix("Patient/") {
        Some(id) if super::primitives::is_id(id) => Ok(id.to_owned()),
        _ => Err(malformed()),
    };
    // The references at the element's path (`participant.actor`: in a
    // backbone list), and whether a list holds them.
    let (mut found, mut list) = (vec![resource], false);
    for step in element.split('.') {
        found = found
            .into_iter()
            .filter_map(|v| v.get(step))
            .flat_map(|v| match v {
                Value::Array(items) => {
                    list = true;
                    items.iter().collect()
                }
                v => vec![v],
            })
            .collect();
    }
    if !list {
        let reference = found.first().and_then(|r| r["reference"].as_str());
        return patient(reference.ok_or_else(missing)?);
    }
    let named: std::collections::BTreeSet<String> = found
        .iter()
        .filter_map(|r| r["reference"].as_str().filter(|r| r.starts_with("Patient/")))
        .map(patient)
        .collect::<Result<_, _>>()?;
    match named.len() {
        0 => Err(missing()),
        1 => Ok(named.into_iter().next().expect("one")),
        _ => {
            Err(Issue::error("business-rule", format!("{element} names several patients: a record belongs to one"))
                .at(&at))
        }
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

/// The business rules of a compartment type (its R4 invariants are the
/// validator's); `birth_date` is the patient's, for the types whose
/// `needs_birth_date`.
pub fn rules(ty: &str, r: &Value, birth_date: Option<&str>, now: OffsetDateTime) -> Vec<Issue> {
    match ty {
        "Immunization" => immunization_rules(r, birth_date, now),
        "Observation" => observation_rules(r, now),
        "Condition" => condition_rules(r, birth_date, now),
        "AllergyIntolerance" => allergy_rules(r, birth_date, now),
        "MedicationRequest" => medication_request_rules(r, now),
        "Encounter" => encounter_rules(r, now),
        _ => vec![],
    }
}

pub fn needs_birth_date(ty: &str) -> bool {
    matches!(ty, "Immunization" | "Condition" | "AllergyIntolerance")
}

/// An event of the patient's life: neither in the future nor before birth.
fn life_event(r: &Value, element: &str, at: &str, birth_date: Option<&str>, now: OffsetDateTime) -> Option<Issue> {
    let when = datetime_bounds(r[element].as_str()?)?;
    if when.0 > now {
        return Some(Issue::error("business-rule", "this date is in the future").at(at));
    }
    let born = birth_date.and_then(datetime_bounds)?;
    (when.1 < born.0).then(|| Issue::error("business-rule", "this date is before the patient's birth").at(at))
}

/// `later` (an element of `r`) must not be before `earlier`.
fn not_before(r: &Value, earlier: &str, later: &str, at: &str, what: &str) -> Option<Issue> {
    let first = datetime_bounds(r[earlier].as_str()?)?;
    let then = datetime_bounds(r[later].as_str()?)?;
    (then.1 < first.0).then(|| Issue::error("business-rule", what.to_owned()).at(at))
}

/// Condition: onset and recording neither in the future nor before birth;
/// abatement not before onset.
pub fn condition_rules(c: &Value, birth_date: Option<&str>, now: OffsetDateTime) -> Vec<Issue> {
    [
        life_event(c, "onsetDateTime", "Condition.onsetDateTime", birth_date, now),
        life_event(c, "recordedDate", "Condition.recordedDate", None, now),
        not_before(
            c,
            "onsetDateTime",
            "abatementDateTime",
            "Condition.abatementDateTime",
            "the condition abated before its onset",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// AllergyIntolerance: onset neither in the future nor before birth, the
/// last occurrence not before the onset; a high criticality whose every
/// recorded reaction was mild is questioned (a warning: criticality is the
/// potential harm, which a mild history may understate).
pub fn allergy_rules(a: &Value, birth_date: Option<&str>, now: OffsetDateTime) -> Vec<Issue> {
    let mut issues: Vec<Issue> = [
        life_event(a, "onsetDateTime", "AllergyIntolerance.onsetDateTime", birth_date, now),
        life_event(a, "lastOccurrence", "AllergyIntolerance.lastOccurrence", birth_date, now),
        not_before(
            a,
            "onsetDateTime",
            "lastOccurrence",
            "AllergyIntolerance.lastOccurrence",
            "the last occurrence is before the onset",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let severities: Vec<&str> =
        a["reaction"].as_array().into_iter().flatten().filter_map(|r| r["severity"].as_str()).collect();
    if a["criticality"] == "high" && !severities.is_empty() && severities.iter().all(|s| *s == "mild") {
        issues.push(
            Issue::warning("business-rule", "criticality is high but every recorded reaction was mild")
                .at("AllergyIntolerance.criticality"),
        );
    }
    issues
}

/// MedicationRequest: not authored in the future; each dose positive, a
/// dose range running from low to high, no dose above the maximum per
/// administration, and a frequency or period range in order.
pub fn medication_request_rules(m: &Value, now: OffsetDateTime) -> Vec<Issue> {
    let mut issues: Vec<Issue> =
        life_event(m, "authoredOn", "MedicationRequest.authoredOn", None, now).into_iter().collect();
    for (i, d) in m["dosageInstruction"].as_array().into_iter().flatten().enumerate() {
        let at = format!("MedicationRequest.dosageInstruction[{i}]");
        let max = &d["maxDosePerAdministration"];
        for (j, dr) in d["doseAndRate"].as_array().into_iter().flatten().enumerate() {
            let here = format!("{at}.doseAndRate[{j}]");
            let dose = &dr["doseQuantity"];
            if dose["value"].as_f64().is_some_and(|v| v <= 0.0) {
                issues.push(
                    Issue::error("business-rule", "a dose is more than nothing").at(format!("{here}.doseQuantity")),
                );
            }
            let range = &dr["doseRange"];
            if let (Some(lo), Some(hi)) =
                (value_in(&range["low"], None), value_in(&range["high"], range["low"]["code"].as_str()))
            {
                if lo > hi {
                    issues.push(
                        Issue::error("business-rule", "the dose range's low is above its high")
                            .at(format!("{here}.doseRange")),
                    );
                }
            }
            let unit = dose["code"].as_str();
            if let (Some(v), Some(limit)) = (dose["value"].as_f64(), value_in(max, unit)) {
                if v > limit {
                    issues.push(
                        Issue::error("business-rule", "the dose is above the maximum per administration")
                            .at(format!("{here}.doseQuantity")),
                    );
                }
            }
        }
        let repeat = &d["timing"]["repeat"];
        let pairs = [("frequency", "frequencyMax"), ("period", "periodMax"), ("duration", "durationMax")];
        for (lo, hi) in pairs {
            if let (Some(a), Some(b)) = (repeat[lo].as_f64(), repeat[hi].as_f64()) {
                if b < a {
                    issues.push(
                        Issue::error("business-rule", format!("{hi} is below {lo}"))
                            .at(format!("{at}.timing.repeat.{hi}")),
                    );
                }
            }
        }
        if repeat["period"].as_f64().is_some_and(|p| p <= 0.0) {
            issues.push(
                Issue::error("business-rule", "a period is more than nothing").at(format!("{at}.timing.repeat.period")),
            );
        }
    }
    issues
}

/// Encounter: one that has begun cannot start in the future, its length is
/// not negative, and a finished one without an end is questioned (warning).
pub fn encounter_rules(e: &Value, now: OffsetDateTime) -> Vec<Issue> {
    let mut issues = vec![];
    let status = e["status"].as_str().unwrap_or_default();
    let begun = matches!(status, "arrived" | "triaged" | "in-progress" | "onleave" | "finished");
    let start = e["period"]["start"].as_str().and_then(datetime_bounds);
    if begun && start.is_some_and(|s| s.0 > now) {
        issues.push(
            Issue::error("business-rule", format!("an encounter that is {status} cannot start in the future"))
                .at("Encounter.period.start"),
        );
    }
    if e["length"]["value"].as_f64().is_some_and(|v| v < 0.0) {
        issues.push(Issue::error("business-rule", "the length is negative").at("Encounter.length"));
    }
    if status == "finished" && e["period"].is_object() && e["period"].get("end").is_none() {
        issues.push(Issue::warning("business-rule", "a finished encounter has no end").at("Encounter.period.end"));
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
    fn a_list_of_references_names_exactly_one_patient() {
        let targets =
            |refs: &[&str]| json!({"target": refs.iter().map(|r| json!({"reference": r})).collect::<Vec<_>>()});
        let one = targets(&["Observation/o-1", "Patient/p-1", "Encounter/e-1", "Patient/p-1"]);
        assert_eq!(compartment_of("Provenance", &one).unwrap(), "p-1");
        let several = compartment_of("Provenance", &targets(&["Patient/p-1", "Patient/p-2"])).unwrap_err();
        assert_eq!(several.code, "business-rule");
        let none = compartment_of("Provenance", &targets(&["Observation/o-1"])).unwrap_err();
        assert_eq!((none.code, none.expression.as_deref()), ("required", Some("Provenance.target")));
        assert!(compartment_of("Provenance", &targets(&["Patient/a b"])).is_err());

        // In a backbone list: Appointment's participants, one of them the patient.
        let actors = |refs: &[&str]| json!({"participant": refs.iter().map(|r| json!({"actor": {"reference": r}, "status": "accepted"})).collect::<Vec<_>>()});
        assert_eq!(compartment_of("Appointment", &actors(&["Practitioner/d-1", "Patient/p-1"])).unwrap(), "p-1");
        assert_eq!(
            compartment_of("Appointment", &actors(&["Patient/p-1", "Patient/p-2"])).unwrap_err().code,
            "business-rule"
        );
        let none = compartment_of("Appointment", &actors(&["Practitioner/d-1"])).unwrap_err();
        assert_eq!((none.code, none.expression.as_deref()), ("required", Some("Appointment.participant.actor")));
        assert_eq!(compartment_of("Appointment", &json!({"status": "booked"})).unwrap_err().code, "required");
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
    fn condition_allergy_medication_and_encounter_rules() {
        let born = Some("1961-07-13");
        let c = json!({"onsetDateTime": "2019-03-01", "abatementDateTime": "2020-01-01", "recordedDate": "2019-03-02"});
        assert!(condition_rules(&c, born, now()).is_empty());
        let cases = [
            (json!({"onsetDateTime": "1950"}), "Condition.onsetDateTime"),
            (json!({"onsetDateTime": "2027-01-01"}), "Condition.onsetDateTime"),
            (json!({"onsetDateTime": "2019-03-01", "abatementDateTime": "2018"}), "Condition.abatementDateTime"),
            (json!({"recordedDate": "2026-12-01"}), "Condition.recordedDate"),
        ];
        for (c, expected) in cases {
            assert_eq!(at(&condition_rules(&c, born, now())), [expected], "{c}");
        }

        let a = json!({"onsetDateTime": "2001", "lastOccurrence": "2000-06-01T00:00:00Z"});
        assert_eq!(at(&allergy_rules(&a, born, now())), ["AllergyIntolerance.lastOccurrence"]);
        let mild = json!({"criticality": "high", "reaction": [{"severity": "mild"}, {"severity": "mild"}]});
        let issues = allergy_rules(&mild, born, now());
        assert_eq!(at(&issues), ["AllergyIntolerance.criticality"]);
        assert!(!issues[0].is_error());
        let severe = json!({"criticality": "high", "reaction": [{"severity": "mild"}, {"severity": "severe"}]});
        assert!(allergy_rules(&severe, born, now()).is_empty());

        let mg = |v: f64| json!({"value": v, "system": "http://unitsofmeasure.org", "code": "mg"});
        let good = json!({"authoredOn": "2026-11-01", "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 1, "frequencyMax": 3, "period": 1, "periodUnit": "d"}},
            "maxDosePerAdministration": mg(1000.0),
            "doseAndRate": [{"doseQuantity": mg(500.0)}, {"doseRange": {"low": mg(250.0), "high": json!({"value": 0.5, "system": "http://unitsofmeasure.org", "code": "g"})}}]}]});
        assert!(medication_request_rules(&good, now()).is_empty());
        let bad = json!({"authoredOn": "2027-01-01", "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 4, "frequencyMax": 2, "period": 0}},
            "maxDosePerAdministration": json!({"value": 0.4, "system": "http://unitsofmeasure.org", "code": "g"}),
            "doseAndRate": [{"doseQuantity": mg(500.0)}, {"doseQuantity": mg(0.0)}, {"doseRange": {"low": mg(300.0), "high": mg(200.0)}}]}]});
        assert_eq!(
            at(&medication_request_rules(&bad, now())),
            [
                "MedicationRequest.authoredOn",
                "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity",
                "MedicationRequest.dosageInstruction[0].doseAndRate[1].doseQuantity",
                "MedicationRequest.dosageInstruction[0].doseAndRate[2].doseRange",
                "MedicationRequest.dosageInstruction[0].timing.repeat.frequencyMax",
                "MedicationRequest.dosageInstruction[0].timing.repeat.period",
            ]
        );

        let e =
            json!({"status": "finished", "period": {"start": "2026-11-01T09:00:00Z", "end": "2026-11-01T10:00:00Z"}});
        assert!(encounter_rules(&e, now()).is_empty());
        let planned = json!({"status": "planned", "period": {"start": "2027-01-01"}});
        assert!(encounter_rules(&planned, now()).is_empty(), "a planned encounter lies ahead");
        let e = json!({"status": "in-progress", "period": {"start": "2027-01-01"}, "length": {"value": -5}});
        assert_eq!(at(&encounter_rules(&e, now())), ["Encounter.period.start", "Encounter.length"]);
        let open = encounter_rules(&json!({"status": "finished", "period": {"start": "2026-11-01"}}), now());
        assert_eq!(at(&open), ["Encounter.period.end"]);
        assert!(!open[0].is_error());
    }

    #[test]
    fn observations_are_not_from_the_future() {
        let o = json!({"effectiveDateTime": "2026-11-23T09:00:00Z", "issued": "2026-11-23T09:05:00Z"});
        assert!(observation_rules(&o, now()).is_empty());
        let o = json!({"effectiveDateTime": "2027-01-01", "issued": "2026-12-01T00:00:00Z"});
        assert_eq!(at(&observation_rules(&o, now())), vec!["Observation.effectiveDateTime", "Observation.issued"]);
    }
}
