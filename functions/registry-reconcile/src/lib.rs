//! The registry reconciliation Lambda, on an EventBridge schedule: for each
//! patient on the roster (reported to the registry before), queries the
//! registry's history (QBP^Q11 Z34) and reconciles it
//! (`Services::reconcile_registry`: new doses imported as historical
//! Immunizations, conflicts flagged, nothing overwritten). At most
//! `MEDREC_RECONCILE_LIMIT` patients per run; a patient whose query fails
//! is counted and retried on the next run.

use lambda_http::LambdaEvent;
use medrec_edge::aws::roster::Roster;
use medrec_edge::config::{ConfigError, Settings};
use medrec_edge::registry::client::RegistryClient;
use medrec_edge::runtime::{BootError, Runtime};
use medrec_edge::service::registry_sync::{registry_caller, Reconciled};
use medrec_edge::service::Caller;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
    roster: Roster,
    client: RegistryClient,
    caller: Caller,
    limit: usize,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let local = config.deployment == medrec_edge::config::Deployment::Local;
    let table = get("MEDREC_PROCESSED_EVENTS_TABLE").ok_or(ConfigError::Missing("MEDREC_PROCESSED_EVENTS_TABLE"))?;
    let limit = match get("MEDREC_RECONCILE_LIMIT") {
        None => 500,
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid("MEDREC_RECONCILE_LIMIT", "a number".into()))?,
    };
    let rt = Runtime::from_config(config).await?;
    let client = medrec_edge::registry::setup::connect(&rt.sdk, &get, local).await?;
    let roster = Roster { ddb: aws_sdk_dynamodb::Client::new(&rt.sdk), table };
    Ok(App { name: settings.config.function_name.clone(), rt, roster, client, caller: registry_caller(), limit })
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, _event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let svc = &self.rt.services;
        let mut total = Reconciled::default();
        let (mut patients, mut failed) = (0, 0);
        for patient in self.roster.patients().await?.into_iter().take(self.limit) {
            patients += 1;
            let outcome = async {
                let subject = svc.registry_query_subject(&self.caller, &patient).await?;
                let doses = self
                    .client
                    .history(&subject, &medrec_edge::crypto::random_id())
                    .await
                    .map_err(|e| medrec_edge::error::Error::Unavailable(e.to_string()))?;
                svc.reconcile_registry(&self.caller, &patient, &doses).await
            }
            .await;
            match outcome {
                Ok(r) => {
                    total.imported += r.imported;
                    total.matched += r.matched;
                    total.conflicts += r.conflicts;
                    total.refused += r.refused;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registry reconciliation of a patient failed");
                    failed += 1;
                }
            }
        }
        tracing::info!(
            patients,
            failed,
            imported = total.imported,
            conflicts = total.conflicts,
            "registry reconciliation"
        );
        Ok(json!({"patients": patients, "failed": failed, "imported": total.imported, "matched": total.matched,
            "conflicts": total.conflicts, "refused": total.refused}))
    }
}
