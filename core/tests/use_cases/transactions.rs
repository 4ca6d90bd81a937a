//! A transaction's entries over the staging store: each sees what the
//! earlier ones did (the new Patient and its data key), nothing reaches the
//! store until the commit, and the commit is whole or refused whole.

use super::*;
use medrec_core::memory::services_over;
use medrec_core::service::staging::{self, Staging};

type Staged = Services<Staging<MemoryStore>, MemoryKeys>;

fn staged_services() -> Staged {
    services_over(Staging(MemoryStore::default()), "unit")
}

#[tokio::test]
async fn entries_see_each_other_and_nothing_is_stored_before_the_commit() {
    let svc = staged_services();
    let dr = clinician("dr-a", "user/*.cruds");
    let assigned = medrec_core::crypto::random_id();
    let ((p, obs), stage) = staging::run(async {
        staging::assign_next_id(Some(assigned.clone()));
        let p = create(&svc, &dr, patient()).await.unwrap();
        // The next entry finds the Patient (and its key) staged a moment ago.
        let obs = create(&svc, &dr, temperature(&p, json!(37.3))).await.unwrap();
        assert_eq!(read(&svc, &dr, "Observation", &obs).await.unwrap()["subject"]["reference"], format!("Patient/{p}"));
        (p, obs)
    })
    .await;
    assert_eq!(p, assigned, "the id given to the entry's urn:uuid");
    assert_eq!(stage.writes.len(), 2);
    assert_eq!(svc.store.0.audit_len(), 0, "no audit record before the commit either");
    assert!(matches!(read(&svc, &dr, "Patient", &p).await, Err(Error::NotFound)), "outside the scope: nothing");

    let mut bundle = svc.draft(Some(&dr), "transaction");
    svc.commit_staged(stage, &mut bundle).await.unwrap();
    assert_eq!(bundle.entities.len(), 2, "the Bundle's audit record names both changes");
    // The two entries, the read inside the scope and the Bundle's, together.
    assert_eq!(svc.store.0.audit_len(), 4);
    assert_eq!(read(&svc, &dr, "Observation", &obs).await.unwrap()["valueQuantity"]["value"].to_string(), "37.3");
    let events: Vec<_> = svc.store.0.events().into_iter().map(|e| e.event_type).collect();
    assert_eq!(events, vec!["PatientCreated", "ObservationRecorded"]);
}

#[tokio::test]
async fn a_failed_entry_or_a_concurrent_change_leaves_nothing_of_the_transaction() {
    let svc = staged_services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let obs = create(&svc, &dr, temperature(&p, json!(37.0))).await.unwrap();
    let before = svc.store.0.dump();

    // An invalid second entry: the edge discards the stage; nothing was written.
    let (failed, stage) = staging::run(async {
        create(&svc, &dr, temperature(&p, json!(38.0))).await.unwrap();
        let mut invalid = temperature(&p, json!(39.0));
        invalid["status"] = "maybe".into();
        create(&svc, &dr, invalid).await
    })
    .await;
    assert!(matches!(failed, Err(Error::Invalid(_))));
    assert_eq!(stage.writes.len(), 1);
    drop(stage);
    assert_eq!(svc.store.0.dump(), before);

    // An update staged against version 1 while another writer makes version 2.
    let with_id = |mut r: Value| {
        r["id"] = obs.clone().into();
        r
    };
    let (_, stage) = staging::run(async {
        create(&svc, &dr, temperature(&p, json!(36.9))).await.unwrap();
        let mut audit = svc.draft(Some(&dr), "update");
        let staged = with_id(temperature(&p, json!(37.5)));
        svc.update_record(&dr, "Observation", &obs, staged, Some(1), &mut audit).await.unwrap();
    })
    .await;
    let mut audit = svc.draft(Some(&dr), "update");
    let concurrent = with_id(temperature(&p, json!(37.7)));
    svc.update_record(&dr, "Observation", &obs, concurrent, Some(1), &mut audit).await.unwrap();
    let after_concurrent = svc.store.0.dump();
    let mut bundle = svc.draft(Some(&dr), "transaction");
    assert!(matches!(svc.commit_staged(stage, &mut bundle).await, Err(Error::Conflict(_))));
    assert_eq!(svc.store.0.dump(), after_concurrent, "refused whole: not even the new Observation");
    let current = read(&svc, &dr, "Observation", &obs).await.unwrap();
    assert_eq!(current["valueQuantity"]["value"].to_string(), "37.7");
}
