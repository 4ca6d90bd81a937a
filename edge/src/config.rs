//! Function configuration, read once at cold start and validated before the
//! first request, so that a misconfigured deployment fails to start instead of
//! failing open.

pub use medrec_core::error::ConfigError;
pub use medrec_core::limits::{Limits, MAX_BODY_LIMIT};
use std::time::Duration;

/// Where the function runs. `Local` is the only mode that trusts the dev
/// signing key and plain-HTTP endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Local,
    Cloud,
}

/// What every function is built from at cold start: its environment, read
/// once, with the settings all functions share parsed and validated. Each
/// function's `boot` takes it, in Lambda, in the local stack and in tests,
/// so there is one way to construct any function.
#[derive(Clone)]
pub struct Settings {
    pub config: Config,
    env: std::collections::BTreeMap<String, String>,
}

impl Settings {
    /// medrec's part of the process environment: its own `MEDREC_*`
    /// settings and the function's name, never the rest (Lambda puts the
    /// role's temporary credentials there, which the SDK reads itself).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }

    fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let ours = |k: &str| k.starts_with("MEDREC_") || k == "AWS_LAMBDA_FUNCTION_NAME";
        Self::from_map(vars.filter(|(k, _)| ours(k)).collect())
    }

    pub fn from_map(env: std::collections::BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let config = Config::from_lookup(|k| env.get(k).cloned())?;
        Ok(Settings { config, env })
    }

    /// A function's own setting.
    pub fn get(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }

    /// A function's own whole-number setting in 1..=`max`, `default` when unset.
    pub fn bounded(&self, key: &'static str, default: u64, max: u64) -> Result<u64, ConfigError> {
        bounded(|k| self.get(k), key, default, max)
    }

    /// The document settings, for the functions that store or serve documents.
    pub fn documents(&self) -> Result<crate::documents::DocumentConfig, ConfigError> {
        crate::documents::DocumentConfig::from_lookup(|k| self.get(k))
    }
}

/// A whole-number setting in 1..=`max` read through `get`, `default` when unset.
pub fn bounded(
    get: impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(ConfigError::Invalid(key, format!("must be 1..={max}"))),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub deployment: Deployment,
    pub records_table: String,
    pub audit_table: String,
    pub outbox_table: String,
    pub records_key_id: String,
    /// `MEDREC_PREVIOUS_RECORDS_KEY_IDS`: CMKs data keys may still be
    /// wrapped under while `medrec keys rewrap` moves them to the current one.
    pub previous_records_key_ids: Vec<String>,
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
    /// `MEDREC_BREAK_GLASS_REASON_CODES`, `MEDREC_BREAK_GLASS_MIN_REASON`.
    pub break_glass: crate::auth::BreakGlassPolicy,
    /// `MEDREC_CONSENT_AUTHORITY_ROLES`: roles that record consents on a
    /// patient's behalf (the patient always may).
    pub consent_authority: Vec<crate::auth::Role>,
    /// The work one request may cause.
    pub limits: Limits,
    /// `MEDREC_REQUIRE_IF_MATCH`: updates and patches without a version
    /// check are refused (428). Off by default: FHIR clients update without
    /// If-Match (last writer wins); If-Match is honoured whenever sent.
    pub require_if_match: bool,
    /// `MEDREC_TRANSACTION_DEADLINE_SECONDS` (default 120): how long a
    /// transaction Bundle too large for one DynamoDB transaction may stay
    /// uncommitted before the sweep may abort it; far beyond a function's
    /// timeout, so a live transaction is never aborted under it.
    pub transaction_deadline: Duration,
}

impl Config {
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
            previous_records_key_ids: get("MEDREC_PREVIOUS_RECORDS_KEY_IDS")
                .map(|v| v.split(',').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect())
                .unwrap_or_default(),
            jwks_url: req("MEDREC_JWKS_URL")?,
            issuer: req("MEDREC_ISSUER")?,
            audience: req("MEDREC_AUDIENCE")?,
            roles_claim: get("MEDREC_ROLES_CLAIM").unwrap_or_else(|| "cognito:groups".into()),
            aws_endpoint: get("MEDREC_AWS_ENDPOINT").filter(|v| !v.is_empty()),
            public_base_url: get("MEDREC_PUBLIC_BASE_URL").filter(|v| !v.is_empty()),
            audit_shards: num("MEDREC_AUDIT_SHARDS", 8)? as u32,
            transaction_deadline: Duration::from_secs(num("MEDREC_TRANSACTION_DEADLINE_SECONDS", 120)?),
            key_cache_max_age: Duration::from_secs(num("MEDREC_KEY_CACHE_SECONDS", 300)?),
            key_cache_max_uses: num("MEDREC_KEY_CACHE_MAX_USES", 1000)?,
            key_cache_max_bytes: num("MEDREC_KEY_CACHE_MAX_BYTES", 64 * 1024 * 1024)?,
            key_cache_max_entries: num("MEDREC_KEY_CACHE_MAX_ENTRIES", 1000)? as usize,
            max_body_bytes: num("MEDREC_MAX_BODY_BYTES", MAX_BODY_LIMIT as u64)? as usize,
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
            break_glass: crate::auth::BreakGlassPolicy {
                codes: match get("MEDREC_BREAK_GLASS_REASON_CODES").filter(|v| !v.trim().is_empty()) {
                    Some(list) => list.split(',').map(|c| c.trim().to_owned()).collect(),
                    None => crate::auth::BreakGlassPolicy::default().codes,
                },
                min_reason: num("MEDREC_BREAK_GLASS_MIN_REASON", 20)? as usize,
            },
            consent_authority: match get("MEDREC_CONSENT_AUTHORITY_ROLES") {
                None => vec![crate::auth::Role::Registrar, crate::auth::Role::Admin],
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(|r| {
                        crate::auth::Role::parse(r).filter(|role| *role != crate::auth::Role::Patient).ok_or_else(
                            || {
                                ConfigError::Invalid(
                                    "MEDREC_CONSENT_AUTHORITY_ROLES",
                                    format!("{r:?} is not a staff role"),
                                )
                            },
                        )
                    })
                    .collect::<Result<_, _>>()?,
            },
            limits: {
                let d = Limits::default();
                Limits {
                    search_values: num("MEDREC_SEARCH_MAX_VALUES", d.search_values as u64)? as usize,
                    search_scan: num("MEDREC_SEARCH_SCAN_PER_PAGE", d.search_scan as u64)? as usize,
                    consent_lookups: num("MEDREC_SEARCH_CONSENT_LOOKUPS", d.consent_lookups as u64)? as usize,
                    patch_operations: num("MEDREC_PATCH_MAX_OPERATIONS", d.patch_operations as u64)? as usize,
                    patch_bytes: num("MEDREC_PATCH_MAX_BYTES", d.patch_bytes as u64)? as usize,
                }
            },
            require_if_match: match get("MEDREC_REQUIRE_IF_MATCH").as_deref().map(str::trim) {
                None | Some("" | "false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid("MEDREC_REQUIRE_IF_MATCH", format!("{other:?}: true or false")))
                }
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // KMS answers an unwrap with the key's ARN: an alias could never be
        // matched against it, so every unwrap would fail.
        if std::iter::once(&self.records_key_id).chain(&self.previous_records_key_ids).any(|k| k.starts_with("alias/"))
        {
            return Err(ConfigError::Invalid("MEDREC_RECORDS_KEY_ID", "a key id or ARN, not an alias".into()));
        }
        if !(1..=900).contains(&self.transaction_deadline.as_secs()) {
            return Err(ConfigError::Invalid("MEDREC_TRANSACTION_DEADLINE_SECONDS", "must be 1..=900".into()));
        }
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
        let bg = &self.break_glass;
        let code_ok =
            |c: &String| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if bg.codes.is_empty() || !bg.codes.iter().all(code_ok) || !(1..=200).contains(&bg.min_reason) {
            return Err(ConfigError::Invalid(
                "MEDREC_BREAK_GLASS_*",
                "reason codes are letters, digits and '-'; the minimum reason is 1..=200 characters".into(),
            ));
        }
        // Scan and lookup bounds below a page's size give short pages (with
        // a next link), never wrong ones.
        let l = &self.limits;
        if !(1..=100).contains(&l.search_values)
            || !(1..=10_000).contains(&l.search_scan)
            || !(1..=10_000).contains(&l.consent_lookups)
            || !(1..=10_000).contains(&l.patch_operations)
            || !(1024..=MAX_BODY_LIMIT).contains(&l.patch_bytes)
        {
            return Err(ConfigError::Invalid(
                "MEDREC_SEARCH_*/MEDREC_PATCH_*",
                format!(
                    "values 1..=100, scan and consent lookups 1..=10000, patch operations 1..=10000, patch bytes 1024..={MAX_BODY_LIMIT}"
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings every function must have.
    const REQUIRED: [(&str, &str); 7] = [
        ("MEDREC_RECORDS_TABLE", "r"),
        ("MEDREC_AUDIT_TABLE", "a"),
        ("MEDREC_OUTBOX_TABLE", "o"),
        ("MEDREC_RECORDS_KEY_ID", "k"),
        ("MEDREC_JWKS_URL", "https://idp.example/jwks"),
        ("MEDREC_ISSUER", "https://idp.example"),
        ("MEDREC_AUDIENCE", "medrec"),
    ];

    fn config(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: std::collections::HashMap<&str, &str> = REQUIRED.into_iter().collect();
        env.extend(extra.iter().copied());
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn whole_number_settings_are_bounded() {
        let none = |_: &str| None;
        assert_eq!(bounded(none, "K", 24, 168).unwrap(), 24);
        for bad in ["0", "169", "x"] {
            assert!(bounded(|_: &str| Some(bad.to_owned()), "K", 24, 168).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_keep_medrecs_variables_and_never_the_credentials() {
        let vars: Vec<(&str, &str)> = REQUIRED
            .into_iter()
            .chain([
                ("MEDREC_PURGE_LIMIT", "7"),
                ("AWS_LAMBDA_FUNCTION_NAME", "medrec-purge"),
                ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
                ("AWS_SESSION_TOKEN", "IQoJb3JpZ2lu"),
            ])
            .collect();
        let settings = Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(settings.get("MEDREC_PURGE_LIMIT").as_deref(), Some("7"));
        assert_eq!(settings.config.function_name, "medrec-purge");
        assert_eq!(settings.get("AWS_SECRET_ACCESS_KEY"), None);
        assert_eq!(settings.get("AWS_SESSION_TOKEN"), None);
        let missing = vars.iter().filter(|(k, _)| *k != "MEDREC_ISSUER").map(|(k, v)| (k.to_string(), v.to_string()));
        assert!(matches!(Settings::from_vars(missing), Err(ConfigError::Missing("MEDREC_ISSUER"))));
    }

    #[test]
    fn every_limit_is_a_setting_checked_at_start() {
        let d = config(&[]).unwrap();
        assert_eq!(d.limits, Limits::default());
        assert_eq!(d.consent_authority, vec![crate::auth::Role::Registrar, crate::auth::Role::Admin]);
        assert!(!d.require_if_match);
        let set = config(&[
            ("MEDREC_REQUIRE_IF_MATCH", "true"),
            ("MEDREC_SEARCH_MAX_VALUES", "3"),
            ("MEDREC_SEARCH_SCAN_PER_PAGE", "5"),
            ("MEDREC_SEARCH_CONSENT_LOOKUPS", "2"),
            ("MEDREC_PATCH_MAX_OPERATIONS", "7"),
            ("MEDREC_PATCH_MAX_BYTES", "4096"),
            ("MEDREC_CONSENT_AUTHORITY_ROLES", "registrar"),
            ("MEDREC_BREAK_GLASS_REASON_CODES", "code-a, code-b"),
            ("MEDREC_BREAK_GLASS_MIN_REASON", "30"),
        ])
        .unwrap();
        assert_eq!(
            set.limits,
            Limits { search_values: 3, search_scan: 5, consent_lookups: 2, patch_operations: 7, patch_bytes: 4096 }
        );
        assert_eq!(set.consent_authority, vec![crate::auth::Role::Registrar]);
        assert_eq!(set.break_glass.codes, vec!["code-a", "code-b"]);
        assert_eq!(set.break_glass.min_reason, 30);
        assert!(set.require_if_match);
        for bad in [
            ("MEDREC_SEARCH_MAX_VALUES", "0"),
            ("MEDREC_SEARCH_MAX_VALUES", "101"),
            ("MEDREC_SEARCH_SCAN_PER_PAGE", "0"),
            ("MEDREC_SEARCH_CONSENT_LOOKUPS", "0"),
            ("MEDREC_PATCH_MAX_OPERATIONS", "0"),
            ("MEDREC_PATCH_MAX_BYTES", "1023"),
            ("MEDREC_PATCH_MAX_BYTES", "262145"),
            ("MEDREC_CONSENT_AUTHORITY_ROLES", "patient"),
            ("MEDREC_CONSENT_AUTHORITY_ROLES", "janitor"),
            ("MEDREC_BREAK_GLASS_REASON_CODES", "has space"),
            ("MEDREC_BREAK_GLASS_MIN_REASON", "0"),
            ("MEDREC_REQUIRE_IF_MATCH", "yes"),
        ] {
            assert!(config(&[bad]).is_err(), "{bad:?}");
        }
    }
}
