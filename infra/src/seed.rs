//! `medrec seed`: synthetic patients loaded through the public API (so they
//! are validated, encrypted, indexed and audited like any other).

use crate::client::HttpClient;
use serde_json::{json, Value};
use std::sync::Arc;

const FAMILY: &[&str] = &[
    "Okafor",
    "Nguyen",
    "García",
    "Smith",
    "Kowalski",
    "Haddad",
    "Tanaka",
    "Müller",
    "O'Brien",
    "Silva",
    "Patel",
    "Johansson",
];
const GIVEN: &[&str] =
    &["Amara", "Linh", "Mateo", "Olivia", "Piotr", "Layla", "Haruto", "Lena", "Saoirse", "João", "Priya", "Erik"];

/// A deterministic synthetic patient for index `i` (no real person's data).
pub fn synthetic_patient(i: u64) -> Value {
    let pick =
        |list: &[&'static str], salt: u64| list[((i.wrapping_mul(2654435761) ^ salt) % list.len() as u64) as usize];
    let year = 1930 + (i * 7919 % 90);
    let month = 1 + (i * 31 % 12);
    let day = 1 + (i * 17 % 28);
    let gender = ["female", "male", "other", "unknown"][(i % 4) as usize];
    json!({
        "resourceType": "Patient",
        "active": true,
        "identifier": [{"system": "urn:medrec:synthetic-mrn", "value": format!("SYN-{i:07}")}],
        "name": [{"use": "official", "family": pick(FAMILY, 0), "given": [pick(GIVEN, 99)]}],
        "gender": gender,
        "birthDate": format!("{year:04}-{month:02}-{day:02}"),
        "telecom": [{"system": "phone", "value": format!("555-01{:02}", i % 100), "use": "home"}],
        "address": [{"line": [format!("{} Synthetic Way", 1 + i % 999)], "city": "Testville", "postalCode": format!("{:05}", 10000 + i % 89999)}]
    })
}

/// Creates `count` patients with `concurrency` requests in flight.
pub async fn seed(
    base_url: &str,
    token: &str,
    count: u64,
    concurrency: usize,
    bar: indicatif::ProgressBar,
) -> Result<u64, String> {
    let client = HttpClient::default();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (client, url, auth, bar) =
            (client.clone(), format!("{base_url}/fhir/Patient"), format!("Bearer {token}"), bar.clone());
        tasks.spawn(async move {
            let body = synthetic_patient(i).to_string().into_bytes();
            let r = client
                .send("POST", &url, &[("authorization", &auth), ("content-type", "application/fhir+json")], Some(body))
                .await;
            drop(permit);
            bar.inc(1);
            match r {
                Ok(reply) if reply.status == 201 => Ok(()),
                Ok(reply) => Err(format!("HTTP {}", reply.status)),
                Err(e) => Err(e),
            }
        });
    }
    let mut created = 0;
    while let Some(res) = tasks.join_next().await {
        match res.map_err(|e| e.to_string())? {
            Ok(()) => created += 1,
            Err(e) => return Err(format!("seeding failed: {e}")),
        }
    }
    bar.finish();
    Ok(created)
}
