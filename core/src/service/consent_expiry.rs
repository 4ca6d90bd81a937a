//! `ConsentExpiring` notices: an active Consent whose provision period ends
//! is indexed under a blind-index token of its end date, so the scheduled
//! job finds the consents ending in the next N days with one query per day
//! and never decrypts a record (it needs no PHI and reads none). Each
//! consent version is noticed once, however often the job runs.

use super::Services;
use crate::crypto::{hex, sha256};
use crate::error::Result;
use crate::ports::{DomainEvent, KeyService, RecordStore};
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};

const PARAM: &str = "period-end";

/// The day an active Consent's provision period ends (its date part, as the
/// consent states it), if it has one.
fn end_day(consent: &Value) -> Option<String> {
    if consent["status"] != "active" {
        return None;
    }
    let end = consent["provision"]["period"]["end"].as_str()?;
    let day = end.get(..10)?;
    Date::parse(day, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(day.to_owned())
}

fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The index tokens a compartment record is stored under (only Consent
    /// has any: its end date while active).
    pub(crate) fn expiry_tokens(&self, resource_type: &str, resource: &Value) -> Vec<String> {
        match (resource_type, end_day(resource)) {
            ("Consent", Some(d)) => vec![self.index.token("Consent", PARAM, &d)],
            _ => vec![],
        }
    }

    /// Emits `ConsentExpiring` for every active consent whose period ends
    /// within `days` days of `today` (inclusive), once per consent version.
    /// Returns how many notices were new.
    pub async fn notify_expiring_consents(&self, today: OffsetDateTime, days: u32) -> Result<usize> {
        let mut sent = 0;
        for offset in 0..=i64::from(days) {
            let d = day((today + Duration::days(offset)).date());
            for id in self.store.ids_for_token("Consent", &self.index.token("Consent", PARAM, &d)).await? {
                let Some(patient) = self.store.locate("Consent", &id).await? else { continue };
                let Some(current) = self.store.current(&patient, "Consent", &id).await? else { continue };
                if current.deleted {
                    continue;
                }
                let mut audit = self.draft(None, "consent-expiry-notice");
                audit.patient = Some(patient.clone());
                audit.entities = vec![format!("Consent/{id}/_history/{}", current.version)];
                let event = DomainEvent {
                    id: crate::crypto::random_id(),
                    event_type: "ConsentExpiring",
                    aggregate: patient.clone(),
                    at: audit.recorded.clone(),
                    detail: json!({"resourceType": "Consent", "id": id, "versionId": current.version.to_string(), "withinDays": days}),
                };
                let key = hex(&sha256(format!("ConsentExpiring|{id}|{}", current.version).as_bytes())[..16]);
                if self.store.audit_once(&key, &audit, vec![event]).await? {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_consents_with_an_end_day_are_indexed() {
        let c = |status: &str, end: Value| json!({"status": status, "provision": {"period": {"end": end}}});
        assert_eq!(end_day(&c("active", json!("2027-01-31T10:00:00Z"))), Some("2027-01-31".into()));
        assert_eq!(end_day(&c("active", json!("2027-01-31"))), Some("2027-01-31".into()));
        assert_eq!(end_day(&c("inactive", json!("2027-01-31"))), None);
        assert_eq!(end_day(&c("active", json!("2027"))), None);
        assert_eq!(end_day(&c("active", json!(null))), None);
    }
}
