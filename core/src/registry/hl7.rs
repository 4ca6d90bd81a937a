//! HL7 v2.5.1 as US immunization information systems speak it (CDC's HL7
//! Version 2.5.1 Implementation Guide for Immunization Messaging, release
//! 1.5): VXU^V04 to submit a vaccination, QBP^Q11 (profile Z34, request
//! immunization history) to query, and the ACK and RSP^K11 that come back.
//! Only the segments and fields the guide requires or medrec has are sent.

use super::{RegistryDose, VaccinationRecord};

/// Who sends and who receives (MSH-3 to MSH-6), from the registry's
/// onboarding.
#[derive(Debug, Clone)]
pub struct Parties {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Hl7Error {
    #[error("not an HL7 v2 message")]
    NotHl7,
    #[error("unexpected message type {0}")]
    UnexpectedType(String),
    #[error("message lacks the {0} segment")]
    Missing(&'static str),
}

/// Escapes the delimiters in a value (HL7 2.5.1 §2.7); line breaks, which
/// end segments, become spaces.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn unescape(value: &str) -> String {
    value.replace("\\F\\", "|").replace("\\S\\", "^").replace("\\T\\", "&").replace("\\R\\", "~").replace("\\E\\", "\\")
}

/// A segment from its fields, field 1 first (MSH is built apart: its first
/// field is the separator itself).
fn segment(name: &str, fields: &[String]) -> String {
    let mut out = name.to_owned();
    for f in fields {
        out.push('|');
        out.push_str(f);
    }
    out.trim_end_matches('|').to_owned()
}

fn msh(parties: &Parties, message_type: &str, control_id: &str, now: &str, profile: &str) -> String {
    let fields = [
        escape(&parties.sending_application),
        escape(&parties.sending_facility),
        escape(&parties.receiving_application),
        escape(&parties.receiving_facility),
        now.to_owned(),
        String::new(),
        message_type.to_owned(),
        escape(control_id),
        "P".into(),
        "2.5.1".into(),
        String::new(),
        String::new(),
        "ER".into(),
        "AL".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("{profile}^CDCPHINVS"),
        escape(&parties.sending_facility),
    ];
    format!("MSH|^~\\&|{}", fields.join("|"))
}

fn fields(n: usize) -> Vec<String> {
    vec![String::new(); n]
}

fn pid(r: &VaccinationRecord) -> String {
    let mut f = fields(8);
    f[0] = "1".into();
    f[2] = format!("{}^^^MEDREC^MR", escape(&r.patient_id));
    let given = r.given.first().map(|g| escape(g)).unwrap_or_default();
    let middle = r.given.get(1).map(|g| escape(g)).unwrap_or_default();
    f[4] = format!("{}^{given}^{middle}^^^^L", escape(&r.family));
    f[6] = r.birth_date.clone();
    f[7] = r.sex.clone();
    segment("PID", &f)
}

/// VXU^V04: one vaccination (ORC + RXA), `control_id` unique per message
/// (the registry acknowledges it back in MSA-2).
pub fn vxu(parties: &Parties, r: &VaccinationRecord, control_id: &str, now: &str) -> String {
    let mut orc = fields(3);
    orc[0] = "RE".into();
    orc[2] = format!("{}^MEDREC", escape(&r.immunization_id));
    let mut rxa = fields(21);
    rxa[0] = "0".into();
    rxa[1] = "1".into();
    rxa[2] = r.occurrence.clone();
    rxa[4] = format!("{}^{}^CVX", escape(&r.cvx), escape(&r.cvx_display));
    match r.dose_ml {
        Some(ml) => {
            rxa[5] = format!("{ml}");
            rxa[6] = "mL^milliliters^UCUM".into();
        }
        // The guide's "amount unknown".
        None => rxa[5] = "999".into(),
    }
    rxa[8] = if r.primary_source {
        "00^New immunization record^NIP001".into()
    } else {
        "01^Historical information - source unspecified^NIP001".into()
    };
    rxa[14] = r.lot.as_deref().map(escape).unwrap_or_default();
    rxa[15] = r.expiration.clone().unwrap_or_default();
    rxa[19] = r.completion.into();
    rxa[20] = if r.deleted { "D".into() } else { "A".into() };
    [msh(parties, "VXU^V04^VXU_V04", control_id, now, "Z22"), pid(r), segment("ORC", &orc), segment("RXA", &rxa)]
        .join("\r")
}

/// QBP^Q11, profile Z34: the registry's immunization history of a patient.
pub fn qbp(parties: &Parties, r: &VaccinationRecord, control_id: &str, now: &str) -> String {
    let mut qpd = fields(7);
    qpd[0] = "Z34^Request Immunization History^CDCPHINVS".into();
    qpd[1] = escape(control_id);
    qpd[2] = format!("{}^^^MEDREC^MR", escape(&r.patient_id));
    qpd[3] = format!("{}^{}^^^^^L", escape(&r.family), r.given.first().map(|g| escape(g)).unwrap_or_default());
    qpd[5] = r.birth_date.clone();
    qpd[6] = r.sex.clone();
    let rcp = segment("RCP", &["I".into(), "20^RD&Records&HL70126".into()]);
    [msh(parties, "QBP^Q11^QBP_Q11", control_id, now, "Z34"), segment("QPD", &qpd), rcp].join("\r")
}

/// A parsed message: segments, each its fields (field 1 first; for MSH,
/// field 1 is the separator so numbering matches the standard).
pub struct Message {
    segments: Vec<Vec<String>>,
}

impl Message {
    pub fn parse(text: &str) -> Result<Message, Hl7Error> {
        let text = text.trim_start_matches('\u{feff}').trim();
        if !text.starts_with("MSH|^~\\&") {
            return Err(Hl7Error::NotHl7);
        }
        let segments = text
            .split(['\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                let mut f: Vec<String> = s.split('|').map(str::to_owned).collect();
                if f[0] == "MSH" {
                    f.insert(1, "|".into());
                }
                f
            })
            .collect();
        Ok(Message { segments })
    }

    /// Field `n` of the first `name` segment, component `c` (1-based), unescaped.
    pub fn get(&self, name: &str, n: usize, c: usize) -> Option<String> {
        let seg = self.segments.iter().find(|s| s[0] == name)?;
        component(seg, n, c)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Vec<String>> + 'a {
        self.segments.iter().filter(move |s| s[0] == name)
    }

    pub fn message_type(&self) -> String {
        format!("{}^{}", self.get("MSH", 9, 1).unwrap_or_default(), self.get("MSH", 9, 2).unwrap_or_default())
    }
}

fn component(seg: &[String], n: usize, c: usize) -> Option<String> {
    let field = seg.get(n)?;
    let first_repetition = field.split('~').next()?;
    let v = first_repetition.split('^').nth(c - 1)?;
    (!v.is_empty()).then(|| unescape(v))
}

/// MSA-1: AA accepted, AE accepted with errors (still an error for
/// medrec: the record is not what was sent), AR rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: String,
    /// MSA-2: the control id of the message acknowledged.
    pub acknowledges: String,
    /// ERR-3 codes and texts (HL7 table 0357, or the registry's own).
    pub errors: Vec<String>,
}

pub fn parse_ack(text: &str) -> Result<Ack, Hl7Error> {
    let m = Message::parse(text)?;
    if m.get("MSH", 9, 1).as_deref() != Some("ACK") {
        return Err(Hl7Error::UnexpectedType(m.message_type()));
    }
    let code = m.get("MSA", 1, 1).ok_or(Hl7Error::Missing("MSA"))?;
    let acknowledges = m.get("MSA", 2, 1).unwrap_or_default();
    let errors = m
        .all("ERR")
        .map(|e| {
            let code = component(e, 3, 1).unwrap_or_default();
            let text = component(e, 3, 2).or_else(|| component(e, 8, 1)).unwrap_or_default();
            format!("{code} {text}").trim().to_owned()
        })
        .collect();
    Ok(Ack { code, acknowledges, errors })
}

/// What a Z34 query returned: QAK-2 status (OK, NF no data, ...) and the
/// doses (each ORC + RXA group).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub acknowledges: String,
    pub status: String,
    pub doses: Vec<RegistryDose>,
}

pub fn parse_rsp(text: &str) -> Result<QueryResult, Hl7Error> {
    let m = Message::parse(text)?;
    if m.message_type() != "RSP^K11" {
        return Err(Hl7Error::UnexpectedType(m.message_type()));
    }
    let acknowledges = m.get("MSA", 2, 1).ok_or(Hl7Error::Missing("MSA"))?;
    let status = m.get("QAK", 2, 1).ok_or(Hl7Error::Missing("QAK"))?;
    let mut doses = vec![];
    let mut registry_id = None;
    for seg in &m.segments {
        match seg[0].as_str() {
            "ORC" => registry_id = component(seg, 3, 1),
            "RXA" => doses.push(RegistryDose {
                registry_id: registry_id.take().unwrap_or_default(),
                date: component(seg, 3, 1).unwrap_or_default(),
                cvx: component(seg, 5, 1).unwrap_or_default(),
                lot: component(seg, 15, 1),
                completion: component(seg, 20, 1).unwrap_or_else(|| "CP".into()),
            }),
            _ => {}
        }
    }
    Ok(QueryResult { acknowledges, status, doses })
}

/// The registry's side (the simulator's): an ACK for a message.
pub fn ack(
    parties: &Parties,
    acknowledges: &str,
    code: &str,
    error: Option<&str>,
    control_id: &str,
    now: &str,
) -> String {
    let mut out = vec![
        msh(parties, "ACK^V04^ACK", control_id, now, "Z23"),
        segment("MSA", &[code.to_owned(), escape(acknowledges)]),
    ];
    if let Some(e) = error {
        out.push(segment("ERR", &[String::new(), String::new(), format!("207^{}^HL70357", escape(e)), "E".into()]));
    }
    out.join("\r")
}

/// The registry's side: an RSP^K11 with the given doses.
pub fn rsp(parties: &Parties, query: &Message, doses: &[RegistryDose], control_id: &str, now: &str) -> String {
    let acknowledges = query.get("MSH", 10, 1).unwrap_or_default();
    let tag = query.get("QPD", 2, 1).unwrap_or_default();
    let status = if doses.is_empty() { "NF" } else { "OK" };
    let mut out = vec![
        msh(parties, "RSP^K11^RSP_K11", control_id, now, "Z32"),
        segment("MSA", &["AA".into(), escape(&acknowledges)]),
        segment("QAK", &[escape(&tag), status.into(), "Z34^Request Immunization History^CDCPHINVS".into()]),
    ];
    for d in doses {
        out.push(segment("ORC", &["RE".into(), String::new(), format!("{}^IRIS", escape(&d.registry_id))]));
        let mut rxa = fields(20);
        rxa[0] = "0".into();
        rxa[1] = "1".into();
        rxa[2] = d.date.clone();
        rxa[4] = format!("{}^^CVX", escape(&d.cvx));
        rxa[5] = "999".into();
        rxa[8] = "01^Historical information - source unspecified^NIP001".into();
        rxa[14] = d.lot.as_deref().map(escape).unwrap_or_default();
        rxa[19] = d.completion.clone();
        out.push(segment("RXA", &rxa));
    }
    out.join("\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parties() -> Parties {
        Parties {
            sending_application: "MEDREC".into(),
            sending_facility: "MEDREC-CLINIC".into(),
            receiving_application: "IRIS".into(),
            receiving_facility: "IRIS".into(),
        }
    }

    fn record() -> VaccinationRecord {
        VaccinationRecord {
            patient_id: "p1".into(),
            family: "O'Brien|Smith".into(),
            given: vec!["Ana".into(), "Maria".into()],
            birth_date: "19800102".into(),
            sex: "F".into(),
            immunization_id: "i1".into(),
            cvx: "208".into(),
            cvx_display: "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose".into(),
            occurrence: "20261120".into(),
            lot: Some("LOT^7".into()),
            expiration: Some("20270630".into()),
            dose_ml: Some(0.3),
            primary_source: true,
            completion: "CP",
            deleted: false,
        }
    }

    /// The guide's required segments and fields (Z22 profile): MSH-1, 2, 7,
    /// 9, 10, 11, 12, 21; PID-3, 5, 7, 8; ORC-1, 3; RXA-1, 2, 3, 5, 6, 7
    /// (with an amount), 9, 20, 21.
    #[test]
    fn vxu_carries_the_required_segments_and_fields() {
        let text = vxu(&parties(), &record(), "ctl-1", "20261123120000+0000");
        let m = Message::parse(&text).unwrap();
        let segs: Vec<&str> = text.split('\r').map(|s| &s[..3]).collect();
        assert_eq!(segs, ["MSH", "PID", "ORC", "RXA"]);
        let get = |s, n, c| m.get(s, n, c).unwrap_or_else(|| panic!("{s}-{n}.{c} missing"));
        assert_eq!(get("MSH", 1, 1), "|");
        assert_eq!(m.segments[0][2], "^~\\&");
        assert_eq!(get("MSH", 7, 1), "20261123120000+0000");
        assert_eq!(m.message_type(), "VXU^V04");
        assert_eq!(get("MSH", 9, 3), "VXU_V04");
        assert_eq!(
            (get("MSH", 10, 1), get("MSH", 11, 1), get("MSH", 12, 1)),
            ("ctl-1".into(), "P".into(), "2.5.1".into())
        );
        assert_eq!((get("MSH", 15, 1), get("MSH", 16, 1)), ("ER".into(), "AL".into()));
        assert_eq!((get("MSH", 21, 1), get("MSH", 21, 2)), ("Z22".into(), "CDCPHINVS".into()));
        assert_eq!((get("PID", 3, 1), get("PID", 3, 4), get("PID", 3, 5)), ("p1".into(), "MEDREC".into(), "MR".into()));
        assert_eq!(
            (get("PID", 5, 1), get("PID", 5, 2), get("PID", 5, 7)),
            ("O'Brien|Smith".into(), "Ana".into(), "L".into())
        );
        assert_eq!((get("PID", 7, 1), get("PID", 8, 1)), ("19800102".into(), "F".into()));
        assert_eq!((get("ORC", 1, 1), get("ORC", 3, 1)), ("RE".into(), "i1".into()));
        assert_eq!((get("RXA", 1, 1), get("RXA", 2, 1), get("RXA", 3, 1)), ("0".into(), "1".into(), "20261120".into()));
        assert_eq!((get("RXA", 5, 1), get("RXA", 5, 3)), ("208".into(), "CVX".into()));
        assert_eq!((get("RXA", 6, 1), get("RXA", 7, 1)), ("0.3".into(), "mL".into()));
        assert_eq!(get("RXA", 9, 1), "00");
        assert_eq!((get("RXA", 15, 1), get("RXA", 16, 1)), ("LOT^7".into(), "20270630".into()));
        assert_eq!((get("RXA", 20, 1), get("RXA", 21, 1)), ("CP".into(), "A".into()));
        assert!(!text.contains('\n'));
    }

    #[test]
    fn unknown_amounts_historical_records_and_deletions() {
        let mut r = record();
        r.dose_ml = None;
        r.primary_source = false;
        r.deleted = true;
        let m = Message::parse(&vxu(&parties(), &r, "c", "20261123")).unwrap();
        assert_eq!((m.get("RXA", 6, 1), m.get("RXA", 7, 1)), (Some("999".into()), None));
        assert_eq!(m.get("RXA", 9, 1).as_deref(), Some("01"));
        assert_eq!(m.get("RXA", 21, 1).as_deref(), Some("D"));
    }

    #[test]
    fn query_ack_and_response_round_trip() {
        let q = qbp(&parties(), &record(), "q-1", "20261123");
        let qm = Message::parse(&q).unwrap();
        assert_eq!(qm.message_type(), "QBP^Q11");
        assert_eq!(qm.get("QPD", 1, 1).as_deref(), Some("Z34"));
        assert_eq!(qm.get("QPD", 3, 1).as_deref(), Some("p1"));
        assert_eq!(qm.get("QPD", 6, 1).as_deref(), Some("19800102"));
        assert_eq!(qm.get("RCP", 1, 1).as_deref(), Some("I"));
        let doses = vec![RegistryDose {
            registry_id: "R9".into(),
            date: "20250110".into(),
            cvx: "141".into(),
            lot: Some("L1".into()),
            completion: "CP".into(),
        }];
        let r = parse_rsp(&rsp(&parties(), &qm, &doses, "r-1", "20261123")).unwrap();
        assert_eq!((r.acknowledges.as_str(), r.status.as_str()), ("q-1", "OK"));
        assert_eq!(r.doses, doses);
        assert_eq!(parse_rsp(&rsp(&parties(), &qm, &[], "r-2", "20261123")).unwrap().status, "NF");

        let a = parse_ack(&ack(&parties(), "ctl-1", "AA", None, "a-1", "20261123")).unwrap();
        assert_eq!((a.code.as_str(), a.acknowledges.as_str(), a.errors.len()), ("AA", "ctl-1", 0));
        let e = parse_ack(&ack(&parties(), "ctl-2", "AR", Some("Unknown CVX"), "a-2", "20261123")).unwrap();
        assert_eq!((e.code.as_str(), e.errors[0].as_str()), ("AR", "207 Unknown CVX"));
        assert!(matches!(parse_ack(&q), Err(Hl7Error::UnexpectedType(_))));
        assert_eq!(parse_ack("<html>"), Err(Hl7Error::NotHl7));
    }

    #[test]
    fn escaping_round_trips_and_breaks_no_segment() {
        let nasty = "a|b^c&d~e\\f\rMSH|x";
        assert_eq!(unescape(&escape(nasty)), "a|b^c&d~e\\f MSH|x");
        assert!(!escape(nasty).contains(['|', '^', '&', '~', '\r']));
    }
}
