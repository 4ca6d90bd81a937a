//! The consent decision point: given a patient's FHIR Consent resources
//! (scope `patient-privacy`) and one access request, permit or deny. Pure
//! domain logic, so every function can call the same code at access time.
//!
//! Rules (FHIR R4 Consent, as a privacy officer reads them):
//! - only `active` consents count (`inactive` is revoked; `draft`,
//!   `proposed`, `rejected`, `entered-in-error` never applied); a consent
//!   whose root provision period has ended or not begun does not apply;
//! - a provision applies when every condition it states matches the
//!   request (actor reference or role, purpose of use, data class, action,
//!   period); a nested provision that applies overrides its parent (the
//!   exception to the rule), recursively;
//! - across consents a deny wins over a permit (fail closed); no applicable
//!   consent falls back to the configured default (opt-in: deny; opt-out:
//!   permit);
//! - break-glass (`ETREAT` with a reason, checked by the caller) overrides a
//!   deny, and says so, so that the override is audited and alerted.

use crate::fhir::primitives::datetime_bounds as bounds;
use serde_json::Value;

/// What applies when no consent decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Disclosure needs a permit (deny without one).
    OptIn,
    /// Disclosure unless denied.
    OptOut,
}

/// One access, described with the vocabularies Consent provisions use.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// FHIR references naming the actor (`Practitioner/dr-1`,
    /// `Organization/clinic-a`).
    pub actor_refs: &'a [String],
    /// Role codes of the actor (`clinician`, or v3 ParticipationType codes).
    pub actor_roles: &'a [String],
    /// HL7 v3 PurposeOfUse code (`TREAT`, `HRESCH`...).
    pub purpose: &'a str,
    /// The resource type read (the data class: `Observation`...).
    pub resource_type: &'a str,
    /// `access`, `use`, `disclose`... (consentaction); reads are `access`.
    pub action: &'a str,
    /// Break-glass asked for (the caller has verified the reason).
    pub break_glass: bool,
    /// Now, as an RFC 3339 instant (`2026-11-23T10:00:00Z`).
    pub now: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit,
    /// Denied by the consent with this id (or by the default policy: None).
    Deny {
        consent: Option<String>,
    },
    /// A deny overridden by break-glass: allowed, and must be audited and
    /// alerted as such.
    BreakGlass {
        consent: Option<String>,
    },
}

impl Decision {
    pub fn allows(&self) -> bool {
        !matches!(self, Decision::Deny { .. })
    }
}

/// Decides one access against all of a patient's consents.
pub fn decide(consents: &[Value], req: &AccessRequest, default: DefaultPolicy) -> Decision {
    let mut permitted = false;
    let mut denied_by: Option<Option<String>> = None;
    for c in consents.iter().filter(|c| is_privacy_consent(c) && c["status"] == "active") {
        let Some(root) = c.get("provision") else { continue };
        if !within(root.get("period"), req.now) {
            continue;
        }
        match evaluate(root, req, true) {
            Some(true) => permitted = true,
            Some(false) => {
                denied_by.get_or_insert_with(|| c["id"].as_str().map(str::to_owned));
            }
            None => {}
        }
    }
    let denied = match (denied_by, permitted, default) {
        (Some(by), _, _) => Some(by),
        (None, true, _) | (None, false, DefaultPolicy::OptOut) => None,
        (None, false, DefaultPolicy::OptIn) => Some(None),
    };
    match denied {
        None => Decision::Permit,
        Some(consent) if req.break_glass => Decision::BreakGlass { consent },
        Some(consent) => Decision::Deny { consent },
    }
}

fn is_privacy_consent(c: &Value) -> bool {
    c["resourceType"] == "Consent"
        && c["scope"]["coding"].as_array().is_some_and(|codes| codes.iter().any(|x| x["code"] == "patient-privacy"))
}

/// The provision's verdict (true: permit) if it applies, its applicable
/// nested provisions overriding it. The root provision applies without
/// conditions when it states none (its type is then the consent's base rule).
fn evaluate(p: &Value, req: &AccessRequest, root: bool) -> Option<bool> {
    if !applies(p, req) {
        return None;
    }
    // A root provision without a type is a permit (R4: "deny | permit", base rule).
    let mut verdict = p["type"].as_str().map_or(root, |t| t == "permit");
    for nested in p["provision"].as_array().into_iter().flatten() {
        if let Some(v) = evaluate(nested, req, false) {
            verdict = v;
        }
    }
    Some(verdict)
}

fn applies(p: &Value, req: &AccessRequest) -> bool {
    within(p.get("period"), req.now)
        && list_matches(&p["actor"], |a| {
            let reference = a["reference"]["reference"].as_str();
            reference.is_some_and(|r| req.actor_refs.iter().any(|x| x == r))
                || codes(&a["role"]).any(|code| req.actor_roles.iter().any(|r| r == code))
        })
        && list_matches(&p["purpose"], |c| c["code"].as_str() == Some(req.purpose))
        && list_matches(&p["class"], |c| c["code"].as_str() == Some(req.resource_type))
        && list_matches(&p["action"], |a| codes(a).any(|code| code == req.action))
}

/// A condition given as a list matches when it is absent or any entry does.
fn list_matches(list: &Value, f: impl Fn(&Value) -> bool) -> bool {
    match list.as_array() {
        None => true,
        Some(items) => items.iter().any(f),
    }
}

fn codes(cc: &Value) -> impl Iterator<Item = &str> {
    cc["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str())
}

/// Is `now` inside the period? Bounds of any FHIR dateTime precision cover
/// their whole year, month or day; an unreadable bound (the validator
/// refuses them on write) makes the provision apply, so a deny fails closed.
fn within(period: Option<&Value>, now: &str) -> bool {
    let Some(period) = period else { return true };
    let Some(now) = bounds(now).map(|b| b.0) else { return true };
    let start_ok = period["start"].as_str().and_then(bounds).is_none_or(|(lo, _)| now >= lo);
    let end_ok = period["end"].as_str().and_then(bounds).is_none_or(|(_, hi)| now <= hi);
    start_ok && end_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-11-23T10:00:00Z";

    fn consent(id: &str, status: &str, provision: Value) -> Value {
        json!({
            "resourceType": "Consent", "id": id, "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": provision
        })
    }

    fn actor(reference: &str) -> Value {
        json!({"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": reference}})
    }

    struct Row {
        case: &'static str,
        consents: Vec<Value>,
        default: DefaultPolicy,
        actor: &'static str,
        purpose: &'static str,
        resource_type: &'static str,
        break_glass: bool,
        expect: Decision,
    }

    fn denied(id: &str) -> Decision {
        Decision::Deny { consent: Some(id.into()) }
    }

    #[test]
    fn decision_table() {
        use DefaultPolicy::*;
        let deny_dr2 = || {
            consent(
                "c-actor",
                "active",
                json!({"type": "permit", "provision": [{"type": "deny", "actor": [actor("Practitioner/dr-2")]}]}),
            )
        };
        let deny_research = || {
            consent(
                "c-purpose",
                "active",
                json!({"type": "permit", "provision": [{"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}]}),
            )
        };
        let deny_obs = || {
            consent(
                "c-class",
                "active",
                json!({"type": "permit", "provision": [{"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]}]}),
            )
        };
        let row = |case, consents, default, actor, purpose, resource_type, break_glass, expect| Row {
            case,
            consents,
            default,
            actor,
            purpose,
            resource_type,
            break_glass,
            expect,
        };
        let rows = vec![
            row(
                "no consent, opt-in",
                vec![],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Deny { consent: None },
            ),
            row(
                "no consent, opt-out",
                vec![],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "permit",
                vec![consent("c-permit", "active", json!({"type": "permit"}))],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "deny by actor: that actor",
                vec![deny_dr2()],
                OptIn,
                "Practitioner/dr-2",
                "TREAT",
                "Patient",
                false,
                denied("c-actor"),
            ),
            row(
                "deny by actor: another actor",
                vec![deny_dr2()],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "deny by purpose: research",
                vec![deny_research()],
                OptOut,
                "Practitioner/dr-1",
                "HRESCH",
                "Observation",
                false,
                denied("c-purpose"),
            ),
            row(
                "deny by purpose: treatment unaffected",
                vec![deny_research()],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Observation",
                false,
                Decision::Permit,
            ),
            row(
                "deny by data class",
                vec![deny_obs()],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Observation",
                false,
                denied("c-class"),
            ),
            row(
                "deny by data class: other class",
                vec![deny_obs()],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Immunization",
                false,
                Decision::Permit,
            ),
            row(
                "expired deny no longer applies",
                vec![consent(
                    "c-old",
                    "active",
                    json!({"type": "deny", "period": {"start": "2020-01-01", "end": "2025-12-31"}}),
                )],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "a deny not yet begun does not apply",
                vec![consent("c-future", "active", json!({"type": "deny", "period": {"start": "2027-01-01"}}))],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "expired permit: back to opt-in default",
                vec![consent("c-old", "active", json!({"type": "permit", "period": {"end": "2026-11-22"}}))],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Deny { consent: None },
            ),
            row(
                "a permit valid through today",
                vec![consent("c-today", "active", json!({"type": "permit", "period": {"end": "2026-11-23"}}))],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "revoked (inactive) deny",
                vec![consent("c-revoked", "inactive", json!({"type": "deny"}))],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "revoked permit under opt-in",
                vec![consent("c-revoked", "inactive", json!({"type": "permit"}))],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Deny { consent: None },
            ),
            row(
                "nested exception: deny all but my GP",
                vec![consent(
                    "c-nested",
                    "active",
                    json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/gp")]}]}),
                )],
                OptOut,
                "Practitioner/gp",
                "TREAT",
                "Observation",
                false,
                Decision::Permit,
            ),
            row(
                "nested exception: others still denied",
                vec![consent(
                    "c-nested",
                    "active",
                    json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/gp")]}]}),
                )],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Observation",
                false,
                denied("c-nested"),
            ),
            row(
                "nested twice: GP but not for research",
                vec![consent(
                    "c-deep",
                    "active",
                    json!({"type": "deny", "provision": [{"type": "permit", "actor": [actor("Practitioner/gp")], "provision": [{"type": "deny", "purpose": [{"code": "HRESCH"}]}]}]}),
                )],
                OptOut,
                "Practitioner/gp",
                "HRESCH",
                "Observation",
                false,
                denied("c-deep"),
            ),
            row(
                "deny wins over a permit",
                vec![consent("c-permit", "active", json!({"type": "permit"})), deny_dr2()],
                OptIn,
                "Practitioner/dr-2",
                "TREAT",
                "Patient",
                false,
                denied("c-actor"),
            ),
            row(
                "break-glass overrides a deny",
                vec![deny_dr2()],
                OptIn,
                "Practitioner/dr-2",
                "ETREAT",
                "Patient",
                true,
                Decision::BreakGlass { consent: Some("c-actor".into()) },
            ),
            row(
                "break-glass overrides the opt-in default",
                vec![],
                OptIn,
                "Practitioner/dr-2",
                "ETREAT",
                "Patient",
                true,
                Decision::BreakGlass { consent: None },
            ),
            row(
                "break-glass where nothing denies is a plain permit",
                vec![],
                OptOut,
                "Practitioner/dr-2",
                "ETREAT",
                "Patient",
                true,
                Decision::Permit,
            ),
            row(
                "a consent of another scope is not a privacy consent",
                vec![{
                    let mut c = consent("c-research", "active", json!({"type": "deny"}));
                    c["scope"]["coding"][0]["code"] = json!("research");
                    c
                }],
                OptOut,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                Decision::Permit,
            ),
            row(
                "deny by role",
                vec![consent(
                    "c-role",
                    "active",
                    json!({"type": "permit", "provision": [{"type": "deny", "actor": [{"role": {"coding": [{"code": "registrar"}]}}]}]}),
                )],
                OptIn,
                "Practitioner/dr-1",
                "TREAT",
                "Patient",
                false,
                denied("c-role"),
            ),
        ];
        let roles = vec!["registrar".to_owned()];
        let mut failures = vec![];
        for r in &rows {
            let refs = vec![r.actor.to_owned()];
            let req = AccessRequest {
                actor_refs: &refs,
                actor_roles: if r.case == "deny by role" { &roles } else { &[] },
                purpose: r.purpose,
                resource_type: r.resource_type,
                action: "access",
                break_glass: r.break_glass,
                now: NOW,
            };
            let got = decide(&r.consents, &req, r.default);
            if got != r.expect {
                failures.push(format!("{}: expected {:?}, got {got:?}", r.case, r.expect));
            }
        }
        assert!(rows.len() >= 20);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
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

    #[test]
    fn actions_narrow_a_provision() {
        let c = consent(
            "c-act",
            "active",
            json!({"type": "permit", "provision": [{"type": "deny", "action": [{"coding": [{"code": "disclose"}]}]}]}),
        );
        let refs = vec!["Practitioner/dr-1".to_owned()];
        let mut req = AccessRequest {
            actor_refs: &refs,
            actor_roles: &[],
            purpose: "TREAT",
            resource_type: "Patient",
            action: "access",
            break_glass: false,
            now: NOW,
        };
        assert_eq!(decide(std::slice::from_ref(&c), &req, DefaultPolicy::OptIn), Decision::Permit);
        req.action = "disclose";
        assert_eq!(decide(&[c], &req, DefaultPolicy::OptIn), denied("c-act"));
    }
}
