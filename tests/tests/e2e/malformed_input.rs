//! Bad input of every kind gets a precise status and an OperationOutcome,
//! never a 500, and nothing is written.

use medrec_e2e::Harness;

/// (method, path, headers, body, expected status)
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Option<String>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_outcomes_never_500() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-malformed");
    let id = h.create_id(&t, &medrec_e2e::canary_patient("m")).await;
    let big = format!(r#"{{"resourceType":"Patient","name":[{{"text":"{}"}}]}}"#, "x".repeat(300 * 1024));
    let json = "application/fhir+json";
    let p = format!("/fhir/Patient/{id}");
    let cases: Vec<Case> = vec![
        ("POST", "/fhir/Patient".into(), vec![("content-type", json)], Some("{not json".into()), 400),
        ("POST", "/fhir/Patient".into(), vec![("content-type", json)], Some("[1,2]".into()), 400),
        ("POST", "/fhir/Patient".into(), vec![("content-type", json)], Some("".into()), 400),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", json)],
            Some(r#"{"resourceType":"Observation"}"#.into()),
            400,
        ),
        ("POST", "/fhir/Patient".into(), vec![("content-type", json)], Some(r#"{"name":[]}"#.into()), 400),
        ("POST", "/fhir/Patient".into(), vec![("content-type", json)], Some(big), 413),
        ("POST", "/fhir/Patient".into(), vec![("content-type", "text/xml")], Some("<Patient/>".into()), 415),
        ("POST", "/fhir/Patient".into(), vec![("content-type", "")], Some(r#"{"resourceType":"Patient"}"#.into()), 415),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", json)],
            Some(r#"{"resourceType":"Patient","gender":"yes"}"#.into()),
            422,
        ),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", json)],
            Some(r#"{"resourceType":"Patient","birthDate":"1999-02-30"}"#.into()),
            422,
        ),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", json)],
            Some(r#"{"resourceType":"Patient","hobby":"golf"}"#.into()),
            422,
        ),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", json)],
            Some(
                r#"{"resourceType":"Patient","text":{"status":"generated","div":"<div><script>x</script></div>"}}"#
                    .into(),
            ),
            422,
        ),
        (
            "POST",
            "/fhir/Patient".into(),
            vec![("content-type", json), ("accept", "application/xml")],
            Some(r#"{"resourceType":"Patient"}"#.into()),
            406,
        ),
        ("GET", "/fhir/Patient/bad$id".into(), vec![], None, 400),
        ("GET", format!("/fhir/Patient/{}", "a".repeat(65)), vec![], None, 400),
        ("GET", format!("{p}/_history/zero"), vec![], None, 400),
        ("GET", format!("{p}/_history/0"), vec![], None, 400),
        ("GET", format!("{p}/_history?foo=1"), vec![], None, 400),
        (
            "PUT",
            p.clone(),
            vec![("content-type", json), ("if-match", "banana")],
            Some(format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#)),
            400,
        ),
        ("PATCH", p.clone(), vec![("content-type", json)], Some("{}".into()), 415),
        (
            "PATCH",
            p.clone(),
            vec![("content-type", "application/json-patch+json"), ("if-match", "W/\"1\"")],
            Some("{not json".into()),
            400,
        ),
        ("GET", "/fhir/Patient?_count=-1".into(), vec![], None, 400),
        ("GET", "/fhir/Patient?x=%E0%A4%A".into(), vec![], None, 400),
        (
            "GET",
            "/fhir/Patient".into(),
            vec![("x-purpose-of-use", "TREAT"), ("x-break-glass-reason", "why")],
            None,
            400,
        ),
    ];
    for (method, path, headers, body, expected) in cases {
        let r = h.call(method, &path, Some(&t), &headers, body.as_deref()).await;
        assert_eq!(r.status, expected, "{method} {path} {headers:?}: {}", String::from_utf8_lossy(&r.body));
        if path.starts_with("/fhir/Patient") {
            assert_eq!(r.json()["resourceType"], "OperationOutcome", "{method} {path}");
        }
    }
    // Precise locations for invalid resources.
    let r = h
        .call(
            "POST",
            "/fhir/Patient",
            Some(&t),
            &[],
            Some(r#"{"resourceType":"Patient","gender":"yes","birthDate":"1980-1-1","name":[{"given":"x"}]}"#),
        )
        .await;
    assert_eq!(r.status, 422);
    let mut exprs: Vec<String> =
        r.json()["issue"].as_array().unwrap().iter().map(|i| i["expression"][0].as_str().unwrap().to_owned()).collect();
    exprs.sort();
    assert_eq!(exprs, vec!["Patient.birthDate", "Patient.gender", "Patient.name[0].given"]);
    // Nothing half-written: only the one valid patient exists.
    assert_eq!(h.get("/fhir/Patient", &t).await.json()["total"], 1);
    // A payload past API Gateway's 10 MB limit is refused at the gateway.
    let huge = "x".repeat(11 * 1024 * 1024);
    assert_eq!(h.call("POST", "/fhir/Patient", Some(&t), &[], Some(&huge)).await.status, 413);
}

#[test]
fn template_routes_match_the_function_route_tables() {
    let template =
        medrec_infra::template::Template::load(&medrec_infra::emulator::repo_root().join("template.yaml")).unwrap();
    let tables: [(&str, &[medrec_edge::lambda::Route]); 6] = [
        ("PatientsFunction", medrec_patients::ROUTES),
        ("ClinicalFunction", medrec_clinical::ROUTES),
        ("ConsentFunction", medrec_consent::ROUTES),
        ("ValidationFunction", medrec_validation::ROUTES),
        ("DocumentsFunction", medrec_documents::ROUTES),
        ("AuditFunction", medrec_audit::ROUTES),
    ];
    for (function, routes) in tables {
        let f = template.functions.iter().find(|f| f.logical_id == function).unwrap();
        let mut declared: Vec<(String, String)> = f.routes.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
        let mut served: Vec<(String, String)> =
            routes.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
        declared.sort();
        served.sort();
        assert_eq!(declared, served, "{function}");
    }
}

#[test]
fn a_deployed_config_refuses_dev_identity_and_emulator_settings() {
    use medrec_edge::config::Config;
    let base = |overrides: &[(&str, &str)]| {
        let mut env: std::collections::HashMap<&str, &str> = [
            ("MEDREC_RECORDS_TABLE", "r"),
            ("MEDREC_AUDIT_TABLE", "a"),
            ("MEDREC_OUTBOX_TABLE", "o"),
            ("MEDREC_RECORDS_KEY_ID", "k"),
            ("MEDREC_JWKS_URL", "https://cognito-idp.us-east-1.amazonaws.com/pool/.well-known/jwks.json"),
            ("MEDREC_ISSUER", "https://cognito-idp.us-east-1.amazonaws.com/pool"),
            ("MEDREC_AUDIENCE", "client"),
        ]
        .into_iter()
        .collect();
        env.extend(overrides.iter().copied());
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
    };
    assert!(base(&[]).is_ok());
    assert!(base(&[("MEDREC_JWKS_URL", "http://127.0.0.1:8080/.well-known/jwks.json")]).is_err());
    assert!(base(&[("MEDREC_ISSUER", medrec_infra::devkey::DEV_ISSUER)]).is_err());
    assert!(base(&[("MEDREC_AWS_ENDPOINT", "http://127.0.0.1:5000")]).is_err());
    assert!(base(&[("MEDREC_ENV", "staging")]).is_err());
    assert!(base(&[("MEDREC_MAX_BODY_BYTES", "999999999")]).is_err());
    assert!(base(&[("MEDREC_AUDIT_SHARDS", "0")]).is_err());
    assert!(base(&[("MEDREC_RECORDS_TABLE", "")]).is_err());
    assert!(base(&[("MEDREC_CONSENT_DEFAULT", "maybe")]).is_err());
    let opt_in = base(&[("MEDREC_CONSENT_DEFAULT", "opt-in")]).unwrap();
    assert_eq!(opt_in.consent_default, medrec_edge::consent::DefaultPolicy::OptIn);
    assert!(base(&[
        ("MEDREC_ENV", "local"),
        ("MEDREC_JWKS_URL", "http://127.0.0.1:1/jwks"),
        ("MEDREC_ISSUER", medrec_infra::devkey::DEV_ISSUER)
    ])
    .is_ok());
}

/// Valid requests of every kind with their bytes mutated (bodies, query
/// values, header values), through the gateway into the real handlers and
/// the emulator: never a server error, every error an OperationOutcome,
/// every answer `no-store`. The choices come from the system's randomness;
/// a failure prints the request that caused it. `MEDREC_FUZZ_ITERATIONS`
/// (default 1,500) sends a fifth as many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_never_get_a_server_error() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-mutations");
    let patient = h.create_id(&t, &medrec_e2e::canary_patient("mutations")).await;
    let reference = serde_json::json!({"reference": format!("Patient/{patient}")});
    let observation = serde_json::json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": reference,
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
    .to_string();
    let immunization = serde_json::json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]}, "patient": reference,
        "occurrenceDateTime": "2026-11-20", "primarySource": true, "lotNumber": "L1"})
    .to_string();
    let mut own = medrec_e2e::canary_patient("mutations");
    own["id"] = serde_json::json!(patient);
    let (fhir, patch, form) =
        ("application/fhir+json", "application/json-patch+json", "application/x-www-form-urlencoded");
    let seeds: Vec<(&str, String, &str, String)> = vec![
        ("POST", "/fhir/Patient".into(), fhir, medrec_e2e::canary_patient("seed").to_string()),
        ("PUT", format!("/fhir/Patient/{patient}"), fhir, own.to_string()),
        (
            "PATCH",
            format!("/fhir/Patient/{patient}"),
            patch,
            r#"[{"op":"replace","path":"/gender","value":"male"}]"#.into(),
        ),
        ("POST", "/fhir/Observation".into(), fhir, observation.clone()),
        ("POST", "/fhir/Immunization".into(), fhir, immunization),
        ("POST", "/fhir/Observation/$validate".into(), fhir, observation),
        ("POST", "/fhir/Patient/_search".into(), form, "family=chalmers&_count=2".into()),
        ("GET", format!("/fhir/Observation?patient={patient}&date=ge2020-01-01&_count=5"), fhir, String::new()),
        ("GET", format!("/fhir/Patient/{patient}/$everything?_count=3"), fhir, String::new()),
    ];
    const QUERY: &[&str] = &[
        "&date=ge%zz",
        "&_count=-1",
        "&_count=99999999999999999999",
        "&code=%E2%82",
        "&_elements=**",
        "&value-quantity=1e999",
        "&_summary=maybe",
        "&_include=Observation:subject:Patient",
        "&birthdate=1974-13-45",
        "&_cursor=AAAA",
        "&=",
        "&%00=1",
    ];
    const BYTES: &[u8] = b"{}[]\",:\\ \x00\x80\xc3\xff0e-";
    const HEADERS: &[(&str, &str)] = &[
        ("if-match", "W/\"x\""),
        ("if-match", "\"99999999999999999999\""),
        ("if-match", "*"),
        ("prefer", "return=everything"),
        ("accept", "application/xml"),
        ("x-purpose-of-use", "NOTAPURPOSE"),
        ("x-purpose-of-use", "ETREAT"),
        ("if-none-exist", "identifier=%zz"),
        ("content-type", "application/fhir+json; charset=latin-1"),
    ];
    let rounds = std::env::var("MEDREC_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500usize) / 5;
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..rounds {
        let random = medrec_edge::crypto::random_id();
        let mut r = random.bytes().map(|b| b as usize * 7919);
        let mut next = |n: usize| r.next().unwrap_or(0) % n.max(1);
        let (method, path, content_type, body) = &seeds[next(seeds.len())];
        let mut body = body.clone().into_bytes();
        for _ in 0..next(4) {
            let i = next(body.len() + 1);
            match next(4) {
                0 if i < body.len() => body[i] = BYTES[next(BYTES.len())],
                1 => body.insert(i, BYTES[next(BYTES.len())]),
                2 => body.truncate(i),
                _ => body.splice(i..i, std::iter::repeat_n(b'[', next(200))).for_each(drop),
            }
        }
        let mut path = path.clone();
        if next(2) == 0 {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&QUERY[next(QUERY.len())][1..]);
        }
        let mut headers = vec![("authorization", format!("Bearer {t}")), ("content-type", content_type.to_string())];
        if method.starts_with("P") && method != &"POST" {
            headers.push(("if-match", "W/\"1\"".into()));
        }
        for _ in 0..next(3) {
            let (k, v) = HEADERS[next(HEADERS.len())];
            headers.retain(|(name, _)| *name != k);
            headers.push((k, v.into()));
        }
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = h.client.send(method, &h.url(&path), &hs, Some(body.clone())).await.expect("HTTP exchange");
        let request = format!("{method} {path} {hs:?} {:.300}", String::from_utf8_lossy(&body));
        assert!(reply.status < 500, "{} for {request}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{request}");
        if reply.status >= 400 {
            assert_eq!(reply.json()["resourceType"], "OperationOutcome", "{request}");
        }
        *statuses.entry(reply.status).or_insert(0) += 1;
    }
    println!("{rounds} mutated requests, no server error; statuses {statuses:?}");
}
