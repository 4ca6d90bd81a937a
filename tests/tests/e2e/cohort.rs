//! A realistic cohort through the API: the Synthea-style transaction Bundles
//! `make setup` generates (4 adults, 5,496 resources of 24 types, from a
//! pinned generator and seed), loaded in dependency order: each `urn:uuid:`
//! reference rewritten to the server's id once its target exists. The first
//! `ALONE` resources of each type are created one request each, as an
//! integrator without transactions would; the rest go as transaction
//! Bundles of up to `CHUNK` entries, as a loader with transactions would
//! (one request per chunk: most of the cohort in fewer emulator calls).
//! The generator
//! writes some resources that R4 refuses; the test predicts which on its
//! own (without medrec's validator), sends each of them alone, and medrec
//! must refuse exactly those, with 422, and accept every other (a
//! transaction refusing one fails the test, naming the entry). Every
//! accepted resource must then read back exactly as sent, decimals
//! included.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::stream::{self, StreamExt};
use medrec_e2e::cohort::{self, invalid_in_r4, links};
use medrec_e2e::{next_path, Harness};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Requests in flight while loading: an integrator's loader, not a flood.
const IN_FLIGHT: usize = 8;

/// Entries per transaction Bundle: well under the 1,000 a Bundle may hold,
/// so one commits well within the transaction deadline on the emulator.
const CHUNK: usize = 250;

/// Resources of each type created one request each.
const ALONE: usize = 25;

struct Entry {
    full_url: String,
    resource: Value,
    /// Sent alone (the first `ALONE` of its type, and what R4 refuses), or
    /// in a transaction.
    alone: bool,
}

fn cohort() -> Vec<Entry> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    cohort::files()
        .iter()
        .flat_map(cohort::entries)
        .map(|e| {
            let n = seen.entry(ty_of(&e["resource"]).to_owned()).or_default();
            *n += 1;
            Entry {
                full_url: e["fullUrl"].as_str().expect("fullUrl").to_owned(),
                resource: e["resource"].clone(),
                alone: *n <= ALONE,
            }
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

/// One entry's outcome: the entry, the body sent, the status and the reply
/// (the created resource or the OperationOutcome).
type Sent = (Entry, Value, u16, Value);

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
    let mut pending: Vec<Entry> = entries
        .into_iter()
        .map(|mut e| {
            e.alone |= predicted.contains(&e.full_url);
            e
        })
        .collect();
    let (mut alone, mut transactions) = (0, 0);
    let started = std::time::Instant::now();
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
        let prepared: Vec<(Entry, Value)> = ready
            .into_iter()
            .map(|e| {
                let mut body = e.resource.clone();
                body.as_object_mut().expect("resource").remove("id");
                rewrite(&mut body, &ids);
                (e, body)
            })
            .collect();
        let (one_by_one, bundled): (Vec<_>, Vec<_>) = prepared.into_iter().partition(|(e, _)| e.alone);
        alone += one_by_one.len();
        let mut sent: Vec<Sent> = stream::iter(one_by_one)
            .map(|(e, body)| {
                let h = &h;
                let token = if in_directory(ty_of(&body)) { &registrar } else { &clinician };
                async move {
                    let r = h
                        .call("POST", &format!("/fhir/{}", ty_of(&body)), Some(token), &[], Some(&body.to_string()))
                        .await;
                    let reply: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    (e, body, r.status, reply)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        // The directory's entries are the registrar's, the rest the
        // clinician's: each transaction is one caller's.
        let (directory, clinical): (Vec<_>, Vec<_>) = bundled.into_iter().partition(|(_, b)| in_directory(ty_of(b)));
        for (token, group) in [(&registrar, directory), (&clinician, clinical)] {
            for chunk in chunks(group) {
                transactions += 1;
                sent.extend(send_transaction(&h, token, chunk).await);
            }
        }
        for (e, body, status, reply) in sent {
            let ty = ty_of(&body).to_owned();
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
    println!(
        "cohort loaded in {:.1?}: {alone} resources alone, {} in {transactions} transactions",
        started.elapsed(),
        total - alone
    );

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

/// Transaction-sized chunks, each fullUrl at most once in one (the
/// generator writes a shared Organization or Practitioner into every
/// patient's file under one fullUrl, and a Bundle's fullUrls are unique).
fn chunks(entries: Vec<(Entry, Value)>) -> Vec<Vec<(Entry, Value)>> {
    type Chunk = (BTreeSet<String>, Vec<(Entry, Value)>);
    let mut out: Vec<Chunk> = vec![];
    for (e, body) in entries {
        let slot = match out.iter().position(|(urls, c)| c.len() < CHUNK && !urls.contains(&e.full_url)) {
            Some(i) => i,
            None => {
                out.push(Default::default());
                out.len() - 1
            }
        };
        out[slot].0.insert(e.full_url.clone());
        out[slot].1.push((e, body));
    }
    out.into_iter().map(|(_, c)| c).collect()
}

fn ty_of(resource: &Value) -> &str {
    resource["resourceType"].as_str().expect("resourceType")
}

/// Sends entries as one transaction Bundle of creates, which must commit
/// whole: each entry's outcome as if it had been sent alone.
async fn send_transaction(h: &Harness, token: &str, chunk: Vec<(Entry, Value)>) -> Vec<Sent> {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": chunk.iter().map(|(e, body)| json!({
            "fullUrl": e.full_url,
            "resource": body,
            "request": {"method": "POST", "url": ty_of(body)},
        })).collect::<Vec<_>>(),
    });
    let r = h.call("POST", "/fhir", Some(token), &[], Some(&bundle.to_string())).await;
    assert_eq!(r.status, 200, "a transaction of {} entries: {}", chunk.len(), &r.text()[..r.text().len().min(2000)]);
    let out = r.json();
    let replies = out["entry"].as_array().expect("entries");
    assert_eq!(replies.len(), chunk.len());
    chunk
        .into_iter()
        .zip(replies)
        .map(|((e, body), reply)| {
            assert_eq!(reply["response"]["status"], "201 Created", "{}", e.full_url);
            (e, body, 201, reply["resource"].clone())
        })
        .collect()
}
