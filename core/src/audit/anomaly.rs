//! Access-anomaly detection: who has been looking at records they should
//! not. The detectors read the audit trail only (ids, codes and instants,
//! never PHI) and compare a detection window with each user's own baseline
//! from the days before it. What the trail cannot know (a treatment
//! relationship recorded in an Encounter, a patient flagged VIP, a shared
//! surname) comes in as `Evidence`, gathered by the service from the records
//! under their keys and compared as opaque ids and blind-index tokens.
//!
//! Each finding is one `Alert` per detector, user and UTC day: a user who
//! snoops on ten patients in a day is one item on the auditors' list, with
//! the patients named, not ten.

use crate::fhir::primitives::datetime_bounds;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// An hour of access far above the user's own baseline (bulk browsing).
pub const VOLUME: &str = "volume";
/// Records read at hours of the day the user never works, with nothing
/// written then (a swapped shift charts).
pub const OFF_HOURS: &str = "off-hours";
/// A record opened with no treatment relationship to its patient.
pub const NO_RELATIONSHIP: &str = "no-relationship";
/// More break-glass accesses in a day than emergencies explain.
pub const BREAK_GLASS: &str = "break-glass";
/// Many searches, few records opened: looking for someone.
pub const SEARCH_BURST: &str = "search-burst";
/// A first access to a VIP or employee patient, unrelated.
pub const FLAGGED_PATIENT: &str = "flagged-patient";
/// A patient who shares the user's surname, unrelated.
pub const SAME_SURNAME: &str = "same-surname";

pub const DETECTORS: [&str; 7] =
    [VOLUME, OFF_HOURS, NO_RELATIONSHIP, BREAK_GLASS, SEARCH_BURST, FLAGGED_PATIENT, SAME_SURNAME];

/// The subject the detector's own audit records carry: its alerts are not
/// accesses, and auditors list them with `AuditEvent?agent=` this.
pub const DETECTOR_SUBJECT: &str = "medrec-anomaly-detector";

/// The security labels (`Patient.meta.security`) that flag a patient whose
/// record draws curious eyes: a celebrity, an employee. The patients' index
/// holds a token for these two only (`flag_token`).
pub const FLAG_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const FLAG_CODES: [&str; 2] = ["CEL", "EMP"];

/// The labels of `FLAG_CODES` a Patient carries, as `system|code`.
pub fn flags(patient: &Value) -> Vec<String> {
    patient["meta"]["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == FLAG_SYSTEM)
        .filter_map(|c| c["code"].as_str().filter(|code| FLAG_CODES.contains(code)))
        .map(|code| format!("{FLAG_SYSTEM}|{code}"))
        .collect()
}

/// The most patients one alert names (the count is always whole).
pub const MAX_NAMED: usize = 20;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
const BURST: i64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A record opened: read, vread, an instance's history, `$everything`,
    /// or a search inside one patient's compartment.
    Open,
    /// A search across patients (by name, by identifier, ...).
    Search,
    Write,
}

/// One successful access by a person, as the trail recorded it.
#[derive(Debug, Clone)]
pub struct Access {
    /// Unix seconds.
    pub at: i64,
    /// The verified subject.
    pub agent: String,
    /// `Practitioner/{id}` etc., when the token named one.
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub kind: Kind,
    pub break_glass: bool,
    /// The request it belongs to (a search discloses several patients,
    /// one record each); the record's own id when none was sent.
    pub request: String,
}

impl Access {
    /// The access an AuditEvent records, if a person made it and it
    /// succeeded. Failures and denials raise alerts of their own
    /// (`service::security_alerts`); scheduled jobs act for no one.
    pub fn from_audit_event(e: &Value) -> Option<Access> {
        if e["outcome"] != "0" || e["type"]["code"] != "rest" {
            return None;
        }
        let who = &e["agent"][0]["who"];
        let agent = who["identifier"]["value"].as_str()?;
        if agent == "unauthenticated" || agent == DETECTOR_SUBJECT {
            return None;
        }
        let subtypes: Vec<&str> =
            e["subtype"].as_array().into_iter().flatten().filter_map(|s| s["code"].as_str()).collect();
        let entities = e["entity"].as_array().map(Vec::as_slice).unwrap_or_default();
        let patient = entities
            .iter()
            .filter(|en| en["role"]["code"] == "1")
            .find_map(|en| en["what"]["reference"].as_str()?.strip_prefix("Patient/"))
            .map(str::to_owned);
        let query = entities
            .iter()
            .find(|en| en["role"]["code"] == "24")
            .and_then(|en| en["detail"][0]["valueString"].as_str())
            .unwrap_or_default();
        let in_compartment = query.split(',').any(|p| matches!(p, "patient" | "subject"));
        let kind = match *subtypes.first()? {
            "read" | "vread" | "history-instance" | "operation" => Kind::Open,
            "search-type" | "search-system" | "history-type" if in_compartment => Kind::Open,
            "search-type" | "search-system" | "history-type" => Kind::Search,
            "create" | "update" | "patch" | "delete" => Kind::Write,
            _ => return None,
        };
        let at = datetime_bounds(e["recorded"].as_str()?)?.0.unix_timestamp();
        let request = e["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["url"] == "urn:medrec:request-id")
            .and_then(|x| x["valueString"].as_str())
            .or(e["id"].as_str())?;
        Some(Access {
            at,
            agent: agent.to_owned(),
            fhir_user: who["reference"].as_str().map(str::to_owned),
            patient,
            kind,
            break_glass: subtypes.contains(&crate::audit::BREAK_GLASS_SUBTYPE),
            request: request.to_owned(),
        })
    }

    /// Whether it counts as looking at a patient's record: opened, not by
    /// break-glass (whose every use an auditor reviews anyway).
    fn looks_at_patient(&self) -> Option<&str> {
        (self.kind == Kind::Open && !self.break_glass).then_some(self.patient.as_deref()).flatten()
    }
}

/// When an observation becomes an alert. The defaults are the ones the
/// seeded workload measures (`core/tests/use_cases/anomaly.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// An hour's accesses must exceed this and the user's baseline by
    /// `volume_sigmas` standard deviations.
    pub volume_floor: usize,
    pub volume_sigmas: f64,
    /// Off-hours accesses a day that raise an alert.
    pub off_hours_floor: usize,
    /// Baseline accesses before a user's usual hours are known.
    pub off_hours_history: usize,
    /// Hours either side of a usual hour that are usual too (overtime,
    /// an early start).
    pub off_hours_margin: usize,
    /// Patients opened by break-glass in a day beyond which it alerts.
    pub break_glass_per_day: usize,
    /// Search requests in 15 minutes that make a burst ...
    pub burst_searches: usize,
    /// ... when at most this share of them is followed by a record opened.
    pub burst_open_ratio: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            volume_floor: 60,
            volume_sigmas: 4.0,
            off_hours_floor: 2,
            off_hours_history: 100,
            off_hours_margin: 2,
            break_glass_per_day: 2,
            burst_searches: 12,
            burst_open_ratio: 0.25,
        }
    }
}

/// What the records know that the trail does not, as opaque ids.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// (agent, patient) with a treatment relationship in the records: a
    /// participant of an Encounter or CareTeam, an actor of a Consent.
    pub related: HashSet<(String, String)>,
    /// Patients labelled VIP (celebrity) or employee.
    pub flagged: HashSet<String>,
    /// (agent, patient) whose surnames match by blind index.
    pub same_surname: HashSet<(String, String)>,
}

/// One finding: a detector, a user, a UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub detector: &'static str,
    pub agent: String,
    /// Unix seconds of the UTC day's start.
    pub day: i64,
    /// The patients concerned, at most `MAX_NAMED` (opaque ids).
    pub patients: Vec<String>,
    /// What was seen: accesses in the worst hour, off-hours accesses,
    /// unrelated or flagged patients, break-glass patients, searches in the
    /// worst burst.
    pub observed: u64,
    /// What the baseline led to expect (0 where the rule has no baseline).
    pub expected: f64,
    /// Unix seconds of the first access concerned.
    pub first: i64,
}

impl Alert {
    /// The alert's identity: one per detector, user and day, however many
    /// runs see it.
    pub fn key(&self) -> String {
        let digest = crate::crypto::sha256(format!("Anomaly|{}|{}|{}", self.detector, self.agent, self.day).as_bytes());
        crate::crypto::hex(&digest[..16])
    }
}

/// Pairs (agent, patient) the trail relates: the agent wrote to the
/// patient's record, before or during the window.
fn written<'a>(baseline: &'a [Access], window: &'a [Access]) -> HashSet<(&'a str, &'a str)> {
    baseline
        .iter()
        .chain(window)
        .filter(|a| a.kind == Kind::Write)
        .filter_map(|a| Some((a.agent.as_str(), a.patient.as_deref()?)))
        .collect()
}

/// The records the window opened with no relationship the trail shows:
/// what the service asks the records about (Encounters, CareTeams,
/// Consents) before `detect` decides. Each with the agent's `fhirUser`.
pub fn unrelated_pairs(baseline: &[Access], window: &[Access]) -> BTreeSet<(String, Option<String>, String)> {
    let written = written(baseline, window);
    window
        .iter()
        .filter_map(|a| Some((a, a.looks_at_patient()?)))
        .filter(|(a, p)| !written.contains(&(a.agent.as_str(), *p)))
        .map(|(a, p)| (a.agent.clone(), a.fhir_user.clone(), p.to_owned()))
        .collect()
}

/// What one detector found of one user on one day, so far.
struct Finding {
    patients: BTreeSet<String>,
    observed: u64,
    expected: f64,
    first: i64,
}

/// Accumulates one detector's findings per (agent, day).
#[derive(Default)]
struct Findings {
    by: BTreeMap<(String, i64), Finding>,
}

impl Findings {
    fn add(&mut self, agent: &str, at: i64, patient: Option<&str>, observed: u64, expected: f64) {
        let f = self.by.entry((agent.to_owned(), at.div_euclid(DAY) * DAY)).or_insert(Finding {
            patients: BTreeSet::new(),
            observed: 0,
            expected,
            first: at,
        });
        f.patients.extend(patient.map(str::to_owned));
        f.observed = f.observed.max(observed);
        f.first = f.first.min(at);
    }

    /// One alert per (agent, day); `count_patients` makes the patients
    /// named the observation.
    fn alerts(self, detector: &'static str, count_patients: bool, out: &mut Vec<Alert>) {
        for ((agent, day), f) in self.by {
            out.push(Alert {
                detector,
                agent,
                day,
                observed: if count_patients { f.patients.len() as u64 } else { f.observed },
                patients: f.patients.into_iter().take(MAX_NAMED).collect(),
                expected: f.expected,
                first: f.first,
            });
        }
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Accesses per active hour: (agent, hour) → records.
fn hourly(accesses: &[Access]) -> HashMap<(&str, i64), usize> {
    let mut out = HashMap::new();
    for a in accesses.iter().filter(|a| a.kind != Kind::Write) {
        *out.entry((a.agent.as_str(), a.at.div_euclid(HOUR))).or_default() += 1;
    }
    out
}

fn volume(baseline: &[Access], window: &[Access], policy: &Policy, out: &mut Vec<Alert>) {
    let mut history: HashMap<&str, Vec<f64>> = HashMap::new();
    for ((agent, _), n) in hourly(baseline) {
        history.entry(agent).or_default().push(n as f64);
    }
    // Users with too short a history are held to everyone's.
    let everyone: Vec<f64> = history.values().flatten().copied().collect();
    let population = mean_sd(&everyone);
    let mut findings = Findings::default();
    for ((agent, hour), n) in hourly(window) {
        let (mean, sd) = match history.get(agent) {
            Some(h) if h.len() >= 10 => mean_sd(h),
            _ => population,
        };
        let limit = (mean + policy.volume_sigmas * sd.max(1.0)).max(policy.volume_floor as f64);
        if n as f64 > limit {
            findings.add(agent, hour * HOUR, None, n as u64, mean);
        }
    }
    findings.alerts(VOLUME, false, out);
}

fn off_hours(baseline: &[Access], window: &[Access], policy: &Policy, out: &mut Vec<Alert>) {
    let mut hours: HashMap<&str, [usize; 24]> = HashMap::new();
    for a in baseline {
        hours.entry(&a.agent).or_insert([0; 24])[(a.at.rem_euclid(DAY) / HOUR) as usize] += 1;
    }
    // An hour is usual when the user worked in it or close to it.
    let m = policy.off_hours_margin.min(11);
    let usual = |h: &[usize; 24], hour: usize| (0..=2 * m).any(|d| h[(hour + 24 - m + d) % 24] > 0);
    // Per (agent, day): records looked at off hours, and whether the user
    // charted off hours too: a swapped shift writes, someone browsing
    // from home reads.
    let mut per_day: HashMap<(&str, i64), (Vec<&Access>, bool)> = HashMap::new();
    for a in window {
        let Some(h) = hours.get(a.agent.as_str()) else { continue };
        if h.iter().sum::<usize>() >= policy.off_hours_history && !usual(h, (a.at.rem_euclid(DAY) / HOUR) as usize) {
            let day = per_day.entry((&a.agent, a.at.div_euclid(DAY))).or_default();
            match a.kind {
                Kind::Write => day.1 = true,
                _ => day.0.push(a),
            }
        }
    }
    let mut findings = Findings::default();
    for (found, _) in per_day.into_values().filter(|(v, wrote)| v.len() >= policy.off_hours_floor && !wrote) {
        for a in &found {
            findings.add(&a.agent, a.at, a.patient.as_deref(), found.len() as u64, 0.0);
        }
    }
    findings.alerts(OFF_HOURS, false, out);
}

fn break_glass(window: &[Access], policy: &Policy, out: &mut Vec<Alert>) {
    let mut per_day: HashMap<(&str, i64), Vec<&Access>> = HashMap::new();
    for a in window.iter().filter(|a| a.break_glass) {
        per_day.entry((&a.agent, a.at.div_euclid(DAY))).or_default().push(a);
    }
    let mut findings = Findings::default();
    for (_, uses) in per_day {
        let patients: BTreeSet<_> = uses.iter().filter_map(|a| a.patient.as_deref()).collect();
        if patients.len() > policy.break_glass_per_day {
            for a in uses {
                findings.add(&a.agent, a.at, a.patient.as_deref(), 0, policy.break_glass_per_day as f64);
            }
        }
    }
    findings.alerts(BREAK_GLASS, true, out);
}

fn search_burst(window: &[Access], policy: &Policy, out: &mut Vec<Alert>) {
    // Per agent: each search request at its first record, with the patients
    // it disclosed; each opening request.
    let mut searches: HashMap<&str, BTreeMap<&str, (i64, Vec<&str>)>> = HashMap::new();
    let mut opens: HashMap<&str, BTreeMap<&str, i64>> = HashMap::new();
    for a in window.iter().filter(|a| a.kind != Kind::Write) {
        if a.kind == Kind::Search {
            let s = searches.entry(&a.agent).or_default().entry(&a.request).or_insert((a.at, vec![]));
            s.0 = s.0.min(a.at);
            s.1.extend(a.patient.as_deref());
        } else {
            let t = opens.entry(&a.agent).or_default().entry(&a.request).or_insert(a.at);
            *t = (*t).min(a.at);
        }
    }
    let mut findings = Findings::default();
    for (agent, requests) in searches {
        let mut timeline: Vec<(i64, Vec<&str>)> = requests.into_values().collect();
        timeline.sort();
        let mut opened: Vec<i64> = opens.get(agent).map(|o| o.values().copied().collect()).unwrap_or_default();
        opened.sort_unstable();
        // Every 15-minute span that starts at a search, slid along the day.
        let mut end = 0;
        for start in 0..timeline.len() {
            let from = timeline[start].0;
            end = end.max(start);
            while end + 1 < timeline.len() && timeline[end + 1].0 < from + BURST {
                end += 1;
            }
            let n = end - start + 1;
            let within = opened.partition_point(|t| *t < from + BURST) - opened.partition_point(|t| *t < from);
            if n >= policy.burst_searches && within as f64 <= policy.burst_open_ratio * n as f64 {
                for (at, found) in &timeline[start..=end] {
                    findings.add(agent, *at, None, n as u64, 0.0);
                    for p in found {
                        findings.add(agent, *at, Some(p), n as u64, 0.0);
                    }
                }
            }
        }
    }
    findings.alerts(SEARCH_BURST, false, out);
}

/// Every detector over a detection `window`, each user measured against
/// the `baseline` (the days before it).
pub fn detect(baseline: &[Access], window: &[Access], evidence: &Evidence, policy: &Policy) -> Vec<Alert> {
    let mut out = Vec::new();
    volume(baseline, window, policy, &mut out);
    off_hours(baseline, window, policy, &mut out);
    break_glass(window, policy, &mut out);
    search_burst(window, policy, &mut out);

    let written = written(baseline, window);
    let related = |agent: &str, patient: &str| {
        written.contains(&(agent, patient)) || evidence.related.contains(&(agent.to_owned(), patient.to_owned()))
    };
    let seen_before: HashSet<(&str, &str)> =
        baseline.iter().filter_map(|a| Some((a.agent.as_str(), a.patient.as_deref()?))).collect();
    let (mut unrelated, mut flagged, mut surname) = (Findings::default(), Findings::default(), Findings::default());
    for a in window {
        let Some(p) = a.looks_at_patient() else { continue };
        if related(&a.agent, p) {
            continue;
        }
        unrelated.add(&a.agent, a.at, Some(p), 0, 0.0);
        if evidence.flagged.contains(p) && !seen_before.contains(&(a.agent.as_str(), p)) {
            flagged.add(&a.agent, a.at, Some(p), 0, 0.0);
        }
        if evidence.same_surname.contains(&(a.agent.clone(), p.to_owned())) {
            surname.add(&a.agent, a.at, Some(p), 0, 0.0);
        }
    }
    unrelated.alerts(NO_RELATIONSHIP, true, &mut out);
    flagged.alerts(FLAGGED_PATIENT, true, &mut out);
    surname.alerts(SAME_SURNAME, true, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Agent, AuditEntry, BreakGlassNote, Outcome};

    fn entry(interaction: &'static str, patient: Option<&str>, params: &[&str]) -> AuditEntry {
        AuditEntry {
            id: "a1".into(),
            recorded: "2026-03-02T10:15:00.000Z".into(),
            interaction,
            outcome: Outcome::Success,
            status: 200,
            agent: Agent {
                subject: Some("nurse-7".into()),
                fhir_user: Some("Practitioner/p7".into()),
                roles: vec!["clinician"],
                token_id: None,
                source_ip: None,
            },
            purpose: "TREAT",
            break_glass: None,
            patient: patient.map(str::to_owned),
            entities: vec![],
            query_params: params.iter().map(|p| p.to_string()).collect(),
            observer: "fn".into(),
            request_id: Some("req-1".into()),
        }
    }

    #[test]
    fn audit_events_become_accesses() {
        let pid = "0123456789abcdef0123456789abcdef";
        let read = Access::from_audit_event(&entry("read", Some(pid), &[]).to_fhir()).unwrap();
        assert_eq!((read.kind, read.patient.as_deref(), read.agent.as_str()), (Kind::Open, Some(pid), "nurse-7"));
        assert_eq!((read.fhir_user.as_deref(), read.request.as_str()), (Some("Practitioner/p7"), "req-1"));
        assert_eq!(read.at, 1_772_446_500);
        let by_name = Access::from_audit_event(&entry("search-type", Some(pid), &["name"]).to_fhir()).unwrap();
        assert_eq!(by_name.kind, Kind::Search);
        let in_record = Access::from_audit_event(&entry("search-type", Some(pid), &["patient", "code"]).to_fhir());
        assert_eq!(in_record.unwrap().kind, Kind::Open);
        assert_eq!(Access::from_audit_event(&entry("create", Some(pid), &[]).to_fhir()).unwrap().kind, Kind::Write);

        let mut glass = entry("read", Some(pid), &[]);
        glass.break_glass = Some(BreakGlassNote { code: "patient-unconscious".into(), sealed_reason: None });
        assert!(Access::from_audit_event(&glass.to_fhir()).unwrap().break_glass);

        let mut denied = entry("read", Some(pid), &[]);
        denied.outcome = Outcome::MinorFailure;
        assert!(Access::from_audit_event(&denied.to_fhir()).is_none(), "denials alert elsewhere");
        let mut job = entry("read", Some(pid), &[]);
        job.agent = Agent::default();
        assert!(Access::from_audit_event(&job.to_fhir()).is_none(), "no person acted");
        assert!(Access::from_audit_event(&entry("authenticate", None, &[]).to_fhir()).is_none());
    }

    fn access(agent: &str, at: i64, patient: &str, kind: Kind) -> Access {
        Access {
            at,
            agent: agent.into(),
            fhir_user: None,
            patient: Some(patient.into()),
            kind,
            break_glass: false,
            request: format!("{agent}-{at}-{patient}"),
        }
    }

    #[test]
    fn a_record_written_or_confirmed_is_related() {
        let day = 20 * DAY;
        let baseline = vec![access("a", day - DAY, "p1", Kind::Write)];
        let window = vec![
            access("a", day + 10, "p1", Kind::Open),
            access("a", day + 20, "p2", Kind::Open),
            access("a", day + 30, "p3", Kind::Open),
            access("a", day + 40, "p3", Kind::Write),
            access("a", day + 50, "p4", Kind::Open),
        ];
        let pairs: Vec<_> = unrelated_pairs(&baseline, &window).into_iter().map(|(_, _, p)| p).collect();
        assert_eq!(pairs, ["p2", "p4"]);
        let evidence = Evidence { related: [("a".to_owned(), "p4".to_owned())].into(), ..Evidence::default() };
        let alerts = detect(&baseline, &window, &evidence, &Policy::default());
        let unrelated: Vec<_> = alerts.iter().filter(|a| a.detector == NO_RELATIONSHIP).collect();
        assert_eq!(unrelated.len(), 1);
        assert_eq!((unrelated[0].patients.clone(), unrelated[0].observed), (vec!["p2".to_owned()], 1));
        assert_eq!((unrelated[0].day, unrelated[0].first), (day, day + 20));
    }

    #[test]
    fn one_alert_per_detector_user_and_day() {
        let day = 30 * DAY;
        let window: Vec<_> = (0..30).map(|i| access("a", day + i * 60, &format!("p{i}"), Kind::Open)).collect();
        let alerts = detect(&[], &window, &Evidence::default(), &Policy::default());
        let unrelated: Vec<_> = alerts.iter().filter(|a| a.detector == NO_RELATIONSHIP).collect();
        assert_eq!(unrelated.len(), 1);
        assert_eq!((unrelated[0].observed, unrelated[0].patients.len()), (30, MAX_NAMED));
        let next_day = [access("a", day + DAY, "p0", Kind::Open)];
        let again = detect(&[], &next_day, &Evidence::default(), &Policy::default());
        assert_ne!(again[0].key(), unrelated[0].key(), "a new day is a new alert");
    }
}
