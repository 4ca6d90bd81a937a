//! Batch Bundles at the base URL (`POST /fhir`, R4 http.html#transaction):
//! every entry is answered as the same request alone would be (its status,
//! its resource or OperationOutcome, its audit record), a malformed Bundle
//! is refused whole with each problem at its entry, and a batch gives a
//! caller nothing the same requests alone would not.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use medrec_e2e::{canary_patient, consent, unique_tag, Harness};
use medrec_edge::aws::schema;
use medrec_edge::fhir::validator::model;
use serde_json::{json, Value};

fn assert_valid(what: &str, v: &Value) {
    let errors: Vec<String> =
        model().validate(v).into_iter().filter(|i| i.is_error()).map(|i| format!("{i:?}")).collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

fn batch(entries: Vec<Value>) -> String {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries}).to_string()
}

fn request(method: &str, url: &str) -> Value {
    json!({"request": {"method": method, "url": url}})
}

fn with_resource(method: &str, url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": method, "url": url}})
}

fn observation(patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 1.50, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
}

fn statuses(response: &Value) -> Vec<String> {
    response["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_entry_as_that_request_alone() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-batch");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let existing = h.create_id(&t, &observation(&patient, "2339-0")).await;
    // Entries run concurrently, so each write names its own resource.
    let other = h.create_id(&t, &observation(&patient, "2339-0")).await;
    let patch = base64::engine::general_purpose::STANDARD
        .encode(json!([{"op": "replace", "path": "/status", "value": "amended"}]).to_string());
    let mut condition_in_future = json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient}")},
        "onsetDateTime": "2999-01-01"});
    condition_in_future["clinicalStatus"] =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]});
    let mut replacement = observation(&patient, "2339-0");
    replacement["id"] = json!(other);
    let entries = vec![
        with_resource("POST", "Observation", observation(&patient, "718-7")),
        with_resource("POST", "Condition", condition_in_future),
        request("GET", &format!("Patient/{patient}")),
        request("GET", &format!("Observation?patient={patient}&code=2339-0")),
        json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
            "request": {"method": "PATCH", "url": format!("Observation/{existing}"), "ifMatch": "W/\"1\""}}),
        json!({"resource": replacement,
            "request": {"method": "PUT", "url": format!("Observation/{other}"), "ifMatch": "W/\"2\""}}),
        request("GET", "Observation/nosuchrecord"),
        request("HEAD", &format!("Patient/{patient}")),
        request("GET", "AuditEvent?patient=x"),
        request("GET", "Nothing/1"),
        request("DELETE", &format!("Observation/{existing}")),
    ];
    // The decimal as sent, with its trailing zero.
    let body = batch(entries).replacen("\"value\":1.5}", "\"value\":1.50}", 1);
    assert!(body.contains("1.50"));
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_valid("batch-response", &out);
    assert_eq!(out["type"], "batch-response");
    assert_eq!(
        statuses(&out),
        [
            "201 Created",
            "422 Unprocessable Entity",
            "200 OK",
            "200 OK",
            "200 OK",
            "412 Precondition Failed",
            "404 Not Found",
            "200 OK",
            "404 Not Found",
            "404 Not Found",
            "403 Forbidden",
        ]
    );
    let e = out["entry"].as_array().unwrap();
    // A create: its resource, where it lives, its version; exact decimals.
    let created = &e[0]["resource"];
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["valueQuantity"]["value"].to_string(), "1.50");
    assert!(e[0]["response"]["location"].as_str().unwrap().ends_with(&format!("/fhir/Observation/{id}/_history/1")));
    assert_eq!(
        (e[0]["response"]["etag"].as_str(), e[0]["fullUrl"].as_str().map(|u| u.ends_with(id))),
        (Some("W/\"1\""), Some(true))
    );
    assert_eq!(e[0]["response"]["lastModified"], created["meta"]["lastUpdated"]);
    // A refusal: the OperationOutcome at the element, as alone.
    assert_eq!(e[1]["response"]["outcome"]["issue"][0]["expression"][0], "Condition.onsetDateTime");
    assert!(e[1].get("resource").is_none());
    assert_eq!(e[2]["resource"]["id"], patient);
    assert_eq!((e[3]["resource"]["type"].as_str(), e[3]["resource"]["total"].as_u64()), (Some("searchset"), Some(2)));
    assert_eq!(e[4]["resource"]["status"], "amended");
    assert!(e[7].get("resource").is_none(), "HEAD answers without a body");
    // What the entries did is there afterwards, as alone.
    assert_eq!(h.get(&format!("/fhir/Observation/{id}"), &t).await.status, 200);
    // Deleting is the administrator's, in a batch as alone.
    assert_eq!(h.get(&format!("/fhir/Observation/{existing}"), &t).await.json()["status"], "amended");

    // Each entry is audited as its request, and the batch once more.
    let audits = h.audit_events_of("dr-batch").await;
    let subtypes = |code: &str| audits.iter().filter(|a| a["subtype"][0]["code"] == code).count();
    assert_eq!(subtypes("batch"), 1);
    assert!(subtypes("create") >= 2 && subtypes("patch") == 1 && subtypes("delete") == 1, "{audits:?}");
    assert!(audits.iter().any(|a| a["subtype"][0]["code"] == "create" && a["outcome"] != "0"), "the refused create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_refused_whole_and_stores_nothing() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-malformed-batch");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let records = || async {
        let items = h.scan(&h.table("RecordsTable")).await;
        items.iter().filter(|i| i["pk"].as_s().is_ok_and(|p| schema::patient_of_pk(p).is_some())).count()
    };
    let before = records().await;
    let post = with_resource("POST", "Observation", observation(&patient, "718-7"));
    let cases: Vec<(String, u16, &str)> = vec![
        (batch(vec![post.clone(), request("TRACE", "Patient")]), 400, "Bundle.entry[1].request.method"),
        (
            batch(vec![post.clone(), request("GET", "https://elsewhere.example/fhir/Patient/1")]),
            400,
            "Bundle.entry[1].request.url",
        ),
        (
            batch(vec![post.clone(), with_resource("PUT", "Observation/1", json!({"resourceType": "Patient"}))]),
            400,
            "Bundle.entry[1].resource",
        ),
        (json!({"resourceType": "Bundle", "type": "collection", "entry": [post]}).to_string(), 400, "Bundle.type"),
        (batch(vec![request("GET", "Patient/1"); 1_001]), 400, "Bundle.entry"),
    ];
    for (body, status, at) in cases {
        let r = h.call("POST", "/fhir", Some(&t), &[], Some(&body)).await;
        assert_eq!(r.status, status, "{at}: {}", r.text());
        let outcome = r.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(outcome["issue"].as_array().unwrap().iter().any(|i| i["expression"][0] == at), "{at}: {outcome}");
    }
    assert_eq!(h.call("POST", "/fhir", Some(&t), &[], Some("{\"resourceType\": \"Patient\"}")).await.status, 400);
    assert_eq!(h.call("POST", "/fhir", None, &[], Some(&batch(vec![]))).await.status, 401);
    assert_eq!(records().await, before, "nothing of a refused Bundle is stored");

    // A batch's entries are independent: one naming another is refused, the other runs.
    let linked = batch(vec![
        json!({"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": canary_patient(&unique_tag()),
            "request": {"method": "POST", "url": "Patient"}}),
        with_resource("POST", "Observation", {
            let mut o = observation(&patient, "718-7");
            o["subject"]["reference"] = json!("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a");
            o
        }),
    ]);
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&linked)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_eq!(statuses(&out), ["201 Created", "400 Bad Request"]);
    assert_eq!(out["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0], "Bundle.entry[1].resource");
    // An empty batch is answered by an empty batch-response (no empty array).
    let empty = h.call("POST", "/fhir", Some(&t), &[], Some(&batch(vec![]))).await.json();
    assert_eq!(empty, json!({"resourceType": "Bundle", "type": "batch-response"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_no_caller_more_than_its_requests_alone() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "desk-batch");
    let own = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let other_obs = h.create_id(&h.token("admin", "admin-batch"), &observation(&other, "718-7")).await;

    // A patient's token: their own record, never another patient's.
    let me = h.token_with("patient", "the-patient", &["patient/*.read"], Some(&own));
    let entries = vec![
        request("GET", &format!("Patient/{own}")),
        request("GET", &format!("Patient/{other}")),
        request("GET", &format!("Observation/{other_obs}")),
        request("GET", &format!("Observation?patient={other}")),
        with_resource("POST", "Observation", observation(&own, "718-7")),
    ];
    let singly: Vec<u16> = {
        let mut s = vec![];
        for e in &entries {
            let url = format!("/fhir/{}", e["request"]["url"].as_str().unwrap());
            let method = e["request"]["method"].as_str().unwrap();
            let body = e.get("resource").map(Value::to_string);
            s.push(h.call(method, &url, Some(&me), &[], body.as_deref()).await.status);
        }
        s
    };
    let r = h.call("POST", "/fhir", Some(&me), &[], Some(&batch(entries))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    let in_batch: Vec<u16> = statuses(&out).iter().map(|s| s[..3].parse().unwrap()).collect();
    assert_eq!(in_batch, singly, "each entry answered as alone");
    assert_eq!(in_batch[0], 200);
    assert!(in_batch[1..].iter().all(|s| *s == 403 || *s == 404), "{in_batch:?}");
    let e = out["entry"].as_array().unwrap();
    assert!(e[1..].iter().all(|e| e.get("resource").is_none()), "nothing of the other patient: {out}");

    // A clinician the patient refused stays refused, and cannot lift the
    // refusal from inside a batch (consents are the consent authority's).
    let deny = consent(
        &own,
        json!({"type": "permit", "provision": [{"type": "deny",
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-refused"}}]}]}),
    );
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&deny.to_string())).await.status, 201);
    let refused = h.token("clinician", "dr-refused");
    let mut permit = consent(&own, json!({"type": "permit"}));
    permit["dateTime"] = json!("2026-11-30");
    let r = h
        .call(
            "POST",
            "/fhir",
            Some(&refused),
            &[],
            Some(&batch(vec![
                with_resource("POST", "Consent", permit),
                request("GET", &format!("Patient/{own}")),
                request("GET", &format!("Observation?patient={own}")),
            ])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(statuses(&r.json()), ["403 Forbidden", "403 Forbidden", "403 Forbidden"]);
    assert_eq!(h.get(&format!("/fhir/Patient/{own}"), &refused).await.status, 403, "still refused");
}

fn transaction(entries: Vec<Value>) -> String {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
}

fn linked(full_url: &str, url: &str, resource: Value) -> Value {
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": url}})
}

fn practitioner(npi: &str) -> Value {
    json!({"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
        "name": [{"family": "Osler", "given": ["William"]}]})
}

fn npi_reference(npi: &str) -> String {
    format!("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{npi}")
}

/// A patient's first visit as an EHR sends it: the Patient, an Encounter and
/// a Condition naming each other (a cycle), Observations naming all three and
/// their performer by a conditional reference, every link an urn:uuid.
fn first_visit(patient: Value, npi: &str, observations: usize) -> Vec<Value> {
    let (p, e, c) = (
        "urn:uuid:0f0c3a4e-8a2b-4a57-9b55-3f4b8e9a0001",
        "urn:uuid:0f0c3a4e-8a2b-4a57-9b55-3f4b8e9a0002",
        "urn:uuid:0f0c3a4e-8a2b-4a57-9b55-3f4b8e9a0003",
    );
    let mut entries = vec![
        linked(p, "Patient", patient),
        linked(
            e,
            "Encounter",
            json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": p}, "reasonReference": [{"reference": c}]}),
        ),
        linked(
            c,
            "Condition",
            json!({"resourceType": "Condition", "subject": {"reference": p}, "encounter": {"reference": e},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}),
        ),
    ];
    for n in 0..observations {
        let mut o = observation("placeholder", "2339-0");
        o["subject"]["reference"] = json!(p);
        o["encounter"] = json!({"reference": e});
        o["performer"] = json!([{"reference": npi_reference(npi)}]);
        entries.push(linked(&format!("urn:uuid:0f0c3a4e-8a2b-4a57-9b55-3f4b8e9a1{n:03}"), "Observation", o));
    }
    entries
}

/// Every item of the harness' records table as text, sorted: the raw dump,
/// but for the counters of failed requests (security alerting counts them)
/// and the headers of aborted transactions, finished (kept a day for
/// readers that met their items).
async fn records_dump(h: &Harness) -> Vec<String> {
    let aborted = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        i["pk"].as_s().is_ok_and(|pk| pk == "TX")
            && i.get("state").is_some_and(|s| s.as_s().is_ok_and(|s| s == "aborted"))
            && i.contains_key("done")
    };
    let mut items: Vec<String> = h
        .scan(&h.table("RecordsTable"))
        .await
        .iter()
        .filter(|i| i["pk"].as_s().is_ok_and(|pk| !pk.starts_with("FAILS#") && !pk.starts_with("ONCE#")))
        .filter(|i| !aborted(i))
        .map(|i| {
            let mut kv: Vec<_> = i.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            kv.sort();
            kv.join(",")
        })
        .collect();
    items.sort();
    items
}

fn assert_unchanged(before: &[String], after: &[String], what: &str) {
    let added: Vec<&String> = after.iter().filter(|i| !before.contains(i)).collect();
    let removed: Vec<&String> = before.iter().filter(|i| !after.contains(i)).collect();
    assert!(added.is_empty() && removed.is_empty(), "{what}: added {added:?}, removed {removed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_commits_linked_entries_whole_with_their_links_resolved() {
    let h = Harness::start().await;
    let admin = h.token("admin", "admin-tx");
    let npi = unique_tag();
    let performer = h.create_id(&admin, &practitioner(&npi)).await;
    let t = h.token("clinician", "dr-tx");
    let mut entries = first_visit(canary_patient(&unique_tag()), &npi, 3);
    entries.push(request("GET", &npi_reference(&npi)));
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(entries))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_valid("transaction-response", &out);
    assert_eq!(out["type"], "transaction-response");
    assert_eq!(
        statuses(&out),
        ["201 Created", "201 Created", "201 Created", "201 Created", "201 Created", "201 Created", "200 OK"]
    );
    let id = |i: usize| out["entry"][i]["resource"]["id"].as_str().unwrap().to_owned();
    let (patient, encounter, condition) = (id(0), id(1), id(2));
    assert_eq!(out["entry"][6]["resource"]["total"], 1, "reads run on the committed state");

    // Every link is the server's id, in what is stored, cycles included.
    let stored = |path: String| {
        let (h, t) = (&h, &t);
        async move {
            let r = h.get(&path, t).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            r.json()
        }
    };
    let enc = stored(format!("/fhir/Encounter/{encounter}")).await;
    assert_eq!(enc["subject"]["reference"], format!("Patient/{patient}"));
    assert_eq!(enc["reasonReference"][0]["reference"], format!("Condition/{condition}"));
    let cond = stored(format!("/fhir/Condition/{condition}")).await;
    assert_eq!(cond["encounter"]["reference"], format!("Encounter/{encounter}"));
    for i in 3..6 {
        let obs = stored(format!("/fhir/Observation/{}", id(i))).await;
        assert_eq!(obs["subject"]["reference"], format!("Patient/{patient}"));
        assert_eq!(obs["encounter"]["reference"], format!("Encounter/{encounter}"));
        assert_eq!(obs["performer"][0]["reference"], format!("Practitioner/{performer}"));
    }
    let everything = stored(format!("/fhir/Patient/{patient}/$everything")).await.to_string();
    assert!((0..6).all(|i| everything.contains(&format!("\"id\":\"{}\"", id(i)))), "{everything}");

    // One audit record per entry, and the transaction's naming each change.
    let audits = h.audit_events_of("dr-tx").await;
    let tx: Vec<&Value> = audits.iter().filter(|a| a["subtype"][0]["code"] == "transaction").collect();
    assert_eq!(tx.len(), 1, "{audits:?}");
    assert_eq!(tx[0]["entity"].as_array().map(Vec::len), Some(6), "{}", tx[0]);
    assert_eq!(audits.iter().filter(|a| a["subtype"][0]["code"] == "create").count(), 6);

    // A conditional create that finds its patient links to them: the
    // Observation naming the entry lands in the existing record.
    let mrn = stored(format!("/fhir/Patient/{patient}")).await["identifier"][0].clone();
    let condition = format!("identifier={}|{}", mrn["system"].as_str().unwrap(), mrn["value"].as_str().unwrap());
    let again = "urn:uuid:0f0c3a4e-8a2b-4a57-9b55-3f4b8e9a2000";
    let mut obs = observation("placeholder", "718-7");
    obs["subject"]["reference"] = json!(again);
    let patient_again = stored(format!("/fhir/Patient/{patient}")).await;
    let r = h
        .call(
            "POST",
            "/fhir",
            Some(&t),
            &[],
            Some(&transaction(vec![
                json!({"fullUrl": again, "resource": canary_patient(&unique_tag()),
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": condition}}),
                linked("urn:uuid:0f0c3a4e-8a2b-4a57-9b55-3f4b8e9a2001", "Observation", obs),
            ])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_eq!(statuses(&out), ["200 OK", "201 Created"]);
    assert_eq!(out["entry"][0]["resource"], patient_again, "the patient found, unchanged");
    assert_eq!(out["entry"][1]["resource"]["subject"]["reference"], format!("Patient/{patient}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_transaction_stores_nothing_and_names_the_entry() {
    let h = Harness::start().await;
    let admin = h.token("admin", "admin-tx-fail");
    let (npi, twice) = (unique_tag(), unique_tag());
    h.create_id(&admin, &practitioner(&npi)).await;
    h.create_id(&admin, &practitioner(&twice)).await;
    h.create_id(&admin, &practitioner(&twice)).await;
    let t = h.token("clinician", "dr-tx-fail");
    let own = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let before = records_dump(&h).await;

    let mut future_onset = first_visit(canary_patient(&unique_tag()), &npi, 2);
    future_onset[2]["resource"]["onsetDateTime"] = json!("2999-01-01");
    let cases: Vec<(Vec<Value>, u16, &str)> = vec![
        (future_onset, 422, "Bundle.entry[2].resource.onsetDateTime"),
        (first_visit(canary_patient(&unique_tag()), "no-such-npi", 1), 412, "Bundle.entry[3]"),
        (first_visit(canary_patient(&unique_tag()), &twice, 1), 412, "Bundle.entry[3]"),
        (
            vec![
                with_resource("POST", "Observation", observation(&own, "718-7")),
                request("DELETE", &format!("Patient/{own}")),
            ],
            403,
            "Bundle.entry[1]",
        ),
        (
            vec![request("DELETE", &format!("Observation/{own}")), request("DELETE", &format!("Observation/{own}"))],
            400,
            "Bundle.entry[1].request.url",
        ),
    ];
    for (entries, status, at) in cases {
        let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(entries))).await;
        assert_eq!(r.status, status, "{at}: {}", r.text());
        let outcome = r.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(outcome["issue"].as_array().unwrap().iter().any(|i| i["expression"][0] == at), "{at}: {outcome}");
    }
    assert_unchanged(&before, &records_dump(&h).await, "nothing of a failed transaction is stored");

    // A patient's token cannot reach another patient from inside a
    // transaction: that entry is refused as alone, and with it the whole.
    let registrar = h.token("registrar", "desk-tx");
    let other = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let me = h.token_with("patient", "tx-patient", &["patient/*.read", "patient/*.write"], Some(&own));
    let before = records_dump(&h).await;
    let r = h
        .call(
            "POST",
            "/fhir",
            Some(&me),
            &[],
            Some(&transaction(vec![
                with_resource("POST", "Observation", observation(&own, "718-7")),
                with_resource("POST", "Observation", observation(&other, "718-7")),
            ])),
        )
        .await;
    assert!(matches!(r.status, 403 | 404), "{}", r.text());
    assert_unchanged(&before, &records_dump(&h).await, "not even the patient's own entry");

    // Refusals are audited: the transaction, and the entry that failed it.
    let audits = h.audit_events_of("dr-tx-fail").await;
    let failed = |code: &str| audits.iter().filter(|a| a["subtype"][0]["code"] == code && a["outcome"] != "0").count();
    assert_eq!(failed("transaction"), 5, "{audits:?}");
    assert!(failed("create") >= 1 && failed("delete") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_transactions_updating_one_version_exactly_one_wins() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-tx-race");
    // With one create, each fits one DynamoDB transaction; with twenty, each
    // goes through the journal, its update committing with its header.
    for creates in [1, 20] {
        let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
        let obs = h.create_id(&t, &observation(&patient, "2339-0")).await;
        let update = |status: &str| {
            let mut o = observation(&patient, "2339-0");
            o["id"] = json!(obs);
            o["status"] = json!(status);
            let mut entries = vec![json!({"resource": o,
                "request": {"method": "PUT", "url": format!("Observation/{obs}"), "ifMatch": "W/\"1\""}})];
            entries.extend((0..creates).map(|_| with_resource("POST", "Observation", observation(&patient, "718-7"))));
            transaction(entries)
        };
        let (a, b) = (update("amended"), update("corrected"));
        let (ra, rb) = tokio::join!(
            h.call("POST", "/fhir", Some(&t), &[], Some(&a)),
            h.call("POST", "/fhir", Some(&t), &[], Some(&b))
        );
        let mut outcome = [ra.status, rb.status];
        outcome.sort();
        assert!(outcome == [200, 409] || outcome == [200, 412], "{creates}: {outcome:?}: {} {}", ra.text(), rb.text());
        let current = h.get(&format!("/fhir/Observation/{obs}"), &t).await.json();
        assert_eq!(current["meta"]["versionId"], "2");
        let winner = if ra.status == 200 { "amended" } else { "corrected" };
        assert_eq!(current["status"], winner);
        let created = h.get(&format!("/fhir/Observation?patient={patient}&code=718-7&_count=1"), &t).await.json();
        assert_eq!(created["total"], creates, "the loser's creates are not stored");
    }
    let open = h.scan(&h.table("RecordsTable")).await;
    assert!(open.iter().all(|i| !i.contains_key("tx")), "the loser's prepared creates are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_changes_any_number_of_resources_at_once() {
    let h = Harness::start().await;
    let t = h.token("admin", "admin-tx-changes");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let (updates, deletes) = (70, 20);
    let creates = (0..updates + deletes).map(|_| with_resource("POST", "Observation", observation(&patient, "2339-0")));
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(creates.collect()))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ids: Vec<String> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();

    // Far more changes than one DynamoDB transaction holds (each update is
    // four items: current, version, index entries), with creates beside them.
    let mut entries: Vec<Value> = ids[..updates]
        .iter()
        .map(|id| {
            let mut o = observation(&patient, "2339-0");
            o["id"] = json!(id);
            o["status"] = json!("amended");
            json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/{id}"), "ifMatch": "W/\"1\""}})
        })
        .collect();
    entries.extend(ids[updates..].iter().map(|id| request("DELETE", &format!("Observation/{id}"))));
    entries.extend((0..10).map(|_| with_resource("POST", "Observation", observation(&patient, "718-7"))));
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(entries))).await;
    assert_eq!(r.status, 200, "{}", &r.text()[..r.text().len().min(2000)]);
    let out = r.json();
    assert_valid("transaction-response", &out);
    let statuses = statuses(&out);
    assert!(statuses[..updates].iter().all(|s| s == "200 OK"), "{statuses:?}");
    assert!(statuses[updates..updates + deletes].iter().all(|s| s == "204 No Content"), "{statuses:?}");

    for id in &ids[..updates] {
        let o = h.get(&format!("/fhir/Observation/{id}"), &t).await.json();
        assert_eq!((o["status"].as_str(), o["meta"]["versionId"].as_str()), (Some("amended"), Some("2")), "{id}");
    }
    for id in &ids[updates..] {
        assert_eq!(h.get(&format!("/fhir/Observation/{id}"), &t).await.status, 410, "{id}");
    }
    let search = |code: &str| format!("/fhir/Observation?patient={patient}&code={code}&_count=1");
    assert_eq!(h.get(&search("2339-0"), &t).await.json()["total"], updates);
    assert_eq!(h.get(&search("718-7"), &t).await.json()["total"], 10);
    let history = h.get(&format!("/fhir/Observation/{}/_history", ids[0]), &t).await.json();
    assert_eq!(history["total"], 2);

    // Nothing is held once it is finished: a plain update goes through.
    let items = h.scan(&h.table("RecordsTable")).await;
    assert!(items.iter().all(|i| !i.contains_key("tx") && !i.contains_key("pend")), "an item still held");
    let mut o = observation(&patient, "2339-0");
    o["id"] = json!(ids[0]);
    o["status"] = json!("corrected");
    let r = h
        .call(
            "PUT",
            &format!("/fhir/Observation/{}", ids[0]),
            Some(&t),
            &[("if-match", "W/\"2\"")],
            Some(&o.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let audits = h.audit_events_of("admin-tx-changes").await;
    let count = |code: &str| audits.iter().filter(|a| a["subtype"][0]["code"] == code).count();
    assert_eq!((count("update"), count("delete"), count("transaction")), (updates + 1, deletes, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_transaction_refuses_a_change_too_large_to_hold() {
    let h = Harness::start().await;
    let t = h.token("admin", "admin-tx-large");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let large = |status: &str| {
        let mut o = observation(&patient, "2339-0");
        o["status"] = json!(status);
        // Text that does not compress: the sealed item is as large.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let text: String = (0..210 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        o["note"] = json!([{"text": text}]);
        o
    };
    let id = h.create_id(&t, &large("final")).await;
    let mut replacement = large("amended");
    replacement["id"] = json!(id);
    let mut entries =
        vec![json!({"resource": replacement, "request": {"method": "PUT", "url": format!("Observation/{id}")}})];
    entries.extend((0..40).map(|_| with_resource("POST", "Observation", observation(&patient, "718-7"))));
    let before = records_dump(&h).await;
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(entries))).await;
    assert_eq!(r.status, 413, "{}", &r.text()[..r.text().len().min(400)]);
    assert_unchanged(&before, &records_dump(&h).await, "nothing of it is stored");
}

/// A patient's Synthea Bundle as the generator wrote it (the smallest of
/// the cohort's), cut to at least `size` entries that link only among
/// themselves (links point forward and back), leaving out what R4
/// refuses, with whatever links to it.
fn synthea_transaction(size: usize) -> Vec<Value> {
    use std::collections::{HashMap, HashSet};
    let file = medrec_e2e::cohort::files()
        .into_iter()
        .min_by_key(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(u64::MAX))
        .expect("a cohort file");
    let all = medrec_e2e::cohort::entries(&file);
    let url = |e: &Value| e["fullUrl"].as_str().unwrap().to_owned();
    let types: HashMap<&str, &str> =
        all.iter().map(|e| (e["fullUrl"].as_str().unwrap(), e["resource"]["resourceType"].as_str().unwrap())).collect();
    let links: HashMap<String, Vec<String>> = all
        .iter()
        .map(|e| {
            let mut l = vec![];
            medrec_e2e::cohort::links(&e["resource"], &mut l);
            (url(e), l)
        })
        .collect();
    let mut sendable: HashSet<String> =
        all.iter().filter(|e| !medrec_e2e::cohort::invalid_in_r4(&e["resource"], &types)).map(url).collect();
    loop {
        let before = sendable.len();
        sendable = sendable.iter().filter(|u| links[*u].iter().all(|l| sendable.contains(l))).cloned().collect();
        if sendable.len() == before {
            break;
        }
    }
    // Entries in the Bundle's order, each with everything it links to, a
    // few notes first (the generator writes them last).
    let mut chosen: HashSet<String> = HashSet::new();
    let notes = all.iter().filter(|e| e["resource"]["resourceType"] == "DocumentReference").take(5);
    for e in notes.chain(&all) {
        if chosen.len() >= size {
            break;
        }
        let mut stack = vec![url(e)];
        while let Some(u) = stack.pop() {
            if sendable.contains(&u) && chosen.insert(u.clone()) {
                stack.extend(links[&u].iter().cloned());
            }
        }
    }
    assert!(chosen.len() >= size, "the cohort's smallest Bundle has {size} entries to send");
    all.into_iter().filter(|e| chosen.contains(&url(e))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthea_patient_bundle_commits_whole_beyond_one_dynamodb_transaction() {
    let h = Harness::start().await;
    let admin = h.token("admin", "loader-tx");
    let entries = synthea_transaction(240);
    let n = entries.len();
    let kinds: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
    assert!(kinds.len() >= 10 && kinds.contains("DocumentReference"), "{kinds:?}");
    let started = std::time::Instant::now();
    let r = h.call("POST", "/fhir", Some(&admin), &[], Some(&transaction(entries.clone()))).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", &r.text()[..r.text().len().min(2000)]);
    println!("a {}-entry transaction of {} types committed in {took:?}", entries.len(), kinds.len());
    let out = r.json();
    assert!(statuses(&out).iter().all(|s| s == "201 Created"), "{:?}", statuses(&out));

    // Every link is the server's id, and every resource reads back as sent.
    let mut documents = 0;
    let ids: std::collections::HashMap<String, String> = entries
        .iter()
        .zip(out["entry"].as_array().unwrap())
        .map(|(sent, got)| {
            let ty = sent["resource"]["resourceType"].as_str().unwrap();
            (sent["fullUrl"].as_str().unwrap().to_owned(), format!("{ty}/{}", got["resource"]["id"].as_str().unwrap()))
        })
        .collect();
    for (i, sent) in entries.iter().enumerate() {
        let path = &ids[sent["fullUrl"].as_str().unwrap()];
        assert_eq!(out["entry"][i]["response"]["location"].as_str().map(|l| l.contains(path.as_str())), Some(true));
        let stored = h.get(&format!("/fhir/{path}"), &admin).await;
        assert_eq!(stored.status, 200, "{path}: {}", stored.text());
        let mut expected = sent["resource"].clone();
        medrec_edge::fhir::bundle_request::rewrite_links(&mut expected, &ids);
        let mut got = stored.json();
        for r in [&mut expected, &mut got] {
            let m = r.as_object_mut().unwrap();
            m.remove("id");
            m.remove("meta");
        }
        // A document's bytes are sealed apart, its Binary serving them as sent.
        let data = medrec_e2e::cohort::attachments_apart(&mut expected);
        for (data, url) in data.iter().zip(medrec_e2e::cohort::attachments_apart(&mut got)) {
            let bytes = h.call("GET", &format!("/fhir/{url}"), Some(&admin), &[("accept", "*/*")], None).await;
            assert_eq!(bytes.status, 200, "{url}");
            assert_eq!(B64.encode(bytes.body.as_ref()), *data, "{url} holds the bytes sent");
            documents += 1;
        }
        assert_eq!(got, expected, "{path} reads back as sent, its links resolved");
    }
    assert!(documents > 0);

    // Nothing of the journal is left, and nothing stays marked.
    let items = h.scan(&h.table("RecordsTable")).await;
    assert!(items.iter().all(|i| !i.contains_key("tx")), "an item still marked");
    let journal: Vec<_> = items.iter().filter(|i| i["pk"].as_s().is_ok_and(|p| p.starts_with("TX#"))).collect();
    assert!(journal.is_empty(), "{journal:?}");
    let headers: Vec<_> = items.iter().filter(|i| i["pk"].as_s().is_ok_and(|p| p == "TX")).collect();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0]["state"].as_s().unwrap(), "committed");

    // One audit record per entry, and the transaction's naming every change.
    let audits = h.audit_events_of("loader-tx").await;
    let count = |code: &str| audits.iter().filter(|a| a["subtype"][0]["code"] == code).count();
    assert_eq!((count("create"), count("transaction")), (n, 1));
}

/// A clinical note with its text inline, about the patient `subject`.
fn note(subject: &str, text: &str) -> Value {
    json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": subject},
        "type": {"coding": [{"system": "http://loinc.org", "code": "34117-2"}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": B64.encode(text)}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactions_documents_are_stored_with_it_or_not_at_all() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-tx-documents");
    let p = "urn:uuid:5b1e2c3d-0000-4000-8000-000000000001";
    let d = "urn:uuid:5b1e2c3d-0000-4000-8000-000000000002";
    let text = format!("History and physical {}", unique_tag());
    let binary = json!({"resourceType": "Binary", "contentType": "text/plain",
        "securityContext": {"reference": d}, "data": B64.encode("a scanned consent form")});

    // Committed: the note, its bytes, and a Binary whose context is the note.
    let entries = vec![
        linked(p, "Patient", canary_patient(&unique_tag())),
        linked(d, "DocumentReference", note(p, &text)),
        with_resource("POST", "Binary", binary.clone()),
    ];
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(entries))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_valid("transaction-response", &out);
    assert_eq!(statuses(&out), ["201 Created"; 3]);
    let patient = out["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    let document = out["entry"][1]["resource"].clone();
    assert_eq!(document["subject"]["reference"], format!("Patient/{patient}"));
    let url = document["content"][0]["attachment"]["url"].as_str().unwrap();
    let bytes = h.call("GET", &format!("/fhir/{url}"), Some(&t), &[("accept", "*/*")], None).await;
    assert_eq!((bytes.status, bytes.body.as_ref()), (200, text.as_bytes()));
    let stored = &out["entry"][2]["resource"];
    assert_eq!(
        stored["securityContext"]["reference"],
        format!("DocumentReference/{}", document["id"].as_str().unwrap())
    );
    assert_eq!(h.object_keys("DocumentsBucket", &format!("{patient}/")).await.len(), 2);

    // A batch reads the Binary as FHIR JSON, as an entry holds a resource.
    let binary_id = stored["id"].as_str().unwrap();
    let r = h
        .call("POST", "/fhir", Some(&t), &[], Some(&batch(vec![request("GET", &format!("Binary/{binary_id}"))])))
        .await;
    assert_eq!(r.json()["entry"][0]["resource"]["data"], binary["data"], "{}", r.text());

    // Failed: neither the records nor the bytes already sealed for them stay.
    let objects = h.object_keys("DocumentsBucket", "").await;
    let before = records_dump(&h).await;
    let late = json!({"resourceType": "Condition", "subject": {"reference": p}, "onsetDateTime": "2999-01-01",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}});
    let entries = vec![
        linked(p, "Patient", canary_patient(&unique_tag())),
        linked(d, "DocumentReference", note(p, "a note that is never stored")),
        with_resource("POST", "Binary", binary),
        with_resource("POST", "Condition", late),
    ];
    let r = h.call("POST", "/fhir", Some(&t), &[], Some(&transaction(entries))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("Bundle.entry[3].resource.onsetDateTime"), "{}", r.text());
    assert_unchanged(&before, &records_dump(&h).await, "nothing of a failed transaction is stored");
    assert_eq!(h.object_keys("DocumentsBucket", "").await, objects, "no sealed object of it is left");

    // Content promised for a later upload cannot join a transaction.
    let mut promised = note(&format!("Patient/{patient}"), "");
    promised["content"][0]["attachment"] = json!({"contentType": "application/pdf", "size": 1000,
        "extension": [{"url": medrec_edge::documents::SHA256_EXTENSION, "valueString": B64.encode([0u8; 32])}]});
    let r = h
        .call(
            "POST",
            "/fhir",
            Some(&t),
            &[],
            Some(&transaction(vec![with_resource("POST", "DocumentReference", promised)])),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("Bundle.entry[0].resource.content"), "{}", r.text());
    assert_unchanged(&before, &records_dump(&h).await, "nor of a promised upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_patches_and_updates_and_deletes_by_condition() {
    let h = Harness::start().await;
    let admin = h.token("admin", "admin-tx-conditional");
    let patient = h.create_id(&admin, &canary_patient(&unique_tag())).await;
    let system = format!("urn:medrec:test-lab-{}", unique_tag());
    let with_identifier = |value: &str| {
        let mut o = observation(&patient, "2339-0");
        o["identifier"] = json!([{"system": system, "value": value}]);
        o
    };
    let patched = h.create_id(&admin, &with_identifier("a")).await;
    let updated = h.create_id(&admin, &with_identifier("b")).await;
    let deleted = h.create_id(&admin, &with_identifier("c")).await;
    let patch = base64::engine::general_purpose::STANDARD
        .encode(json!([{"op": "replace", "path": "/status", "value": "amended"}]).to_string());
    let mut replacement = with_identifier("b");
    replacement["status"] = json!("corrected");
    let r = h
        .call(
            "POST",
            "/fhir",
            Some(&admin),
            &[],
            Some(&transaction(vec![
                json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                    "request": {"method": "PATCH", "url": format!("Observation/{patched}"), "ifMatch": "W/\"1\""}}),
                with_resource("PUT", &format!("Observation?patient={patient}&identifier={system}|b"), replacement),
                request("DELETE", &format!("Observation?patient={patient}&identifier={system}|c")),
            ])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_valid("transaction-response", &out);
    let s = statuses(&out);
    assert_eq!((s[0].as_str(), s[1].as_str()), ("200 OK", "200 OK"), "{s:?}");
    assert!(s[2].starts_with("20"), "{s:?}");
    let read = |id: String| {
        let (h, admin) = (&h, &admin);
        async move { h.get(&format!("/fhir/Observation/{id}"), admin).await }
    };
    let p = read(patched).await.json();
    assert_eq!((p["status"].as_str(), p["meta"]["versionId"].as_str()), (Some("amended"), Some("2")));
    let u = read(updated).await.json();
    assert_eq!((u["status"].as_str(), u["meta"]["versionId"].as_str()), (Some("corrected"), Some("2")));
    assert_eq!(read(deleted).await.status, 410);
}
