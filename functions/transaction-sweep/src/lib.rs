//! The transaction sweep Lambda, on an EventBridge schedule: finishes every
//! transaction Bundle a crash left unfinished (decision 0011). One that
//! committed is rolled forward (its entries' audit records and events
//! appended, its marks cleared); one that did not, once past its deadline,
//! is rolled back. Readers never wait for it: an unfinished transaction's
//! header already decides what they see. A failed run returns an error, so
//! Lambda's retries run it again; every step is idempotent.

use lambda_http::LambdaEvent;
use medrec_edge::config::Settings;
use medrec_edge::runtime::{BootError, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    Ok(App { name: settings.config.function_name.clone(), rt: Runtime::from_config(config).await? })
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, _event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let finished = self.rt.services.finish_transactions().await?;
        tracing::info!(finished, "transaction sweep");
        Ok(json!({"finished": finished}))
    }
}
