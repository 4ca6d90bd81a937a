//! Retention and purge against the emulator: the plan names who is past
//! retention and who is held; the run crypto-shreds exactly those, is
//! resumable and idempotent; shredded data cannot be read back from the
//! API, the table or the bucket; the purge's audit records hold no PHI.

use base64::Engine;
use medrec_e2e::{canary_patient, canary_strings, unique_tag, Harness};
use medrec_edge::aws::schema;
use medrec_edge::purge::{HoldTarget, Why};
use medrec_edge::retention::Retention;
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
    let until = medrec_edge::fhir::now_instant();
    let window = ("2000-01-01T00:00:00.000Z", until.as_str());
    let export = medrec_infra::audit_verify::export(&target, "pre-purge", window, 1000, 10).await.unwrap();
    assert!(export.manifest.is_some());
    let ctx =
        medrec_infra::purge::context(&target, &h.table("OutboxTable"), &h.table("DocumentsBucket")).await.unwrap();
    let purger = ctx.purger();
    let now = time::OffsetDateTime::now_utc();
    // Today nobody is past retention; eleven years on, both are.
    let retention = Retention::default();
    assert_eq!(purger.plan(&retention, now).await.unwrap(), Default::default());
    let later = now + time::Duration::days(365 * 11);
    let hold_b = HoldTarget::Patient(b.clone());
    assert!(purger.place_hold(&hold_b, "legal-team", "litigation", "CASE-42").await.unwrap());
    // Observations kept for 25 years keep the patient who has one.
    let typed = Retention::default().with_types("Observation=25").unwrap();
    let plan = purger.plan(&typed, later).await.unwrap().patients;
    assert!(plan.iter().all(|c| c.patient != a) && plan.iter().any(|c| c.patient == b));
    let plan = purger.plan(&retention, later).await.unwrap().patients;
    assert_eq!(plan.len(), 2);
    let pa = plan.iter().find(|c| c.patient == a).unwrap();
    assert_eq!(pa.records.get("Observation"), Some(&1));
    assert_eq!(pa.records.get("DocumentReference"), Some(&1));
    assert!(!pa.held && plan.iter().find(|c| c.patient == b).unwrap().held);
    assert_eq!(pa.why, Why::Retention);

    // A run with no room this time does nothing; a crash after the objects
    // were deleted (simulated: they are gone, the key is not) is finished by
    // the rerun without deleting anything twice.
    let idle = purger.run(&retention, later, 0, "ops").await.unwrap();
    assert_eq!((idle.shredded, idle.objects_deleted, idle.held), (0, 0, 1));
    let s3 = &h.stack.clients.s3;
    let bucket = h.table("DocumentsBucket");
    for o in s3.list_objects_v2().bucket(&bucket).prefix(format!("{a}/")).send().await.unwrap().contents() {
        s3.delete_object().bucket(&bucket).key(o.key().unwrap()).send().await.unwrap();
    }
    let second = purger.run(&retention, later, 10, "ops").await.unwrap();
    assert_eq!((second.shredded, second.held, second.already, second.objects_deleted), (1, 1, 0, 0));
    let third = purger.run(&retention, later, 10, "ops").await.unwrap();
    assert_eq!(third.shredded, 0, "nothing done twice");
    let plan = purger.plan(&retention, later).await.unwrap().patients;
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
        .set_key(Some(schema::key(schema::patient_pk(&a), schema::DATA_KEY_SK)))
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
    purger.release_hold(&hold_b, "legal-team").await.unwrap();
    assert_eq!(purger.run(&retention, later, 10, "ops").await.unwrap().shredded, 1);
    assert_eq!(h.get(&format!("/fhir/Patient/{b}"), &t).await.status, 410);
    assert!(h.audit_events().await.iter().any(|e| e["subtype"][0]["code"] == "hold-release"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_purge_keeps_what_retention_still_covers() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-retention");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let app = std::sync::Arc::new(medrec_purge::boot(&h.settings("PurgeFunction", &[])).await.unwrap());
    let event = lambda_http::LambdaEvent::new(json!({"source": "aws.events"}), lambda_http::Context::default());
    let run = app.handle(event).await.unwrap();
    assert_eq!((run["shredded"].as_u64(), run["held"].as_u64()), (Some(0), Some(0)));
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &t).await.status, 200);
    // A retention below HIPAA's six years is refused at start.
    let short = h.settings("PurgeFunction", &[("MEDREC_RETENTION_YEARS", "2")]);
    assert!(medrec_purge::boot(&short).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_resources_and_superseded_versions_are_purged_per_resource() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-retention");
    let tag = unique_tag();
    let patient = h.create_id(&t, &canary_patient(&tag)).await;
    let observation = |value: f64| {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2015-11-20T09:00:00Z",
            "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
    };
    // Kept: three versions, the first superseded long ago.
    let kept = h.create_id(&t, &observation(5.1)).await;
    for (version, value) in [(1, 5.2), (2, 5.3)] {
        let mut body = observation(value);
        body["id"] = json!(kept);
        let etag = format!("W/\"{version}\"");
        let if_match = [("if-match", etag.as_str())];
        let path = format!("/fhir/Observation/{kept}");
        assert_eq!(h.call("PUT", &path, Some(&t), &if_match, Some(&body.to_string())).await.status, 200);
    }
    // Deleted long ago: an observation and a document with its object.
    let gone = h.create_id(&t, &observation(9.9)).await;
    let doc = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": format!("Patient/{patient}")},
        "content": [{"attachment": {"contentType": "text/plain",
            "data": base64::engine::general_purpose::STANDARD.encode(format!("old letter for Family{tag}"))}}]});
    let doc = h.create_id(&t, &doc).await;
    let admin = h.token("admin", "records-admin");
    for (ty, id) in [("Observation", &gone), ("DocumentReference", &doc)] {
        assert_eq!(h.call("DELETE", &format!("/fhir/{ty}/{id}"), Some(&admin), &[], None).await.status, 204);
    }
    h.backdate(&patient, "Observation", &kept, &[1, 2], "2012-01-01T00:00:00.000Z").await;
    h.backdate(&patient, "Observation", &gone, &[1, 2], "2012-01-01T00:00:00.000Z").await;
    h.backdate(&patient, "DocumentReference", &doc, &[1, 2], "2012-01-01T00:00:00.000Z").await;
    let s3 = &h.stack.clients.s3;
    let bucket = h.table("DocumentsBucket");
    let bucket = &bucket;
    let objects = |prefix: String| async move {
        s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap().contents().len()
    };
    assert_eq!(objects(format!("{patient}/{doc}-")).await, 1);

    let ctx = medrec_infra::purge::context(&h.verify_target(), &h.table("OutboxTable"), &h.table("DocumentsBucket"))
        .await
        .unwrap();
    let purger = ctx.purger();
    let retention = Retention::default();
    let now = time::OffsetDateTime::now_utc();
    let plan = purger.plan(&retention, now).await.unwrap();
    let mine: Vec<_> = plan.resources.iter().filter(|r| r.patient == patient).collect();
    assert!(plan.patients.iter().all(|c| c.patient != patient), "the patient is active: kept");
    let find = |id: &str| mine.iter().find(|r| r.id == id).copied().unwrap();
    assert_eq!((find(&kept).versions.clone(), find(&kept).whole), (vec![1], false), "v2 was superseded today");
    assert_eq!((find(&gone).versions.clone(), find(&gone).whole), (vec![1, 2], true));
    assert!(find(&doc).whole);
    assert_eq!(mine.len(), 3);

    // A hold on one resource blocks that resource only.
    let hold = HoldTarget::parse(&format!("Observation/{gone}")).unwrap();
    assert!(purger.place_hold(&hold, "legal-team", "litigation", "CASE-7").await.unwrap());
    let unknown = HoldTarget::parse("Observation/nosuchobservation").unwrap();
    assert!(!purger.place_hold(&unknown, "legal-team", "litigation", "CASE-7").await.unwrap());
    assert!(HoldTarget::parse("Observation/../x").is_none() && HoldTarget::parse("observation/x").is_none());
    let run = purger.run(&retention, now, 10, "ops").await.unwrap();
    assert_eq!((run.resources, run.versions_deleted, run.held, run.objects_deleted, run.shredded), (2, 3, 1, 1, 0));
    assert_eq!(objects(format!("{patient}/{doc}-")).await, 0);
    assert_eq!(h.get(&format!("/fhir/DocumentReference/{doc}"), &t).await.status, 404);
    assert_eq!(h.get(&format!("/fhir/Observation/{kept}/_history/1"), &t).await.status, 404);
    assert_eq!(h.get(&format!("/fhir/Observation/{kept}/_history/2"), &t).await.status, 200);
    let history = h.get(&format!("/fhir/Observation/{kept}/_history"), &t).await.json();
    assert_eq!(history["entry"].as_array().unwrap().len(), 2);
    assert_eq!(h.get(&format!("/fhir/Observation/{gone}"), &t).await.status, 410, "held: still a tombstone");
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &t).await.status, 200);

    // Nothing twice; the release lets the held one go.
    assert_eq!(purger.run(&retention, now, 10, "ops").await.unwrap().resources, 0);
    purger.release_hold(&hold, "legal-team").await.unwrap();
    assert_eq!(purger.run(&retention, now, 10, "ops").await.unwrap().resources, 1);
    assert_eq!(h.get(&format!("/fhir/Observation/{gone}"), &t).await.status, 404);
    assert!(purger.plan(&retention, now).await.unwrap().resources.iter().all(|r| r.patient != patient));

    // Audited once per purge, with the destroyed ciphertexts' digests, no PHI.
    let purges: Vec<_> =
        h.audit_events().await.into_iter().filter(|e| e["subtype"][0]["code"] == "purge-resource").collect();
    let mine: Vec<_> = purges.iter().filter(|e| e.to_string().contains(&patient)).collect();
    assert_eq!(mine.len(), 3);
    for e in &mine {
        assert_eq!(e["action"], "D");
        let text = e.to_string();
        assert!(
            text.contains("urn:medrec:purged-version-sha256:")
                && text.contains("urn:medrec:policy:clinical-record:10y")
        );
        for s in canary_strings(&tag) {
            assert!(!text.contains(&s));
        }
    }
    // No item of the purged resources remains in the table.
    let raw = h.raw_dump().await;
    assert!(!raw.contains(&format!("Observation#{gone}")) && !raw.contains(&format!("DocumentReference#{doc}")));
    assert!(!raw.contains(&schema::version_sk("Observation", &kept, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_request_is_carried_out_at_the_legal_floor_and_holds_still_block() {
    let h = Harness::start_with(vec![("MEDREC_KEY_CACHE_SECONDS".into(), "0".into())]).await;
    let t = h.token("clinician", "dr-retention");
    let asked = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let ctx = medrec_infra::purge::context(&h.verify_target(), &h.table("OutboxTable"), &h.table("DocumentsBucket"))
        .await
        .unwrap();
    let purger = ctx.purger();
    assert!(!purger.request_erasure("nosuchpatient", "privacy-office", "DSR-1").await.unwrap());
    assert!(purger.request_erasure(&asked, "privacy-office", "DSR-2").await.unwrap());
    assert!(h
        .audit_events()
        .await
        .iter()
        .any(|e| e["subtype"][0]["code"] == "erasure-request" && e.to_string().contains(&asked)));

    // By default retention laws win: the request waits for the clinical
    // period, like everyone else.
    let now = time::OffsetDateTime::now_utc();
    let seven_years_on = now + time::Duration::days(365 * 7 + 2);
    let default = purger.plan(&Retention::default(), seven_years_on).await.unwrap();
    assert!(default.patients.iter().all(|c| c.patient != asked));
    let pending = default.pending_erasures.iter().find(|e| e.patient == asked).unwrap();
    assert!(pending.earliest.as_str() > "2036", "{}", pending.earliest);

    // Where the legal floor is six years, the request is carried out then;
    // the other patient is kept.
    let floor6 = Retention::new(Some(10), Some(6)).unwrap();
    let today = purger.plan(&floor6, now).await.unwrap();
    assert!(
        today.patients.iter().all(|c| c.patient != asked) && today.pending_erasures.iter().any(|e| e.patient == asked)
    );
    let plan = purger.plan(&floor6, seven_years_on).await.unwrap();
    let c = plan.patients.iter().find(|c| c.patient == asked).unwrap();
    assert_eq!(c.why, Why::Erasure);
    assert!(plan.patients.iter().all(|c| c.patient != other));

    // A hold still blocks it, even one on a single record of the patient
    // (shredding the key would destroy that record too).
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{asked}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
    let obs = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await.json();
    let hold = HoldTarget::parse(&format!("Observation/{}", obs["id"].as_str().unwrap())).unwrap();
    purger.place_hold(&hold, "legal-team", "litigation", "CASE-9").await.unwrap();
    assert_eq!(purger.run(&floor6, seven_years_on, 10, "privacy-office").await.unwrap().shredded, 0);
    assert_eq!(h.get(&format!("/fhir/Patient/{asked}"), &t).await.status, 200);
    purger.release_hold(&hold, "legal-team").await.unwrap();
    let run = purger.run(&floor6, seven_years_on, 10, "privacy-office").await.unwrap();
    assert_eq!(run.shredded, 1);
    assert_eq!(h.get(&format!("/fhir/Patient/{asked}"), &t).await.status, 410);
    assert_eq!(h.get(&format!("/fhir/Patient/{other}"), &t).await.status, 200);
    let purge = h
        .audit_events()
        .await
        .into_iter()
        .find(|e| e["subtype"][0]["code"] == "purge" && e.to_string().contains(&asked))
        .unwrap();
    assert!(purge.to_string().contains("urn:medrec:policy:erasure-floor:6y"));
}

/// The directory is nobody's record and never shredded, but what it
/// deleted or superseded long ago goes under retention as a patient's
/// records do, and a legal hold on one of its resources blocks that
/// resource's purge. Audited without a patient; no RecordsPurged event
/// names one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directorys_old_versions_are_purged_unless_held() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "desk-retention");
    let admin = h.token("admin", "adm-retention");
    let t = h.token("clinician", "dr-dir-retention");
    let directory = medrec_edge::service::clinical::DIRECTORY;
    let tag = unique_tag();
    let kept = h
        .create_id(&registrar, &json!({"resourceType": "Practitioner", "name": [{"family": format!("Old{tag}")}]}))
        .await;
    let renamed = json!({"resourceType": "Practitioner", "id": kept, "name": [{"family": format!("New{tag}")}]});
    let path = format!("/fhir/Practitioner/{kept}");
    assert_eq!(h.call("PUT", &path, Some(&registrar), &[], Some(&renamed.to_string())).await.status, 200);
    let gone = h.create_id(&registrar, &json!({"resourceType": "Organization", "name": format!("Closed{tag}")})).await;
    let held = h.create_id(&registrar, &json!({"resourceType": "Location", "name": format!("Ward{tag}")})).await;
    for (ty, id) in [("Organization", &gone), ("Location", &held)] {
        assert_eq!(h.call("DELETE", &format!("/fhir/{ty}/{id}"), Some(&admin), &[], None).await.status, 204);
    }
    h.backdate(directory, "Practitioner", &kept, &[1, 2], "2012-01-01T00:00:00.000Z").await;
    h.backdate(directory, "Organization", &gone, &[1, 2], "2012-01-01T00:00:00.000Z").await;
    h.backdate(directory, "Location", &held, &[1, 2], "2012-01-01T00:00:00.000Z").await;

    let ctx = medrec_infra::purge::context(&h.verify_target(), &h.table("OutboxTable"), &h.table("DocumentsBucket"))
        .await
        .unwrap();
    let purger = ctx.purger();
    let (retention, now) = (Retention::default(), time::OffsetDateTime::now_utc());
    let hold = HoldTarget::parse(&format!("Location/{held}")).unwrap();
    assert!(purger.place_hold(&hold, "legal-team", "litigation", "CASE-9").await.unwrap());
    let plan = purger.plan(&retention, now).await.unwrap();
    let found = |id: &str| plan.resources.iter().find(|r| r.id == id).unwrap();
    assert_eq!((found(&kept).versions.clone(), found(&kept).whole), (vec![1], false));
    assert!(found(&gone).whole && !found(&gone).held);
    assert!(found(&held).whole && found(&held).held);
    assert!(plan.resources.iter().all(|r| r.patient == directory) && plan.patients.is_empty());

    let run = purger.run(&retention, now, 10, "ops").await.unwrap();
    assert_eq!((run.resources, run.versions_deleted, run.held, run.shredded), (2, 3, 1, 0));
    assert_eq!(h.get(&format!("/fhir/Organization/{gone}"), &t).await.status, 404);
    assert_eq!(h.get(&format!("/fhir/Location/{held}"), &t).await.status, 410, "held: still a tombstone");
    assert_eq!(h.get(&format!("/fhir/Practitioner/{kept}/_history/1"), &t).await.status, 404);
    let current = h.get(&path, &t).await;
    assert_eq!((current.status, current.json()["name"][0]["family"].clone()), (200, json!(format!("New{tag}"))));
    // The directory's key stays: what is left reads and searches as before.
    let r = h.get(&format!("/fhir/Practitioner?name=New{tag}"), &t).await.json();
    assert_eq!(r["total"], 1);
    assert_eq!(purger.run(&retention, now, 10, "ops").await.unwrap().resources, 0, "nothing twice");

    purger.release_hold(&hold, "legal-team").await.unwrap();
    assert_eq!(purger.run(&retention, now, 10, "ops").await.unwrap().resources, 1);
    assert_eq!(h.get(&format!("/fhir/Location/{held}"), &t).await.status, 404);

    // Audited with the destroyed ciphertexts' digests, naming no patient.
    let audited: Vec<_> = h
        .audit_events()
        .await
        .into_iter()
        .filter(|e| {
            ["purge-resource", "hold-place", "hold-release"].contains(&e["subtype"][0]["code"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(audited.len(), 5, "three purges, a hold and its release");
    for e in &audited {
        let text = e.to_string();
        assert!(!text.contains("Patient/") && !text.contains(directory), "{text}");
    }
    let outbox = h.scan(&h.table("OutboxTable")).await;
    let types: Vec<_> = outbox.iter().filter_map(|i| i.get("type").and_then(|t| t.as_s().ok())).collect();
    assert!(!types.is_empty() && !types.iter().any(|t| *t == "RecordsPurged"), "{types:?}");
    let raw = h.raw_dump().await;
    assert!(!raw.contains(&format!("Organization#{gone}")) && !raw.contains(&format!("Location#{held}")));
    assert!(!raw.contains(&schema::version_sk("Practitioner", &kept, 1)));
}
