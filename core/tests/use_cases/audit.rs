//! The trail and what reads it: auditors search it (nobody else does), a
//! patient gets their accounting of disclosures, repeated denials raise
//! one security alert per window; PATCH and `$validate` as use cases.

use super::*;
use medrec_core::service::security_alerts::AlertPolicy;

#[tokio::test]
async fn auditors_search_the_trail_and_patients_get_their_accounting_of_disclosures() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let obs = create(&svc, &dr, temperature(&p, json!(37))).await.unwrap();
    read(&svc, &clinician("dr-b", "user/*.cruds"), "Observation", &obs).await.unwrap();

    let auditor = with_role("aud-1", Role::Auditor, "user/AuditEvent.rs");
    let search = |who: &Caller, q: &[(&str, &str)]| {
        let q: Vec<(String, String)> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (svc, who) = (&svc, who.clone());
        async move {
            let mut audit = svc.draft(Some(&who), "search-type");
            svc.search_audit(&who, q, &mut audit).await
        }
    };
    let trail = search(&auditor, &[("patient", &p)]).await.unwrap();
    let mut agents: Vec<&str> =
        trail.resources.iter().filter_map(|s| s.resource["agent"][0]["who"]["identifier"]["value"].as_str()).collect();
    // Oldest first; records of the same millisecond in any order.
    agents.sort();
    assert_eq!(agents, vec!["dr-a", "dr-a", "dr-b"], "the two creates and the read");
    let by_agent = search(&auditor, &[("agent", "dr-b")]).await.unwrap();
    assert_eq!(by_agent.resources.len(), 1);
    forbidden(search(&dr, &[("patient", &p)]).await);
    assert!(matches!(search(&auditor, &[]).await, Err(Error::BadRequest(_))), "names a patient or an agent");
    assert!(matches!(search(&auditor, &[("patient", &p), ("subject-name", "x")]).await, Err(Error::BadRequest(_))));

    let me = patient_self(&p);
    let mut audit = svc.draft(Some(&me), "operation");
    let disclosed = svc.disclosures(&me, &p, None, None, &mut audit).await.unwrap();
    assert!(!disclosed.is_empty());
    let text = serde_json::to_string(&disclosed).unwrap();
    assert!(text.contains("dr-b"), "the read by dr-b is accounted: {text}");
    let mut audit = svc.draft(Some(&patient_self("other")), "operation");
    assert!(svc.disclosures(&patient_self("other"), &p, None, None, &mut audit).await.is_err());
}

#[tokio::test]
async fn repeated_denials_raise_one_alert_per_window() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let prober = clinician("dr-probe", "user/Observation.rs");
    let policy = AlertPolicy { threshold: 3, window: std::time::Duration::from_secs(3600) };
    for _ in 0..5 {
        let mut audit = svc.draft(Some(&prober), "read");
        let denied = svc.read_record(&prober, "Patient", &p, None, &mut audit).await;
        forbidden(denied);
        audit.status = 403;
        svc.alert_on_repeated_failures(&audit, policy).await;
    }
    let alerts: Vec<_> = svc.store.events().into_iter().filter(|e| e.event_type == "SecurityAlert").collect();
    assert_eq!(alerts.len(), 1, "raised once, however many more failures follow");
    assert_eq!(alerts[0].detail["kind"], "repeated-denials");
    assert!(alerts[0].detail["failures"].as_u64().unwrap() >= 3);
    assert!(alerts[0].detail["agent"].as_str().unwrap().contains("dr-probe"), "the security team sees who");
    assert!(!alerts[0].detail.to_string().contains(&p), "and no patient");
}

#[tokio::test]
async fn a_patch_is_an_update_that_must_also_be_allowed_to_read() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let obs = create(&svc, &dr, temperature(&p, json!(37.0))).await.unwrap();
    let patch = |ops: Value, who: &Caller| {
        let (svc, who, obs) = (&svc, who.clone(), obs.clone());
        async move {
            let mut audit = svc.draft(Some(&who), "patch");
            svc.patch_record(&who, "Observation", &obs, &ops, None, &mut audit).await
        }
    };
    let ok = json!([{"op": "test", "path": "/status", "value": "final"},
        {"op": "replace", "path": "/valueQuantity/value", "value": 37.25}]);
    let patched = patch(ok, &dr).await.unwrap();
    assert_eq!((patched.version, patched.resource["valueQuantity"]["value"].to_string()), (2, "37.25".into()));

    let failing = json!([{"op": "test", "path": "/status", "value": "preliminary"}]);
    assert!(matches!(patch(failing, &dr).await, Err(Error::Invalid(_))));
    assert!(matches!(
        patch(json!([{"op": "replace", "path": "/id", "value": "x"}]), &dr).await,
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(patch(json!({"op": "add"}), &dr).await, Err(Error::BadRequest(_))));
    let invalid = json!([{"op": "remove", "path": "/status"}]);
    assert!(matches!(patch(invalid, &dr).await, Err(Error::Invalid(_))), "the result is validated as an update");
    let writer_only = clinician("dr-w", "user/Observation.u");
    assert!(forbidden(patch(json!([]), &writer_only).await).contains("read access"));
    assert_eq!(read(&svc, &dr, "Observation", &obs).await.unwrap()["meta"]["versionId"], "2", "only the good patch");
}

#[tokio::test]
async fn validate_answers_an_outcome_and_stores_nothing() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let before = svc.store.dump();
    let validate = |body: Value| {
        let (svc, dr) = (&svc, &dr);
        async move {
            let mut audit = svc.draft(Some(dr), "operation");
            svc.validate_resource(dr, "Observation", None, body, None, &mut audit).await
        }
    };
    let good = validate(temperature(&p, json!(37))).await.unwrap();
    assert_eq!(good["resourceType"], "OperationOutcome");
    assert!(good["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"), "{good}");
    let mut bad = temperature(&p, json!(37));
    bad["status"] = "maybe".into();
    let outcome = validate(bad).await.unwrap();
    let errors: Vec<&Value> =
        outcome["issue"].as_array().unwrap().iter().filter(|i| i["severity"] == "error").collect();
    assert!(!errors.is_empty(), "{outcome}");
    let records = |dump: &str| dump.split("audit:").next().unwrap().to_owned();
    assert_eq!(records(&svc.store.dump()), records(&before));
}
