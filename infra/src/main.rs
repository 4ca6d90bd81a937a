//! `medrec`: the developer and operator CLI.

use clap::{Parser, Subcommand};
use medrec_infra::audit_verify::{self, Target};
use medrec_infra::devkey::{DevKey, TokenSpec};
use medrec_infra::stack::{LocalStack, StackOptions};
use serde_json::Value;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "medrec", about = "medrec developer and operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system locally: emulator, resources from template.yaml, API on 127.0.0.1.
    Dev {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Mint a token signed by the local dev key (trusted only by the local stack).
    DevToken {
        #[arg(long, default_value = "clinician")]
        role: String,
        #[arg(long, default_value = "dr-1")]
        sub: String,
        /// SMART scopes (repeatable); defaults to the role's usual scopes.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Patient context (SMART `patient` claim).
        #[arg(long)]
        patient: Option<String>,
        /// SMART `fhirUser`: who the user is to consent provisions. Default:
        /// Practitioner/<sub> for staff, Patient/<patient> for a patient;
        /// `none` leaves it out.
        #[arg(long)]
        fhir_user: Option<String>,
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Load synthetic patients into the running local stack.
    Seed {
        #[arg(long, default_value_t = 100)]
        patients: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Validate FHIR R4 JSON files (or every .json file under directories).
    Validate {
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Print every issue, not only a summary per failing file.
        #[arg(long)]
        verbose: bool,
    },
    /// Regenerate the validator's FHIR R4 model from the official definitions.
    GenFhirModel {
        /// Directory holding profiles-resources.json, profiles-types.json, valuesets.json, v3-codesystems.json.
        #[arg(long)]
        definitions: std::path::PathBuf,
        /// Directory holding the vendored US Core StructureDefinitions.
        #[arg(long, default_value = "infra/fhir/us-core-6.1.0")]
        us_core: std::path::PathBuf,
        /// Directory holding the official R4 StructureDefinitions (npm hl7.fhir.r4.examples 4.0.1).
        #[arg(long, default_value = ".cache/fhir/hl7.fhir.r4.examples/package")]
        r4: std::path::PathBuf,
        #[arg(long, default_value = "fhir/src/r4-model.json")]
        out: std::path::PathBuf,
    },
    /// Regenerate the resource table (compartment types and their search
    /// parameters) from the R4 definitions.
    GenResourceTable {
        /// Directory holding compartmentdefinition-patient.json, search-parameters.json, profiles-resources.json.
        #[arg(long)]
        definitions: std::path::PathBuf,
        #[arg(long, default_value = "fhir/src/resource-table.json")]
        out: std::path::PathBuf,
    },
    /// Regenerate the CVX vaccine code list from the FHIR R4 expansions package.
    GenCvx {
        /// Directory of the unpacked hl7.fhir.r4.expansions package.
        #[arg(long)]
        expansions: std::path::PathBuf,
        #[arg(long, default_value = "fhir/src/cvx.json")]
        out: std::path::PathBuf,
    },
    /// Audit trail operations.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Retention: what is out of retention (plan) and its purge (run), on the local stack.
    Purge {
        #[command(subcommand)]
        command: PurgeCommand,
    },
    /// Legal holds that block the purge of a patient or a resource, on the local stack.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// The HIPAA §164.312 / §164.528 mapping to tests, with the latest results, as HTML.
    Compliance {
        #[command(subcommand)]
        command: ComplianceCommand,
    },
    /// Dead-letter queues of the event consumers, on the local stack.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Wrapped data keys: their CMKs and ages; moving them to another CMK.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Erasure requests (GDPR Art. 17) approved by the privacy office, on the local stack.
    Erase {
        #[command(subcommand)]
        command: EraseCommand,
    },
}

#[derive(Subcommand)]
enum ComplianceCommand {
    /// The control-to-test mapping with the latest results; with --live,
    /// the report from the running local stack's evidence instead.
    Report {
        /// Where to write the HTML (the live report's JSON goes beside it).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// nextest's JUnit output of the latest `make test`.
        #[arg(long, default_value = "target/nextest/default/junit.xml")]
        junit: std::path::PathBuf,
        /// Evidence from the running local stack (as the monthly function reads it).
        #[arg(long)]
        live: bool,
        /// The live report's period (default: the last 30 days).
        #[arg(long, requires = "live")]
        since: Option<String>,
        #[arg(long, requires = "live")]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every DLQ with its messages (event type and id, receive count; never a body).
    List,
    /// Moves a DLQ's messages back to its source queue (consumers are idempotent).
    Redrive {
        /// The DLQ's logical id in template.yaml.
        queue: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every patient's data key and service secret: by CMK, by age; the
    /// records CMK's own rotation.
    Status,
    /// Re-wraps every data key and service secret under the CMK `--to`
    /// inside KMS (ReEncrypt; no plaintext key leaves KMS). Resumable:
    /// run it again after a stop.
    Rewrap {
        /// The new CMK (key id or ARN).
        #[arg(long)]
        to: String,
        /// Who runs it (recorded in its audit record).
        #[arg(long)]
        by: String,
        #[arg(long, default_value_t = u64::MAX)]
        limit: u64,
    },
}

#[derive(Subcommand)]
enum EraseCommand {
    /// Records the request; the purge carries it out once the legal floor
    /// has passed and no hold blocks.
    Request {
        #[arg(long)]
        patient: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        ticket: String,
    },
}

/// The retention a purge plans or runs with.
#[derive(clap::Args)]
struct RetentionArgs {
    /// Retention of clinical records in years (at least 6).
    #[arg(long)]
    years: Option<u32>,
    /// Legal floor for erasure requests in years (at least 6, at most --years).
    #[arg(long)]
    erasure_floor: Option<u32>,
    /// Longer retention for some types: `Immunization=25,...`.
    #[arg(long, default_value = "")]
    by_type: String,
}

impl RetentionArgs {
    fn retention(&self) -> Result<medrec_edge::retention::Retention, String> {
        medrec_edge::retention::Retention::new(self.years, self.erasure_floor)?.with_types(&self.by_type)
    }
}

#[derive(Subcommand)]
enum PurgeCommand {
    /// Dry run: the patients and resources past retention, the holds that block, pending erasures.
    Plan {
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Crypto-shred the patients past retention, purge resources and versions past it, none held.
    Run {
        #[command(flatten)]
        retention: RetentionArgs,
        /// Patients and resources per run.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Who runs it (recorded in the purge's audit records).
        #[arg(long)]
        by: String,
    },
}

#[derive(Subcommand)]
enum HoldCommand {
    Place {
        /// `Patient/{id}` or `{type}/{id}`.
        #[arg(long)]
        target: String,
        #[arg(long)]
        by: String,
        /// A code, never free text (litigation, investigation, regulator, patient-request).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: String,
    },
    Release {
        #[arg(long)]
        target: String,
        #[arg(long)]
        by: String,
    },
}

fn hold_target(reference: &str) -> Result<medrec_edge::purge::HoldTarget, String> {
    medrec_edge::purge::HoldTarget::parse(reference).ok_or(format!("{reference}: expected Patient/<id> or <Type>/<id>"))
}

fn print_plan(retention: &medrec_edge::retention::Retention, plan: &medrec_edge::purge::Plan) {
    let policy = &retention.clinical;
    println!("{} patients past retention ({} years: {})", plan.patients.len(), policy.years, policy.source);
    for c in &plan.patients {
        let state = match (c.shredded, c.held) {
            (true, _) => "purged",
            (false, true) => "HELD",
            (false, false) => "to purge",
        };
        println!("  Patient/{} ({:?}) last active {} {:?}: {state}", c.patient, c.why, c.last_activity, c.records);
    }
    println!("{} resources with versions past retention", plan.resources.len());
    for r in &plan.resources {
        let what = if r.whole { "deleted: every version" } else { "superseded versions" };
        let state = if r.held { "HELD" } else { "to purge" };
        println!("  {}/{} {what} {:?}: {state}", r.resource_type, r.id, r.versions);
    }
    for e in &plan.pending_erasures {
        let held = if e.held { " (and HELD)" } else { "" };
        println!("  erasure of Patient/{} requested {}: not before {}{held}", e.patient, e.requested, e.earliest);
    }
}

/// The retention context of the running local stack.
async fn local_purge_context() -> Result<medrec_edge::aws::purge::PurgeContext, String> {
    let s = local_state()?;
    let res = |id: &str| s["resources"][id].as_str().map(str::to_owned).ok_or(format!("{id} missing from local state"));
    let target = Target {
        endpoint: s["endpoint"].as_str().map(str::to_owned),
        audit_table: res("AuditTable")?,
        records_table: res("RecordsTable")?,
        records_key_id: res("RecordsKey")?,
        signing_key_id: None,
        archive_bucket: None,
        shards: 8,
    };
    medrec_infra::purge::context(&target, &res("OutboxTable")?, &res("DocumentsBucket")?).await
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every audit chain and check every signed checkpoint; name
    /// the first record that does not match and the checkpoint it contradicts.
    Verify {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Sign the chains' current heads with the KMS key and archive the checkpoint.
    Checkpoint {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Access-anomaly detection over a window of the local stack's trail,
    /// each user against the days before; raises what it finds once.
    Anomalies {
        /// Instant (or date) the window starts.
        #[arg(long)]
        since: String,
        /// Default: now.
        #[arg(long)]
        until: Option<String>,
    },
    /// Export AuditEvents (FHIR NDJSON + OCSF) in signed, chained chunks;
    /// rerun with the same --id to resume.
    Export {
        #[command(flatten)]
        target: TargetArgs,
        /// Instants (or dates) bounding `recorded`, inclusive.
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: String,
        /// Default: derived from the window.
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        chunk_records: usize,
    },
}

/// A deployed stack's audit resources (default: the running local stack).
#[derive(clap::Args)]
struct TargetArgs {
    #[arg(long)]
    audit_table: Option<String>,
    #[arg(long)]
    records_table: Option<String>,
    #[arg(long)]
    records_key_id: Option<String>,
    #[arg(long)]
    signing_key_id: Option<String>,
    #[arg(long)]
    archive_bucket: Option<String>,
    #[arg(long, default_value_t = 8)]
    shards: u32,
}

impl TargetArgs {
    fn resolve(self) -> Result<Target, String> {
        match (self.audit_table, self.records_table, self.records_key_id) {
            (Some(a), Some(r), Some(k)) => Ok(Target {
                endpoint: None,
                audit_table: a,
                records_table: r,
                records_key_id: k,
                signing_key_id: self.signing_key_id,
                archive_bucket: self.archive_bucket,
                shards: self.shards,
            }),
            (None, None, None) => {
                let s = local_state()?;
                let res = |id: &str| {
                    s["resources"][id].as_str().map(str::to_owned).ok_or(format!("{id} missing from local state"))
                };
                Ok(Target {
                    endpoint: s["endpoint"].as_str().map(str::to_owned),
                    audit_table: res("AuditTable")?,
                    records_table: res("RecordsTable")?,
                    records_key_id: res("RecordsKey")?,
                    signing_key_id: Some(res("AuditSigningKey")?),
                    archive_bucket: Some(res("AuditArchiveBucket")?),
                    shards: self.shards,
                })
            }
            _ => Err("give --audit-table, --records-table and --records-key-id together".into()),
        }
    }
}

/// Boots a function of the running local stack from the stack's own
/// settings (its metrics are CloudWatch's business, not the terminal's).
fn local_function_settings(function: &str) -> Result<medrec_edge::config::Settings, String> {
    let env: std::collections::BTreeMap<String, String> =
        serde_json::from_value(local_state()?["function_env"][function].clone())
            .map_err(|_| format!("{function} missing from local state: restart `make dev`"))?;
    medrec_edge::emf::set_sink(Box::new(|_| {}));
    medrec_edge::config::Settings::from_map(env).map_err(|e| e.to_string())
}

/// The compliance report from the local stack's evidence.
async fn live_report(since: Option<&str>, until: Option<&str>) -> Result<medrec_edge::evidence::Report, String> {
    let parse = |v: &str| {
        medrec_edge::fhir::primitives::datetime_bounds(v).map(|(t, _)| t).ok_or(format!("{v} is not a date or instant"))
    };
    let until = until.map(parse).transpose()?.unwrap_or_else(time::OffsetDateTime::now_utc);
    let since = since.map(parse).transpose()?.unwrap_or(until - time::Duration::days(30));
    let app = medrec_compliance_report::boot(&local_function_settings("ComplianceReportFunction")?)
        .await
        .map_err(|e| e.to_string())?;
    app.report(since, until).await
}

/// Runs the anomaly function of the running local stack over a window, as
/// its schedule would.
async fn anomalies_on_local_stack(since: &str, until: &str) -> Result<Value, String> {
    let settings = local_function_settings("AuditAnomaliesFunction")?;
    let app = Arc::new(medrec_audit_anomalies::boot(&settings).await.map_err(|e| e.to_string())?);
    let payload = serde_json::json!({"since": since, "until": until});
    app.handle(lambda_http::LambdaEvent::new(payload, lambda_http::Context::default())).await.map_err(|e| e.to_string())
}

fn dev_key() -> Result<DevKey, String> {
    DevKey::load_or_create(&LocalStack::state_dir().join("dev-signing-key.pk8"))
}

fn local_state() -> Result<Value, String> {
    let path = LocalStack::state_dir().join("local.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|_| "no local stack is running: start it with `make dev`".to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Dev { port } => {
            medrec_edge::log::init();
            let key = Arc::new(dev_key()?);
            let token = key.mint(&TokenSpec::for_role("clinician", "dr-1"));
            let stack = LocalStack::start(StackOptions {
                endpoint: None,
                port,
                prefix: "dev".into(),
                dev_key: key,
                env_overrides: vec![],
                unmounted: vec![],
            })
            .await?;
            std::fs::write(LocalStack::state_dir().join("local.json"), stack.state().to_string())
                .map_err(|e| e.to_string())?;
            println!("medrec is running locally (emulator at {})", stack.endpoint);
            println!();
            println!("  FHIR base:  {}/fhir", stack.base_url);
            println!("  dev token (clinician dr-1, 1 h):\n{token}");
            println!();
            println!("  try:  curl -s -H \"Authorization: Bearer $TOKEN\" {}/fhir/Patient", stack.base_url);
            println!("        (TOKEN=$(target/debug/medrec dev-token --role clinician --sub dr-1))");
            println!("  load data: target/debug/medrec seed --patients 100");
            println!("  health:     curl -s {}/health", stack.base_url);
            println!(
                "  immunization registry (simulated): primary {}, secondary {}",
                stack.registry.0.base_url, stack.registry.1.base_url
            );
            println!("  dead letters: target/debug/medrec events dlq list");
            println!();
            println!("Ctrl-C stops it.");
            tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(LocalStack::state_dir().join("local.json"));
            Ok(ExitCode::SUCCESS)
        }
        Command::DevToken { role, sub, scopes, patient, fhir_user, ttl } => {
            if medrec_edge::auth::Role::parse(&role).is_none() {
                return Err(format!("unknown role {role:?} (clinician, registrar, auditor, admin, patient)"));
            }
            let mut spec = TokenSpec::for_role(&role, &sub);
            if !scopes.is_empty() {
                spec.scopes = scopes;
            }
            if role == "patient" {
                spec.fhir_user = patient.as_ref().map(|p| format!("Patient/{p}"));
            }
            match fhir_user.as_deref() {
                Some("none") => spec.fhir_user = None,
                Some(user) => spec.fhir_user = Some(user.to_owned()),
                None => {}
            }
            spec.patient = patient;
            spec.ttl_seconds = ttl;
            println!("{}", dev_key()?.mint(&spec));
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed { patients, concurrency } => {
            let state = local_state()?;
            let base = state["base_url"].as_str().ok_or("bad local state")?.to_owned();
            let token = dev_key()?.mint(&TokenSpec::for_role("registrar", "seed"));
            let bar = indicatif::ProgressBar::new(patients);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} patients ({per_sec}, eta {eta})")
                    .map_err(|e| e.to_string())?,
            );
            let started = std::time::Instant::now();
            let n = medrec_infra::seed::seed(&base, &token, patients, concurrency, bar).await?;
            println!("created {n} synthetic patients in {:.1}s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths, verbose } => medrec_infra::validate_files::run(&paths, verbose),
        Command::GenResourceTable { definitions, out } => {
            let table = medrec_infra::resource_table::generate(&definitions)?;
            let text = serde_json::to_string_pretty(&table).map_err(|e| e.to_string())? + "\n";
            std::fs::write(&out, &text).map_err(|e| e.to_string())?;
            let count = |part: &str| table[part].as_array().map_or(0, Vec::len);
            let params: usize = ["types", "directory"]
                .iter()
                .flat_map(|part| table[part].as_array().into_iter().flatten())
                .map(|t| t["params"].as_array().map_or(0, Vec::len))
                .sum();
            println!(
                "wrote {}: {} compartment types, {} directory types, {params} search parameters",
                out.display(),
                count("types"),
                count("directory")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::GenCvx { expansions, out } => {
            let list = medrec_infra::fhir_model::cvx_codes(&expansions)?;
            let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())? + "\n";
            std::fs::write(&out, &text).map_err(|e| e.to_string())?;
            let n = list["codes"].as_object().map_or(0, |m| m.len());
            println!("wrote {} ({n} CVX codes as of {})", out.display(), list["date"]);
            Ok(ExitCode::SUCCESS)
        }
        Command::GenFhirModel { definitions, us_core, r4, out } => {
            let model = medrec_infra::fhir_model::generate(&definitions, &us_core, &r4)?;
            let text = serde_json::to_string(&model).map_err(|e| e.to_string())?;
            std::fs::write(&out, &text).map_err(|e| e.to_string())?;
            println!(
                "wrote {} ({} bytes): {} types, {} enumerable bound value sets, {} profiles",
                out.display(),
                text.len(),
                model["types"].as_object().map_or(0, |m| m.len()),
                model["valueSets"].as_object().map_or(0, |m| m.len()),
                model["profiles"].as_object().map_or(0, |m| m.len())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Purge { command } => {
            let ctx = local_purge_context().await?;
            let now = time::OffsetDateTime::now_utc();
            match command {
                PurgeCommand::Plan { retention } => {
                    let retention = retention.retention()?;
                    let plan = ctx.purger().plan(&retention, now).await.map_err(|e| e.to_string())?;
                    print_plan(&retention, &plan);
                }
                PurgeCommand::Run { retention, limit, by } => {
                    let retention = retention.retention()?;
                    let r = ctx.purger().run(&retention, now, limit, &by).await.map_err(|e| e.to_string())?;
                    println!(
                        "shredded {} patients, purged {} resources ({} versions), {} held, {} already purged, {} document objects deleted",
                        r.shredded, r.resources, r.versions_deleted, r.held, r.already, r.objects_deleted
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Hold { command } => {
            let ctx = local_purge_context().await?;
            match command {
                HoldCommand::Place { target, by, reason, ticket } => {
                    let target = hold_target(&target)?;
                    if !ctx.purger().place_hold(&target, &by, &reason, &ticket).await.map_err(|e| e.to_string())? {
                        return Err("no such resource".into());
                    }
                }
                HoldCommand::Release { target, by } => {
                    ctx.purger().release_hold(&hold_target(&target)?, &by).await.map_err(|e| e.to_string())?
                }
            }
            println!("done (audited)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Compliance { command: ComplianceCommand::Report { out, live: true, since, until, .. } } => {
            let out = out.unwrap_or_else(|| "target/compliance-live.html".into());
            let report = live_report(since.as_deref(), until.as_deref()).await?;
            std::fs::write(&out, report.to_html()).map_err(|e| e.to_string())?;
            let json = out.with_extension("json");
            std::fs::write(&json, report.to_json().to_string()).map_err(|e| e.to_string())?;
            for i in &report.items {
                let value = i.value.as_str().map(str::to_owned).unwrap_or_else(|| i.value.to_string());
                println!("  {:<10} {:<22} {value}", format!("{:?}", i.status), i.id);
            }
            println!("wrote {} and {}", out.display(), json.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compliance { command: ComplianceCommand::Report { out, junit, .. } } => {
            let out = out.unwrap_or_else(|| "target/compliance.html".into());
            use medrec_infra::compliance;
            let root = medrec_infra::emulator::repo_root();
            let mapping = compliance::load(&root)?;
            let index = compliance::test_index(&root);
            let results =
                std::fs::read_to_string(root.join(&junit)).map(|x| compliance::results(&x)).unwrap_or_default();
            std::fs::write(root.join(&out), compliance::report(&mapping, &index, &results))
                .map_err(|e| e.to_string())?;
            let problems = compliance::check(&mapping, &index);
            println!("{} controls, {} results read; wrote {}", mapping.controls.len(), results.len(), out.display());
            for p in &problems {
                println!("  {p}");
            }
            Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Events { command: EventsCommand::Dlq { command } } => {
            let s = local_state()?;
            let template =
                medrec_infra::template::Template::load(&medrec_infra::emulator::repo_root().join("template.yaml"))
                    .map_err(|e| e.to_string())?;
            let urls: std::collections::BTreeMap<String, String> = s["resources"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
                .unwrap_or_default();
            let sdk = medrec_edge::aws::sdk_config(s["endpoint"].as_str()).await;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let dlqs = medrec_infra::events::dead_letter_queues(&template, &urls);
            match command {
                DlqCommand::List => {
                    for dlq in &dlqs {
                        let letters = medrec_infra::events::list(&sqs, dlq).await?;
                        println!("{} (from {}): {} messages", dlq.logical_id, dlq.source, letters.len());
                        for l in letters {
                            let event =
                                l.event.map_or("not a medrec event".to_owned(), |(ty, id)| format!("{ty} {id}"));
                            println!("  {} {event}, received {} times", l.message_id, l.receive_count);
                        }
                    }
                }
                DlqCommand::Redrive { queue } => {
                    let dlq = dlqs.iter().find(|d| d.logical_id == queue).ok_or(format!("{queue} is not a DLQ"))?;
                    let moved = medrec_infra::events::redrive(&sqs, dlq).await?;
                    println!("moved {moved} messages from {} back to {}", dlq.logical_id, dlq.source);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Status } => {
            let s = local_state()?;
            let sdk = medrec_edge::aws::sdk_config(s["endpoint"].as_str()).await;
            let table = s["resources"]["RecordsTable"].as_str().ok_or("RecordsTable missing from local state")?;
            let ddb = aws_sdk_dynamodb::Client::new(&sdk);
            let status = medrec_edge::aws::rekey::key_status(&ddb, table, time::OffsetDateTime::now_utc())
                .await
                .map_err(|e| e.to_string())?;
            println!("{} patient data keys, oldest made {}", status.data_keys, status.oldest.as_deref().unwrap_or("-"));
            for (cmk, n) in &status.by_cmk {
                match cmk.as_str() {
                    "as created" => println!("  never re-wrapped (under the CMK configured when made): {n}"),
                    _ => println!("  re-wrapped under {cmk}: {n}"),
                }
            }
            for (age, n) in &status.by_age {
                println!("  {age}: {n}");
            }
            for (name, cmk) in &status.secrets {
                println!("service secret {name}: {}", if cmk == "as created" { "never re-wrapped" } else { cmk });
            }
            let key = s["resources"]["RecordsKey"].as_str().unwrap_or_default();
            let rotation = aws_sdk_kms::Client::new(&sdk).get_key_rotation_status().key_id(key).send().await;
            println!(
                "records CMK {key}: automatic rotation {}",
                match rotation {
                    Ok(r) if r.key_rotation_enabled() => "on",
                    Ok(_) => "OFF",
                    Err(_) => "unknown",
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Rewrap { to, by, limit } } => {
            let s = local_state()?;
            let sdk = medrec_edge::aws::sdk_config(s["endpoint"].as_str()).await;
            let res = |id: &str| {
                s["resources"][id].as_str().map(str::to_owned).ok_or(format!("{id} missing from local state"))
            };
            let (table, current) = (res("RecordsTable")?, res("RecordsKey")?);
            let kms = aws_sdk_kms::Client::new(&sdk);
            // The root secret may already be under either CMK (a resumed run).
            let keys = medrec_edge::aws::kms::KmsKeys::new(kms.clone(), &to).accepting(vec![current]);
            let tables = medrec_edge::aws::dynamo::Tables {
                records: table.clone(),
                audit: res("AuditTable")?,
                outbox: res("OutboxTable")?,
            };
            let ctx = medrec_edge::aws::purge::PurgeContext::new(&sdk, true, tables, keys, 8, &res("DocumentsBucket")?)
                .await
                .map_err(|e| e.to_string())?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} keys examined ({per_sec}) {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            let rekey =
                medrec_edge::aws::rekey::Rekey { ddb: &ctx.ddb, kms: &kms, records_table: &table, store: &ctx.store };
            let started = std::time::Instant::now();
            let run = rekey
                .rewrap(&to, &by, limit, |r| {
                    bar.set_position(r.examined);
                    bar.set_message(format!("{} re-wrapped", r.rewrapped));
                })
                .await
                .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            let rate = run.rewrapped as f64 / started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "{} keys examined: {} re-wrapped ({rate:.0}/s), {} under it already, {} to retry{}",
                run.examined,
                run.rewrapped,
                run.already,
                run.skipped,
                if run.more { "; more remain (run again)" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Erase { command: EraseCommand::Request { patient, by, ticket } } => {
            let ctx = local_purge_context().await?;
            if !ctx.purger().request_erasure(&patient, &by, &ticket).await.map_err(|e| e.to_string())? {
                return Err("no such patient".into());
            }
            println!("erasure requested (audited); `medrec purge plan` shows when it can be carried out");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Anomalies { since, until } } => {
            let until = until.unwrap_or_else(medrec_edge::fhir::now_instant);
            let result = anomalies_on_local_stack(&since, &until).await?;
            let window =
                format!("{} to {}", result["since"].as_str().unwrap_or(""), result["until"].as_str().unwrap_or(""));
            println!(
                "{} accesses read ({window} and its baseline); {} records asked",
                result["accesses"], result["compartments"]
            );
            let alerts = result["alerts"].as_array().cloned().unwrap_or_default();
            for a in &alerts {
                println!(
                    "  {:<16} {:<32} {} patient(s), observed {}",
                    a["detector"].as_str().unwrap_or(""),
                    a["agent"].as_str().unwrap_or(""),
                    a["patients"],
                    a["observed"]
                );
            }
            println!("{} alerts, {} raised now (the rest were raised before)", alerts.len(), result["raised"]);
            println!("review list: GET /fhir/AuditEvent?agent={}", medrec_edge::audit::anomaly::DETECTOR_SUBJECT);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Checkpoint { target } } => {
            let cp = audit_verify::checkpoint(&target.resolve()?).await?;
            println!("signed checkpoint {} of {} shard heads at {}", cp.number, cp.heads.len(), cp.at);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Export { target, since, until, id, chunk_records } } => {
            if chunk_records == 0 {
                return Err("--chunk-records must be positive".into());
            }
            let id = id.unwrap_or_else(|| format!("{since}--{until}").replace(':', ""));
            let target = target.resolve()?;
            let done = audit_verify::export(&target, &id, (&since, &until), chunk_records, usize::MAX).await?;
            println!("exported {} records in {} chunks as {id}", done.records, done.chunks);
            match audit_verify::verify_export(&target, &id).await? {
                Ok(_) => {
                    println!("manifest signature and every chunk verified");
                    Ok(ExitCode::SUCCESS)
                }
                Err(f) => {
                    println!("export does not verify: {f:?}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Audit { command: AuditCommand::Verify { target } } => {
            let target = target.resolve()?;
            let report = audit_verify::verify(&target, true).await?;
            let rate = report.records as f64 / report.seconds.max(1e-9);
            println!(
                "verified {} records in {} shards in {:.2}s ({rate:.0} records/s)",
                report.records, report.shards, report.seconds
            );
            for b in &report.breaks {
                println!("TAMPERED: first bad record: {b}");
            }
            if let Some(f) = &report.finding {
                println!("TAMPERED: {f}");
            }
            if let Some(m) = &report.mirror {
                println!("{} records agree with the archive's mirror; {} not mirrored yet", m.matched, m.unmirrored);
                if let Some(f) = &m.finding {
                    println!(
                        "TAMPERED: shard {} record {}: {} (the archive's mirror holds it as committed)",
                        f.shard, f.seq, f.what
                    );
                }
            }
            if !report.tampered() {
                println!("all audit chains intact; {} signed checkpoints agree with them", report.checkpoints);
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(2))
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("medrec: {e}");
            ExitCode::FAILURE
        }
    }
}
