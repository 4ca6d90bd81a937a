//! Background work under injected AWS faults: the document ingest, the
//! purge, the audit export, the checkpoint, transactions and the data-key
//! re-wrap reach the emulator through
//! `medrec_infra::fault_proxy`, and nothing else does (the stack's own
//! functions, its relay and schedules among them, go direct, so their calls
//! can neither take a crash meant for the work nor shift its count). Each is crashed at every call it makes of
//! every operation that reads its input or changes state (`CrashPoints`;
//! the fault kinds in turn), then run again; and once with every such call
//! applied by the emulator but its answer lost. After a crash nothing is half-visible and
//! every destruction already done has its audit record; after the rerun the
//! work is complete exactly once: one document, one event, one sealed
//! object; one audit record per purge, listing everything it destroyed;
//! one signed manifest per export, every audit record in it once.

use aws_sdk_dynamodb::types::AttributeValue;
use medrec_e2e::{canary_patient, pdf, unique_tag, upload_notification, Harness, FAILURES};
use medrec_edge::aws::schema;
use medrec_edge::retention::Retention;
use medrec_infra::audit_verify::Target;
use medrec_infra::fault_proxy::{on, Fault, FaultProxy};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Item = HashMap<String, AttributeValue>;

/// AuditEvents of subtype `code` that mention `needle`.
async fn audits(h: &Harness, code: &str, needle: &str) -> Vec<Value> {
    h.audit_events()
        .await
        .into_iter()
        .filter(|e| e["subtype"][0]["code"] == code && e.to_string().contains(needle))
        .collect()
}

/// A crash placed at one call of one operation.
struct Crash {
    what: String,
    hits: Arc<std::sync::atomic::AtomicU64>,
}

/// Every crash point of `ops`, in turn: an operation's first call, then its
/// second, and so on until a round no longer reaches the call (the work
/// makes fewer), then the next operation; the fault kinds take turns. No
/// count is taken beforehand: retries under a loaded emulator make counts
/// vary. A round that reaches no crash is a clean run and is checked as one.
struct CrashPoints {
    ops: &'static [(&'static str, &'static str)],
    op: usize,
    nth: u32,
    reached: usize,
    /// Crash points reached per operation.
    per_op: Vec<u32>,
}

impl CrashPoints {
    fn new(ops: &'static [(&'static str, &'static str)]) -> Self {
        CrashPoints { ops, op: 0, nth: 0, reached: 0, per_op: vec![0; ops.len()] }
    }

    fn done(&self) -> bool {
        self.op == self.ops.len()
    }

    /// `12 crash points (dynamodb.Query 4, s3.PutObject 8)`.
    fn summary(&self) -> String {
        let each: Vec<String> =
            self.ops.iter().zip(&self.per_op).map(|((service, op), n)| format!("{service}.{op} {n}")).collect();
        format!("{} crash points ({})", self.reached, each.join(", "))
    }

    /// Places the next crash (set up the round's world first: the proxy
    /// sees its calls too).
    fn place(&self, proxy: &FaultProxy) -> Crash {
        let (name, fault) = FAILURES[self.reached % FAILURES.len()];
        let (service, operation) = self.ops[self.op];
        let hits = proxy.inject_after(on(service, operation), fault, self.nth, None);
        Crash { what: format!("{name} at {service}.{operation} call {}", self.nth + 1), hits }
    }

    /// Clears the proxy; whether the round's work reached the crash.
    fn reached(&mut self, proxy: &FaultProxy, crash: &Crash) -> bool {
        proxy.clear();
        let reached = crash.hits.load(std::sync::atomic::Ordering::Relaxed) > 0;
        assert!(reached || self.nth > 0, "{}: the work never makes this call", crash.what);
        assert!(self.nth < 200, "{}: the work does not end", crash.what);
        if reached {
            self.reached += 1;
            self.per_op[self.op] += 1;
            self.nth += 1;
        } else {
            self.op += 1;
            self.nth = 0;
        }
        reached
    }
}

/// Every call of `ops` applied by the emulator once with its answer lost.
fn lose_answers(proxy: &FaultProxy, ops: &[(&str, &str)]) {
    for (service, operation) in ops {
        proxy.inject(on(service, operation), Fault::ResetAfter, Some(1));
    }
}

// ---- document ingest ----

const INGEST_CALLS: &[(&str, &str)] = &[
    ("dynamodb", "GetItem"),
    ("kms", "Decrypt"),
    ("s3", "GetObject"),
    ("s3", "PutObject"),
    ("dynamodb", "TransactWriteItems"),
    ("s3", "DeleteObject"),
];

/// A cold instance of the ingest function as the stack builds it, but
/// reaching the emulator through `proxy`, played by the test as Lambda's
/// SQS trigger would. Its key cache is off, so every attempt opens the
/// patient's key through KMS.
async fn ingest_app(h: &Harness, proxy: &FaultProxy) -> Arc<medrec_document_ingest::App> {
    let settings = h.settings(
        "DocumentIngestFunction",
        &[("MEDREC_KEY_CACHE_SECONDS", "0"), ("MEDREC_AWS_ENDPOINT", &proxy.endpoint)],
    );
    Arc::new(medrec_document_ingest::boot(&settings).await.unwrap())
}

/// Delivers the upload's notification; whether it was acknowledged.
async fn deliver(app: &Arc<medrec_document_ingest::App>, id: &str) -> bool {
    let event = lambda_http::LambdaEvent::new(upload_notification(id, "m-1"), lambda_http::Context::default());
    app.clone().handle(event).await.unwrap().batch_item_failures.is_empty()
}

/// What the stack holds of one uploaded document.
#[derive(Debug, PartialEq)]
struct Stored {
    status: u16,
    events: usize,
    sealed: usize,
    quarantined: usize,
    created: usize,
}

async fn stored(h: &Harness, t: &str, patient: &str, id: &str) -> Stored {
    let events = h
        .scan(&h.table("OutboxTable"))
        .await
        .iter()
        .filter(|i| i["type"].as_s().is_ok_and(|t| t == "DocumentStored"))
        .filter(|i| i["detail"].as_s().is_ok_and(|d| d.contains(id)))
        .count();
    let reference = format!("DocumentReference/{id}");
    let created = audits(h, "create", &reference).await.iter().filter(|e| e["outcome"] == "0").count();
    Stored {
        status: h.get(&format!("/fhir/{reference}"), t).await.status,
        events,
        sealed: h.object_keys("DocumentsBucket", &format!("{patient}/{id}-")).await.len(),
        quarantined: h.object_keys("UploadsBucket", id).await.len(),
        created,
    }
}

/// The document is current once, whole, and its bytes are what was uploaded.
async fn assert_stored_once(h: &Harness, t: &str, patient: &str, id: &str, bytes: &[u8], created: usize, what: &str) {
    let s = stored(h, t, patient, id).await;
    let once = Stored { status: 200, events: 1, sealed: 1, quarantined: 0, created: created + 1 };
    assert_eq!(s, once, "{what}");
    let doc = h.get(&format!("/fhir/DocumentReference/{id}"), t).await.json();
    assert_eq!(doc["meta"]["versionId"], "1", "{what}");
    let binary = format!("/fhir/{}", doc["content"][0]["attachment"]["url"].as_str().unwrap());
    assert_eq!(h.get(&binary, t).await.body.as_ref(), bytes, "{what}: the bytes uploaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_crashed_at_any_call_stores_the_document_once_when_redelivered() {
    let h = Harness::start_without(&["DocumentIngestFunction"]).await;
    let proxy = h.fault_proxy().await;
    let t = h.token("clinician", "dr-ingest");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let upload = async |n: usize| {
        let bytes = pdf(70_000, &format!("fault{n}"));
        let pending = h.promise_upload(&t, &patient, &bytes).await;
        assert_eq!(h.upload(&pending, &bytes).await, 200);
        let created = stored(&h, &t, &patient, &pending.id).await.created;
        (pending.id, bytes, created)
    };

    let mut points = CrashPoints::new(INGEST_CALLS);
    let mut round = 0;
    while !points.done() {
        round += 1;
        let (id, bytes, created) = upload(round).await;
        let app = ingest_app(&h, &proxy).await;
        let crash = points.place(&proxy);
        let acked = deliver(&app, &id).await;
        let what = crash.what.clone();
        if !points.reached(&proxy, &crash) {
            assert!(acked, "{what} not reached: a clean run");
            assert_stored_once(&h, &t, &patient, &id, &bytes, created, "a clean run").await;
            continue;
        }
        assert!(!acked, "{what}: reported for redelivery");
        let s = stored(&h, &t, &patient, &id).await;
        if s.status == 200 {
            // Crashed after the commit: the document is whole already.
            assert_eq!((s.events, s.sealed, s.created), (1, 1, created + 1), "{what}");
        } else {
            let absent = Stored { status: 404, events: 0, sealed: s.sealed, quarantined: 1, created };
            assert_eq!(s, absent, "{what}: nothing visible, the upload kept");
        }
        assert!(deliver(&app, &id).await, "{what}: redelivered, acknowledged");
        assert_stored_once(&h, &t, &patient, &id, &bytes, created, &what).await;
        assert!(deliver(&app, &id).await, "{what}: delivered again");
        assert_stored_once(&h, &t, &patient, &id, &bytes, created, &format!("{what}, delivered again")).await;
    }

    let (id, bytes, created) = upload(round + 1).await;
    let app = ingest_app(&h, &proxy).await;
    lose_answers(&proxy, INGEST_CALLS);
    let acked = deliver(&app, &id).await || deliver(&app, &id).await;
    proxy.clear();
    assert!(acked, "answers lost: acknowledged at the latest when redelivered");
    assert_stored_once(&h, &t, &patient, &id, &bytes, created, "answers lost").await;
    println!("ingest: {}, then every answer lost", points.summary());
}

// ---- purge ----

const PURGE_CALLS: &[(&str, &str)] = &[
    ("dynamodb", "Query"),
    ("dynamodb", "TransactWriteItems"),
    ("s3", "ListObjectsV2"),
    ("s3", "DeleteObjects"),
    ("dynamodb", "BatchWriteItem"),
];

const LONG_AGO: &str = "2012-01-01T00:00:00.000Z";

/// A patient past retention, with a document (crypto-shredded), and a
/// retained patient with a document deleted long ago (purged by itself).
struct Purgeable {
    old: String,
    kept: String,
    deleted: String,
}

async fn inline_document(h: &Harness, t: &str, patient: &str) -> String {
    let doc = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": format!("Patient/{patient}")},
        "content": [{"attachment": {"contentType": "text/plain", "data": "bGV0dGVy"}}]});
    let r = h.call("POST", "/fhir/DocumentReference", Some(t), &[], Some(&doc.to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn purgeable(h: &Harness, t: &str, admin: &str) -> Purgeable {
    let old = h.create_id(t, &canary_patient(&unique_tag())).await;
    let old_doc = inline_document(h, t, &old).await;
    h.backdate(&old, "Patient", &old, &[1], LONG_AGO).await;
    h.backdate(&old, "DocumentReference", &old_doc, &[1], LONG_AGO).await;
    let kept = h.create_id(t, &canary_patient(&unique_tag())).await;
    let deleted = inline_document(h, t, &kept).await;
    assert_eq!(
        h.call("DELETE", &format!("/fhir/DocumentReference/{deleted}"), Some(admin), &[], None).await.status,
        204
    );
    h.backdate(&kept, "DocumentReference", &deleted, &[1, 2], LONG_AGO).await;
    Purgeable { old, kept, deleted }
}

/// What is left of a purgeable world, and how often each purge is audited.
#[derive(Debug)]
struct Left {
    key: bool,
    old_objects: usize,
    shred_audits: usize,
    /// Items of the deleted document (current, versions, index, locator).
    doc_items: usize,
    doc_objects: usize,
    doc_audits: Vec<Value>,
}

async fn left(h: &Harness, w: &Purgeable) -> Left {
    let items = h.scan(&h.table("RecordsTable")).await;
    let text = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
        i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
    };
    let key = items.iter().any(|i| text(i, "pk") == schema::patient_pk(&w.old) && text(i, "sk") == schema::DATA_KEY_SK);
    let doc_items = items
        .iter()
        // The purge's own once-marker names the resource too; it is not the resource's.
        .filter(|i| !text(i, "pk").starts_with("ONCE#"))
        .filter(|i| {
            text(i, "pk").contains(&w.deleted) || text(i, "sk").contains(&format!("DocumentReference#{}", w.deleted))
        })
        .count();
    Left {
        key,
        old_objects: h.object_keys("DocumentsBucket", &format!("{}/", w.old)).await.len(),
        shred_audits: audits(h, "purge", &w.old).await.len(),
        doc_items,
        doc_objects: h.object_keys("DocumentsBucket", &format!("{}/{}-", w.kept, w.deleted)).await.len(),
        doc_audits: audits(h, "purge-resource", &format!("DocumentReference/{}", w.deleted)).await,
    }
}

/// Whatever a crash left: each purge audited at most once, and before
/// anything it destroys is gone.
fn assert_audited_before_destruction(l: &Left, doc_items: usize, what: &str) {
    assert!(l.shred_audits <= 1 && l.doc_audits.len() <= 1, "{what}: audited twice: {l:?}");
    if !l.key || l.old_objects == 0 {
        assert_eq!(l.shred_audits, 1, "{what}: shredding without its audit record: {l:?}");
    }
    if l.doc_items < doc_items || l.doc_objects == 0 {
        assert_eq!(l.doc_audits.len(), 1, "{what}: a purge without its audit record: {l:?}");
    }
}

async fn assert_purged_once(h: &Harness, w: &Purgeable, t: &str, what: &str) {
    let l = left(h, w).await;
    assert!(!l.key && l.old_objects == 0 && l.doc_items == 0 && l.doc_objects == 0, "{what}: all gone: {l:?}");
    assert_eq!((l.shred_audits, l.doc_audits.len()), (1, 1), "{what}: audited once each");
    let listed = l.doc_audits[0].to_string();
    for v in [1, 2] {
        let version = format!("urn:medrec:purged-version-sha256:DocumentReference/{}/_history/{v}:", w.deleted);
        assert!(listed.contains(&version), "{what}: the audit record names version {v}: {listed}");
    }
    assert_eq!(h.get(&format!("/fhir/Patient/{}", w.old), t).await.status, 410, "{what}");
    assert_eq!(h.get(&format!("/fhir/DocumentReference/{}", w.deleted), t).await.status, 404, "{what}");
    assert_eq!(h.get(&format!("/fhir/Patient/{}", w.kept), t).await.status, 200, "{what}: the retained patient stays");
}

type PurgeRun = Result<medrec_edge::purge::PurgeReport, medrec_edge::error::PortError>;

/// Backdates the retained patient and purges it too: every round of
/// crashes then starts from the same state (only its own world in the
/// plan), so the calls counted in the first round are every round's.
async fn retire<Run: std::future::Future<Output = PurgeRun>>(h: &Harness, w: &Purgeable, run: impl Fn() -> Run) {
    h.backdate(&w.kept, "Patient", &w.kept, &[1], LONG_AGO).await;
    assert_eq!(run().await.unwrap().shredded, 1, "the retained patient retired");
}

fn target_through(h: &Harness, proxy: &FaultProxy) -> Target {
    Target { endpoint: Some(proxy.endpoint.clone()), ..h.verify_target() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_crashed_at_any_call_is_audited_once_and_finished_by_the_rerun() {
    // Shredding shows in the API once cached keys expire: here at once.
    let h = Harness::start_with(vec![("MEDREC_KEY_CACHE_SECONDS".into(), "0".into())]).await;
    let proxy = h.fault_proxy().await;
    let (t, admin) = (h.token("clinician", "dr-purge"), h.token("admin", "records-admin"));
    let target = target_through(&h, &proxy);
    let ctx =
        medrec_infra::purge::context(&target, &h.table("OutboxTable"), &h.table("DocumentsBucket")).await.unwrap();
    let purger = ctx.purger();
    let retention = Retention::default();
    let run = || purger.run(&retention, time::OffsetDateTime::now_utc(), 10, "ops");

    let mut points = CrashPoints::new(PURGE_CALLS);
    while !points.done() {
        let w = purgeable(&h, &t, &admin).await;
        let doc_items = left(&h, &w).await.doc_items;
        let crash = points.place(&proxy);
        let crashed = run().await;
        let what = crash.what.clone();
        if !points.reached(&proxy, &crash) {
            let report = crashed.unwrap_or_else(|e| panic!("{what} not reached: a clean run: {e}"));
            assert_eq!((report.shredded, report.resources), (1, 1), "a clean run: {report:?}");
            assert_purged_once(&h, &w, &t, "a clean run").await;
            retire(&h, &w, &run).await;
            continue;
        }
        assert!(crashed.is_err(), "{what}: the run reports its failure");
        assert_audited_before_destruction(&left(&h, &w).await, doc_items, &what);
        run().await.unwrap_or_else(|e| panic!("{what}: the rerun: {e}"));
        assert_purged_once(&h, &w, &t, &what).await;
        let again = run().await.unwrap();
        assert_eq!((again.shredded, again.resources, again.objects_deleted), (0, 0, 0), "{what}: nothing twice");
        assert_purged_once(&h, &w, &t, &format!("{what}, run again")).await;
        retire(&h, &w, &run).await;
    }

    let w = purgeable(&h, &t, &admin).await;
    lose_answers(&proxy, PURGE_CALLS);
    let first = run().await;
    proxy.clear();
    if first.is_err() {
        run().await.unwrap();
    }
    assert_purged_once(&h, &w, &t, "answers lost").await;
    println!("purge: {}, then every answer lost", points.summary());
}

// ---- audit export ----

const EXPORT_CALLS: &[(&str, &str)] = &[
    ("dynamodb", "GetItem"),
    ("dynamodb", "Query"),
    ("s3", "PutObject"),
    ("dynamodb", "PutItem"),
    // The manifest, numbered into the chain with the export's progress.
    ("dynamodb", "TransactWriteItems"),
    ("kms", "Sign"),
];

/// The manifests stored in the audit table, by number: (number, export id, body).
async fn manifests(h: &Harness) -> Vec<(u64, String, String)> {
    let mut out: Vec<(u64, String, String)> = h
        .scan(&h.table("AuditTable"))
        .await
        .iter()
        .filter(|i| i.get("pk").and_then(|p| p.as_s().ok()).is_some_and(|p| p == "MANIFEST"))
        .map(|i| {
            let s = |k: &str| i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (i["sk"].as_n().unwrap().parse().unwrap(), s("export"), s("body"))
        })
        .collect();
    out.sort();
    out
}

/// The export is complete once: its signed manifest verifies, every record
/// of the window is in it exactly once, and the manifests form one chain
/// in which each export appears once.
async fn assert_exported_once(h: &Harness, id: &str, expected: &std::collections::BTreeSet<String>, what: &str) {
    let target = h.verify_target();
    let manifest = medrec_infra::audit_verify::verify_export(&target, id)
        .await
        .unwrap()
        .unwrap_or_else(|f| panic!("{what}: the export does not verify: {f:?}"));
    let mut seen = vec![];
    for c in &manifest.chunks {
        let out = h.stack.clients.s3.get_object().bucket(h.table("AuditArchiveBucket")).key(&c.fhir_key).send().await;
        let bytes = out.unwrap().body.collect().await.unwrap().to_vec();
        for line in String::from_utf8(bytes).unwrap().lines() {
            seen.push(serde_json::from_str::<Value>(line).unwrap()["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen.len(), expected.len(), "{what}: no record twice");
    assert_eq!(&seen.into_iter().collect::<std::collections::BTreeSet<_>>(), expected, "{what}: no record missing");
    let chain = manifests(h).await;
    assert_eq!(chain.iter().filter(|(_, e, _)| e == id).count(), 1, "{what}: one manifest of the export");
    for (n, (number, _, body)) in chain.iter().enumerate() {
        assert_eq!(*number, n as u64 + 1, "{what}: manifests numbered without a gap");
        let previous: Option<String> =
            serde_json::from_str::<Value>(body).unwrap()["previous"].as_str().map(str::to_owned);
        let expected = (n > 0).then(|| medrec_edge::audit::export::digest(chain[n - 1].2.as_bytes()));
        assert_eq!(previous, expected, "{what}: manifest {number} follows the one before");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_crashed_at_any_call_resumes_to_one_manifest_with_every_record_once() {
    let h = Harness::start().await;
    let proxy = h.fault_proxy().await;
    let t = h.token("clinician", "dr-export");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    for _ in 0..9 {
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
    }
    let until = medrec_edge::fhir::now_instant();
    let window = ("2000-01-01T00:00:00.000Z", until.as_str());
    let expected: std::collections::BTreeSet<String> =
        h.audit_events().await.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let target = target_through(&h, &proxy);
    let export = |id: String| {
        let target = &target;
        async move { medrec_infra::audit_verify::export(target, &id, window, 4, usize::MAX).await }
    };

    let mut points = CrashPoints::new(EXPORT_CALLS);
    let mut round = 0;
    while !points.done() {
        round += 1;
        let id = format!("round{round}");
        let crash = points.place(&proxy);
        let crashed = export(id.clone()).await;
        let what = crash.what.clone();
        if !points.reached(&proxy, &crash) {
            assert!(crashed.unwrap_or_else(|e| panic!("{what} not reached: a clean run: {e}")).manifest.is_some());
            assert_exported_once(&h, &id, &expected, "a clean run").await;
            continue;
        }
        assert!(crashed.is_err(), "{what}: the export reports its failure");
        assert!(manifests(&h).await.iter().filter(|(_, e, _)| *e == id).count() <= 1, "{what}");
        let done = export(id.clone()).await.unwrap_or_else(|e| panic!("{what}: resumed: {e}"));
        assert!(done.manifest.is_some(), "{what}: complete");
        assert_exported_once(&h, &id, &expected, &what).await;
    }

    lose_answers(&proxy, EXPORT_CALLS);
    let first = export("lost".into()).await;
    proxy.clear();
    if first.is_err() {
        export("lost".into()).await.unwrap();
    }
    assert_exported_once(&h, "lost", &expected, "answers lost").await;
    println!("export: {}, then every answer lost", points.summary());
}

// ---- audit checkpoints ----

const CHECKPOINT_CALLS: &[(&str, &str)] = &[
    ("dynamodb", "Query"),
    ("dynamodb", "GetItem"),
    ("kms", "Sign"),
    ("dynamodb", "PutItem"),
    ("s3", "HeadObject"),
    ("s3", "PutObject"),
];

/// Every checkpoint in the table, numbered without a gap, has its archived
/// copy (the same body), and the verifier finds every chain and checkpoint
/// consistent.
async fn assert_checkpoints_archived(h: &Harness, what: &str) -> usize {
    let mut stored: Vec<(u64, String)> = h
        .scan(&h.table("AuditTable"))
        .await
        .iter()
        .filter(|i| i.get("pk").and_then(|p| p.as_s().ok()).is_some_and(|p| p == "CHECKPOINT"))
        .map(|i| (i["sk"].as_n().unwrap().parse().unwrap(), i["body"].as_s().unwrap().clone()))
        .collect();
    stored.sort();
    let s3 = &h.stack.clients.s3;
    for (n, (number, body)) in stored.iter().enumerate() {
        assert_eq!(*number, n as u64 + 1, "{what}: checkpoints numbered without a gap");
        let key = format!("checkpoints/{number:012}.json");
        let out = s3.get_object().bucket(h.table("AuditArchiveBucket")).key(&key).send().await;
        let out = out.unwrap_or_else(|e| panic!("{what}: checkpoint {number} is not archived: {e}"));
        let archived: Value = serde_json::from_slice(&out.body.collect().await.unwrap().to_vec()).unwrap();
        assert_eq!(
            archived["checkpoint"].as_str(),
            Some(body.as_str()),
            "{what}: checkpoint {number} archived as stored"
        );
    }
    let report = medrec_infra::audit_verify::verify(&h.verify_target(), false).await.unwrap();
    assert!(report.breaks.is_empty() && report.finding.is_none(), "{what}: {:?} {:?}", report.breaks, report.finding);
    assert_eq!(report.checkpoints, stored.len(), "{what}: every checkpoint verified");
    stored.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_crashed_at_any_call_is_archived_by_the_next_run() {
    let h = Harness::start().await;
    let proxy = h.fault_proxy().await;
    let t = h.token("clinician", "dr-checkpoint");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let target = target_through(&h, &proxy);
    let checkpoint = || medrec_infra::audit_verify::checkpoint(&target);
    // Every crashed checkpoint below has a predecessor: all its calls happen.
    checkpoint().await.unwrap();
    assert_eq!(assert_checkpoints_archived(&h, "the first").await, 1);
    let mut points = CrashPoints::new(CHECKPOINT_CALLS);
    while !points.done() {
        // New records since the last checkpoint, so each one signs new heads.
        assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 200);
        let crash = points.place(&proxy);
        let crashed = checkpoint().await;
        let what = crash.what.clone();
        if !points.reached(&proxy, &crash) {
            crashed.unwrap_or_else(|e| panic!("{what} not reached: a clean run: {e}"));
            assert_checkpoints_archived(&h, "a clean run").await;
            continue;
        }
        assert!(crashed.is_err(), "{what}: the run reports its failure");
        checkpoint().await.unwrap_or_else(|e| panic!("{what}: the next run: {e}"));
        assert_checkpoints_archived(&h, &what).await;
    }
    println!("checkpoint: {}", points.summary());
}

// ---- transaction Bundles ----

/// The calls of a transaction Bundle too large for one DynamoDB transaction
/// that change state: the header and journal pages, every prepare chunk,
/// the commit, the roll-forward pages, the settling of marks, the header's
/// moves.
const TRANSACTION_CALLS: &[(&str, &str)] =
    &[("dynamodb", "PutItem"), ("dynamodb", "TransactWriteItems"), ("dynamodb", "UpdateItem")];

/// Those and every read besides (the entries' reads, the header, journal
/// and held items read while finishing, the patients' keys): a crash point
/// per call, so ~4 per entry; run on request
/// (`MEDREC_FAULT_TRANSACTION_READS=1`, with a smaller transaction).
const TRANSACTION_CALLS_AND_READS: &[(&str, &str)] = &[
    ("dynamodb", "PutItem"),
    ("dynamodb", "TransactWriteItems"),
    ("dynamodb", "UpdateItem"),
    ("dynamodb", "GetItem"),
    ("dynamodb", "Query"),
    ("kms", "Decrypt"),
    ("kms", "GenerateDataKey"),
];

fn transaction_calls() -> &'static [(&'static str, &'static str)] {
    match std::env::var("MEDREC_FAULT_TRANSACTION_READS").as_deref() {
        Ok("1") => TRANSACTION_CALLS_AND_READS,
        _ => TRANSACTION_CALLS,
    }
}

/// Observations per crashed transaction (`MEDREC_FAULT_TRANSACTION_ENTRIES`,
/// default 40): with their Patient, beyond one DynamoDB transaction (five
/// prepare chunks, two roll-forward pages), so every kind of call happens
/// more than once. A larger transaction makes the same calls more often:
/// 300 entries take about ten times as long.
fn transaction_entries() -> usize {
    std::env::var("MEDREC_FAULT_TRANSACTION_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

/// A cold instance of the clinical function as the stack builds it, but
/// reaching the emulator through `proxy`, and its transactions' deadline
/// one second, so the sweep may abort one left pending at once.
async fn clinical_through(h: &Harness, proxy: &FaultProxy) -> Arc<medrec_edge::rest::CompartmentApi> {
    let settings = h.settings(
        "ClinicalFunction",
        &[("MEDREC_AWS_ENDPOINT", &proxy.endpoint), ("MEDREC_TRANSACTION_DEADLINE_SECONDS", "1")],
    );
    Arc::new(medrec_clinical::boot(&settings).await.unwrap())
}

/// `POST /fhir` with `body`, as API Gateway delivers it to the function.
async fn post_bundle(app: &Arc<medrec_edge::rest::CompartmentApi>, token: &str, body: &str) -> (u16, String) {
    let event = medrec_e2e::gateway_event(
        "POST",
        "/fhir",
        token,
        &[("host", "127.0.0.1")],
        body,
        "POST /fhir",
        Default::default(),
    );
    let req = medrec_edge::lambda::request_from_event(serde_json::from_value(event).unwrap()).unwrap();
    let resp = medrec_edge::lambda::handle_guarded(app.clone(), req).await.unwrap();
    let text = match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        _ => String::new(),
    };
    (resp.status().as_u16(), text)
}

/// Observations of an existing patient each round's transaction amends,
/// and one more it deletes.
const AMENDED: usize = 5;

fn glucose(subject: &str, value: usize) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": subject}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 60 + value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
}

/// One round's transaction: a new patient's first record (the Patient,
/// found by its MRN `tag`, and `transaction_entries()` Observations linked
/// by urn:uuid) and changes to an existing patient's (the Patient renamed,
/// its MRN with it, so index entries are dropped and added; `AMENDED`
/// Observations amended on their version, one deleted), which a
/// transaction holds from prepare to finish.
struct Round {
    tag: String,
    existing: String,
    /// The existing patient's MRN tag before the transaction and after.
    renamed: (String, String),
    observations: Vec<String>,
}

impl Round {
    /// A round with its existing patient's record stored (by the stack,
    /// not through the faults).
    async fn new(h: &Harness, t: &str) -> Round {
        let before = unique_tag();
        let patient = "urn:uuid:7d1c7c52-0000-4000-8000-100000000000";
        let mut entries = vec![
            json!({"fullUrl": patient, "resource": canary_patient(&before), "request": {"method": "POST", "url": "Patient"}}),
        ];
        entries
            .extend((0..=AMENDED).map(
                |i| json!({"resource": glucose(patient, i), "request": {"method": "POST", "url": "Observation"}}),
            ));
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string();
        let r = h.call("POST", "/fhir", Some(t), &[], Some(&bundle)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let mut ids: Vec<String> = r.json()["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        let existing = ids.remove(0);
        Round { tag: unique_tag(), existing, renamed: (before, unique_tag()), observations: ids }
    }

    fn body(&self) -> String {
        let patient = "urn:uuid:7d1c7c52-0000-4000-8000-000000000000";
        let mut entries = vec![
            json!({"fullUrl": patient, "resource": canary_patient(&self.tag), "request": {"method": "POST", "url": "Patient"}}),
        ];
        for i in 0..transaction_entries() {
            entries.push(json!({"fullUrl": format!("urn:uuid:7d1c7c52-0000-4000-8000-{:012}", i + 1),
                "resource": glucose(patient, i), "request": {"method": "POST", "url": "Observation"}}));
        }
        for (i, id) in self.observations[..AMENDED].iter().enumerate() {
            let mut o = glucose(&format!("Patient/{}", self.existing), i);
            o["id"] = json!(id);
            o["status"] = json!("amended");
            entries.push(json!({"resource": o,
                "request": {"method": "PUT", "url": format!("Observation/{id}"), "ifMatch": "W/\"1\""}}));
        }
        entries.push(
            json!({"request": {"method": "DELETE", "url": format!("Observation/{}", self.observations[AMENDED])}}),
        );
        let mut renamed = canary_patient(&self.renamed.1);
        renamed["id"] = json!(self.existing);
        entries.push(json!({"resource": renamed,
            "request": {"method": "PUT", "url": format!("Patient/{}", self.existing), "ifMatch": "W/\"1\""}}));
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
    }

    /// What readers see of the transaction: none of it or all of it (the
    /// new patient's id, with every Observation, and the existing patient's
    /// amended and deleted).
    async fn seen(&self, h: &Harness, t: &str, what: &str) -> Option<String> {
        let by_mrn = |tag: &str| {
            let path = format!("/fhir/Patient?identifier=urn:medrec:test-mrn|MRN{tag}");
            async move {
                let found = h.get(&path, t).await.json();
                found["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<String>>()
            }
        };
        let patients = by_mrn(&self.tag).await;
        assert!(patients.len() <= 1, "{what}: the record twice: {patients:?}");
        let (before, after) = (by_mrn(&self.renamed.0).await, by_mrn(&self.renamed.1).await);
        let renamed = after == [self.existing.clone()] && before.is_empty();
        assert!(renamed || (before == [self.existing.clone()] && after.is_empty()), "{what}: {before:?} {after:?}");
        assert_eq!(renamed, !patients.is_empty(), "{what}: the rename without the rest, or the rest without it");
        let existing = h.get(&format!("/fhir/Observation?patient={}&_count=50", self.existing), t).await.json();
        let statuses: Vec<&str> = existing["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"]["status"].as_str().unwrap())
            .collect();
        let Some(patient) = patients.into_iter().next() else {
            assert_eq!(statuses, ["final"; AMENDED + 1], "{what}: the existing record changed without the new");
            return None;
        };
        assert_eq!(statuses, ["amended"; AMENDED], "{what}: the new record without the existing one's changes");
        let obs = h.get(&format!("/fhir/Observation?patient={patient}&_count=1"), t).await.json();
        assert_eq!(obs["total"], transaction_entries(), "{what}: the patient without all of their record");
        Some(patient)
    }

    /// Each entry audited once as committed: nothing doubled by a rerun of
    /// the roll-forward.
    async fn audited_once(&self, h: &Harness, patient: &str, what: &str) {
        let committed = |patient: String| async move {
            query(h, "AuditTable", Some("by-patient"), ("patient", &patient))
                .await
                .iter()
                .filter_map(|i| i.get("body").and_then(|b| b.as_s().ok()))
                .map(|b| serde_json::from_str::<Value>(b).unwrap())
                .filter(|e| e["outcome"] == "0")
                .map(|e| e["subtype"][0]["code"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<String>>()
        };
        let count = |codes: &[String], code: &str| codes.iter().filter(|c| *c == code).count();
        let new = committed(patient.to_owned()).await;
        assert_eq!(count(&new, "create"), transaction_entries() + 1, "{what}: every create audited once");
        let existing = committed(self.existing.clone()).await;
        assert_eq!(
            (count(&existing, "update"), count(&existing, "delete")),
            (AMENDED + 1, 1),
            "{what}: every change once"
        );
    }
}

/// Every item of one partition of `table` (or of one key of `index`).
async fn query(h: &Harness, table: &str, index: Option<&str>, key: (&str, &str)) -> Vec<Item> {
    h.stack
        .clients
        .dynamodb
        .query()
        .table_name(h.table(table))
        .set_index_name(index.map(str::to_owned))
        .key_condition_expression("#k = :v")
        .expression_attribute_names("#k", key.0)
        .expression_attribute_values(":v", AttributeValue::S(key.1.to_owned()))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
}

/// Nothing of any transaction is left in flight: every header done, no
/// journal page, and no mark or held item in the records of `patients`.
/// Keyed reads only, so a round costs the same however many came before.
async fn assert_transactions_finished(h: &Harness, patients: &[&str], what: &str) {
    let headers = query(h, "RecordsTable", None, ("pk", "TX")).await;
    let open: Vec<&Item> = headers.iter().filter(|i| !i.contains_key("done")).collect();
    assert!(open.is_empty(), "{what}: open headers {open:?}");
    for header in &headers {
        let id = header["sk"].as_s().unwrap();
        assert!(
            query(h, "RecordsTable", None, ("pk", &schema::journal_pk(id))).await.is_empty(),
            "{what}: a journal left"
        );
    }
    for p in patients {
        let marked = query(h, "RecordsTable", None, ("pk", &schema::patient_pk(p))).await;
        assert!(marked.iter().all(|i| !i.contains_key("tx") && !i.contains_key("pend")), "{what}: a mark left");
    }
}

/// The keys of items anywhere in the records table still marked by a
/// transaction. Filtered by the store, so the answer stays small (and in
/// time) however many rounds filled the table.
async fn marked_anywhere(h: &Harness) -> Vec<Item> {
    h.stack
        .clients
        .dynamodb
        .scan()
        .table_name(h.table("RecordsTable"))
        .filter_expression("attribute_exists(tx) OR attribute_exists(pend)")
        .projection_expression("pk, sk")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_crashed_at_any_call_is_all_or_nothing_and_finished_by_the_sweep() {
    // The test runs the sweep itself, after each crash: the stack's own
    // (every minute) could abort a live transaction of this one-second
    // deadline.
    let h = Harness::start_without(&["TransactionSweepFunction"]).await;
    let proxy = h.fault_proxy().await;
    let app = clinical_through(&h, &proxy).await;
    // An administrator: the transaction deletes.
    let t = h.token("admin", "admin-tx-faults");
    let sweep = Arc::new(medrec_transaction_sweep::boot(&h.settings("TransactionSweepFunction", &[])).await.unwrap());
    let sweep = || {
        let sweep = sweep.clone();
        async move {
            // Past the deadline of anything left pending.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            sweep.handle(lambda_http::LambdaEvent::new(json!({}), lambda_http::Context::default())).await.unwrap()
        }
    };

    let mut points = CrashPoints::new(transaction_calls());
    while !points.done() {
        let round = Round::new(&h, &t).await;
        let body = round.body();
        let crash = points.place(&proxy);
        let (status, text) = post_bundle(&app, &t, &body).await;
        let what = crash.what.clone();
        if !points.reached(&proxy, &crash) {
            assert_eq!(status, 200, "a clean run: {}", &text[..text.len().min(500)]);
            let patient = round.seen(&h, &t, "a clean run").await.expect("committed");
            round.audited_once(&h, &patient, "a clean run").await;
            assert_transactions_finished(&h, &[&patient, &round.existing], "a clean run").await;
            continue;
        }
        assert!(status < 500 || matches!(status, 502 | 503), "{what}: {status} {text}");
        // All or nothing at once, and after the sweep the same.
        let seen = round.seen(&h, &t, &what).await;
        assert_eq!(status == 200, seen.is_some(), "{what}: answered {status}, seen {seen:?}");
        sweep().await;
        assert_eq!(round.seen(&h, &t, &format!("{what}, swept")).await, seen, "{what}: the sweep changes nothing seen");
        let mut finished = vec![round.existing.as_str()];
        finished.extend(seen.as_deref());
        assert_transactions_finished(&h, &finished, &format!("{what}, swept")).await;
        // The client's retry of a failed transaction commits it once.
        let patient = match seen {
            Some(p) => p,
            None => {
                let (status, text) = post_bundle(&app, &t, &body).await;
                assert_eq!(status, 200, "{what}: the retry: {text}");
                round.seen(&h, &t, &format!("{what}, retried")).await.expect("committed")
            }
        };
        round.audited_once(&h, &patient, &what).await;
        assert_transactions_finished(&h, &[&patient, &round.existing], &format!("{what}, done")).await;
    }

    // A transaction whose every state-changing call is applied, its answer lost.
    let round = Round::new(&h, &t).await;
    lose_answers(&proxy, TRANSACTION_CALLS);
    let (status, _) = post_bundle(&app, &t, &round.body()).await;
    proxy.clear();
    sweep().await;
    let patient = match round.seen(&h, &t, "answers lost").await {
        Some(p) => p,
        None => {
            assert_ne!(status, 200, "answers lost: a commit answered is seen");
            assert_eq!(post_bundle(&app, &t, &round.body()).await.0, 200);
            round.seen(&h, &t, "answers lost, retried").await.expect("committed")
        }
    };
    round.audited_once(&h, &patient, "answers lost").await;
    assert_transactions_finished(&h, &[&patient, &round.existing], "answers lost").await;
    // Nothing marked anywhere (a rolled-back record's partition included),
    // and the audit chains, appended to by every roll-forward, verify.
    assert_eq!(marked_anywhere(&h).await, Vec::<Item>::new(), "a mark left");
    let report = medrec_infra::audit_verify::verify(&h.verify_target(), false).await.unwrap();
    assert!(report.breaks.is_empty() && report.finding.is_none(), "{:?} {:?}", report.breaks, report.finding);
    println!(
        "transaction of {} entries: {}, then every answer lost",
        transaction_entries() + AMENDED + 3,
        points.summary()
    );
}

// ---- data keys re-wrapped under another CMK ----

const REWRAP_CALLS: &[(&str, &str)] = &[
    // The run's audit record, first.
    ("dynamodb", "TransactWriteItems"),
    ("dynamodb", "Scan"),
    ("kms", "ReEncrypt"),
    ("dynamodb", "UpdateItem"),
];

/// Every wrapped key (patients' and the root secret), unwrapped directly:
/// owner → (plaintext, the CMK it is under).
async fn unwrapped_keys(h: &Harness) -> std::collections::BTreeMap<String, (Vec<u8>, String)> {
    let mut out = std::collections::BTreeMap::new();
    for item in h.scan(&h.table("RecordsTable")).await {
        let (pk, sk) = (item["pk"].as_s().unwrap().clone(), item["sk"].as_s().unwrap().clone());
        let ctx = match (pk.strip_prefix("P#"), sk.as_str()) {
            (Some(p), "KEY") => ("medrec:patient", p.to_owned()),
            (None, "ROOT_SECRET") if pk == "CONFIG" => ("medrec:purpose", "service-root".to_owned()),
            _ => continue,
        };
        let wrapped = item["wk"].as_b().unwrap().clone();
        let out_ = h.stack.clients.kms.decrypt().ciphertext_blob(wrapped).encryption_context(ctx.0, &ctx.1).send();
        let plain = out_.await.unwrap_or_else(|e| panic!("{pk}: the wrapped key no longer unwraps: {e:?}"));
        out.insert(pk, (plain.plaintext().unwrap().as_ref().to_vec(), plain.key_id().unwrap().to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_crashed_at_any_call_loses_no_key_and_is_finished_by_the_rerun() {
    let h = Harness::start().await;
    let proxy = h.fault_proxy().await;
    let registrar = h.token("registrar", "front-desk");
    for _ in 0..3 {
        h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    }
    let kms = &h.stack.clients.kms;
    let original = unwrapped_keys(&h).await;
    assert_eq!(original.len(), 4, "three patients and the root secret");
    // Everything the run calls goes through the proxy; the keys it starts
    // from are unwrapped (once, with every CMK a round made accepted) first.
    let target = target_through(&h, &proxy);
    let sdk = medrec_edge::aws::sdk_config(target.endpoint.as_deref()).await;
    let (ddb, kms_through) = (aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk));
    let tables = medrec_edge::aws::dynamo::Tables {
        records: h.table("RecordsTable"),
        audit: h.table("AuditTable"),
        outbox: h.table("OutboxTable"),
    };
    let keys = medrec_edge::aws::kms::KmsKeys::new(kms_through.clone(), h.table("RecordsKey"));
    let ctx = medrec_edge::aws::purge::PurgeContext::new(&sdk, true, tables, keys, 8, &h.table("DocumentsBucket"))
        .await
        .unwrap();
    let table = h.table("RecordsTable");
    let rekey =
        medrec_edge::aws::rekey::Rekey { ddb: &ddb, kms: &kms_through, records_table: &table, store: &ctx.store };
    let audited = |cmk: String| {
        let h = &h;
        async move { audits(h, "key-rewrap", &cmk).await.len() }
    };

    let mut points = CrashPoints::new(REWRAP_CALLS);
    let mut round = 0;
    while !points.done() {
        round += 1;
        let to = kms.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_owned();
        let crash = points.place(&proxy);
        let crashed = rekey.rewrap(&to, "ops", u64::MAX, |_| {}).await;
        let what = crash.what.clone();
        let reached = points.reached(&proxy, &crash);
        let now = unwrapped_keys(&h).await;
        for (owner, (plain, _)) in &now {
            assert_eq!(plain, &original[owner].0, "{what}: {owner}'s key is the same key");
        }
        assert_eq!(now.len(), original.len(), "{what}: no key lost");
        if reached {
            assert!(crashed.is_err(), "{what}: the run reports its failure");
            if now.values().any(|(_, cmk)| *cmk == to) {
                assert_eq!(audited(to.clone()).await, 1, "{what}: a key moved, so the run was audited first");
            }
            rekey.rewrap(&to, "ops", u64::MAX, |_| {}).await.unwrap_or_else(|e| panic!("{what}: the rerun: {e}"));
        } else {
            crashed.unwrap_or_else(|e| panic!("{what} not reached: a clean run: {e}"));
        }
        let done = unwrapped_keys(&h).await;
        assert!(done.values().all(|(_, cmk)| *cmk == to), "{what}: every key under the new CMK (round {round})");
        let again = rekey.rewrap(&to, "ops", u64::MAX, |_| {}).await.unwrap();
        assert_eq!((again.rewrapped, again.already), (0, 4), "{what}: nothing twice");
    }

    let to = kms.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_owned();
    lose_answers(&proxy, REWRAP_CALLS);
    let first = rekey.rewrap(&to, "ops", u64::MAX, |_| {}).await;
    proxy.clear();
    if first.is_err() {
        rekey.rewrap(&to, "ops", u64::MAX, |_| {}).await.unwrap();
    }
    let done = unwrapped_keys(&h).await;
    assert!(done.iter().all(|(owner, (plain, cmk))| *cmk == to && *plain == original[owner].0), "answers lost");
    println!("rewrap: {}, then every answer lost", points.summary());
}
