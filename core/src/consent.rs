//! The consent decision point: given a patient's FHIR Consent resources
//! (scope `patient-privacy`) and one access, permit or deny. Pure domain
//! logic, so every function calls the same code at access time.
//!
//! R4 semantics, as a privacy officer reads them:
//! - only `active` consents count (`inactive` is revoked; `draft`,
//!   `proposed`, `rejected`, `entered-in-error` never applied);
//! - a provision applies when every condition it states matches the access:
//!   `period` (now), `actor` (the user's `fhirUser` reference, or a medrec
//!   role named in `urn:medrec:role`), `purpose` and `class` (system and
//!   code), `action`, `code` and `securityLabel` (found in the resource),
//!   `dataPeriod` (the resource's clinical time) and `data` (instance,
//!   related, dependents, authoredby);
//! - the root provision's type is the consent's base rule (its `type`, else
//!   `policyRule` OPTOUT: deny, anything else: permit); nested provisions
//!   are exceptions to their parent, and among applicable siblings deny
//!   overrides permit; across consents deny wins (fail closed); no
//!   applicable consent falls back to the configured default;
//! - a condition that cannot be evaluated (the token names no person, the
//!   resource is not read yet) is resolved toward denial: a refusal naming
//!   a person binds a token that does not say who it is. Before a resource
//!   is read, the opposite resolution tells whether any resource could be
//!   permitted, so a request no data could satisfy is refused early;
//! - break-glass (`ETREAT` with a reason) overrides a deny for reads only,
//!   and says so, so that the override is audited and alerted.

use crate::fhir::outcome::Issue;
use crate::fhir::primitives::{datetime_bounds as bounds, is_id};
use serde_json::Value;
use std::collections::HashMap;

pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
pub const CLASS_SYSTEM: &str = "http://hl7.org/fhir/resource-types";
/// A class naming a profile (a canonical URL, found in `meta.profile`).
pub const PROFILE_CLASS_SYSTEM: &str = "urn:ietf:rfc:3986";
pub const ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
/// medrec's access roles (`clinician`, `registrar`...), as actor roles.
pub const ROLE_SYSTEM: &str = "urn:medrec:role";
const ACTIONS: [&str; 5] = ["collect", "access", "use", "disclose", "correct"];
/// What a `fhirUser` can name: the people (and devices) medrec can tell apart.
const ACTOR_TYPES: [&str; 6] = ["Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person", "Device"];

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
    /// The user as a FHIR reference (`Practitioner/dr-1`), from the token's
    /// `fhirUser`; None when the token does not say who the person is.
    pub actor: Option<&'a str>,
    /// medrec role names of the user (`clinician`...).
    pub roles: &'a [&'a str],
    /// HL7 v3 PurposeOfUse code (`TREAT`, `HRESCH`...).
    pub purpose: &'a str,
    /// The resource type accessed (the data class).
    pub resource_type: &'a str,
    /// The resource accessed, decrypted; None before it is read.
    pub data: Option<Data<'a>>,
    /// consentaction code: `access` for reads, `collect` for creates,
    /// `correct` for changes; None when any action is meant.
    pub action: Option<&'a str>,
    /// Break-glass asked for (the caller has verified the reason).
    pub break_glass: bool,
    /// Now, as an RFC 3339 instant.
    pub now: &'a str,
}

/// The resource an access touches.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    /// `Type/id`.
    pub reference: &'a str,
    pub resource: &'a Value,
}

/// A patient's consents as the decision point reads them: the resources,
/// and for each `data` entry of meaning `related`, the references that
/// resource holds (R4: the rule covers the instance and what it refers to).
#[derive(Debug, Clone, Default)]
pub struct Consents {
    pub resources: Vec<Value>,
    pub related: HashMap<String, Vec<String>>,
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

/// Which way a condition that cannot be evaluated goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknowns {
    /// Toward denial: final decisions.
    Deny,
    /// Toward permission: is any access of this kind possibly permitted?
    Permit,
}

/// Three-valued truth of a provision's conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Yes,
    No,
    Unknown,
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b {
            Truth::Yes
        } else {
            Truth::No
        }
    }

    /// Conjunction: any No is No, else any Unknown is Unknown.
    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::No, _) | (_, Truth::No) => Truth::No,
            (Truth::Unknown, _) | (_, Truth::Unknown) => Truth::Unknown,
            _ => Truth::Yes,
        }
    }
}

/// Decides one access against all of a patient's consents. Break-glass
/// overrides only a read (`access`).
pub fn decide(consents: &Consents, req: &AccessRequest, default: DefaultPolicy) -> Decision {
    decision(verdict(consents, req, default, Unknowns::Deny, false), req)
}

/// Before the resource is read: Deny only when no resource of the type
/// could be permitted (so the request is refused without reading); a
/// Permit here still needs `decide` on each resource read.
pub fn decide_before_reading(consents: &Consents, req: &AccessRequest, default: DefaultPolicy) -> Decision {
    debug_assert!(req.data.is_none());
    decision(verdict(consents, req, default, Unknowns::Permit, false), req)
}

fn decision(denied: Option<Option<String>>, req: &AccessRequest) -> Decision {
    match denied {
        None => Decision::Permit,
        Some(consent) if req.break_glass && req.action == Some("access") => Decision::BreakGlass { consent },
        Some(consent) => Decision::Deny { consent },
    }
}

/// The consent refusing this actor anything (any data, any action) for the
/// request's purpose, if one does: such an actor may not create, change or
/// lift any consent of the patient. A provision naming the actor (by
/// reference or role) refuses them whatever its data class; one naming
/// nobody refuses them only data of the classes they `reach` (could
/// otherwise read), so a blanket refusal of clinical data does not bind a
/// privacy office that never reads it. The default policy is not a refusal
/// by a consent.
pub fn refusing(consents: &Consents, req: &AccessRequest, reach: &[&str], all: &[&str]) -> Option<String> {
    let probe = |class: &str, named_only: bool| {
        let probe = AccessRequest { resource_type: class, data: None, action: None, break_glass: false, ..req.clone() };
        verdict(consents, &probe, DefaultPolicy::OptOut, Unknowns::Deny, named_only).flatten()
    };
    let reached = all.iter().filter(|c| reach.contains(c));
    reached.clone().find_map(|c| probe(c, false)).or_else(|| all.iter().find_map(|c| probe(c, true)))
}

/// None when permitted; Some(by) when denied, by a consent or (None) by the
/// default. With `named_only`, only denials by provisions naming the actor
/// count.
fn verdict(
    consents: &Consents,
    req: &AccessRequest,
    default: DefaultPolicy,
    unknowns: Unknowns,
    named_only: bool,
) -> Option<Option<String>> {
    let mut permitted = false;
    let mut denied_by: Option<Option<String>> = None;
    let ctx = Ctx { req, related: &consents.related, unknowns };
    let empty = Value::Object(Default::default());
    for c in consents.resources.iter().filter(|c| is_privacy_consent(c) && c["status"] == "active") {
        let root = c.get("provision").unwrap_or(&empty);
        match evaluate(root, &ctx, Some(base_rule_permits(c)), false) {
            Some(Verdict { permit: true, .. }) => permitted = true,
            Some(Verdict { permit: false, named }) if named || !named_only => {
                denied_by.get_or_insert_with(|| c["id"].as_str().map(str::to_owned));
            }
            _ => {}
        }
    }
    match (denied_by, permitted, default) {
        (Some(by), _, _) => Some(by),
        (None, true, _) | (None, false, DefaultPolicy::OptOut) => None,
        (None, false, DefaultPolicy::OptIn) => Some(None),
    }
}

pub fn is_privacy_consent(c: &Value) -> bool {
    c["resourceType"] == "Consent"
        && c["scope"]["coding"].as_array().is_some_and(|codes| codes.iter().any(|x| x["code"] == "patient-privacy"))
}

/// The root provision's rule when it states no type: `policyRule` OPTOUT
/// (or OPTOUTE) denies, anything else permits.
fn base_rule_permits(c: &Value) -> bool {
    !codes(&c["policyRule"]).any(|code| matches!(code, "OPTOUT" | "OPTOUTE"))
}

struct Ctx<'a> {
    req: &'a AccessRequest<'a>,
    related: &'a HashMap<String, Vec<String>>,
    unknowns: Unknowns,
}

/// What a provision decides, and whether a provision on the way to the
/// decision named an actor (by reference or role).
#[derive(Debug, Clone, Copy)]
struct Verdict {
    permit: bool,
    named: bool,
}

/// The provision's verdict if it applies, its applicable nested provisions
/// overriding it (deny among them wins). `root` carries the base rule for
/// a root without a type; a nested provision without one (which R4
/// forbids, and writes refuse) denies.
fn evaluate(p: &Value, ctx: &Ctx, root: Option<bool>, named_above: bool) -> Option<Verdict> {
    let permit = match p["type"].as_str() {
        Some(t) => t == "permit",
        None => root.unwrap_or(false),
    };
    let named = named_above || p["actor"].as_array().is_some_and(|a| !a.is_empty());
    let applies = match conditions(p, ctx) {
        Truth::Yes => true,
        Truth::No => false,
        Truth::Unknown => match ctx.unknowns {
            Unknowns::Deny => !permit,
            Unknowns::Permit => permit,
        },
    };
    if !applies {
        return None;
    }
    let nested: Vec<Verdict> =
        p["provision"].as_array().into_iter().flatten().filter_map(|n| evaluate(n, ctx, None, named)).collect();
    if nested.is_empty() {
        return Some(Verdict { permit, named });
    }
    let denials: Vec<&Verdict> = nested.iter().filter(|v| !v.permit).collect();
    Some(match denials.is_empty() {
        true => Verdict { permit: true, named },
        false => Verdict { permit: false, named: denials.iter().any(|v| v.named) },
    })
}

fn conditions(p: &Value, ctx: &Ctx) -> Truth {
    let req = ctx.req;
    let data = req.data;
    let on_data = |f: &dyn Fn(Data) -> bool| data.map_or(Truth::Unknown, |d| Truth::of(f(d)));
    let mut t = Truth::of(within(p.get("period"), req.now));
    t = t.and(any_of(&p["actor"], |a| actor_matches(a, req)));
    t = t.and(any_of(&p["purpose"], |c| Truth::of(coded(c, PURPOSE_SYSTEM, req.purpose))));
    t = t.and(any_of(&p["class"], |c| class_matches(c, req)));
    t = t.and(any_of(&p["action"], |a| match req.action {
        None => Truth::Unknown,
        Some(action) => {
            Truth::of(a["coding"].as_array().into_iter().flatten().any(|c| coded(c, ACTION_SYSTEM, action)))
        }
    }));
    t = t.and(any_of(&p["securityLabel"], |label| on_data(&|d| labels(d.resource).any(|l| same_coding(l, label)))));
    t = t.and(any_of(&p["code"], |concept| {
        on_data(&|d| {
            let found = codings_in(d.resource);
            concept["coding"].as_array().into_iter().flatten().any(|c| found.iter().any(|f| same_coding(f, c)))
        })
    }));
    if let Some(period) = p.get("dataPeriod") {
        t = t.and(on_data(&|d| data_time(d.resource).is_some_and(|(lo, hi)| overlaps(period, lo, hi))));
    }
    t.and(any_of(&p["data"], |entry| on_data(&|d| data_matches(entry, d, ctx.related))))
}

/// A condition given as a list is met when it is absent or any entry meets it.
fn any_of(list: &Value, f: impl Fn(&Value) -> Truth) -> Truth {
    let Some(items) = list.as_array() else { return Truth::Yes };
    let mut unknown = false;
    for item in items {
        match f(item) {
            Truth::Yes => return Truth::Yes,
            Truth::Unknown => unknown = true,
            Truth::No => {}
        }
    }
    if unknown {
        Truth::Unknown
    } else {
        Truth::No
    }
}

fn actor_matches(a: &Value, req: &AccessRequest) -> Truth {
    let by_role = a["role"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["system"] == ROLE_SYSTEM && c["code"].as_str().is_some_and(|code| req.roles.contains(&code)));
    if by_role {
        return Truth::Yes;
    }
    match (a["reference"]["reference"].as_str(), req.actor) {
        (Some(r), Some(me)) => Truth::of(r == me),
        // Who the token's user is is unknown: they may be this person.
        (Some(_), None) => Truth::Unknown,
        (None, _) => Truth::No,
    }
}

fn class_matches(c: &Value, req: &AccessRequest) -> Truth {
    match c["system"].as_str() {
        Some(CLASS_SYSTEM) => Truth::of(c["code"] == req.resource_type),
        Some(PROFILE_CLASS_SYSTEM) => match req.data {
            None => Truth::Unknown,
            Some(d) => Truth::of(d.resource["meta"]["profile"].as_array().is_some_and(|p| p.contains(&c["code"]))),
        },
        _ => Truth::No,
    }
}

/// Does a coding carry this system and code?
fn coded(c: &Value, system: &str, code: &str) -> bool {
    c["system"] == system && c["code"] == code
}

fn same_coding(a: &Value, b: &Value) -> bool {
    a["code"].is_string() && a["system"].is_string() && a["system"] == b["system"] && a["code"] == b["code"]
}

fn codes(cc: &Value) -> impl Iterator<Item = &str> {
    cc["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str())
}

fn labels(r: &Value) -> impl Iterator<Item = &Value> {
    r["meta"]["security"].as_array().into_iter().flatten()
}

/// Every coding anywhere in a resource (R4: "if this code is found in an
/// instance, the rule applies").
fn codings_in(r: &Value) -> Vec<&Value> {
    fn walk<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
        match v {
            Value::Object(m) => {
                if m.get("system").is_some_and(Value::is_string) && m.get("code").is_some_and(Value::is_string) {
                    out.push(v);
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(r, &mut out);
    out
}

/// Every relative reference a resource holds (`Type/id`, versions dropped).
pub fn references_in(r: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(s)) = m.get("reference") {
                    out.extend(relative(s));
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(r, &mut out);
    out.sort();
    out.dedup();
    out
}

/// `Type/id` of a relative reference (`Type/id[/_history/n]`), if it is one.
fn relative(s: &str) -> Option<String> {
    let mut parts = s.split('/');
    let (ty, id) = (parts.next()?, parts.next()?);
    let typed = ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.bytes().all(|b| b.is_ascii_alphabetic());
    (typed && is_id(id) && matches!(parts.next(), None | Some("_history"))).then(|| format!("{ty}/{id}"))
}

/// The elements naming who wrote a record (meaning `authoredby`).
const AUTHOR_ELEMENTS: [&str; 7] = ["author", "recorder", "asserter", "performer", "requester", "enterer", "informant"];

fn data_matches(entry: &Value, d: Data, related: &HashMap<String, Vec<String>>) -> bool {
    let Some(target) = entry["reference"]["reference"].as_str().and_then(relative) else { return false };
    let itself = target == d.reference;
    match entry["meaning"].as_str() {
        Some("instance") => itself,
        Some("related") => itself || related.get(&target).is_some_and(|refs| refs.iter().any(|r| r == d.reference)),
        Some("dependents") => itself || references_in(d.resource).contains(&target),
        Some("authoredby") => {
            AUTHOR_ELEMENTS.iter().any(|e| d.resource.get(*e).is_some_and(|v| references_in(v).contains(&target)))
        }
        _ => false,
    }
}

/// The references a consent's `related` data entries need resolved (the
/// resources whose own references the rule also covers).
pub fn related_targets(consents: &[Value]) -> Vec<String> {
    fn walk(p: &Value, out: &mut Vec<String>) {
        for entry in p["data"].as_array().into_iter().flatten() {
            if entry["meaning"] == "related" {
                out.extend(entry["reference"]["reference"].as_str().and_then(relative));
            }
        }
        p["provision"].as_array().into_iter().flatten().for_each(|n| walk(n, out));
    }
    let mut out = vec![];
    for c in consents.iter().filter(|c| is_privacy_consent(c) && c["status"] == "active") {
        walk(&c["provision"], &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The clinically relevant time of a resource (`dataPeriod` compares it):
/// its occurrence, effective or recorded time, else when it was last written.
fn data_time(r: &Value) -> Option<(time::OffsetDateTime, time::OffsetDateTime)> {
    const ELEMENTS: [&str; 16] = [
        "occurrenceDateTime",
        "occurrencePeriod",
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveInstant",
        "performedDateTime",
        "performedPeriod",
        "onsetDateTime",
        "recordedDate",
        "authoredOn",
        "issued",
        "date",
        "period",
        "dateTime",
        "created",
        "recorded",
    ];
    let value = ELEMENTS.iter().find_map(|e| r.get(*e)).or_else(|| r["meta"].get("lastUpdated"))?;
    crate::fhir::search::date_range(value)
}

fn overlaps(period: &Value, lo: time::OffsetDateTime, hi: time::OffsetDateTime) -> bool {
    let starts_before_end = period["start"].as_str().and_then(bounds).is_none_or(|(start, _)| start <= hi);
    let ends_after_start = period["end"].as_str().and_then(bounds).is_none_or(|(_, end)| end >= lo);
    starts_before_end && ends_after_start
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

/// What medrec could not enforce in a privacy consent, as 422 issues: a
/// consent stored but not enforceable as written would be a promise broken
/// silently. Codings name their system; classes are resource types or
/// profiles; actors are people (or medrec roles); nested provisions state
/// their type; data entries are relative references.
pub fn enforceability_issues(consent: &Value) -> Vec<Issue> {
    let mut issues = vec![];
    if is_privacy_consent(consent) {
        if let Some(root) = consent.get("provision") {
            check_provision(root, "Consent.provision", true, &mut issues);
        }
    }
    issues
}

fn check_provision(p: &Value, at: &str, root: bool, issues: &mut Vec<Issue>) {
    let mut refuse = |path: String, why: &str| issues.push(Issue::error("not-supported", why.to_owned()).at(path));
    if !root && !matches!(p["type"].as_str(), Some("permit" | "deny")) {
        refuse(format!("{at}.type"), "a nested provision states its type (permit or deny)");
    }
    let list = |name: &str| p[name].as_array().into_iter().flatten().enumerate();
    for (i, c) in list("purpose") {
        if c["system"] != PURPOSE_SYSTEM || !c["code"].is_string() {
            refuse(
                format!("{at}.purpose[{i}]"),
                "a purpose is a code of http://terminology.hl7.org/CodeSystem/v3-ActReason",
            );
        }
    }
    for (i, c) in list("class") {
        let ok = match c["system"].as_str() {
            Some(CLASS_SYSTEM) => {
                c["code"].as_str().is_some_and(|t| crate::fhir::validator::model().is_resource_type(t))
            }
            Some(PROFILE_CLASS_SYSTEM) => c["code"].is_string(),
            _ => false,
        };
        if !ok {
            refuse(
                format!("{at}.class[{i}]"),
                "a class is a resource type (http://hl7.org/fhir/resource-types) or a profile URL (urn:ietf:rfc:3986)",
            );
        }
    }
    for (i, a) in list("action") {
        let codings = a["coding"].as_array().map(Vec::as_slice).unwrap_or_default();
        let known =
            |c: &Value| c["system"] == ACTION_SYSTEM && c["code"].as_str().is_some_and(|x| ACTIONS.contains(&x));
        if codings.is_empty() || !codings.iter().all(known) {
            refuse(
                format!("{at}.action[{i}]"),
                "an action is a code of http://terminology.hl7.org/CodeSystem/consentaction",
            );
        }
    }
    for (i, a) in list("actor") {
        let named_role = a["role"]["coding"].as_array().into_iter().flatten().any(|c| c["system"] == ROLE_SYSTEM);
        let reference = a["reference"]["reference"].as_str().and_then(relative);
        let person = reference.as_deref().and_then(|r| r.split('/').next()).is_some_and(|t| ACTOR_TYPES.contains(&t));
        if !(person || named_role) {
            refuse(
                format!("{at}.actor[{i}]"),
                "an actor is a person (Practitioner, PractitionerRole, Patient, RelatedPerson, Person, Device) or a medrec role (urn:medrec:role); medrec cannot tell which organization or group a user belongs to",
            );
        }
    }
    for (i, c) in list("securityLabel") {
        if !(c["system"].is_string() && c["code"].is_string()) {
            refuse(format!("{at}.securityLabel[{i}]"), "a security label names its system and code");
        }
    }
    for (i, cc) in list("code") {
        let codings = cc["coding"].as_array().map(Vec::as_slice).unwrap_or_default();
        if codings.is_empty() || !codings.iter().all(|c| c["system"].is_string() && c["code"].is_string()) {
            refuse(format!("{at}.code[{i}]"), "a code names its system and code");
        }
    }
    for (i, d) in list("data") {
        if d["reference"]["reference"].as_str().and_then(relative).is_none() {
            refuse(format!("{at}.data[{i}].reference"), "a data entry names a resource of this server (Type/id)");
        }
    }
    for (i, n) in list("provision") {
        check_provision(n, &format!("{at}.provision[{i}]"), false, issues);
    }
}

#[cfg(test)]
mod tests;
