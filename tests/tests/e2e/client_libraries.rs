//! Widely used FHIR client libraries, from the registries and pinned
//! (`requirements-dev.txt`, `tests/clients/package-lock.json`), drive the
//! local stack with their default calls; each script exits non-zero at the
//! first call medrec does not serve as the library expects.

use medrec_e2e::{unique_tag, Harness};
use std::path::PathBuf;
use std::process::Command;

/// Runs `program script` with the stack's base URL, a clinician's and an
/// admin's tokens and a unique family name; returns that name.
async fn drive(h: &Harness, program: PathBuf, script: &str, what: &'static str) -> String {
    let root = medrec_infra::emulator::repo_root();
    let (base, token, admin) = (h.url("/fhir"), h.token("clinician", "dr-client"), h.token("admin", "admin-client"));
    let tag = format!("Client{}", unique_tag());
    let env_tag = tag.clone();
    let script = root.join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .env("MEDREC_BASE", base)
            .env("MEDREC_TOKEN", token)
            .env("MEDREC_ADMIN_TOKEN", admin)
            .env("MEDREC_TAG", env_tag)
            .output()
            .unwrap_or_else(|e| panic!("{what} runs (make setup installs it): {e}"))
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all default calls served"), "{stdout}");
    println!("{stdout}");
    tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_python_fhirclient_works_with_its_defaults() {
    let h = Harness::start().await;
    let python = medrec_infra::emulator::repo_root().join(".venv/bin/python");
    let tag = drive(&h, python, "tests/clients/fhirclient_defaults.py", "fhirclient").await;
    // What the client did is on the server: five patients of its family,
    // the first updated once.
    let found = h.get(&format!("/fhir/Patient?family={tag}"), &h.token("clinician", "dr-check")).await.json();
    assert_eq!(found["total"], 5);
    let versions: Vec<&str> =
        found["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["meta"]["versionId"].as_str()).collect();
    assert_eq!(versions.iter().filter(|v| **v == "2").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_kit_client_works_with_its_defaults() {
    let h = Harness::start().await;
    let tag = drive(&h, "node".into(), "tests/clients/fhir_kit_client_defaults.mjs", "fhir-kit-client").await;
    // Three patients remain of its family (the first was deleted), none
    // created twice by the conditional create.
    let found = h.get(&format!("/fhir/Patient?family={tag}"), &h.token("clinician", "dr-check")).await.json();
    assert_eq!(found["total"], 3);
}
