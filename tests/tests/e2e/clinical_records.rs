//! Immunization and Observation over HTTP (the clinical function): REST in a
//! patient's compartment, compartment rules, business rules located at their
//! element, profiles from meta.profile, and no plaintext PHI at rest.

use medrec_e2e::{api_path, canary_patient, next_path, unique_tag, Harness};
use serde_json::{json, Value};

fn immunization(patient: &str) -> Value {
    json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
        "patient": {"reference": format!("Patient/{patient}")},
        "occurrenceDateTime": "2026-11-20T09:00:00Z",
        "primarySource": true,
        "lotNumber": "LOT-CANARY-7731",
        "expirationDate": "2027-06-30",
        "protocolApplied": [{"doseNumberPositiveInt": 1, "seriesDosesPositiveInt": 2}]
    })
}

fn heart_rate(patient: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-23T08:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn expressions(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["expression"][0].as_str().unwrap_or("").to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_records_live_in_their_patients_compartment() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-clinical");
    let post = |path: &'static str, body: Value| {
        let (h, t) = (&h, &t);
        async move { h.call("POST", path, Some(t), &[], Some(&body.to_string())).await }
    };
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;

    // Create, read, vread, update with If-Match, history, delete.
    let created = post("/fhir/Immunization", immunization(&patient)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let imm = created.json();
    let id = imm["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["etag"], "W/\"1\"");
    assert!(created.headers["location"].to_str().unwrap().ends_with(&format!("/fhir/Immunization/{id}/_history/1")));
    let read = h.get(&format!("/fhir/Immunization/{id}"), &t).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["lotNumber"], "LOT-CANARY-7731");
    let mut changed = read.json();
    changed["lotNumber"] = json!("LOT-CANARY-7732");
    let path = format!("/fhir/Immunization/{id}");
    assert_eq!(
        h.call("PUT", &path, Some(&t), &[("if-match", "W/\"9\"")], Some(&changed.to_string())).await.status,
        412
    );
    let updated = h.call("PUT", &path, Some(&t), &[("if-match", "W/\"1\"")], Some(&changed.to_string())).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json()["meta"]["versionId"], "2");
    assert_eq!(h.get(&format!("{path}/_history/1"), &t).await.json()["lotNumber"], "LOT-CANARY-7731");
    let history = h.get(&format!("{path}/_history"), &t).await.json();
    assert_eq!(history["total"], 2);
    assert_eq!(history["entry"][0]["request"]["method"], "PUT");

    // An adverse reaction is an event of its own, in the patient's outbox stream.
    let mut reacted = immunization(&patient);
    reacted["reaction"] = json!([{"date": "2026-11-20T12:00:00Z", "reported": true}]);
    let reacted_id = post("/fhir/Immunization", reacted).await.json()["id"].as_str().unwrap().to_owned();
    let outbox = h.scan(&h.table("OutboxTable")).await;
    let event_of = |ty: &str| {
        outbox.iter().find(|i| {
            i.get("type").and_then(|t| t.as_s().ok()).is_some_and(|t| t == ty)
                && i.get("detail").and_then(|d| d.as_s().ok()).is_some_and(|d| d.contains(&reacted_id))
        })
    };
    assert!(event_of("ImmunizationRecorded").is_some());
    let reaction = event_of("ImmunizationReactionReported").expect("the reaction is reported");
    assert_eq!(reaction["pk"].as_s().unwrap(), &patient, "ordered with the patient's other events");

    // A record cannot move to another compartment.
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let mut moved = updated.json();
    moved["patient"]["reference"] = json!(format!("Patient/{other}"));
    let r = h.call("PUT", &path, Some(&t), &[("if-match", "W/\"2\"")], Some(&moved.to_string())).await;
    assert_eq!((r.status, expressions(&r.json())), (422, vec!["Immunization.patient".to_owned()]));

    // Patient-context tokens see their own compartment only; others get 404, not 403.
    let own = h.token_with("patient", "pat-own", &["patient/Immunization.rs"], Some(&patient));
    assert_eq!(h.get(&path, &own).await.status, 200);
    let stranger = h.token_with("patient", "pat-other", &["patient/Immunization.rs"], Some(&other));
    assert_eq!(h.get(&path, &stranger).await.status, 404);
    assert_eq!(
        h.call("POST", "/fhir/Immunization", Some(&own), &[], Some(&immunization(&patient).to_string())).await.status,
        403,
        "patients do not record immunizations"
    );

    // Observations, with the heart-rate profile from meta.profile.
    let obs = post("/fhir/Observation", heart_rate(&patient)).await;
    assert_eq!(obs.status, 201, "{:?}", obs.body);
    let obs_id = obs.json()["id"].as_str().unwrap().to_owned();
    let mut wrong_unit = heart_rate(&patient);
    wrong_unit["valueQuantity"]["code"] = json!("/h");
    let r = post("/fhir/Observation", wrong_unit).await;
    assert_eq!((r.status, expressions(&r.json())), (422, vec!["Observation.valueQuantity.code".to_owned()]));

    // Delete: 410 after, history kept.
    let obs_path = format!("/fhir/Observation/{obs_id}");
    assert_eq!(h.call("DELETE", &obs_path, Some(&t), &[], None).await.status, 403, "clinicians do not delete");
    let admin = h.token("admin", "admin-clinical");
    assert_eq!(h.call("DELETE", &obs_path, Some(&admin), &[], None).await.status, 204);
    assert_eq!(h.get(&obs_path, &t).await.status, 410);
    assert_eq!(h.get(&format!("{obs_path}/_history"), &t).await.json()["total"], 2);
    assert_eq!(h.get("/fhir/Observation/no-such-id", &t).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_business_rules_are_422_at_their_element() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-rules");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let post = |path: &'static str, body: Value| {
        let (h, t) = (&h, &t);
        async move { h.call("POST", path, Some(t), &[], Some(&body.to_string())).await }
    };
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "future occurrence",
            Box::new(|i| {
                i["occurrenceDateTime"] = json!("2098-01-01");
                i["expirationDate"] = json!("2099-01-01");
            }),
            "Immunization.occurrenceDateTime",
        ),
        (
            "before birth (1961-07-13)",
            Box::new(|i| i["occurrenceDateTime"] = json!("1960-05-01")),
            "Immunization.occurrenceDateTime",
        ),
        ("expired lot", Box::new(|i| i["expirationDate"] = json!("2026-01-01")), "Immunization.expirationDate"),
        (
            "dose beyond series",
            Box::new(|i| i["protocolApplied"][0]["doseNumberPositiveInt"] = json!(3)),
            "Immunization.protocolApplied[0].doseNumberPositiveInt",
        ),
        ("not-done without reason", Box::new(|i| i["status"] = json!("not-done")), "Immunization.statusReason"),
        ("no such patient", Box::new(|i| i["patient"]["reference"] = json!("Patient/nobody")), "Immunization.patient"),
        (
            "not a patient reference",
            Box::new(|i| i["patient"]["reference"] = json!("Group/g1")),
            "Immunization.patient",
        ),
        ("schema: bad status code", Box::new(|i| i["status"] = json!("done")), "Immunization.status"),
        (
            "malformed CVX code",
            Box::new(|i| i["vaccineCode"]["coding"][0]["code"] = json!("COVID-19")),
            "Immunization.vaccineCode.coding[0].code",
        ),
    ];
    for (what, mutate, at) in cases {
        let mut imm = immunization(&patient);
        mutate(&mut imm);
        let r = post("/fhir/Immunization", imm).await;
        assert_eq!((r.status, expressions(&r.json())), (422, vec![at.to_owned()]), "{what}");
    }
    let mut future = heart_rate(&patient);
    future["effectiveDateTime"] = json!("2099-01-01T00:00:00Z");
    let r = post("/fhir/Observation", future).await;
    assert_eq!((r.status, expressions(&r.json())), (422, vec!["Observation.effectiveDateTime".to_owned()]));

    // A deleted patient takes no new records.
    let gone = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let admin = h.token("admin", "admin-rules");
    assert_eq!(h.call("DELETE", &format!("/fhir/Patient/{gone}"), Some(&admin), &[], None).await.status, 204);
    let r = post("/fhir/Observation", heart_rate(&gone)).await;
    assert_eq!((r.status, expressions(&r.json())), (422, vec!["Observation.subject".to_owned()]));

    // Nothing half-written, and no clinical PHI in plaintext at rest.
    let dump = h.raw_dump().await;
    assert!(!dump.contains("LOT-CANARY-7731"), "lot numbers are encrypted");
    assert!(!dump.contains("8867-4"), "codes are encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_search_within_a_compartment() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-search");
    let a = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let b = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let post = |body: Value| {
        let (h, t) = (&h, &t);
        async move {
            let path = format!("/fhir/{}", body["resourceType"].as_str().unwrap());
            let r = h.call("POST", &path, Some(t), &[], Some(&body.to_string())).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
    };
    for (code, date, lot) in
        [("208", "2026-11-20", "LOT-A1"), ("140", "2025-10-01", "LOT-A2"), ("141", "2024-10-01", "LOT-A3")]
    {
        let mut imm = immunization(&a);
        imm["vaccineCode"]["coding"][0]["code"] = json!(code);
        imm["occurrenceDateTime"] = json!(date);
        imm["lotNumber"] = json!(lot);
        post(imm).await;
    }
    post(immunization(&b)).await;
    post(heart_rate(&a)).await;
    let mut slow = heart_rate(&a);
    slow["valueQuantity"]["value"] = json!(48);
    slow["effectiveDateTime"] = json!("2026-11-01T07:00:00Z");
    post(slow).await;

    let total = |path: String, token: String| {
        let h = &h;
        async move {
            let r = h.get(&path, &token).await;
            assert_eq!(r.status, 200, "{path}: {:?}", r.body);
            r.json()["total"].as_u64().unwrap()
        }
    };
    let q = |s: &str| format!("/fhir/Immunization?patient=Patient/{a}&{s}");
    assert_eq!(
        total(format!("/fhir/Immunization?patient={a}"), t.clone()).await,
        3,
        "B's record is not in A's compartment"
    );
    assert_eq!(total(q("vaccine-code=http://hl7.org/fhir/sid/cvx|208"), t.clone()).await, 1);
    assert_eq!(total(q("vaccine-code=208,140"), t.clone()).await, 2);
    assert_eq!(total(q("date=ge2025-01-01"), t.clone()).await, 2);
    assert_eq!(total(q("date=lt2025-01-01&status=completed"), t.clone()).await, 1);
    assert_eq!(total(q("lot-number=lot-a2"), t.clone()).await, 1);
    let o = |s: &str| format!("/fhir/Observation?patient={a}&{s}");
    assert_eq!(total(o("code=http://loinc.org|8867-4"), t.clone()).await, 2);
    assert_eq!(total(o("value-quantity=gt60"), t.clone()).await, 1);
    assert_eq!(total(o("category=vital-signs&date=2026-11-01"), t.clone()).await, 1);

    // Paging: cursors carry the query, bound to the caller; values never in the URL.
    let first =
        h.get(&format!("/fhir/Immunization?patient={a}&lot-number=LOT-A1,LOT-A2,LOT-A3&_count=2"), &t).await.json();
    assert_eq!(first["entry"].as_array().unwrap().len(), 2);
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!next.contains("LOT-A") && !next.contains(&a), "{next}");
    let path = api_path(&next);
    let second = h.get(&path, &t).await.json();
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    let thief = h.token("clinician", "dr-other");
    assert_eq!(h.get(&path, &thief).await.status, 400, "a cursor works for its caller only");

    // _sort by date, both ways, and paging keeps the order.
    let dates = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["occurrenceDateTime"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest = h.get(&q("_sort=-date"), &t).await.json();
    assert_eq!(dates(&newest), ["2026-11-20", "2025-10-01", "2024-10-01"]);
    let oldest = h.get(&q("_sort=date"), &t).await.json();
    assert_eq!(dates(&oldest), ["2024-10-01", "2025-10-01", "2026-11-20"]);
    let mut walked = vec![];
    let mut page = h.get(&q("_sort=-date&_count=1"), &t).await.json();
    loop {
        walked.extend(dates(&page));
        let Some(path) = next_path(&page) else { break };
        page = h.get(&path, &t).await.json();
    }
    assert_eq!(walked, ["2026-11-20", "2025-10-01", "2024-10-01"]);

    // POST _search, patient-context tokens, and refusals.
    let form = h
        .call(
            "POST",
            "/fhir/Immunization/_search",
            Some(&t),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&format!("patient={a}&vaccine-code=141")),
        )
        .await;
    assert_eq!(form.json()["total"], 1);
    let own = h.token_with("patient", "pat-a", &["patient/Immunization.rs"], Some(&a));
    assert_eq!(total("/fhir/Immunization".into(), own.clone()).await, 3, "the token's compartment");
    assert_eq!(h.get(&format!("/fhir/Immunization?patient={b}"), &own).await.status, 404);
    for (path, why) in [
        ("/fhir/Immunization".to_owned(), "no patient"),
        (q("color=red"), "unknown parameter"),
        (q("vaccine-code:exact=flu"), "modifier"),
        (q("date=yesterday"), "not a date"),
        (q("_sort=patient"), "unsupported sort"),
        (o("value-quantity=high"), "not a number"),
        ("/fhir/Immunization?patient=not%20an%20id".to_owned(), "bad patient"),
    ] {
        let r = h.get(&path, &t).await;
        assert_eq!(r.status, 400, "{why}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_pages_the_compartment_as_one_disclosure_per_page() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-everything");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    for body in [immunization(&patient), immunization(&patient), heart_rate(&patient), immunization(&other)] {
        let ty = body["resourceType"].as_str().unwrap().to_owned();
        assert_eq!(h.call("POST", &format!("/fhir/{ty}"), Some(&t), &[], Some(&body.to_string())).await.status, 201);
    }
    // A deleted record is neither disclosed nor counted.
    let gone = h.create_id(&t, &immunization(&patient)).await;
    let admin = h.token("admin", "admin-everything");
    let deleted = h.call("DELETE", &format!("/fhir/Immunization/{gone}"), Some(&admin), &[], None).await;
    assert_eq!(deleted.status, 204);
    let first = h.get(&format!("/fhir/Patient/{patient}/$everything?_count=3"), &t).await;
    assert_eq!(first.status, 200);
    let first = first.json();
    assert_eq!(first["total"], 4, "the patient and their three records, not the other patient's");
    assert_eq!(first["entry"][0]["resource"]["resourceType"], "Patient");
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = api_path(&next);
    let second = h.get(&path, &t).await.json();
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    let types: Vec<&str> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["entry"].as_array().unwrap())
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient", "Immunization", "Immunization", "Observation"]);
    // One audit record per page, naming every resource it disclosed.
    let audits: Vec<Value> = h
        .audit_events_of("dr-everything")
        .await
        .into_iter()
        .filter(|e| e["subtype"][0]["code"] == "operation")
        .collect();
    assert_eq!(audits.len(), 2);
    let named: usize = audits.iter().map(|a| a["entity"].as_array().map_or(0, Vec::len)).sum();
    assert!(named >= 4, "every disclosed resource is named: {audits:?}");

    // A token scoped to Patient only gets the Patient, not a 403.
    let narrow = h.token_with("clinician", "dr-narrow", &["user/Patient.rs"], None);
    let only = h.get(&format!("/fhir/Patient/{patient}/$everything"), &narrow).await.json();
    assert_eq!(only["total"], 1);
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}/$nothing"), &t).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_goes_through_the_update_rules() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-patch");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let created = h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&immunization(&patient).to_string())).await;
    let path = format!("/fhir/Immunization/{}", created.json()["id"].as_str().unwrap());
    let patch = |body: Value, if_match: &'static str| {
        let (h, t, path) = (&h, &t, &path);
        async move {
            let mut headers = vec![("content-type", "application/json-patch+json")];
            if !if_match.is_empty() {
                headers.push(("if-match", if_match));
            }
            h.call("PATCH", path, Some(t), &headers, Some(&body.to_string())).await
        }
    };
    let lot = json!([{"op": "test", "path": "/lotNumber", "value": "LOT-CANARY-7731"},
                     {"op": "replace", "path": "/lotNumber", "value": "LOT-CANARY-9000"}]);
    assert_eq!(patch(lot.clone(), "W/\"7\"").await.status, 412);
    let ok = patch(lot.clone(), "W/\"1\"").await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(
        (ok.json()["lotNumber"].clone(), ok.json()["meta"]["versionId"].clone()),
        (json!("LOT-CANARY-9000"), json!("2"))
    );
    // The same patch again: its test no longer holds.
    let r = patch(lot, "W/\"2\"").await;
    assert_eq!(r.status, 422);
    // The result is validated like any update, at the element.
    let r = patch(json!([{"op": "replace", "path": "/status", "value": "bogus"}]), "W/\"2\"").await;
    assert_eq!((r.status, expressions(&r.json())), (422, vec!["Immunization.status".to_owned()]));
    let r = patch(json!([{"op": "replace", "path": "/occurrenceDateTime", "value": "2099-01-01"}]), "W/\"2\"").await;
    assert_eq!(r.status, 422, "business rules too");
    // Identity and documents that are not patches are refused.
    assert_eq!(patch(json!([{"op": "replace", "path": "/id", "value": "other"}]), "W/\"2\"").await.status, 400);
    assert_eq!(patch(json!({"op": "add"}), "W/\"2\"").await.status, 400);
    let wrong_type = h.call("PATCH", &path, Some(&t), &[("if-match", "W/\"2\"")], Some("[]")).await;
    assert_eq!(wrong_type.status, 415);
    // Patient too, and nothing above left a version behind.
    let p = format!("/fhir/Patient/{patient}");
    let r = h
        .call(
            "PATCH",
            &p,
            Some(&t),
            &[("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")],
            Some(&json!([{"op": "add", "path": "/active", "value": true}]).to_string()),
        )
        .await;
    assert_eq!((r.status, r.json()["active"].clone()), (200, json!(true)));
    assert_eq!(h.get(&format!("{path}/_history"), &t).await.json()["total"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_and_conditional_create() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-prefer");
    let tag = unique_tag();
    let patient = canary_patient(&tag);
    let identifier = format!("identifier=urn:medrec:test-mrn|MRN{tag}");
    let create = |body: Value, headers: Vec<(&'static str, String)>| {
        let (h, t) = (&h, &t);
        async move {
            let path = format!("/fhir/{}", body["resourceType"].as_str().unwrap());
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.call("POST", &path, Some(t), &headers, Some(&body.to_string())).await
        }
    };

    // If-None-Exist: created once, then found; ambiguous is 412.
    let first = create(patient.clone(), vec![("if-none-exist", identifier.clone())]).await;
    assert_eq!(first.status, 201);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let again = create(patient.clone(), vec![("if-none-exist", identifier.clone())]).await;
    assert_eq!((again.status, again.json()["id"].clone()), (200, json!(id)));
    assert_eq!(create(patient.clone(), vec![]).await.status, 201, "unconditional create duplicates");
    assert_eq!(create(patient.clone(), vec![("if-none-exist", identifier)]).await.status, 412);
    assert_eq!(create(patient.clone(), vec![("if-none-exist", "color=red".into())]).await.status, 400);

    // Compartment records: the condition names the patient.
    let cond = format!("patient={id}&lot-number=LOT-CANARY-7731");
    assert_eq!(create(immunization(&id), vec![("if-none-exist", cond.clone())]).await.status, 201);
    assert_eq!(create(immunization(&id), vec![("if-none-exist", cond)]).await.status, 200);

    // Prefer: return=minimal and return=OperationOutcome on writes.
    let minimal = create(heart_rate(&id), vec![("prefer", "return=minimal".into())]).await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.body.is_empty());
    let location = minimal.headers["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/fhir/Observation/"));
    let obs_path = api_path(&location);
    let obs_path = obs_path.split("/_history").next().unwrap().to_owned();
    let r = h
        .call(
            "PATCH",
            &obs_path,
            Some(&t),
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", "W/\"1\""),
                ("prefer", "return=OperationOutcome"),
            ],
            Some(&json!([{"op": "replace", "path": "/status", "value": "amended"}]).to_string()),
        )
        .await;
    assert_eq!((r.status, r.json()["resourceType"].clone()), (200, json!("OperationOutcome")));
    let read = h.call("GET", &obs_path, Some(&t), &[("prefer", "return=minimal")], None).await;
    assert_eq!(read.json()["status"], "amended", "reads always return the resource");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_update_and_delete_act_on_a_single_match() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-conditional");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let by_lot = |lot: &str| format!("/fhir/Immunization?patient={patient}&lot-number={lot}");
    let put = |url: String, body: Value| {
        let (h, t) = (&h, &t);
        async move { h.call("PUT", &url, Some(t), &[], Some(&body.to_string())).await }
    };

    // No match: created. One match: updated in place (its version is the precondition).
    let mut imm = immunization(&patient);
    imm["lotNumber"] = json!("LOT-C1");
    let created = put(by_lot("LOT-C1"), imm.clone()).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json()["id"].as_str().unwrap().to_owned();
    imm["note"] = json!([{"text": "second look"}]);
    let updated = put(by_lot("LOT-C1"), imm.clone()).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json()["id"], id.as_str());
    assert_eq!(updated.json()["meta"]["versionId"], "2");
    let stale = h.call("PUT", &by_lot("LOT-C1"), Some(&t), &[("if-match", "W/\"1\"")], Some(&imm.to_string())).await;
    assert_eq!(stale.status, 412, "an If-Match still holds");
    let mut other_id = imm.clone();
    other_id["id"] = json!("0123456789abcdef0123456789abcdef");
    assert_eq!(put(by_lot("LOT-C1"), other_id).await.status, 400);

    // Several matches: 412 for update and delete; nothing changed.
    let mut twin = immunization(&patient);
    twin["lotNumber"] = json!("LOT-C1");
    assert_eq!(h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&twin.to_string())).await.status, 201);
    assert_eq!(put(by_lot("LOT-C1"), imm.clone()).await.status, 412);
    // (A clinician may not delete at all, whatever matches: 403 before any search.)
    assert_eq!(h.call("DELETE", &by_lot("LOT-C1"), Some(&t), &[], None).await.status, 403);
    let admin = h.token("admin", "ops-conditional");
    assert_eq!(h.call("DELETE", &by_lot("LOT-C1"), Some(&admin), &[], None).await.status, 412);
    assert_eq!(h.get(&format!("/fhir/Immunization/{id}"), &t).await.json()["meta"]["versionId"], "2");

    // A single match is deleted (by an admin: clinicians do not delete);
    // no match is a success with nothing done.
    let only = format!("/fhir/Immunization?patient={patient}&_id={id}");
    assert_eq!(h.call("DELETE", &only, Some(&t), &[], None).await.status, 403);
    assert_eq!(h.call("DELETE", &only, Some(&admin), &[], None).await.status, 204);
    assert_eq!(h.get(&format!("/fhir/Immunization/{id}"), &t).await.status, 410);
    assert_eq!(h.call("DELETE", &by_lot("LOT-NONE"), Some(&admin), &[], None).await.status, 204);
    // A conditional write needs a condition.
    assert_eq!(h.call("DELETE", "/fhir/Immunization", Some(&admin), &[], None).await.status, 400);
    assert_eq!(put(format!("/fhir/Immunization?_count=1&patient={patient}"), imm).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vital_sign_units_are_checked_and_searched_across_units() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-units");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let weight = |value: f64, code: &str| {
        json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-3"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": "2026-11-20T09:00:00Z",
            "valueQuantity": {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}
        })
    };
    let post = |body: Value| {
        let (h, t) = (&h, &t);
        async move { h.call("POST", "/fhir/Observation", Some(t), &[], Some(&body.to_string())).await }
    };
    assert_eq!(post(weight(160.0, "[lb_av]")).await.status, 201);
    assert_eq!(post(weight(65.0, "kg")).await.status, 201);
    let wrong = post(weight(160.0, "cm")).await;
    assert_eq!(wrong.status, 422);
    let issues = wrong.json()["issue"].clone();
    assert!(
        issues.as_array().unwrap().iter().any(|i| i["expression"][0] == "Observation.valueQuantity.code"),
        "{issues}"
    );
    // 160 [lb_av] is 72.6 kg: found by a search in kilograms, 65 kg is not.
    let found = h
        .get(&format!("/fhir/Observation?patient={patient}&value-quantity=gt70|http://unitsofmeasure.org|kg"), &t)
        .await;
    let body = found.json();
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["entry"][0]["resource"]["valueQuantity"]["code"], "[lb_av]");

    // A laboratory result's reference range must run low to high in the value's dimension.
    let q = |v: f64, code: &str| json!({"value": v, "system": "http://unitsofmeasure.org", "code": code, "unit": code});
    let glucose = |range: Value| {
        json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
            "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
            "valueQuantity": q(7.2, "mmol/L"),
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}],
            "referenceRange": [range]
        })
    };
    assert_eq!(post(glucose(json!({"low": q(3.9, "mmol/L"), "high": q(5.6, "mmol/L")}))).await.status, 201);
    for range in [
        json!({"low": q(5.6, "mmol/L"), "high": q(3.9, "mmol/L")}),
        json!({"low": q(70.0, "mg/dL"), "high": q(100.0, "mg/dL")}),
    ] {
        let r = post(glucose(range)).await;
        assert_eq!(r.status, 422);
        assert_eq!(expressions(&r.json()), ["Observation.referenceRange[0]"]);
    }
}
