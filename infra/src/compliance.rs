//! The compliance mapping (`docs/compliance/hipaa.json`): each HIPAA
//! §164.312 standard and implementation specification, and §164.528, with
//! the automated tests that prove it. `check` fails when a control has no
//! test or names one that does not exist; `report` renders the mapping with
//! the latest results (nextest's JUnit output) as HTML.

use medrec_edge::fhir::primitives::escape_html;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
pub struct Mapping {
    pub title: String,
    pub controls: Vec<Control>,
}

#[derive(Debug, Deserialize)]
pub struct Control {
    pub id: String,
    pub title: String,
    /// standard, required or addressable.
    pub kind: String,
    pub how: String,
    pub tests: Vec<String>,
}

pub fn load(root: &Path) -> Result<Mapping, String> {
    let text = std::fs::read_to_string(root.join("docs/compliance/hipaa.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Every test function in the workspace (a `#[test]` or `#[tokio::test]`
/// attribute within the three lines above `fn name(`), with its file.
pub fn test_index(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs: Vec<PathBuf> =
        ["fhir", "core", "aws", "edge", "functions", "infra", "tests"].iter().map(|d| root.join(d)).collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    let Some(rest) =
                        line.trim_start().strip_prefix("async fn ").or_else(|| line.trim_start().strip_prefix("fn "))
                    else {
                        continue;
                    };
                    let is_test = lines[i.saturating_sub(3)..i]
                        .iter()
                        .any(|l| l.contains("#[test]") || l.contains("#[tokio::test"));
                    if let (true, Some(name)) = (is_test, rest.split('(').next()) {
                        out.insert(name.to_owned(), path.strip_prefix(root).unwrap_or(&path).to_owned());
                    }
                }
            }
        }
    }
    out
}

/// What is wrong with the mapping: controls without tests, tests that do
/// not exist.
pub fn check(mapping: &Mapping, index: &BTreeMap<String, PathBuf>) -> Vec<String> {
    let mut problems = vec![];
    for c in &mapping.controls {
        if c.tests.is_empty() {
            problems.push(format!("{} has no test", c.id));
        }
        for t in c.tests.iter().filter(|t| !index.contains_key(*t)) {
            problems.push(format!("{}: no test named {t}", c.id));
        }
    }
    problems
}

/// Outcomes by test name from a JUnit file (nextest's): true when passed.
pub fn results(junit: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for case in junit.split("<testcase").skip(1) {
        let Some(name) = case.split("name=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let name = name.rsplit("::").next().unwrap_or(name).to_owned();
        let body = case.split("</testcase>").next().unwrap_or(case);
        let failed = body.contains("<failure") || body.contains("<error");
        out.insert(name, !failed);
    }
    out
}

pub fn report(mapping: &Mapping, index: &BTreeMap<String, PathBuf>, results: &BTreeMap<String, bool>) -> String {
    let mut rows = String::new();
    for c in &mapping.controls {
        let tests: Vec<String> = c
            .tests
            .iter()
            .map(|t| {
                let (class, state) = match (index.contains_key(t), results.get(t)) {
                    (false, _) => ("missing", "missing"),
                    (true, Some(true)) => ("pass", "passed"),
                    (true, Some(false)) => ("fail", "FAILED"),
                    (true, None) => ("unknown", "not run"),
                };
                let file = index.get(t).map(|p| p.display().to_string()).unwrap_or_default();
                format!(
                    "<li class=\"{class}\"><code>{}</code> <span>{state}</span> <small>{}</small></li>",
                    escape_html(t),
                    escape_html(&file)
                )
            })
            .collect();
        let all_pass = c.tests.iter().all(|t| results.get(t) == Some(&true));
        rows.push_str(&format!(
            "<tr class=\"{}\"><td><b>{}</b><br>{}<br><small>{}</small></td><td>{}</td><td><ul>{}</ul></td></tr>\n",
            if all_pass { "pass" } else { "open" },
            escape_html(&c.id),
            escape_html(&c.title),
            escape_html(&c.kind),
            escape_html(&c.how),
            tests.join("")
        ));
    }
    let passed = results.values().filter(|p| **p).count();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>medrec compliance</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem}}table{{border-collapse:collapse}}\
         td{{border:1px solid #ccc;padding:.5rem;vertical-align:top}}tr.pass td:first-child{{border-left:6px solid #2a2}}\
         tr.open td:first-child{{border-left:6px solid #c90}}li.pass span{{color:#2a2}}li.fail span,li.missing span{{color:#c22;font-weight:bold}}\
         li.unknown span{{color:#888}}ul{{margin:0;padding-left:1rem}}</style></head><body>\
         <h1>{}</h1><p>{} tests in the latest results, {} passed.</p><table><tr><th>Control</th><th>How medrec meets it</th><th>Tests</th></tr>\n{}</table></body></html>\n",
        escape_html(&mapping.title),
        results.len(),
        passed,
        rows
    )
}
