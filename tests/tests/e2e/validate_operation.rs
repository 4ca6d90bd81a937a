//! `$validate` over HTTP (the validation function, every R4 type): an
//! OperationOutcome for valid and invalid input, the Parameters form,
//! instance level, profiles by parameter, query and meta.profile, unknown
//! profiles and types refused, nothing stored, and every call audited.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use serde_json::json;

fn issues(v: &serde_json::Value) -> Vec<(String, String)> {
    v["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["severity"].as_str().unwrap().to_owned(), i["expression"][0].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_operation() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-validate");
    let post = |path: &'static str, body: serde_json::Value| {
        let (h, t) = (&h, &t);
        async move { h.call("POST", path, Some(t), &[], Some(&body.to_string())).await }
    };

    let ok = post("/fhir/Patient/$validate", canary_patient(&unique_tag())).await;
    assert_eq!(ok.status, 200);
    assert_eq!(issues(&ok.json()), vec![("information".into(), "".into())]);

    let bad =
        post("/fhir/Patient/$validate", json!({"resourceType": "Patient", "gender": "x", "birthDate": "1990-02-30"}))
            .await;
    assert_eq!(bad.status, 200, "the operation succeeded; the resource did not");
    let mut found = issues(&bad.json());
    found.sort();
    assert_eq!(found, vec![("error".into(), "Patient.birthDate".into()), ("error".into(), "Patient.gender".into())]);

    let wrapped = json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}, {"name": "resource", "resource": {"resourceType": "Patient", "active": "yes"}}]});
    assert_eq!(
        issues(&post("/fhir/Patient/$validate", wrapped).await.json()),
        vec![("error".into(), "Patient.active".into())]
    );

    let us_core = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient";
    let profile = json!({"resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": us_core}, {"name": "resource", "resource": {"resourceType": "Patient", "name": [{"family": "Doe"}]}}]});
    let mut found = issues(&post("/fhir/Patient/$validate", profile).await.json());
    found.sort();
    assert_eq!(
        found,
        vec![("error".into(), "Patient.gender".into()), ("error".into(), "Patient.identifier".into())],
        "US Core requires identifier and gender"
    );
    // A create declaring the profile is held to it (422), and nothing is stored.
    let declared = json!({"resourceType": "Patient", "meta": {"profile": [us_core]}, "name": [{"family": "Doe"}]});
    let refused = h.create(&t, &declared).await;
    assert_eq!(refused.status, 422);
    assert!(refused.json().to_string().contains("USCorePatientProfile"), "the outcome names the profile");
    let unknown = json!({"resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": "http://example.org/StructureDefinition/nope"}, {"name": "resource", "resource": {"resourceType": "Patient"}}]});
    assert_eq!(
        post("/fhir/Patient/$validate", unknown).await.status,
        400,
        "an unknown profile is refused, not ignored"
    );
    // No type-level operation but $validate: `$everything` is served on a
    // patient, not on the type (and is no record id).
    assert_eq!(post("/fhir/Patient/$everything", json!({"resourceType": "Patient"})).await.status, 404);
    // Other methods on an operation are 405 with what it takes, on the
    // generic routes and on Patient's own; an unknown operation is 404.
    for ty in ["Account", "Patient", "Observation"] {
        let body = json!({"resourceType": ty}).to_string();
        let r = h.call("PUT", &format!("/fhir/{ty}/$validate"), Some(&t), &[], Some(&body)).await;
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "PUT {ty}/$validate: {}", r.text());
    }
    let r = h.call("DELETE", "/fhir/Observation/$nothing", Some(&t), &[], None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    // Another type is a validation result (an error issue), like an id that
    // differs from the URL's; a body that is no R4 resource is a 400.
    let other = post("/fhir/Patient/$validate", json!({"resourceType": "Observation"})).await;
    assert_eq!(other.status, 200);
    assert!(other.json().to_string().contains("this endpoint validates Patient resources"));
    assert_eq!(post("/fhir/Patient/$validate", json!({"resourceType": "NotAType"})).await.status, 400);
    assert_eq!(post("/fhir/NotAType/$validate", json!({"resourceType": "NotAType"})).await.status, 404);

    // Any R4 type; the profile may also come in the query, or from meta.profile.
    let heart_rate = json!({
        "resourceType": "Observation", "status": "final",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2026-11-23T09:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let r = post("/fhir/Observation/$validate", heart_rate.clone()).await;
    assert_eq!(issues(&r.json()), vec![("information".into(), "".into())], "{:?}", r.body);
    let mut wrong_unit = heart_rate.clone();
    wrong_unit["valueQuantity"]["code"] = json!("/h");
    assert_eq!(
        issues(&post("/fhir/Observation/$validate", wrong_unit).await.json()),
        vec![("error".into(), "Observation.valueQuantity.code".into())]
    );
    // A heart-rate LOINC code implies the heart-rate profile (R4: SHALL), named or not.
    let mut unnamed = heart_rate.clone();
    unnamed.as_object_mut().unwrap().remove("meta");
    unnamed.as_object_mut().unwrap().remove("category");
    let found = issues(&post("/fhir/Observation/$validate", unnamed).await.json());
    assert!(found.contains(&("error".into(), "Observation.category".into())), "{found:?}");
    // A glucose result implies nothing, unless a profile is asked for.
    let mut no_profile = heart_rate.clone();
    no_profile.as_object_mut().unwrap().remove("meta");
    no_profile.as_object_mut().unwrap().remove("category");
    no_profile["code"]["coding"][0]["code"] = json!("2339-0");
    no_profile["valueQuantity"] =
        json!({"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"});
    assert_eq!(issues(&post("/fhir/Observation/$validate", no_profile.clone()).await.json())[0].0, "information");
    let queried = h
        .call(
            "POST",
            "/fhir/Observation/$validate?profile=http%3A%2F%2Fhl7.org%2Ffhir%2FStructureDefinition%2Fvitalsigns",
            Some(&t),
            &[],
            Some(&no_profile.to_string()),
        )
        .await;
    let found = issues(&queried.json());
    assert!(!found.is_empty(), "vitalsigns requires a vital-signs category");
    assert!(found.iter().all(|i| *i == ("error".into(), "Observation.category".into())), "{found:?}");

    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let mut current = h.get(&format!("/fhir/Patient/{id}"), &t).await.json();
    let path = format!("/fhir/Patient/{id}/$validate");
    assert_eq!(
        issues(&h.call("POST", &path, Some(&t), &[], Some(&current.to_string())).await.json())[0].0,
        "information"
    );
    current["id"] = json!("other");
    assert_eq!(
        issues(&h.call("POST", &path, Some(&t), &[], Some(&current.to_string())).await.json()),
        vec![("error".into(), "Patient.id".into())]
    );

    // A code outside an extensible binding is a warning: shown, not blocking.
    let local_status = json!({"resourceType": "Patient", "maritalStatus": {"coding": [{"system": "http://example.org/local", "code": "X"}]}});
    assert_eq!(
        issues(&post("/fhir/Patient/$validate", local_status.clone()).await.json()),
        vec![("warning".into(), "Patient.maritalStatus".into())]
    );
    assert_eq!(h.create(&t, &local_status).await.status, 201);

    let reader = h.token_with("clinician", "dr-readonly", &["user/Patient.rs"], None);
    assert_eq!(
        h.call("POST", "/fhir/Patient/$validate", Some(&reader), &[], Some(&canary_patient("x").to_string()))
            .await
            .status,
        403
    );
    assert_eq!(h.get("/fhir/Patient", &t).await.json()["total"], 2, "validation stores nothing (two creates)");
    let audited =
        h.audit_events_of("dr-validate").await.iter().filter(|e| e["subtype"][0]["code"] == "operation").count();
    assert_eq!(audited, 17);
}
