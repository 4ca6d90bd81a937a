//! PHI canaries over everything a workload leaves behind: a canary patient
//! with unique strings in every PHI field, in clinical free text and in
//! documents (inline and uploaded), driven through every function (writes,
//! reads, searches with the canary values as parameters, `$everything`,
//! audit search, accounting of disclosures, bad requests that carry the
//! canaries, the registry sync, an audit export; presigned uploads have
//! their own canary test in `documents.rs`). Then a sweep: the logs,
//! every item of every table, every object of every bucket, every message
//! waiting in every queue, and every error body find none of the canary
//! strings. (The registry simulator receives the demographics: that is the
//! disclosure, audited; it is not medrec's storage.)

use base64::Engine;
use medrec_e2e::{canary_patient, canary_strings, logs, unique_tag, Harness};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_outside_ciphertext_after_a_whole_workload() {
    let h = Harness::start().await;
    let tag = unique_tag();
    let mut canaries = canary_strings(&tag);
    canaries.extend([format!("Note{tag}"), format!("Letter{tag}"), format!("Reason{tag}")]);
    let t = h.token("clinician", "dr-canary");
    let admin = h.token("admin", "ops-canary");
    let auditor = h.token("auditor", "po-canary");
    let mut errors: Vec<String> = vec![];
    let patient = h.create_id(&t, &canary_patient(&tag)).await;

    // Clinical records with canaries in their free text.
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        "note": [{"text": format!("Note{tag}")}]});
    assert_eq!(h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await.status, 201);
    let imm = json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{patient}")}, "occurrenceDateTime": "2026-11-20",
        "primarySource": true, "note": [{"text": format!("Note{tag}")}]});
    assert_eq!(h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&imm.to_string())).await.status, 201);
    let letter = base64::engine::general_purpose::STANDARD.encode(format!("Dear Letter{tag}, your results"));
    let doc = json!({"resourceType": "DocumentReference", "status": "current", "description": format!("Letter{tag}"),
        "subject": {"reference": format!("Patient/{patient}")},
        "content": [{"attachment": {"contentType": "text/plain", "data": letter, "title": format!("Letter{tag}")}}]});
    let doc = h.call("POST", "/fhir/DocumentReference", Some(&t), &[], Some(&doc.to_string())).await;
    assert_eq!(doc.status, 201);
    let binary = format!("/fhir/{}", doc.json()["content"][0]["attachment"]["url"].as_str().unwrap());

    // Reads, searches with canary values as parameters, operations.
    for path in [
        format!("/fhir/Patient/{patient}"),
        format!("/fhir/Patient?family=Family{tag}&given=Given{tag}"),
        format!("/fhir/Patient?identifier=MRN{tag}"),
        format!("/fhir/Patient/{patient}/$everything"),
        format!("/fhir/Observation?patient={patient}&code=2339-0"),
        format!("/fhir/Immunization?patient={patient}"),
        format!("/fhir/DocumentReference?patient={patient}"),
        binary.clone(),
    ] {
        let r = h.get(&path, &t).await;
        assert!(r.status < 300, "{path}: {}", r.status);
    }
    for path in [format!("/fhir/AuditEvent?patient={patient}"), format!("/fhir/Patient/{patient}/$disclosures")] {
        assert_eq!(h.get(&path, &auditor).await.status, 200, "{path}");
    }

    // Bad requests that carry the canaries: the answers must not echo them.
    let bad = [
        ("POST", "/fhir/Patient".to_owned(), json!({"resourceType": "Patient", "birthDate": format!("Street{tag}"), "name": [{"family": format!("Family{tag}")}]}).to_string()),
        ("POST", "/fhir/Patient".to_owned(), json!({"resourceType": "Patient", "gender": format!("City{tag}")}).to_string()),
        ("POST", "/fhir/Patient".to_owned(), format!("{{\"resourceType\": \"Patient\", \"name\": [{{\"family\": \"Family{tag}\"")),
        ("POST", "/fhir/Observation".to_owned(), json!({"resourceType": "Observation", "status": format!("Note{tag}"), "subject": {"reference": format!("Patient/{patient}")}}).to_string()),
        ("GET", format!("/fhir/Patient?birthdate=Street{tag}"), String::new()),
        ("GET", format!("/fhir/Patient?Given{tag}=x"), String::new()),
        ("GET", format!("/fhir/Patient/MRN{tag}"), String::new()),
        ("PUT", format!("/fhir/Patient/{patient}"), json!({"resourceType": "Patient", "id": "other", "name": [{"family": format!("Family{tag}")}]}).to_string()),
        ("POST", "/fhir/Consent".to_owned(), json!({"resourceType": "Consent", "status": "active", "patient": {"reference": format!("Patient/{patient}")}, "note": format!("Reason{tag}")}).to_string()),
    ];
    for (method, path, body) in &bad {
        let r = h
            .call(method, path, Some(&t), &[("if-match", "W/\"1\"")], (!body.is_empty()).then_some(body.as_str()))
            .await;
        assert!((400..500).contains(&r.status), "{method} {path}: {}", r.status);
        errors.push(String::from_utf8_lossy(&r.body).into_owned());
    }
    // Unauthenticated and unauthorized attempts naming the patient.
    errors.push(
        String::from_utf8_lossy(
            &h.call("GET", &format!("/fhir/Patient?family=Family{tag}"), None, &[], None).await.body,
        )
        .into_owned(),
    );
    errors.push(
        String::from_utf8_lossy(&h.get(&format!("/fhir/AuditEvent?patient={patient}"), &t).await.body).into_owned(),
    );

    // Background work: the registry sync, an audit export.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.stack.registry.0.doses_of(&patient).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(h.stack.registry.0.doses_of(&patient).len(), 1, "the registry sync ran");
    let until = medrec_edge::fhir::now_instant();
    medrec_infra::audit_verify::export(
        &h.verify_target(),
        "canary",
        ("2000-01-01T00:00:00.000Z", until.as_str()),
        500,
        10,
    )
    .await
    .unwrap();
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &admin).await.status, 200);

    // The sweep.
    let mut found = vec![];
    let mut look = |place: &str, text: &str| {
        for c in &canaries {
            if text.contains(c.as_str()) {
                found.push(format!("{c} in {place}"));
            }
        }
    };
    look("logs", &logs().text());
    look("metrics", &medrec_infra::metrics::lines().join("\n"));
    look(
        "the metrics page",
        &String::from_utf8_lossy(&h.client.send("GET", &h.url("/metrics"), &[], None).await.unwrap().body),
    );
    for body in &errors {
        look("an error body", body);
    }
    let stored = medrec_e2e::stored_contents(&h.stack.clients, &h.stack.template, &h.stack.provisioned).await;
    for (place, text) in &stored {
        look(place, text);
    }
    let count = |what: &str| stored.iter().filter(|(place, _)| place.starts_with(what)).count();
    let (tables, objects, messages) = (count("table "), count("bucket "), count("queue "));
    assert!(found.is_empty(), "{found:#?}");
    assert!(tables >= 40 && objects >= 3, "the sweep saw {tables} items, {objects} objects");
    println!("canary sweep: {} canaries; logs, {} error bodies, {tables} items, {objects} objects, {messages} queued messages: none found", canaries.len(), errors.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_sweep_finds_canaries_planted_in_a_table_a_bucket_and_a_queue() {
    use aws_sdk_dynamodb::types::AttributeValue as AV;
    let h = Harness::start().await;
    let tag = unique_tag();
    let (family, street, mrn) = (format!("Family{tag}"), format!("Street{tag}"), format!("MRN{tag}"));
    let (table, bucket, queue) =
        (h.table("RecordsTable"), h.table("DocumentsBucket"), h.table("RegistrySyncDeadLetterQueue"));
    let c = &h.stack.clients;
    c.dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AV::S("PLANTED".into()))
        .item("sk", AV::S("PLANTED".into()))
        .item("name", AV::S(family.clone()))
        .send()
        .await
        .unwrap();
    c.s3.put_object().bucket(&bucket).key("planted").body(street.clone().into_bytes().into()).send().await.unwrap();
    c.sqs.send_message().queue_url(&queue).message_body(&mrn).send().await.unwrap();

    let stored = medrec_e2e::stored_contents(&h.stack.clients, &h.stack.template, &h.stack.provisioned).await;
    let found: Vec<(String, String)> = stored
        .iter()
        .flat_map(|(place, text)| medrec_e2e::canaries_in(text).into_iter().map(|c| (c, place.clone())))
        .collect();
    for (canary, place) in [
        (&family, "table RecordsTable"),
        (&street, "bucket DocumentsBucket"),
        (&mrn, "queue RegistrySyncDeadLetterQueue"),
    ] {
        assert!(found.contains(&(canary.clone(), place.into())), "{canary} in {place}: {found:?}");
    }
    assert_eq!(found.len(), 3, "nothing else: {found:?}");
    assert!(medrec_e2e::canaries_in("Family0123456789ab Familyxyz Family0123").len() == 1, "a tag is 12 hex digits");

    // Removed, so that the sweep at the end of this test finds the stack clean.
    c.dynamodb
        .delete_item()
        .table_name(&table)
        .key("pk", AV::S("PLANTED".into()))
        .key("sk", AV::S("PLANTED".into()))
        .send()
        .await
        .unwrap();
    c.s3.delete_object().bucket(&bucket).key("planted").send().await.unwrap();
    let received = c.sqs.receive_message().queue_url(&queue).send().await.unwrap();
    for m in received.messages() {
        c.sqs.delete_message().queue_url(&queue).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
    }
}
