//! The access-anomaly detectors on a seeded synthetic hospital: ordinary
//! clinical work (ward shifts with their overtime, registrars searching
//! and admitting, consults recorded in Encounters, the odd emergency
//! break-glass) with snooping injected on known users and days. Every
//! access goes through the trail's own AuditEvent form and back. The test
//! prints precision and recall per detector and the alert volume, and
//! holds the detectors to a floor:
//!
//!     cargo test -p medrec-core --test anomaly_workload -- --nocapture

use medrec_core::audit::anomaly::{self, Access, Alert, Evidence, Policy};
use medrec_core::audit::{Agent, AuditEntry, BreakGlassNote, Outcome};
use std::collections::{BTreeMap, HashMap, HashSet};

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
const BASELINE_DAYS: i64 = 14;
const DETECTION_DAYS: i64 = 7;
const WARDS: usize = 20;
const CLINICIANS_PER_WARD: usize = 12;
const REGISTRARS: usize = 30;
const PATIENTS: usize = 4_000;
const SURNAMES: usize = 300;
/// The first day of the trail (2026-01-05, a Monday).
const EPOCH: i64 = 1_767_571_200;

/// xorshift64*: reproducible without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scenario {
    Celebrity,
    Neighbour,
    Relative,
    BulkBrowsing,
    AfterHours,
    RepeatedBreakGlass,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::Celebrity,
        Scenario::Neighbour,
        Scenario::Relative,
        Scenario::BulkBrowsing,
        Scenario::AfterHours,
        Scenario::RepeatedBreakGlass,
    ];
    /// The detector built to catch it.
    fn detector(self) -> &'static str {
        match self {
            Scenario::Celebrity => anomaly::FLAGGED_PATIENT,
            Scenario::Neighbour => anomaly::NO_RELATIONSHIP,
            Scenario::Relative => anomaly::SAME_SURNAME,
            Scenario::BulkBrowsing => anomaly::SEARCH_BURST,
            Scenario::AfterHours => anomaly::OFF_HOURS,
            Scenario::RepeatedBreakGlass => anomaly::BREAK_GLASS,
        }
    }
}

struct Staff {
    sub: String,
    ward: Option<usize>,
    /// Hour of day (UTC) the shift starts; shifts last 10 hours.
    shift: i64,
    surname: usize,
    emergency: bool,
}

struct Hospital {
    staff: Vec<Staff>,
    /// Ward and surname per patient.
    patients: Vec<(usize, usize)>,
    flagged: HashSet<String>,
    /// (agent, patient) the records relate: the ward's CareTeam, consults'
    /// Encounters.
    related: HashSet<(String, String)>,
    entries: Vec<AuditEntry>,
    injected: BTreeMap<(String, i64), Vec<Scenario>>,
    rng: Rng,
}

fn pid(n: usize) -> String {
    format!("{n:032x}")
}

fn parse(instant: &str) -> i64 {
    medrec_core::fhir::primitives::datetime_bounds(instant).unwrap().0.unix_timestamp()
}

fn instant(at: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
    medrec_core::fhir::instant(t)
}

impl Hospital {
    fn new(seed: u64) -> Hospital {
        let mut rng = Rng(seed);
        let mut staff = Vec::new();
        for ward in 0..WARDS {
            for i in 0..CLINICIANS_PER_WARD {
                // Day, evening and night shifts; starts vary by an hour.
                let shift = [7, 15, 21][i % 3] + rng.below(2) as i64;
                staff.push(Staff {
                    sub: format!("clin-{ward}-{i}"),
                    ward: Some(ward),
                    shift,
                    surname: rng.below(SURNAMES),
                    emergency: ward < 3,
                });
            }
        }
        for i in 0..REGISTRARS {
            staff.push(Staff {
                sub: format!("reg-{i}"),
                ward: None,
                shift: 7 + rng.below(3) as i64,
                surname: rng.below(SURNAMES),
                emergency: false,
            });
        }
        let patients: Vec<_> = (0..PATIENTS).map(|_| (rng.below(WARDS), rng.below(SURNAMES))).collect();
        let flagged = (0..PATIENTS).filter(|i| i % 97 == 0).map(pid).collect();
        let mut related = HashSet::new();
        for s in &staff {
            for (p, (ward, _)) in patients.iter().enumerate() {
                if s.ward == Some(*ward) {
                    related.insert((s.sub.clone(), pid(p)));
                }
            }
        }
        Hospital { staff, patients, flagged, related, entries: vec![], injected: BTreeMap::new(), rng }
    }

    fn record(
        &mut self,
        staff: usize,
        at: i64,
        interaction: &'static str,
        patient: usize,
        params: &[&str],
        request: &str,
    ) {
        let s = &self.staff[staff];
        self.entries.push(AuditEntry {
            id: format!("{:032x}", self.entries.len()),
            recorded: instant(at),
            interaction,
            outcome: Outcome::Success,
            status: 200,
            agent: Agent {
                subject: Some(s.sub.clone()),
                fhir_user: Some(format!("Practitioner/{}", s.sub)),
                roles: vec!["clinician"],
                token_id: None,
                source_ip: None,
            },
            purpose: "TREAT",
            break_glass: None,
            patient: Some(pid(patient)),
            entities: vec![],
            query_params: params.iter().map(|p| p.to_string()).collect(),
            observer: "ClinicalFunction".into(),
            request_id: Some(request.to_owned()),
        });
    }

    fn request(&mut self) -> String {
        format!("r{}", self.rng.next())
    }

    /// A patient's chart looked at: the record, then its observations.
    fn chart(&mut self, staff: usize, at: i64, patient: usize) {
        let r = self.request();
        self.record(staff, at, "read", patient, &[], &r);
        let r = self.request();
        self.record(staff, at + 20, "search-type", patient, &["patient", "category"], &r);
    }

    fn ward_patient(&mut self, ward: usize) -> usize {
        loop {
            let p = self.rng.below(PATIENTS);
            if self.patients[p].0 == ward {
                return p;
            }
        }
    }

    fn unrelated_patient(&mut self, staff: usize) -> usize {
        loop {
            let p = self.rng.below(PATIENTS);
            if self.staff[staff].ward != Some(self.patients[p].0) {
                return p;
            }
        }
    }

    /// A day of honest work, with what makes honest work look odd: overtime,
    /// a swapped shift, a busy day, covering a colleague's patient whom no
    /// record links to the user.
    fn ordinary_day(&mut self, staff: usize, day: i64) {
        let mut shift = self.staff[staff].shift;
        if self.rng.chance(0.01) {
            shift = (shift + 8) % 24;
        }
        let (ward, start) = (self.staff[staff].ward, day * DAY + shift * HOUR);
        let length = 10 * HOUR + if self.rng.chance(0.1) { (1 + self.rng.below(2) as i64) * HOUR } else { 0 };
        let at = |rng: &mut Rng| start + rng.below(length as usize) as i64;
        let busy = if self.rng.chance(0.02) { 3 } else { 1 };
        match ward {
            Some(ward) => {
                if self.rng.chance(0.01) {
                    let (p, t) = (self.unrelated_patient(staff), at(&mut self.rng));
                    self.chart(staff, t, p);
                }
                for _ in 0..busy * (6 + self.rng.below(6)) {
                    let (p, t) = (self.ward_patient(ward), at(&mut self.rng));
                    self.chart(staff, t, p);
                    if self.rng.chance(0.5) {
                        let r = self.request();
                        self.record(staff, t + 300, "create", p, &[], &r);
                    }
                }
                // A consult elsewhere, recorded in an Encounter.
                if self.rng.chance(0.3) {
                    let (p, t) = (self.unrelated_patient(staff), at(&mut self.rng));
                    self.related.insert((self.staff[staff].sub.clone(), pid(p)));
                    self.chart(staff, t, p);
                }
                if self.staff[staff].emergency && self.rng.chance(0.15) {
                    let (p, t) = (self.unrelated_patient(staff), at(&mut self.rng));
                    self.break_glass(staff, t, p);
                }
            }
            None => {
                // Registration: find the patient by name, open one, update it.
                for _ in 0..busy * (15 + self.rng.below(15)) {
                    let t = at(&mut self.rng);
                    let r = self.request();
                    let found = 1 + self.rng.below(4);
                    let hits: Vec<usize> = (0..found).map(|_| self.rng.below(PATIENTS)).collect();
                    for &p in &hits {
                        self.record(staff, t, "search-type", p, &["family", "birthdate"], &r);
                    }
                    let r = self.request();
                    self.record(staff, t + 40, "read", hits[0], &[], &r);
                    let r = self.request();
                    self.record(staff, t + 90, "update", hits[0], &[], &r);
                }
            }
        }
    }

    fn break_glass(&mut self, staff: usize, at: i64, patient: usize) {
        let r = self.request();
        self.record(staff, at, "read", patient, &[], &r);
        let last = self.entries.last_mut().unwrap();
        last.break_glass = Some(BreakGlassNote { code: "patient-unconscious".into(), sealed_reason: None });
        last.purpose = "ETREAT";
    }

    fn inject(&mut self, scenario: Scenario, staff: usize, day: i64) {
        let before = self.entries.len();
        let during = day * DAY + (self.staff[staff].shift + 2) * HOUR + self.rng.below(6 * HOUR as usize) as i64;
        match scenario {
            Scenario::Celebrity => {
                let p = loop {
                    let p = self.unrelated_patient(staff);
                    if self.flagged.contains(&pid(p)) {
                        break p;
                    }
                };
                self.chart(staff, during, p);
            }
            Scenario::Neighbour => {
                let p = self.unrelated_patient(staff);
                self.chart(staff, during, p);
            }
            Scenario::Relative => {
                let surname = self.staff[staff].surname;
                let p = loop {
                    let p = self.unrelated_patient(staff);
                    if self.patients[p].1 == surname {
                        break p;
                    }
                };
                self.chart(staff, during, p);
            }
            Scenario::BulkBrowsing => {
                for i in 0..30 {
                    let r = self.request();
                    for _ in 0..(2 + self.rng.below(4)) {
                        let p = self.rng.below(PATIENTS);
                        self.record(staff, during + i * 25, "search-type", p, &["name"], &r);
                    }
                }
                for i in 0..3 {
                    let p = self.unrelated_patient(staff);
                    self.chart(staff, during + 60 + i * 200, p);
                }
            }
            Scenario::AfterHours => {
                // Six hours after the shift ends: home, logged in.
                let night = day * DAY + (self.staff[staff].shift + 16) * HOUR;
                let ward = self.staff[staff].ward.unwrap_or(0);
                for i in 0..3 {
                    let p = self.ward_patient(ward);
                    self.chart(staff, night + i * 120, p);
                }
            }
            Scenario::RepeatedBreakGlass => {
                for i in 0..4 {
                    let p = self.unrelated_patient(staff);
                    self.break_glass(staff, during + i * 900, p);
                }
            }
        }
        // Labelled by the UTC days its accesses fall on (a night shift's
        // runs into the next).
        let sub = self.staff[staff].sub.clone();
        let days: std::collections::BTreeSet<i64> =
            self.entries[before..].iter().map(|e| parse(&e.recorded).div_euclid(DAY) * DAY).collect();
        for d in days {
            self.injected.entry((sub.clone(), d)).or_default().push(scenario);
        }
    }

    /// Same surname as the user, by index; here from the seeded surnames.
    fn same_surname(&self) -> HashSet<(String, String)> {
        let mut by_surname: HashMap<usize, Vec<usize>> = HashMap::new();
        for (p, (_, s)) in self.patients.iter().enumerate() {
            by_surname.entry(*s).or_default().push(p);
        }
        let mut out = HashSet::new();
        for s in &self.staff {
            for &p in by_surname.get(&s.surname).into_iter().flatten() {
                out.insert((s.sub.clone(), pid(p)));
            }
        }
        out
    }
}

/// (precision, true alerts, alerts) per detector; recall per scenario.
struct Measured {
    alerts: Vec<Alert>,
    injected: BTreeMap<(String, i64), Vec<Scenario>>,
    users: usize,
    /// The trail, and the time to parse it from AuditEvent JSON.
    accesses: usize,
    parse_seconds: f64,
    /// Accesses the daily runs examined (each day's baseline and window),
    /// and the detectors' time over them: figures, never asserted.
    detected: usize,
    detect_seconds: f64,
}

impl Measured {
    fn precision(&self, detector: &str) -> (f64, usize, usize) {
        let of: Vec<_> = self.alerts.iter().filter(|a| a.detector == detector).collect();
        let true_ = of.iter().filter(|a| self.injected.contains_key(&(a.agent.clone(), a.day))).count();
        let p = if of.is_empty() { 1.0 } else { true_ as f64 / of.len() as f64 };
        (p, true_, of.len())
    }

    fn recall(&self, scenario: Scenario) -> (f64, usize, usize) {
        let cases: Vec<_> = self.injected.iter().filter(|(_, s)| s.contains(&scenario)).collect();
        let caught = cases
            .iter()
            .filter(|((agent, day), _)| {
                self.alerts.iter().any(|a| a.detector == scenario.detector() && &a.agent == agent && a.day == *day)
            })
            .count();
        (caught as f64 / cases.len().max(1) as f64, caught, cases.len())
    }

    fn per_thousand_user_days(&self, false_only: bool) -> f64 {
        let n = self
            .alerts
            .iter()
            .filter(|a| !false_only || !self.injected.contains_key(&(a.agent.clone(), a.day)))
            .count();
        n as f64 * 1000.0 / (self.users as f64 * DETECTION_DAYS as f64)
    }
}

fn run(seed: u64) -> Measured {
    let mut h = Hospital::new(seed);
    let first = EPOCH / DAY;
    for day in first..first + BASELINE_DAYS + DETECTION_DAYS {
        for s in 0..h.staff.len() {
            // About five days a week on.
            if h.rng.chance(5.0 / 7.0) {
                h.ordinary_day(s, day);
            }
        }
    }
    // Ten cases of each scenario over the detection days, on distinct users.
    let mut users: Vec<usize> = (0..WARDS * CLINICIANS_PER_WARD).collect();
    for scenario in Scenario::ALL {
        for _ in 0..10 {
            let i = h.rng.below(users.len());
            let staff = users.swap_remove(i);
            let day = first + BASELINE_DAYS + h.rng.below(DETECTION_DAYS as usize - 1) as i64;
            let staff =
                if scenario == Scenario::RepeatedBreakGlass { staff % (3 * CLINICIANS_PER_WARD) } else { staff };
            h.inject(scenario, staff, day);
        }
    }
    // As the store hands them over: AuditEvent JSON text.
    let stored: Vec<String> = h.entries.iter().map(|e| e.to_fhir().to_string()).collect();
    let started = std::time::Instant::now();
    let trail: Vec<Access> =
        stored.iter().filter_map(|text| Access::from_audit_event(&serde_json::from_str(text).unwrap())).collect();
    let parse_seconds = started.elapsed().as_secs_f64();
    assert_eq!(trail.len(), h.entries.len(), "every seeded access reads back from its AuditEvent");
    let same_surname = h.same_surname();
    let (mut alerts, mut detect_seconds, mut detected) = (Vec::new(), 0.0, 0);
    for day in first + BASELINE_DAYS..first + BASELINE_DAYS + DETECTION_DAYS {
        let (from, start, end) = ((day - BASELINE_DAYS) * DAY, day * DAY, (day + 1) * DAY);
        let baseline: Vec<Access> = trail.iter().filter(|a| (from..start).contains(&a.at)).cloned().collect();
        let window: Vec<Access> = trail.iter().filter(|a| (start..end).contains(&a.at)).cloned().collect();
        // What the service asks the records: only the pairs the trail leaves open.
        let related = anomaly::unrelated_pairs(&baseline, &window)
            .into_iter()
            .map(|(agent, _, patient)| (agent, patient))
            .filter(|pair| h.related.contains(pair))
            .collect();
        let evidence = Evidence { related, flagged: h.flagged.clone(), same_surname: same_surname.clone() };
        let started = std::time::Instant::now();
        alerts.extend(anomaly::detect(&baseline, &window, &evidence, &Policy::default()));
        detect_seconds += started.elapsed().as_secs_f64();
        detected += baseline.len() + window.len();
    }
    Measured {
        alerts,
        injected: h.injected,
        users: h.staff.len(),
        accesses: trail.len(),
        parse_seconds,
        detected,
        detect_seconds,
    }
}

#[test]
fn the_detectors_find_injected_snooping_on_a_seeded_workload() {
    let m = run(0x5eed_0001);
    println!("| detector | alerts | on injected user-days | precision |");
    println!("|---|---|---|---|");
    for d in anomaly::DETECTORS {
        let (p, t, n) = m.precision(d);
        println!("| {d} | {n} | {t} | {p:.2} |");
    }
    println!();
    println!("| scenario | detector | caught | recall |");
    println!("|---|---|---|---|");
    for s in Scenario::ALL {
        let (r, c, n) = m.recall(s);
        println!("| {s:?} | {} | {c}/{n} | {r:.2} |", s.detector());
    }
    println!();
    println!(
        "{} users, {} detection days: {:.1} alerts per 1,000 users a day ({:.1} on users who did nothing wrong)",
        m.users,
        DETECTION_DAYS,
        m.per_thousand_user_days(false),
        m.per_thousand_user_days(true)
    );
    println!(
        "{} accesses parsed from AuditEvent JSON at {:.0}/s; the detectors examined {} (7 daily runs, baseline and window) at {:.0}/s",
        m.accesses,
        m.accesses as f64 / m.parse_seconds,
        m.detected,
        m.detected as f64 / m.detect_seconds
    );

    for s in Scenario::ALL {
        let (recall, caught, n) = m.recall(s);
        assert!(recall >= 0.9, "{s:?}: {caught} of {n} caught");
    }
    // A record opened with no relationship on file is what covering a
    // colleague looks like too (1% of working days here): the auditor's
    // review tells them apart, the detector cannot.
    for d in anomaly::DETECTORS {
        let (precision, t, n) = m.precision(d);
        let floor = if d == anomaly::NO_RELATIONSHIP { 0.6 } else { 0.8 };
        assert!(precision >= floor, "{d}: {t} of {n} alerts on injected user-days");
    }
    assert!(m.per_thousand_user_days(true) <= 15.0, "false alerts: {:.1}", m.per_thousand_user_days(true));
}
