//! The local stack: emulator, resources provisioned from template.yaml, the
//! functions mounted with the environment the template gives them (resolved
//! against the provisioned resources) plus the local overrides, and the local
//! API gateway in front of them. Used by `medrec dev` and by the tests.

use crate::devkey::{DevKey, DEV_AUDIENCE, DEV_ISSUER};
use crate::emulator::{repo_root, Emulator};
use crate::gateway::{Gateway, Handler};
use crate::idle::Activity;
use crate::poller::{self, QueueSource, SqsHandler};
use crate::provision::{provision, Clients, Provisioned};
use crate::registry_sim::RegistrySimulator;
use crate::template::Template;
use medrec_edge::config::Settings;
use medrec_edge::registry::client::Credentials;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct StackOptions {
    /// Use this emulator instead of starting one.
    pub endpoint: Option<String>,
    /// Gateway port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Prefix of every provisioned resource name.
    pub prefix: String,
    pub dev_key: Arc<DevKey>,
    /// Extra or replaced function environment (tests tune limits with it).
    pub env_overrides: Vec<(String, String)>,
    /// Functions not mounted: a test plays them (reads their queue itself).
    pub unmounted: Vec<String>,
}

pub struct LocalStack {
    pub endpoint: String,
    pub base_url: String,
    pub provisioned: Provisioned,
    pub template: Arc<Template>,
    pub dev_key: Arc<DevKey>,
    pub clients: Clients,
    /// Resolved environment per mounted function.
    pub function_env: BTreeMap<String, BTreeMap<String, String>>,
    /// The immunization registry's primary and secondary endpoints, simulated.
    pub registry: (Arc<RegistrySimulator>, Arc<RegistrySimulator>),
    server: tokio::task::JoinHandle<()>,
    /// The queue consumers (Lambda's event source mappings) and schedules.
    pollers: Vec<tokio::task::JoinHandle<()>>,
    _emulator: Option<Emulator>,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.server.abort();
        for p in &self.pollers {
            p.abort();
        }
    }
}

/// How the local stack invokes a function: behind the gateway, from a
/// queue, or on its schedule.
enum Mounted {
    Api(Handler),
    Queue(SqsHandler),
    Scheduled(ScheduledHandler),
    Stream(crate::stream_poller::StreamHandler),
}

type ScheduledHandler = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Builds a function's handler from its environment. Functions that are not
/// yet implemented stay unmounted (the gateway answers 502 for them).
async fn mount(logical_id: &str, env: &BTreeMap<String, String>) -> Result<Option<Mounted>, String> {
    let settings = Settings::from_map(env.clone()).map_err(|e| format!("{logical_id}: {e}"))?;
    let boot = |e: medrec_edge::runtime::BootError| format!("{logical_id}: {e}");
    Ok(Some(match logical_id {
        "PatientsFunction" => Mounted::Api(api(medrec_patients::boot(&settings).await.map_err(boot)?)),
        "ClinicalFunction" => Mounted::Api(api(medrec_clinical::boot(&settings).await.map_err(boot)?)),
        "ConsentFunction" => Mounted::Api(api(medrec_consent::boot(&settings).await.map_err(boot)?)),
        "ValidationFunction" => Mounted::Api(api(medrec_validation::boot(&settings).await.map_err(boot)?)),
        "AuditFunction" => Mounted::Api(api(medrec_audit::boot(&settings).await.map_err(boot)?)),
        "DocumentsFunction" => Mounted::Api(api(medrec_documents::boot(&settings).await.map_err(boot)?)),
        "DocumentIngestFunction" => {
            let app = Arc::new(medrec_document_ingest::boot(&settings).await.map_err(boot)?);
            queued(app, medrec_document_ingest::App::handle)
        }
        "OutboxRelayFunction" => {
            let app = Arc::new(medrec_outbox_relay::boot(&settings).await.map_err(boot)?);
            streamed(app, medrec_outbox_relay::App::handle)
        }
        "AuditMirrorFunction" => {
            let app = Arc::new(medrec_audit_mirror::boot(&settings).await.map_err(boot)?);
            streamed(app, medrec_audit_mirror::App::handle)
        }
        "RegistrySyncFunction" => {
            let app = Arc::new(medrec_registry_sync::boot(&settings).await.map_err(boot)?);
            queued(app, medrec_registry_sync::App::handle)
        }
        "RegistryReconcileFunction" => {
            let app = Arc::new(medrec_registry_reconcile::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_registry_reconcile::App::handle)
        }
        "HealthFunction" => {
            let app = Arc::new(medrec_health::boot(&settings).await.map_err(boot)?);
            Mounted::Api(Arc::new(move |req| {
                let app = app.clone();
                Box::pin(async move { app.handle(req).await })
            }))
        }
        "AuditCheckpointFunction" => {
            let app = Arc::new(medrec_audit_checkpoint::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_audit_checkpoint::App::handle)
        }
        "PurgeFunction" => {
            let app = Arc::new(medrec_purge::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_purge::App::handle)
        }
        "ConsentExpiryFunction" => {
            let app = Arc::new(medrec_consent_expiry::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_consent_expiry::App::handle)
        }
        "AuditAnomaliesFunction" => {
            let app = Arc::new(medrec_audit_anomalies::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_audit_anomalies::App::handle)
        }
        "ComplianceReportFunction" => {
            let app = Arc::new(medrec_compliance_report::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_compliance_report::App::handle)
        }
        "TransactionSweepFunction" => {
            let app = Arc::new(medrec_transaction_sweep::boot(&settings).await.map_err(boot)?);
            scheduled(app, medrec_transaction_sweep::App::handle)
        }
        _ => return Ok(None),
    }))
}

/// A DynamoDB stream consumer as Lambda's stream event source mapping invokes it.
fn streamed<A, F, Fut>(app: Arc<A>, handle: F) -> Mounted
where
    A: Send + Sync + 'static,
    F: Fn(Arc<A>, lambda_http::LambdaEvent<medrec_edge::aws::stream::StreamEvent>) -> Fut
        + Send
        + Sync
        + Copy
        + 'static,
    Fut: std::future::Future<Output = Result<medrec_edge::aws::stream::StreamBatchResponse, lambda_http::Error>>
        + Send
        + 'static,
{
    Mounted::Stream(Arc::new(move |event| {
        let app = app.clone();
        Box::pin(async move {
            let event = serde_json::from_value(event).map_err(|e| e.to_string())?;
            let invocation = lambda_http::LambdaEvent::new(event, lambda_http::Context::default());
            let response = handle(app, invocation).await.map_err(|e| e.to_string())?;
            serde_json::to_value(response).map_err(|e| e.to_string())
        })
    }))
}

/// A queue consumer as Lambda's SQS event source mapping invokes it.
fn queued<A, F, Fut>(app: Arc<A>, handle: F) -> Mounted
where
    A: Send + Sync + 'static,
    F: Fn(Arc<A>, lambda_http::LambdaEvent<aws_lambda_events::sqs::SqsEvent>) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<aws_lambda_events::sqs::SqsBatchResponse, std::convert::Infallible>> + Send + 'static,
{
    Mounted::Queue(Arc::new(move |event| {
        let app = app.clone();
        Box::pin(async move {
            match handle(app, lambda_http::LambdaEvent::new(event, lambda_http::Context::default())).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    }))
}

/// A scheduled function as EventBridge invokes it; a failed run is logged
/// (EventBridge would retry it).
fn scheduled<A, F, Fut>(app: Arc<A>, handle: F) -> Mounted
where
    A: Send + Sync + 'static,
    F: Fn(Arc<A>, lambda_http::LambdaEvent<serde_json::Value>) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<serde_json::Value, lambda_http::Error>> + Send + 'static,
{
    Mounted::Scheduled(Arc::new(move || {
        let app = app.clone();
        Box::pin(async move {
            let event = lambda_http::LambdaEvent::new(serde_json::json!({}), lambda_http::Context::default());
            if let Err(e) = handle(app, event).await {
                tracing::error!(error = %e, "scheduled run failed");
            }
        })
    }))
}

/// An API function's handler as the local gateway invokes it: behind the
/// same panic guard as in Lambda.
fn api<A: medrec_edge::lambda::Api>(app: A) -> Handler {
    let app = Arc::new(app);
    Arc::new(move |req| {
        let app = app.clone();
        Box::pin(async move {
            match medrec_edge::lambda::handle_guarded(app, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    })
}

/// Two registry simulators (primary and secondary) with fresh credentials,
/// which go where the registry sync reads them: the template's secret.
async fn start_registry(
    clients: &Clients,
    provisioned: &crate::provision::Provisioned,
) -> Result<(Arc<RegistrySimulator>, Arc<RegistrySimulator>), String> {
    let creds = Credentials {
        client_id: "medrec-local".into(),
        client_secret: medrec_edge::crypto::random_id(),
        signing_key: medrec_edge::crypto::unhex(
            &(medrec_edge::crypto::random_id() + &medrec_edge::crypto::random_id()),
        )
        .expect("hex"),
    };
    let primary = RegistrySimulator::start(creds.clone(), 3600).await.map_err(|e| e.to_string())?;
    let secondary = RegistrySimulator::start(creds.clone(), 3600).await.map_err(|e| e.to_string())?;
    let secret = serde_json::json!({
        "clientId": creds.client_id,
        "clientSecret": creds.client_secret,
        "signingKey": medrec_edge::crypto::hex(&creds.signing_key),
    });
    let arn = provisioned.reference("RegistryCredentials").ok_or("RegistryCredentials is not provisioned")?;
    clients
        .secrets
        .put_secret_value()
        .secret_id(arn)
        .secret_string(secret.to_string())
        .send()
        .await
        .map_err(|e| format!("registry secret: {e:?}"))?;
    Ok((primary, secondary))
}

impl LocalStack {
    pub async fn start(opts: StackOptions) -> Result<LocalStack, String> {
        let template = Arc::new(Template::load(&repo_root().join("template.yaml")).map_err(|e| e.to_string())?);
        let emulator = match &opts.endpoint {
            Some(_) => None,
            None => Some(Emulator::start()?),
        };
        let endpoint =
            opts.endpoint.clone().or_else(|| emulator.as_ref().map(|e| e.endpoint.clone())).expect("endpoint");
        let sdk = medrec_edge::aws::sdk_config(Some(&endpoint)).await;
        let clients = Clients::new(&sdk);
        let provisioned = provision(&clients, &template, &opts.prefix).await.map_err(|e| e.to_string())?;
        let registry = start_registry(&clients, &provisioned).await?;
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .map_err(|e| format!("cannot bind port {}: {e}", opts.port))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let base_url = format!("http://127.0.0.1:{port}");

        let mut handlers = HashMap::new();
        let mut pollers = vec![];
        let activity = Activity::new();
        let mut function_env = BTreeMap::new();
        for f in &template.functions {
            let mut env: BTreeMap<String, String> =
                f.environment.iter().filter_map(|(k, v)| Some((k.clone(), provisioned.resolve(v)?))).collect();
            for (k, v) in [
                ("MEDREC_ENV", "local".to_owned()),
                ("MEDREC_AWS_ENDPOINT", endpoint.clone()),
                ("MEDREC_JWKS_URL", format!("{base_url}/.well-known/jwks.json")),
                ("MEDREC_ISSUER", DEV_ISSUER.to_owned()),
                ("MEDREC_AUDIENCE", DEV_AUDIENCE.to_owned()),
                ("MEDREC_PUBLIC_BASE_URL", base_url.clone()),
                ("AWS_LAMBDA_FUNCTION_NAME", f.logical_id.clone()),
            ] {
                env.insert(k.to_owned(), v);
            }
            if matches!(f.logical_id.as_str(), "RegistrySyncFunction" | "RegistryReconcileFunction") {
                env.insert(
                    "MEDREC_REGISTRY_ENDPOINTS".into(),
                    format!("{},{}", registry.0.base_url, registry.1.base_url),
                );
            }
            for (k, v) in &opts.env_overrides {
                // `Function:VAR` overrides one function's variable only.
                match k.split_once(':') {
                    Some((function, var)) if function == f.logical_id => env.insert(var.to_owned(), v.clone()),
                    Some(_) => None,
                    None => env.insert(k.clone(), v.clone()),
                };
            }
            if opts.unmounted.contains(&f.logical_id) {
                function_env.insert(f.logical_id.clone(), env);
                continue;
            }
            // Boxed: every function's boot future is inline in `mount`,
            // too large for a test thread's stack beside the test's own.
            match Box::pin(mount(&f.logical_id, &env)).await? {
                Some(Mounted::Api(h)) => {
                    handlers.insert(f.logical_id.clone(), h);
                }
                Some(Mounted::Queue(h)) => {
                    for (queue, batch_size) in &f.queues {
                        let source = QueueSource {
                            url: provisioned.reference(queue).ok_or(format!("{queue} is not provisioned"))?.to_owned(),
                            arn: provisioned.resolve_attribute(queue, "Arn").unwrap_or_default(),
                            batch_size: *batch_size,
                        };
                        pollers.push(tokio::spawn(poller::run(
                            clients.sqs.clone(),
                            source,
                            h.clone(),
                            activity.clone(),
                        )));
                    }
                }
                Some(Mounted::Scheduled(h)) => {
                    // EventBridge fires a rate schedule first one period after
                    // the rule is created; so does this.
                    for period in f.schedules.iter().filter_map(|s| crate::template::rate(s)) {
                        let (h, activity) = (h.clone(), activity.clone());
                        pollers.push(tokio::spawn(async move {
                            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                            loop {
                                tick.tick().await;
                                h().await;
                                activity.signal();
                            }
                        }));
                    }
                }
                Some(Mounted::Stream(h)) => {
                    for (table, batch_size) in &f.streams {
                        let arn = provisioned
                            .resolve_attribute(table, "StreamArn")
                            .ok_or(format!("{table} has no stream provisioned"))?;
                        let client = clients.streams.clone();
                        pollers.push(tokio::spawn(crate::stream_poller::run(
                            client,
                            arn,
                            *batch_size,
                            h.clone(),
                            activity.clone(),
                        )));
                    }
                }
                None => {}
            }
            function_env.insert(f.logical_id.clone(), env);
        }
        crate::metrics::install();
        let gateway = Arc::new(Gateway { template: template.clone(), handlers, jwks: opts.dev_key.jwks(), activity });
        let server = tokio::spawn(gateway.serve(listener));
        Ok(LocalStack {
            endpoint,
            base_url,
            provisioned,
            template,
            dev_key: opts.dev_key,
            clients,
            function_env,
            registry,
            server,
            pollers,
            _emulator: emulator,
        })
    }

    pub fn table(&self, logical_id: &str) -> String {
        self.provisioned.reference(logical_id).unwrap_or_default().to_owned()
    }

    /// Where `medrec dev` records the running stack for the other commands.
    pub fn state_dir() -> std::path::PathBuf {
        repo_root().join(".medrec")
    }

    pub fn state(&self) -> serde_json::Value {
        let resources: BTreeMap<&String, &String> =
            self.provisioned.resources.iter().map(|(k, v)| (k, &v.reference)).collect();
        // What a CLI command needs to boot a function against this stack
        // (table names, key ids, endpoints; no secret is in an environment).
        serde_json::json!({"endpoint": self.endpoint, "base_url": self.base_url, "prefix": self.provisioned.prefix,
            "resources": resources, "function_env": self.function_env})
    }
}
