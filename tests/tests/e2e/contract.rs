//! The API contract: the OpenAPI document served at `/openapi.json` covers
//! exactly the routes `template.yaml` declares, unrouted methods get 405 with
//! `Allow`, and schemathesis (from requirements-dev.txt) runs every check
//! against the local stack, stateful phase included: zero failures.
//! `MEDREC_SCHEMATHESIS_EXAMPLES` raises the examples per operation (CI: 5).

use medrec_e2e::Harness;
use medrec_infra::template::{Template, DEFAULT_ROUTE};
use std::collections::BTreeSet;
use std::process::Command;

/// A concrete path for an OpenAPI path template.
fn concrete(path: &str) -> String {
    path.replace("{id}", "x1").replace("{vid}", "1").replace("{type}", "Observation")
}

#[tokio::test]
async fn the_openapi_document_covers_exactly_the_routes_of_the_template() {
    let h = Harness::start().await;
    let r = h.call("GET", "/openapi.json", None, &[], None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let template = Template::load(&medrec_infra::emulator::repo_root().join("template.yaml")).unwrap();
    let declared: BTreeSet<String> = template
        .functions
        .iter()
        .flat_map(|f| &f.routes)
        .filter(|r| r.path != DEFAULT_ROUTE)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let mut served = BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let method = method.to_ascii_uppercase();
            let (_, route, _) = template.route(&method, &concrete(path)).unwrap();
            assert_ne!(route, DEFAULT_ROUTE, "{method} {path} is documented but no route serves it");
            served.insert(route);
            assert!(op["operationId"].is_string() && op["responses"].is_object(), "{method} {path}");
            let public = op["security"] == serde_json::json!([]);
            assert_eq!(public, ["/health", "/openapi.json", "/fhir/metadata"].contains(&path.as_str()), "{path}");
        }
    }
    let undocumented: Vec<&String> = declared.difference(&served).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    assert_eq!(operations, medrec_edge::api::operations().len());
    println!("openapi: {operations} operations over {} template routes", declared.len());
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_is_405_with_allow() {
    let h = Harness::start().await;
    let token = h.token("clinician", "dr-1");
    for (method, path, allow) in [
        ("PATCH", "/fhir/Patient", Some("DELETE, GET, POST, PUT")),
        ("PUT", "/fhir/Patient/_search", Some("POST")),
        ("GET", "/fhir/Observation/_search", Some("POST")),
        ("POST", "/fhir/AuditEvent/x1", None),
        ("DELETE", "/health", Some("GET")),
        ("GET", "/fhir/Nothing/at/all/here", None),
    ] {
        let r = h.call(method, path, Some(&token), &[], None).await;
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{method} {path}");
        match allow {
            Some(allow) => {
                assert_eq!(r.status, 405, "{method} {path}");
                let got = r.headers.get("allow").and_then(|v| v.to_str().ok());
                assert_eq!(got, Some(allow), "{method} {path}");
            }
            None => assert_eq!(r.status, 404, "{method} {path}"),
        }
    }
}

#[tokio::test]
async fn schemathesis_finds_no_failure_with_every_check() {
    let h = Harness::start().await;
    let root = medrec_infra::emulator::repo_root();
    let examples = std::env::var("MEDREC_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "5".into());
    let report = root.join("target/schemathesis");
    let url = h.url("/openapi.json");
    let (clinician, admin, auditor, registrar) = (
        h.token("clinician", "dr-1"),
        h.token("admin", "admin-1"),
        h.token("auditor", "aud-1"),
        h.token("registrar", "desk-1"),
    );
    // The record types share one code path (the generic routes): they are
    // fuzzed through two representatives (a clinical and a directory type)
    // beside the types with their own code, so the run stays minutes long
    // (each type costs about a minute of the run); `record_types.rs` and the
    // authorization matrix's sweep try every type of the table.
    let sampled = ["Patient", "Immunization", "Observation", "Consent", "DocumentReference", "Practitioner"];
    let others: Vec<&str> = medrec_edge::fhir::resources::served_types()
        .map(|t| t.name.as_str())
        .filter(|t| !sampled.contains(t))
        .collect();
    let exclude = format!("^/fhir/({})(/|$)", others.join("|"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(root.join(".venv/bin/schemathesis"))
            .arg("--config-file")
            .arg(root.join("tests/contract/schemathesis.toml"))
            .args(["run", &url, "--workers", "2", "--max-examples", &examples])
            .args(["--exclude-path-regex", &exclude])
            .args(["--report", "junit", "--report-dir"])
            .arg(&report)
            .env("MEDREC_CLINICIAN_TOKEN", clinician)
            .env("MEDREC_ADMIN_TOKEN", admin)
            .env("MEDREC_AUDITOR_TOKEN", auditor)
            .env("MEDREC_REGISTRAR_TOKEN", registrar)
            .env("NO_COLOR", "1")
            .env("PYTHONPATH", root.join("tests/contract/python"))
            .output()
            .expect("schemathesis runs (make setup installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.rsplit_once("SUMMARY").map_or(stdout.as_ref(), |(_, s)| s);
    assert!(out.status.success(), "schemathesis failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(summary.contains("Tested: 64") || summary.contains("Selected:"), "{summary}");
    println!("schemathesis: {}", summary.trim());
}
