//! Audit: every request leaves exactly the expected AuditEvents, and
//! `medrec audit verify` detects and names edited, deleted, inserted and
//! reordered records.

use aws_sdk_dynamodb::types::AttributeValue;
use medrec_e2e::{canary_patient, unique_tag, Harness};
use medrec_edge::aws::schema::{self, ChainItem, HeadItem};
use medrec_infra::audit_verify::verify;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_the_expected_audit_events() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-audit");
    let admin = h.token("admin", "admin-audit");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&admin, &canary_patient(&unique_tag())).await;
    let mut body = h.get(&format!("/fhir/Patient/{id}"), &t).await.json();
    body["active"] = json!(true);
    h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"1\"")], Some(&body.to_string())).await;
    h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"1\"")], Some(&body.to_string())).await;
    h.get(&format!("/fhir/Patient/{id}/_history/1"), &t).await;
    h.get(&format!("/fhir/Patient/{id}/_history"), &t).await;
    let found = h.get("/fhir/Patient?gender=female&_count=5", &t).await.json();
    let matched: Vec<String> = found["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!matched.is_empty());
    h.call("DELETE", &format!("/fhir/Patient/{other}"), Some(&t), &[], None).await;
    h.call("POST", "/fhir/Patient", Some(&t), &[], Some(r#"{"resourceType":"Patient","gender":"x"}"#)).await;
    h.get("/fhir/metadata", &t).await;

    let events = h.audit_events_of("dr-audit").await;
    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &events {
        *got.entry((
            e["subtype"][0]["code"].as_str().unwrap().to_owned(),
            e["outcome"].as_str().unwrap().to_owned(),
        ))
        .or_default() += 1;
        assert_eq!(e["resourceType"], "AuditEvent");
        assert_eq!(e["agent"][0]["role"][0]["text"], "clinician");
        assert!(e["agent"][0]["network"]["address"].as_str().is_some(), "source address recorded");
        assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        assert!(e["recorded"].as_str().unwrap().ends_with('Z'));
    }
    let expected: BTreeMap<(String, String), usize> = [
        (("create", "0"), 1),
        (("read", "0"), 1),
        (("update", "0"), 1),
        (("update", "4"), 1),
        (("vread", "0"), 1),
        (("history-instance", "0"), 1),
        // One disclosure per patient the search returned.
        (("search-type", "0"), matched.len()),
        (("delete", "4"), 1),
        (("create", "4"), 1),
    ]
    .into_iter()
    .map(|((a, b), n)| ((a.to_owned(), b.to_owned()), n))
    .collect();
    assert_eq!(got, expected, "metadata is not PHI and is not audited; everything else is, exactly once");

    let searches: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["subtype"][0]["code"] == "search-type").collect();
    for search in &searches {
        let text = search.to_string();
        assert!(text.contains("gender,_count"), "parameter names are recorded");
        assert!(!text.contains("female"), "parameter values are not");
    }
    let patients: std::collections::BTreeSet<String> = searches
        .iter()
        .flat_map(|e| e["entity"].as_array().unwrap().iter())
        .filter(|en| en["role"]["code"] == "1")
        .map(|en| en["what"]["reference"].as_str().unwrap().trim_start_matches("Patient/").to_owned())
        .collect();
    assert_eq!(patients, matched.iter().cloned().collect(), "each record names the patient it disclosed");
    let read = events.iter().find(|e| e["subtype"][0]["code"] == "read").unwrap();
    let refs: Vec<&str> =
        read["entity"].as_array().unwrap().iter().filter_map(|e| e["what"]["reference"].as_str()).collect();
    assert_eq!(refs, vec![format!("Patient/{id}/_history/1").as_str(), format!("Patient/{id}").as_str()]);
}

/// The key of shard 0's chain record `seq` (the tests here run one shard).
fn chain_key(seq: u64) -> HashMap<String, AttributeValue> {
    schema::audit_key(schema::chain_pk(0), seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_kind_of_tampering() {
    let h = Harness::start_with(vec![("MEDREC_AUDIT_SHARDS".into(), "1".into())]).await;
    let t = h.token("clinician", "dr-tamper");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    for _ in 0..5 {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let target = h.verify_target();
    let report = verify(&target, false).await.unwrap();
    assert!(report.breaks.is_empty());
    assert_eq!(report.records, 6);

    let ddb = &h.stack.clients.dynamodb;
    let table = h.table("AuditTable");
    let get = |seq: u64| {
        let table = &table;
        async move {
            let out = ddb.get_item().table_name(table).set_key(Some(chain_key(seq))).send().await.unwrap();
            schema::from_item::<ChainItem>(&out.item.unwrap()).unwrap()
        }
    };
    let put = |record: ChainItem| ddb.put_item().table_name(&table).set_item(Some(schema::to_item(&record))).send();
    let delete = |seq: u64| ddb.delete_item().table_name(&table).set_key(Some(chain_key(seq))).send();
    let original3 = get(3).await;
    let original4 = get(4).await;

    let expect_break = |seq: u64, reason: &'static str| {
        let target = &target;
        async move {
            let r = verify(target, false).await.unwrap();
            assert_eq!(r.breaks.len(), 1, "{reason}");
            assert_eq!((r.breaks[0].shard, r.breaks[0].seq), (0, seq), "{reason}: {}", r.breaks[0]);
            assert!(r.breaks[0].reason.contains(reason), "{}", r.breaks[0]);
        }
    };

    // Modified: an edited body.
    let mut edited = original3.clone();
    edited.entry.body = edited.entry.body.replace("\"outcome\":\"0\"", "\"outcome\":\"4\"");
    put(edited).await.unwrap();
    expect_break(3, "modified").await;
    put(original3.clone()).await.unwrap();

    // Stripped: a record's body attribute removed is a break reported,
    // not a verification that stops.
    let mut stripped = schema::to_item(&original3);
    stripped.remove("body");
    ddb.put_item().table_name(&table).set_item(Some(stripped)).send().await.unwrap();
    expect_break(3, "modified").await;
    put(original3.clone()).await.unwrap();

    // Deleted: a record removed from the middle.
    delete(3).await.unwrap();
    expect_break(3, "deleted").await;
    put(original3.clone()).await.unwrap();

    // Reordered: two records' contents swapped.
    put(ChainItem { sk: 3, ..original4.clone() }).await.unwrap();
    put(ChainItem { sk: 4, ..original3.clone() }).await.unwrap();
    expect_break(3, "inserted, deleted or reordered").await;
    put(original3.clone()).await.unwrap();
    put(original4.clone()).await.unwrap();

    // Inserted: a forged record appended past the head.
    put(ChainItem { sk: 7, ..original4.clone() }).await.unwrap();
    expect_break(7, "inserted").await;
    delete(7).await.unwrap();

    assert!(verify(&target, false).await.unwrap().breaks.is_empty(), "restored chain verifies again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_closed_when_the_audit_record_cannot_be_stored() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-closed");
    let tag = unique_tag();
    let id = h.create_id(&t, &canary_patient(&tag)).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    // The audit table goes away (an outage, a revoked permission): no audit, no data.
    h.stack.clients.dynamodb.delete_table().table_name(h.table("AuditTable")).send().await.unwrap();
    for path in [
        format!("/fhir/Patient/{id}"),
        format!("/fhir/Patient/{id}/_history/1"),
        format!("/fhir/Patient/{id}/_history"),
        format!("/fhir/Patient?family=Family{tag}"),
    ] {
        let r = h.get(&path, &t).await;
        assert_eq!(r.status, 503, "{path}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("OperationOutcome") && !body.contains(&tag), "{path}: {body}");
        assert!(r.header("retry-after").is_some());
    }
    // Writes fail whole: the change and its audit record are one transaction.
    let r = h.create(&t, &canary_patient(&unique_tag())).await;
    assert_eq!(r.status, 503);
    let patients = h
        .scan(&h.table("RecordsTable"))
        .await
        .into_iter()
        .filter(|i| i["sk"].as_s().unwrap().starts_with(&schema::current_prefix(None)))
        .count();
    assert_eq!(patients, 1, "nothing half-written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_catch_what_a_chain_alone_cannot() {
    let h = Harness::start_with(vec![("MEDREC_AUDIT_SHARDS".into(), "1".into())]).await;
    let t = h.token("clinician", "dr-checkpoint");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let read = || async { assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200) };
    read().await;
    let target = h.verify_target();
    let first = medrec_infra::audit_verify::checkpoint(&target).await.unwrap();
    assert_eq!((first.number, first.heads[&0].0), (1, 2));
    for _ in 0..3 {
        read().await;
    }
    // The second comes from the scheduled function, as EventBridge runs it.
    let app =
        std::sync::Arc::new(medrec_audit_checkpoint::boot(&h.settings("AuditCheckpointFunction", &[])).await.unwrap());
    let event = lambda_http::LambdaEvent::new(json!({"source": "aws.events"}), lambda_http::Context::default());
    assert_eq!(app.handle(event).await.unwrap()["checkpoint"], 2);
    let report = verify(&target, false).await.unwrap();
    assert!(report.breaks.is_empty() && report.finding.is_none(), "{:?} {:?}", report.breaks, report.finding);
    assert_eq!(report.checkpoints, 2);

    // Archived under Object Lock (compliance): the copy cannot be deleted.
    let s3 = &h.stack.clients.s3;
    let bucket = h.table("AuditArchiveBucket");
    let head = s3.head_object().bucket(&bucket).key("checkpoints/000000000002.json").send().await.unwrap();
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"));
    let version = head.version_id().unwrap().to_owned();
    let delete =
        s3.delete_object().bucket(&bucket).key("checkpoints/000000000002.json").version_id(version).send().await;
    assert!(delete.is_err(), "a locked checkpoint cannot be deleted");

    // Truncation with the head rolled back: the chain alone is consistent,
    // the checkpoint names the missing record.
    let ddb = &h.stack.clients.dynamodb;
    let table = h.table("AuditTable");
    let item = |pk: String, seq: u64| {
        let table = &table;
        async move {
            let out = ddb.get_item().table_name(table).set_key(Some(schema::audit_key(pk, seq))).send().await.unwrap();
            out.item.unwrap()
        }
    };
    let last = item(schema::chain_pk(0), 5).await;
    let before: ChainItem = schema::from_item(&item(schema::chain_pk(0), 4).await).unwrap();
    let head_item = item(schema::head_pk(0), 0).await;
    let head: HeadItem = schema::from_item(&head_item).unwrap();
    // Nothing new may be appended meanwhile: the head is rewritten below.
    ddb.delete_item().table_name(&table).set_key(Some(chain_key(5))).send().await.unwrap();
    let rolled_back = HeadItem { seq: 4, hash: before.hash, ..head };
    ddb.put_item().table_name(&table).set_item(Some(schema::to_item(&rolled_back))).send().await.unwrap();
    let report = verify(&target, false).await.unwrap();
    assert!(report.breaks.is_empty(), "the shortened chain is consistent in itself");
    let finding = report.finding.expect("the checkpoint contradicts it");
    assert_eq!((finding.checkpoint, finding.shard, finding.seq), (2, Some(0), Some(5)), "{finding}");
    ddb.put_item().table_name(&table).set_item(Some(last)).send().await.unwrap();
    ddb.put_item().table_name(&table).set_item(Some(head_item)).send().await.unwrap();

    // A replaced checkpoint (edited body) fails its signature.
    let stored = item(schema::CHECKPOINT_PK.into(), 1).await;
    let mut replaced: schema::ArchiveItem = schema::from_item(&stored).unwrap();
    replaced.body = replaced.body.replace("\"number\":1", "\"number\":1 ");
    ddb.put_item().table_name(&table).set_item(Some(schema::to_item(&replaced))).send().await.unwrap();
    let finding = verify(&target, false).await.unwrap().finding.unwrap();
    assert_eq!(finding.checkpoint, 1);
    assert!(finding.reason.contains("signature"), "{finding}");
    ddb.put_item().table_name(&table).set_item(Some(stored)).send().await.unwrap();
    let report = verify(&target, false).await.unwrap();
    assert!(report.breaks.is_empty() && report.finding.is_none(), "restored, everything agrees again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_resume_after_a_crash_without_gaps_or_duplicates() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-export");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    for _ in 0..9 {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let target = h.verify_target();
    let until = medrec_edge::fhir::now_instant();
    let window = ("2000-01-01T00:00:00.000Z", until.as_str());
    let expected: std::collections::BTreeSet<String> =
        h.audit_events().await.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(expected.len() >= 10);
    let export = |limit: usize| medrec_infra::audit_verify::export(&target, "e1", window, 3, limit);

    // One chunk per invocation, then a crash after writing the third chunk
    // but before recording it: the progress item is rolled back by hand.
    assert_eq!(export(1).await.unwrap().chunks_done, 1);
    assert_eq!(export(1).await.unwrap().chunks_done, 2);
    let ddb = &h.stack.clients.dynamodb;
    let table = h.table("AuditTable");
    let progress = |pk: String| ddb.get_item().table_name(&table).set_key(Some(schema::audit_key(pk, 0))).send();
    let at_two = progress(schema::export_pk("e1")).await.unwrap().item.unwrap();
    assert!(export(1).await.unwrap().manifest.is_none());
    ddb.put_item().table_name(&table).set_item(Some(at_two)).send().await.unwrap();
    let done = export(usize::MAX).await.unwrap();
    let manifest = done.manifest.expect("complete");
    assert_eq!(done.records, expected.len());
    assert_eq!(manifest.chunks.iter().map(|c| c.records).sum::<usize>(), expected.len());
    assert!(export(usize::MAX).await.unwrap().manifest.is_some(), "a rerun of a finished export is harmless");

    // Every record exactly once, in FHIR and in OCSF.
    let s3 = &h.stack.clients.s3;
    let bucket = h.table("AuditArchiveBucket");
    let object = |k: String| {
        let (s3, bucket) = (s3, &bucket);
        async move { s3.get_object().bucket(bucket).key(k).send().await.unwrap().body.collect().await.unwrap().to_vec() }
    };
    let mut seen = vec![];
    let mut ocsf_lines = 0;
    for c in &manifest.chunks {
        let fhir = object(c.fhir_key.clone()).await;
        for line in String::from_utf8(fhir).unwrap().lines() {
            seen.push(serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_str().unwrap().to_owned());
        }
        let ocsf = String::from_utf8(object(c.ocsf_key.clone()).await).unwrap();
        ocsf_lines += ocsf.lines().filter(|l| l.contains("\"class_uid\":6003")).count();
    }
    assert_eq!(seen.len(), expected.len(), "no duplicate");
    assert_eq!(seen.iter().cloned().collect::<std::collections::BTreeSet<_>>(), expected, "no gap");
    assert_eq!(ocsf_lines, expected.len());
    assert!(medrec_infra::audit_verify::verify_export(&target, "e1").await.unwrap().is_ok());

    // A truncated chunk, or a replaced manifest, is detected.
    let first = manifest.chunks[0].fhir_key.clone();
    let original = object(first.clone()).await;
    let cut = original[..original.len() / 2].to_vec();
    s3.put_object().bucket(&bucket).key(&first).body(cut.into()).send().await.unwrap();
    let finding = medrec_infra::audit_verify::verify_export(&target, "e1").await.unwrap().unwrap_err();
    assert_eq!(finding, medrec_edge::audit::export::ExportFinding::Chunk(first.clone()));
    s3.put_object().bucket(&bucket).key(&first).body(original.into()).send().await.unwrap();
    let manifest_key = "exports/e1/manifest.json";
    let stored: serde_json::Value = serde_json::from_slice(&object(manifest_key.into()).await).unwrap();
    let mut forged = stored.clone();
    forged["manifest"] = json!(stored["manifest"].as_str().unwrap().replace("\"records\":3", "\"records\":2"));
    s3.put_object()
        .bucket(&bucket)
        .key(manifest_key)
        .body(forged.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let finding = medrec_infra::audit_verify::verify_export(&target, "e1").await.unwrap().unwrap_err();
    assert_eq!(finding, medrec_edge::audit::export::ExportFinding::BadSignature);
    // Other terms under the same id are refused rather than mixed in.
    assert!(medrec_infra::audit_verify::export(&target, "e1", window, 4, 1).await.is_err());
    s3.put_object()
        .bucket(&bucket)
        .key(manifest_key)
        .body(stored.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();

    // The scheduled export continues where the last manifest ended: exactly
    // the records since, chained to the previous manifest.
    for _ in 0..2 {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let sdk = medrec_edge::aws::sdk_config(Some(&h.stack.endpoint)).await;
    let cps = medrec_edge::aws::checkpoints::Checkpoints {
        ddb: h.stack.clients.dynamodb.clone(),
        kms: aws_sdk_kms::Client::new(&sdk),
        s3: h.stack.clients.s3.clone(),
        audit_table: table.clone(),
        archive_bucket: bucket.clone(),
        signing_key_id: h.table("AuditSigningKey"),
        shards: target.shards,
    };
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let next = medrec_edge::audit::archive::scheduled_export(&cps, later, time::Duration::minutes(5), 100)
        .await
        .unwrap()
        .unwrap();
    let next = next.manifest.expect("complete in one run");
    assert_eq!(
        next.previous,
        Some(medrec_edge::audit::export::digest(stored["manifest"].as_str().unwrap().as_bytes()))
    );
    assert_eq!(next.chunks.iter().map(|c| c.records).sum::<usize>(), h.audit_events().await.len() - expected.len());
    assert!(
        medrec_edge::audit::archive::scheduled_export(&cps, later, time::Duration::minutes(5), 100)
            .await
            .unwrap()
            .is_none(),
        "nothing new"
    );
}

/// The API functions append audit records in the same transaction as their
/// writes, so their role may put audit items, and it can unwrap the secret
/// the chain key derives from. Such a role, compromised, rewrites a record
/// after commit and relinks the chain behind it and the head: the chains
/// alone verify, and until the next signed checkpoint nothing contradicts
/// them. The archive's mirror, written from the table's stream by a role of
/// its own, does: verify names the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_rewritten_with_a_function_roles_rights_is_caught_by_the_mirror() {
    use medrec_edge::audit::chain;
    let h = Harness::start_with(vec![("MEDREC_AUDIT_SHARDS".into(), "1".into())]).await;
    let t = h.token("clinician", "dr-snoop");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    for _ in 0..4 {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let target = h.verify_target();
    // The mirror follows the stream within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let report = verify(&target, false).await.unwrap();
        let mirror = report.mirror.clone().expect("the archive is mirrored");
        if mirror.unmirrored == 0 {
            assert_eq!((mirror.matched, report.tampered()), (5, false));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not mirrored: {mirror:?}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    // What the function role can do: unwrap the root secret, derive the
    // chain key, rewrite record 3 (the snoop's read becomes someone else's)
    // and relink 3..5 and the head.
    let ddb = &h.stack.clients.dynamodb;
    let kms = medrec_edge::aws::kms::KmsKeys::new(h.stack.clients.kms.clone(), h.table("RecordsKey"));
    let mac_key = medrec_edge::aws::service_keys(ddb, &kms, &h.table("RecordsTable")).await.unwrap().audit_chain;
    let table = h.table("AuditTable");
    let (records, _) = medrec_edge::aws::dynamo::read_audit_chains(ddb, &table).await.unwrap();
    let mut prev = records[&0][1].hash.clone();
    for r in &records[&0][2..] {
        let body = if r.seq == 3 { r.body.replace("dr-snoop", "dr-other") } else { r.body.clone() };
        let hash = chain::link(&mac_key, 0, r.seq, &prev, &body);
        let item =
            ddb.get_item().table_name(&table).set_key(Some(chain_key(r.seq))).send().await.unwrap().item.unwrap();
        let mut forged: ChainItem = schema::from_item(&item).unwrap();
        forged.entry.body = body;
        forged.prev = prev.clone();
        forged.hash = hash.clone();
        ddb.put_item().table_name(&table).set_item(Some(schema::to_item(&forged))).send().await.unwrap();
        prev = hash;
    }
    let head = HeadItem { pk: schema::head_pk(0), sk: 0, seq: 5, hash: prev };
    ddb.put_item().table_name(&table).set_item(Some(schema::to_item(&head))).send().await.unwrap();
    let report = verify(&target, false).await.unwrap();
    assert!(report.breaks.is_empty() && report.finding.is_none(), "the forgery passes the chains alone");
    assert!(report.tampered());
    let finding = report.mirror.unwrap().finding.expect("the mirror names it");
    assert_eq!((finding.shard, finding.seq), (0, 3), "{finding:?}");
    // The stream saw the rewrite itself too: the mirror logged it for the alarm.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !medrec_e2e::logs().text().contains("audit record changed after commit") {
        assert!(std::time::Instant::now() < deadline, "no alarm line");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A window of the trail is found by binary search on each shard's
/// sequence numbers and read by one query: here over a shard of 300
/// records ten seconds apart where every seventh was stamped up to 14
/// minutes before it was appended (a slow request), each window holds
/// exactly the records recorded inside it, as a filter over the whole
/// shard finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_the_trail_reads_exactly_its_records_despite_append_skew() {
    let h = Harness::start().await;
    let (ddb, table) = (&h.stack.clients.dynamodb, h.table("AuditTable"));
    // Shard 9: beyond the stack's own shards, so only these records.
    let base = time::macros::datetime!(2026-06-01 08:00 UTC);
    let mut recorded = BTreeMap::new();
    for seq in 1..=300u64 {
        let mut at = base + time::Duration::seconds(10 * seq as i64);
        if seq % 7 == 0 {
            at -= time::Duration::seconds(60 * (seq as i64 % 15));
        }
        let at = medrec_edge::fhir::instant(at);
        let id = format!("r{seq:03}");
        let body = json!({"resourceType": "AuditEvent", "id": id, "recorded": at}).to_string();
        let mut item = schema::audit_key(schema::chain_pk(9), seq);
        item.insert("at".into(), AttributeValue::S(at.clone()));
        item.insert("body".into(), AttributeValue::S(body));
        ddb.put_item().table_name(&table).set_item(Some(item)).send().await.unwrap();
        recorded.insert(id, at);
    }
    let mut head = schema::audit_key(schema::head_pk(9), 0);
    head.insert("seq".into(), AttributeValue::N("300".into()));
    ddb.put_item().table_name(&table).set_item(Some(head)).send().await.unwrap();

    let at = |s: i64| medrec_edge::fhir::instant(base + time::Duration::seconds(s));
    let windows = [
        (at(0), at(3_100)),
        (at(500), at(1_000)),
        (at(1_405), at(1_406)),
        (at(2_995), at(9_000)),
        (at(-9_000), at(5)),
        ("0000-01-01T00:00:00.000Z".to_owned(), "9999-12-31T23:59:59.999Z".to_owned()),
    ];
    for (since, until) in windows {
        let read = medrec_edge::aws::checkpoints::chain_window(ddb, &table, 10, &since, &until).await.unwrap();
        let got: Vec<String> = read.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
        let mut expected: Vec<(&String, &String)> =
            recorded.iter().filter(|(_, at)| (since.as_str()..=until.as_str()).contains(&at.as_str())).collect();
        expected.sort_by_key(|(id, at)| ((*at).clone(), (*id).clone()));
        let expected: Vec<String> = expected.into_iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(got, expected, "{since}..{until}");
    }
}
