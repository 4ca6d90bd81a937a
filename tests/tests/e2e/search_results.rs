//! Result parameters on every search, over HTTP: `_summary`, `_elements`,
//! `_total`, `_include` and `_revinclude`, including across pages.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use serde_json::{json, Value};

fn entries<'a>(b: &'a Value, mode: &str) -> Vec<&'a Value> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| &e["resource"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_parameters_shape_every_search() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-results");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    for lot in ["LOT-A", "LOT-B"] {
        let imm = json!({
            "resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
            "patient": {"reference": format!("Patient/{patient}")},
            "occurrenceDateTime": "2026-11-20T09:00:00Z", "primarySource": true, "lotNumber": lot
        });
        assert_eq!(h.call("POST", "/fhir/Immunization", Some(&t), &[], Some(&imm.to_string())).await.status, 201);
    }
    let obs = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    });
    assert_eq!(h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&obs.to_string())).await.status, 201);
    let search = |q: String| {
        let (h, t) = (&h, &t);
        async move { h.get(&q, t).await }
    };
    let base = format!("/fhir/Immunization?patient={patient}");

    let count = search(format!("{base}&_summary=count")).await.json();
    assert_eq!(count["total"], 2);
    assert!(count["entry"].as_array().is_none_or(|e| e.is_empty()));

    let elements = search(format!("{base}&_elements=lotNumber")).await.json();
    for r in entries(&elements, "match") {
        assert!(r.get("lotNumber").is_some() && r.get("primarySource").is_none(), "{r}");
        assert!(r.get("vaccineCode").is_some(), "mandatory elements stay");
        assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    }
    let summary = search(format!("{base}&_summary=true")).await.json();
    for r in entries(&summary, "match") {
        assert!(r.get("status").is_some() && r.get("lotNumber").is_none(), "{r}");
        assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    }
    let untagged = search(base.clone()).await.json();
    assert!(entries(&untagged, "match").iter().all(|r| r["meta"].get("tag").is_none()));
    assert!(search(format!("{base}&_total=none")).await.json().get("total").is_none());

    // The subset travels with the paging link.
    let first = search(format!("{base}&_count=1&_elements=lotNumber")).await.json();
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("_elements=lotNumber"), "{next}");
    let second = h.client.send("GET", &next, &[("authorization", &format!("Bearer {t}"))], None).await.unwrap().json();
    let r = entries(&second, "match")[0];
    assert!(r.get("primarySource").is_none() && r.get("lotNumber").is_some());

    // _include follows the compartment reference; _revinclude comes back.
    let with_patient = search(format!("{base}&_include=Immunization:patient")).await.json();
    assert_eq!(entries(&with_patient, "match").len(), 2);
    let inc = entries(&with_patient, "include");
    assert_eq!(inc.len(), 1, "the patient once");
    assert_eq!(inc[0]["id"], patient.as_str());
    let rev =
        search(format!("/fhir/Patient?_id={patient}&_revinclude=Immunization:patient&_revinclude=Observation:subject"))
            .await
            .json();
    assert_eq!(entries(&rev, "match").len(), 1);
    let mut types: Vec<&str> = entries(&rev, "include").iter().map(|r| r["resourceType"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["Immunization", "Immunization", "Observation"]);

    // Each included read is its own audited disclosure.
    let reads = h
        .audit_events_of("dr-results")
        .await
        .into_iter()
        .filter(|e| {
            e["entity"].as_array().into_iter().flatten().any(|en| {
                en["what"]["reference"].as_str().is_some_and(|r| r.starts_with(&format!("Patient/{patient}")))
            })
        })
        .count();
    assert!(reads >= 2);

    for bad in [
        format!("{base}&_summary=maybe"),
        format!("{base}&_elements=nonsense"),
        format!("{base}&_summary=true&_elements=status"),
        format!("{base}&_include=Observation:subject"),
        format!("{base}&_include=Immunization:performer"),
        format!("{base}&_total=some"),
        format!("{base}&_revinclude=Immunization:patient"),
    ] {
        let r = search(bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
}
