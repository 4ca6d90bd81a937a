//! What goes in comes out exactly, every answer is valid FHIR by medrec's
//! own validator, and the default calls of FHIR client libraries work:
//! updates without If-Match, `_count` beyond a page or zero, `_format`.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use medrec_edge::fhir::validator::model;
use medrec_infra::client::Reply;
use serde_json::{json, Value};

/// Decimals as a client sends them: trailing zeros, more digits than a
/// double holds, an exponent.
const DECIMALS: [&str; 4] = ["1.50", "3.6835042460380323", "100.000", "2.5e-3"];

fn observation(patient: &str) -> String {
    format!(
        r#"{{"resourceType": "Observation", "status": "final",
        "category": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}}]}}],
        "code": {{"coding": [{{"system": "http://loinc.org", "code": "2339-0"}}]}},
        "subject": {{"reference": "Patient/{patient}"}}, "effectiveDateTime": "2026-11-23T08:30:00Z",
        "valueQuantity": {{"value": {}, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
        "referenceRange": [{{"low": {{"value": {}, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
                             "high": {{"value": {}, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}}}],
        "component": [{{"code": {{"text": "ratio"}}, "valueQuantity": {{"value": {}}}}}]}}"#,
        DECIMALS[0], DECIMALS[1], DECIMALS[2], DECIMALS[3]
    )
}

/// Every answer medrec sends passes medrec's validator.
fn assert_valid(r: &Reply) {
    let v: Value = r.json();
    let errors: Vec<String> =
        model().validate(&v).into_iter().filter(|i| i.is_error()).map(|i| format!("{i:?}")).collect();
    assert!(errors.is_empty(), "{errors:?} in {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_come_back_exactly_as_sent() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-decimal");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let created = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&observation(&patient))).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/fhir/Observation/{id}");
    let answers = [
        created,
        h.get(&path, &t).await,
        h.get(&format!("{path}/_history/1"), &t).await,
        h.get(&format!("{path}/_history"), &t).await,
        h.get(&format!("/fhir/Observation?patient={patient}"), &t).await,
        h.get(&format!("/fhir/Patient/{patient}/$everything"), &t).await,
    ];
    for a in &answers {
        assert_eq!(a.status / 100, 2);
        for d in DECIMALS {
            assert!(a.text().contains(&format!(":{d}")), "{d} in {}", a.text());
        }
        assert_valid(a);
    }
    // A patch puts a decimal as sent, and its test compares decimal values
    // (RFC 6902: 1.5 is 1.50).
    let patch = r#"[{"op": "test", "path": "/valueQuantity/value", "value": 1.5},
                    {"op": "replace", "path": "/valueQuantity/value", "value": 2.500}]"#;
    let headers = [("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")];
    let patched = h.call("PATCH", &path, Some(&t), &headers, Some(patch)).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert!(patched.text().contains(r#""value":2.500"#));
    assert!(h.get(&path, &t).await.text().contains(r#""value":2.500"#));
    let wrong = r#"[{"op": "test", "path": "/valueQuantity/value", "value": 2.51}]"#;
    let headers = [("content-type", "application/json-patch+json"), ("if-match", "W/\"2\"")];
    assert_eq!(h.call("PATCH", &path, Some(&t), &headers, Some(wrong)).await.status, 422);
    // Search compares the value, not the text.
    let found = h.get(&format!("/fhir/Observation?patient={patient}&value-quantity=2.5"), &t).await.json();
    assert_eq!(found["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_and_reads_are_valid_fhir() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-bundles");
    let created = h.create(&t, &canary_patient(&unique_tag())).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = h.get(&format!("/fhir/Patient/{id}"), &t).await;
    // Last-Modified is meta.lastUpdated as an HTTP date.
    let updated = read.json()["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    assert_eq!(read.header("last-modified"), medrec_edge::fhir::http_date(&updated).as_deref());
    assert!(read.header("last-modified").unwrap().ends_with(" GMT"));
    let mut changed = read.json();
    changed["gender"] = json!("other");
    let put = h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[], Some(&changed.to_string())).await;
    assert_eq!(put.status, 200);
    let history = h.get(&format!("/fhir/Patient/{id}/_history"), &t).await;
    let entries = history.json()["entry"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert!(e["response"]["lastModified"].is_string(), "R4 names it lastModified: {e}");
        assert!(e["response"].get("lastUpdated").is_none());
    }
    let empty = h.get("/fhir/Patient?family=Nobodyhasthisname", &t).await;
    assert!(empty.json().get("entry").is_none(), "no empty arrays (ele-1)");
    let metadata = h.call("GET", "/fhir/metadata", None, &[], None).await;
    for answer in [&read, &put, &history, &empty, &metadata] {
        assert_valid(answer);
        assert!(!answer.text().contains("[]"), "no empty arrays: {}", answer.text());
    }
    // The configured base URL wins over the Host a caller sends, and an
    // instance builds the CapabilityStatement once and serves it again.
    let elsewhere = h.call("GET", "/fhir/metadata", None, &[("host", "fhir.example.org")], None).await;
    assert_eq!(elsewhere.json()["implementation"]["url"], metadata.json()["implementation"]["url"]);
    assert_eq!(elsewhere.body, metadata.body);
    // The CapabilityStatement says what the routes do.
    let patient_cap = metadata.json()["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert_eq!(patient_cap["conditionalCreate"], true);
    assert_eq!(patient_cap["conditionalUpdate"], true);
    assert_eq!(patient_cap["conditionalDelete"], "single");
    assert!(patient_cap["searchRevInclude"].as_array().unwrap().contains(&json!("Observation:subject")));
    let again = h
        .call("POST", "/fhir/Patient", Some(&t), &[("if-none-exist", &format!("_id={id}"))], Some(&changed.to_string()))
        .await;
    assert_eq!(again.status, 200, "a conditional create finds the match: {}", again.text());
    let revinclude = h.get(&format!("/fhir/Patient?_id={id}&_revinclude=Observation:subject"), &t).await;
    assert_eq!(revinclude.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_library_defaults_are_served() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-client");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let path = format!("/fhir/Patient/{id}");
    // Update without If-Match: last writer wins; If-Match is honoured when sent.
    let mut p = h.get(&path, &t).await.json();
    p["gender"] = json!("other");
    let put = h.call("PUT", &path, Some(&t), &[], Some(&p.to_string())).await;
    assert_eq!((put.status, put.header("etag")), (200, Some("W/\"2\"")));
    assert_eq!(h.call("PUT", &path, Some(&t), &[("if-match", "W/\"1\"")], Some(&p.to_string())).await.status, 412);
    let patch = |ops: &'static str, if_match: Option<&'static str>| {
        let (h, t, path) = (&h, &t, &path);
        async move {
            let mut headers = vec![("content-type", "application/json-patch+json")];
            headers.extend(if_match.map(|v| ("if-match", v)));
            h.call("PATCH", path, Some(t), &headers, Some(ops)).await.status
        }
    };
    assert_eq!(patch(r#"[{"op": "replace", "path": "/gender", "value": "female"}]"#, None).await, 200);
    // A patch that tests /meta/versionId checks the version itself.
    let versioned = r#"[{"op": "test", "path": "/meta/versionId", "value": "2"},
                        {"op": "replace", "path": "/gender", "value": "male"}]"#;
    assert_eq!(patch(versioned, None).await, 412, "version 3 is current");
    let current = r#"[{"op": "test", "path": "/meta/versionId", "value": "3"},
                      {"op": "replace", "path": "/gender", "value": "male"}]"#;
    assert_eq!(patch(current, None).await, 200);

    // _count beyond a page is a full page, said so; _count=0 is the count.
    for _ in 0..2 {
        h.create_id(&t, &canary_patient(&unique_tag())).await;
    }
    let big = h.get("/fhir/Patient?_count=500", &t).await;
    assert_eq!(big.status, 200);
    let big = big.json();
    let outcome = big["entry"].as_array().unwrap().iter().find(|e| e["search"]["mode"] == "outcome").unwrap();
    assert!(outcome.to_string().contains("_count is at most 100"));
    let count = h.get("/fhir/Patient?_count=0", &t).await.json();
    assert!(count["total"].as_u64().unwrap() >= 3);
    assert!(count.get("entry").is_none());
    assert!(!count["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"), "a count has no pages");
    // Next links carry the page size; a client may change it on the way.
    let first = h.get("/fhir/Patient?_count=1", &t).await.json();
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.ends_with("&_count=1"), "{next}");
    let next = next.split_once("/fhir").map(|(_, p)| format!("/fhir{p}")).unwrap();
    let second = h.get(&next, &t).await.json();
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    assert_ne!(second["entry"][0]["resource"]["id"], first["entry"][0]["resource"]["id"]);
    let wider = h.get(&next.replace("&_count=1", "&_count=2"), &t).await.json();
    assert_eq!(wider["entry"].as_array().unwrap().len(), 2);
    assert_eq!(wider["entry"][0]["resource"]["id"], second["entry"][0]["resource"]["id"]);
    assert_eq!(h.get(&format!("{next}&family=x"), &t).await.status, 400, "a paging request takes no criteria");
    for bad in ["-1", "x", "1.5", ""] {
        assert_eq!(h.get(&format!("/fhir/Patient?_count={bad}"), &t).await.status, 400, "_count={bad}");
    }

    // _format naming JSON is accepted everywhere; another format is 406.
    for f in ["json", "application/fhir%2Bjson", "application/json"] {
        assert_eq!(h.get(&format!("/fhir/Patient?_format={f}&_id={id}"), &t).await.status, 200, "{f}");
        assert_eq!(h.get(&format!("{path}?_format={f}"), &t).await.status, 200, "{f}");
    }
    assert_eq!(h.get(&format!("{path}?_format=xml"), &t).await.status, 406);
    assert_eq!(h.get("/fhir/Patient?_format=application/fhir%2Bxml", &t).await.status, 406);
}

/// A deployment can require the version check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_can_require_if_match() {
    let h = Harness::start_with(vec![("MEDREC_REQUIRE_IF_MATCH".into(), "true".into())]).await;
    let t = h.token("clinician", "dr-strict");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let path = format!("/fhir/Patient/{id}");
    let body = h.get(&path, &t).await.json().to_string();
    assert_eq!(h.call("PUT", &path, Some(&t), &[], Some(&body)).await.status, 428);
    let headers = [("content-type", "application/json-patch+json")];
    let replace = r#"[{"op": "replace", "path": "/gender", "value": "female"}]"#;
    assert_eq!(h.call("PATCH", &path, Some(&t), &headers, Some(replace)).await.status, 428);
    let versioned = r#"[{"op": "test", "path": "/meta/versionId", "value": "1"},
                        {"op": "replace", "path": "/gender", "value": "female"}]"#;
    assert_eq!(h.call("PATCH", &path, Some(&t), &headers, Some(versioned)).await.status, 200);
    assert_eq!(h.call("PUT", &path, Some(&t), &[("if-match", "W/\"2\"")], Some(&body)).await.status, 200);
}
