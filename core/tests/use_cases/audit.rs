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

const LONG: &str = "0123456789abcdef0123456789abcdef";
const HUGE: &str = "fedcba9876543210fedcba9876543210";

/// A trail of `n` reads of `patient` by two agents, stamped by the test:
/// instants shared by groups of up to 5 records, and one instant shared
/// by 40 (more than a page), as a busy integration writes them.
async fn seeded_trail(svc: &Memory, patient: &str, n: usize) -> Vec<(String, String, String)> {
    use medrec_core::ports::RecordStore;
    let mut written = vec![];
    for i in 0..n {
        let who = clinician(if i % 3 == 0 { "dr-rare" } else { "dr-often" }, "user/*.cruds");
        let mut entry = svc.draft(Some(&who), "read");
        let tick = if (200..240).contains(&i) { 200 } else { i - i % (1 + i % 5) };
        entry.recorded = format!("2026-11-01T10:{:02}:{:02}.{:03}Z", tick / 60_000, tick / 1000 % 60, tick % 1000);
        entry.patient = Some(patient.to_owned());
        entry.entities = vec![format!("Patient/{patient}")];
        svc.store.audit(&entry, vec![]).await.unwrap();
        written.push((entry.recorded.clone(), entry.id.clone(), entry.agent.subject.clone().unwrap()));
    }
    written.sort();
    written
}

#[tokio::test]
async fn audit_search_pages_through_a_long_trail_reading_about_a_page_each() {
    let svc = services();
    let auditor = with_role("aud-1", Role::Auditor, "user/AuditEvent.rs");
    let trail = seeded_trail(&svc, LONG, 600).await;
    let page = |q: Vec<(String, String)>| {
        let (svc, auditor) = (&svc, auditor.clone());
        async move {
            let mut audit = svc.draft(Some(&auditor), "search-type");
            let before = svc.store.audit_reads();
            let found = svc.search_audit(&auditor, q, &mut audit).await.unwrap();
            (found, svc.store.audit_reads() - before)
        }
    };
    // (agent filter, the records it matches, records examined a match)
    for (filter, expected, per_match) in [
        (None, trail.clone(), 1),
        (Some("dr-rare"), trail.iter().filter(|t| t.2 == "dr-rare").cloned().collect::<Vec<_>>(), 3),
    ] {
        // The window leaves out the trail of these searches themselves.
        let mut q = vec![
            ("patient".to_owned(), LONG.to_owned()),
            ("date".to_owned(), "lt2026-11-02".to_owned()),
            ("_count".to_owned(), "7".to_owned()),
        ];
        q.extend(filter.map(|a| ("agent".to_owned(), a.to_owned())));
        let (mut seen, mut reads, mut pages) = (vec![], vec![], 0);
        loop {
            let (found, read) = page(q).await;
            pages += 1;
            assert!(found.resources.len() <= 7);
            assert_eq!(
                found.total.is_some(),
                pages == 1 && found.next_cursor.is_none(),
                "a total only when one page held all"
            );
            seen.extend(
                found.resources.iter().map(|s| (s.resource["recorded"].as_str().unwrap().to_owned(), s.id.clone())),
            );
            reads.push(read);
            match found.next_cursor {
                Some(c) => q = vec![("_cursor".to_owned(), c)],
                None => break,
            }
        }
        let expected: Vec<(String, String)> = expected.into_iter().map(|(at, id, _)| (at, id)).collect();
        assert_eq!(seen.len(), expected.len(), "{filter:?}: across {pages} pages");
        assert!(seen == expected, "{filter:?}: every record once, by (instant, id)");
        // The whole window used to be read for every page: 600 a page.
        let worst = reads.iter().max().unwrap();
        assert!(*worst <= 40 * 4 * per_match, "{filter:?}: a page read {worst} records: {reads:?}");
        let mean = reads.iter().sum::<usize>() / reads.len();
        assert!(mean <= 4 * 8 * per_match, "{filter:?}: {mean} records read a page on average: {reads:?}");
    }
}

#[tokio::test]
async fn a_selective_audit_search_answers_with_a_cursor_before_its_work_is_unbounded() {
    let svc = services();
    let auditor = with_role("aud-1", Role::Auditor, "user/AuditEvent.rs");
    seeded_trail(&svc, HUGE, 6_000).await;
    let q =
        |extra: (&str, &str)| vec![("patient".to_owned(), HUGE.to_owned()), (extra.0.to_owned(), extra.1.to_owned())];
    let mut audit = svc.draft(Some(&auditor), "search-type");
    let before = svc.store.audit_reads();
    let none = svc.search_audit(&auditor, q(("agent", "nobody")), &mut audit).await.unwrap();
    let read = svc.store.audit_reads() - before;
    assert!(none.resources.is_empty() && none.total.is_none());
    assert!(read < 6_000, "one page stops at its scan bound: read {read}");
    let cursor = none.next_cursor.expect("a cursor past what was examined");
    let mut audit = svc.draft(Some(&auditor), "search-type");
    let rest = svc.search_audit(&auditor, vec![("_cursor".to_owned(), cursor)], &mut audit).await.unwrap();
    assert!(rest.resources.is_empty() && rest.next_cursor.is_none(), "the second page finishes the window");
}
