//! The compliance mapping names real tests for every HIPAA §164.312
//! standard and implementation specification and §164.528, and renders.

use medrec_infra::compliance;

const CONTROLS: &[&str] = &[
    "164.312(a)(1)",
    "164.312(a)(2)(i)",
    "164.312(a)(2)(ii)",
    "164.312(a)(2)(iii)",
    "164.312(a)(2)(iv)",
    "164.312(b)",
    "164.312(c)(1)",
    "164.312(c)(2)",
    "164.312(d)",
    "164.312(e)(1)",
    "164.312(e)(2)(i)",
    "164.312(e)(2)(ii)",
    "164.528",
];

#[test]
fn every_hipaa_control_names_tests_that_exist() {
    let root = medrec_infra::emulator::repo_root();
    let mapping = compliance::load(&root).unwrap();
    let ids: Vec<&str> = mapping.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, CONTROLS, "every control, in order, once");
    let index = compliance::test_index(&root);
    assert!(index.contains_key("every_hipaa_control_names_tests_that_exist"), "the index finds tests");
    assert_eq!(compliance::check(&mapping, &index), Vec::<String>::new());
    // A mapping naming a test that does not exist is caught.
    let mut broken = compliance::load(&root).unwrap();
    broken.controls[0].tests.push("no_such_test_anywhere".into());
    broken.controls[1].tests.clear();
    assert_eq!(compliance::check(&broken, &index).len(), 2);
}

#[test]
fn the_report_shows_each_control_with_its_results() {
    let root = medrec_infra::emulator::repo_root();
    let mapping = compliance::load(&root).unwrap();
    let index = compliance::test_index(&root);
    let junit = r#"<testsuites><testsuite name="medrec-e2e::identity">
        <testcase name="authorization_matrix_holds_exactly" classname="medrec-e2e::identity" time="1.0"></testcase>
        <testcase name="auth::jwt::tests::claim_and_header_attacks_are_rejected" classname="medrec-edge"><failure message="x"/></testcase>
        </testsuite></testsuites>"#;
    let results = compliance::results(junit);
    assert_eq!(results.get("authorization_matrix_holds_exactly"), Some(&true));
    assert_eq!(results.get("claim_and_header_attacks_are_rejected"), Some(&false));
    let html = compliance::report(&mapping, &index, &results);
    for id in CONTROLS {
        assert!(html.contains(&format!("<b>{id}</b>")), "{id}");
    }
    assert!(html.contains("FAILED") && html.contains("passed") && html.contains("not run"));
    assert!(!html.contains("<script"));
}
