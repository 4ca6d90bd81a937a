//! A realistic cohort through the API: the Synthea-style transaction Bundles
//! `make setup` generates (4 adults, 5,496 resources of 24 types, from a
//! pinned generator and seed) loaded entry by entry, as an integrator without
//! transactions would: each `urn:uuid:` reference rewritten to the server's
//! id once its target exists. The generator writes some resources that R4
//! refuses; the test predicts which on its own (without medrec's validator),
//! and medrec must refuse exactly those, with 422, and accept every other.
//! Every accepted resource must then read back exactly as sent, decimals
//! included.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::stream::{self, StreamExt};
use medrec_e2e::cohort::{self, invalid_in_r4, links};
use medrec_e2e::{next_path, Harness};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Requests in flight while loading: an integrator's loader, not a flood.
const IN_FLIGHT: usize = 8;

struct Entry {
    full_url: String,
    resource: Value,
}

fn cohort() -> Vec<Entry> {
    cohort::files()
        .iter()
        .flat_map(cohort::entries)
        .map(|e| Entry {
            full_url: e["fullUrl"].as_str().expect("fullUrl").to_owned(),
            resource: e["resource"].clone(),
        })
        .collect()
}

fn rewrite(v: &mut Value, ids: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match (k.as_str(), &*v) {
                    ("reference", Value::String(r)) if ids.contains_key(r) => *v = Value::String(ids[r].clone()),
                    _ => rewrite(v, ids),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite(v, ids)),
        _ => {}
    }
}

/// What the server adds to a resource it stores: its id and version.
fn as_sent(mut r: Value) -> Value {
    let m = r.as_object_mut().expect("resource");
    m.remove("id");
    if let Some(meta) = m.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            m.remove("meta");
        }
    }
    r
}

/// Whether a type lives in the directory (registrars keep it).
fn in_directory(ty: &str) -> bool {
    medrec_edge::fhir::resources::directory_type(ty).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realistic_cohort_loads_and_reads_back_exactly() {
    let h = Harness::start().await;
    let clinician = h.token("clinician", "dr-cohort");
    let registrar = h.token("registrar", "desk-cohort");
    let entries = cohort();
    let total = entries.len();
    assert!(total > 5000, "the cohort is realistic in size: {total}");
    let types: HashMap<&str, &str> =
        entries.iter().map(|e| (e.full_url.as_str(), e.resource["resourceType"].as_str().expect("type"))).collect();
    let predicted: BTreeSet<String> =
        entries.iter().filter(|e| invalid_in_r4(&e.resource, &types)).map(|e| e.full_url.clone()).collect();
    assert!(predicted.len() < total / 20, "{} of {total} predicted invalid", predicted.len());

    let mut ids: HashMap<String, String> = HashMap::new();
    let mut rejected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failed_urls: BTreeSet<String> = BTreeSet::new();
    let mut accepted: Vec<(String, Value)> = vec![];
    let mut pending: Vec<Entry> = entries;
    while !pending.is_empty() {
        // A resource is sent once everything it references exists (or was
        // refused: its reference then stays unresolved, as it would for the
        // integrator).
        let (ready, rest): (Vec<Entry>, Vec<Entry>) = pending.into_iter().partition(|e| {
            let mut l = vec![];
            links(&e.resource, &mut l);
            l.iter().all(|u| ids.contains_key(u) || failed_urls.contains(u) || *u == e.full_url)
        });
        assert!(!ready.is_empty(), "a reference cycle among {} resources", rest.len());
        pending = rest;
        let sent: Vec<(Entry, Value, u16, Value)> = stream::iter(ready)
            .map(|e| {
                let (h, ids) = (&h, &ids);
                let (clinician, registrar) = (&clinician, &registrar);
                async move {
                    let ty = e.resource["resourceType"].as_str().expect("type").to_owned();
                    let mut body = e.resource.clone();
                    body.as_object_mut().expect("resource").remove("id");
                    rewrite(&mut body, ids);
                    let token = if in_directory(&ty) { registrar } else { clinician };
                    let r = h.call("POST", &format!("/fhir/{ty}"), Some(token), &[], Some(&body.to_string())).await;
                    let reply: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    (e, body, r.status, reply)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (e, body, status, reply) in sent {
            let ty = body["resourceType"].as_str().unwrap().to_owned();
            assert!(status < 500, "{ty}: {status} {reply}");
            if status == 201 {
                let id = reply["id"].as_str().expect("id").to_owned();
                ids.insert(e.full_url, format!("{ty}/{id}"));
                accepted.push((format!("{ty}/{id}"), body));
            } else {
                let why = reply["issue"][0]["diagnostics"].as_str().unwrap_or_default().to_owned();
                rejected.entry(ty).or_default().push(format!("{status} {why}"));
                failed_urls.insert(e.full_url);
            }
        }
    }

    let refused = failed_urls.len();
    println!("cohort: {}/{total} accepted ({:.2}%)", total - refused, 100.0 * (total - refused) as f64 / total as f64);
    for (ty, reasons) in &rejected {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        reasons.iter().for_each(|r| *counts.entry(r.as_str()).or_default() += 1);
        println!("  {ty}: {counts:#?}");
        for r in reasons {
            assert!(r.starts_with("422 "), "{ty} refused other than by validation: {r}");
        }
    }
    assert_eq!(failed_urls, predicted, "medrec refuses exactly what R4 refuses");

    // Every accepted resource reads back as sent (JSON-equal, with the
    // number text of every decimal kept): each patient's whole record
    // through `$everything`, which must hold exactly what was accepted for
    // them, and the directory resource by resource.
    let mut read: HashMap<String, Value> = HashMap::new();
    for patient in accepted.iter().filter_map(|(path, _)| path.strip_prefix("Patient/")) {
        let mut path = format!("/fhir/Patient/{patient}/$everything?_count=1000");
        loop {
            let page = h.get(&path, &clinician).await;
            assert_eq!(page.status, 200, "{}", page.text());
            let page = page.json();
            for e in page["entry"].as_array().into_iter().flatten() {
                let r = &e["resource"];
                let key = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
                assert!(read.insert(key.clone(), as_sent(r.clone())).is_none(), "{key} twice");
            }
            let Some(next) = next_path(&page) else { break };
            path = next;
        }
    }
    let directory: Vec<&String> = accepted
        .iter()
        .map(|(path, _)| path)
        .filter(|p| p.split_once('/').is_some_and(|(ty, _)| in_directory(ty)))
        .collect();
    let fetched: Vec<(String, Value)> = stream::iter(directory)
        .map(|path| {
            let (h, registrar) = (&h, &registrar);
            async move {
                let r = h.get(&format!("/fhir/{path}"), registrar).await;
                assert_eq!(r.status, 200, "{path}: {}", r.text());
                (path.clone(), as_sent(r.json()))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    read.extend(fetched);
    // Each document's bytes come back from its Binary exactly as sent.
    let mut documents = vec![];
    for (path, body) in accepted.iter_mut().filter(|(path, _)| path.starts_with("DocumentReference/")) {
        let sent = cohort::attachments_apart(body);
        let stored = read.get_mut(path).map(cohort::attachments_apart).unwrap_or_default();
        assert_eq!(sent.len(), stored.len(), "{path}: every attachment is kept");
        documents.extend(sent.into_iter().zip(stored));
    }
    let documents_read = documents.len();
    stream::iter(documents)
        .for_each_concurrent(IN_FLIGHT, |(data, url)| {
            let (h, clinician) = (&h, &clinician);
            async move {
                let r = h.call("GET", &format!("/fhir/{url}"), Some(clinician), &[("accept", "*/*")], None).await;
                assert_eq!(r.status, 200, "{url}");
                assert!(
                    B64.decode(&data).is_ok_and(|d| d == r.body.as_ref()),
                    "{url} holds other bytes than were sent"
                );
            }
        })
        .await;
    println!("{} resources read back, {documents_read} documents' bytes", read.len());
    let differ: Vec<&String> =
        accepted.iter().filter(|(path, body)| read.get(path) != Some(body)).map(|(path, _)| path).collect();
    assert!(
        differ.is_empty(),
        "{} resources read back changed or missing: {:?}",
        differ.len(),
        &differ[..differ.len().min(10)]
    );
    assert_eq!(read.len(), accepted.len(), "$everything holds exactly what was stored");
}
