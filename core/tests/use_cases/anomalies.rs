use super::*;
use medrec_core::audit::anomaly::{Policy, DETECTOR_SUBJECT, FLAGGED_PATIENT, NO_RELATIONSHIP, SAME_SURNAME};

fn encounter(patient: &str, practitioner: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": practitioner}}]})
}

/// A clinician opens three records: a celebrity's, a namesake's and one
/// whose Encounter names them. The first two are unrelated and alert, each
/// under its own detector too; the third does not. A second run raises
/// nothing more.
#[tokio::test]
async fn the_detector_reads_the_trail_and_the_records_and_raises_each_alert_once() {
    let svc = services();
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let staff = json!({"resourceType": "Practitioner", "name": [{"family": "Okafor", "given": ["Ada"]}]});
    let me = create(&svc, &registrar, staff).await.unwrap();
    let mut dr = clinician("dr-snoop", "user/*.cruds");
    dr.principal.fhir_user = Some(format!("Practitioner/{me}"));

    let mut celebrity = patient();
    celebrity["meta"] =
        json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CEL"}]});
    let celebrity = create(&svc, &registrar, celebrity).await.unwrap();
    let mut namesake = patient();
    namesake["name"] = json!([{"family": "OKAFOR", "given": ["Chidi"]}]);
    let namesake = create(&svc, &registrar, namesake).await.unwrap();
    let treated = create(&svc, &registrar, patient()).await.unwrap();
    let care = clinician("dr-care", "user/*.cruds");
    create(&svc, &care, encounter(&treated, &format!("https://ehr.example/fhir/Practitioner/{me}"))).await.unwrap();
    for p in [&celebrity, &namesake, &treated] {
        read(&svc, &dr, "Patient", p).await.unwrap();
    }

    let now = time::OffsetDateTime::now_utc();
    let (since, until) = (now - time::Duration::hours(1), now + time::Duration::minutes(1));
    let run = svc.detect_anomalies(since, until, time::Duration::days(14), &Policy::default()).await.unwrap();
    let of = |detector: &str| -> Vec<Vec<String>> {
        run.alerts
            .iter()
            .filter(|a| a.detector == detector && a.agent == "dr-snoop")
            .map(|a| a.patients.clone())
            .collect()
    };
    let mut unrelated = vec![celebrity.clone(), namesake.clone()];
    unrelated.sort();
    assert_eq!(of(NO_RELATIONSHIP), [unrelated]);
    assert_eq!(of(FLAGGED_PATIENT), [vec![celebrity.clone()]]);
    assert_eq!(of(SAME_SURNAME), [vec![namesake.clone()]]);
    assert_eq!(run.alerts.len(), 3, "the registrar wrote every record it opened: {:?}", run.alerts);
    assert_eq!((run.raised, run.compartments), (3, 3));

    let events: Vec<_> = svc.store.events().into_iter().filter(|e| e.event_type == "SecurityAlert").collect();
    assert_eq!(events.len(), 3);
    let text = serde_json::to_string(&events.iter().map(|e| &e.detail).collect::<Vec<_>>()).unwrap();
    assert!(text.contains("dr-snoop") && text.contains(&celebrity), "the security team sees who and whom");
    for phi in ["Okafor", "OKAFOR", CANARY_FAMILY, "Chidi", "1961"] {
        assert!(!text.contains(phi), "{phi} in an alert");
    }

    // The auditors' list, as AuditEvents of the detector.
    let auditor = with_role("aud-1", Role::Auditor, "user/AuditEvent.rs");
    let mut audit = svc.draft(Some(&auditor), "search-type");
    let listed = svc.search_audit(&auditor, vec![("agent".into(), DETECTOR_SUBJECT.into())], &mut audit).await.unwrap();
    assert_eq!(listed.resources.len(), 3);

    let again = svc.detect_anomalies(since, until, time::Duration::days(14), &Policy::default()).await.unwrap();
    assert_eq!((again.alerts.len(), again.raised), (3, 0), "seen again, raised once");
    let refused = svc.detect_anomalies(until, since, time::Duration::days(1), &Policy::default()).await;
    assert!(matches!(refused, Err(Error::BadRequest(_))));
}
