//! Searches: a clinical search stays inside the patient it names and pages
//! with a cursor sealed to the caller; the Patient directory is searched
//! through blind-index tokens; `$everything` and histories return what the
//! caller may see.

use super::*;

const TEMPERATURE: &str = "http://loinc.org|8310-5";

async fn search(svc: &Memory, who: &Caller, ty: &str, params: &[(&str, &str)]) -> Result<Vec<String>> {
    let mut audit = svc.draft(Some(who), "search-type");
    let q = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let found = svc.search_records(who, ty, q, &mut audit).await?;
    Ok(found.resources.into_iter().map(|s| s.id).collect())
}

fn bad_request<T>(r: Result<T>) -> String {
    match r {
        Err(Error::BadRequest(m)) => m,
        Err(other) => panic!("expected 400, got {other:?}"),
        Ok(_) => panic!("expected 400, got a success"),
    }
}

#[tokio::test]
async fn a_clinical_search_stays_in_its_patient_and_pages_with_a_cursor_sealed_to_the_caller() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let other = create(&svc, &dr, patient()).await.unwrap();
    let mut mine = vec![];
    for v in [37.0, 38.5, 39.1] {
        mine.push(create(&svc, &dr, temperature(&p, json!(v))).await.unwrap());
    }
    let mut pulse = temperature(&p, json!(72));
    pulse["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "8867-4"}]});
    pulse["valueQuantity"] =
        json!({"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"});
    create(&svc, &dr, pulse).await.unwrap();
    create(&svc, &dr, temperature(&other, json!(36.6))).await.unwrap();

    let mut audit = svc.draft(Some(&dr), "search-type");
    let q = vec![("patient".into(), p.clone()), ("code".into(), TEMPERATURE.into()), ("_count".into(), "2".into())];
    let first = svc.search_records(&dr, "Observation", q, &mut audit).await.unwrap();
    assert_eq!((first.resources.len(), first.total), (2, Some(3)));
    let cursor = first.next_cursor.expect("a next page");
    let mut audit = svc.draft(Some(&dr), "search-type");
    let next = vec![("_cursor".to_string(), cursor.clone())];
    let second = svc.search_records(&dr, "Observation", next.clone(), &mut audit).await.unwrap();
    assert!(second.next_cursor.is_none());
    let mut found: Vec<String> = first.resources.into_iter().chain(second.resources).map(|s| s.id).collect();
    found.sort();
    mine.sort();
    assert_eq!(found, mine, "every temperature of the patient, once, and no one else's");

    // The cursor is the caller's: another clinician, or a changed byte, is refused.
    let dr_b = clinician("dr-b", "user/*.cruds");
    let mut audit = svc.draft(Some(&dr_b), "search-type");
    assert!(matches!(svc.search_records(&dr_b, "Observation", next, &mut audit).await, Err(Error::BadRequest(_))));
    let mut forged = cursor.into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    bad_request(search(&svc, &dr, "Observation", &[("_cursor", &forged)]).await);

    let above = [("patient", p.as_str()), ("value-quantity", "gt38")];
    assert_eq!(search(&svc, &dr, "Observation", &above).await.unwrap().len(), 3, "the pulse of 72/min too");
    let above = [("patient", p.as_str()), ("value-quantity", "gt38|http://unitsofmeasure.org|Cel")];
    assert_eq!(search(&svc, &dr, "Observation", &above).await.unwrap().len(), 2);
    assert!(bad_request(search(&svc, &dr, "Observation", &[("code", TEMPERATURE)]).await).contains("names its patient"));
    let probe = bad_request(search(&svc, &dr, "Observation", &[("patient", &p), (CANARY_FAMILY, "x")]).await);
    assert!(!probe.contains(CANARY_FAMILY), "an unknown parameter's name is not echoed: {probe}");
    // A patient's token searches its own compartment only.
    let own = search(&svc, &patient_self(&p), "Observation", &[("code", TEMPERATURE)]).await.unwrap();
    assert_eq!(own.len(), 3);
    assert!(search(&svc, &patient_self(&p), "Observation", &[("patient", &other)])
        .await
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test]
async fn the_patient_directory_is_searched_by_blind_index_tokens_not_plaintext() {
    let svc = services();
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let quentin = create(&svc, &registrar, patient()).await.unwrap();
    let mut other = patient();
    other["name"] = json!([{"family": "Okonkwo-Brandt", "given": ["Ada"]}]);
    other["gender"] = "female".into();
    let ada = create(&svc, &registrar, other).await.unwrap();

    let dr = clinician("dr-a", "user/*.cruds");
    let find = |params: &[(&str, &str)]| {
        let q: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (svc, dr) = (&svc, &dr);
        async move {
            let mut audit = svc.draft(Some(dr), "search-type");
            let found = svc.search_patients(dr, q, &mut audit).await.unwrap();
            found.resources.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(find(&[("family", "zzyzx")]).await, vec![quentin.clone()], "starts-with, ignoring case");
    assert_eq!(find(&[("name", "okonkwo-brandt")]).await, vec![ada.clone()]);
    assert_eq!(find(&[("family:exact", "Okonkwo")]).await, Vec::<String>::new());
    assert_eq!(find(&[("gender", "female")]).await, vec![ada.clone()]);
    assert_eq!(find(&[("birthdate", "1961-02-03"), ("gender", "male")]).await, vec![quentin.clone()]);
    let stored = svc.store.dump();
    for phi in [CANARY_FAMILY, "zzyzx", "Okonkwo", "okonkwo"] {
        assert!(!stored.contains(phi), "{phi} in an index or record in plaintext");
    }
}

#[tokio::test]
async fn an_everything_page_reads_its_own_records_not_the_whole_compartment() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let admin = with_role("admin-a", Role::Admin, "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let mut made = vec![];
    for i in 0..30 {
        made.push(create(&svc, &dr, temperature(&p, json!(36 + i % 3))).await.unwrap());
    }
    let gone = made.remove(7);
    let mut audit = svc.draft(Some(&admin), "delete");
    svc.delete_record(&admin, "Observation", &gone, None, &mut audit).await.unwrap();

    let mut seen = vec![];
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let before = svc.store.current_reads();
        let mut audit = svc.draft(Some(&dr), "operation");
        let page = svc.everything(&dr, &p, 4, cursor.as_deref(), &mut audit).await.unwrap();
        // The Patient's own check, then the page's other records, each once:
        // never the other 26, nor the Patient twice.
        let others = page.resources.iter().filter(|s| s.id != p).count();
        assert_eq!(svc.store.current_reads() - before, 1 + others, "page {pages} read more than its own records");
        assert_eq!(page.total, Some(30), "the Patient and 29 live records; the deleted one is not counted");
        seen.extend(page.resources.iter().map(|s| s.id.clone()));
        pages += 1;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    assert_eq!(seen.remove(0), p);
    made.sort();
    assert_eq!(seen, made, "every live record once, in order, the deleted one left out");
}

#[tokio::test]
async fn everything_and_histories_return_the_whole_record_newest_first() {
    let svc = services();
    let dr = clinician("dr-a", "user/*.cruds");
    let p = create(&svc, &dr, patient()).await.unwrap();
    let obs = create(&svc, &dr, temperature(&p, json!(37.1))).await.unwrap();
    let mut changed = temperature(&p, json!(37.4));
    changed["id"] = obs.clone().into();
    let mut audit = svc.draft(Some(&dr), "update");
    svc.update_record(&dr, "Observation", &obs, changed, Some(1), &mut audit).await.unwrap();
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let c = create(&svc, &registrar, consent(&p, json!({"type": "permit"}))).await.unwrap();

    let mut audit = svc.draft(Some(&dr), "operation");
    let all = svc.everything(&dr, &p, 50, None, &mut audit).await.unwrap();
    let mut refs: Vec<String> =
        all.resources.iter().map(|s| format!("{}/{}", s.resource["resourceType"].as_str().unwrap(), s.id)).collect();
    refs.sort();
    assert_eq!(refs, vec![format!("Consent/{c}"), format!("Observation/{obs}"), format!("Patient/{p}")]);
    let current = all.resources.iter().find(|s| s.id == obs).unwrap();
    assert_eq!((current.version, current.resource["valueQuantity"]["value"].to_string()), (2, "37.4".into()));

    let mut audit = svc.draft(Some(&dr), "history-instance");
    let versions = svc.record_history_of(&dr, "Observation", &obs, 10, None, &mut audit).await.unwrap();
    let order: Vec<u64> = versions.items.iter().map(|i| i.version).collect();
    assert_eq!(order, vec![2, 1]);
    assert_eq!(versions.items[1].resource.as_ref().unwrap()["valueQuantity"]["value"].to_string(), "37.1");

    let mut audit = svc.draft(Some(&dr), "history-type");
    let q = vec![("patient".to_string(), p.clone())];
    let typed = svc.history(&dr, Some("Observation"), q, &mut audit).await.unwrap();
    assert_eq!(typed.items.iter().map(|i| i.version).collect::<Vec<_>>(), vec![2, 1]);
    let mut audit = svc.draft(Some(&dr), "history-type");
    let bad = svc.history(&dr, Some("Observation"), vec![("_since".into(), "yesterday".into())], &mut audit).await;
    assert!(matches!(bad, Err(Error::BadRequest(_))));
}

#[tokio::test]
async fn the_staff_directory_is_shared_reference_data_kept_by_registrars() {
    let svc = services();
    let registrar = with_role("reg-a", Role::Registrar, "user/*.cruds");
    let practitioner = json!({"resourceType": "Practitioner", "active": true,
        "name": [{"family": "Hartmann", "given": ["Lena"]}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]});
    let id = create(&svc, &registrar, practitioner.clone()).await.unwrap();
    create(&svc, &registrar, json!({"resourceType": "Practitioner", "name": [{"family": "Oyelaran"}]})).await.unwrap();

    let dr = clinician("dr-a", "user/*.cruds");
    assert_eq!(search(&svc, &dr, "Practitioner", &[("name", "hart")]).await.unwrap(), vec![id.clone()]);
    let npi = search(&svc, &dr, "Practitioner", &[("identifier", "http://hl7.org/fhir/sid/us-npi|1234567893")]);
    assert_eq!(npi.await.unwrap(), vec![id.clone()]);
    assert_eq!(without_server_fields(read(&svc, &dr, "Practitioner", &id).await.unwrap()), practitioner);
    forbidden(create(&svc, &dr, json!({"resourceType": "Practitioner", "name": [{"family": "Self-Made"}]})).await);
    forbidden(search(&svc, &patient_self("p"), "Practitioner", &[("name", "hart")]).await);
    assert!(!svc.store.dump().contains("Hartmann"), "directory entries are sealed too");
}
