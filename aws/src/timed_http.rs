//! The SDK's HTTPS client, wrapped once for every client of a function so
//! each AWS call is counted and timed, by service, into the metrics of the
//! request or invocation that made it (`medrec_core::metrics`).

use crate::metrics;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::time::Instant;

/// The services medrec calls, as SigV4 names them in a request's
/// credential scope. Anything else is `other`: the name is a metric
/// dimension and must come from this list, never from the wire.
const SERVICES: [&str; 7] = ["dynamodb", "kms", "s3", "events", "sqs", "secretsmanager", "sts"];

/// The default HTTPS client (rustls with aws-lc, as the SDK's own default),
/// timed.
pub fn client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let inner = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc)).build_https();
    SharedHttpClient::new(Timed(inner))
}

#[derive(Debug)]
struct Timed(SharedHttpClient);

impl HttpClient for Timed {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(TimedConnector(self.0.http_connector(settings, components)))
    }
}

#[derive(Debug)]
struct TimedConnector(SharedHttpConnector);

impl HttpConnector for TimedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let service = service_of(request.headers().get("authorization"));
        let call = self.0.call(request);
        HttpConnectorFuture::new(async move {
            let started = Instant::now();
            let answer = call.await;
            metrics::aws_call(service, started.elapsed().as_secs_f64() * 1000.0);
            answer
        })
    }
}

/// The service of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ...`.
fn service_of(authorization: Option<&str>) -> &'static str {
    let scope = authorization.and_then(|a| a.split("Credential=").nth(1)).and_then(|c| c.split('/').nth(3));
    scope.and_then(|s| SERVICES.iter().find(|k| **k == s).copied()).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_comes_from_the_credential_scope_and_a_fixed_list() {
        let header = |service: &str| {
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0")
        };
        assert_eq!(service_of(Some(&header("dynamodb"))), "dynamodb");
        assert_eq!(service_of(Some(&header("kms"))), "kms");
        assert_eq!(service_of(Some(&header("Patient-Zzyzx"))), "other", "never a name from the wire");
        assert_eq!(service_of(Some("Bearer x")), "other");
        assert_eq!(service_of(None), "other");
    }
}
