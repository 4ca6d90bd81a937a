//! Consuming domain events once and in each patient's order. Queues
//! deliver at least once and out of order; a consumer claims an event id
//! before it acts and marks it done after (`ports::EventClaims`), so a
//! duplicate does nothing, and a patient's stream stops at its first
//! failure so no later event of that patient is applied before it.

use crate::events::Envelope;
use crate::ports::{Claim, EventClaims};
use std::future::Future;

/// One message as the queue delivered it: the queue's id for it (what a
/// partial-batch answer names) and its body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
}

/// Runs `process` once per event of a batch and returns the message ids to
/// redeliver: a message that is not a medrec event (poison, for the DLQ
/// after the queue's receive limit), one whose processing failed or is in
/// progress elsewhere, and every later message of the same patient.
/// Different patients' streams run side by side.
pub async fn consume<C, F, Fut, E>(claims: &C, batch: Vec<Delivery>, process: F) -> Vec<String>
where
    C: EventClaims,
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut failed = vec![];
    let mut streams: Vec<(String, Vec<(String, Envelope)>)> = vec![];
    for message in batch {
        match Envelope::from_bus_message(&message.body) {
            Ok(e) => match streams.iter_mut().find(|(a, _)| *a == e.aggregate) {
                Some((_, s)) => s.push((message.message_id, e)),
                None => streams.push((e.aggregate.clone(), vec![(message.message_id, e)])),
            },
            Err(e) => {
                tracing::warn!(message_id = %message.message_id, error = %e, "poison message");
                failed.push(message.message_id);
            }
        }
    }
    let process = &process;
    let outcomes = futures_util::future::join_all(streams.into_iter().map(|(_, stream)| async move {
        let mut failed = vec![];
        for (id, envelope) in stream {
            if !failed.is_empty() {
                failed.push(id);
                continue;
            }
            if let Err(e) = once(claims, &envelope, process).await {
                tracing::warn!(event_id = %envelope.id, event_type = %envelope.event_type, error = %e, "event not processed");
                failed.push(id);
            }
        }
        failed
    }))
    .await;
    failed.extend(outcomes.into_iter().flatten());
    failed
}

async fn once<C, F, Fut, E>(claims: &C, envelope: &Envelope, process: &F) -> Result<(), String>
where
    C: EventClaims,
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match claims.claim(&envelope.id).await.map_err(|e| e.to_string())? {
        Claim::Done => Ok(()),
        Claim::InProgress => Err("being processed by another delivery".into()),
        Claim::Mine => match process(envelope.clone()).await {
            Ok(()) => claims.done(&envelope.id).await.map_err(|e| e.to_string()),
            Err(e) => {
                // Best effort: were the release lost, the claim's lease
                // expires and a later delivery takes it over.
                let _ = claims.release(&envelope.id).await;
                Err(e.to_string())
            }
        },
    }
}
