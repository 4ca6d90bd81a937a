//! Every record type of the resource table, generated from it: HL7's own
//! R4 examples of each type (hl7.fhir.r4.examples 4.0.1, fetched pinned by
//! `make setup`) are placed in one patient's compartment, created through
//! the generic routes, read back exactly as sent, found by `patient`, by
//! `_id` and by every token parameter that has a value in them, and each
//! answer passes medrec's own validator. Plus what is refused: types the
//! table does not hold, records without a patient, unknown parameters and
//! modifiers, another patient's token; and the business rules of the types
//! that have them.

use medrec_e2e::{canary_patient, canary_strings, placed_in, record_examples, unique_tag, Harness};
use medrec_edge::fhir::resources::ResourceDef;
use medrec_edge::fhir::search_params;
use medrec_edge::fhir::validator::model;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn without_meta(r: &Value) -> Value {
    let mut r = r.clone();
    let o = r.as_object_mut().unwrap();
    o.remove("id");
    o.remove("meta");
    r
}

fn assert_valid(what: &str, v: &Value) {
    let errors: Vec<String> =
        model().validate(v).into_iter().filter(|i| i.is_error()).map(|i| format!("{i:?}")).collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str())
        .map(str::to_owned)
        .collect()
}

/// A token value of the resource for a search: `system|code` of its first
/// coding, `system|value` of an identifier, or the code itself.
fn token_of(v: &Value) -> Option<String> {
    let pair = |s: Option<&str>, c: Option<&str>| match (s, c) {
        (Some(s), Some(c)) => Some(format!("{s}|{c}")),
        (None, Some(c)) => Some(c.to_owned()),
        _ => None,
    };
    match v {
        Value::String(s) if !s.contains(',') && !s.is_empty() => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) if o.contains_key("coding") => {
            let c = &o["coding"][0];
            pair(c["system"].as_str(), c["code"].as_str())
        }
        Value::Object(o) if o.contains_key("value") => {
            pair(o.get("system").and_then(Value::as_str), o["value"].as_str())
        }
        Value::Object(o) => pair(o.get("system").and_then(Value::as_str), o.get("code").and_then(Value::as_str)),
        _ => None,
    }
    .filter(|t| !t.contains(',') && t.len() < 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_takes_hl7s_examples_and_finds_them_by_every_token() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-every-type");
    // Clinicians read the directory; registrars keep it.
    let keeper = h.token("registrar", "reg-every-type");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let all = record_examples();
    // A compartment search names its patient; the directory is one.
    let scope_of = |def: &ResourceDef| match def.compartment {
        Some(_) => format!("patient={patient}&"),
        None => String::new(),
    };
    let types: std::collections::BTreeSet<&str> = all.iter().map(|(_, d, _)| d.name.as_str()).collect();
    assert!(types.len() >= 55, "examples of {} types", types.len());

    let mut accepted = vec![];
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    for (file, def, example) in &all {
        let body = placed_in(def, example.clone(), &patient);
        let writer = if def.compartment.is_some() { &t } else { &keeper };
        let r = h.call("POST", &format!("/fhir/{}", def.name), Some(writer), &[], Some(&body.to_string())).await;
        match r.status {
            201 => {
                let created = r.json();
                assert_valid(file, &created);
                accepted.push((file.clone(), *def, body, created["id"].as_str().unwrap().to_owned()));
            }
            400 | 413 | 422 => {
                let outcome = r.json();
                assert_eq!(outcome["resourceType"], "OperationOutcome", "{file}");
                let why = outcome["issue"][0]["expression"][0].as_str().unwrap_or_default().to_owned();
                refused.insert(file.clone(), format!("{why}: {}", outcome["issue"][0]["diagnostics"]));
            }
            s => panic!("{file}: {s} {}", r.text()),
        }
    }
    let rate = accepted.len() as f64 / all.len() as f64;
    println!(
        "HL7 R4 examples: {} of {} accepted ({:.1}%) over {} types",
        accepted.len(),
        all.len(),
        100.0 * rate,
        types.len()
    );
    for (file, why) in &refused {
        println!("  refused {file}: {why}");
    }
    // The examples HL7 ships are valid R4; what medrec refuses is its own
    // business rules (dates in the future, references to other patients'
    // compartments) or a validator gap: measured, and held from falling.
    assert!(rate >= 0.95, "{:.1}% accepted", 100.0 * rate);

    let mut searched = 0;
    let mut searched_other = 0;
    let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
    for (file, def, sent, id) in &accepted {
        let ty = def.name.as_str();
        let read = h.get(&format!("/fhir/{ty}/{id}"), &t).await;
        assert_eq!(read.status, 200, "{file}");
        let back = read.json();
        assert_eq!(without_meta(&back), *sent, "{file} reads back exactly as sent");
        assert_valid(file, &back);
        // The first two of each type are searched by each token parameter
        // with a value in them (with `_id`, so a page bound cannot hide it).
        let seen = per_type.entry(ty).or_default();
        *seen += 1;
        if *seen > 2 {
            continue;
        }
        let scope = scope_of(def);
        let found = h.get(&format!("/fhir/{ty}?{scope}_id={id}"), &t).await;
        assert_eq!(ids(&found.json()), std::slice::from_ref(id), "{file}");
        for p in def.params.iter().filter(|p| p.kind == "token") {
            let Some(value) = search_params::values(p, &back).into_iter().find_map(|(v, _)| token_of(v)) else {
                continue;
            };
            let q = format!("/fhir/{ty}?{scope}_id={id}&{}={}", p.name, urlencode(&value));
            let r = h.get(&q, &t).await;
            assert_eq!(r.status, 200, "{file} {q}: {}", r.text());
            assert_eq!(ids(&r.json()), std::slice::from_ref(id), "{file}: {}={value} does not find it", p.name);
            let not = h.get(&q.replace(&format!("&{}=", p.name), &format!("&{}:not=", p.name)), &t).await;
            assert!(ids(&not.json()).is_empty(), "{file}: {}:not={value} finds it", p.name);
            searched += 1;
        }
        // For the first of each type, every date, string and reference
        // parameter with a value here finds it too: the date itself (eq at its own precision), the
        // string's first three letters, the reference as stored.
        let first_of_type = *seen == 1;
        for p in
            def.params.iter().filter(|p| first_of_type && matches!(p.kind.as_str(), "date" | "string" | "reference"))
        {
            let Some(value) = search_params::values(p, &back).into_iter().find_map(|(v, _)| probe_of(&p.kind, v))
            else {
                continue;
            };
            let q = format!("/fhir/{ty}?{scope}_id={id}&{}={}", p.name, urlencode(&value));
            let r = h.get(&q, &t).await;
            assert_eq!(r.status, 200, "{file} {q}: {}", r.text());
            assert_eq!(ids(&r.json()), std::slice::from_ref(id), "{file}: {}={value} does not find it", p.name);
            let missing = h.get(&format!("/fhir/{ty}?{scope}_id={id}&{}:missing=true", p.name), &t).await;
            assert!(ids(&missing.json()).is_empty(), "{file}: {}:missing=true finds it", p.name);
            searched_other += 1;
        }
    }
    println!("{searched} token searches, each found its record and :not did not");
    println!("{searched_other} date, string and reference searches, each found its record and :missing=true did not");
    let everything = h.get(&format!("/fhir/Patient/{patient}/$everything?_count=1000"), &t).await;
    assert_eq!(everything.status, 200);
    let bundle = everything.json();
    assert_valid("$everything", &bundle);
    let in_compartment = accepted.iter().filter(|(_, def, ..)| def.compartment.is_some()).count();
    assert_eq!(ids(&bundle).len(), in_compartment + 1, "$everything holds every record and the Patient");
}

/// A value of a date, string or reference parameter that must find the
/// resource it came from.
fn probe_of(kind: &str, v: &Value) -> Option<String> {
    match kind {
        "date" => v.as_str().or_else(|| v["start"].as_str()).filter(|_| v.is_string()).map(str::to_owned),
        "string" => {
            let s = v.as_str().or_else(|| v["family"].as_str()).or_else(|| v["city"].as_str())?;
            let prefix: String = s.chars().take(3).collect();
            (!prefix.trim().is_empty() && !prefix.contains(',')).then_some(prefix)
        }
        "reference" => v["reference"].as_str().filter(|r| !r.starts_with('#') && !r.contains(',')).map(str::to_owned),
        _ => None,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'|' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_generic_routes_refuse() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-refusals");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let condition = |p: &str| {
        json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{p}")},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "onsetDateTime": "2019-03-01"})
    };
    let post = |ty: &str, body: Value| {
        let (h, t, ty) = (&h, &t, ty.to_owned());
        async move { h.call("POST", &format!("/fhir/{ty}"), Some(t), &[], Some(&body.to_string())).await }
    };
    // Types the table does not hold (Binary has its own route), and a body of another type.
    for ty in ["Group", "Person", "Foo", "Questionnaire"] {
        let r = post(ty, json!({"resourceType": ty})).await;
        assert_eq!(r.status, 404, "{ty}: {}", r.text());
    }
    assert_eq!(post("Condition", json!({"resourceType": "Encounter"})).await.status, 400);
    // A record names its patient, by a Patient reference that exists.
    let mut no_patient = condition(&patient);
    no_patient.as_object_mut().unwrap().remove("subject");
    let r = post("Condition", no_patient).await;
    assert_eq!((r.status, r.json()["issue"][0]["expression"][0].as_str()), (422, Some("Condition.subject")));
    let mut group = condition(&patient);
    group["subject"]["reference"] = json!("Group/g1");
    assert_eq!(post("Condition", group).await.status, 422);
    assert_eq!(post("Condition", condition("no-such-patient")).await.status, 422);

    let mut hypertension = condition(&patient);
    hypertension["code"]["coding"][0]["code"] = json!("38341003");
    hypertension["onsetDateTime"] = json!("2018-01-01");
    let created = post("Condition", hypertension).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let condition_id = created.json()["id"].as_str().unwrap().to_owned();
    // A list of references (Provenance.target) places a record with the one
    // patient it names, beside the records it names; naming two patients,
    // or none, is refused: a record lives under one patient's key.
    let provenance = |targets: &[String]| {
        json!({"resourceType": "Provenance", "recorded": "2026-01-02T03:04:05Z",
            "target": targets.iter().map(|t| json!({"reference": t})).collect::<Vec<_>>(),
            "agent": [{"who": {"display": "an EHR"}}]})
    };
    let p = post("Provenance", provenance(&[format!("Condition/{condition_id}"), format!("Patient/{patient}")])).await;
    assert_eq!(p.status, 201, "{}", p.text());
    let found = h.get(&format!("/fhir/Provenance?patient={patient}"), &t).await.json();
    assert_eq!(ids(&found), [p.json()["id"].as_str().unwrap().to_owned()]);
    for targets in
        [vec![format!("Patient/{patient}"), format!("Patient/{other}")], vec![format!("Condition/{condition_id}")]]
    {
        let r = post("Provenance", provenance(&targets)).await;
        assert_eq!(
            (r.status, r.json()["issue"][0]["expression"][0].as_str()),
            (422, Some("Provenance.target")),
            "{targets:?}"
        );
    }

    let created = post("Condition", condition(&patient)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    // A record cannot move to another compartment.
    let mut moved = created.json();
    moved["subject"]["reference"] = json!(format!("Patient/{other}"));
    let r = h.call("PUT", &format!("/fhir/Condition/{id}"), Some(&t), &[], Some(&moved.to_string())).await;
    assert_eq!(r.status, 422);
    // Parameters the type does not have, modifiers its parameters do not take.
    for q in ["bogus=1", "code:exact=1", "onset-date:text=x", "onset-date=soon", "_sort=encounter", "_sort=a,b"] {
        let r = h.get(&format!("/fhir/Condition?patient={patient}&{q}"), &t).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(!r.text().contains("bogus"), "the name a client sent is not echoed");
    }
    // subject=Patient/{id} selects the compartment like patient=.
    let r = h.get(&format!("/fhir/Condition?subject=Patient/{patient}&code=44054006"), &t).await;
    assert_eq!(ids(&r.json()), std::slice::from_ref(&id));
    // Sorting on a date parameter, both ways.
    let second = condition(&patient);
    let mut later = second.clone();
    later["onsetDateTime"] = json!("2021-01-01");
    let later_id = post("Condition", later).await.json()["id"].as_str().unwrap().to_owned();
    let asc = h.get(&format!("/fhir/Condition?patient={patient}&_sort=onset-date"), &t).await.json();
    let desc = h.get(&format!("/fhir/Condition?patient={patient}&_sort=-onset-date"), &t).await.json();
    assert_eq!(ids(&asc), [condition_id.clone(), id.clone(), later_id.clone()]);
    assert_eq!(ids(&desc), [later_id.clone(), id.clone(), condition_id.clone()]);
    // Another patient's token sees nothing of this compartment.
    let theirs = h.token_with("patient", "pat-other", &["patient/*.rs"], Some(&other));
    assert!(matches!(h.get(&format!("/fhir/Condition/{id}"), &theirs).await.status, 403 | 404));
    assert!(matches!(h.get(&format!("/fhir/Condition?patient={patient}"), &theirs).await.status, 403 | 404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_rules_of_the_record_types() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-rules");
    let mut born_1990 = canary_patient(&unique_tag());
    born_1990["birthDate"] = json!("1990-05-01");
    let patient = h.create_id(&t, &born_1990).await;
    let subject = json!({"reference": format!("Patient/{patient}")});
    let cases = [
        (
            json!({"resourceType": "Condition", "subject": subject, "onsetDateTime": "1985-01-01",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}),
            "Condition.onsetDateTime",
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "patient": subject, "onsetDateTime": "2010",
                "lastOccurrence": "2009-01-01T00:00:00Z",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}}),
            "AllergyIntolerance.lastOccurrence",
        ),
        (
            json!({"resourceType": "MedicationRequest", "subject": subject, "status": "active", "intent": "order",
                "medicationCodeableConcept": {"text": "amoxicillin"},
                "dosageInstruction": [{"doseAndRate": [{"doseRange": {
                    "low": {"value": 500, "system": "http://unitsofmeasure.org", "code": "mg"},
                    "high": {"value": 250, "system": "http://unitsofmeasure.org", "code": "mg"}}}]}]}),
            "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseRange",
        ),
        (
            json!({"resourceType": "Encounter", "subject": subject, "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "period": {"start": "2999-01-01T00:00:00Z"}}),
            "Encounter.period.start",
        ),
    ];
    for (body, at) in cases {
        let ty = body["resourceType"].as_str().unwrap().to_owned();
        let r = h.call("POST", &format!("/fhir/{ty}"), Some(&t), &[], Some(&body.to_string())).await;
        assert_eq!(r.status, 422, "{ty}: {}", r.text());
        let outcome = r.json();
        let at_element: Vec<&str> =
            outcome["issue"].as_array().unwrap().iter().filter_map(|i| i["expression"][0].as_str()).collect();
        assert!(at_element.contains(&at), "{ty}: {at_element:?}");
    }
}

/// The CapabilityStatement says what is true: every search parameter it
/// declares on a type is accepted with a value of its kind (a name it does
/// not declare is refused), and `_sort` takes each sortable one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capability_statement_declares_what_searches_accept() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-capability");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let metadata = h.call("GET", "/fhir/metadata", None, &[], None).await.json();
    let mut checked = 0;
    for r in metadata["rest"][0]["resource"].as_array().unwrap() {
        let ty = r["type"].as_str().unwrap();
        let searched = r["interaction"].as_array().unwrap().iter().any(|i| i["code"] == "search-type");
        if ty == "AuditEvent" || !searched {
            continue;
        }
        let in_compartment = medrec_edge::fhir::resources::compartment_type(ty).is_some();
        let scope = if in_compartment { format!("patient={patient}&") } else { String::new() };
        for p in r["searchParam"].as_array().into_iter().flatten() {
            let (name, kind) = (p["name"].as_str().unwrap(), p["type"].as_str().unwrap());
            let value = match (name, kind) {
                ("patient" | "_count", _) => continue,
                ("_sort", _) => "_lastUpdated",
                ("_id", _) => "x1",
                ("gender", _) => "female",
                (_, "date") => "2020",
                (_, "quantity" | "number") => "1",
                (_, "uri") => "http://example.org/x",
                (_, "reference") => "x1",
                _ => "x",
            };
            let r = h.get(&format!("/fhir/{ty}?{scope}{name}={value}"), &t).await;
            assert_eq!(r.status, 200, "{ty}?{name}={value} is declared: {}", r.text());
            checked += 1;
        }
        let r = h.get(&format!("/fhir/{ty}?{scope}undeclared-parameter=x"), &t).await;
        assert_eq!(r.status, 400, "{ty}: an undeclared parameter");
    }
    assert!(checked > 700, "{checked} declared parameters");
    println!("{checked} declared search parameters accepted");
}

/// The directory (Practitioner, Organization, Location...): shared staff
/// reference data, sealed at rest, searched by its parameters without
/// naming a patient, audited without naming one, and untouched by a
/// patient's consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_holds_who_treats_and_where() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "desk-directory");
    let clinician = h.token("clinician", "dr-directory");
    let tag = unique_tag();
    let practitioner = json!({"resourceType": "Practitioner", "active": true,
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("NPI{tag}")}],
        "name": [{"family": format!("Family{tag}"), "given": [format!("Given{tag}")], "prefix": ["Dr"]}],
        "telecom": [{"system": "email", "value": format!("mail{tag}@example.org")}],
        "address": [{"line": [format!("Street{tag}")], "city": format!("City{tag}")}]});
    let r = h.call("POST", "/fhir/Practitioner", Some(&registrar), &[], Some(&practitioner.to_string())).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let read = h.get(&format!("/fhir/Practitioner/{id}"), &clinician).await;
    assert_eq!(read.status, 200);
    assert_eq!(without_meta(&read.json()), practitioner, "reads back exactly as sent");

    // Found by name prefix and identifier, without a patient; not by another prefix.
    let family = format!("Family{tag}");
    for (q, found) in [
        (format!("name={}", &family[..10]), true),
        (format!("family:exact={family}"), true),
        (format!("identifier=http://hl7.org/fhir/sid/us-npi|NPI{tag}"), true),
        (format!("name=Other{tag}"), false),
    ] {
        let r = h.get(&format!("/fhir/Practitioner?{q}"), &clinician).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(ids(&r.json()) == [id.clone()], found, "{q}");
    }
    // A patient's accounting of disclosures names the staff member from the directory.
    let named = h.token_as("clinician", "dr-named", &format!("Practitioner/{id}"));
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &named).await.status, 200);
    let own = h.token_with("patient", "the-patient", &["patient/*.read"], Some(&patient));
    let accounting = h.get(&format!("/fhir/Patient/{patient}/$disclosures"), &own).await.json();
    let whos: Vec<String> = accounting["entry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["resource"]["agent"].as_array().unwrap().clone())
        .filter_map(|a| a["who"]["display"].as_str().map(str::to_owned))
        .collect();
    assert!(whos.contains(&format!("Dr Given{tag} Family{tag} (clinician)")), "{whos:?}");

    // A directory search is not a compartment search: `patient` is not its parameter.
    assert_eq!(h.get("/fhir/Practitioner?patient=x1", &clinician).await.status, 400);

    // Kept by registrars, changed with a version check, deleted by admins only.
    let mut changed = read.json();
    changed["active"] = json!(false);
    let put = h
        .call(
            "PUT",
            &format!("/fhir/Practitioner/{id}"),
            Some(&registrar),
            &[("if-match", "W/\"1\"")],
            Some(&changed.to_string()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let stale = h
        .call(
            "PUT",
            &format!("/fhir/Practitioner/{id}"),
            Some(&registrar),
            &[("if-match", "W/\"1\"")],
            Some(&changed.to_string()),
        )
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(h.call("DELETE", &format!("/fhir/Practitioner/{id}"), Some(&clinician), &[], None).await.status, 403);
    assert_eq!(h.call("DELETE", &format!("/fhir/Practitioner/{id}"), Some(&registrar), &[], None).await.status, 403);
    let history = h.get(&format!("/fhir/Practitioner/{id}/_history"), &clinician).await;
    assert_eq!(history.status, 200);
    assert_eq!(history.json()["entry"].as_array().map_or(0, Vec::len), 2);

    // Under an opt-in default no patient consent exists for it, and none is needed.
    let opt_in = Harness::start_with(vec![("MEDREC_CONSENT_DEFAULT".into(), "opt-in".into())]).await;
    let org = json!({"resourceType": "Organization", "name": format!("Clinic{tag}")});
    let r = opt_in
        .call("POST", "/fhir/Organization", Some(&opt_in.token("admin", "adm-dir")), &[], Some(&org.to_string()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let org_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        opt_in.get(&format!("/fhir/Organization/{org_id}"), &opt_in.token("clinician", "dr-opt-in")).await.status,
        200
    );

    // Sealed at rest, and audited without a patient.
    let raw = h.raw_dump().await;
    for canary in canary_strings(&tag) {
        assert!(!raw.contains(&canary), "{canary} stored in plaintext");
    }
    let events = h.audit_events_of("dr-directory").await;
    assert!(!events.is_empty());
    for e in &events {
        let text = e.to_string();
        assert!(!text.contains("Patient/"), "a directory access names no patient: {text}");
        assert!(canary_strings(&tag).iter().all(|c| !text.contains(c)), "{text}");
    }
}

/// `GET /fhir/{type}/_history`: every version of a type in one compartment,
/// newest first, from `_since` on, paged, as a client syncs incrementally;
/// with the compartment, consent and audit rules of a search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_types_history_syncs_a_compartment_incrementally() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-history");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let condition = |p: &str, onset: &str| {
        json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{p}")},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "onsetDateTime": onset})
    };
    let post = |body: Value| {
        let (h, t) = (&h, &t);
        async move { h.call("POST", "/fhir/Condition", Some(t), &[], Some(&body.to_string())).await.json() }
    };
    let first = post(condition(&patient, "2019-03-01")).await;
    let second = post(condition(&patient, "2020-03-01")).await;
    post(condition(&other, "2020-03-01")).await;
    let mut changed = first.clone();
    changed["onsetDateTime"] = json!("2019-04-01");
    let put = h
        .call(
            "PUT",
            &format!("/fhir/Condition/{}", first["id"].as_str().unwrap()),
            Some(&t),
            &[],
            Some(&changed.to_string()),
        )
        .await;
    assert_eq!(put.status, 200);
    let (a, b) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());

    let history = |q: String, t: String| {
        let h = &h;
        async move { h.get(&format!("/fhir/Condition/_history?{q}"), &t).await }
    };
    let all = history(format!("patient={patient}"), t.clone()).await;
    assert_eq!(all.status, 200, "{}", all.text());
    let all = all.json();
    assert_valid("type history", &all);
    assert_eq!(all["type"], "history");
    assert_eq!(all["total"], 3, "the other patient's record is not in this compartment");
    let entries: Vec<(String, String, String)> = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            (
                r["id"].as_str().unwrap().to_owned(),
                r["meta"]["versionId"].as_str().unwrap().to_owned(),
                e["request"]["method"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [(a, "2", "PUT"), (b, "1", "POST"), (a, "1", "POST")]
        .map(|(i, v, m)| (i.to_owned(), v.to_owned(), m.to_owned()));
    assert_eq!(entries, expected, "newest first");

    // From an instant on (inclusive): the second create and the update.
    let since = second["meta"]["lastUpdated"].as_str().unwrap().replace('+', "%2B");
    let recent = history(format!("patient={patient}&_since={since}"), t.clone()).await.json();
    assert_eq!(recent["total"], 2, "{recent}");
    // Paged one at a time, the next link carrying the query.
    let mut page = history(format!("patient={patient}&_count=1"), t.clone()).await.json();
    let mut seen = vec![];
    loop {
        seen.push(page["entry"][0]["resource"]["meta"]["versionId"].as_str().unwrap().to_owned());
        let Some(next) = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") else { break };
        let url = next["url"].as_str().unwrap().to_owned();
        page = h.client.send("GET", &url, &[("authorization", &format!("Bearer {t}"))], None).await.unwrap().json();
    }
    assert_eq!(seen, ["2", "1", "1"]);

    // The rules of a search: a compartment named, well-formed parameters,
    // another patient's token sees nothing, a refused clinician nothing.
    for q in ["".to_owned(), format!("patient={patient}&_since=yesterday"), format!("patient={patient}&code=1")] {
        assert_eq!(history(q.clone(), t.clone()).await.status, 400, "{q}");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let wrong = h.call(method, "/fhir/Condition/_history", Some(&t), &[], Some("{}")).await;
        assert_eq!(wrong.status, 405, "{method} on a type's history");
        assert_eq!(wrong.header("allow"), Some("GET"));
    }
    let theirs = h.token_with("patient", "pt-other", &["patient/*.rs"], Some(&other));
    assert_eq!(history(format!("patient={patient}"), theirs.clone()).await.status, 404);
    let own_view = history(String::new(), theirs).await.json();
    assert_eq!(own_view["total"], 1, "a patient token's compartment is its own");
    let refusal = medrec_e2e::consent(
        &patient,
        json!({"type": "permit", "provision": [{"type": "deny",
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-history-refused"}}]}]}),
    );
    let admin = h.token("admin", "adm-history");
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&admin), &[], Some(&refusal.to_string())).await.status, 201);
    let refused = history(format!("patient={patient}"), h.token("clinician", "dr-history-refused")).await;
    assert_eq!(refused.status, 403);
    assert!(h
        .audit_events_of("dr-history")
        .await
        .iter()
        .any(|e| e["subtype"][0]["code"] == "history-type" && e["outcome"] == "0"));

    // The directory's history needs no patient.
    let keeper = h.token("registrar", "desk-history");
    let org = json!({"resourceType": "Organization", "name": "Clinic"});
    assert_eq!(h.call("POST", "/fhir/Organization", Some(&keeper), &[], Some(&org.to_string())).await.status, 201);
    let dir = h.get("/fhir/Organization/_history", &t).await;
    assert_eq!(dir.status, 200, "{}", dir.text());
    assert!(dir.json()["total"].as_u64().unwrap() >= 1);
}

/// `GET /fhir/_history`: every version of every type in one patient's
/// compartment, newest first, from `_since` on (a client's incremental sync
/// of a record); types the caller's scopes exclude are left out, not
/// refused. `GET /fhir/Patient/_history` is the Patient's own versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compartments_history_syncs_every_type_the_caller_may_see() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-system-history");
    let mut person = canary_patient(&unique_tag());
    let patient = h.create_id(&t, &person).await;
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let subject = json!({"reference": format!("Patient/{patient}")});
    let condition = json!({"resourceType": "Condition", "subject": subject,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}});
    let observation = json!({"resourceType": "Observation", "status": "final", "subject": subject,
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
    let c = h.call("POST", "/fhir/Condition", Some(&t), &[], Some(&condition.to_string())).await;
    let o = h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&observation.to_string())).await;
    assert_eq!((c.status, o.status), (201, 201), "{} {}", c.text(), o.text());
    let (c, o) = (c.json(), o.json());
    person["id"] = json!(patient);
    person["gender"] = json!("other");
    let put = h.call("PUT", &format!("/fhir/Patient/{patient}"), Some(&t), &[], Some(&person.to_string())).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let mut other_obs = observation.clone();
    other_obs["subject"] = json!({"reference": format!("Patient/{other}")});
    assert_eq!(h.call("POST", "/fhir/Observation", Some(&t), &[], Some(&other_obs.to_string())).await.status, 201);

    let all = h.get(&format!("/fhir/_history?patient=Patient/{patient}"), &t).await;
    assert_eq!(all.status, 200, "{}", all.text());
    let all = all.json();
    assert_valid("system history", &all);
    let entries: Vec<(String, String, String)> = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            let ty = r["resourceType"].as_str().unwrap();
            assert!(e["fullUrl"].as_str().unwrap().ends_with(&format!("/fhir/{ty}/{}", r["id"].as_str().unwrap())));
            (ty.to_owned(), r["id"].as_str().unwrap().to_owned(), r["meta"]["versionId"].as_str().unwrap().to_owned())
        })
        .collect();
    let (cid, oid) = (c["id"].as_str().unwrap().to_owned(), o["id"].as_str().unwrap().to_owned());
    let expected = [
        ("Patient", patient.clone(), "2"),
        ("Observation", oid.clone(), "1"),
        ("Condition", cid.clone(), "1"),
        ("Patient", patient.clone(), "1"),
    ]
    .map(|(t, i, v)| (t.to_owned(), i, v.to_owned()));
    assert_eq!(entries, expected, "newest first, the other patient's records not in it");
    assert_eq!(all["total"], 4);

    let since = o["meta"]["lastUpdated"].as_str().unwrap().replace('+', "%2B");
    let recent = h.get(&format!("/fhir/_history?patient={patient}&_since={since}"), &t).await.json();
    assert_eq!(recent["total"], 2, "{recent}");
    let own = h.get(&format!("/fhir/Patient/_history?patient={patient}"), &t).await.json();
    assert_eq!(own["total"], 2, "the Patient's own versions: {own}");

    // A token scoped to Conditions sees the Patient and its Conditions only.
    let app = h.token_with("patient", "pt-history", &["patient/Patient.rs", "patient/Condition.rs"], Some(&patient));
    let scoped = h.get("/fhir/_history", &app).await.json();
    let types: Vec<&str> =
        scoped["entry"].as_array().unwrap().iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
    assert_eq!(types, ["Patient", "Condition", "Patient"], "{scoped}");
    assert_eq!(h.get(&format!("/fhir/_history?patient={other}"), &app).await.status, 404);

    for q in ["", "?patient=Patient/", "?patient=x&_since=today", "?patient=x&_type=Condition"] {
        let r = h.get(&format!("/fhir/_history{q}"), &t).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    let wrong = h.call("POST", "/fhir/_history", Some(&t), &[], Some("{}")).await;
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET")));
    assert!(h
        .audit_events_of("dr-system-history")
        .await
        .iter()
        .any(|e| e["subtype"][0]["code"] == "history-system" && e["outcome"] == "0"));
}

/// The directory's first records, sent at once by a loader: the first
/// opens the directory under a new data key, and those racing it are stored
/// under the winner's key, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_directory_creates_all_land() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "reg-race");
    let creates = (0..8).map(|i| {
        let (h, registrar) = (&h, &registrar);
        async move {
            let org = json!({"resourceType": "Organization", "name": format!("Clinic {i}")});
            let r = h.call("POST", "/fhir/Organization", Some(registrar), &[], Some(&org.to_string())).await;
            (r.status, r.json()["id"].as_str().map(str::to_owned))
        }
    });
    let created = futures_util::future::join_all(creates).await;
    assert!(created.iter().all(|(status, _)| *status == 201), "{created:?}");
    for (_, id) in created {
        assert_eq!(h.get(&format!("/fhir/Organization/{}", id.unwrap()), &registrar).await.status, 200);
    }
}

/// Every id a search finds, following its next links; and how many pages
/// carried a note that a bound cut them short.
async fn every_page(h: &Harness, token: &str, path: &str) -> (Vec<String>, usize) {
    let (mut found, mut cut, mut next) = (vec![], 0, Some(path.to_owned()));
    while let Some(path) = next {
        let r = h.get(&path, token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let bundle = r.json();
        assert_valid(&path, &bundle);
        found.extend(ids(&bundle));
        let notes = bundle["entry"].as_array().into_iter().flatten();
        cut += notes.filter(|e| e["resource"]["resourceType"] == "OperationOutcome").count();
        next = medrec_e2e::next_path(&bundle);
    }
    (found, cut)
}

/// A directory search walks the blind index of its most selective
/// parameter (identifiers, references, name prefixes), never the whole
/// directory: a page examines at most the scan bound and the next link
/// goes on; what the index cannot hold is tested on each candidate; the
/// index follows updates and deletes; `_sort` orders a result that fits
/// one walk and refuses a larger one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_search_walks_its_index() {
    let h = Harness::start_with(vec![("MEDREC_SEARCH_SCAN_PER_PAGE".into(), "4".into())]).await;
    let registrar = h.token("registrar", "desk-index");
    let admin = h.token("admin", "adm-index");
    let t = h.token("clinician", "dr-index");
    let tag = unique_tag();
    let npi = "http://hl7.org/fhir/sid/us-npi";
    let mut p = vec![];
    for i in 0..6 {
        let mut doc = json!({"resourceType": "Practitioner",
            "identifier": [{"system": npi, "value": format!("NPI{i}{tag}")}],
            "name": [{"family": format!("Zed{i}{tag}"), "given": [format!("Ann{tag}")]}]});
        if i == 0 {
            doc["identifier"]
                .as_array_mut()
                .unwrap()
                .push(json!({"system": "http://example.org/staff", "value": "S1"}));
        }
        if i == 1 {
            doc["address"] = json!([{"city": format!("Springfield{tag}")}]);
        }
        p.push(h.create_id(&registrar, &doc).await);
    }
    let org =
        json!({"resourceType": "Organization", "name": format!("Mercy{tag}"), "alias": [format!("St Jude{tag}")]});
    let o = h.create_id(&registrar, &org).await;
    let mut roles = vec![];
    for who in &p[..2] {
        let role = json!({"resourceType": "PractitionerRole", "practitioner": {"reference": format!("Practitioner/{who}")},
            "organization": {"reference": format!("Organization/{o}")}});
        roles.push(h.create_id(&registrar, &role).await);
    }
    let set = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>();
    let everyone = set(&p.iter().collect::<Vec<_>>());
    for (q, want, cut) in [
        // Indexed: one walk of the value's entries.
        (format!("Practitioner?identifier={npi}|NPI3{tag}"), set(&[&p[3]]), false),
        (format!("Practitioner?identifier=NPI3{tag}"), set(&[&p[3]]), false),
        (format!("Practitioner?identifier=http://example.org/staff|NPI3{tag}"), set(&[]), false),
        (format!("Practitioner?identifier=NPI2{tag},NPI4{tag}"), set(&[&p[2], &p[4]]), false),
        (format!("Practitioner?family=zed3{tag}"), set(&[&p[3]]), true),
        (format!("Practitioner?name:exact=Zed3{tag}"), set(&[&p[3]]), true),
        (format!("Practitioner?family=Zed&given=Ann{tag}&_count=2"), everyone.clone(), false),
        (format!("Practitioner?identifier={npi}|NPI1{tag}&address-city=Springfield{tag}"), set(&[&p[1]]), false),
        (format!("PractitionerRole?practitioner=Practitioner/{}", p[0]), set(&[&roles[0]]), false),
        (format!("PractitionerRole?practitioner={}", p[1]), set(&[&roles[1]]), false),
        (format!("PractitionerRole?organization=Organization/{o}"), set(&roles.iter().collect::<Vec<_>>()), false),
        ("PractitionerRole?practitioner=Practitioner/nobody".to_owned(), set(&[]), false),
        ("Organization?name=st%20ju".to_owned(), set(&[&o]), false),
        (format!("Practitioner?_id={},{}", p[2], p[5]), set(&[&p[2], &p[5]]), false),
        // Not indexed: every entry of the type is walked, a bounded page at a time.
        ("Practitioner?identifier=http://example.org/staff|".to_owned(), set(&[&p[0]]), true),
        ("Practitioner?name=Ze".to_owned(), everyone.clone(), true),
        (format!("Practitioner?name:contains=3{tag}"), set(&[&p[3]]), true),
        (format!("Practitioner?address-city=Springfield{tag}"), set(&[&p[1]]), true),
    ] {
        let (found, pages_cut) = every_page(&h, &t, &format!("/fhir/{q}")).await;
        assert_eq!(found.len(), set(&found.iter().collect::<Vec<_>>()).len(), "{q}: each once {found:?}");
        assert_eq!(set(&found.iter().collect::<Vec<_>>()), want, "{q}");
        // Six entries under one prefix, four examined per page: a page is cut.
        assert_eq!(pages_cut > 0, cut, "{q}: {pages_cut} pages cut short");
    }

    // `_sort` orders what one walk holds, across pages; beyond it, 400.
    let q = format!("/fhir/Practitioner?identifier=NPI1{tag},NPI2{tag},NPI4{tag}&_sort=-family&_count=1");
    let (found, _) = every_page(&h, &t, &q).await;
    assert_eq!(found, [p[4].clone(), p[2].clone(), p[1].clone()]);
    let r = h.get(&format!("/fhir/Practitioner?_id={},{},{}&_sort=family", p[5], p[0], p[3]), &t).await;
    assert_eq!(ids(&r.json()), [p[0].clone(), p[3].clone(), p[5].clone()]);
    let r = h.get("/fhir/Practitioner?name=zed&_sort=family", &t).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["issue"][0]["code"], "too-costly");

    // The index follows the resource: a changed identifier, a deleted entry.
    let mut changed = h.get(&format!("/fhir/Practitioner/{}", p[4]), &t).await.json();
    changed["identifier"][0]["value"] = json!(format!("NEW{tag}"));
    let path = format!("/fhir/Practitioner/{}", p[4]);
    assert_eq!(h.call("PUT", &path, Some(&registrar), &[], Some(&changed.to_string())).await.status, 200);
    assert_eq!(h.call("DELETE", &format!("/fhir/Practitioner/{}", p[5]), Some(&admin), &[], None).await.status, 204);
    for (q, want) in [
        (format!("identifier=NPI4{tag}"), vec![]),
        (format!("identifier=NEW{tag}"), vec![p[4].clone()]),
        (format!("identifier=NPI5{tag}"), vec![]),
    ] {
        assert_eq!(every_page(&h, &t, &format!("/fhir/Practitioner?{q}")).await.0, want, "{q}");
    }

    // The entries are keyed tokens: no identifier or name is stored in the clear.
    let raw = h.raw_dump().await;
    for plain in [format!("NPI3{tag}"), format!("Zed3{tag}"), format!("Mercy{tag}")] {
        assert!(!raw.to_lowercase().contains(&plain.to_lowercase()), "{plain} stored in plaintext");
    }
}

/// Appointment names its patient inside a backbone list
/// (`participant.actor`, beside practitioners and locations): exactly one
/// Patient there places it, and that patient's searches, includes and
/// `$everything` find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_lives_with_the_one_patient_among_its_participants() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-appointment");
    let registrar = h.token("registrar", "desk-appointment");
    let patient = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let doctor = h
        .create_id(
            &registrar,
            &json!({"resourceType": "Practitioner", "name": [{"family": format!("Doc{}", unique_tag())}]}),
        )
        .await;
    let appointment = |actors: &[String]| {
        json!({"resourceType": "Appointment", "status": "booked",
            "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T09:20:00Z",
            "participant": actors.iter().map(|a| json!({"actor": {"reference": a}, "status": "accepted"})).collect::<Vec<_>>()})
    };
    let (dr, pt) = (format!("Practitioner/{doctor}"), format!("Patient/{patient}"));
    let body = appointment(&[dr.clone(), pt.clone()]);
    let r = h.call("POST", "/fhir/Appointment", Some(&t), &[], Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(without_meta(&h.get(&format!("/fhir/Appointment/{id}"), &t).await.json()), body);

    for (q, found) in [
        (format!("patient={patient}"), true),
        (format!("patient={patient}&actor={dr}"), true),
        (format!("patient={patient}&practitioner={dr}"), true),
        (format!("patient={patient}&date=ge2026-12-10"), true),
        (format!("patient={patient}&date=lt2026-12-10"), false),
        (format!("patient={other}"), false),
    ] {
        let r = h.get(&format!("/fhir/Appointment?{q}"), &t).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_valid(&q, &r.json());
        assert_eq!(ids(&r.json()).contains(&id), found, "{q}");
    }
    let included = h.get(&format!("/fhir/Appointment?patient={patient}&_include=Appointment:patient"), &t).await.json();
    assert!(ids(&included).contains(&patient), "the included Patient: {included}");
    let revincluded = h.get(&format!("/fhir/Patient?_id={patient}&_revinclude=Appointment:patient"), &t).await.json();
    assert!(ids(&revincluded).contains(&id), "the revincluded Appointment: {revincluded}");
    let everything = h.get(&format!("/fhir/Patient/{patient}/$everything"), &t).await.json();
    assert!(ids(&everything).contains(&id), "in $everything");

    // No patient, two patients, or a move to another patient: refused at the element.
    for (actors, code) in
        [(vec![dr.clone()], "required"), (vec![pt.clone(), format!("Patient/{other}")], "business-rule")]
    {
        let r = h.call("POST", "/fhir/Appointment", Some(&t), &[], Some(&appointment(&actors).to_string())).await;
        assert_eq!(r.status, 422, "{actors:?}: {}", r.text());
        let issue = &r.json()["issue"][0];
        assert_eq!(
            (issue["code"].as_str(), issue["expression"][0].as_str()),
            (Some(code), Some("Appointment.participant.actor"))
        );
    }
    let mut moved = appointment(&[dr, format!("Patient/{other}")]);
    moved["id"] = json!(id);
    let r = h.call("PUT", &format!("/fhir/Appointment/{id}"), Some(&t), &[], Some(&moved.to_string())).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("another patient's compartment"), "{}", r.text());
}
