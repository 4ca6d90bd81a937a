//! Consent decides every access: a refused clinician is refused reads,
//! searches and writes and cannot lift the refusal; break-glass overrides
//! it and leaves an access an auditor reviews once; under opt-in nothing is
//! disclosed without a permit, and a withdrawal applies to the next request.

use super::*;
use medrec_core::auth::{BreakGlass, Purpose};
use medrec_core::consent::DefaultPolicy;
use medrec_core::ports::AuditLog;

/// A patient with one temperature and a Consent refusing `refused`; the
/// registrar (consent authority) records both Patient and Consent.
async fn refused_record(svc: &Memory, refused: &str) -> (String, String, String) {
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let dr = clinician("dr-ok", "user/*.cruds");
    let p = create(svc, &registrar, patient()).await.unwrap();
    let obs = create(svc, &dr, temperature(&p, json!(37.2))).await.unwrap();
    let c = create(svc, &registrar, consent(&p, refusing(&format!("Practitioner/{refused}")))).await.unwrap();
    (p, obs, c)
}

fn break_glass(mut caller: Caller) -> Caller {
    caller.purpose = Purpose {
        code: "ETREAT",
        break_glass: Some(BreakGlass {
            code: "patient-unconscious".into(),
            reason: "unresponsive in the emergency department, allergy history needed".into(),
        }),
    };
    caller
}

#[tokio::test]
async fn a_refused_clinician_is_refused_everything_and_cannot_lift_the_refusal() {
    let svc = services();
    let (p, obs, c) = refused_record(&svc, "dr-no").await;
    let dr_ok = clinician("dr-ok", "user/*.cruds");
    let dr_no = clinician("dr-no", "user/*.cruds");

    assert_eq!(read(&svc, &dr_ok, "Observation", &obs).await.unwrap()["id"], obs.as_str());
    assert!(forbidden(read(&svc, &dr_no, "Observation", &obs).await).contains(&format!("Consent/{c}")));
    let mut audit = svc.draft(Some(&dr_no), "search-type");
    let search = svc.search_records(&dr_no, "Observation", vec![("patient".into(), p.clone())], &mut audit).await;
    forbidden(search);
    forbidden(create(&svc, &dr_no, temperature(&p, json!(38))).await);

    // Lifting the refusal: a new permit, withdrawing or deleting the refusal.
    let permit_all = consent(&p, json!({"type": "permit"}));
    assert!(forbidden(create(&svc, &dr_no, permit_all.clone()).await).contains("consent authority"));
    let mut withdrawn = read(&svc, &patient_self(&p), "Consent", &c).await.unwrap();
    withdrawn["status"] = "inactive".into();
    let mut audit = svc.draft(Some(&dr_no), "update");
    forbidden(svc.update_record(&dr_no, "Consent", &c, withdrawn.clone(), None, &mut audit).await);
    let mut audit = svc.draft(Some(&dr_no), "delete");
    assert!(svc.delete_record(&dr_no, "Consent", &c, None, &mut audit).await.is_err());

    // Nor can a consent authority the patient refuses.
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    create(&svc, &registrar, consent(&p, refusing("Practitioner/reg-no"))).await.unwrap();
    let reg_no = with_role("reg-no", Role::Registrar, "user/*.cruds");
    assert!(forbidden(create(&svc, &reg_no, permit_all).await).contains("refused user"));
    let mut audit = svc.draft(Some(&reg_no), "update");
    forbidden(svc.update_record(&reg_no, "Consent", &c, withdrawn.clone(), None, &mut audit).await);
    let consents = svc.store.compartment(&p, "Consent").await.unwrap();
    assert_eq!(consents.len(), 2, "only the registrar's second consent was added");
    assert!(consents.iter().all(|(_, c)| c.version == 1 && !c.deleted), "the refusal stands unchanged");

    // The patient withdraws the refusal; it applies to the next request.
    let mut audit = svc.draft(Some(&patient_self(&p)), "update");
    svc.update_record(&patient_self(&p), "Consent", &c, withdrawn, None, &mut audit).await.unwrap();
    assert_eq!(read(&svc, &dr_no, "Observation", &obs).await.unwrap()["id"], obs.as_str());
}

#[tokio::test]
async fn break_glass_overrides_a_refusal_once_and_leaves_an_access_an_auditor_reviews_once() {
    let svc = services();
    let (p, obs, _) = refused_record(&svc, "dr-er").await;
    let er = break_glass(clinician("dr-er", "user/*.cruds"));
    assert_eq!(read(&svc, &er, "Observation", &obs).await.unwrap()["id"], obs.as_str());
    // Only that request: the next one under treatment is refused again.
    forbidden(read(&svc, &clinician("dr-er", "user/*.cruds"), "Observation", &obs).await);

    let open = svc.store.break_glass_accesses(false, None, 10).await.unwrap();
    assert_eq!(open.len(), 1, "one access to review");
    assert_eq!(open[0].patient, p);
    assert_eq!(open[0].code, "patient-unconscious");
    let trail = svc.store.audit_records().join("\n");
    assert!(!trail.contains("unresponsive"), "the free-text reason is sealed, not in the trail");
    assert!(!svc.store.dump().contains("unresponsive"));
    assert!(svc.store.events().iter().any(|e| e.event_type == "BreakGlassUsed"), "{:?}", svc.store.events());

    let id = open[0].audit_id.clone();
    let review = |who: &Caller, outcome: &'static str| {
        let who = who.clone();
        let id = id.clone();
        let svc = &svc;
        async move {
            let mut audit = svc.draft(Some(&who), "update");
            svc.review_break_glass(&who, &id, outcome, Some("called the ward"), &mut audit).await
        }
    };
    let own = with_role("dr-er", Role::Auditor, "user/AuditEvent.rs");
    assert!(forbidden(review(&own, "justified").await).contains("own"));
    forbidden(review(&clinician("dr-x", "user/*.cruds"), "justified").await);
    let auditor = with_role("aud-1", Role::Auditor, "user/AuditEvent.rs");
    assert!(matches!(review(&auditor, "fine").await, Err(Error::BadRequest(_))));
    review(&auditor, "justified").await.unwrap();
    assert!(matches!(review(&auditor, "unjustified").await, Err(Error::Conflict(_))));
    assert!(svc.store.break_glass_accesses(false, None, 10).await.unwrap().is_empty());
    assert!(!svc.store.dump().contains("called the ward"), "the review note is sealed");
}

#[tokio::test]
async fn under_opt_in_nothing_is_disclosed_without_a_permit_and_a_withdrawal_applies_at_once() {
    let svc = services().with_consent_default(DefaultPolicy::OptIn);
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &registrar, patient()).await.unwrap();
    assert!(forbidden(create(&svc, &dr, temperature(&p, json!(37))).await).contains("opt-in"));

    let c = create(&svc, &registrar, consent(&p, json!({"type": "permit"}))).await.unwrap();
    let obs = create(&svc, &dr, temperature(&p, json!(37))).await.unwrap();
    assert_eq!(read(&svc, &dr, "Observation", &obs).await.unwrap()["valueQuantity"]["value"], 37);

    let mut withdrawn = read(&svc, &registrar, "Consent", &c).await.unwrap();
    withdrawn["status"] = "inactive".into();
    let mut audit = svc.draft(Some(&registrar), "update");
    svc.update_record(&registrar, "Consent", &c, withdrawn, Some(1), &mut audit).await.unwrap();
    assert!(forbidden(read(&svc, &dr, "Observation", &obs).await).contains("opt-in"));
    // The patient's own access never depends on consent.
    assert_eq!(read(&svc, &patient_self(&p), "Observation", &obs).await.unwrap()["id"], obs.as_str());
    // Another patient's token reads nothing of this record.
    assert!(read(&svc, &patient_self("someone-else"), "Observation", &obs).await.is_err());
}

#[tokio::test]
async fn an_ending_consent_is_noticed_once_per_version_without_reading_phi() {
    let svc = services();
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let p = create(&svc, &registrar, patient()).await.unwrap();
    let today = time::OffsetDateTime::now_utc();
    let day = |d: i64| (today + time::Duration::days(d)).date().to_string();
    let ending = |d: i64| consent(&p, json!({"type": "permit", "period": {"start": "2026-01-01", "end": day(d)}}));
    let soon = create(&svc, &registrar, ending(3)).await.unwrap();
    create(&svc, &registrar, ending(40)).await.unwrap();

    assert_eq!(svc.notify_expiring_consents(today, 7).await.unwrap(), 1);
    assert_eq!(svc.notify_expiring_consents(today, 7).await.unwrap(), 0, "noticed once");
    let notices: Vec<_> = svc.store.events().into_iter().filter(|e| e.event_type == "ConsentExpiring").collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].detail["id"], soon.as_str());
    assert!(!notices[0].detail.to_string().contains(CANARY_FAMILY));

    // A new version of the consent (extended, still ending soon) is a new notice.
    let mut extended = read(&svc, &registrar, "Consent", &soon).await.unwrap();
    extended["provision"]["period"]["end"] = day(5).into();
    let mut audit = svc.draft(Some(&registrar), "update");
    svc.update_record(&registrar, "Consent", &soon, extended, Some(1), &mut audit).await.unwrap();
    assert_eq!(svc.notify_expiring_consents(today, 7).await.unwrap(), 1);
}
