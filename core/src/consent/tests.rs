//! The decision table: every R4 Consent element medrec enforces, each with
//! an access it covers and one it does not, plus the combinations
//! (nesting, siblings, several consents, defaults, break-glass, unknowns).

use super::*;
use serde_json::json;

const NOW: &str = "2026-11-23T10:00:00Z";
const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn consent(id: &str, status: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"system": V3, "code": "OPTIN"}]},
        "provision": provision
    })
}

fn actor(reference: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]}, "reference": {"reference": reference}})
}

fn role(name: &str) -> Value {
    json!({"role": {"coding": [{"system": ROLE_SYSTEM, "code": name}]}, "reference": {"reference": format!("Group/{name}")}})
}

fn purpose(code: &str) -> Value {
    json!({"system": PURPOSE_SYSTEM, "code": code})
}

fn class(ty: &str) -> Value {
    json!({"system": CLASS_SYSTEM, "code": ty})
}

fn action(code: &str) -> Value {
    json!({"coding": [{"system": ACTION_SYSTEM, "code": code}]})
}

/// A deny nested in a permit: the usual "everything but ..." consent.
fn deny_only(id: &str, conditions: Value) -> Value {
    let mut nested = conditions;
    nested["type"] = json!("deny");
    consent(id, "active", json!({"type": "permit", "provision": [nested]}))
}

fn obs() -> Value {
    json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "meta": {"lastUpdated": "2026-11-01T00:00:00Z", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}],
                 "profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/author-1"}],
        "derivedFrom": [{"reference": "Observation/base"}],
        "effectiveDateTime": "2019-05-02T08:00:00Z"})
}

fn other_obs() -> Value {
    json!({"resourceType": "Observation", "id": "o2", "status": "final",
        "meta": {"lastUpdated": "2026-11-01T00:00:00Z"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-02T08:00:00Z"})
}

/// One access of the table: who, why, what.
#[derive(Clone)]
struct Access {
    actor: Option<&'static str>,
    roles: Vec<&'static str>,
    purpose: &'static str,
    ty: &'static str,
    data: Option<Value>,
    action: Option<&'static str>,
    break_glass: bool,
}

fn dr1() -> Access {
    Access {
        actor: Some("Practitioner/dr-1"),
        roles: vec!["clinician"],
        purpose: "TREAT",
        ty: "Observation",
        data: Some(obs()),
        action: Some("access"),
        break_glass: false,
    }
}

fn run(consents: &[Value], related: &[(&str, &[&str])], default: DefaultPolicy, a: &Access) -> Decision {
    let reference = a.data.as_ref().map(|d| format!("{}/{}", a.ty, d["id"].as_str().unwrap_or("x")));
    let req = AccessRequest {
        actor: a.actor,
        roles: &a.roles,
        purpose: a.purpose,
        resource_type: a.ty,
        data: a.data.as_ref().zip(reference.as_deref()).map(|(resource, reference)| Data { reference, resource }),
        action: a.action,
        break_glass: a.break_glass,
        now: NOW,
    };
    let set = Consents {
        resources: consents.to_vec(),
        related: related.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
    };
    decide(&set, &req, default)
}

fn denied(id: &str) -> Decision {
    Decision::Deny { consent: Some(id.into()) }
}

struct Row {
    case: &'static str,
    consents: Vec<Value>,
    default: DefaultPolicy,
    access: Access,
    expect: Decision,
}

fn rows() -> Vec<Row> {
    use DefaultPolicy::*;
    let permit = Decision::Permit;
    let with = |f: &dyn Fn(&mut Access)| {
        let mut a = dr1();
        f(&mut a);
        a
    };
    let r = |case, consents: Vec<Value>, default, access, expect| Row { case, consents, default, access, expect };
    vec![
        // Defaults and status.
        r("no consent, opt-in", vec![], OptIn, dr1(), Decision::Deny { consent: None }),
        r("no consent, opt-out", vec![], OptOut, dr1(), permit.clone()),
        r("permit", vec![consent("c", "active", json!({"type": "permit"}))], OptIn, dr1(), permit.clone()),
        r("revoked deny", vec![consent("c", "inactive", json!({"type": "deny"}))], OptOut, dr1(), permit.clone()),
        r("draft deny", vec![consent("c", "draft", json!({"type": "deny"}))], OptOut, dr1(), permit.clone()),
        r(
            "revoked permit under opt-in",
            vec![consent("c", "inactive", json!({"type": "permit"}))],
            OptIn,
            dr1(),
            Decision::Deny { consent: None },
        ),
        r(
            "another scope is not a privacy consent",
            vec![{
                let mut c = consent("c", "active", json!({"type": "deny"}));
                c["scope"]["coding"][0]["code"] = json!("research");
                c
            }],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // The base rule of a root without a type: policyRule.
        r(
            "root without type under OPTOUT denies",
            vec![{
                let mut c = consent("c-out", "active", json!({"actor": [actor("Practitioner/dr-1")]}));
                c["policyRule"]["coding"][0]["code"] = json!("OPTOUT");
                c
            }],
            OptOut,
            dr1(),
            denied("c-out"),
        ),
        r(
            "root without type under OPTIN permits",
            vec![consent("c-in", "active", json!({"actor": [actor("Practitioner/dr-1")]}))],
            OptIn,
            dr1(),
            permit.clone(),
        ),
        r(
            "a consent without provisions is its policy rule",
            vec![{
                let mut c = consent("c-all", "active", json!(null));
                c.as_object_mut().unwrap().remove("provision");
                c["policyRule"]["coding"][0]["code"] = json!("OPTOUT");
                c
            }],
            OptOut,
            dr1(),
            denied("c-all"),
        ),
        // period (of the provision: when it holds).
        r(
            "expired deny",
            vec![consent(
                "c",
                "active",
                json!({"type": "deny", "period": {"start": "2020-01-01", "end": "2025-12-31"}}),
            )],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "deny not yet begun",
            vec![consent("c", "active", json!({"type": "deny", "period": {"start": "2027-01-01"}}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "permit through today",
            vec![consent("c", "active", json!({"type": "permit", "period": {"end": "2026-11-23"}}))],
            OptIn,
            dr1(),
            permit.clone(),
        ),
        r(
            "expired permit: back to opt-in",
            vec![consent("c", "active", json!({"type": "permit", "period": {"end": "2026-11-22"}}))],
            OptIn,
            dr1(),
            Decision::Deny { consent: None },
        ),
        r(
            "nested period",
            vec![deny_only("c-np", json!({"period": {"start": "2026-11-01", "end": "2026-11-30"}}))],
            OptOut,
            dr1(),
            denied("c-np"),
        ),
        // actor: by reference, by medrec role, unknown.
        r(
            "actor: that person",
            vec![deny_only("c-a", json!({"actor": [actor("Practitioner/dr-1")]}))],
            OptOut,
            dr1(),
            denied("c-a"),
        ),
        r(
            "actor: another person",
            vec![deny_only("c-a", json!({"actor": [actor("Practitioner/dr-2")]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "actor: a token naming no person cannot escape a refusal naming one",
            vec![deny_only("c-a", json!({"actor": [actor("Practitioner/dr-2")]}))],
            OptOut,
            with(&|a| a.actor = None),
            denied("c-a"),
        ),
        r(
            "actor: nor gain a permit naming one",
            vec![consent(
                "c-p",
                "active",
                json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/dr-1")]}]}),
            )],
            OptOut,
            with(&|a| a.actor = None),
            denied("c-p"),
        ),
        r(
            "actor: by medrec role",
            vec![deny_only("c-r", json!({"actor": [role("registrar")]}))],
            OptOut,
            with(&|a| a.roles = vec!["registrar"]),
            denied("c-r"),
        ),
        r(
            "actor: another role",
            vec![deny_only("c-r", json!({"actor": [role("registrar")]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "actor: a participation role is not a medrec role",
            vec![deny_only(
                "c-r",
                json!({"actor": [{"role": {"coding": [{"code": "clinician"}]}, "reference": {"reference": "Practitioner/x"}}]}),
            )],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // purpose, by system and code.
        r(
            "purpose: research denied",
            vec![deny_only("c-p", json!({"purpose": [purpose("HRESCH")]}))],
            OptOut,
            with(&|a| a.purpose = "HRESCH"),
            denied("c-p"),
        ),
        r(
            "purpose: treatment unaffected",
            vec![deny_only("c-p", json!({"purpose": [purpose("HRESCH")]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "purpose: same code, other system",
            vec![deny_only("c-p", json!({"purpose": [{"system": "urn:other", "code": "TREAT"}]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // class, by system and code; profiles.
        r(
            "class: the type",
            vec![deny_only("c-c", json!({"class": [class("Observation")]}))],
            OptOut,
            dr1(),
            denied("c-c"),
        ),
        r(
            "class: another type",
            vec![deny_only("c-c", json!({"class": [class("Observation")]}))],
            OptOut,
            with(&|a| a.ty = "Immunization"),
            permit.clone(),
        ),
        r(
            "class: same code, other system",
            vec![deny_only("c-c", json!({"class": [{"system": "urn:other", "code": "Observation"}]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "class: a profile the resource claims",
            vec![deny_only(
                "c-c",
                json!({"class": [{"system": PROFILE_CLASS_SYSTEM, "code": "http://hl7.org/fhir/StructureDefinition/heartrate"}]}),
            )],
            OptOut,
            dr1(),
            denied("c-c"),
        ),
        r(
            "class: a profile it does not",
            vec![deny_only(
                "c-c",
                json!({"class": [{"system": PROFILE_CLASS_SYSTEM, "code": "http://hl7.org/fhir/StructureDefinition/bp"}]}),
            )],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // action.
        r(
            "action: access denied",
            vec![deny_only("c-x", json!({"action": [action("access")]}))],
            OptOut,
            dr1(),
            denied("c-x"),
        ),
        r(
            "action: disclose denied, access permitted",
            vec![deny_only("c-x", json!({"action": [action("disclose")]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "action: correct denied covers an update",
            vec![deny_only("c-x", json!({"action": [action("correct")]}))],
            OptOut,
            with(&|a| a.action = Some("correct")),
            denied("c-x"),
        ),
        // securityLabel.
        r(
            "securityLabel: labelled data",
            vec![deny_only(
                "c-s",
                json!({"securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}),
            )],
            OptOut,
            dr1(),
            denied("c-s"),
        ),
        r(
            "securityLabel: unlabelled data",
            vec![deny_only(
                "c-s",
                json!({"securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}),
            )],
            OptOut,
            with(&|a| a.data = Some(other_obs())),
            permit.clone(),
        ),
        r(
            "securityLabel: same code, other system",
            vec![deny_only("c-s", json!({"securityLabel": [{"system": "urn:other", "code": "PSY"}]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // code (found anywhere in the instance).
        r(
            "code: found",
            vec![deny_only("c-k", json!({"code": [{"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}]}))],
            OptOut,
            dr1(),
            denied("c-k"),
        ),
        r(
            "code: not found",
            vec![deny_only("c-k", json!({"code": [{"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}]}))],
            OptOut,
            with(&|a| a.data = Some(other_obs())),
            permit.clone(),
        ),
        r(
            "code: same code, other system",
            vec![deny_only("c-k", json!({"code": [{"coding": [{"system": "urn:other", "code": "8867-4"}]}]}))],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // dataPeriod (the data's clinical time).
        r(
            "dataPeriod: data from then",
            vec![deny_only("c-d", json!({"dataPeriod": {"start": "2019-01-01", "end": "2019-12-31"}}))],
            OptOut,
            dr1(),
            denied("c-d"),
        ),
        r(
            "dataPeriod: data from another time",
            vec![deny_only("c-d", json!({"dataPeriod": {"start": "2019-01-01", "end": "2019-12-31"}}))],
            OptOut,
            with(&|a| a.data = Some(other_obs())),
            permit.clone(),
        ),
        // data: instance, related, dependents, authoredby.
        r(
            "data instance: that resource",
            vec![deny_only(
                "c-i",
                json!({"data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]}),
            )],
            OptOut,
            dr1(),
            denied("c-i"),
        ),
        r(
            "data instance: another resource",
            vec![deny_only(
                "c-i",
                json!({"data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]}),
            )],
            OptOut,
            with(&|a| a.data = Some(other_obs())),
            permit.clone(),
        ),
        r(
            "data dependents: a resource referring to it",
            vec![deny_only(
                "c-dep",
                json!({"data": [{"meaning": "dependents", "reference": {"reference": "Observation/base"}}]}),
            )],
            OptOut,
            dr1(),
            denied("c-dep"),
        ),
        r(
            "data dependents: one that does not",
            vec![deny_only(
                "c-dep",
                json!({"data": [{"meaning": "dependents", "reference": {"reference": "Observation/base"}}]}),
            )],
            OptOut,
            with(&|a| a.data = Some(other_obs())),
            permit.clone(),
        ),
        r(
            "data authoredby: written by them",
            vec![deny_only(
                "c-au",
                json!({"data": [{"meaning": "authoredby", "reference": {"reference": "Practitioner/author-1"}}]}),
            )],
            OptOut,
            dr1(),
            denied("c-au"),
        ),
        r(
            "data authoredby: written by another",
            vec![deny_only(
                "c-au",
                json!({"data": [{"meaning": "authoredby", "reference": {"reference": "Practitioner/author-2"}}]}),
            )],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        // Nesting: exceptions, and deny overriding permit among siblings.
        r(
            "nested exception: all but my GP",
            vec![consent(
                "c-n",
                "active",
                json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/dr-1")]}]}),
            )],
            OptOut,
            dr1(),
            permit.clone(),
        ),
        r(
            "nested exception: others still denied",
            vec![consent(
                "c-n",
                "active",
                json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/gp")]}]}),
            )],
            OptOut,
            dr1(),
            denied("c-n"),
        ),
        r(
            "nested twice: GP but not for research",
            vec![consent(
                "c-deep",
                "active",
                json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/dr-1")], "provision": [{"type": "deny", "purpose": [purpose("HRESCH")]}]}]}),
            )],
            OptOut,
            with(&|a| a.purpose = "HRESCH"),
            denied("c-deep"),
        ),
        r(
            "siblings: a permit for one record does not permit the rest",
            vec![consent(
                "c-sib",
                "active",
                json!({"type": "deny", "provision": [
            {"type": "permit", "data": [{"meaning": "instance", "reference": {"reference": "Observation/o2"}}]}]}),
            )],
            OptOut,
            dr1(),
            denied("c-sib"),
        ),
        r(
            "siblings: deny overrides permit",
            vec![consent(
                "c-sib",
                "active",
                json!({"type": "permit", "provision": [
            {"type": "permit", "class": [class("Observation")]},
            {"type": "deny", "actor": [actor("Practitioner/dr-1")]}]}),
            )],
            OptIn,
            dr1(),
            denied("c-sib"),
        ),
        r(
            "siblings: order does not matter",
            vec![consent(
                "c-sib",
                "active",
                json!({"type": "permit", "provision": [
            {"type": "deny", "actor": [actor("Practitioner/dr-1")]},
            {"type": "permit", "class": [class("Observation")]}]}),
            )],
            OptIn,
            dr1(),
            denied("c-sib"),
        ),
        r(
            "a nested provision without a type denies",
            vec![consent(
                "c-nt",
                "active",
                json!({"type": "permit", "provision": [{"actor": [actor("Practitioner/dr-1")]}]}),
            )],
            OptIn,
            dr1(),
            denied("c-nt"),
        ),
        // Across consents.
        r(
            "deny wins over a permit",
            vec![
                consent("c-p", "active", json!({"type": "permit"})),
                deny_only("c-a", json!({"actor": [actor("Practitioner/dr-1")]})),
            ],
            OptIn,
            dr1(),
            denied("c-a"),
        ),
        // Break-glass: reads only.
        r(
            "break-glass overrides a deny",
            vec![deny_only("c-a", json!({"actor": [actor("Practitioner/dr-1")]}))],
            OptIn,
            with(&|a| {
                a.break_glass = true;
                a.purpose = "ETREAT";
            }),
            Decision::BreakGlass { consent: Some("c-a".into()) },
        ),
        r(
            "break-glass overrides the opt-in default",
            vec![],
            OptIn,
            with(&|a| {
                a.break_glass = true;
                a.purpose = "ETREAT";
            }),
            Decision::BreakGlass { consent: None },
        ),
        r(
            "break-glass where nothing denies is a plain permit",
            vec![],
            OptOut,
            with(&|a| {
                a.break_glass = true;
                a.purpose = "ETREAT";
            }),
            permit.clone(),
        ),
        r(
            "break-glass never covers a change",
            vec![deny_only("c-a", json!({"actor": [actor("Practitioner/dr-1")]}))],
            OptOut,
            with(&|a| {
                a.break_glass = true;
                a.purpose = "ETREAT";
                a.action = Some("correct");
            }),
            denied("c-a"),
        ),
        // Unknown data (before reading) resolves toward denial in a final decision.
        r(
            "data not known: a code-limited deny applies",
            vec![deny_only("c-k", json!({"code": [{"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}]}))],
            OptOut,
            with(&|a| a.data = None),
            denied("c-k"),
        ),
        r(
            "data not known: a code-limited permit does not",
            vec![consent(
                "c-k",
                "active",
                json!({"type": "deny", "provision": [{"type": "permit", "code": [{"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}]}]}),
            )],
            OptOut,
            with(&|a| a.data = None),
            denied("c-k"),
        ),
    ]
}

#[test]
fn decision_table() {
    let rows = rows();
    let mut failures = vec![];
    for r in &rows {
        let got = run(&r.consents, &[], r.default, &r.access);
        if got != r.expect {
            failures.push(format!("{}: expected {:?}, got {got:?}", r.case, r.expect));
        }
    }
    println!("{} decision table rows", rows.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn related_data_covers_what_the_instance_refers_to() {
    let c = deny_only(
        "c-rel",
        json!({"data": [{"meaning": "related", "reference": {"reference": "DiagnosticReport/r1"}}]}),
    );
    assert_eq!(related_targets(std::slice::from_ref(&c)), vec!["DiagnosticReport/r1".to_owned()]);
    // The report refers to o1 (as its result): o1 is covered, o2 is not.
    let related: &[(&str, &[&str])] = &[("DiagnosticReport/r1", &["Observation/o1", "Patient/p1"])];
    assert_eq!(run(std::slice::from_ref(&c), related, DefaultPolicy::OptOut, &dr1()), denied("c-rel"));
    let mut a = dr1();
    a.data = Some(other_obs());
    assert_eq!(run(&[c], related, DefaultPolicy::OptOut, &a), Decision::Permit);
}

#[test]
fn before_reading_only_a_refusal_no_data_could_lift_is_final() {
    let set = |c: Vec<Value>| Consents { resources: c, related: HashMap::new() };
    let req = |ty| AccessRequest {
        actor: Some("Practitioner/dr-1"),
        roles: &["clinician"],
        purpose: "TREAT",
        resource_type: ty,
        data: None,
        action: Some("access"),
        break_glass: false,
        now: NOW,
    };
    // A deny of one code: other Observations may be read.
    let by_code =
        set(vec![deny_only("c-k", json!({"code": [{"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}]}))]);
    assert_eq!(decide_before_reading(&by_code, &req("Observation"), DefaultPolicy::OptOut), Decision::Permit);
    // A deny of the whole class: refused before reading.
    let by_class = set(vec![deny_only("c-c", json!({"class": [class("Observation")]}))]);
    assert_eq!(decide_before_reading(&by_class, &req("Observation"), DefaultPolicy::OptOut), denied("c-c"));
    assert_eq!(decide_before_reading(&by_class, &req("Immunization"), DefaultPolicy::OptOut), Decision::Permit);
    // Deny all but one record: that record may be permitted.
    let but_one = set(vec![consent(
        "c-b",
        "active",
        json!({"type": "deny", "provision": [{"type": "permit", "data": [{"meaning": "instance", "reference": {"reference": "Observation/o2"}}]}]}),
    )]);
    assert_eq!(decide_before_reading(&but_one, &req("Observation"), DefaultPolicy::OptOut), Decision::Permit);
}

#[test]
fn an_actor_refused_anything_is_found_whatever_the_data() {
    let set = |c: Vec<Value>| Consents { resources: c, related: HashMap::new() };
    let me = |actor| AccessRequest {
        actor,
        roles: &["clinician"],
        purpose: "TREAT",
        resource_type: "Consent",
        data: None,
        action: None,
        break_glass: false,
        now: NOW,
    };
    let all = ["Patient", "Observation", "Consent"];
    let clinician = all;
    let privacy_office = ["Patient", "Consent"];
    // A refusal limited to Observations still refuses dr-2 (attack 1).
    let obs_only =
        set(vec![deny_only("c-o", json!({"actor": [actor("Practitioner/dr-2")], "class": [class("Observation")]}))]);
    assert_eq!(refusing(&obs_only, &me(Some("Practitioner/dr-2")), &clinician, &all).as_deref(), Some("c-o"));
    assert_eq!(refusing(&obs_only, &me(Some("Practitioner/dr-1")), &clinician, &all), None);
    // Naming the actor refuses them even data they never reach.
    assert_eq!(refusing(&obs_only, &me(Some("Practitioner/dr-2")), &privacy_office, &all).as_deref(), Some("c-o"));
    // An action-limited or code-limited refusal too.
    let one_code = set(vec![deny_only(
        "c-k",
        json!({"actor": [actor("Practitioner/dr-2")], "action": [action("disclose")], "code": [{"coding": [{"system": "http://loinc.org", "code": "1"}]}]}),
    )]);
    assert_eq!(refusing(&one_code, &me(Some("Practitioner/dr-2")), &clinician, &all).as_deref(), Some("c-k"));
    // A token naming nobody is taken to be whoever is refused.
    assert_eq!(refusing(&obs_only, &me(None), &clinician, &all).as_deref(), Some("c-o"));
    // A refusal naming nobody binds the data a user reaches, not beyond.
    let blanket = set(vec![consent(
        "c-b",
        "active",
        json!({"type": "deny", "class": [class("Observation")], "provision": [{"type": "permit", "actor": [actor("Practitioner/gp")]}]}),
    )]);
    assert_eq!(refusing(&blanket, &me(Some("Practitioner/dr-1")), &clinician, &all).as_deref(), Some("c-b"));
    assert_eq!(refusing(&blanket, &me(Some("Practitioner/r")), &privacy_office, &all), None);
    assert_eq!(
        refusing(&blanket, &me(Some("Practitioner/gp")), &clinician, &all),
        None,
        "the exception is not refused"
    );
    let deny_all = set(vec![consent("c-all", "active", json!({"type": "deny"}))]);
    assert_eq!(refusing(&deny_all, &me(Some("Practitioner/r")), &privacy_office, &all).as_deref(), Some("c-all"));
    // Another purpose's refusal does not bind this one.
    let research = set(vec![deny_only("c-p", json!({"purpose": [purpose("HRESCH")]}))]);
    assert_eq!(refusing(&research, &me(Some("Practitioner/dr-1")), &clinician, &all), None);
}

#[test]
fn consents_medrec_cannot_enforce_are_refused_at_the_element() {
    let ok = deny_only(
        "c",
        json!({"actor": [actor("Practitioner/dr-2"), role("registrar")], "purpose": [purpose("HRESCH")],
        "class": [class("Observation")], "action": [action("access")], "code": [{"coding": [{"system": "http://loinc.org", "code": "1"}]}],
        "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}],
        "data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]}),
    );
    assert!(enforceability_issues(&ok).is_empty(), "{:?}", enforceability_issues(&ok));
    let cases = [
        (json!({"purpose": [{"code": "HRESCH"}]}), "Consent.provision.provision[0].purpose[0]"),
        (json!({"class": [{"code": "Observation"}]}), "Consent.provision.provision[0].class[0]"),
        (json!({"class": [{"system": CLASS_SYSTEM, "code": "NotAType"}]}), "Consent.provision.provision[0].class[0]"),
        (json!({"action": [{"coding": [{"code": "access"}]}]}), "Consent.provision.provision[0].action[0]"),
        (json!({"actor": [actor("Organization/f001")]}), "Consent.provision.provision[0].actor[0]"),
        (json!({"code": [{"coding": [{"code": "8867-4"}]}]}), "Consent.provision.provision[0].code[0]"),
        (json!({"securityLabel": [{"code": "PSY"}]}), "Consent.provision.provision[0].securityLabel[0]"),
        (
            json!({"data": [{"meaning": "instance", "reference": {"reference": "http://elsewhere/Observation/1"}}]}),
            "Consent.provision.provision[0].data[0].reference",
        ),
    ];
    for (conditions, at) in cases {
        let issues = enforceability_issues(&deny_only("c", conditions.clone()));
        assert!(issues.iter().any(|i| i.expression.as_deref() == Some(at)), "{conditions}: {issues:?}");
    }
    let untyped =
        consent("c", "active", json!({"type": "permit", "provision": [{"actor": [actor("Practitioner/x")]}]}));
    assert!(enforceability_issues(&untyped)
        .iter()
        .any(|i| i.expression.as_deref() == Some("Consent.provision.provision[0].type")));
}

#[test]
fn periods_of_every_precision_and_offset() {
    let p = |start: &str, end: &str| json!({"start": start, "end": end});
    assert!(within(Some(&p("2026", "2026")), NOW));
    assert!(within(Some(&p("2026-11", "2026-11")), NOW));
    assert!(!within(Some(&p("2025", "2026-10")), NOW));
    // 10:00Z is 11:00+01:00: an end at 10:30+01:00 has passed.
    assert!(!within(Some(&p("2026-01-01", "2026-11-23T10:30:00+01:00")), NOW));
    assert!(within(Some(&p("2026-01-01", "2026-11-23T11:30:00+01:00")), NOW));
    assert!(within(Some(&json!({"end": "garbage"})), NOW), "unreadable bounds apply the provision");
}
