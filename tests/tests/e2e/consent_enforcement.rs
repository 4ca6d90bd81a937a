//! Consent end to end: a patient's FHIR Consent resources decide, at access
//! time and in every function, who may read their records; a denial is a
//! 403 OperationOutcome naming consent, audited; break-glass overrides it
//! and raises an alert; revocation applies to the next request; status
//! changes raise ConsentGranted / ConsentRevoked.

use medrec_e2e::{canary_patient, consent, unique_tag, Harness};
use medrec_edge::aws::schema;
use serde_json::{json, Value};

fn observation(patient: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-23T08:30:00Z",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_decides_reads_in_every_function() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let dr1 = h.token("clinician", "dr-1");
    let dr2 = h.token("clinician", "dr-2");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let obs = h.call("POST", "/fhir/Observation", Some(&dr1), &[], Some(&observation(&patient).to_string())).await;
    let obs_path = format!("/fhir/Observation/{}", obs.json()["id"].as_str().unwrap());
    let patient_path = format!("/fhir/Patient/{patient}");
    let search = format!("/fhir/Observation?patient={patient}");

    // Opt-out default: no consent, everyone with the role reads.
    assert_eq!(h.get(&obs_path, &dr2).await.status, 200);

    // The patient denies dr-2 (by actor) and research (by purpose).
    let deny = consent(
        &patient,
        json!({"type": "permit", "provision": [
            {"type": "deny", "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-2"}}]},
            {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}
        ]}),
    );
    let created = h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&deny.to_string())).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let consent_id = created.json()["id"].as_str().unwrap().to_owned();

    for path in [&obs_path, &patient_path, &search, &format!("{obs_path}/_history")] {
        let r = h.get(path, &dr2).await;
        assert_eq!(r.status, 403, "{path}");
        let text = r.json().to_string();
        assert!(text.contains("consent") && text.contains(&consent_id), "{path}: {text}");
        assert_eq!(h.get(path, &dr1).await.status, 200, "{path}: dr-1 is not denied");
    }
    // Search results leave the patient out for dr-2: not in the entries, not in the total.
    let by_id = format!("/fhir/Patient?_id={patient}");
    assert_eq!(h.get(&by_id, &dr1).await.json()["total"], 1);
    let hidden = h.get(&by_id, &dr2).await;
    assert_eq!((hidden.status, hidden.json()["total"].clone()), (200, json!(0)));
    let research = h.call("GET", &obs_path, Some(&dr1), &[("x-purpose-of-use", "HRESCH")], None).await;
    assert_eq!(research.status, 403, "research use is denied");

    // The denial is audited, as a failure.
    let denied = h.audit_events_of("dr-2").await;
    assert!(denied.iter().any(|e| e["outcome"] == "4"), "denied attempts are audited");

    // Break-glass overrides, is audited with its reason code, and alerts.
    let glass = h
        .call(
            "GET",
            &obs_path,
            Some(&dr2),
            &[
                ("x-purpose-of-use", "ETREAT"),
                ("x-break-glass-reason-code", "patient-unconscious"),
                ("x-break-glass-reason", "unconscious patient in ED"),
            ],
            None,
        )
        .await;
    assert_eq!(glass.status, 200);
    let outbox: Vec<String> = h
        .scan(&h.table("OutboxTable"))
        .await
        .iter()
        .filter_map(|i| i.get("type").and_then(|t| t.as_s().ok()).cloned())
        .collect();
    assert!(outbox.iter().any(|t| t == "BreakGlassUsed"));
    assert!(outbox.iter().any(|t| t == "ConsentGranted"), "{outbox:?}");

    // The patient reads their own record whatever their consent says.
    let own = h.token_with("patient", "pat", &["patient/Observation.rs", "patient/Consent.cru"], Some(&patient));
    assert_eq!(h.get(&obs_path, &own).await.status, 200);

    // Revocation by the patient applies to the very next request.
    let mut current = h.get(&format!("/fhir/Consent/{consent_id}"), &own).await.json();
    current["status"] = json!("inactive");
    let revoked = h
        .call(
            "PUT",
            &format!("/fhir/Consent/{consent_id}"),
            Some(&own),
            &[("if-match", "W/\"1\"")],
            Some(&current.to_string()),
        )
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(h.get(&obs_path, &dr2).await.status, 200);
    let types: Vec<String> = h
        .scan(&h.table("OutboxTable"))
        .await
        .iter()
        .filter_map(|i| i.get("type").and_then(|t| t.as_s().ok()).cloned())
        .collect();
    assert!(types.iter().any(|t| t == "ConsentRevoked"), "{types:?}");

    // A token's SMART fhirUser is who consent provisions name.
    let deny_gp = consent(
        &patient,
        json!({"type": "permit", "provision": [{"type": "deny", "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/gp-77"}}]}]}),
    );
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&deny_gp.to_string())).await.status, 201);
    let as_gp = h.token_as("clinician", "user-123", "https://idp.example/fhir/Practitioner/gp-77");
    assert_eq!(h.get(&obs_path, &as_gp).await.status, 403);
    assert_eq!(h.get(&obs_path, &h.token("clinician", "user-123")).await.status, 200, "another practitioner");
    assert_eq!(
        h.get(&obs_path, &h.token_without_fhir_user("clinician", "user-123")).await.status,
        403,
        "a login that does not say who it is cannot escape a refusal naming a person"
    );

    // Consents are searchable in the compartment; another patient cannot touch them.
    assert_eq!(h.get(&format!("/fhir/Consent?patient={patient}&status=inactive"), &dr1).await.json()["total"], 1);
    let other = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let stranger = h.token_with("patient", "pat-2", &["patient/Consent.cru"], Some(&other));
    assert_eq!(h.get(&format!("/fhir/Consent/{consent_id}"), &stranger).await.status, 404);
    let forged = consent(&patient, json!({"type": "deny"}));
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&stranger), &[], Some(&forged.to_string())).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_ending_soon_are_noticed_once() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let admin = h.token("admin", "ops");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let in_days = |d: i64| {
        let t = time::OffsetDateTime::now_utc() + time::Duration::days(d);
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    };
    let ending = |d: i64, status: &str| {
        let mut c = consent(&patient, json!({"type": "permit", "period": {"start": "2026-01-01", "end": in_days(d)}}));
        c["status"] = json!(status);
        c
    };
    let create = |c: Value| {
        let (h, t) = (&h, &registrar);
        async move {
            let r = h.call("POST", "/fhir/Consent", Some(t), &[], Some(&c.to_string())).await;
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            r.json()
        }
    };
    let soon = create(ending(10, "active")).await;
    let soon_id = soon["id"].as_str().unwrap().to_owned();
    create(ending(60, "active")).await;
    create(ending(5, "inactive")).await;
    let deleted = create(ending(3, "active")).await;
    let path = format!("/fhir/Consent/{}", deleted["id"].as_str().unwrap());
    assert_eq!(h.call("DELETE", &path, Some(&admin), &[], None).await.status, 204);

    let settings = h.settings("ConsentExpiryFunction", &[("MEDREC_CONSENT_NOTICE_DAYS", "30")]);
    let app = std::sync::Arc::new(medrec_consent_expiry::boot(&settings).await.unwrap());
    let run = || {
        let app = app.clone();
        async move {
            let event = lambda_http::LambdaEvent::new(json!({"source": "aws.events"}), lambda_http::Context::default());
            app.handle(event).await.unwrap()["notices"].as_u64().unwrap()
        }
    };
    let notices = || async {
        h.scan(&h.table("OutboxTable"))
            .await
            .into_iter()
            .filter(|i| i["type"].as_s().is_ok_and(|t| t == "ConsentExpiring"))
            .map(|i| serde_json::from_str::<Value>(i["detail"].as_s().unwrap()).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run().await, 1, "only the active consent ending within 30 days");
    assert_eq!(run().await, 0, "a rerun repeats nothing");
    let sent = notices().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], soon_id.as_str());
    assert_eq!(sent[0]["versionId"], "1");

    // Moving the end beyond the window removes it from the index.
    let mut later = soon.clone();
    later["provision"]["period"]["end"] = json!(in_days(90));
    let r = h
        .call(
            "PUT",
            &format!("/fhir/Consent/{soon_id}"),
            Some(&registrar),
            &[("if-match", "W/\"1\"")],
            Some(&later.to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(run().await, 0);
    // The notice carries ids only, and the record behind it holds no date.
    assert!(sent[0]
        .as_object()
        .unwrap()
        .keys()
        .all(|k| ["resourceType", "id", "versionId", "withinDays"].contains(&k.as_str())));
    let index_items = h
        .scan(&h.table("RecordsTable"))
        .await
        .into_iter()
        .filter(|i| i["sk"].as_s().is_ok_and(|s| s.starts_with(&format!("{}Consent#", schema::index_prefix(None)))))
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>();
    assert!(!index_items.is_empty());
    assert!(index_items.iter().all(|i| !i.contains(&in_days(90))), "dates are blind-indexed");
}
