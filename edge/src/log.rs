//! Structured JSON logs. Handlers log routes, statuses, ids and timings only;
//! request bodies, query strings and decrypted data are never logged. The AWS
//! SDK is held at `warn` because its debug output includes request payloads.

use tracing_subscriber::EnvFilter;

pub const DEFAULT_FILTER: &str =
    "info,aws_smithy_runtime=warn,aws_config=warn,aws_sdk_dynamodb=warn,aws_sdk_kms=warn,hyper=warn";

pub fn init() {
    let filter = EnvFilter::try_from_env("MEDREC_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).without_time().try_init();
    // The default hook prints a panic's message, which can quote the data it
    // failed on (serde's errors quote the value): only where it happened is
    // logged, as a JSON line like every other.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(at = %at, "panicked");
    }));
}
