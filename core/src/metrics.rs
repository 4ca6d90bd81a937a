//! What one request did, counted where it happens and emitted once, at the
//! edge, as that request's metrics: AWS calls and their time by service,
//! key-cache hits and misses, audit writes, consent denials, break-glass
//! uses, validation failures. The counts live in a task-local, so requests
//! served side by side in one process (the local stack runs every function
//! in one) never mix; outside a measured request counting does nothing.
//!
//! Names only, never values: a metric is a name and a number, so nothing a
//! request carries (an id, a search value) can reach a dimension.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

/// The counters a request may raise, by the name CloudWatch shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    KeyCacheHits,
    KeyCacheMisses,
    AuditWrites,
    AuditWriteFailures,
    ConsentDenials,
    BreakGlassUses,
    ValidationFailures,
    EventsRelayed,
    EventsFailed,
    AnomalyAlerts,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::KeyCacheHits,
        Counter::KeyCacheMisses,
        Counter::AuditWrites,
        Counter::AuditWriteFailures,
        Counter::ConsentDenials,
        Counter::BreakGlassUses,
        Counter::ValidationFailures,
        Counter::EventsRelayed,
        Counter::EventsFailed,
        Counter::AnomalyAlerts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::KeyCacheHits => "KeyCacheHits",
            Counter::KeyCacheMisses => "KeyCacheMisses",
            Counter::AuditWrites => "AuditWrites",
            Counter::AuditWriteFailures => "AuditWriteFailures",
            Counter::ConsentDenials => "ConsentDenials",
            Counter::BreakGlassUses => "BreakGlassUses",
            Counter::ValidationFailures => "ValidationFailures",
            Counter::EventsRelayed => "EventsRelayed",
            Counter::EventsFailed => "EventsFailed",
            Counter::AnomalyAlerts => "AnomalyAlerts",
        }
    }
}

/// One request's counts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestMetrics {
    pub counts: BTreeMap<Counter, u64>,
    /// AWS calls by service (`dynamodb`, `kms`, ...): (calls, milliseconds).
    pub aws: BTreeMap<&'static str, (u64, f64)>,
}

tokio::task_local! {
    static CURRENT: RefCell<RequestMetrics>;
}

/// Runs `work` with its own counts and returns them with its output. Work
/// the request hands to another task (`tokio::spawn`) is not counted.
pub async fn measured<F: Future>(work: F) -> (F::Output, RequestMetrics) {
    CURRENT
        .scope(RefCell::new(RequestMetrics::default()), async move {
            let out = work.await;
            (out, CURRENT.with(|m| m.take()))
        })
        .await
}

/// Adds `n` to a counter of the request being served, if any.
pub fn add(counter: Counter, n: u64) {
    if n > 0 {
        let _ = CURRENT.try_with(|m| *m.borrow_mut().counts.entry(counter).or_default() += n);
    }
}

pub fn count(counter: Counter) {
    add(counter, 1);
}

/// One AWS call of the request being served and how long it took. The
/// service is one of a fixed list (the SDK's own names), never free text.
pub fn aws_call(service: &'static str, ms: f64) {
    let _ = CURRENT.try_with(|m| {
        let mut m = m.borrow_mut();
        let entry = m.aws.entry(service).or_default();
        entry.0 += 1;
        entry.1 += ms;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_belong_to_the_request_that_raised_them() {
        let (_, outside) = measured(async {}).await;
        assert_eq!(outside, RequestMetrics::default());
        count(Counter::AuditWrites); // no request: nothing to count into
        let one = measured(async {
            count(Counter::KeyCacheHits);
            add(Counter::AuditWrites, 2);
            aws_call("dynamodb", 1.5);
            aws_call("dynamodb", 0.5);
        });
        let other = measured(async {
            tokio::task::yield_now().await;
            count(Counter::ConsentDenials);
        });
        let ((_, a), (_, b)) = tokio::join!(one, other);
        assert_eq!(a.counts, BTreeMap::from([(Counter::KeyCacheHits, 1), (Counter::AuditWrites, 2)]));
        assert_eq!(a.aws["dynamodb"], (2, 2.0));
        assert_eq!(b.counts, BTreeMap::from([(Counter::ConsentDenials, 1)]));
        assert!(b.aws.is_empty());
    }
}
