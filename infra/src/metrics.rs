//! The local stack's CloudWatch: every function's EMF lines (in-process,
//! through `medrec_edge::emf::set_sink`) summed by metric and dimensions,
//! served by the local gateway as Prometheus text at `GET /metrics`, and
//! kept raw (the latest lines) for the tests that search them for PHI.

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

/// Raw lines kept for inspection; older ones are dropped.
const KEPT_LINES: usize = 20_000;

/// (metric, sorted labels) -> (sum, samples).
type Series = BTreeMap<(String, Vec<(String, String)>), (f64, u64)>;

#[derive(Default)]
struct Collector {
    series: Series,
    /// Metric -> CloudWatch unit.
    units: BTreeMap<String, String>,
    lines: VecDeque<String>,
}

fn collector() -> &'static Mutex<Collector> {
    static COLLECTOR: OnceLock<Mutex<Collector>> = OnceLock::new();
    COLLECTOR.get_or_init(Default::default)
}

/// Makes this process's EMF lines land here (once; later calls are no-ops).
pub fn install() {
    medrec_edge::emf::set_sink(Box::new(record));
}

fn record(line: &str) {
    let Ok(doc) = serde_json::from_str::<Value>(line) else { return };
    let mut c = collector().lock().expect("metrics lock");
    c.lines.push_back(line.to_owned());
    if c.lines.len() > KEPT_LINES {
        c.lines.pop_front();
    }
    for directive in doc["_aws"]["CloudWatchMetrics"].as_array().into_iter().flatten() {
        // The most specific dimension set of the directive labels its
        // metrics (the others are its sums, which Prometheus adds itself).
        let dims = directive["Dimensions"].as_array().into_iter().flatten().filter_map(Value::as_array);
        let Some(widest) = dims.max_by_key(|d| d.len()) else { continue };
        let mut labels: Vec<(String, String)> = widest
            .iter()
            .filter_map(Value::as_str)
            .map(|k| (k.to_owned(), doc[k].as_str().unwrap_or_default().to_owned()))
            .collect();
        labels.sort();
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let (Some(name), Some(value)) =
                (metric["Name"].as_str(), doc[metric["Name"].as_str().unwrap_or("")].as_f64())
            else {
                continue;
            };
            c.units.insert(name.to_owned(), metric["Unit"].as_str().unwrap_or("None").to_owned());
            let entry = c.series.entry((name.to_owned(), labels.clone())).or_default();
            entry.0 += value;
            entry.1 += 1;
        }
    }
}

/// The EMF lines received so far (the latest `KEPT_LINES`).
pub fn lines() -> Vec<String> {
    collector().lock().expect("metrics lock").lines.iter().cloned().collect()
}

/// Everything summed so far as Prometheus text exposition: counts as
/// `medrec_<name>_total`, milliseconds as `medrec_<name>_ms_sum` and
/// `_ms_count`.
pub fn prometheus() -> String {
    let c = collector().lock().expect("metrics lock");
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), (sum, samples)) in &c.series {
        let timed = c.units.get(name).is_some_and(|u| u == "Milliseconds");
        let base = format!("medrec_{}{}", snake(name), if timed { "_ms" } else { "_total" });
        if name != last {
            let kind = if timed { "summary" } else { "counter" };
            let _ = writeln!(out, "# TYPE {base} {kind}");
            last = name;
        }
        let labels =
            labels.iter().map(|(k, v)| format!("{}=\"{}\"", snake(k), escape(v))).collect::<Vec<_>>().join(",");
        let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        if timed {
            let _ = writeln!(out, "{base}_sum{labels} {sum}");
            let _ = writeln!(out, "{base}_count{labels} {samples}");
        } else {
            let _ = writeln!(out, "{base}{labels} {sum}");
        }
    }
    out
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut previous_upper = true;
    for ch in name.chars() {
        if ch.is_ascii_uppercase() && !previous_upper {
            out.push('_');
        }
        previous_upper = ch.is_ascii_uppercase();
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// Prometheus label values escape backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_become_prometheus_series() {
        let line = |route: &str, status_5xx: u8, ms: f64| {
            serde_json::json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
                {"Namespace": "medrec", "Dimensions": [[], ["Function"]],
                 "Metrics": [{"Name": "AuditWrites", "Unit": "Count"}]},
                {"Namespace": "medrec", "Dimensions": [["Function", "Route"]],
                 "Metrics": [{"Name": "ServerErrors", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}]}]},
             "Function": "TestFunction", "Route": route, "AuditWrites": 1, "ServerErrors": status_5xx, "Latency": ms})
            .to_string()
        };
        record(&line("GET /fhir/Patient/{id}", 0, 2.5));
        record(&line("GET /fhir/Patient/{id}", 1, 1.5));
        record("not json");
        let text = prometheus();
        assert!(text.contains("# TYPE medrec_audit_writes_total counter\n"), "{text}");
        assert!(text.contains("medrec_audit_writes_total{function=\"TestFunction\"} 2\n"), "{text}");
        let route = "function=\"TestFunction\",route=\"GET /fhir/Patient/{id}\"";
        assert!(text.contains(&format!("medrec_server_errors_total{{{route}}} 1\n")), "{text}");
        assert!(text.contains(&format!("medrec_latency_ms_sum{{{route}}} 4\n")), "{text}");
        assert!(text.contains(&format!("medrec_latency_ms_count{{{route}}} 2\n")), "{text}");
        assert_eq!(lines().len(), 2, "the line that is not JSON is dropped");
        assert_eq!((snake("AwsCallTime"), escape("a\"b\\")), ("aws_call_time".into(), "a\\\"b\\\\".into()));
    }
}
