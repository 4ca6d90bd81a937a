//! A batch or transaction Bundle read as the requests it carries (R4
//! http.html#transaction, bundle.html#request): each entry's method, url,
//! conditional headers and resource, checked before anything runs, so a
//! malformed entry is named by its index and element, never half-applied.

use super::outcome::Issue;
use serde_json::Value;

/// What the Bundle asks: independent requests, or one unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Batch,
    Transaction,
}

impl Kind {
    /// The type of the Bundle that answers it.
    pub fn response_type(self) -> &'static str {
        match self {
            Kind::Batch => "batch-response",
            Kind::Transaction => "transaction-response",
        }
    }
}

/// One entry's request, as the same request alone would be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRequest {
    pub full_url: Option<String>,
    pub method: &'static str,
    /// Relative to the base: `Patient`, `Observation/1`, `Patient?identifier=x|1`.
    pub url: String,
    /// The body: the resource of a POST or PUT, the JSON Patch of a PATCH.
    pub body: Option<Value>,
    /// `If-Match`, `If-None-Exist`, `If-None-Match`, `If-Modified-Since`.
    pub headers: Vec<(&'static str, String)>,
}

/// The methods an entry may carry, in the order a transaction runs them
/// (R4 http.html#trules: deletes, creates, updates and patches, reads).
const METHODS: [(&str, u8); 6] = [("DELETE", 0), ("POST", 1), ("PUT", 2), ("PATCH", 2), ("GET", 3), ("HEAD", 3)];

/// Reads a Bundle of type batch or transaction. Every problem of every
/// entry is reported at once, each at its element.
pub fn parse(bundle: &Value, max_entries: usize) -> Result<(Kind, Vec<EntryRequest>), Vec<Issue>> {
    let kind = match bundle["type"].as_str() {
        Some("batch") => Kind::Batch,
        Some("transaction") => Kind::Transaction,
        _ => {
            return Err(vec![Issue::error("value", "the Bundle's type must be batch or transaction").at("Bundle.type")])
        }
    };
    let empty = vec![];
    let entries = match bundle.get("entry") {
        Some(Value::Array(entries)) => entries,
        None => &empty,
        Some(_) => return Err(vec![Issue::error("structure", "entry must be an array").at("Bundle.entry")]),
    };
    if entries.len() > max_entries {
        return Err(vec![Issue::error(
            "too-costly",
            format!("a Bundle may carry at most {max_entries} entries; split it"),
        )
        .at("Bundle.entry")]);
    }
    let mut issues = vec![];
    let mut requests = vec![];
    for (i, entry) in entries.iter().enumerate() {
        match entry_request(i, entry) {
            Ok(r) => requests.push(r),
            Err(issue) => issues.push(issue),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Some(full_url) = entry["fullUrl"].as_str() {
            if !seen.insert(full_url) {
                issues.push(
                    Issue::error("duplicate", "two entries have the same fullUrl")
                        .at(format!("Bundle.entry[{i}].fullUrl")),
                );
            }
        }
    }
    if kind == Kind::Transaction && issues.is_empty() {
        issues.extend(changed_twice(&requests));
    }
    if issues.is_empty() {
        Ok((kind, requests))
    } else {
        Err(issues)
    }
}

fn entry_request(i: usize, entry: &Value) -> Result<EntryRequest, Issue> {
    let at = |element: &str| format!("Bundle.entry[{i}].{element}");
    if entry.get("resource").is_some_and(|r| !r.is_object()) {
        return Err(Issue::error("structure", "the entry's resource must be a JSON object").at(at("resource")));
    }
    let request = &entry["request"];
    let method = request["method"]
        .as_str()
        .and_then(|m| METHODS.iter().find(|(name, _)| *name == m))
        .map(|(name, _)| *name)
        .ok_or_else(|| {
            Issue::error("required", "the entry needs a request method (GET, HEAD, POST, PUT, PATCH or DELETE)")
                .at(at("request.method"))
        })?;
    let url = request["url"]
        .as_str()
        .filter(|u| is_relative(u))
        .ok_or_else(|| {
            Issue::error("value", "the request url must be relative to the base (Patient/1, Observation?code=x)")
                .at(at("request.url"))
        })?
        .to_owned();
    let full_url = match entry.get("fullUrl") {
        None => None,
        Some(Value::String(u)) if is_full_url(u) => Some(u.clone()),
        _ => {
            return Err(
                Issue::error("value", "fullUrl must be an absolute URL, urn:uuid: or urn:oid:").at(at("fullUrl"))
            )
        }
    };
    let ty = url.split(['/', '?']).next().unwrap_or_default();
    let body = match method {
        "POST" | "PUT" => {
            let resource = entry.get("resource").filter(|r| r.is_object()).ok_or_else(|| {
                Issue::error("required", format!("a {method} entry carries the resource")).at(at("resource"))
            })?;
            if resource["resourceType"] != ty {
                return Err(
                    Issue::error("value", "the resource's type differs from the request url's").at(at("resource"))
                );
            }
            Some(resource.clone())
        }
        "PATCH" => Some(json_patch(&entry["resource"]).map_err(|msg| Issue::error("value", msg).at(at("resource")))?),
        _ => None,
    };
    let headers = [
        ("if-match", "ifMatch"),
        ("if-none-exist", "ifNoneExist"),
        ("if-none-match", "ifNoneMatch"),
        ("if-modified-since", "ifModifiedSince"),
    ]
    .into_iter()
    .filter_map(|(header, element)| request[element].as_str().map(|v| (header, v.to_owned())))
    .collect();
    Ok(EntryRequest { full_url, method, url, body, headers })
}

/// A PATCH entry's JSON Patch: a Binary of `application/json-patch+json`
/// whose data is the patch (R4 http.html#patch).
fn json_patch(resource: &Value) -> Result<Value, String> {
    use base64::Engine;
    let is_patch = resource["resourceType"] == "Binary"
        && resource["contentType"].as_str().is_some_and(|c| c.starts_with("application/json-patch+json"));
    if !is_patch {
        return Err(
            "a PATCH entry carries a Binary of application/json-patch+json (FHIRPath Patch is not supported)".into()
        );
    }
    let bytes = resource["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or("the Binary's data must be base64")?;
    serde_json::from_slice(&bytes).map_err(|_| "the Binary's data is not a JSON Patch document".into())
}

/// A request url the base resolves: a type, then an id, `_history`, an
/// operation or a query; never absolute, never escaping the base.
fn is_relative(url: &str) -> bool {
    let (path, _query) = url.split_once('?').unwrap_or((url, ""));
    let mut segments = path.split('/');
    let ty = segments.next().unwrap_or_default();
    let is_type =
        ty.bytes().next().is_some_and(|b| b.is_ascii_uppercase()) && ty.bytes().all(|b| b.is_ascii_alphabetic());
    is_type
        && segments.all(|s| !s.is_empty() && s != "." && s != "..")
        && !url.contains(|c: char| c == '#' || c.is_whitespace())
}

fn is_full_url(u: &str) -> bool {
    match u.split_once(':') {
        Some(("urn", rest)) => {
            rest.strip_prefix("uuid:").map(is_uuid).or_else(|| rest.strip_prefix("oid:").map(is_oid)).unwrap_or(false)
        }
        Some(("http" | "https", rest)) => rest.starts_with("//") && !u.contains(char::is_whitespace),
        _ => false,
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_oid(s: &str) -> bool {
    s.split('.').count() >= 2 && s.split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The indexes of the entries in the order a transaction processes them;
/// entries of one kind keep the Bundle's order.
pub fn processing_order(entries: &[EntryRequest]) -> Vec<usize> {
    let rank = |m: &str| METHODS.iter().find(|(name, _)| *name == m).map_or(u8::MAX, |(_, r)| *r);
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|i| rank(entries[*i].method));
    order
}

/// Whether a value anywhere in `body` names one of the other entries by
/// its `urn:` fullUrl: a link a batch cannot have (its entries are
/// independent; R4 http.html#brules).
/// A transaction changes a resource once (R4 http.html#trules: the
/// outcome would depend on the order of entries of the same rank).
fn changed_twice(requests: &[EntryRequest]) -> Vec<Issue> {
    let mut seen = std::collections::BTreeSet::new();
    requests
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.method, "PUT" | "PATCH" | "DELETE") && !r.url.contains('?'))
        .filter(|(_, r)| !seen.insert(r.url.as_str()))
        .map(|(i, _)| {
            Issue::error("duplicate", "a transaction changes a resource in one entry only")
                .at(format!("Bundle.entry[{i}].request.url"))
        })
        .collect()
}

/// Replaces every string that is exactly one of `links`' keys (an entry's
/// `urn:` fullUrl, a conditional reference) by its value (`Type/id`),
/// wherever it stands: references in extensions and contained resources too.
pub fn rewrite_links(body: &mut Value, links: &std::collections::HashMap<String, String>) {
    match body {
        Value::String(s) => {
            if let Some(to) = links.get(s.as_str()) {
                *s = to.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_links(v, links)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_links(v, links)),
        _ => {}
    }
}

/// The conditional references of a resource (`Patient?identifier=s|v`,
/// R4 http.html#trules), each to be resolved to the one resource it finds.
pub fn conditional_references(body: &Value, out: &mut Vec<String>) {
    match body {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("reference", Value::String(r)) if is_conditional_reference(r) => out.push(r.clone()),
                    _ => conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| conditional_references(v, out)),
        _ => {}
    }
}

fn is_conditional_reference(r: &str) -> bool {
    r.split_once('?').is_some_and(|(ty, query)| is_relative(ty) && !ty.contains('/') && !query.is_empty())
}

pub fn links_to_entries(body: &Value, full_urls: &[&str]) -> bool {
    match body {
        Value::String(s) => s.starts_with("urn:") && full_urls.contains(&s.as_str()),
        Value::Array(items) => items.iter().any(|v| links_to_entries(v, full_urls)),
        Value::Object(map) => map.values().any(|v| links_to_entries(v, full_urls)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(kind: &str, entries: Value) -> Value {
        json!({"resourceType": "Bundle", "type": kind, "entry": entries})
    }

    #[test]
    fn entries_become_the_requests_they_carry() {
        let b = bundle(
            "transaction",
            json!([
                {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                 "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x|1"}},
                {"request": {"method": "GET", "url": "Observation?code=1234"}},
                {"request": {"method": "DELETE", "url": "Observation/o1", "ifMatch": "W/\"2\""}},
                {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                    "data": "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9hY3RpdmUiLCJ2YWx1ZSI6ZmFsc2V9XQ=="},
                 "request": {"method": "PATCH", "url": "Patient/p1"}},
                {"resource": {"resourceType": "Patient", "id": "p2"}, "request": {"method": "PUT", "url": "Patient/p2"}},
            ]),
        );
        let (kind, entries) = parse(&b, 10).unwrap();
        assert_eq!(kind, Kind::Transaction);
        assert_eq!(entries[0].headers, vec![("if-none-exist", "identifier=x|1".to_owned())]);
        assert_eq!(entries[2].headers, vec![("if-match", "W/\"2\"".to_owned())]);
        assert_eq!(entries[3].body, Some(json!([{"op": "replace", "path": "/active", "value": false}])));
        assert_eq!(entries[1].body, None);
        // Deletes, then creates, then updates and patches, then reads.
        assert_eq!(processing_order(&entries), vec![2, 0, 3, 4, 1]);
    }

    #[test]
    fn every_bad_entry_is_named_at_its_element() {
        let expressions =
            |b: &Value| -> Vec<String> { parse(b, 10).unwrap_err().into_iter().filter_map(|i| i.expression).collect() };
        let b = bundle(
            "batch",
            json!([
                {"request": {"method": "TRACE", "url": "Patient"}},
                {"request": {"method": "GET", "url": "https://elsewhere.example/fhir/Patient/1"}},
                {"request": {"method": "GET", "url": "Patient/../metadata"}},
                {"request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Parameters"}, "request": {"method": "PATCH", "url": "Patient/1"}},
                {"fullUrl": "urn:uuid:not-a-uuid", "request": {"method": "GET", "url": "Patient/1"}},
                {"fullUrl": "urn:oid:1.2.3", "request": {"method": "GET", "url": "Patient/1"}},
                {"fullUrl": "urn:oid:1.2.3", "request": {"method": "GET", "url": "Patient/2"}},
            ]),
        );
        assert_eq!(
            expressions(&b),
            [
                "Bundle.entry[0].request.method",
                "Bundle.entry[1].request.url",
                "Bundle.entry[2].request.url",
                "Bundle.entry[3].resource",
                "Bundle.entry[4].resource",
                "Bundle.entry[5].resource",
                "Bundle.entry[6].fullUrl",
                "Bundle.entry[8].fullUrl",
            ]
        );
        assert_eq!(expressions(&bundle("collection", json!([]))), ["Bundle.type"]);
        assert_eq!(expressions(&json!({"resourceType": "Bundle", "type": "batch", "entry": {}})), ["Bundle.entry"]);
        assert_eq!(expressions(&json!({"resourceType": "Bundle", "type": "batch", "entry": null})), ["Bundle.entry"]);
        let null_url = bundle("batch", json!([{"fullUrl": null, "request": {"method": "GET", "url": "Patient/1"}}]));
        assert_eq!(expressions(&null_url), ["Bundle.entry[0].fullUrl"]);
        let many = bundle("batch", Value::Array(vec![json!({"request": {"method": "GET", "url": "Patient/1"}}); 11]));
        assert_eq!(parse(&many, 10).unwrap_err()[0].code, "too-costly");
        assert_eq!(parse(&bundle("batch", json!([])), 10).unwrap().1, vec![]);
    }

    #[test]
    fn a_transaction_changes_a_resource_once_and_links_are_rewritten_anywhere() {
        let put = json!({"resource": {"resourceType": "Patient", "id": "1"}, "request": {"method": "PUT", "url": "Patient/1"}});
        let del = json!({"request": {"method": "DELETE", "url": "Patient/1"}});
        let issues = parse(&bundle("transaction", json!([put, del])), 10).unwrap_err();
        assert_eq!(issues[0].expression.as_deref(), Some("Bundle.entry[1].request.url"));
        assert!(parse(&bundle("batch", json!([put, del])), 10).is_ok(), "a batch's entries are independent");

        let mut obs = json!({"subject": {"reference": "urn:uuid:a"}, "contained": [{"x": {"reference": "urn:uuid:a"}}],
            "performer": [{"reference": "Practitioner?identifier=http://npi|1"}], "note": [{"text": "urn:uuid:a is here"}]});
        let mut found = vec![];
        conditional_references(&obs, &mut found);
        assert_eq!(found, ["Practitioner?identifier=http://npi|1"]);
        let links = std::collections::HashMap::from([("urn:uuid:a".to_owned(), "Patient/p1".to_owned())]);
        rewrite_links(&mut obs, &links);
        assert_eq!(obs["subject"]["reference"], "Patient/p1");
        assert_eq!(obs["contained"][0]["x"]["reference"], "Patient/p1");
        assert_eq!(obs["note"][0]["text"], "urn:uuid:a is here", "only whole values are links");
    }

    #[test]
    fn a_link_to_another_entry_is_found_anywhere_in_the_resource() {
        let urls = ["urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"];
        let linked = json!({"resourceType": "Observation", "extension": [{"url": "x",
            "valueReference": {"reference": urls[0]}}]});
        assert!(links_to_entries(&linked, &urls));
        assert!(!links_to_entries(&json!({"subject": {"reference": "Patient/1"}}), &urls));
        assert!(!links_to_entries(
            &json!({"subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}}),
            &urls
        ));
    }
}
