//! Function configuration, read once at cold start and validated before the
//! first request, so that a misconfigured deployment fails to start instead of
//! failing open.

use std::time::Duration;

/// Where the function runs. `Local` is the only mode that trusts the dev
/// signing key and plain-HTTP endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Local,
    Cloud,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub deployment: Deployment,
    pub records_table: String,
    pub audit_table: String,
    pub outbox_table: String,
    pub records_key_id: String,
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
    pub roles_claim: String,
    /// Overrides the AWS endpoint for every client (the emulator locally).
    pub aws_endpoint: Option<String>,
    pub public_base_url: Option<String>,
    pub audit_shards: u32,
    pub key_cache_max_age: Duration,
    pub key_cache_max_uses: u64,
    pub key_cache_max_bytes: u64,
    pub key_cache_max_entries: usize,
    pub max_body_bytes: usize,
    pub clock_skew: Duration,
    pub max_token_lifetime: Duration,
    /// Names this function in audit records (`AuditEvent.source.observer`).
    pub function_name: String,
    /// `MEDREC_CONSENT_DEFAULT`: `opt-out` (default) or `opt-in`.
    pub consent_default: crate::consent::DefaultPolicy,
    /// Failures of one principal within a window that raise a SecurityAlert.
    pub alerts: crate::service::security_alerts::AlertPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("setting {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

/// Upper bound on request bodies. DynamoDB items are limited to 400 KB and the
/// current item carries the latest ciphertext plus metadata, so bodies above
/// 256 KiB could not be stored whole.
pub const MAX_BODY_LIMIT: usize = 256 * 1024;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds the config from any key/value source: the process environment in
    /// Lambda, the template's resolved `Environment` locally.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let req = |k: &'static str| get(k).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(k));
        let num = |k: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u64>().map_err(|e| ConfigError::Invalid(k, e.to_string())),
            }
        };
        let deployment = match get("MEDREC_ENV").as_deref() {
            Some("local") => Deployment::Local,
            Some("cloud") | None => Deployment::Cloud,
            Some(other) => return Err(ConfigError::Invalid("MEDREC_ENV", format!("unknown value {other:?}"))),
        };
        let cfg = Config {
            deployment,
            records_table: req("MEDREC_RECORDS_TABLE")?,
            audit_table: req("MEDREC_AUDIT_TABLE")?,
            outbox_table: req("MEDREC_OUTBOX_TABLE")?,
            records_key_id: req("MEDREC_RECORDS_KEY_ID")?,
            jwks_url: req("MEDREC_JWKS_URL")?,
            issuer: req("MEDREC_ISSUER")?,
            audience: req("MEDREC_AUDIENCE")?,
            roles_claim: get("MEDREC_ROLES_CLAIM").unwrap_or_else(|| "cognito:groups".into()),
            aws_endpoint: get("MEDREC_AWS_ENDPOINT").filter(|v| !v.is_empty()),
            public_base_url: get("MEDREC_PUBLIC_BASE_URL").filter(|v| !v.is_empty()),
            audit_shards: num("MEDREC_AUDIT_SHARDS", 8)? as u32,
            key_cache_max_age: Duration::from_secs(num("MEDREC_KEY_CACHE_SECONDS", 300)?),
            key_cache_max_uses: num("MEDREC_KEY_CACHE_MAX_USES", 1000)?,
            key_cache_max_bytes: num("MEDREC_KEY_CACHE_MAX_BYTES", 64 * 1024 * 1024)?,
            key_cache_max_entries: num("MEDREC_KEY_CACHE_MAX_ENTRIES", 1000)? as usize,
            max_body_bytes: num("MEDREC_MAX_BODY_BYTES", 64 * 1024)? as usize,
            clock_skew: Duration::from_secs(num("MEDREC_CLOCK_SKEW_SECONDS", 60)?),
            max_token_lifetime: Duration::from_secs(num("MEDREC_MAX_TOKEN_LIFETIME_SECONDS", 24 * 3600)?),
            function_name: get("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "medrec".into()),
            consent_default: match get("MEDREC_CONSENT_DEFAULT").as_deref() {
                None | Some("opt-out") => crate::consent::DefaultPolicy::OptOut,
                Some("opt-in") => crate::consent::DefaultPolicy::OptIn,
                Some(other) => {
                    return Err(ConfigError::Invalid("MEDREC_CONSENT_DEFAULT", format!("{other:?}: opt-in or opt-out")))
                }
            },
            alerts: crate::service::security_alerts::AlertPolicy {
                threshold: num("MEDREC_ALERT_FAILURES", 5)? as usize,
                window: Duration::from_secs(num("MEDREC_ALERT_WINDOW_SECONDS", 300)?),
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=256).contains(&self.audit_shards) {
            return Err(ConfigError::Invalid("MEDREC_AUDIT_SHARDS", "must be 1..=256".into()));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_LIMIT {
            return Err(ConfigError::Invalid("MEDREC_MAX_BODY_BYTES", format!("must be 1..={MAX_BODY_LIMIT}")));
        }
        if self.alerts.threshold == 0 || !(10..=86_400).contains(&self.alerts.window.as_secs()) {
            return Err(ConfigError::Invalid(
                "MEDREC_ALERT_*",
                "threshold must be positive, window 10..=86400 s".into(),
            ));
        }
        if self.clock_skew > Duration::from_secs(300) {
            return Err(ConfigError::Invalid("MEDREC_CLOCK_SKEW_SECONDS", "must be at most 300".into()));
        }
        if self.key_cache_max_uses == 0 || self.key_cache_max_bytes == 0 || self.key_cache_max_entries == 0 {
            return Err(ConfigError::Invalid("MEDREC_KEY_CACHE_*", "limits must be positive".into()));
        }
        if self.deployment == Deployment::Cloud {
            // A deployed stack must never reach a plain-HTTP key set or an
            // emulator: that is how a dev key would sneak into production.
            if !self.jwks_url.starts_with("https://") {
                return Err(ConfigError::Invalid("MEDREC_JWKS_URL", "must be https outside local mode".into()));
            }
            if self.aws_endpoint.is_some() {
                return Err(ConfigError::Invalid("MEDREC_AWS_ENDPOINT", "only allowed in local mode".into()));
            }
            if self.issuer.starts_with(crate::auth::DEV_ISSUER_PREFIX) {
                return Err(ConfigError::Invalid("MEDREC_ISSUER", "the dev issuer is only trusted locally".into()));
            }
        }
        Ok(())
    }
}
