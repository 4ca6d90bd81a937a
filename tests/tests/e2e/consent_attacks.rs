//! The security review's findings, each replayed over HTTP against the
//! local stack: a refused clinician lifting the refusal (through a consent
//! it did not name, through break-glass, through a launch context or a
//! token that does not say who it is), disclosures missing from the
//! accounting, unbounded patches and searches, write paths that read. Each
//! test failed on the code before the fix.

use medrec_e2e::{canary_patient, consent, unique_tag, Harness};
use medrec_edge::aws::schema;
use serde_json::{json, Value};

const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";
const LOINC: &str = "http://loinc.org";

fn observation(patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-23T08:30:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    })
}

fn actor(reference: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
        "reference": {"reference": reference}})
}

/// Everything but what `deny` names (a permit with one nested deny).
fn refusing(patient: &str, deny: Value) -> Value {
    let mut nested = deny;
    nested["type"] = json!("deny");
    consent(patient, json!({"type": "permit", "provision": [nested]}))
}

const GLASS: [(&str, &str); 3] = [
    ("x-purpose-of-use", "ETREAT"),
    ("x-break-glass-reason-code", "patient-unconscious"),
    ("x-break-glass-reason", "collapsed in the waiting room, needs history"),
];

async fn created(h: &Harness, token: &str, path: &str, body: &Value) -> String {
    let r = h.call("POST", path, Some(token), &[], Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{path}: {}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn patch(h: &Harness, token: &str, path: &str, version: u64, ops: &Value, extra: &[(&str, &str)]) -> u16 {
    let etag = format!("W/\"{version}\"");
    let mut headers = vec![("content-type", "application/json-patch+json"), ("if-match", etag.as_str())];
    headers.extend_from_slice(extra);
    h.call("PATCH", path, Some(token), &headers, Some(&ops.to_string())).await.status
}

/// Finding 1: a refusal limited to Observations did not protect the Consent
/// itself; the refused clinician PATCHed it to inactive and read on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_one_data_class_still_protects_the_consent() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let (dr1, dr2) = (h.token("clinician", "dr-1"), h.token("clinician", "dr-2"));
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let obs = created(&h, &dr1, "/fhir/Observation", &observation(&patient, "2339-0")).await;
    let obs_path = format!("/fhir/Observation/{obs}");
    let deny = refusing(
        &patient,
        json!({"actor": [actor("Practitioner/dr-2")], "class": [{"system": RESOURCE_TYPES, "code": "Observation"}]}),
    );
    let consent_id = created(&h, &registrar, "/fhir/Consent", &deny).await;
    let consent_path = format!("/fhir/Consent/{consent_id}");
    assert_eq!(h.get(&obs_path, &dr2).await.status, 403);

    let lift = json!([{"op": "replace", "path": "/status", "value": "inactive"}]);
    assert_eq!(patch(&h, &dr2, &consent_path, 1, &lift, &[]).await, 403, "PATCH to inactive");
    let mut inactive = h.get(&consent_path, &registrar).await.json();
    inactive["status"] = json!("inactive");
    let put = h.call("PUT", &consent_path, Some(&dr2), &[("if-match", "W/\"1\"")], Some(&inactive.to_string())).await;
    assert_eq!(put.status, 403, "PUT to inactive");
    assert_eq!(h.call("DELETE", &consent_path, Some(&dr2), &[], None).await.status, 403, "DELETE");
    let permit_all = consent(&patient, json!({"type": "permit"}));
    let post = h.call("POST", "/fhir/Consent", Some(&dr2), &[], Some(&permit_all.to_string())).await;
    assert_eq!(post.status, 403, "a new consent");
    assert_eq!(h.get(&obs_path, &dr2).await.status, 403, "still refused");
    assert_eq!(h.get(&consent_path, &registrar).await.json()["meta"]["versionId"], "1", "the consent is unchanged");

    // A clinician nobody refused records no consents either: that is the
    // patient's, or the privacy office's (consent authority).
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&dr1), &[], Some(&permit_all.to_string())).await.status, 403);

    // A registrar the patient names in a refusal, even of data registrars
    // never read, cannot change the patient's consents; another can.
    let named = refusing(
        &patient,
        json!({"actor": [actor("Practitioner/desk-2")], "class": [{"system": RESOURCE_TYPES, "code": "Observation"}]}),
    );
    let named_id = created(&h, &registrar, "/fhir/Consent", &named).await;
    let desk2 = h.token("registrar", "desk-2");
    let named_path = format!("/fhir/Consent/{named_id}");
    assert_eq!(patch(&h, &desk2, &named_path, 1, &lift, &[]).await, 403);
    assert_eq!(patch(&h, &registrar, &named_path, 1, &lift, &[]).await, 200);
    // The patient withdraws their own consent themselves.
    let own = h.token_with("patient", "pat", &["patient/Consent.rus"], Some(&patient));
    assert_eq!(patch(&h, &own, &consent_path, 1, &lift, &[]).await, 200);
    assert_eq!(h.get(&obs_path, &dr2).await.status, 200, "withdrawn by the patient");
}

/// Finding 2: one break-glass PATCH set the consent inactive for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_read_only_and_leaves_consents_alone() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let dr2 = h.token("clinician", "dr-2");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let consent_id = created(&h, &registrar, "/fhir/Consent", &consent(&patient, json!({"type": "deny"}))).await;
    let consent_path = format!("/fhir/Consent/{consent_id}");
    let patient_path = format!("/fhir/Patient/{patient}");
    // A refusal of everyone refuses the registrar too: the patient manages it.
    let own = h.token_with("patient", "pat", &["patient/*.rs"], Some(&patient));
    assert_eq!(h.get(&consent_path, &registrar).await.status, 403);
    let lift = json!([{"op": "replace", "path": "/status", "value": "inactive"}]);
    assert_eq!(patch(&h, &dr2, &consent_path, 1, &lift, &GLASS).await, 403, "no PATCH under break-glass");
    let mut inactive = h.get(&consent_path, &own).await.json();
    inactive["status"] = json!("inactive");
    let mut headers = GLASS.to_vec();
    headers.push(("if-match", "W/\"1\""));
    let put = h.call("PUT", &consent_path, Some(&dr2), &headers, Some(&inactive.to_string())).await;
    assert_eq!(put.status, 403, "no PUT under break-glass: {}", String::from_utf8_lossy(&put.body));
    let write =
        h.call("POST", "/fhir/Observation", Some(&dr2), &GLASS, Some(&observation(&patient, "1").to_string())).await;
    assert_eq!(write.status, 403, "no writes of any kind");
    assert!(write.json().to_string().contains("read-only"));
    // The emergency read works, once, and the next ordinary read is refused again.
    assert_eq!(h.call("GET", &patient_path, Some(&dr2), &GLASS, None).await.status, 200);
    assert_eq!(h.get(&patient_path, &dr2).await.status, 403);
    assert_eq!(h.get(&consent_path, &own).await.json()["status"], "active");
}

/// Finding 3: a Patient search left an audit record without the patient,
/// so `$disclosures` and `AuditEvent?patient=` never showed it; the same
/// for conditional operations and break-glass searches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_conditional_operations_reach_the_accounting_of_disclosures() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let auditor = h.token("auditor", "privacy-officer");
    let snoop = h.token("clinician", "dr-snoop");
    let tag = unique_tag();
    let patient = h.create_id(&registrar, &canary_patient(&tag)).await;
    let other = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let found = h.get(&format!("/fhir/Patient?_id={patient},{other}"), &snoop).await.json();
    assert_eq!(found["total"], 2);
    let mut current = h.get(&format!("/fhir/Patient/{patient}"), &registrar).await.json();
    current["active"] = json!(true);
    let cond = h
        .call(
            "PUT",
            &format!("/fhir/Patient?identifier=urn:medrec:test-mrn|MRN{tag}"),
            Some(&registrar),
            &[],
            Some(&current.to_string()),
        )
        .await;
    assert_eq!(cond.status, 200, "{}", String::from_utf8_lossy(&cond.body));
    let glass = h
        .call("GET", &format!("/fhir/Patient?_id={patient}"), Some(&h.token("clinician", "dr-ed")), &GLASS, None)
        .await;
    assert_eq!(glass.status, 200);

    let disclosures = h.get(&format!("/fhir/Patient/{patient}/$disclosures"), &auditor).await.json();
    let entries: Vec<&Value> = disclosures["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    let by = |sub: &str, how: &str| {
        entries
            .iter()
            .filter(|e| e["agent"][0]["who"]["identifier"]["value"] == sub && e["subtype"][0]["code"] == how)
            .count()
    };
    assert_eq!(by("dr-snoop", "search-type"), 1, "the snooping search is disclosed");
    assert_eq!(by("front-desk", "search-type"), 1, "the conditional update's match is disclosed");
    assert_eq!(by("dr-ed", "search-type"), 1, "the break-glass search is disclosed");
    let searched = h.get(&format!("/fhir/AuditEvent?patient={patient}&subtype=search-type"), &auditor).await.json();
    assert_eq!(searched["total"], 3);
    // The other patient's accounting has the snoop's search too, on its own.
    let theirs = h.get(&format!("/fhir/Patient/{other}/$disclosures"), &auditor).await.json();
    assert_eq!(theirs["entry"].as_array().unwrap().len(), 1);
    // The break-glass alert names the patient.
    let alerts: Vec<Value> = h
        .scan(&h.table("OutboxTable"))
        .await
        .into_iter()
        .filter(|i| i["type"].as_s().is_ok_and(|t| t == "BreakGlassUsed"))
        .map(|i| serde_json::from_str(i["detail"].as_s().unwrap()).unwrap())
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["patient"], patient.as_str());
    assert_eq!(alerts[0]["reasonCode"], "patient-unconscious");
    assert!(!alerts[0].to_string().contains("waiting room"), "no free text in the event");
}

/// Finding 4: ~25 `copy` operations doubled the document each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_is_bounded_in_operations_and_size() {
    let h = Harness::start_with(vec![("MEDREC_PATCH_MAX_OPERATIONS".into(), "30".into())]).await;
    let registrar = h.token("registrar", "front-desk");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let path = format!("/fhir/Patient/{patient}");
    // The doubling attack: copy the whole name list into itself, 25 times.
    let doubling: Vec<Value> = (0..25).map(|_| json!({"op": "copy", "from": "/name", "path": "/name/0"})).collect();
    let r = h
        .call(
            "PATCH",
            &path,
            Some(&registrar),
            &[("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")],
            Some(&Value::Array(doubling).to_string()),
        )
        .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json().to_string().contains("too-costly"));
    // At the operation bound and one above.
    let tests = |n: usize| {
        Value::Array((0..n).map(|_| json!({"op": "test", "path": "/resourceType", "value": "Patient"})).collect())
    };
    assert_eq!(patch(&h, &registrar, &path, 1, &tests(30), &[]).await, 200);
    let over = patch(&h, &registrar, &path, 2, &tests(31), &[]).await;
    assert_eq!(over, 422);
    // The stack is still answering, and nothing was stored.
    let after = h.get(&path, &registrar).await;
    assert_eq!((after.status, after.json()["meta"]["versionId"].clone()), (200, json!("2")));
}

/// Finding 5: the consent bypass followed the token's `patient` claim, so
/// a clinician's SMART launch context for P ignored P's consents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_context_does_not_make_a_clinician_the_patient() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    created(&h, &registrar, "/fhir/Consent", &refusing(&patient, json!({"actor": [actor("Practitioner/dr-2")]}))).await;
    let launched = h.token_with("clinician", "dr-2", &["user/*.cruds"], Some(&patient));
    for path in [format!("/fhir/Patient/{patient}"), format!("/fhir/Observation?patient={patient}")] {
        assert_eq!(h.get(&path, &launched).await.status, 403, "{path}");
    }
    let own = h.token_with("patient", "pat", &["patient/*.rs"], Some(&patient));
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &own).await.status, 200);
}

/// Finding 7: data instances, codes and sibling permits were ignored: a
/// permit for one Observation permitted all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_on_codes_instances_and_siblings_hold_record_by_record() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let (dr1, dr2) = (h.token("clinician", "dr-1"), h.token("clinician", "dr-2"));
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let hiv = created(&h, &dr1, "/fhir/Observation", &observation(&patient, "56888-1")).await;
    let glucose = created(&h, &dr1, "/fhir/Observation", &observation(&patient, "2339-0")).await;
    // dr-2 may not see the HIV test (by code), everything else.
    created(&h, &registrar, "/fhir/Consent", &refusing(&patient, json!({"actor": [actor("Practitioner/dr-2")], "code": [{"coding": [{"system": LOINC, "code": "56888-1"}]}]}))).await;
    assert_eq!(h.get(&format!("/fhir/Observation/{hiv}"), &dr2).await.status, 403);
    assert_eq!(h.get(&format!("/fhir/Observation/{glucose}"), &dr2).await.status, 200);
    let listed = h.get(&format!("/fhir/Observation?patient={patient}"), &dr2).await.json();
    let ids: Vec<&str> =
        listed["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![glucose.as_str()], "the search leaves the refused record out");
    assert_eq!(listed["total"], 1);
    let everything = h.get(&format!("/fhir/Patient/{patient}/$everything"), &dr2).await.json().to_string();
    assert!(!everything.contains(&hiv) && everything.contains(&glucose));
    // dr-3 sees nothing but the glucose result (a permit of one instance
    // under a deny); a sibling deny of it wins over the permit.
    let third = consent(
        &patient,
        json!({"type": "permit", "provision": [
            {"type": "deny", "actor": [actor("Practitioner/dr-3")], "provision": [
                {"type": "permit", "data": [{"meaning": "instance", "reference": {"reference": format!("Observation/{glucose}")}}]}]},
            {"type": "deny", "actor": [actor("Practitioner/dr-4")]},
            {"type": "permit", "actor": [actor("Practitioner/dr-4")], "data": [{"meaning": "instance", "reference": {"reference": format!("Observation/{glucose}")}}]}
        ]}),
    );
    created(&h, &registrar, "/fhir/Consent", &third).await;
    let (dr3, dr4) = (h.token("clinician", "dr-3"), h.token("clinician", "dr-4"));
    assert_eq!(h.get(&format!("/fhir/Observation/{glucose}"), &dr3).await.status, 200);
    assert_eq!(h.get(&format!("/fhir/Observation/{hiv}"), &dr3).await.status, 403);
    assert_eq!(h.get(&format!("/fhir/Observation/{glucose}"), &dr4).await.status, 403, "deny among siblings wins");
    // A consent medrec could not enforce as written is refused at the element.
    let vague = refusing(&patient, json!({"actor": [actor("Organization/clinic-a")], "purpose": [{"code": "HRESCH"}]}));
    let r = h.call("POST", "/fhir/Consent", Some(&registrar), &[], Some(&vague.to_string())).await;
    assert_eq!(r.status, 422);
    let text = r.json().to_string();
    assert!(
        text.contains("Consent.provision.provision[0].actor[0]")
            && text.contains("Consent.provision.provision[0].purpose[0]"),
        "{text}"
    );
}

/// Finding 8: under opt-in, any clinician could self-grant the first consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_opt_in_nobody_grants_themselves_the_first_consent() {
    let h = Harness::start_with(vec![("MEDREC_CONSENT_DEFAULT".into(), "opt-in".into())]).await;
    let registrar = h.token("registrar", "front-desk");
    let dr = h.token("clinician", "dr-self");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &dr).await.status, 403);
    let grant = consent(&patient, json!({"type": "permit", "actor": [actor("Practitioner/dr-self")]}));
    assert_eq!(h.call("POST", "/fhir/Consent", Some(&dr), &[], Some(&grant.to_string())).await.status, 403);
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &dr).await.status, 403);
    created(&h, &registrar, "/fhir/Consent", &grant).await;
    assert_eq!(h.get(&format!("/fhir/Patient/{patient}"), &dr).await.status, 200, "the privacy office recorded it");
}

/// Finding 9: an unfiltered Patient search loaded every id and read every
/// patient's consents before paging; `name=a,b,c,...` ran a query per value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_work_per_page_is_bounded() {
    let h = Harness::start_with(vec![
        ("MEDREC_SEARCH_MAX_VALUES".into(), "3".into()),
        ("MEDREC_SEARCH_SCAN_PER_PAGE".into(), "6".into()),
        ("MEDREC_SEARCH_CONSENT_LOOKUPS".into(), "4".into()),
    ])
    .await;
    let registrar = h.token("registrar", "front-desk");
    let dr = h.token("clinician", "dr-bound");
    let mut all = std::collections::BTreeSet::new();
    for _ in 0..13 {
        all.insert(h.create_id(&registrar, &canary_patient(&unique_tag())).await);
    }
    // Values per parameter: at the bound and above it.
    assert_eq!(h.get("/fhir/Patient?family=a,b,c", &dr).await.status, 200);
    let over = h.get("/fhir/Patient?family=a,b,c,d", &dr).await;
    assert_eq!(over.status, 400);
    assert!(over.json().to_string().contains("too-costly"));
    // Every patient once, across pages; no page reads more consents than
    // the bound, and a short page says why.
    let mut seen = std::collections::BTreeSet::new();
    let mut next = Some("/fhir/Patient?_count=10".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        h.aws_calls().await;
        let page = h.get(&path, &dr).await.json();
        let calls = h.aws_calls().await;
        pages += 1;
        let consent_queries = calls.get("DynamoDB_20120810.Query").copied().unwrap_or(0);
        assert!(consent_queries <= 1 + 4, "one index page and at most 4 consent lookups: {calls:?}");
        assert!(calls.get("DynamoDB_20120810.GetItem").copied().unwrap_or(0) <= 6 + 1, "at most the scan: {calls:?}");
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        for e in entries.iter().filter(|e| e["search"]["mode"] == "match") {
            assert!(seen.insert(e["resource"]["id"].as_str().unwrap().to_owned()), "each once");
        }
        let has_next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next");
        if let Some(link) = has_next {
            assert!(entries.iter().any(|e| e["search"]["mode"] == "outcome"), "a short page says which limit cut it");
            next = Some(link["url"].as_str().unwrap().split_once("/fhir").map(|(_, p)| format!("/fhir{p}")).unwrap());
        }
        assert!(pages < 20);
    }
    assert_eq!(seen, all);
}

/// Finding 11: PATCH needed update rights only, yet a `test` op answered
/// whether a value was there; writes returned bodies their writer could
/// not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_show_nothing_their_writer_may_not_read() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let dr1 = h.token("clinician", "dr-1");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let obs = created(&h, &dr1, "/fhir/Observation", &observation(&patient, "2339-0")).await;
    let path = format!("/fhir/Observation/{obs}");
    let updater = h.token_with("clinician", "dr-u", &["user/Observation.u"], None);
    let probe = json!([{"op": "test", "path": "/valueQuantity/value", "value": 5.4}]);
    assert_eq!(patch(&h, &updater, &path, 1, &probe, &[]).await, 403, "PATCH needs read access");
    // A writer without read access gets no body back.
    let writer = h.token_with("clinician", "dr-w", &["user/Observation.cu"], None);
    let mut current = h.get(&path, &dr1).await.json();
    current["status"] = json!("amended");
    let put = h.call("PUT", &path, Some(&writer), &[("if-match", "W/\"1\"")], Some(&current.to_string())).await;
    assert_eq!(put.status, 200);
    assert!(put.body.is_empty(), "{}", String::from_utf8_lossy(&put.body));
    assert!(put.header("etag").is_some() && put.header("location").is_some());
    let post =
        h.call("POST", "/fhir/Observation", Some(&writer), &[], Some(&observation(&patient, "1").to_string())).await;
    assert_eq!((post.status, post.body.is_empty()), (201, true));
    // So does one whose reads the patient's consent refuses (access) while
    // changes (correct) are not refused.
    created(
        &h,
        &registrar,
        "/fhir/Consent",
        &refusing(
            &patient,
            json!({"actor": [actor("Practitioner/dr-1")],
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]}),
        ),
    )
    .await;
    current["status"] = json!("final");
    let put = h.call("PUT", &path, Some(&dr1), &[("if-match", "W/\"2\"")], Some(&current.to_string())).await;
    assert_eq!((put.status, put.body.is_empty()), (200, true), "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(h.get(&path, &dr1).await.status, 403);
}

/// Finding 12: `$validate` on any id wrote a read into that patient's
/// accounting of disclosures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_on_an_id_is_no_disclosure() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let auditor = h.token("auditor", "privacy-officer");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    let body = json!({"resourceType": "Patient", "id": patient, "name": [{"family": "Probe"}]});
    let r = h
        .call(
            "POST",
            &format!("/fhir/Patient/{patient}/$validate"),
            Some(&h.token("clinician", "dr-probe")),
            &[],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    let disclosures = h.get(&format!("/fhir/Patient/{patient}/$disclosures"), &auditor).await.json();
    let by_probe =
        disclosures["entry"].as_array().into_iter().flatten().filter(|e| e.to_string().contains("dr-probe")).count();
    assert_eq!(by_probe, 0);
    // It is audited, as the validation it was.
    let validations = h.get("/fhir/AuditEvent?agent=dr-probe", &auditor).await.json();
    assert_eq!(validations["total"], 1);
}

/// Finding 13: only an unsalted digest of a free-text reason was kept; one
/// character passed; nobody could review why the glass was broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_reviewed_with_its_reason() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let auditor = h.token("auditor", "privacy-officer");
    let dr = h.token("clinician", "dr-ed");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    created(&h, &registrar, "/fhir/Consent", &consent(&patient, json!({"type": "deny"}))).await;
    assert_eq!(h.call("GET", &format!("/fhir/Patient/{patient}"), Some(&dr), &GLASS, None).await.status, 200);
    // The reason is stored encrypted only.
    assert!(!h.raw_dump().await.contains("waiting room"));
    let queue = |state: &'static str| {
        let (h, auditor) = (&h, &auditor);
        async move { h.get(&format!("/fhir/AuditEvent?subtype=break-glass&_review={state}"), auditor).await }
    };
    let pending = queue("pending").await;
    assert_eq!(pending.status, 200);
    let pending = pending.json();
    assert_eq!(pending["entry"].as_array().map(Vec::len), Some(1));
    let access = &pending["entry"][0]["resource"];
    assert!(access.to_string().contains("collapsed in the waiting room"), "the auditor reads the reason");
    assert!(access.to_string().contains("patient-unconscious"));
    let id = access["id"].as_str().unwrap();
    // Nobody but auditors reviews, and not their own access.
    let review = |outcome: &str| {
        json!({"resourceType": "Parameters", "parameter": [
        {"name": "outcome", "valueCode": outcome}, {"name": "note", "valueString": "confirmed with the ED charge nurse"}]}).to_string()
    };
    let path = format!("/fhir/AuditEvent/{id}/$review");
    assert_eq!(h.call("POST", &path, Some(&dr), &[], Some(&review("justified"))).await.status, 403);
    assert_eq!(
        h.call(
            "POST",
            &path,
            Some(&h.token_with("patient", "pat", &["patient/*.rs"], Some(&patient))),
            &[],
            Some(&review("justified"))
        )
        .await
        .status,
        403
    );
    assert_eq!(h.call("POST", &path, Some(&auditor), &[], Some(&review("maybe"))).await.status, 400);
    assert_eq!(h.call("POST", &path, Some(&auditor), &[], Some(&review("justified"))).await.status, 200);
    assert_eq!(h.call("POST", &path, Some(&auditor), &[], Some(&review("unjustified"))).await.status, 409, "once");
    assert!(queue("pending").await.json()["entry"].is_null());
    let reviewed = queue("reviewed").await.json();
    let text = reviewed["entry"][0]["resource"].to_string();
    assert!(
        text.contains("justified") && text.contains("privacy-officer") && text.contains("ED charge nurse"),
        "{text}"
    );
    assert!(!h.raw_dump().await.contains("ED charge nurse"), "the note is encrypted too");
    // The review itself is audited.
    let trail =
        h.get("/fhir/AuditEvent?agent=privacy-officer&subtype=break-glass-review&outcome=0", &auditor).await.json();
    assert_eq!(trail["total"], 1);
}

/// The review queue is read a page at a time, oldest first, whatever its
/// length (a burst of break-glass use must not slow its own review), and an
/// erased patient's access stays reviewable without its sealed reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_queue_pages_oldest_first_and_outlives_an_erasure() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let auditor = h.token("auditor", "privacy-officer");
    let dr = h.token("clinician", "dr-night");
    let mut patients = vec![];
    for _ in 0..3 {
        let p = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
        assert_eq!(h.call("GET", &format!("/fhir/Patient/{p}"), Some(&dr), &GLASS, None).await.status, 200);
        patients.push(p);
    }
    // The first patient is erased: their data key is destroyed.
    h.stack
        .clients
        .dynamodb
        .delete_item()
        .table_name(h.table("RecordsTable"))
        .set_key(Some(schema::key(schema::patient_pk(&patients[0]), schema::DATA_KEY_SK)))
        .send()
        .await
        .unwrap();
    let mut path = Some("/fhir/AuditEvent?subtype=break-glass&_review=pending&_count=1".to_owned());
    let mut seen = vec![];
    h.aws_calls().await;
    while let Some(p) = path.take() {
        let page = h.get(&p, &auditor).await;
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        let calls = h.aws_calls().await;
        assert_eq!(
            calls.get("DynamoDB_20120810.Query").copied(),
            Some(1),
            "one index page, never the queue: {calls:?}"
        );
        let page = page.json();
        assert!(page.get("total").is_none(), "counting would read the whole queue");
        let entries = page["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        seen.push(entries[0]["resource"].clone());
        path = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().split_once("/fhir").map(|(_, p)| format!("/fhir{p}")).unwrap());
        assert!(seen.len() <= 3);
    }
    let whose: Vec<String> = seen
        .iter()
        .map(|e| e["entity"][0]["what"]["reference"].as_str().unwrap().split('/').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(whose, patients, "oldest first, each once");
    let recorded: Vec<&str> = seen.iter().map(|e| e["recorded"].as_str().unwrap()).collect();
    assert!(recorded.windows(2).all(|w| w[0] <= w[1]));
    assert!(seen[0].to_string().contains("erased with the patient's record"));
    assert!(!seen[0].to_string().contains("waiting room"));
    assert!(seen[1].to_string().contains("waiting room"));
    // Reviewable without a note (none could be sealed), and once only.
    let review = |note: bool| {
        let mut p = vec![json!({"name": "outcome", "valueCode": "justified"})];
        if note {
            p.push(json!({"name": "note", "valueString": "checked"}));
        }
        json!({"resourceType": "Parameters", "parameter": p}).to_string()
    };
    let erased = format!("/fhir/AuditEvent/{}/$review", seen[0]["id"].as_str().unwrap());
    assert_eq!(h.call("POST", &erased, Some(&auditor), &[], Some(&review(true))).await.status, 409);
    assert_eq!(h.call("POST", &erased, Some(&auditor), &[], Some(&review(false))).await.status, 200);
    assert_eq!(h.call("POST", &erased, Some(&auditor), &[], Some(&review(false))).await.status, 409);
    let unknown = format!("/fhir/AuditEvent/{}/$review", "0".repeat(32));
    assert_eq!(h.call("POST", &unknown, Some(&auditor), &[], Some(&review(false))).await.status, 404);
    let pending = h.get("/fhir/AuditEvent?subtype=break-glass&_review=pending", &auditor).await.json();
    assert_eq!(pending["entry"].as_array().map(Vec::len), Some(2));
}

/// Finding 14: the patient's own accounting showed staff addresses and token ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_sees_who_when_what_why_and_nothing_about_staff_networks() {
    let h = Harness::start().await;
    let registrar = h.token("registrar", "front-desk");
    let patient = h.create_id(&registrar, &canary_patient(&unique_tag())).await;
    h.get(&format!("/fhir/Patient/{patient}"), &h.token("clinician", "dr-reader")).await;
    let own = h.token_with("patient", "pat", &["patient/*.rs", "patient/AuditEvent.r"], Some(&patient));
    let mine = h.get(&format!("/fhir/Patient/{patient}/$disclosures"), &own).await;
    assert_eq!(mine.status, 200, "{}", String::from_utf8_lossy(&mine.body));
    let mine = mine.json();
    let read = mine["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|e| e["subtype"][0]["code"] == "read")
        .unwrap()
        .clone();
    assert_eq!(read["agent"][0]["who"]["reference"], "Practitioner/dr-reader");
    assert_eq!(read["agent"][0]["who"]["display"], "clinician");
    let text = read.to_string();
    for hidden in ["network", "urn:medrec:jti", "urn:medrec:sub", "urn:medrec:request-id"] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
    let html =
        h.call("GET", &format!("/fhir/Patient/{patient}/$disclosures?_format=html"), Some(&own), &[], None).await;
    assert!(String::from_utf8_lossy(&html.body).contains("Practitioner/dr-reader"));
    // Auditors see everything.
    let audited = h.get(&format!("/fhir/Patient/{patient}/$disclosures"), &h.token("auditor", "privacy-officer")).await;
    let text = audited.json().to_string();
    assert!(text.contains("network") && text.contains("urn:medrec:jti"));
}
