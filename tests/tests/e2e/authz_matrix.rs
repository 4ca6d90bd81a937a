//! The authorization matrix, generated from the API's route table (every
//! HttpApi route of `template.yaml`, so a new endpoint cannot be forgotten):
//! every route × {no token, each role, a patient token for the patient and
//! for another, a read-only patient token, a clinician the patient's consent
//! refuses, the same with break-glass, with a launch context for the
//! patient, a login that does not say who it is, SMART scopes narrowing a
//! clinician to reads, to one type, and to a granular constraint medrec
//! cannot enforce}. The expected status of each cell is data
//! (`tests/authz/matrix.tsv`) and is asserted exactly; invariants that no
//! table edit can waive are asserted on top (no token reaches data, another
//! patient's token and a refused clinician see nothing of the patient, not
//! even an id in a search or an error). `MEDREC_AUTHZ_WRITE=1` rewrites the
//! table from what the stack answers, for review in the diff.

use medrec_e2e::{canary_patient, canary_strings, unique_tag, Harness};
use medrec_edge::aws::schema;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TABLE: &str = "tests/authz/matrix.tsv";
/// The batch route: its cells name each entry's status.
const BATCH: &str = "POST /fhir";
const CALLERS: &[&str] = &[
    "none",
    "clinician",
    "registrar",
    "auditor",
    "admin",
    "patient-own",
    "patient-other",
    "consent-refused",
    "break-glass",
    "scope-read-only",
    "scope-observation",
    "patient-read-only",
    "scope-granular",
    "refused-in-launch",
    "refused-no-fhir-user",
];
/// Routes any caller may use.
const PUBLIC: &[&str] = &["GET /fhir/metadata", "GET /health", "GET /openapi.json"];

struct World {
    own: String,
    tokens: BTreeMap<&'static str, String>,
}

fn observation(patient: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
}

fn body_for(ty: &str, patient: &str) -> Value {
    match ty {
        "Observation" => observation(patient),
        "Immunization" => json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
            "patient": {"reference": format!("Patient/{patient}")}, "occurrenceDateTime": "2026-11-20T09:00:00Z",
            "primarySource": true}),
        "Consent" => medrec_e2e::consent(patient, json!({"type": "permit"})),
        "Condition" => json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "subject": {"reference": format!("Patient/{patient}")}, "onsetDateTime": "2019-03-01"}),
        "DocumentReference" => json!({"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": format!("Patient/{patient}")},
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]}),
        "Binary" => json!({"resourceType": "Binary", "contentType": "text/plain",
            "securityContext": {"reference": format!("Patient/{patient}")}, "data": "aGVsbG8="}),
        _ => json!({"resourceType": "Patient", "name": [{"family": "Matrix"}], "birthDate": "1970-01-01"}),
    }
}

/// A fresh resource of `ty` in the patient's compartment (created by an
/// admin), so a mutating cell never depends on another.
async fn fresh(h: &Harness, w: &World, ty: &str) -> String {
    if ty == "Patient" {
        // Another patient (their own compartment), with PHI of their own.
        return h.create_id(&w.tokens["admin"], &canary_patient(&unique_tag())).await;
    }
    let r = h
        .call("POST", &format!("/fhir/{ty}"), Some(&w.tokens["admin"]), &[], Some(&body_for(ty, &w.own).to_string()))
        .await;
    assert_eq!(r.status, 201, "{ty}: {}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

/// A fresh break-glass access awaiting review (its audit record's id), to
/// a patient of its own, so each review cell has its own.
async fn fresh_break_glass(h: &Harness, w: &World) -> String {
    let glass = [
        ("x-purpose-of-use", "ETREAT"),
        ("x-break-glass-reason-code", "patient-unconscious"),
        ("x-break-glass-reason", "unconscious patient in the ED"),
    ];
    let patient = h.create_id(&w.tokens["admin"], &canary_patient(&unique_tag())).await;
    let token = h.token("clinician", "dr-glass");
    assert_eq!(h.call("GET", &format!("/fhir/Patient/{patient}"), Some(&token), &glass, None).await.status, 200);
    let out = h
        .stack
        .clients
        .dynamodb
        .query()
        .table_name(h.table("RecordsTable"))
        .key_condition_expression("pk = :pk AND begins_with(sk, :bg)")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(schema::patient_pk(&patient)))
        .expression_attribute_values(
            ":bg",
            aws_sdk_dynamodb::types::AttributeValue::S(schema::BREAK_GLASS_PREFIX.into()),
        )
        .send()
        .await
        .unwrap();
    out.items()[0]["sk"].as_s().unwrap().trim_start_matches(schema::BREAK_GLASS_PREFIX).to_owned()
}

/// `$validate` (type or instance level): the validation function's routes.
fn is_validate(method: &str, template: &str) -> bool {
    method == "POST"
        && (template == "/fhir/{type}/{id}"
            || template.ends_with("{operation}") && template.starts_with("/fhir/{type}"))
}

/// The request a cell makes: path with parameters filled in, query, body.
async fn request(
    h: &Harness,
    w: &World,
    method: &str,
    template: &str,
) -> (String, Option<String>, Vec<(String, String)>) {
    let segments: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let validate = is_validate(method, template);
    let ty = match segments.get(1).copied() {
        // $validate is tried on a Patient, the generic record routes on a
        // Condition (`every_record_type_answers_each_kind_of_caller` tries
        // every type of the table).
        Some("{type}") if validate => "Patient",
        Some("{type}") => "Condition",
        // A Binary is read from a document, and created on the patient.
        Some("Binary") if method == "GET" => "DocumentReference",
        Some(t) => t,
        None => "",
    };
    // Type-level $validate has its operation where other routes have {id}.
    let needs_id = template.contains("{id}") && (!validate || template.contains("{operation}"));
    let id = match (needs_id, ty, method) {
        (false, _, _) => String::new(),
        (true, "AuditEvent", _) => fresh_break_glass(h, w).await,
        // Reads use the patient's own resources; writes get fresh ones.
        (true, "Patient", "GET") => w.own.clone(),
        (true, t, _) => fresh(h, w, t).await,
    };
    let id = if template.starts_with("/fhir/Binary/") {
        let doc = h.get(&format!("/fhir/DocumentReference/{id}"), &w.tokens["admin"]).await.json();
        doc["content"][0]["attachment"]["url"].as_str().unwrap().trim_start_matches("Binary/").to_owned()
    } else {
        id
    };
    let operation = if method == "GET" { "$everything" } else { "$validate" };
    let mut path = if needs_id { template.replace("{id}", &id) } else { template.replace("{id}", operation) };
    path = path.replace("{vid}", "1").replace("{type}", ty).replace("{operation}", operation);
    let mut headers = vec![];
    let mut body = None;
    let compartment_query = if ty == "Patient" { format!("_id={}", w.own) } else { format!("patient={}", w.own) };
    match (method, needs_id) {
        ("GET", false) if path.ends_with("/AuditEvent") => path.push_str(&format!("?patient={}", w.own)),
        ("GET", false) if !PUBLIC.contains(&format!("{method} {template}").as_str()) => {
            path.push_str(&format!("?{compartment_query}"))
        }
        ("POST", false) if path.ends_with("/_search") => {
            headers.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
            body = Some(compartment_query.clone());
        }
        ("POST", true) if path.ends_with("/$review") => {
            body = Some(
                json!({"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": "justified"}]})
                    .to_string(),
            )
        }
        // A batch reads the patient and searches their record: each
        // entry is answered as alone, inside a 200.
        ("POST", false) if template == "/fhir" => {
            let entries = json!([{"request": {"method": "GET", "url": format!("Patient/{}", w.own)}},
                {"request": {"method": "GET", "url": format!("Condition?patient={}", w.own)}}]);
            body = Some(json!({"resourceType": "Bundle", "type": "batch", "entry": entries}).to_string());
        }
        ("POST", _) => body = Some(body_for(ty, &w.own).to_string()),
        ("PUT", true) => {
            let current = h.get(&format!("/fhir/{ty}/{id}"), &w.tokens["admin"]).await.json();
            headers.push(("if-match".into(), "W/\"1\"".into()));
            body = Some(current.to_string());
        }
        ("PUT", false) => {
            // Conditional update: matches one fresh resource.
            let target = fresh(h, w, ty).await;
            path.push_str(&format!("?_id={target}"));
            body = Some(body_for(ty, &w.own).to_string());
        }
        ("DELETE", false) => {
            let target = fresh(h, w, ty).await;
            path.push_str(&format!("?_id={target}"));
        }
        ("PATCH", true) => {
            headers.push(("content-type".into(), "application/json-patch+json".into()));
            headers.push(("if-match".into(), "W/\"1\"".into()));
            body = Some(json!([{"op": "test", "path": "/id", "value": id}]).to_string());
        }
        _ => {}
    }
    (path, body, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_kind_of_caller_as_the_table_says() {
    let h = Harness::start().await;
    let admin = h.token("admin", "matrix-admin");
    let tag = unique_tag();
    let own = h.create_id(&admin, &canary_patient(&tag)).await;
    let other = h.create_id(&admin, &canary_patient(&unique_tag())).await;
    // The patient's consent refuses one clinician.
    let consent = medrec_e2e::consent(
        &own,
        json!({"type": "permit", "provision": [{"type": "deny",
        "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-refused"}}]}]}),
    );
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&admin), &[], Some(&consent.to_string())).await.status, 201);
    let tokens: BTreeMap<&'static str, String> = BTreeMap::from([
        ("clinician", h.token("clinician", "dr-matrix")),
        ("registrar", h.token("registrar", "front-desk")),
        ("auditor", h.token("auditor", "privacy-officer")),
        ("admin", admin.clone()),
        ("patient-own", h.token_with("patient", "pat-own", &["patient/*.cruds"], Some(&own))),
        ("patient-other", h.token_with("patient", "pat-other", &["patient/*.cruds"], Some(&other))),
        ("consent-refused", h.token("clinician", "dr-refused")),
        ("break-glass", h.token("clinician", "dr-refused")),
        // SMART scope patterns narrowing a clinician: read and search only,
        // and one resource type only.
        ("scope-read-only", h.token_with("clinician", "dr-reader", &["user/*.rs"], None)),
        ("scope-observation", h.token_with("clinician", "dr-labs", &["user/Observation.rs"], None)),
        // A patient app that may only read, and a SMART v2 granular scope,
        // whose search constraint medrec does not enforce: it grants nothing.
        ("patient-read-only", h.token_with("patient", "pat-reader", &["patient/*.rs"], Some(&own))),
        (
            "scope-granular",
            h.token_with("clinician", "dr-granular", &["user/Observation.rs?category=laboratory"], None),
        ),
        // The refused clinician with a SMART launch context for the patient
        // (not the patient's own identity), and a login that does not say
        // who its user is: neither escapes the refusal.
        ("refused-in-launch", h.token_with("clinician", "dr-refused", &["user/*.cruds"], Some(&own))),
        ("refused-no-fhir-user", h.token_without_fhir_user("clinician", "dr-unnamed")),
    ]);
    let w = World { own: own.clone(), tokens };
    let refusing = h.get(&format!("/fhir/Consent?patient={own}"), &admin).await.json()["entry"][0]["resource"].clone();
    let mut lifted = refusing.clone();
    lifted["provision"] = json!({"type": "permit"});
    let path = format!("/fhir/Consent/{}", refusing["id"].as_str().unwrap());
    let escalation = h
        .call("PUT", &path, Some(&w.tokens["consent-refused"]), &[("if-match", "W/\"1\"")], Some(&lifted.to_string()))
        .await;
    assert_eq!(escalation.status, 403, "a refused clinician cannot lift the consent that refuses them");

    let mut routes: Vec<(String, String)> = h
        .stack
        .template
        .functions
        .iter()
        .flat_map(|f| f.routes.iter().map(|r| (r.method.clone(), r.path.clone())))
        // Unrouted requests (405/404 for everyone) are `contract.rs`'s.
        .filter(|(_, path)| path != medrec_infra::template::DEFAULT_ROUTE)
        .collect();
    routes.sort();
    routes.dedup();
    assert!(routes.len() >= 50, "{} routes", routes.len());

    let mut actual: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let mut leaks = vec![];
    for (method, template) in &routes {
        for caller in CALLERS {
            let (path, body, mut headers) = request(&h, &w, method, template).await;
            if *caller == "break-glass" {
                headers.push(("x-purpose-of-use".into(), "ETREAT".into()));
                headers.push(("x-break-glass-reason-code".into(), "patient-unconscious".into()));
                headers.push(("x-break-glass-reason".into(), "unconscious patient in the ED".into()));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let token = w.tokens.get(caller).map(String::as_str);
            let r = h.call(method, &path, token, &headers, body.as_deref()).await;
            let route = format!("{method} {template}");
            // A batch is 200 whatever its entries answer: the cell names
            // each entry's status, and what the caller reached is the
            // first entry that succeeded.
            let entries: Vec<u16> = match r.status {
                200 if route == BATCH => r.json()["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["response"]["status"].as_str().unwrap()[..3].parse().unwrap())
                    .collect(),
                _ => vec![],
            };
            let status = entries.iter().copied().find(|s| (200..300).contains(s)).or(entries.first().copied());
            let status = status.unwrap_or(r.status);
            let cell = match entries.as_slice() {
                [] => r.status.to_string(),
                e => format!("{} {}", r.status, e.iter().map(u16::to_string).collect::<Vec<_>>().join(",")),
            };
            actual.insert((method.clone(), template.clone(), caller.to_string()), cell);
            let text = String::from_utf8_lossy(&r.body).to_string();
            // Invariants no table edit can waive.
            if *caller == "none" && !PUBLIC.contains(&route.as_str()) && status != 401 {
                leaks.push(format!("{route} answered {} without a token", status));
            }
            // A read by id of the patient's data (a Binary's bytes name no id).
            let saw_id = (method == "GET" || route == BATCH)
                && (text.contains(&own) || (template.contains("{id}") && status == 200));
            if matches!(*caller, "patient-other" | "consent-refused" | "refused-in-launch" | "refused-no-fhir-user")
                && !PUBLIC.contains(&route.as_str())
                && (saw_id || canary_strings(&tag).iter().any(|s| text.contains(s)))
            {
                leaks.push(format!("{route}: {caller} saw the patient ({})", status));
            }
            if *caller == "auditor"
                && (200..300).contains(&status)
                && !route.contains("AuditEvent")
                && !route.contains("$disclosures")
                && !PUBLIC.contains(&route.as_str())
            {
                leaks.push(format!("{route}: the auditor reached clinical data ({})", status));
            }
            let ok = (200..300).contains(&status) && !PUBLIC.contains(&route.as_str());
            let reads =
                method == "GET" || route.ends_with("_search") || route == BATCH || is_validate(method, template);
            if matches!(*caller, "scope-read-only" | "patient-read-only") && ok && !reads {
                leaks.push(format!("{route}: {caller} wrote ({})", status));
            }
            if *caller == "scope-granular" && ok {
                leaks.push(format!("{route}: an unenforceable scope was honoured ({})", status));
            }
            if *caller == "scope-observation" && ok && !(route.contains("Observation") && reads) {
                leaks.push(format!("{route}: an Observation read scope reached more ({})", status));
            }
            if r.status >= 500 || entries.iter().any(|s| *s >= 500) {
                leaks.push(format!("{route} as {caller}: {} {text:.200}", status));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");

    let root = medrec_infra::emulator::repo_root();
    let rendered: String = std::iter::once("# method\troute\tcaller\tstatus\n".to_owned())
        .chain(actual.iter().map(|((m, p, c), s)| format!("{m}\t{p}\t{c}\t{s}\n")))
        .collect();
    if std::env::var("MEDREC_AUTHZ_WRITE").is_ok() {
        std::fs::create_dir_all(root.join("tests/authz")).unwrap();
        std::fs::write(root.join(TABLE), &rendered).unwrap();
    }
    let expected =
        std::fs::read_to_string(root.join(TABLE)).expect("tests/authz/matrix.tsv (MEDREC_AUTHZ_WRITE=1 writes it)");
    let diff: Vec<String> = expected
        .lines()
        .zip(rendered.lines())
        .filter(|(e, a)| e != a)
        .map(|(e, a)| format!("expected {e:?}, got {a:?}"))
        .collect();
    assert!(
        diff.is_empty() && expected.lines().count() == rendered.lines().count(),
        "{diff:#?}\n{} vs {} rows",
        expected.lines().count(),
        rendered.lines().count()
    );
    println!(
        "authorization matrix: {} routes x {} callers = {} cells, 0 leaks",
        routes.len(),
        CALLERS.len(),
        actual.len()
    );
}

/// Every record type of the resource table (the generic routes serve them
/// all with one code path; the table above tries them on a Condition): each
/// kind of caller that must be kept out is kept out of each type, on
/// create, read and search, and the patient reads their own. Directory
/// types answer each caller as staff reference data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_answers_each_kind_of_caller() {
    let h = Harness::start().await;
    let admin = h.token("admin", "sweep-admin");
    let own = h.create_id(&admin, &canary_patient(&unique_tag())).await;
    let other = h.create_id(&admin, &canary_patient(&unique_tag())).await;
    let refusal = medrec_e2e::consent(
        &own,
        json!({"type": "permit", "provision": [{"type": "deny",
        "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-sweep-refused"}}]}]}),
    );
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&admin), &[], Some(&refusal.to_string())).await.status, 201);
    let callers = [
        ("none", None),
        ("auditor", Some(h.token("auditor", "sweep-auditor"))),
        ("registrar", Some(h.token("registrar", "sweep-registrar"))),
        ("patient-other", Some(h.token_with("patient", "sweep-other", &["patient/*.cruds"], Some(&other)))),
        ("consent-refused", Some(h.token("clinician", "dr-sweep-refused"))),
        ("scope-observation", Some(h.token_with("clinician", "dr-sweep-labs", &["user/Observation.rs"], None))),
    ];
    let own_token = h.token_with("patient", "sweep-own", &["patient/*.rs"], Some(&own));
    let mut seen = std::collections::BTreeSet::new();
    let mut cells = 0;
    for (file, def, example) in medrec_e2e::record_examples() {
        let ty = def.name.as_str();
        let body = medrec_e2e::placed_in(def, example, &own).to_string();
        let created = h.call("POST", &format!("/fhir/{ty}"), Some(&admin), &[], Some(&body)).await;
        if created.status != 201 || !seen.insert(ty) {
            continue;
        }
        let id = created.json()["id"].as_str().unwrap().to_owned();
        if def.compartment.is_none() {
            // The directory is staff reference data, in no one's compartment:
            // a patient's consent does not reach it, a patient token does not
            // read it, and what each caller meets is exactly this.
            let requests = [
                ("POST", format!("/fhir/{ty}"), Some(body.as_str())),
                ("GET", format!("/fhir/{ty}/{id}"), None),
                ("GET", format!("/fhir/{ty}?_id={id}"), None),
            ];
            for (caller, token) in &callers {
                for (method, path, body) in &requests {
                    let r = h.call(method, path, token.as_deref(), &[], *body).await;
                    let expected = match (*caller, *method) {
                        ("none", _) => 401,
                        ("registrar", "POST") => 201,
                        ("registrar" | "consent-refused", "GET") => 200,
                        _ => 403,
                    };
                    assert_eq!(r.status, expected, "{file}: {caller} {method} {path}");
                    cells += 1;
                }
            }
            assert_eq!(h.get(&format!("/fhir/{ty}/{id}"), &own_token).await.status, 403, "{ty}: not a patient's");
            continue;
        }
        for (caller, token) in &callers {
            let kept_out = |status: u16| match *caller {
                "none" => status == 401,
                "patient-other" => matches!(status, 403 | 404),
                "scope-observation" if ty == "Observation" => true,
                _ => status == 403,
            };
            let requests = [
                ("POST", format!("/fhir/{ty}"), Some(body.as_str())),
                ("GET", format!("/fhir/{ty}/{id}"), None),
                ("GET", format!("/fhir/{ty}?patient={own}"), None),
            ];
            for (method, path, body) in &requests {
                let r = h.call(method, path, token.as_deref(), &[], *body).await;
                let reads_allowed = *caller == "scope-observation" && ty == "Observation" && *method == "GET";
                assert!(
                    kept_out(r.status) && (reads_allowed || !(200..300).contains(&r.status)),
                    "{file}: {caller} {method} {path} answered {}",
                    r.status
                );
                cells += 1;
            }
        }
        assert_eq!(
            h.get(&format!("/fhir/{ty}/{id}"), &own_token).await.status,
            200,
            "{ty}: the patient reads their own"
        );
        let write = h.call("POST", &format!("/fhir/{ty}"), Some(&own_token), &[], Some(&body)).await;
        assert_eq!(write.status, 403, "{ty}: a read-only patient app writes nothing");
    }
    assert!(seen.len() >= 55, "{} types swept", seen.len());
    println!(
        "record types: {} types x {} callers x 3 interactions = {cells} cells kept out",
        seen.len(),
        callers.len()
    );
}
