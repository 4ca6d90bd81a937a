//! `POST /fhir` with a transaction Bundle (R4 http.html#transaction): one
//! unit of work. Links between entries (`urn:uuid:`/`urn:oid:` fullUrls)
//! and conditional references are resolved to server ids first; the
//! changing entries then run in R4's order (DELETE, POST, PUT/PATCH)
//! through the same REST code as alone, with the store staging
//! (`service::staging`), and commit together with every audit record in
//! one atomic write, or not at all; reads run last, on the committed state.

use super::batch::{response_entry, EntryServer};
use crate::audit::{AuditEntry, Outcome};
use crate::crypto::random_id;
use crate::error::{Error, Result};
use crate::fhir::bundle_request::{conditional_references, processing_order, rewrite_links, EntryRequest, Kind};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::http;
use crate::service::staging;
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use std::collections::hash_map::{Entry, HashMap};

/// Serves a transaction Bundle whose entries are well formed.
pub(super) async fn serve(
    server: EntryServer<'_>,
    audit: &mut AuditEntry,
    mut entries: Vec<EntryRequest>,
) -> Result<Response<Body>> {
    let reads = |e: &EntryRequest| matches!(e.method, "GET" | "HEAD");
    let (links, new_ids) = resolve_links(server, &entries).await?;
    for entry in &mut entries {
        if let Some(body) = entry.body.as_mut() {
            rewrite_links(body, &links);
        }
    }
    let order = processing_order(&entries);
    let mut answers: Vec<Value> = vec![Value::Null; entries.len()];
    let (failed, mut stage) = staging::run(async {
        for &i in order.iter().filter(|i| !reads(&entries[**i])) {
            staging::assign_next_id(new_ids.get(&i).cloned());
            let resp = server.serve(&entries[i]).await;
            if !resp.status().is_success() {
                return Some((i, resp));
            }
            answers[i] = response_entry(server.base, entries[i].method, resp);
        }
        None
    })
    .await;
    let rt = server.rt;
    let objects = std::mem::take(&mut stage.objects);
    if let Some((i, resp)) = failed {
        // Nothing of the transaction is stored. What the refused entry was
        // refused for is evidence (security alerts count it); the audit
        // records of entries that never took effect are not.
        discard(server, &objects).await;
        let refused: Vec<AuditEntry> = stage.audits.into_iter().filter(|a| a.outcome != Outcome::Success).collect();
        if !refused.is_empty() {
            rt.services.record_audits(&refused).await?;
        }
        return Err(entry_failed(i, &resp));
    }
    audit.status = 200;
    if let Err(e) = rt.services.commit_staged(stage, audit).await {
        // A conflict is a commit refused whole. Any other failure may have
        // committed (the sweep decides): its objects stay, unreadable but
        // through a record that names them.
        if matches!(e, Error::Conflict(_)) {
            discard(server, &objects).await;
        }
        return Err(e);
    }
    for &i in order.iter().filter(|i| reads(&entries[**i])) {
        answers[i] = response_entry(server.base, entries[i].method, server.serve(&entries[i]).await);
    }
    let mut out = json!({"resourceType": "Bundle", "type": Kind::Transaction.response_type()});
    if !answers.is_empty() {
        out["entry"] = Value::Array(answers);
    }
    Ok(http::response(200, Some(&out), &[]))
}

/// What every link between entries and every conditional reference stands
/// for (`Type/id`), and the ids the creates named by a link take. A
/// conditional create (`ifNoneExist`) that finds its resource links to it;
/// a conditional reference must find exactly one resource (412 otherwise).
/// The searches run as the caller, audited as alone.
async fn resolve_links(
    server: EntryServer<'_>,
    entries: &[EntryRequest],
) -> Result<(HashMap<String, String>, HashMap<usize, String>)> {
    let mut links = HashMap::new();
    let mut new_ids = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(full_url) = entry.full_url.as_deref().filter(|u| u.starts_with("urn:")) else { continue };
        let target = match entry.method {
            "POST" => {
                let condition = entry.headers.iter().find(|(h, _)| *h == "if-none-exist").map(|(_, v)| v);
                let found = match condition {
                    Some(query) => find(server, i, &format!("{}?{query}", entry.url)).await?,
                    None => (0, None),
                };
                match found {
                    (0, _) => {
                        let id = random_id();
                        new_ids.insert(i, id.clone());
                        format!("{}/{id}", entry.url)
                    }
                    (1, Some(existing)) => existing,
                    (total, _) => return Err(not_one(i, total)),
                }
            }
            "PUT" if !entry.url.contains('?') => entry.url.clone(),
            _ => continue,
        };
        links.insert(full_url.to_owned(), target);
    }
    for (i, entry) in entries.iter().enumerate() {
        let mut conditional = vec![];
        if let Some(body) = &entry.body {
            conditional_references(body, &mut conditional);
        }
        for reference in conditional {
            if let Entry::Vacant(slot) = links.entry(reference) {
                match find(server, i, slot.key()).await? {
                    (1, Some(found)) => slot.insert(found),
                    (total, _) => return Err(not_one(i, total)),
                };
            }
        }
    }
    Ok((links, new_ids))
}

/// How many resources a search (`Type?query`) finds, run as the caller
/// and audited as alone, and the first as `Type/id`.
async fn find(server: EntryServer<'_>, i: usize, url: &str) -> Result<(usize, Option<String>)> {
    let entry = EntryRequest { full_url: None, method: "GET", url: url.to_owned(), body: None, headers: vec![] };
    let resp = server.serve(&entry).await;
    if !resp.status().is_success() {
        return Err(entry_failed(i, &resp));
    }
    let page: Value = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
        _ => Value::Null,
    };
    let matches: Vec<String> = page["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .filter_map(|e| Some(format!("{}/{}", e["resource"]["resourceType"].as_str()?, e["resource"]["id"].as_str()?)))
        .collect();
    let total = page["total"].as_u64().map_or(matches.len(), |t| t as usize);
    Ok((total, matches.into_iter().next()))
}

/// Removes the document objects a transaction that did not commit stored.
async fn discard(server: EntryServer<'_>, objects: &[String]) {
    if let Some(documents) = server.documents {
        documents.discard(objects).await;
    }
}

/// A conditional reference or create must find one resource (R4
/// http.html#trules): none, or more than one, is 412.
fn not_one(i: usize, total: usize) -> Error {
    let what = if total == 0 { "finds no resource" } else { "finds more than one resource" };
    let issue = Issue::error("conflict", format!("a conditional reference or create {what}; it must find exactly one"))
        .at(format!("Bundle.entry[{i}]"));
    Error::EntryFailed { index: i, status: 412, outcome: operation_outcome(&[issue]) }
}

/// The transaction's failure: the entry's own status and OperationOutcome,
/// each issue located in the Bundle (`Observation.value` of entry 3 is
/// `Bundle.entry[3].resource.value`).
fn entry_failed(i: usize, resp: &Response<Body>) -> Error {
    let mut outcome: Value = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
        _ => Value::Null,
    };
    for issue in outcome["issue"].as_array_mut().into_iter().flatten() {
        let located = match issue["expression"][0].as_str() {
            Some(e) if e.starts_with("Bundle.") => e.to_owned(),
            Some(e) => match e.split_once('.') {
                Some((_, rest)) => format!("Bundle.entry[{i}].resource.{rest}"),
                None => format!("Bundle.entry[{i}].resource"),
            },
            None => format!("Bundle.entry[{i}]"),
        };
        issue["expression"] = json!([located]);
    }
    Error::EntryFailed { index: i, status: resp.status().as_u16(), outcome }
}
