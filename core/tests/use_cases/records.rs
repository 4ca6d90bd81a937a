//! Create, read, version, update and delete a record: exact round trips,
//! version checks, who may delete, and nothing stored in the clear.

use super::*;

#[tokio::test]
async fn a_record_reads_back_exactly_and_every_version_is_kept() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    // 37.50: the decimal's precision is part of its value (R4 datatypes).
    let first = temperature(&p, serde_json::from_str("37.50").unwrap());
    let id = create(&svc, &dr, first.clone()).await.unwrap();

    let mut audit = svc.draft(Some(&dr), "read");
    let read = svc.read_record(&dr, "Observation", &id, None, &mut audit).await.unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(read.resource["valueQuantity"]["value"].to_string(), "37.50");
    assert_eq!(without_server_fields(read.resource), first);

    let with_id = |mut r: Value| {
        r["id"] = id.clone().into();
        r
    };
    let second = temperature(&p, serde_json::from_str("38.1").unwrap());
    let mut audit = svc.draft(Some(&dr), "update");
    let updated =
        svc.update_record(&dr, "Observation", &id, with_id(second.clone()), Some(1), &mut audit).await.unwrap();
    assert_eq!(updated.version, 2);
    // A writer who read version 1 cannot overwrite version 2.
    let mut audit = svc.draft(Some(&dr), "update");
    let stale = svc.update_record(&dr, "Observation", &id, with_id(first.clone()), Some(1), &mut audit).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed(_) | Error::Conflict(_))), "{:?}", stale.err());

    let mut audit = svc.draft(Some(&dr), "vread");
    let v1 = svc.read_record(&dr, "Observation", &id, Some(1), &mut audit).await.unwrap();
    assert_eq!(without_server_fields(v1.resource), first);

    // Clinicians do not delete records; an administrator does.
    let mut audit = svc.draft(Some(&dr), "delete");
    let refused = svc.delete_record(&dr, "Observation", &id, None, &mut audit).await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    let admin = with_role("admin-a", Role::Admin, "user/*.cruds");
    let mut audit = svc.draft(Some(&admin), "delete");
    svc.delete_record(&admin, "Observation", &id, None, &mut audit).await.unwrap();
    let mut audit = svc.draft(Some(&dr), "read");
    assert!(matches!(svc.read_record(&dr, "Observation", &id, None, &mut audit).await, Err(Error::Gone)));
    let mut audit = svc.draft(Some(&dr), "vread");
    let v2 = svc.read_record(&dr, "Observation", &id, Some(2), &mut audit).await.unwrap();
    assert_eq!(without_server_fields(v2.resource), second, "history survives the delete");
}

#[tokio::test]
async fn invalid_or_unauthorized_writes_store_nothing() {
    let svc = services();
    let dr = clinician("dr-b", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let stored = svc.store.dump();

    let mut no_status = temperature(&p, json!(37));
    no_status.as_object_mut().unwrap().remove("status");
    match create(&svc, &dr, no_status).await {
        Err(Error::Invalid(issues)) => {
            assert!(issues.iter().any(|i| i.expression.as_deref() == Some("Observation.status")), "{issues:?}")
        }
        other => panic!("{other:?}"),
    }
    // A body temperature of 37 metres is refused by its unit's dimension.
    let mut metres = temperature(&p, json!(37));
    metres["valueQuantity"]["code"] = "m".into();
    metres["valueQuantity"]["unit"] = "m".into();
    assert!(matches!(create(&svc, &dr, metres).await, Err(Error::Invalid(_))));

    let reader = clinician("dr-c", "user/*.rs");
    assert!(matches!(create(&svc, &reader, temperature(&p, json!(37))).await, Err(Error::Forbidden(_))));
    // Records unchanged; only audit records of the refusals were added.
    let without_audit = |dump: &str| dump.split("audit:").next().unwrap().to_owned();
    assert_eq!(without_audit(&svc.store.dump()), without_audit(&stored));
}

#[tokio::test]
async fn phi_is_sealed_at_rest_and_absent_from_audit_records() {
    let svc = services();
    let dr = clinician("dr-d", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let mut audit = svc.draft(Some(&dr), "read");
    svc.read_record(&dr, "Patient", &p, None, &mut audit).await.unwrap();

    let stored = svc.store.dump();
    for phi in [CANARY_FAMILY, "Quentin", "555-0199", "1961-02-03"] {
        assert!(!stored.contains(phi), "{phi} stored in plaintext");
    }
    let records = svc.store.audit_records();
    assert!(records.len() >= 2, "the create and the read are audited: {records:?}");
    assert!(records.iter().any(|r| r.contains("dr-d")), "audit records name who acted");
    assert!(records.iter().all(|r| !r.contains(CANARY_FAMILY) && !r.contains("555-0199")));
}
