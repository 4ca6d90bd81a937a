//! Cold-start wiring shared by every function: SDK clients, the service root
//! secret, the record store, the key service and the token verifier, built
//! once from a validated `Config` and reused by every invocation.

use crate::auth::jwks::JwksCache;
use crate::auth::jwt::{TokenPolicy, Verifier};
use crate::auth::{AuthError, Purpose};
use crate::aws::dynamo::{DynamoStore, Tables};
use crate::aws::kms::KmsKeys;
use crate::config::{Config, Deployment};
use crate::crypto::keycache::{KeyCache, Limits};
use crate::error::{Error, PortError};
use crate::http;
use crate::outbound::HttpKeySetSource;
use crate::service::staging::Staging;
use crate::service::{Caller, Services};
use lambda_http::{Body, Request, Response};

/// The store stages inside a transaction Bundle (`service::staging`).
pub type AwsServices = Services<Staging<DynamoStore>, KmsKeys>;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot load the service secret: {0}")]
    Secret(#[from] PortError),
    #[error("cannot build the JWKS client: {0}")]
    Jwks(String),
    #[error("the random generator cannot be seeded")]
    Rng,
}

/// The tables a function's configuration names.
pub fn tables(config: &Config) -> Tables {
    Tables {
        records: config.records_table.clone(),
        audit: config.audit_table.clone(),
        outbox: config.outbox_table.clone(),
    }
}

/// The records CMK as a function's configuration names it, with the CMKs
/// a re-wrap is moving data keys away from.
pub fn records_keys(config: &Config, sdk: &aws_config::SdkConfig) -> KmsKeys {
    KmsKeys::new(aws_sdk_kms::Client::new(sdk), &config.records_key_id)
        .accepting(config.previous_records_key_ids.clone())
}

pub struct Runtime {
    pub config: Config,
    /// For the clients a function adds (S3 for documents), built once.
    pub sdk: aws_config::SdkConfig,
    pub services: AwsServices,
    verifier: Verifier<HttpKeySetSource>,
}

impl Runtime {
    pub async fn from_config(config: Config) -> Result<Self, BootError> {
        let started = std::time::Instant::now();
        let sdk = crate::aws::sdk_config(config.aws_endpoint.as_deref()).await;
        let sdk_ms = started.elapsed().as_secs_f64() * 1e3;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let kms = records_keys(&config, &sdk);
        let keys = crate::aws::service_keys(&ddb, &kms, &config.records_table).await?;
        let secret_ms = started.elapsed().as_secs_f64() * 1e3 - sdk_ms;
        // aws-lc seeds its random generator on first use, about 20 ms of
        // gathering entropy once per process: here, in Lambda's init phase,
        // rather than inside a caller's first request.
        let rng_started = std::time::Instant::now();
        let mut seed_probe = [0u8; 1];
        aws_lc_rs::rand::fill(&mut seed_probe).map_err(|_| BootError::Rng)?;
        let rng_ms = rng_started.elapsed().as_secs_f64() * 1e3;
        let store = DynamoStore::new(ddb, tables(&config), keys.audit_chain, config.audit_shards)
            .with_transaction_deadline(config.transaction_deadline);
        let cache = KeyCache::new(Limits {
            max_age: config.key_cache_max_age,
            max_uses: config.key_cache_max_uses,
            max_bytes: config.key_cache_max_bytes,
            max_entries: config.key_cache_max_entries,
        });
        let services =
            Services::new(Staging(store), kms, cache, keys.blind_index, keys.cursor, config.function_name.clone())
                .with_consent_default(config.consent_default)
                .with_consent_authority(config.consent_authority.clone())
                .with_limits(config.limits)
                .with_required_if_match(config.require_if_match);
        let local = config.deployment == Deployment::Local;
        let services_ms = started.elapsed().as_secs_f64() * 1e3 - sdk_ms - secret_ms - rng_ms;
        let tls_started = std::time::Instant::now();
        let source = HttpKeySetSource::new(&config.jwks_url, local).map_err(BootError::Jwks)?;
        let tls_ms = tls_started.elapsed().as_secs_f64() * 1e3;
        let policy = TokenPolicy {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            roles_claim: config.roles_claim.clone(),
            clock_skew: config.clock_skew,
            max_lifetime: config.max_token_lifetime,
        };
        // Where a cold start's time goes, for the init-duration question
        // every Lambda operator asks (JWKS and the FHIR model are loaded by
        // the first request that needs them).
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(sdk_ms, secret_ms, rng_ms, services_ms, tls_ms, total_ms, "cold start");
        Ok(Runtime { verifier: Verifier::new(policy, JwksCache::new(source, local)), services, config, sdk })
    }

    /// Authenticates the request and reads its purpose of use. On failure the
    /// attempt is audited and the error response is returned.
    pub async fn caller(&self, req: &Request, interaction: &'static str) -> Result<Caller, Response<Body>> {
        let (source_ip, request_id) = http::origin(req);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let principal = match self.verifier.verify(http::authorization(req), now).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(reason = e.reason(), "authentication failed");
                let mut entry = self.services.draft(None, "authenticate");
                entry.agent.source_ip = source_ip.clone();
                entry.request_id = request_id;
                let err = match e {
                    AuthError::KeySetUnavailable => Error::Unavailable("jwks".into()),
                    _ => Error::Unauthenticated(e.reason()),
                };
                let resp = http::error_response(&err);
                self.services.audit_failure(entry.clone(), resp.status().as_u16(), None, source_ip).await;
                self.services.alert_on_repeated_failures(&entry, self.config.alerts).await;
                return Err(resp);
            }
        };
        match Purpose::parse(http::purpose_headers(req), &self.config.break_glass) {
            Ok(purpose) => Ok(Caller { principal, purpose, source_ip, request_id }),
            Err(msg) => {
                let caller =
                    Caller { principal, purpose: Purpose::treatment(), source_ip: source_ip.clone(), request_id };
                let entry = self.services.draft(Some(&caller), interaction);
                let resp = http::error_response(&Error::BadRequest(msg));
                self.services.audit_failure(entry, 400, Some(&caller), source_ip).await;
                Err(resp)
            }
        }
    }
}
