//! Security alerts: a principal (or, before authentication, a source
//! address) that fails `threshold` times within a window raises one
//! `SecurityAlert` event on the bus, routed to the security team's queue
//! beside `BreakGlassUsed`. Counted from the audit trail itself (the by-agent
//! index), so every function sees every failure, and raised once per
//! principal per window, however many functions see it cross the line.

use super::Services;
use crate::audit::AuditEntry;
use crate::crypto::{hex, random_id, sha256};
use crate::ports::{AuditKey, AuditLog, DomainEvent, KeyService, RecordStore};
use serde_json::{json, Value};
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

/// The key failures are counted under: the verified subject, else the
/// source address of an unauthenticated attempt. Matches the `agent`
/// attribute the audit store indexes.
pub fn agent_key(entry: &AuditEntry) -> Option<String> {
    match (&entry.agent.subject, &entry.agent.source_ip) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(ip)) => Some(format!("ip:{ip}")),
        (None, None) => None,
    }
}

impl<S: RecordStore + AuditLog, K: KeyService> Services<S, K> {
    /// After a failed or denied attempt has been audited: counts the
    /// principal's failures in the window and raises the alert once.
    /// Best effort, like the failure's audit record: logged, never fatal.
    pub async fn alert_on_repeated_failures(&self, entry: &AuditEntry, policy: AlertPolicy) {
        let Some(agent) = agent_key(entry) else { return };
        let now = time::OffsetDateTime::now_utc();
        let window = time::Duration::try_from(policy.window).unwrap_or(time::Duration::minutes(5));
        let from = crate::fhir::instant(now - window);
        let to = crate::fhir::instant(now);
        let records = match self.store.audit_records(AuditKey::Agent(&agent), &from, &to).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot count failures for alerting");
                return;
            }
        };
        let failures: Vec<Value> = records
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|e| e["outcome"] != "0" && e["subtype"][0]["code"] != "security-alert")
            .collect();
        if failures.len() < policy.threshold {
            return;
        }
        let kind = if entry.agent.subject.is_none() { "failed-authentications" } else { "repeated-denials" };
        let bucket = now.unix_timestamp() / policy.window.as_secs().max(1) as i64;
        let key = hex(&sha256(format!("SecurityAlert|{agent}|{bucket}").as_bytes())[..16]);
        let mut audit = self.draft(None, "security-alert");
        audit.agent.subject = entry.agent.subject.clone();
        audit.agent.source_ip = entry.agent.source_ip.clone();
        let event = DomainEvent {
            id: random_id(),
            event_type: "SecurityAlert",
            aggregate: "security".into(),
            at: audit.recorded.clone(),
            detail: json!({"kind": kind, "agent": agent, "failures": failures.len(),
                "windowSeconds": policy.window.as_secs(), "lastAuditEventId": entry.id}),
        };
        match self.store.audit_once(&key, &audit, vec![event]).await {
            Ok(true) => tracing::warn!(kind, failures = failures.len(), "security alert raised"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot raise security alert"),
        }
    }
}
