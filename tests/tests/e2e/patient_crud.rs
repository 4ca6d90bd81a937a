//! Patient REST over HTTP against the emulator: create, read, vread, update
//! with If-Match, delete, history.

use medrec_e2e::{canary_patient, unique_tag, Harness};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_update_delete_history() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-crud");
    let admin = h.token("admin", "admin-crud");

    let r = h.create(&t, &canary_patient(&unique_tag())).await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.header("location").unwrap(), h.url(&format!("/fhir/Patient/{id}/_history/1")));
    assert_eq!(r.json()["meta"]["versionId"], "1");
    assert!(r.json()["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("content-type").unwrap().starts_with("application/fhir+json"));

    let read = h.get(&format!("/fhir/Patient/{id}"), &t).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), r.json());
    assert_eq!(read.header("etag"), Some("W/\"1\""));

    let mut updated = read.json();
    updated["gender"] = json!("other");
    let body = updated.to_string();
    let u = h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"1\"")], Some(&body)).await;
    assert_eq!(u.status, 200, "{}", String::from_utf8_lossy(&u.body));
    assert_eq!(u.header("etag"), Some("W/\"2\""));
    assert_eq!(u.json()["gender"], "other");
    assert_eq!(u.json()["meta"]["versionId"], "2");

    let stale = h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"1\"")], Some(&body)).await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.json()["resourceType"], "OperationOutcome");

    let mut other_id = updated.clone();
    other_id["id"] = json!("someoneelse");
    let mismatch = h
        .call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"2\"")], Some(&other_id.to_string()))
        .await;
    assert_eq!(mismatch.status, 400);

    let v1 = h.get(&format!("/fhir/Patient/{id}/_history/1"), &t).await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json()["gender"], "female");
    assert_eq!(h.get(&format!("/fhir/Patient/{id}/_history/9"), &t).await.status, 404);

    // Clinicians may not delete; admins may, and deletion is logical.
    assert_eq!(h.call("DELETE", &format!("/fhir/Patient/{id}"), Some(&t), &[], None).await.status, 403);
    assert_eq!(
        h.call("DELETE", &format!("/fhir/Patient/{id}"), Some(&admin), &[("if-match", "W/\"1\"")], None).await.status,
        412
    );
    assert_eq!(h.call("DELETE", &format!("/fhir/Patient/{id}"), Some(&admin), &[], None).await.status, 204);
    assert_eq!(
        h.call("DELETE", &format!("/fhir/Patient/{id}"), Some(&admin), &[], None).await.status,
        204,
        "delete is idempotent"
    );
    assert_eq!(h.get(&format!("/fhir/Patient/{id}"), &t).await.status, 410);
    assert_eq!(h.get(&format!("/fhir/Patient/{id}/_history/3"), &t).await.status, 410);
    assert_eq!(h.get(&format!("/fhir/Patient/{id}/_history/2"), &t).await.status, 200, "history survives deletion");
    let upd_deleted =
        h.call("PUT", &format!("/fhir/Patient/{id}"), Some(&t), &[("if-match", "W/\"3\"")], Some(&body)).await;
    assert_eq!(upd_deleted.status, 410);

    let hist = h.get(&format!("/fhir/Patient/{id}/_history"), &t).await;
    assert_eq!(hist.status, 200);
    let b = hist.json();
    assert_eq!(b["type"], "history");
    assert_eq!(b["total"], 3);
    let entries = b["entry"].as_array().unwrap();
    let methods: Vec<&str> = entries.iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, vec!["DELETE", "PUT", "POST"]);
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[1]["resource"]["meta"]["versionId"], "2");
    assert_eq!(entries[2]["response"]["etag"], "W/\"1\"");

    assert_eq!(h.get("/fhir/Patient/doesnotexist", &t).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_with_cursors() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-hist");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let mut current = h.get(&format!("/fhir/Patient/{id}"), &t).await.json();
    for v in 1..=6 {
        current["active"] = json!(v % 2 == 0);
        let r = h
            .call(
                "PUT",
                &format!("/fhir/Patient/{id}"),
                Some(&t),
                &[("if-match", &format!("W/\"{v}\""))],
                Some(&current.to_string()),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let mut versions = vec![];
    let mut next = Some(format!("/fhir/Patient/{id}/_history?_count=3"));
    while let Some(path) = next.take() {
        let b = h.get(&path, &t).await.json();
        versions
            .extend(b["entry"].as_array().unwrap().iter().map(|e| e["response"]["etag"].as_str().unwrap().to_owned()));
        next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().replace(&h.stack.base_url, ""));
    }
    let expected: Vec<String> = (1..=7).rev().map(|v| format!("W/\"{v}\"")).collect();
    assert_eq!(versions, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_never_both_win() {
    let h = Harness::start().await;
    let t = h.token("clinician", "dr-race");
    let id = h.create_id(&t, &canary_patient(&unique_tag())).await;
    let body = h.get(&format!("/fhir/Patient/{id}"), &t).await.json().to_string();
    let path = format!("/fhir/Patient/{id}");
    let auth = format!("Bearer {t}");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (client, url, auth, body) = (h.client.clone(), h.url(&path), auth.clone(), body.clone().into_bytes());
        set.spawn(async move {
            let headers =
                [("authorization", auth.as_str()), ("if-match", "W/\"1\""), ("content-type", "application/fhir+json")];
            client.send("PUT", &url, &headers, Some(body)).await.expect("HTTP exchange").status
        });
    }
    let statuses: Vec<u16> = set.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 412), "{statuses:?}");
    assert_eq!(h.get(&path, &t).await.json()["meta"]["versionId"], "2");
}
