//! The HTTPS client for calls out of medrec (the identity provider's JWKS,
//! the immunization registry): rustls with the aws-lc provider and the
//! system's roots; plain HTTP only where local mode allows it (loopback
//! emulators and simulators have no certificates).

use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;

pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

pub fn https_client(allow_plain_http: bool) -> Result<HttpsClient, String> {
    let config = match native_roots_config() {
        Ok(config) => config,
        // Local mode talks plain HTTP to loopback and needs no roots.
        Err(_) if allow_plain_http => {
            config_builder()?.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        }
        Err(e) => return Err(e),
    };
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
    let connector =
        if allow_plain_http { builder.https_or_http() } else { builder.https_only() }.enable_http1().build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// rustls with the aws-lc provider and its safe protocol versions, before
/// the roots are chosen.
fn config_builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
}

/// The TLS configuration over the system's roots, read once per process: a
/// process with two outbound clients (JWKS and registry) read them twice,
/// and the local stack, which runs every function in one process, once per
/// function (3–6 ms each in a release build, 25–35 ms in a dev build).
fn native_roots_config() -> Result<rustls::ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt;
    static CONFIG: std::sync::OnceLock<Result<rustls::ClientConfig, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Ok(config_builder()?.with_native_roots().map_err(|e| format!("no TLS roots: {e}"))?.with_no_client_auth())
        })
        .clone()
}

/// Fetches a JWKS document over HTTP(S) with a short timeout and a size cap.
pub struct HttpKeySetSource {
    url: http::Uri,
    client: HttpsClient,
}

const MAX_JWKS_BYTES: usize = 64 * 1024;

impl HttpKeySetSource {
    pub fn new(url: &str, allow_plain_http: bool) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|_| "JWKS URL is not a valid URI".to_string())?;
        let client = https_client(allow_plain_http)?;
        Ok(HttpKeySetSource { url: uri, client })
    }
}

impl medrec_core::auth::jwks::KeySetSource for HttpKeySetSource {
    async fn fetch(&self) -> Result<Vec<u8>, medrec_core::auth::AuthError> {
        use http_body_util::BodyExt;
        let fut = self.client.get(self.url.clone());
        let resp = tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .map_err(|_| medrec_core::auth::AuthError::KeySetUnavailable)?
            .map_err(|_| medrec_core::auth::AuthError::KeySetUnavailable)?;
        if !resp.status().is_success() {
            return Err(medrec_core::auth::AuthError::KeySetUnavailable);
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES);
        let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .map_err(|_| medrec_core::auth::AuthError::KeySetUnavailable)?
            .map_err(|_| medrec_core::auth::AuthError::KeySetUnavailable)?
            .to_bytes();
        Ok(bytes.to_vec())
    }
}
