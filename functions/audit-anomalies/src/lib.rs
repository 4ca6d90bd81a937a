//! The access-anomaly Lambda, on an EventBridge schedule: the detectors of
//! `audit::anomaly` over the last `MEDREC_ANOMALY_WINDOW_HOURS` of the
//! trail, each user against the `MEDREC_ANOMALY_BASELINE_DAYS` before
//! (`Services::detect_anomalies`). An invocation may name its own window
//! (`{"since": instant, "until": instant}`): `medrec audit anomalies`.
//! A failed run returns an error, so the retried invocation runs it again;
//! alerts already raised are not repeated.

use lambda_http::LambdaEvent;
use medrec_edge::audit::anomaly::Policy;
use medrec_edge::config::Settings;
use medrec_edge::runtime::{BootError, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;

/// How far behind the present a scheduled window ends: longer than any
/// request runs, so every access stamped inside it is on the trail.
const SETTLE: time::Duration = time::Duration::minutes(5);

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
    window: time::Duration,
    baseline: time::Duration,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let window = time::Duration::hours(settings.bounded("MEDREC_ANOMALY_WINDOW_HOURS", 24, 168)? as i64);
    let baseline = time::Duration::days(settings.bounded("MEDREC_ANOMALY_BASELINE_DAYS", 14, 90)? as i64);
    let config = settings.config.clone();
    Ok(App { name: config.function_name.clone(), rt: Runtime::from_config(config).await?, window, baseline })
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let (since, until) = match medrec_edge::scheduled::requested_window(&event.payload)? {
            Some(w) => w,
            None => {
                let until = time::OffsetDateTime::now_utc() - SETTLE;
                (until - self.window, until)
            }
        };
        let run = self.rt.services.detect_anomalies(since, until, self.baseline, &Policy::default()).await?;
        tracing::info!(
            alerts = run.alerts.len(),
            raised = run.raised,
            accesses = run.accesses,
            compartments = run.compartments,
            "access anomaly run"
        );
        let alerts: Vec<Value> = run
            .alerts
            .iter()
            .map(|a| json!({"detector": a.detector, "agent": a.agent, "patients": a.patients.len(), "observed": a.observed, "key": a.key()}))
            .collect();
        Ok(json!({
            "since": medrec_edge::fhir::instant(since),
            "until": medrec_edge::fhir::instant(until),
            "accesses": run.accesses,
            "compartments": run.compartments,
            "raised": run.raised,
            "alerts": alerts,
        }))
    }
}
