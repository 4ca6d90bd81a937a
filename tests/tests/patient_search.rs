//! Patient search over HTTP: each parameter, combinations, paging with sealed
//! cursors, and cursor tampering.

use medrec_e2e::Harness;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn patient(family: &str, given: &str, gender: &str, birth: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
        "identifier": [{"system": "urn:hospital:mrn", "value": mrn}]
    })
}

fn ids(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .map(|a| a.iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn next_path(h: &Harness, bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().replace(&h.stack.base_url, ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_each_parameter_and_page() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-search");
    let zoe = h.create_id(&t, &patient("Müller", "Zoë", "female", "1980-05-02", "A-1")).await;
    let max = h.create_id(&t, &patient("Mueller", "Max", "male", "1980-11-30", "A-2")).await;
    let ann = h.create_id(&t, &patient("Smith", "Ann", "female", "1975-01-01", "B-7")).await;
    let mut bulk = BTreeSet::new();
    for i in 0..11 {
        bulk.insert(
            h.create_id(&t, &patient("Bulk", &format!("B{i}"), "unknown", "2001-01-01", &format!("C-{i}"))).await,
        );
    }
    let q = |query: &str| {
        let path = format!("/fhir/Patient?{query}");
        let (h, t) = (&h, &t);
        async move {
            let r = h.get(&path, t).await;
            assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
            ids(&r.json())
        }
    };
    let set = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(q("family=muller").await, set(&[&zoe]), "case and accent folding");
    assert_eq!(q("family=MUELLER").await, set(&[&max]));
    assert_eq!(q("given=zoe").await, set(&[&zoe]));
    assert_eq!(q("name=Ann").await, set(&[&ann]));
    assert_eq!(q("name=smith").await, set(&[&ann]));
    assert_eq!(q("gender=male").await, set(&[&max]));
    assert_eq!(q("birthdate=1980").await, set(&[&zoe, &max]), "year matches full dates inside it");
    assert_eq!(q("birthdate=1980-05").await, set(&[&zoe]));
    assert_eq!(q("birthdate=eq1975-01-01").await, set(&[&ann]));
    assert_eq!(q("identifier=urn:hospital:mrn|A-2").await, set(&[&max]));
    assert_eq!(q("identifier=B-7").await, set(&[&ann]));
    assert_eq!(q("identifier=urn:other|B-7").await, set(&[]));
    assert_eq!(q(&format!("_id={zoe}")).await, set(&[&zoe]));
    assert_eq!(q("birthdate=1980&gender=female").await, set(&[&zoe]), "parameters AND");
    assert_eq!(q("family=smith,mueller").await, set(&[&ann, &max]), "comma ORs values");
    assert_eq!(q("family=nobody").await, set(&[]));

    let form = h
        .call(
            "POST",
            "/fhir/Patient/_search",
            Some(&t),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some("family=smith"),
        )
        .await;
    assert_eq!(form.status, 200);
    assert_eq!(ids(&form.json()), set(&[&ann]));

    // Paging: 11 matches at 4 a page is 3 pages, each id exactly once.
    let first = h.get("/fhir/Patient?family=bulk&_count=4", &t).await.json();
    assert_eq!(first["total"], 11);
    let mut seen = vec![];
    let mut page = first;
    let mut pages = 0;
    loop {
        pages += 1;
        seen.extend(ids(&page));
        let Some(next) = next_path(&h, &page) else { break };
        assert!(!next.contains("bulk") && !next.contains("family"), "next links carry no search values: {next}");
        page = h.get(&next, &t).await.json();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 11);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), bulk);

    // All patients, no parameters.
    assert_eq!(h.get("/fhir/Patient?_count=100", &t).await.json()["total"], 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_tamper_proof_and_bound_to_the_caller() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-cursor");
    for i in 0..3 {
        h.create_id(&t, &patient("Page", &format!("P{i}"), "female", "1990-01-01", &format!("P-{i}"))).await;
    }
    let b = h.get("/fhir/Patient?family=page&_count=1", &t).await.json();
    let next = next_path(&h, &b).expect("next link");
    let cursor = next.split("_cursor=").nth(1).unwrap().to_owned();

    let mut chars: Vec<char> = cursor.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    for bad in [tampered.as_str(), "garbage", "", &cursor[..cursor.len() - 2]] {
        let r = h.get(&format!("/fhir/Patient?_cursor={bad}"), &t).await;
        assert_eq!(r.status, 400, "cursor {bad:?}");
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
    let other = h.token("clinician", "dr-other");
    assert_eq!(h.get(&next, &other).await.status, 400, "a cursor only works for the caller it was issued to");
    assert_eq!(h.get(&format!("{next}&family=x"), &t).await.status, 400);
    assert_eq!(h.get(&next, &t).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_parameters_are_rejected() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-badsearch");
    for q in [
        "colour=red",
        "name:contains=x",
        "birthdate=ge1980",
        "birthdate=1980-13",
        "gender=yes",
        "_count=-1",
        "_count=abc",
        "family=",
        "identifier=urn:x|",
        "_id=../x",
        "family=%ZZ",
        "family=%FF",
    ] {
        let r = h.get(&format!("/fhir/Patient?{q}"), &t).await;
        assert_eq!(r.status, 400, "{q}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
}
