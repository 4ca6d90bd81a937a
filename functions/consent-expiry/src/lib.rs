//! The consent expiry Lambda, on an EventBridge schedule: a `ConsentExpiring`
//! event for every active consent whose period ends within
//! `MEDREC_CONSENT_NOTICE_DAYS` days (`Services::notify_expiring_consents`).
//! A failed run returns an error, so Lambda's retries of the scheduled
//! invocation run it again; notices already sent are not repeated.

use lambda_http::LambdaEvent;
use medrec_edge::config::{ConfigError, Settings};
use medrec_edge::runtime::{BootError, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
    days: u32,
}

/// The notice period in days (1 to 365, default 30).
fn notice_days(get: impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    medrec_edge::config::bounded(get, "MEDREC_CONSENT_NOTICE_DAYS", 30, 365).map(|d| d as u32)
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let days = notice_days(|k| settings.get(k))?;
    Ok(App { name: settings.config.function_name.clone(), rt: Runtime::from_config(config).await?, days })
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, _event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let now = time::OffsetDateTime::now_utc();
        let sent = self.rt.services.notify_expiring_consents(now, self.days).await?;
        tracing::info!(notices = sent, days = self.days, "consent expiry run");
        Ok(json!({"notices": sent}))
    }
}

#[cfg(test)]
mod tests {
    use super::notice_days;

    #[test]
    fn notice_days_are_bounded() {
        assert_eq!(notice_days(|_| None).unwrap(), 30);
        assert_eq!(notice_days(|_| Some("7".into())).unwrap(), 7);
        for bad in ["0", "366", "x", "-1"] {
            assert!(notice_days(|_| Some(bad.into())).is_err(), "{bad}");
        }
    }
}
