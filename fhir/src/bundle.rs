//! Bundle builders for search results and history.

use serde_json::{json, Value};

pub struct SearchPage {
    pub self_link: String,
    pub next_link: Option<String>,
    /// None when the client asked for `_total=none`.
    pub total: Option<usize>,
    /// (fullUrl, resource)
    pub entries: Vec<(String, Value)>,
    /// Added by `_include`/`_revinclude` (search mode `include`).
    pub included: Vec<(String, Value)>,
    /// An OperationOutcome about the page (search mode `outcome`).
    pub outcome: Option<Value>,
}

pub fn searchset(page: SearchPage) -> Value {
    let mut links = vec![json!({"relation": "self", "url": page.self_link})];
    if let Some(next) = page.next_link {
        links.push(json!({"relation": "next", "url": next}));
    }
    fn entry(mode: &'static str) -> impl Fn((String, Value)) -> Value {
        move |(full_url, resource)| json!({"fullUrl": full_url, "resource": resource, "search": {"mode": mode}})
    }
    let outcome = page.outcome.map(|o| json!({"resource": o, "search": {"mode": "outcome"}}));
    let entries: Vec<Value> = page
        .entries
        .into_iter()
        .map(entry("match"))
        .chain(page.included.into_iter().map(entry("include")))
        .chain(outcome)
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
    });
    // FHIR forbids empty arrays (ele-1): an empty page has no `entry`.
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    bundle
}

/// One version in a history bundle; `resource` is None for a deletion.
pub struct HistoryEntry {
    pub full_url: String,
    pub resource: Option<Value>,
    pub method: &'static str,
    pub url: String,
    pub status: &'static str,
    pub version: u64,
    pub last_updated: String,
}

pub fn history(self_link: String, next_link: Option<String>, total: usize, entries: Vec<HistoryEntry>) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": next}));
    }
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let mut entry = json!({
                "fullUrl": e.full_url,
                "request": {"method": e.method, "url": e.url},
                "response": {"status": e.status, "etag": format!("W/\"{}\"", e.version), "lastModified": e.last_updated},
            });
            if let Some(r) = e.resource {
                entry["resource"] = r;
            }
            entry
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "history", "total": total, "link": links});
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}
