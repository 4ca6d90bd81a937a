//! Data keys moved to a new records CMK inside KMS: every patient's key and
//! the service root secret re-wrapped, resumable, idempotent, audited; the
//! records readable under the new CMK alone once the old one is disabled,
//! and a function that does not accept the CMK a key is under refusing it.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use medrec_edge::aws::rekey::{key_status, Rekey};
use std::sync::Arc;

/// `GET path` on a Patients function instance booted with `overrides`.
async fn get_with(h: &Harness, overrides: &[(&str, &str)], path: &str, token: &str) -> u16 {
    let app = Arc::new(medrec_patients::boot(&h.settings("PatientsFunction", overrides)).await.unwrap());
    let event = medrec_e2e::gateway_event("GET", path, token, &[], "", "GET /fhir/Patient/{id}", Default::default());
    let req = medrec_edge::lambda::request_from_event(serde_json::from_value(event).unwrap()).unwrap();
    medrec_edge::lambda::handle_guarded(app, req).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_keys_move_to_a_new_cmk_without_leaving_kms() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let mut patients = vec![];
    for _ in 0..3 {
        patients.push(h.create_id(&registrar, &canary_patient(&unique_tag())).await);
    }
    let (ddb, kms) = (&h.stack.clients.dynamodb, &h.stack.clients.kms);
    let table = h.table("RecordsTable");
    let now = time::OffsetDateTime::now_utc();
    let before = key_status(ddb, &table, now).await.unwrap();
    assert_eq!((before.data_keys, before.by_cmk.get("as created").copied()), (3, Some(3)));
    assert_eq!(before.by_age.get("under 90 days"), Some(&3));
    assert_eq!(before.secrets.get("ROOT_SECRET").map(String::as_str), Some("as created"));

    let old = h.table("RecordsKey");
    let new = kms.create_key().description("records CMK 2").send().await.unwrap();
    let new_arn = new.key_metadata().unwrap().arn().unwrap().to_owned();
    let target = h.verify_target();
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let keys = medrec_edge::aws::kms::KmsKeys::new(kms.clone(), &new_arn).accepting(vec![old.clone()]);
    let tables = medrec_edge::aws::dynamo::Tables {
        records: table.clone(),
        audit: h.table("AuditTable"),
        outbox: h.table("OutboxTable"),
    };
    let ctx = medrec_edge::aws::purge::PurgeContext::new(&sdk, true, tables, keys, 8, &h.table("DocumentsBucket"))
        .await
        .unwrap();
    let rekey = Rekey { ddb, kms, records_table: &table, store: &ctx.store };

    // Stopped after one key, then finished: nothing twice, nothing left.
    let first = rekey.rewrap(&new_arn, "ops-1", 1, |_| {}).await.unwrap();
    assert_eq!((first.rewrapped, first.more), (1, true));
    let rest = rekey.rewrap(&new_arn, "ops-1", u64::MAX, |_| {}).await.unwrap();
    assert_eq!((rest.rewrapped, rest.already, rest.skipped, rest.more), (3, 1, 0, false), "{rest:?}");
    let again = rekey.rewrap(&new_arn, "ops-1", u64::MAX, |_| {}).await.unwrap();
    assert_eq!((again.rewrapped, again.already), (0, 4));
    let after = key_status(ddb, &table, now).await.unwrap();
    assert_eq!(after.by_cmk.get(&new_arn), Some(&3), "{after:?}");
    assert_eq!(after.secrets.get("ROOT_SECRET"), Some(&new_arn));

    // The old CMK disabled: records read under the new one alone.
    kms.disable_key().key_id(&old).send().await.unwrap();
    let dr = h.token("clinician", "dr-a");
    for p in &patients {
        let path = format!("/fhir/Patient/{p}");
        assert_eq!(get_with(&h, &[("MEDREC_RECORDS_KEY_ID", &new_arn)], &path, &dr).await, 200);
    }
    // A function configured for the old CMK only does not start: the root
    // secret is under a CMK it does not accept.
    let stale = h.settings("PatientsFunction", &[]);
    assert!(medrec_patients::boot(&stale).await.is_err(), "fails closed");

    // The run is on the trail, by who ran it.
    let auditor = h.token("auditor", "auditor-1");
    let trail = h.get("/fhir/AuditEvent?agent=ops-1&subtype=key-rewrap", &auditor).await;
    assert_eq!(trail.status, 200);
    assert_eq!(trail.json()["total"], 3, "one record a run");
}
