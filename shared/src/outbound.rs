//! The HTTPS client for calls out of medrec (the identity provider's JWKS,
//! the immunization registry): rustls with the aws-lc provider and the
//! system's roots; plain HTTP only where local mode allows it (loopback
//! emulators and simulators have no certificates).

use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;

pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

pub fn https_client(allow_plain_http: bool) -> Result<HttpsClient, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        // Local mode talks plain HTTP to loopback and needs no roots.
        Err(_) if allow_plain_http => {
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
        Err(e) => return Err(format!("no TLS roots: {e}")),
    };
    let connector =
        if allow_plain_http { builder.https_or_http() } else { builder.https_only() }.enable_http1().build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}
