//! The registry sync Lambda, fed by the RegistrySync queue (immunization
//! events routed from the bus): for each event, once (`ProcessedEvents`),
//! reads the immunization version and the patient's demographics as the
//! registry-sync service for public health (consent-gated, audited),
//! submits them with the resilient client, and audits the transmission.
//! A registry that is down sends the message back to the queue (and, after
//! five receives, to the DLQ with its alarm); so does a registry refusal,
//! which needs an operator.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::LambdaEvent;
use medrec_edge::aws::processed::ProcessedEvents;
use medrec_edge::aws::roster::Roster;
use medrec_edge::config::{ConfigError, Settings};
use medrec_edge::error::Error;
use medrec_edge::events::Envelope;
use medrec_edge::registry::client::{RegistryClient, RegistryError};
use medrec_edge::runtime::{BootError, Runtime};
use medrec_edge::service::registry_sync::registry_caller;
use medrec_edge::service::Caller;
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
    processed: ProcessedEvents,
    roster: Roster,
    client: RegistryClient,
    caller: Caller,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("medrec: {0}")]
    Medrec(#[from] Error),
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let local = config.deployment == medrec_edge::config::Deployment::Local;
    let table = get("MEDREC_PROCESSED_EVENTS_TABLE").ok_or(ConfigError::Missing("MEDREC_PROCESSED_EVENTS_TABLE"))?;
    let rt = Runtime::from_config(config).await?;
    let client = medrec_edge::registry::setup::connect(&rt.sdk, &get, local).await?;
    let ddb = aws_sdk_dynamodb::Client::new(&rt.sdk);
    let roster = Roster { ddb: ddb.clone(), table: table.clone() };
    let processed = ProcessedEvents { ddb, table, consumer: "registry-sync".into(), lease_seconds: 120 };
    Ok(App { name: settings.config.function_name.clone(), rt, processed, roster, client, caller: registry_caller() })
}

impl App {
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    pub async fn handle(
        self: Arc<Self>,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, std::convert::Infallible> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| {
            r.as_ref().is_ok_and(|b| !b.batch_item_failures.is_empty())
        })
        .await
    }

    async fn run(self: Arc<Self>, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, std::convert::Infallible> {
        let response = self.processed.consume(event.payload, |e| self.sync(e)).await;
        self.report_breakers().await;
        Ok(response)
    }

    /// Best effort: health shows the breakers as of the last batch.
    async fn report_breakers(&self) {
        use aws_sdk_dynamodb::types::AttributeValue as AV;
        let breakers = self
            .client
            .breakers()
            .into_iter()
            .map(|(name, state)| (name.to_owned(), AV::S(state.as_str().to_owned())))
            .collect::<std::collections::HashMap<_, _>>();
        let put = self
            .processed
            .ddb
            .put_item()
            .table_name(&self.processed.table)
            .item("pk", AV::S(medrec_edge::registry::HEALTH_KEY.into()))
            .item("breakers", AV::M(breakers))
            .item("at", AV::S(medrec_edge::fhir::now_instant()))
            .send()
            .await;
        if put.is_err() {
            tracing::warn!("registry breaker state not reported");
        }
    }

    async fn sync(&self, event: Envelope) -> Result<(), SyncError> {
        let deleted = match event.event_type.as_str() {
            "ImmunizationRecorded" | "ImmunizationUpdated" => false,
            "ImmunizationDeleted" => true,
            _ => return Ok(()),
        };
        let id = event.data["id"].as_str().unwrap_or_default();
        let version: u64 = event.data["versionId"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        let reference = format!("Immunization/{id}/_history/{version}");
        let svc = &self.rt.services;
        let record = match svc.registry_disclosure(&self.caller, &event.aggregate, id, version, deleted).await {
            Ok(Some(r)) => r,
            // It came from the registry.
            Ok(None) => return Ok(()),
            // The patient's consent refuses public-health use, or the record
            // is gone: nothing to send, and nothing to retry.
            Err(Error::Forbidden(_) | Error::NotFound | Error::Gone) => {
                tracing::info!(event_id = %event.id, "immunization not disclosed to the registry");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let outcome = self.client.submit(&record, &event.id).await;
        let status = match &outcome {
            Ok(_) => 200,
            Err(RegistryError::Rejected(_)) => 422,
            Err(_) => 503,
        };
        svc.audit_transmission(&self.caller, &event.aggregate, &reference, status).await?;
        outcome?;
        // Reconciled daily from now on.
        self.roster.add(&event.aggregate).await.map_err(Error::from)?;
        Ok(())
    }
}
