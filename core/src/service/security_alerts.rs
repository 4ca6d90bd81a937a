//! Security alerts: a principal (or, before authentication, a source
//! address) that fails `threshold` times within a window raises one
//! `SecurityAlert` event on the bus, routed to the security team's queue
//! beside `BreakGlassUsed`. Counted in shared counters, one per principal
//! and window (the current window and the one before approximate a sliding
//! window), so every function sees every failure at a constant cost per
//! failure: reading the principal's trail for each one made a burst of
//! failures quadratic, which is what an attacker produces. Raised once per
//! principal per window, however many functions see it cross the line.

use super::Services;
use crate::audit::AuditEntry;
use crate::crypto::{hex, random_id, sha256};
use crate::ports::{AuditLog, DomainEvent, KeyService, RecordStore};
use serde_json::json;
use std::time::Duration;

/// When repeated failures become an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertPolicy {
    pub threshold: usize,
    pub window: Duration,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy { threshold: 5, window: Duration::from_secs(300) }
    }
}

impl<S: RecordStore + AuditLog, K: KeyService> Services<S, K> {
    /// After a failed or denied attempt has been audited: counts the
    /// principal's failures in the window and raises the alert once.
    /// Best effort, like the failure's audit record: logged, never fatal.
    pub async fn alert_on_repeated_failures(&self, entry: &AuditEntry, policy: AlertPolicy) {
        let Some(agent) = entry.agent_key() else { return };
        let now = time::OffsetDateTime::now_utc();
        let seconds = policy.window.as_secs().max(1) as i64;
        let bucket = now.unix_timestamp() / seconds;
        // Counter names carry a digest, not the principal.
        let counter = |b: i64| hex(&sha256(format!("Failures|{agent}|{b}").as_bytes())[..16]);
        let expires = (bucket + 2) * seconds;
        let failures = match self.store.count_failure(&counter(bucket), &counter(bucket - 1), expires).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot count failures for alerting");
                return;
            }
        };
        if failures < policy.threshold as u64 {
            return;
        }
        let kind = if entry.agent.subject.is_none() { "failed-authentications" } else { "repeated-denials" };
        let key = hex(&sha256(format!("SecurityAlert|{agent}|{bucket}").as_bytes())[..16]);
        let mut audit = self.draft(None, "security-alert");
        audit.agent.subject = entry.agent.subject.clone();
        audit.agent.source_ip = entry.agent.source_ip.clone();
        let event = DomainEvent {
            id: random_id(),
            event_type: "SecurityAlert",
            aggregate: "security".into(),
            at: audit.recorded.clone(),
            detail: json!({"kind": kind, "agent": agent, "failures": failures,
                "windowSeconds": policy.window.as_secs(), "lastAuditEventId": entry.id}),
        };
        match self.store.audit_once(&key, &audit, vec![event]).await {
            Ok(true) => tracing::warn!(kind, failures, "security alert raised"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot raise security alert"),
        }
    }
}
