//! The outbox relay Lambda, triggered by the outbox table's DynamoDB stream
//! (`medrec_edge::aws::relay`): publishes each new event to the bus named
//! by `MEDREC_EVENT_BUS` and answers with the first record it could not
//! publish, so Lambda retries from there.

use lambda_http::LambdaEvent;
use medrec_edge::aws::relay::Relay;
use medrec_edge::aws::stream::{StreamBatchResponse, StreamEvent};
use medrec_edge::config::{ConfigError, Settings};
use medrec_edge::runtime::BootError;
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    relay: Relay,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let get = |k: &str| settings.get(k);
    let bus = get("MEDREC_EVENT_BUS").filter(|b| !b.is_empty()).ok_or(ConfigError::Missing("MEDREC_EVENT_BUS"))?;
    let sdk = medrec_edge::aws::sdk_config(config.aws_endpoint.as_deref()).await;
    let relay = Relay {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        events: aws_sdk_eventbridge::Client::new(&sdk),
        outbox_table: config.outbox_table,
        bus,
    };
    Ok(App { name: settings.config.function_name.clone(), relay })
}

impl App {
    pub async fn handle(
        self: Arc<Self>,
        event: LambdaEvent<StreamEvent>,
    ) -> Result<StreamBatchResponse, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| {
            r.as_ref().map_or(true, |b| !b.batch_item_failures.is_empty())
        })
        .await
    }

    async fn run(self: Arc<Self>, event: LambdaEvent<StreamEvent>) -> Result<StreamBatchResponse, lambda_http::Error> {
        Ok(self.relay.relay(event.payload).await)
    }
}
