//! Each request's and each invocation's metrics as CloudWatch Embedded
//! Metric Format lines: CloudWatch Logs turns them into metrics with no
//! agent and no API call in the request path. Written to a sink, stdout in
//! Lambda; the local stack puts its own collector there.
//!
//! Dimensions are the function's name, the route's template (never the
//! path: ids and search values stay out) and the AWS service's name from a
//! fixed list, so no value a request carries can become a dimension.

use crate::metrics::{Counter, RequestMetrics};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use crate::metrics::measured;

/// CloudWatch namespace of every medrec metric.
pub const NAMESPACE: &str = "medrec";

type Sink = Box<dyn Fn(&str) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

/// Where EMF lines go from now on; the first call wins (once per process).
/// Without one they are printed to stdout, where Lambda sends them to
/// CloudWatch Logs.
pub fn set_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

fn emit(line: &str) {
    match SINK.get() {
        Some(sink) => sink(line),
        None => println!("{line}"),
    }
}

/// What the edge knows of one answered request.
pub struct Served<'a> {
    pub function: &'a str,
    /// The route template, or `unmatched`.
    pub route: &'a str,
    pub status: u16,
    pub started: Instant,
}

/// The EMF lines of one API request: its function-wide and per-route
/// figures, then one line per AWS service it called.
pub fn request_lines(served: &Served, m: &RequestMetrics) -> Vec<String> {
    let status = served.status;
    let mut root = base(m);
    root.insert("Function".into(), json!(served.function));
    root.insert("Route".into(), json!(served.route));
    root.insert("Requests".into(), json!(1));
    root.insert("ClientErrors".into(), json!(u8::from((400..500).contains(&status))));
    root.insert("ServerErrors".into(), json!(u8::from(status >= 500)));
    root.insert("Latency".into(), json!(millis(served.started)));
    let mut everywhere = vec![("Requests", "Count"), ("ClientErrors", "Count"), ("ServerErrors", "Count")];
    everywhere.push(("Latency", "Milliseconds"));
    everywhere.extend(Counter::ALL.iter().map(|c| (c.name(), "Count")));
    let directives = json!([
        // Service-wide (the alarms) and per function.
        directive(&[&[], &["Function"]], &everywhere),
        // Per route: traffic and latency only, so the number of metrics
        // (each billed) grows with routes, not with routes times counters.
        directive(
            &[&["Function", "Route"]],
            &[("Requests", "Count"), ("ServerErrors", "Count"), ("Latency", "Milliseconds")]
        ),
    ]);
    let mut lines = vec![document(root, directives)];
    lines.extend(aws_lines(m));
    lines
}

/// The EMF lines of one background invocation (a stream batch, a queue
/// batch, a schedule): its count, latency and counters, then its AWS calls.
pub fn invocation_lines(function: &str, failed: bool, started: Instant, m: &RequestMetrics) -> Vec<String> {
    let mut root = base(m);
    root.insert("Function".into(), json!(function));
    root.insert("Invocations".into(), json!(1));
    root.insert("InvocationFailures".into(), json!(u8::from(failed)));
    root.insert("Latency".into(), json!(millis(started)));
    let mut metrics = vec![("Invocations", "Count"), ("InvocationFailures", "Count"), ("Latency", "Milliseconds")];
    metrics.extend(Counter::ALL.iter().map(|c| (c.name(), "Count")));
    let mut lines = vec![document(root, json!([directive(&[&[], &["Function"]], &metrics)]))];
    lines.extend(aws_lines(m));
    lines
}

/// Emits the lines of one API request.
pub fn request(served: &Served, m: &RequestMetrics) {
    request_lines(served, m).iter().for_each(|l| emit(l));
}

/// Runs one background invocation, measured, and emits its lines; `failed`
/// says whether its outcome is a failure (a batch reported back, an error).
pub async fn invocation<T>(
    function: &str,
    work: impl std::future::Future<Output = T>,
    failed: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    // Boxed: the task-local scope nests the work's futures once more, past
    // the compiler's layout depth for the SDK's deepest calls.
    let (out, m) = measured(Box::pin(work)).await;
    invocation_lines(function, failed(&out), started, &m).iter().for_each(|l| emit(l));
    out
}

fn base(m: &RequestMetrics) -> Map<String, Value> {
    let mut root = Map::new();
    for c in Counter::ALL {
        root.insert(c.name().into(), json!(m.counts.get(&c).copied().unwrap_or(0)));
    }
    root
}

fn aws_lines(m: &RequestMetrics) -> Vec<String> {
    m.aws
        .iter()
        .map(|(service, (calls, ms))| {
            let mut root = Map::new();
            root.insert("AwsService".into(), json!(service));
            root.insert("AwsCalls".into(), json!(calls));
            root.insert("AwsCallTime".into(), json!(round(*ms)));
            let directives =
                json!([directive(&[&["AwsService"]], &[("AwsCalls", "Count"), ("AwsCallTime", "Milliseconds")])]);
            document(root, directives)
        })
        .collect()
}

fn directive(dimensions: &[&[&str]], metrics: &[(&str, &str)]) -> Value {
    json!({
        "Namespace": NAMESPACE,
        "Dimensions": dimensions,
        "Metrics": metrics.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
    })
}

fn document(mut root: Map<String, Value>, directives: Value) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    root.insert("_aws".into(), json!({"Timestamp": now, "CloudWatchMetrics": directives}));
    Value::Object(root).to_string()
}

fn millis(started: Instant) -> f64 {
    round(started.elapsed().as_secs_f64() * 1000.0)
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{aws_call, count};

    /// Every metric a directive names has a number at the root, and every
    /// dimension a string: what CloudWatch requires of an EMF document.
    fn well_formed(line: &str) -> Value {
        let doc: Value = serde_json::from_str(line).unwrap();
        for d in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(d["Namespace"], NAMESPACE);
            for m in d["Metrics"].as_array().unwrap() {
                assert!(doc[m["Name"].as_str().unwrap()].is_number(), "{m} in {line}");
            }
            for set in d["Dimensions"].as_array().unwrap() {
                for key in set.as_array().unwrap() {
                    assert!(doc[key.as_str().unwrap()].is_string(), "{key} in {line}");
                }
            }
        }
        assert!(doc["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        doc
    }

    #[tokio::test]
    async fn a_request_becomes_documents_cloudwatch_accepts() {
        let started = Instant::now();
        let (_, m) = measured(async {
            count(Counter::KeyCacheMisses);
            count(Counter::AuditWrites);
            aws_call("dynamodb", 2.0);
            aws_call("kms", 5.25);
            aws_call("dynamodb", 1.0);
        })
        .await;
        let served = Served { function: "PatientsFunction", route: "GET /fhir/Patient/{id}", status: 503, started };
        let lines = request_lines(&served, &m);
        assert_eq!(lines.len(), 3, "the request, then dynamodb and kms");
        let request = well_formed(&lines[0]);
        assert_eq!((request["Requests"].as_u64(), request["ServerErrors"].as_u64()), (Some(1), Some(1)));
        assert_eq!((request["KeyCacheMisses"].as_u64(), request["KeyCacheHits"].as_u64()), (Some(1), Some(0)));
        assert_eq!(request["Route"], "GET /fhir/Patient/{id}");
        let dynamodb = well_formed(&lines[1]);
        assert_eq!((dynamodb["AwsService"].as_str(), dynamodb["AwsCalls"].as_u64()), (Some("dynamodb"), Some(2)));
        assert_eq!(dynamodb["AwsCallTime"], 3.0);
        assert_eq!(well_formed(&lines[2])["AwsService"], "kms");
    }

    #[tokio::test]
    async fn an_invocation_counts_its_failure() {
        let (out, m) = measured(async { 7 }).await;
        let lines = invocation_lines("OutboxRelayFunction", out == 7, Instant::now(), &m);
        let doc = well_formed(&lines[0]);
        assert_eq!((doc["Invocations"].as_u64(), doc["InvocationFailures"].as_u64()), (Some(1), Some(1)));
        assert_eq!(lines.len(), 1, "no AWS call, no AWS line");
    }
}
