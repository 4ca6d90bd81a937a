//! Consuming events: each once, each patient's in order, a failure holding
//! back that patient's later events only, poison reported for the DLQ.

use super::*;
use medrec_core::consumer::{consume, Delivery};
use medrec_core::events::Envelope;
use medrec_core::memory::MemoryClaims;
use medrec_core::ports::{Claim, EventClaims};
use std::sync::Mutex;

fn delivery(message_id: &str, event_id: &str, patient: &str) -> Delivery {
    let detail = json!({"schemaVersion": 1, "id": event_id, "type": "ObservationRecorded", "aggregate": patient,
        "sequence": format!("2026-12-01T00:00:00.000Z#{event_id}"), "at": "2026-12-01T00:00:00.000Z",
        "data": {"resourceType": "Observation", "id": "o1", "versionId": "1"}});
    let body = json!({"source": "medrec", "detail-type": "ObservationRecorded", "detail": detail});
    Delivery { message_id: message_id.into(), body: body.to_string() }
}

#[tokio::test]
async fn each_event_once_each_patient_in_order_and_poison_reported() {
    let claims = MemoryClaims::default();
    let applied = Mutex::new(Vec::<String>::new());
    // e2 (patient a) fails once; b's events are not held back by it.
    let failures = Mutex::new(vec!["e2".to_owned()]);
    let process = |e: Envelope| {
        let (applied, failures) = (&applied, &failures);
        async move {
            let mut f = failures.lock().unwrap();
            if let Some(i) = f.iter().position(|id| *id == e.id) {
                f.remove(i);
                return Err("registry unavailable");
            }
            applied.lock().unwrap().push(e.id);
            Ok(())
        }
    };
    let batch = vec![
        delivery("m1", "e1", "a"),
        delivery("m2", "e2", "a"),
        delivery("m3", "e3", "a"),
        delivery("m4", "e4", "b"),
        Delivery { message_id: "m5".into(), body: "{\"not\": \"an event\"}".into() },
        delivery("m6", "e5", "b"),
    ];
    let mut failed = consume(&claims, batch.clone(), process).await;
    failed.sort();
    assert_eq!(failed, vec!["m2", "m3", "m5"], "e2 failed, e3 waits behind it, m5 is poison");
    assert_eq!(*applied.lock().unwrap(), vec!["e1", "e4", "e5"]);

    // The redelivery of the whole batch applies what is left, in order, once.
    let failed = consume(&claims, batch.clone(), process).await;
    assert_eq!(failed, vec!["m5"]);
    assert_eq!(*applied.lock().unwrap(), vec!["e1", "e4", "e5", "e2", "e3"]);
    assert_eq!(consume(&claims, batch, process).await, vec!["m5"], "duplicates do nothing");
    assert_eq!(applied.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn an_event_claimed_elsewhere_is_redelivered_not_acknowledged() {
    let claims = MemoryClaims::default();
    assert_eq!(claims.claim("e1").await.unwrap(), Claim::Mine);
    let ran = Mutex::new(0);
    let process = |_e: Envelope| {
        let ran = &ran;
        async move {
            *ran.lock().unwrap() += 1;
            Ok::<(), String>(())
        }
    };
    let failed = consume(&claims, vec![delivery("m1", "e1", "a"), delivery("m2", "e2", "a")], process).await;
    assert_eq!(failed, vec!["m1", "m2"], "in progress elsewhere: it and what follows come back");
    assert_eq!(*ran.lock().unwrap(), 0);
}
