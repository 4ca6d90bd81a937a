//! Audit records: one FHIR AuditEvent per access to PHI (and per denied or
//! unauthenticated attempt). They name who, what (references to opaque ids),
//! when, from where, why and with what outcome; never a PHI value: search
//! parameters are recorded by name only and a break-glass reason by digest.

pub mod anomaly;
pub mod archive;
pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod mirror;

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Denied or rejected request (4xx).
    MinorFailure,
    /// The server failed (5xx).
    SeriousFailure,
}

impl Outcome {
    pub fn from_status(status: u16) -> Outcome {
        match status {
            s if s < 400 => Outcome::Success,
            s if s < 500 => Outcome::MinorFailure,
            _ => Outcome::SeriousFailure,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Agent {
    /// The verified `sub`; None when authentication failed.
    pub subject: Option<String>,
    /// Who the user is in FHIR terms (the token's `fhirUser`), when known.
    pub fhir_user: Option<String>,
    pub roles: Vec<&'static str>,
    pub token_id: Option<String>,
    pub source_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassNote {
    pub code: String,
    pub sealed_reason: Option<Vec<u8>>,
}

/// Subtype code of a break-glass access (`AuditEvent?subtype=break-glass`).
pub const BREAK_GLASS_SUBTYPE: &str = "break-glass";
pub const SUBTYPE_SYSTEM: &str = "urn:medrec:audit-subtype";
/// The interaction (and subtype) of an auditor's review of a break-glass access.
pub const BREAK_GLASS_REVIEW: &str = "break-glass-review";

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: String,
    pub recorded: String,
    /// A code of http://hl7.org/fhir/restful-interaction, or `authenticate`.
    pub interaction: &'static str,
    pub outcome: Outcome,
    pub status: u16,
    pub agent: Agent,
    pub purpose: &'static str,
    /// A break-glass access: its reason code, and its free-text reason sealed
    /// under the patient's key (stored apart from the plaintext trail, for
    /// the review; a purge's crypto-shredding takes it with the patient).
    pub break_glass: Option<BreakGlassNote>,
    /// The patient compartment touched, if any (an opaque id).
    pub patient: Option<String>,
    /// References such as `Patient/abc` or `Patient/abc/_history/2`.
    pub entities: Vec<String>,
    /// Names (never values) of the search parameters used.
    pub query_params: Vec<String>,
    pub observer: String,
    pub request_id: Option<String>,
}

/// A requested id as the trail keeps it: medrec's own ids (32 lowercase
/// hex, `crypto::random_id`; a Binary's adds `-` and 16 more) as they are;
/// anything else a client put where an id goes (an MRN by mistake, a probe)
/// only as a digest, so PHI typed into a URL never lands in the plaintext,
/// six-year trail.
pub fn audited_id(id: &str) -> String {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let server_id = match id.split_once('-') {
        None => hex(id, 32),
        Some((resource, suffix)) => hex(resource, 32) && hex(suffix, 16),
    };
    if server_id {
        id.to_owned()
    } else {
        format!("sha256-{}", &crate::crypto::hex(&crate::crypto::sha256(id.as_bytes()))[..32])
    }
}

/// `Type/id[/_history/n]` with its id through `audited_id`; other forms
/// (`urn:` entities medrec writes itself) as they are.
fn audited_reference(reference: &str) -> String {
    let mut parts = reference.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ty), Some(id), rest) if ty.starts_with(|c: char| c.is_ascii_uppercase()) && !ty.contains(':') => {
            let mut out = format!("{ty}/{}", audited_id(id));
            if let Some(rest) = rest {
                out.push('/');
                out.push_str(rest);
            }
            out
        }
        _ => reference.to_owned(),
    }
}

impl AuditEntry {
    /// An operator's action outside any request (a purge, a hold, a key
    /// re-wrap), recorded as `by` for health-care operations (`HOPERAT`).
    pub fn by_operator(by: &str, interaction: &'static str, observer: &str) -> AuditEntry {
        AuditEntry {
            id: crate::crypto::random_id(),
            recorded: crate::fhir::now_instant(),
            interaction,
            outcome: Outcome::Success,
            status: 200,
            agent: Agent { subject: Some(by.into()), ..Agent::default() },
            purpose: "HOPERAT",
            break_glass: None,
            patient: None,
            entities: vec![],
            query_params: vec![],
            observer: observer.into(),
            request_id: None,
        }
    }

    /// The patient as the trail's index keeps it (see `audited_id`).
    pub fn audited_patient(&self) -> Option<String> {
        self.patient.as_deref().map(audited_id)
    }

    /// Who acted, as the trail's index and the security alerts key it: the
    /// verified subject, else the source address of an unauthenticated
    /// attempt.
    pub fn agent_key(&self) -> Option<String> {
        match (&self.agent.subject, &self.agent.source_ip) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(ip)) => Some(format!("ip:{ip}")),
            (None, None) => None,
        }
    }

    fn action(&self) -> &'static str {
        match self.interaction {
            "create" => "C",
            "update" | "patch" | BREAK_GLASS_REVIEW => "U",
            "delete" | "purge" | "purge-resource" => "D",
            "search-type" | "search-system" | "history-instance" | "history-type" => "E",
            _ => "R",
        }
    }

    pub fn to_fhir(&self) -> Value {
        let (type_coding, subtype) = if self.interaction == "transmit" {
            (
                json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"}),
                json!([{"system": SUBTYPE_SYSTEM, "code": "registry-submission"}]),
            )
        } else if self.interaction == BREAK_GLASS_REVIEW {
            (
                json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"}),
                json!([{"system": SUBTYPE_SYSTEM, "code": BREAK_GLASS_REVIEW}]),
            )
        } else if self.interaction == "authenticate" {
            (
                json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"}),
                json!([{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122", "display": "Login"}]),
            )
        } else {
            (
                json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"}),
                json!([{"system": "http://hl7.org/fhir/restful-interaction", "code": self.interaction}]),
            )
        };
        let mut agent = json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser"}]},
            "requestor": true,
            "who": {"identifier": {"system": "urn:medrec:sub", "value": self.agent.subject.clone().unwrap_or_else(|| "unauthenticated".into())}},
        });
        if let Some(user) = &self.agent.fhir_user {
            agent["who"]["reference"] = json!(user);
        }
        if !self.agent.roles.is_empty() {
            agent["role"] = json!(self.agent.roles.iter().map(|r| json!({"text": r})).collect::<Vec<_>>());
        }
        if let Some(ip) = &self.agent.source_ip {
            agent["network"] = json!({"address": ip, "type": "2"});
        }
        if let Some(jti) = &self.agent.token_id {
            agent["policy"] = json!([format!("urn:medrec:jti:{jti}")]);
        }
        let mut entities: Vec<Value> = self
            .entities
            .iter()
            .map(|r| json!({"what": {"reference": audited_reference(r)}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}}))
            .collect();
        if let Some(p) = self.audited_patient() {
            entities.push(json!({"what": {"reference": format!("Patient/{p}")}, "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}}));
        }
        if !self.query_params.is_empty() {
            entities.push(json!({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
                "detail": [{"type": "parameter-names", "valueString": self.query_params.join(",")}]}));
        }
        if let Some(bg) = &self.break_glass {
            entities.push(json!({"detail": [{"type": "break-glass-reason-code", "valueString": bg.code}]}));
        }
        let mut purpose = vec![
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": self.purpose}]}),
        ];
        let mut subtype = subtype;
        if self.break_glass.is_some() {
            if let Some(list) = subtype.as_array_mut() {
                list.push(json!({"system": SUBTYPE_SYSTEM, "code": BREAK_GLASS_SUBTYPE}));
            }
            purpose.push(
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "BGACCESS"}]}),
            );
        }
        let mut event = json!({
            "resourceType": "AuditEvent",
            "id": self.id,
            "type": type_coding,
            "subtype": subtype,
            "action": self.action(),
            "recorded": self.recorded,
            "outcome": self.outcome.code(),
            "outcomeDesc": format!("HTTP {}", self.status),
            "purposeOfEvent": purpose,
            "agent": [agent],
            "source": {"observer": {"display": self.observer}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "3"}]},
        });
        if !entities.is_empty() {
            event["entity"] = Value::Array(entities);
        }
        if let Some(rid) = &self.request_id {
            event["extension"] = json!([{"url": "urn:medrec:request-id", "valueString": rid}]);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_supplied_ids_enter_the_trail_as_digests() {
        let ours = crate::crypto::random_id();
        assert_eq!(audited_id(&ours), ours);
        let binary = format!("{ours}-{}", &crate::crypto::random_id()[..16]);
        assert_eq!(audited_id(&binary), binary);
        let mrn = audited_id("MRN-1234567");
        assert!(mrn.starts_with("sha256-") && !mrn.contains("1234567"));
        assert_eq!(audited_reference(&format!("Patient/{ours}/_history/2")), format!("Patient/{ours}/_history/2"));
        assert_eq!(audited_reference("Observation/Jane.Doe"), format!("Observation/{}", audited_id("Jane.Doe")));
        assert_eq!(audited_reference("urn:medrec:policy:audit:6y"), "urn:medrec:policy:audit:6y");
    }
}
