//! Access-anomaly detection over the stored trail (`audit::anomaly`): the
//! detection window and the baseline before it are read from the audit
//! chains, the evidence the trail lacks is gathered from the records for
//! the pairs the trail leaves open only, and each alert is raised once: a
//! `SecurityAlert` event for the security team's queue and an audit record
//! of `DETECTOR_SUBJECT`, which is the auditors' review list
//! (`AuditEvent?agent=medrec-anomaly-detector`).

use super::clinical::DIRECTORY;
use super::Services;
use crate::audit::anomaly::{self, Access, Alert, Evidence, Policy, DETECTOR_SUBJECT, FLAG_CODES, FLAG_SYSTEM};
use crate::crypto::random_id;
use crate::error::{Error, Result};
use crate::ports::{AuditLog, DomainEvent, KeyService, RecordStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The patients whose records one run reads for a treatment relationship;
/// the pairs of any beyond stay unconfirmed (they alert: fail closed).
const MAX_COMPARTMENTS: usize = 2_000;
/// The users whose surnames one run compares.
const MAX_STAFF: usize = 2_000;
/// The trail one run holds in memory: a longer baseline over a busier
/// trail is refused, not half read.
const MAX_TRAIL: usize = 2_000_000;

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct AnomalyRun {
    pub alerts: Vec<Alert>,
    /// Alerts raised by this run (the rest were raised by an earlier one).
    pub raised: usize,
    /// Accesses read: baseline and window.
    pub accesses: usize,
    /// Compartments read for a treatment relationship.
    pub compartments: usize,
}

/// `Type/id` of a reference, whatever base it is written with.
fn local_reference(reference: &str) -> Option<String> {
    let mut parts = reference.trim_end_matches('/').rsplit('/');
    let (id, ty) = (parts.next()?, parts.next()?);
    Some(format!("{ty}/{id}"))
}

/// Who a record names as treating its patient: Encounter participants,
/// CareTeam members, the actors a Consent permits.
fn care_references(ty: &str, resource: &Value) -> Vec<String> {
    let list = |v: &Value, path: &[&str]| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| path.iter().try_fold(item, |v, k| v.get(k))?.as_str())
            .filter_map(local_reference)
            .collect()
    };
    match ty {
        "Encounter" => list(&resource["participant"], &["individual", "reference"]),
        "CareTeam" => list(&resource["participant"], &["member", "reference"]),
        "Consent" if resource["provision"]["type"] == "permit" && resource["status"] == "active" => {
            list(&resource["provision"]["actor"], &["reference", "reference"])
        }
        _ => vec![],
    }
}

impl<S: RecordStore + AuditLog, K: KeyService> Services<S, K> {
    /// Detects anomalies in the accesses recorded from `since` to `until`,
    /// each user measured against the `baseline` before `since`, and raises
    /// every alert not raised before.
    pub async fn detect_anomalies(
        &self,
        since: time::OffsetDateTime,
        until: time::OffsetDateTime,
        baseline: time::Duration,
        policy: &Policy,
    ) -> Result<AnomalyRun> {
        if until <= since || baseline.is_negative() {
            return Err(Error::BadRequest("the window must end after it starts".into()));
        }
        let from = crate::fhir::instant(since - baseline);
        let events = self.store.trail(&from, &crate::fhir::instant(until)).await?;
        if events.len() > MAX_TRAIL {
            return Err(Error::TooCostly(format!(
                "{} audit records in the window and baseline; at most {MAX_TRAIL} a run",
                events.len()
            )));
        }
        let start = since.unix_timestamp();
        let (baseline, window): (Vec<Access>, Vec<Access>) =
            events.iter().filter_map(Access::from_audit_event).partition(|a| a.at < start);
        let (evidence, compartments) = self.anomaly_evidence(&baseline, &window).await?;
        let alerts = anomaly::detect(&baseline, &window, &evidence, policy);
        let mut raised = 0;
        for alert in &alerts {
            if self.raise_anomaly(alert).await? {
                raised += 1;
            }
        }
        crate::metrics::add(crate::metrics::Counter::AnomalyAlerts, raised as u64);
        Ok(AnomalyRun { alerts, raised, accesses: baseline.len() + window.len(), compartments })
    }

    /// What the records say about the records the window opened with no
    /// relationship the trail shows: and only about those.
    async fn anomaly_evidence(&self, baseline: &[Access], window: &[Access]) -> Result<(Evidence, usize)> {
        let open = anomaly::unrelated_pairs(baseline, window);
        let mut by_patient: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (agent, user, patient) in &open {
            if let Some(user) = user.as_deref().and_then(|u| Some((u, local_reference(u)?))) {
                by_patient.entry(patient).or_default().push((agent, user.0));
            }
        }
        let mut evidence = Evidence::default();
        let mut compartments = 0;
        for (patient, agents) in by_patient.into_iter().take(MAX_COMPARTMENTS) {
            let Some(named) = self.care_team(patient).await? else { continue };
            compartments += 1;
            for (agent, user) in agents {
                if local_reference(user).is_some_and(|u| named.contains(&u)) {
                    evidence.related.insert((agent.to_owned(), patient.to_owned()));
                }
            }
        }
        let unrelated: Vec<_> =
            open.iter().filter(|(a, _, p)| !evidence.related.contains(&(a.clone(), p.clone()))).collect();
        if unrelated.is_empty() {
            return Ok((evidence, compartments));
        }
        for code in FLAG_CODES {
            let token = self.index.token("Patient", super::patients::FLAG_PARAM, &format!("{FLAG_SYSTEM}|{code}"));
            evidence.flagged.extend(self.store.ids_for_token("Patient", &token).await?);
        }
        let mut staff: BTreeMap<(&str, &str), HashSet<&str>> = BTreeMap::new();
        for (agent, user, patient) in &unrelated {
            if let Some(user) = user.as_deref() {
                staff.entry((agent, user)).or_default().insert(patient);
            }
        }
        for ((agent, user), patients) in staff.into_iter().take(MAX_STAFF) {
            for family in self.practitioner_families(user).await? {
                let token = self.index.token("Patient", "family", &family);
                for id in self.store.ids_for_token("Patient", &token).await? {
                    if patients.contains(id.as_str()) {
                        evidence.same_surname.insert((agent.to_owned(), id));
                    }
                }
            }
        }
        Ok((evidence, compartments))
    }

    /// The people a patient's records name as treating the patient, as
    /// `Type/id`; None when the patient's records are gone (purged).
    async fn care_team(&self, patient: &str) -> Result<Option<BTreeSet<String>>> {
        let key = match self.patient_key(patient).await {
            Ok(k) => k,
            Err(Error::Gone) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut named = BTreeSet::new();
        for ty in ["Encounter", "CareTeam", "Consent"] {
            for (id, current) in self.store.compartment(patient, ty).await? {
                if current.deleted {
                    continue;
                }
                let resource =
                    self.decrypt_record(&key, patient, ty, &id, current.version, current.ciphertext.as_deref())?;
                named.extend(care_references(ty, &resource));
            }
        }
        Ok(Some(named))
    }

    /// The family names of the Practitioner a user is (`fhirUser`).
    async fn practitioner_families(&self, user: &str) -> Result<Vec<String>> {
        let Some(id) = local_reference(user).and_then(|r| r.strip_prefix("Practitioner/").map(str::to_owned)) else {
            return Ok(vec![]);
        };
        let Some(current) = self.store.current(DIRECTORY, "Practitioner", &id).await? else { return Ok(vec![]) };
        if current.deleted {
            return Ok(vec![]);
        }
        let key = self.patient_key(DIRECTORY).await?;
        let practitioner =
            self.decrypt_record(&key, DIRECTORY, "Practitioner", &id, current.version, current.ciphertext.as_deref())?;
        Ok(practitioner["name"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["family"].as_str().map(str::to_owned))
            .collect())
    }

    /// Raises an alert unless a run raised it before: false then.
    async fn raise_anomaly(&self, alert: &Alert) -> Result<bool> {
        let mut audit = self.draft(None, "security-alert");
        audit.agent.subject = Some(DETECTOR_SUBJECT.into());
        audit.entities = std::iter::once(format!("urn:medrec:anomaly:{}", alert.detector))
            .chain(alert.patients.iter().map(|p| format!("Patient/{p}")))
            .collect();
        let instant =
            |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map(crate::fhir::instant).unwrap_or_default();
        let event = DomainEvent {
            id: random_id(),
            event_type: "SecurityAlert",
            aggregate: "security".into(),
            at: audit.recorded.clone(),
            detail: json!({
                "kind": "access-anomaly",
                "detector": alert.detector,
                "agent": alert.agent,
                "day": instant(alert.day),
                "first": instant(alert.first),
                "observed": alert.observed,
                "expected": alert.expected,
                "patients": alert.patients,
                "auditEventId": audit.id,
            }),
        };
        Ok(self.store.audit_once(&alert.key(), &audit, vec![event]).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_compared_without_their_base() {
        assert_eq!(local_reference("https://ehr.example/fhir/Practitioner/p1").as_deref(), Some("Practitioner/p1"));
        assert_eq!(local_reference("Practitioner/p1").as_deref(), Some("Practitioner/p1"));
        assert_eq!(local_reference("p1"), None);
        let encounter = json!({"participant": [{"individual": {"reference": "Practitioner/a"}}, {"type": []}]});
        assert_eq!(care_references("Encounter", &encounter), ["Practitioner/a"]);
        let refused = json!({"status": "active", "provision": {"type": "deny", "actor": [{"reference": {"reference": "Practitioner/a"}}]}});
        assert!(care_references("Consent", &refused).is_empty(), "a refusal is no relationship");
    }
}
