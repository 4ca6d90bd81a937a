//! The outbox relay Lambda, triggered by the outbox table's DynamoDB stream
//! (`medrec_shared::aws::relay`): publishes each new event to the bus named
//! by `MEDREC_EVENT_BUS` and answers with the first record it could not
//! publish, so Lambda retries from there.

use lambda_http::LambdaEvent;
use medrec_shared::aws::relay::Relay;
use medrec_shared::aws::stream::{StreamBatchResponse, StreamEvent};
use medrec_shared::config::{Config, ConfigError};
use medrec_shared::runtime::BootError;
use std::sync::Arc;

pub struct App {
    relay: Relay,
}

impl App {
    pub async fn from_env() -> Result<Self, BootError> {
        let config = medrec_shared::lambda::config_from_env()?;
        Self::new(config, |k| std::env::var(k).ok()).await
    }

    pub async fn new(config: Config, get: impl Fn(&str) -> Option<String>) -> Result<Self, BootError> {
        let bus = get("MEDREC_EVENT_BUS").filter(|b| !b.is_empty()).ok_or(ConfigError::Missing("MEDREC_EVENT_BUS"))?;
        let sdk = medrec_shared::aws::sdk_config(config.aws_endpoint.as_deref()).await;
        let relay = Relay {
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            outbox_table: config.outbox_table,
            bus,
        };
        Ok(App { relay })
    }

    pub async fn handle(
        self: Arc<Self>,
        event: LambdaEvent<StreamEvent>,
    ) -> Result<StreamBatchResponse, lambda_http::Error> {
        Ok(self.relay.relay(event.payload).await)
    }
}
