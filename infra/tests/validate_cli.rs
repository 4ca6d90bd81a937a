//! `medrec validate`: exit 0 when every file is valid, 1 otherwise, with the
//! first issue of each failing file located.

use std::process::Command;

#[test]
fn exit_code_and_summary() {
    let dir = std::env::temp_dir().join(format!("medrec-validate-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("ok.json"), r#"{"resourceType":"Patient","gender":"female"}"#).unwrap();
    std::fs::write(
        dir.join("nested/ok.json"),
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#,
    )
    .unwrap();
    let run = |args: &[&std::path::Path]| {
        Command::new(env!("CARGO_BIN_EXE_medrec")).arg("validate").args(args).output().unwrap()
    };

    let ok = run(&[&dir]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("2 files: 2 valid, 0 invalid"));

    std::fs::write(dir.join("bad.json"), r#"{"resourceType":"Observation","status":"guess","code":{"text":"x"}}"#)
        .unwrap();
    std::fs::write(dir.join("junk.json"), "not json").unwrap();
    let bad = run(&[&dir]);
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("bad.json: 1 issue(s), first at Observation.status"), "{out}");
    assert!(out.contains("junk.json: not readable JSON"), "{out}");
    assert!(out.contains("4 files: 2 valid, 1 invalid, 1 unreadable"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
