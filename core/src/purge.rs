//! The purge's decisions, apart from the storage they are made over: what
//! retention and erasure requests allow to be destroyed as of an instant,
//! what legal holds block, and what each purge's audit record names. The
//! adapter (`medrec_edge::aws::purge`) reads holds, requests and each
//! compartment's versions, feeds them to a `Planner`, and carries out the
//! plan; it decides nothing.

use crate::crypto::{hex, sha256};
use crate::retention::{Retention, RetentionPolicy};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a legal hold is placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldTarget {
    Patient(String),
    /// One resource: blocks its own purge and, since shredding the patient's
    /// key would destroy it too, the patient's.
    Resource {
        resource_type: String,
        id: String,
    },
}

impl HoldTarget {
    /// From a reference, `Patient/{id}` or `{type}/{id}`.
    pub fn parse(reference: &str) -> Option<Self> {
        let (ty, id) = reference.split_once('/')?;
        let type_ok = ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphabetic());
        if !type_ok || !crate::fhir::primitives::is_id(id) {
            return None;
        }
        Some(match ty {
            "Patient" => HoldTarget::Patient(id.into()),
            _ => HoldTarget::Resource { resource_type: ty.into(), id: id.into() },
        })
    }

    pub fn reference(&self) -> String {
        match self {
            HoldTarget::Patient(id) => format!("Patient/{id}"),
            HoldTarget::Resource { resource_type, id } => format!("{resource_type}/{id}"),
        }
    }
}

/// Why a patient is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Retention,
    /// An erasure request, once past the legal floor.
    Erasure,
}

/// One patient past retention, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub patient: String,
    pub last_activity: String,
    /// Current records by type (the Patient included).
    pub records: BTreeMap<String, usize>,
    pub held: bool,
    /// Already shredded by an earlier run.
    pub shredded: bool,
    pub why: Why,
}

/// One resource of a retained patient with versions past retention: every
/// version if it was deleted long enough ago (`whole`), otherwise the
/// versions superseded long enough ago.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCandidate {
    /// Its compartment: a patient's, or the directory's.
    pub patient: String,
    pub resource_type: String,
    pub id: String,
    pub versions: Vec<u64>,
    pub whole: bool,
    pub held: bool,
    /// The current version and when it was written (deleted, if `whole`).
    pub current: (u64, String),
}

impl ResourceCandidate {
    /// What its purge is audited once under. A rerun after a crash must
    /// find the same key although some of the items are gone: the current
    /// item is deleted last (so a whole purge still sees the same version
    /// and instant), and the newest purgeable version goes with the last
    /// batch (so a partial one still sees the same newest version).
    pub fn once_key(&self) -> String {
        let reference = format!("{}/{}", self.resource_type, self.id);
        match self.whole {
            true => format!("purge:{reference}:whole:{}:{}", self.current.0, self.current.1),
            false => format!("purge:{reference}:through:{}", self.versions.last().copied().unwrap_or(0)),
        }
    }
}

/// An erasure request the legal floor (or a hold) still blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingErasure {
    pub patient: String,
    pub requested: String,
    /// When the floor allows it, given the activity so far.
    pub earliest: String,
    pub held: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub patients: Vec<Candidate>,
    pub resources: Vec<ResourceCandidate>,
    pub pending_erasures: Vec<PendingErasure>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub shredded: usize,
    pub resources: usize,
    pub versions_deleted: usize,
    /// Candidates (patients or resources) a hold blocked.
    pub held: usize,
    pub already: usize,
    pub objects_deleted: usize,
}

/// The legal holds in force.
#[derive(Debug, Default, Clone)]
pub struct Holds {
    /// Patients with a hold on them or on any of their resources: their
    /// key stays.
    pub compartments: BTreeSet<String>,
    /// `Patient/{id}` and `{type}/{id}` held.
    pub references: BTreeSet<String>,
}

/// A resource as its stored items show it: no content, only versions and
/// when each was written.
#[derive(Debug, Default, Clone)]
pub struct Versions {
    /// The current version, whether it is a deletion, and when it was written.
    pub current: Option<(u64, bool, String)>,
    /// Version number and when it was written.
    pub history: Vec<(u64, String)>,
}

/// A compartment's resources by (type, id).
pub type Compartment = BTreeMap<(String, String), Versions>;

/// Builds a `Plan` one compartment at a time, so that the adapter never
/// holds more than one compartment's items.
pub struct Planner<'a> {
    retention: &'a Retention,
    now: time::OffsetDateTime,
    holds: Holds,
    /// Erasure requests: patient → when requested.
    erasures: HashMap<String, String>,
    /// Activity before this instant is past the erasure floor.
    floor_cutoff: String,
    plan: Plan,
}

impl<'a> Planner<'a> {
    pub fn new(
        retention: &'a Retention,
        now: time::OffsetDateTime,
        holds: Holds,
        erasures: HashMap<String, String>,
    ) -> Self {
        let floor_cutoff = crate::fhir::instant(retention.erasure_floor.cutoff(now));
        Planner { retention, now, holds, erasures, floor_cutoff, plan: Plan::default() }
    }

    fn cutoff(&self, ty: &str) -> String {
        crate::fhir::instant(self.retention.for_type(ty).cutoff(self.now))
    }

    /// A patient's compartment (`shredded`: its data key is already gone).
    pub fn patient(&mut self, patient: String, resources: Compartment, shredded: bool) {
        let mut records = BTreeMap::new();
        let mut last = String::new();
        // Whether every type is past its own period.
        let mut past = true;
        for ((ty, _), v) in &resources {
            let Some((_, _, upd)) = &v.current else { continue };
            *records.entry(ty.clone()).or_insert(0) += 1;
            last = last.max(upd.clone());
            past &= *upd < self.cutoff(ty);
        }
        if last.is_empty() {
            return;
        }
        let held = self.holds.compartments.contains(&patient);
        let patient_held = self.holds.references.contains(&format!("Patient/{patient}"));
        let requested = self.erasures.get(&patient).cloned();
        let why = if past {
            Some(Why::Retention)
        } else if requested.is_some() && last < self.floor_cutoff {
            Some(Why::Erasure)
        } else {
            None
        };
        if let Some(why) = why {
            self.plan.patients.push(Candidate { patient, last_activity: last, records, held, shredded, why });
            return;
        }
        if let Some(requested) = requested {
            let earliest = time::OffsetDateTime::parse(&last, &time::format_description::well_known::Rfc3339)
                .map(|t| crate::fhir::instant(t + self.retention.erasure_floor.period()))
                .unwrap_or_default();
            self.plan.pending_erasures.push(PendingErasure { patient: patient.clone(), requested, earliest, held });
        }
        let cutoff = |ty: &str| self.cutoff(ty);
        let found = resource_candidates(&patient, resources, &cutoff, &self.holds, patient_held);
        self.plan.resources.extend(found);
    }

    /// The directory's compartment: nobody's record and never shredded; its
    /// deleted and superseded versions go as a retained patient's do.
    pub fn directory(&mut self, compartment: &str, resources: Compartment) {
        let cutoff = |ty: &str| self.cutoff(ty);
        let found = resource_candidates(compartment, resources, &cutoff, &self.holds, false);
        self.plan.resources.extend(found);
    }

    pub fn finish(self) -> Plan {
        self.plan
    }
}

/// One step of a purge run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Audit, delete the patient's objects, delete the data key, drop the
    /// index entries.
    Shred(&'a Candidate),
    /// The key is already gone (a run stopped after it): delete what that
    /// run left, objects and index entries.
    FinishShred(&'a Candidate),
    /// Audit, then delete the resource's versions past retention (and, when
    /// it is wholly past, everything of it).
    Resource(&'a ResourceCandidate),
}

impl Plan {
    /// The steps one run takes, and how many candidates holds blocked: at
    /// most `limit` shreddings and resource purges (patients first) so a
    /// run ends inside a Lambda's time limit; finishing a crashed run's
    /// shredding costs nothing of the budget, so it is never starved.
    pub fn steps(&self, limit: usize) -> (Vec<Step<'_>>, usize) {
        let mut budget = limit;
        let mut take = || {
            let ok = budget > 0;
            budget = budget.saturating_sub(1);
            ok
        };
        let (mut steps, mut held) = (vec![], 0);
        for c in &self.patients {
            if c.held {
                held += 1;
            } else if c.shredded {
                steps.push(Step::FinishShred(c));
            } else if take() {
                steps.push(Step::Shred(c));
            }
        }
        for r in &self.resources {
            if r.held {
                held += 1;
            } else if take() {
                steps.push(Step::Resource(r));
            }
        }
        (steps, held)
    }
}

impl Candidate {
    /// What the audit record of shredding this patient names: counts by
    /// type, the SHA-256 of the wrapped key destroyed, the policies applied.
    /// Never PHI.
    pub fn audit_entities(&self, retention: &Retention, wrapped_key: &[u8]) -> Vec<String> {
        let policies: BTreeSet<String> = match self.why {
            Why::Retention => self.records.keys().map(|ty| policy_urn(retention.for_type(ty))).collect(),
            Why::Erasure => BTreeSet::from([policy_urn(&retention.erasure_floor)]),
        };
        let mut entities: Vec<String> =
            self.records.iter().map(|(ty, n)| format!("urn:medrec:purged:{ty}:{n}")).collect();
        entities.push(format!("urn:medrec:shredded-key-sha256:{}", hex(&sha256(wrapped_key))));
        entities.extend(policies);
        entities
    }
}

/// The resources of a retained compartment with versions past retention:
/// every version of one deleted before its type's cutoff, else those
/// superseded before it.
fn resource_candidates(
    compartment: &str,
    resources: Compartment,
    cutoff: &dyn Fn(&str) -> String,
    holds: &Holds,
    compartment_held: bool,
) -> Vec<ResourceCandidate> {
    let mut out = vec![];
    for ((ty, id), mut v) in resources {
        let Some((current, deleted, deleted_at)) = v.current else { continue };
        // A deleted Patient goes with its whole compartment.
        if ty == "Patient" {
            continue;
        }
        v.history.sort();
        let cutoff = cutoff(&ty);
        let whole = deleted && deleted_at < cutoff;
        let versions: Vec<u64> = if whole {
            v.history.iter().map(|(n, _)| *n).collect()
        } else {
            // A version is past retention once the one that superseded it is.
            v.history.windows(2).filter(|w| w[1].1 < cutoff && w[0].0 < current).map(|w| w[0].0).collect()
        };
        if whole || !versions.is_empty() {
            let held = compartment_held || holds.references.contains(&format!("{ty}/{id}"));
            out.push(ResourceCandidate {
                patient: compartment.to_owned(),
                resource_type: ty,
                id,
                versions,
                whole,
                held,
                current: (current, deleted_at),
            });
        }
    }
    out
}

pub fn policy_urn(policy: &RetentionPolicy) -> String {
    format!("urn:medrec:policy:{}:{}y", policy.class, policy.years)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06; the default clinical period (10 years) ends before
    /// 2016-12-06, a 6-year erasure floor before 2020-12-06.
    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_796_515_200).unwrap()
    }

    fn resource(current: (u64, bool, &str), history: &[(u64, &str)]) -> Versions {
        Versions {
            current: Some((current.0, current.1, current.2.to_owned())),
            history: history.iter().map(|(v, at)| (*v, (*at).to_owned())).collect(),
        }
    }

    fn compartment(entries: &[(&str, &str, Versions)]) -> Compartment {
        entries.iter().map(|(ty, id, v)| (((*ty).to_owned(), (*id).to_owned()), v.clone())).collect()
    }

    fn holds(references: &[(&str, &str)]) -> Holds {
        Holds {
            compartments: references.iter().map(|(p, _)| (*p).to_owned()).collect(),
            references: references.iter().map(|(_, r)| (*r).to_owned()).collect(),
        }
    }

    fn old_patient() -> Compartment {
        compartment(&[
            ("Patient", "p1", resource((2, false, "2014-03-01T00:00:00Z"), &[(1, "2013-01-01T00:00:00Z")])),
            ("Observation", "o1", resource((1, false, "2015-06-01T00:00:00Z"), &[(1, "2015-06-01T00:00:00Z")])),
            ("Observation", "o2", resource((1, false, "2015-07-01T00:00:00Z"), &[(1, "2015-07-01T00:00:00Z")])),
        ])
    }

    #[test]
    fn a_patient_wholly_past_retention_is_shredded_unless_held() {
        let retention = Retention::default();
        let mut planner = Planner::new(&retention, now(), Holds::default(), HashMap::new());
        planner.patient("p1".into(), old_patient(), false);
        let plan = planner.finish();
        assert_eq!(plan.patients.len(), 1);
        let c = &plan.patients[0];
        assert_eq!((c.why, c.held, c.shredded), (Why::Retention, false, false));
        assert_eq!(c.last_activity, "2015-07-01T00:00:00Z");
        assert_eq!(c.records, BTreeMap::from([("Observation".into(), 2), ("Patient".into(), 1)]));
        assert!(plan.resources.is_empty(), "a shredded patient's resources go with the key");

        // A hold on any of the patient's resources keeps the key.
        let mut planner = Planner::new(&retention, now(), holds(&[("p1", "Observation/o2")]), HashMap::new());
        planner.patient("p1".into(), old_patient(), false);
        assert!(planner.finish().patients[0].held);
    }

    #[test]
    fn one_recent_record_or_a_longer_type_period_keeps_the_patient() {
        let retention = Retention::default().with_types("Immunization=50").unwrap();
        let mut recent = old_patient();
        recent.insert(("Condition".into(), "c1".into()), resource((1, false, "2025-01-01T00:00:00Z"), &[]));
        let mut immunized = old_patient();
        immunized.insert(("Immunization".into(), "i1".into()), resource((1, false, "2001-01-01T00:00:00Z"), &[]));
        let mut planner = Planner::new(&retention, now(), Holds::default(), HashMap::new());
        planner.patient("p1".into(), recent, false);
        planner.patient("p2".into(), immunized, false);
        let plan = planner.finish();
        assert!(plan.patients.is_empty(), "{:?}", plan.patients);
    }

    #[test]
    fn deleted_resources_and_superseded_versions_go_once_past_their_period() {
        let retention = Retention::default();
        let resources = compartment(&[
            ("Patient", "p1", resource((1, false, "2025-01-01T00:00:00Z"), &[(1, "2025-01-01T00:00:00Z")])),
            // Deleted in 2015: every version goes.
            (
                "Observation",
                "gone",
                resource(
                    (3, true, "2015-01-01T00:00:00Z"),
                    &[(1, "2012-01-01T00:00:00Z"), (2, "2013-01-01T00:00:00Z")],
                ),
            ),
            // Deleted in 2020: kept whole.
            ("Observation", "recent", resource((2, true, "2020-01-01T00:00:00Z"), &[(1, "2012-01-01T00:00:00Z")])),
            // v1 superseded in 2014 goes; v2, superseded in 2018, and v3 (current) stay.
            (
                "Condition",
                "edited",
                resource(
                    (3, false, "2018-01-01T00:00:00Z"),
                    &[(2, "2014-01-01T00:00:00Z"), (1, "2012-01-01T00:00:00Z"), (3, "2018-01-01T00:00:00Z")],
                ),
            ),
        ]);
        let mut planner = Planner::new(&retention, now(), holds(&[("p1", "Condition/edited")]), HashMap::new());
        planner.patient("p1".into(), resources, false);
        let plan = planner.finish();
        assert!(plan.patients.is_empty());
        let found: Vec<_> =
            plan.resources.iter().map(|r| (r.id.as_str(), r.versions.clone(), r.whole, r.held)).collect();
        assert_eq!(found, [("edited", vec![1], false, true), ("gone", vec![1, 2], true, false)]);
        let gone = &plan.resources[1];
        assert_eq!(gone.once_key(), "purge:Observation/gone:whole:3:2015-01-01T00:00:00Z");
        assert_eq!(plan.resources[0].once_key(), "purge:Condition/edited:through:1");
    }

    #[test]
    fn an_erasure_request_waits_for_the_legal_floor() {
        let retention = Retention::new(None, Some(6)).unwrap();
        let requests = HashMap::from([
            ("p-old".to_owned(), "2026-11-01T00:00:00Z".to_owned()),
            ("p-new".to_owned(), "2026-11-02T00:00:00Z".to_owned()),
        ]);
        let active_in =
            |year: u32| compartment(&[("Patient", "x", resource((1, false, &format!("{year}-05-01T00:00:00Z")), &[]))]);
        let mut planner = Planner::new(&retention, now(), Holds::default(), requests);
        planner.patient("p-old".into(), active_in(2019), false);
        planner.patient("p-new".into(), active_in(2024), false);
        planner.patient("p-none".into(), active_in(2019), false);
        let plan = planner.finish();
        let shredded: Vec<_> = plan.patients.iter().map(|c| (c.patient.as_str(), c.why)).collect();
        assert_eq!(shredded, [("p-old", Why::Erasure)]);
        assert_eq!(plan.pending_erasures.len(), 1);
        let pending = &plan.pending_erasures[0];
        assert_eq!((pending.patient.as_str(), pending.requested.as_str()), ("p-new", "2026-11-02T00:00:00Z"));
        assert!(pending.earliest.starts_with("2030-05-0"), "{}", pending.earliest);
    }

    #[test]
    fn the_directory_is_purged_by_version_and_never_shredded() {
        let retention = Retention::default();
        let directory = compartment(&[(
            "Practitioner",
            "d1",
            resource((2, true, "2014-01-01T00:00:00Z"), &[(1, "2010-01-01T00:00:00Z")]),
        )]);
        let mut planner = Planner::new(&retention, now(), Holds::default(), HashMap::new());
        planner.directory("_directory", directory);
        let plan = planner.finish();
        assert!(plan.patients.is_empty());
        assert_eq!(plan.resources.len(), 1);
        assert_eq!((plan.resources[0].patient.as_str(), plan.resources[0].whole), ("_directory", true));
    }

    #[test]
    fn a_shredding_is_audited_by_counts_key_digest_and_policy_never_by_who() {
        let retention = Retention::default().with_types("Observation=12").unwrap();
        let resources = compartment(&[
            ("Patient", "p-secret-1", resource((1, false, "2011-03-01T00:00:00Z"), &[])),
            ("Observation", "o1", resource((1, false, "2012-06-01T00:00:00Z"), &[])),
            ("Observation", "o2", resource((1, false, "2012-07-01T00:00:00Z"), &[])),
        ]);
        let mut planner = Planner::new(&retention, now(), Holds::default(), HashMap::new());
        planner.patient("p-secret-1".into(), resources, false);
        let plan = planner.finish();
        let entities = plan.patients[0].audit_entities(&retention, b"wrapped");
        assert!(entities.iter().all(|e| !e.contains("p-secret-1")), "{entities:?}");
        assert_eq!(
            entities,
            [
                "urn:medrec:purged:Observation:2".to_owned(),
                "urn:medrec:purged:Patient:1".to_owned(),
                format!("urn:medrec:shredded-key-sha256:{}", hex(&sha256(b"wrapped"))),
                "urn:medrec:policy:clinical-record:10y".to_owned(),
                "urn:medrec:policy:resource-type:12y".to_owned(),
            ]
        );
    }

    #[test]
    fn a_run_takes_at_most_its_budget_and_always_finishes_a_crashed_shredding() {
        let candidate = |patient: &str, held: bool, shredded: bool| Candidate {
            patient: patient.into(),
            last_activity: "2010-01-01T00:00:00Z".into(),
            records: BTreeMap::new(),
            held,
            shredded,
            why: Why::Retention,
        };
        let resource = |id: &str, held: bool| ResourceCandidate {
            patient: "p9".into(),
            resource_type: "Observation".into(),
            id: id.into(),
            versions: vec![1],
            whole: false,
            held,
            current: (2, "2010-01-01T00:00:00Z".into()),
        };
        let plan = Plan {
            patients: vec![
                candidate("p1", false, false),
                candidate("p2", true, false),
                candidate("p3", false, true),
                candidate("p4", false, false),
            ],
            resources: vec![resource("o1", true), resource("o2", false)],
            pending_erasures: vec![],
        };
        let (steps, held) = plan.steps(2);
        assert_eq!(held, 2);
        assert_eq!(
            steps,
            [Step::Shred(&plan.patients[0]), Step::FinishShred(&plan.patients[2]), Step::Shred(&plan.patients[3])]
        );
        let (steps, _) = plan.steps(3);
        assert_eq!(steps.last(), Some(&Step::Resource(&plan.resources[1])));
        let (steps, _) = plan.steps(0);
        assert_eq!(steps, [Step::FinishShred(&plan.patients[2])]);
    }

    #[test]
    fn holds_name_a_patient_or_one_resource() {
        assert_eq!(HoldTarget::parse("Patient/p1"), Some(HoldTarget::Patient("p1".into())));
        let obs = HoldTarget::parse("Observation/o-1").unwrap();
        assert_eq!(obs.reference(), "Observation/o-1");
        for bad in ["Patient", "patient/p1", "Patient/", "Patient/a b", "Obs3rvation/o1", "Patient/p1/_history/1"] {
            assert_eq!(HoldTarget::parse(bad), None, "{bad}");
        }
    }
}
