//! The compliance report from live evidence: each figure read from the
//! running stack, and each one seen to move when the system changes (a
//! failed login, a refusal, a consent, a break-glass access and its review,
//! an anomaly, a hold, an erasure request, a purge, a dead letter, a
//! checkpoint, the key's rotation, a tampered record).

use medrec_e2e::{canary_patient, unique_tag, Harness};
use medrec_edge::aws::schema::{self, ChainItem};
use medrec_edge::evidence::{Report, Status};
use serde_json::{json, Value};

const GLASS: [(&str, &str); 3] = [
    ("x-purpose-of-use", "ETREAT"),
    ("x-break-glass-reason-code", "patient-unconscious"),
    ("x-break-glass-reason", "collapsed in the waiting room, needs history"),
];

fn value(r: &Report, id: &str) -> Value {
    r.item(id).unwrap_or_else(|| panic!("{id} missing")).value.clone()
}

fn status(r: &Report, id: &str) -> Status {
    r.item(id).unwrap().status
}

fn bar(r: &Report, id: &str, label: &str) -> u64 {
    r.item(id).unwrap().breakdown.iter().find(|(l, _)| l == label).map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_moves_when_the_system_changes() {
    let h = Harness::start_with(vec![("MEDREC_AUDIT_SHARDS".into(), "1".into())]).await;
    let app = medrec_compliance_report::boot(&h.settings("ComplianceReportFunction", &[])).await.unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let report = || {
        let app = &app;
        async move { app.report(since, time::OffsetDateTime::now_utc() + time::Duration::minutes(1)).await.unwrap() }
    };
    let before = report().await;
    assert_eq!(value(&before, "audit-verification"), "intact");
    assert_eq!(
        (value(&before, "checkpoint-freshness"), status(&before, "checkpoint-freshness")),
        (json!("none"), Status::Attention)
    );
    assert_eq!((value(&before, "records-key"), status(&before, "records-key")), (json!("rotation on"), Status::Ok));
    for id in [
        "accesses",
        "failed-authentications",
        "access-refusals",
        "consents",
        "break-glass",
        "anomaly-alerts",
        "legal-holds",
        "dead-letters",
    ] {
        assert_eq!(value(&before, id), 0, "{id}");
    }

    // People at work, and people getting it wrong.
    let registrar = h.token("registrar", "front-desk");
    let tag = unique_tag();
    let patient = h.create_id(&registrar, &canary_patient(&tag)).await;
    assert_eq!(h.get("/fhir/Patient", "not-a-token").await.status, 401);
    let patient_token = h.token_with("patient", "pat", &["patient/*.rs"], Some(&unique_tag()));
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}/$everything"), &patient_token).await.status, 404);
    let refused = h.get("/fhir/AuditEvent?agent=x", &registrar).await;
    assert_eq!(refused.status, 403);
    let consent = json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")}, "dateTime": "2026-11-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny"}});
    h.create_id(&registrar, &consent).await;
    let dr = h.token("clinician", "dr-ed");
    assert_eq!(h.call("GET", &format!("/fhir/Patient/{patient}"), Some(&dr), &GLASS, None).await.status, 200);

    let during = report().await;
    assert_eq!(bar(&before, "records-key", "data keys under 90 days"), 0);
    assert_eq!(bar(&during, "records-key", "data keys under 90 days"), 1, "the new patient's key");
    assert_eq!(value(&during, "failed-authentications"), 1);
    assert_eq!((bar(&during, "access-refusals", "HTTP 403"), bar(&during, "access-refusals", "HTTP 404")), (1, 1));
    assert_eq!(value(&during, "consents"), 1);
    assert_eq!(bar(&during, "accesses", "write"), 2, "the patient and the consent");
    assert_eq!(bar(&during, "accesses", "open"), 1);
    assert_eq!((bar(&during, "processing-purposes", "TREAT"), bar(&during, "processing-purposes", "ETREAT")), (2, 1));
    assert_eq!((value(&during, "break-glass"), bar(&during, "break-glass", "pending review")), (json!(1), 1));

    // The auditor reviews; the detector runs; legal and operations act.
    let auditor = h.token("auditor", "auditor-1");
    let pending = h.get("/fhir/AuditEvent?subtype=break-glass&_review=pending", &auditor).await.json();
    let id = pending["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    let review = json!({"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": "justified"}]});
    let path = format!("/fhir/AuditEvent/{id}/$review");
    assert_eq!(h.call("POST", &path, Some(&auditor), &[], Some(&review.to_string())).await.status, 200);
    let neighbour = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{neighbour}"), &h.token("clinician", "dr-nosy")).await.status, 200);
    let anomalies = medrec_audit_anomalies::boot(&h.settings("AuditAnomaliesFunction", &[])).await.unwrap();
    let window = json!({"since": medrec_edge::fhir::instant(since), "until": medrec_edge::fhir::now_instant()});
    std::sync::Arc::new(anomalies)
        .handle(lambda_http::LambdaEvent::new(window, lambda_http::Context::default()))
        .await
        .unwrap();
    let target = h.verify_target();
    let ctx =
        medrec_infra::purge::context(&target, &h.table("OutboxTable"), &h.table("DocumentsBucket")).await.unwrap();
    let hold = medrec_edge::purge::HoldTarget::Patient(patient.clone());
    assert!(ctx.purger().place_hold(&hold, "legal-team", "litigation", "CASE-1").await.unwrap());
    assert!(ctx.purger().request_erasure(&patient, "privacy-office", "DSR-1").await.unwrap());
    // Eleven years on, the neighbour is past retention; the held patient stays.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 11);
    let purged = ctx.purger().run(&medrec_edge::retention::Retention::default(), later, 10, "ops").await.unwrap();
    assert_eq!((purged.shredded, purged.held), (1, 1), "{purged:?}");
    let dlq = h.stack.function_env["ComplianceReportFunction"]["MEDREC_DEAD_LETTER_QUEUES"]
        .split(',')
        .find_map(|q| q.strip_prefix("RegistrySync="))
        .unwrap()
        .to_owned();
    h.stack.clients.sqs.send_message().queue_url(&dlq).message_body("{}").send().await.unwrap();
    medrec_infra::audit_verify::checkpoint(&target).await.unwrap();
    let key = &h.stack.function_env["ComplianceReportFunction"]["MEDREC_RECORDS_KEY_ID"];
    h.stack.clients.kms.disable_key_rotation().key_id(key).send().await.unwrap();

    let after = report().await;
    assert_eq!((bar(&after, "break-glass", "pending review"), bar(&after, "break-glass", "justified")), (0, 1));
    assert!(value(&after, "anomaly-alerts").as_u64().unwrap() >= 1, "{:?}", after.item("anomaly-alerts"));
    assert_eq!(value(&after, "legal-holds"), 1);
    assert_eq!(bar(&after, "legal-holds", "litigation"), 1);
    assert_eq!((bar(&after, "purges", "hold-place"), bar(&after, "purges", "erasure-request")), (1, 1));
    assert_eq!((value(&before, "purges"), value(&after, "purges")), (json!(0), json!(1)), "the neighbour shredded");
    assert_eq!((value(&after, "dead-letters"), status(&after, "dead-letters")), (json!(1), Status::Attention));
    assert_eq!(bar(&after, "dead-letters", "RegistrySync"), 1);
    assert_eq!((value(&after, "checkpoint-freshness"), status(&after, "checkpoint-freshness")), (json!(0), Status::Ok));
    assert_eq!(
        (value(&after, "records-key"), status(&after, "records-key")),
        (json!("rotation off"), Status::Attention)
    );
    assert_eq!(value(&after, "audit-verification"), "intact");

    // A record edited behind the chain's back.
    let ddb = &h.stack.clients.dynamodb;
    let table = h.table("AuditTable");
    let chain_key = schema::audit_key(schema::chain_pk(0), 2);
    let item = ddb.get_item().table_name(&table).set_key(Some(chain_key)).send().await.unwrap().item.unwrap();
    let mut record = schema::from_item::<ChainItem>(&item).unwrap();
    let original = record.entry.body.clone();
    record.entry.body = original.replacen("\"recorded\":\"2", "\"recorded\":\"1", 1);
    assert_ne!(record.entry.body, original);
    ddb.put_item().table_name(&table).set_item(Some(schema::to_item(&record))).send().await.unwrap();
    let tampered = report().await;
    assert_eq!(
        (value(&tampered, "audit-verification"), status(&tampered, "audit-verification")),
        (json!("TAMPERED"), Status::Attention)
    );

    // The scheduled run archives it under Object Lock.
    let app = std::sync::Arc::new(app);
    let period = json!({"since": medrec_edge::fhir::instant(since), "until": medrec_edge::fhir::now_instant()});
    let run = app.handle(lambda_http::LambdaEvent::new(period, lambda_http::Context::default())).await.unwrap();
    assert!(run["attention"].as_array().unwrap().contains(&json!("audit-verification")), "{run}");
    let key = run["archived"].as_str().unwrap();
    assert!(key.starts_with("compliance/") && key.ends_with(".json"), "{key}");
    let object = h.stack.clients.s3.get_object().bucket(h.table("AuditArchiveBucket")).key(key).send().await.unwrap();
    let archived: Value = serde_json::from_slice(&object.body.collect().await.unwrap().to_vec()).unwrap();
    assert_eq!(archived["items"].as_array().unwrap().len(), tampered.items.len());

    // The report as the archive holds it: HTML and JSON, no PHI.
    let html = tampered.to_html();
    assert!(html.contains("TAMPERED") && html.contains("<svg") && html.contains("GDPR"));
    let text = format!("{html}{}", tampered.to_json());
    for phi in [format!("Family{tag}"), format!("Given{tag}"), format!("MRN{tag}"), "1961-07-13".into()] {
        assert!(!text.contains(&phi), "{phi} in the report");
    }
}
