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

/// The ids a search finds; it must answer 200.
async fn found(h: &Harness, token: &str, path: String) -> BTreeSet<String> {
    let r = h.get(&path, token).await;
    assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
    ids(&r.json())
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
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
    let q = |query: &str| found(&h, &t, format!("/fhir/Patient?{query}"));

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

/// R4 search.html#string: a name search starts with the value, ignoring
/// case and accents; `:exact` matches as written, `:contains` anywhere.
/// Prefixes of three characters or more walk their blind-index token and
/// are then checked on the decrypted names; shorter ones walk every patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_match_as_r4_string_search_says() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-names");
    let johnson = h.create_id(&t, &patient("Johnson", "Jonathan", "male", "1970-01-01", "N-1")).await;
    let johns = h.create_id(&t, &patient("Johns", "Mary", "female", "1971-01-01", "N-2")).await;
    let jo = h.create_id(&t, &patient("Jo", "Li", "female", "1972-01-01", "N-3")).await;
    let other = h.create_id(&t, &patient("Åberg", "Joëlle", "female", "1973-01-01", "N-4")).await;
    let q = |query: &str| found(&h, &t, format!("/fhir/Patient?{query}"));

    assert_eq!(q("family=Joh").await, set(&[&johnson, &johns]), "a three-letter prefix");
    assert_eq!(q("family=johnso").await, set(&[&johnson]), "past the indexed prefix, checked on the names");
    assert_eq!(q("family=JÖHNS").await, set(&[&johnson, &johns]), "case and accents folded");
    assert_eq!(q("family=Jo").await, set(&[&johnson, &johns, &jo]), "a short prefix walks every patient");
    assert_eq!(q("name=Jo").await, set(&[&johnson, &johns, &jo, &other]), "any part of any name");
    assert_eq!(q("given=jon").await, set(&[&johnson]));
    assert_eq!(q("given=Joel").await, set(&[&other]));
    assert_eq!(q("family=aberg").await, set(&[&other]));
    assert_eq!(q("family=ohns").await, set(&[]), "starts with, not contains");
    assert_eq!(q("family:contains=OHNS").await, set(&[&johnson, &johns]));
    assert_eq!(q("name:contains=atha").await, set(&[&johnson]));
    assert_eq!(q("family:exact=Johns").await, set(&[&johns]));
    assert_eq!(q("family:exact=johns").await, set(&[]), ":exact is case-sensitive");
    assert_eq!(q("family:exact=Åberg").await, set(&[&other]));
    assert_eq!(q("family:exact=Aberg").await, set(&[]), ":exact keeps accents");
    assert_eq!(q("family=Joh,Jo&gender=female").await, set(&[&johns, &jo]), "values OR, parameters AND");
    assert_eq!(q("family=Jo&given=Li").await, set(&[&jo]));

    // The short-prefix walk pages like any search: each match once.
    let mut seen = BTreeSet::new();
    let mut page = h.get("/fhir/Patient?name=jo&_count=1", &t).await.json();
    assert_eq!(page["total"], 4);
    loop {
        assert!(ids(&page).len() <= 1);
        seen.extend(ids(&page));
        let Some(next) = next_path(&h, &page) else { break };
        page = h.get(&next, &t).await.json();
    }
    assert_eq!(seen, set(&[&johnson, &johns, &jo, &other]));

    for bad in ["family:missing=true", "gender:exact=male", "family:text=x", "family:exact=", "name:contains=%20"] {
        let r = h.get(&format!("/fhir/Patient?{bad}"), &t).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
}

/// The parameters every type has (`_lastUpdated`, `_tag`, `_profile`,
/// `_security`) search patients too: the index does not hold them, so each
/// candidate's decrypted resource is tested, alone or beside an indexed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_types_parameters_search_patients_too() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-common");
    let mut tagged = patient("Tagged", "Tess", "female", "1980-01-01", "T-1");
    tagged["meta"] = json!({"tag": [{"system": "urn:medrec:test", "code": "vip"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
    let tagged = h.create_id(&t, &tagged).await;
    let plain = h.create_id(&t, &patient("Plain", "Paul", "male", "1981-01-01", "T-2")).await;
    let later = h.create(&t, &patient("Tagless", "Tom", "male", "1982-01-01", "T-3")).await.json();
    let (later_id, since) = (later["id"].as_str().unwrap().to_owned(), later["meta"]["lastUpdated"].as_str().unwrap());
    let q = |query: &str| found(&h, &t, format!("/fhir/Patient?{query}"));

    assert_eq!(q("_tag=urn:medrec:test|vip").await, set(&[&tagged]));
    assert_eq!(q("_tag:not=urn:medrec:test|vip").await, set(&[&plain, &later_id]));
    assert_eq!(q("_security=R").await, set(&[&tagged]));
    assert_eq!(q("_security:missing=true").await, set(&[&plain, &later_id]));
    assert_eq!(q(&format!("_lastUpdated=ge{}", since.replace('+', "%2B"))).await, set(&[&later_id]));
    assert_eq!(q("_lastUpdated=lt2000-01-01").await, set(&[]));
    assert_eq!(q("family=tag&_tag=urn:medrec:test|vip").await, set(&[&tagged]), "beside an indexed parameter");
    assert_eq!(q("_profile=http://example.org/none").await, set(&[]));
    for bad in ["_lastUpdated=yesterday", "_tag:exact=x", "_security:below=x"] {
        let r = h.get(&format!("/fhir/Patient?{bad}"), &t).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
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
        "name:missing=true",
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

/// In the order `_sort` asks, page after page; a patient whose consent
/// refuses the caller is neither listed nor counted. The index cannot
/// order (that would leak the order of names and birth dates), so a sorted
/// search reads its whole result: beyond one walk of the index or the
/// consent-lookup bound it is 400 too-costly, never a partial order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_sort_as_asked_within_the_search_bounds() {
    let h = Harness::start_with(vec![
        ("MEDREC_SEARCH_SCAN_PER_PAGE".into(), "5".into()),
        ("MEDREC_SEARCH_CONSENT_LOOKUPS".into(), "4".into()),
    ])
    .await;
    let t = h.token("clinician", "dr-sort");
    let baker = h.create_id(&t, &patient("Baker", "Ann", "female", "1980-05-01", "S-1")).await;
    let adams = h.create_id(&t, &patient("Adams", "Bea", "female", "1990-05-01", "S-2")).await;
    let clark = h.create_id(&t, &patient("Clark", "Cy", "female", "1970-05-01", "S-3")).await;
    let dunn = h.create_id(&t, &patient("Dunn", "Di", "male", "1985-05-01", "S-4")).await;
    let in_order = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let every_page = |path: String| {
        let (h, t) = (&h, &t);
        async move {
            let (mut seen, mut totals, mut next) = (vec![], vec![], Some(path));
            while let Some(path) = next {
                let r = h.get(&path, t).await;
                assert_eq!(r.status, 200, "{path}: {}", r.text());
                let page = r.json();
                totals.push(page["total"].clone());
                seen.extend(
                    page["entry"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned()),
                );
                next = next_path(h, &page);
            }
            (seen, totals)
        }
    };
    let (seen, totals) = every_page("/fhir/Patient?gender=female&_sort=family&_count=2".into()).await;
    assert_eq!(seen, in_order(&[&adams, &baker, &clark]));
    assert_eq!(totals, [json!(3), json!(3)]);
    for (q, want) in [
        ("gender=female&_sort=-birthdate", in_order(&[&adams, &baker, &clark])),
        ("_sort=_lastUpdated", in_order(&[&baker, &adams, &clark, &dunn])),
        ("_sort=-given&_count=1", in_order(&[&dunn, &clark, &adams, &baker])),
        ("family=Ada,Dun&_sort=-family", in_order(&[&dunn, &adams])),
    ] {
        assert_eq!(every_page(format!("/fhir/Patient?{q}")).await.0, want, "{q}");
    }

    // Clark refuses this clinician: not in a sorted result, nor its total.
    let refusal = medrec_e2e::consent(
        &clark,
        json!({"type": "permit", "provision": [{"type": "deny",
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-sort"}}]}]}),
    );
    let registrar = h.token("registrar", "desk-sort");
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&refusal.to_string())).await.status, 201);
    let (seen, totals) = every_page("/fhir/Patient?gender=female&_sort=-family".into()).await;
    assert_eq!((seen, totals), (in_order(&[&baker, &adams]), vec![json!(2)]));

    // Five candidates need five consent lookups (bound 4); six pass the scan (5).
    let (unsorted, _) = every_page("/fhir/Patient?_count=2".into()).await;
    assert_eq!(unsorted.len(), 3, "unsorted, the same search pages within the bounds");
    let _eve = h.create_id(&t, &patient("Eve", "Ed", "male", "1999-05-01", "S-5")).await;
    let many = h.get("/fhir/Patient?_sort=family", &t).await;
    assert_eq!(many.status, 400, "{}", many.text());
    assert_eq!(many.json()["issue"][0]["code"], "too-costly");
    assert!(many.text().contains("MEDREC_SEARCH_CONSENT_LOOKUPS"), "{}", many.text());
    let _fay = h.create_id(&t, &patient("Fay", "Flo", "female", "1960-05-01", "S-6")).await;
    let more = h.get("/fhir/Patient?_sort=family", &t).await;
    assert_eq!(more.status, 400);
    assert!(more.text().contains("MEDREC_SEARCH_SCAN_PER_PAGE"), "{}", more.text());
    for bad in ["_sort=family,given", "_sort=address", "_sort=-", "_sort=general-practitioner"] {
        let r = h.get(&format!("/fhir/Patient?{bad}"), &t).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
}
