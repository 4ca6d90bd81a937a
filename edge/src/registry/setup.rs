//! The registry client as a function builds it at cold start: settings
//! from the environment, credentials from Secrets Manager (never from the
//! environment, never logged).

use super::client::{ClientConfig, Credentials, RegistryClient, Transport};
use super::hl7::Parties;
use crate::config::ConfigError;

/// The registry settings: endpoints (primary first), transport, who medrec
/// is to the registry; the credentials come from Secrets Manager.
pub fn client_config(get: &impl Fn(&str) -> Option<String>, local: bool) -> Result<ClientConfig, ConfigError> {
    let endpoints: Vec<String> = get("MEDREC_REGISTRY_ENDPOINTS")
        .unwrap_or_default()
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(ConfigError::Missing("MEDREC_REGISTRY_ENDPOINTS"));
    }
    let transport = Transport::parse(&get("MEDREC_REGISTRY_TRANSPORT").unwrap_or_else(|| "hl7v2".into()))
        .ok_or(ConfigError::Invalid("MEDREC_REGISTRY_TRANSPORT", "hl7v2 or fhir".into()))?;
    let facility = get("MEDREC_REGISTRY_FACILITY").ok_or(ConfigError::Missing("MEDREC_REGISTRY_FACILITY"))?;
    let receiver = get("MEDREC_REGISTRY_RECEIVER").unwrap_or_else(|| "IRIS".into());
    let parties = Parties {
        sending_application: "MEDREC".into(),
        sending_facility: facility,
        receiving_application: receiver.clone(),
        receiving_facility: receiver,
    };
    let mut cfg = ClientConfig::new(endpoints, transport, parties);
    if let Some(rate) = get("MEDREC_REGISTRY_RATE_PER_SECOND") {
        cfg.rate_per_second = rate
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0 && *r <= 1000.0)
            .ok_or(ConfigError::Invalid("MEDREC_REGISTRY_RATE_PER_SECOND", "0 to 1000".into()))?;
    }
    cfg.allow_plain_http = local;
    Ok(cfg)
}

/// The client, with its credentials read from `MEDREC_REGISTRY_SECRET`.
pub async fn connect(
    sdk: &aws_config::SdkConfig,
    get: &impl Fn(&str) -> Option<String>,
    local: bool,
) -> Result<RegistryClient, ConfigError> {
    let cfg = client_config(get, local)?;
    let secret = get("MEDREC_REGISTRY_SECRET").ok_or(ConfigError::Missing("MEDREC_REGISTRY_SECRET"))?;
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .map_err(|_| ConfigError::Invalid("MEDREC_REGISTRY_SECRET", "unreadable".into()))?;
    let creds = value
        .secret_string()
        .and_then(Credentials::from_json)
        .ok_or(ConfigError::Invalid("MEDREC_REGISTRY_SECRET", "not registry credentials".into()))?;
    RegistryClient::new(cfg, creds).map_err(|e| ConfigError::Invalid("MEDREC_REGISTRY_ENDPOINTS", e.to_string()))
}
