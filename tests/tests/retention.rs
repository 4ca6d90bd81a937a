//! Retention and purge against the emulator: the plan names who is past
//! retention and who is held; the run crypto-shreds exactly those, is
//! resumable and idempotent; shredded data cannot be read back from the
//! API, the table or the bucket; the purge's audit records hold no PHI.

use base64::Engine;
use medrec_e2e::{canary_patient, canary_strings, unique_tag, Harness};
use medrec_shared::retention::CLINICAL;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_shreds_what_retention_allows_and_holds_block() {
    // Shredding takes effect in a warm function once its cached copy of the
    // key expires (MEDREC_KEY_CACHE_SECONDS, 300 by default); here at once.
    let h = Harness::start_with(vec![("MEDREC_KEY_CACHE_SECONDS".into(), "0".into())]).await;
    let t = h.token("clinician", "dr-retention");
    let (tag_a, tag_b) = (unique_tag(), unique_tag());
    let a = h.create_id(&t, &canary_patient(&tag_a)).await;
    let b = h.create_id(&t, &canary_patient(&tag_b)).await;
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{a}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
    let obs_id = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": format!("Patient/{a}")},
        "content": [{"attachment": {"contentType": "text/plain",
            "data": base64::engine::general_purpose::STANDARD.encode(format!("letter for Family{tag_a}"))}}]});
    let doc = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&doc.to_string())).await.json();
    let binary = format!("/fhir/{}", doc["content"][0]["attachment"]["url"].as_str().unwrap());

    let target = h.verify_target();
    // An audit export made before the purge: it must hold nothing that the
    // purge would have to reach (audit records carry ids, never PHI).
    let until = medrec_shared::fhir::now_instant();
    let window = ("2000-01-01T00:00:00.000Z", until.as_str());
    let export = medrec_infra::audit_verify::export(&target, "pre-purge", window, 1000, 10).await.unwrap();
    assert!(export.manifest.is_some());
    let ctx =
        medrec_infra::purge::context(&target, &h.table("OutboxTable"), &h.table("DocumentsBucket")).await.unwrap();
    let purger = ctx.purger();
    let now = time::OffsetDateTime::now_utc();
    // Today nobody is past retention; eleven years on, both are.
    assert!(purger.plan(&CLINICAL, now).await.unwrap().is_empty());
    let later = now + time::Duration::days(365 * 11);
    purger.place_hold(&b, "legal-team", "litigation", "CASE-42").await.unwrap();
    let plan = purger.plan(&CLINICAL, later).await.unwrap();
    assert_eq!(plan.len(), 2);
    let pa = plan.iter().find(|c| c.patient == a).unwrap();
    assert_eq!(pa.records.get("Observation"), Some(&1));
    assert_eq!(pa.records.get("DocumentReference"), Some(&1));
    assert!(!pa.held && plan.iter().find(|c| c.patient == b).unwrap().held);

    // A run with no room this time does nothing; a crash after the objects
    // were deleted (simulated: they are gone, the key is not) is finished by
    // the rerun without deleting anything twice.
    let idle = purger.run(&CLINICAL, later, 0, "ops").await.unwrap();
    assert_eq!((idle.shredded, idle.objects_deleted, idle.held), (0, 0, 1));
    let s3 = &h.stack.clients.s3;
    let bucket = h.table("DocumentsBucket");
    for o in s3.list_objects_v2().bucket(&bucket).prefix(format!("{a}/")).send().await.unwrap().contents() {
        s3.delete_object().bucket(&bucket).key(o.key().unwrap()).send().await.unwrap();
    }
    let second = purger.run(&CLINICAL, later, 10, "ops").await.unwrap();
    assert_eq!((second.shredded, second.held, second.already, second.objects_deleted), (1, 1, 0, 0));
    let third = purger.run(&CLINICAL, later, 10, "ops").await.unwrap();
    assert_eq!(third.shredded, 0, "nothing done twice");
    let plan = purger.plan(&CLINICAL, later).await.unwrap();
    assert!(plan.iter().all(|c| c.patient != a), "a purged patient leaves the plan");

    // Shredded: the API answers 410, search no longer finds the patient.
    assert_eq!(h.get(&format!("/fhir/Patient/{a}"), &t).await.status, 410);
    assert_eq!(h.get(&format!("/fhir/Observation/{obs_id}"), &t).await.status, 410);
    assert_eq!(h.get(&binary, &t).await.status, 410);
    assert_eq!(h.get(&format!("/fhir/Patient?family=Family{tag_a}"), &t).await.json()["total"], 0);
    assert_eq!(h.get(&format!("/fhir/Patient/{b}"), &t).await.status, 200, "the held patient is untouched");
    // ... the table has no key to open what remains, the bucket nothing.
    let key_item = h
        .stack
        .clients
        .dynamodb
        .get_item()
        .table_name(h.table("RecordsTable"))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("P#{a}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("KEY".into()))
        .send()
        .await
        .unwrap();
    assert!(key_item.item.is_none());
    let left = s3.list_objects_v2().bucket(&bucket).prefix(format!("{a}/")).send().await.unwrap();
    assert!(left.contents().is_empty(), "no document object of the patient remains");
    // The archive (the pre-purge export) names the patient only by opaque id:
    // none of the purged PHI can be read back from it.
    let archived = h.raw_s3_dump().await;
    assert!(archived.contains("exports/pre-purge/"), "the export is in the archive");
    for s in canary_strings(&tag_a) {
        assert!(!archived.contains(&s), "{s} in the archive");
    }
    // The purge is audited with counts and the shredded key's digest, no PHI.
    let purges: Vec<_> = h.audit_events().await.into_iter().filter(|e| e["subtype"][0]["code"] == "purge").collect();
    assert_eq!(purges.len(), 1);
    let text = purges[0].to_string();
    assert!(text.contains("urn:medrec:purged:Observation:1") && text.contains("shredded-key-sha256"));
    for s in canary_strings(&tag_a) {
        assert!(!text.contains(&s));
    }
    assert!(h.audit_events().await.iter().any(|e| e["subtype"][0]["code"] == "hold-place"));

    // Releasing the hold (audited) lets the next run purge the other patient.
    purger.release_hold(&b, "legal-team").await.unwrap();
    assert_eq!(purger.run(&CLINICAL, later, 10, "ops").await.unwrap().shredded, 1);
    assert_eq!(h.get(&format!("/fhir/Patient/{b}"), &t).await.status, 410);
    assert!(h.audit_events().await.iter().any(|e| e["subtype"][0]["code"] == "hold-release"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_purge_keeps_what_retention_still_covers() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-retention");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let env = h.stack.function_env["PurgeFunction"].clone();
    let config = medrec_shared::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let app = std::sync::Arc::new(medrec_purge::App::new(config, |k| env.get(k).cloned()).await.unwrap());
    let event = lambda_http::LambdaEvent::new(json!({"source": "aws.events"}), lambda_http::Context::default());
    let run = app.handle(event).await.unwrap();
    assert_eq!((run["shredded"].as_u64(), run["held"].as_u64()), (Some(0), Some(0)));
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &t).await.status, 200);
    // A retention below HIPAA's six years is refused at start.
    let mut short = env.clone();
    short.insert("MEDREC_RETENTION_YEARS".into(), "2".into());
    let config = medrec_shared::config::Config::from_lookup(|k| short.get(k).cloned()).unwrap();
    assert!(medrec_purge::App::new(config, |k| short.get(k).cloned()).await.is_err());
}
