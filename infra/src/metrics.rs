//! The local stack's CloudWatch: every function's EMF lines (in-process,
//! through `medrec_edge::emf::set_sink`) summed by metric and dimensions,
//! served by the local gateway as Prometheus text at `GET /metrics` and as
//! an HTML page of charts at `GET /dashboard`, and kept raw (the latest
//! lines) for the tests that search them for PHI.

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

/// Raw lines kept for inspection; older ones are dropped.
const KEPT_LINES: usize = 20_000;

/// Seconds of one bar of the dashboard's request history, and bars kept.
const BUCKET_SECONDS: u64 = 10;
const BUCKETS: usize = 60;

/// (metric, sorted labels) -> (sum, samples).
type Series = BTreeMap<(String, Vec<(String, String)>), (f64, u64)>;

#[derive(Default)]
struct Collector {
    series: Series,
    /// Metric -> CloudWatch unit.
    units: BTreeMap<String, String>,
    lines: VecDeque<String>,
    /// API requests and 5xx answers per 10 s, oldest first: (bucket, requests, errors).
    history: VecDeque<(u64, u64, u64)>,
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
    if let (Some(at), Some(requests)) = (doc["_aws"]["Timestamp"].as_u64(), doc["Requests"].as_u64()) {
        let bucket = at / 1000 / BUCKET_SECONDS;
        let errors = doc["ServerErrors"].as_u64().unwrap_or(0);
        match c.history.back_mut() {
            Some(last) if last.0 == bucket => (last.1, last.2) = (last.1 + requests, last.2 + errors),
            _ => c.history.push_back((bucket, requests, errors)),
        }
        if c.history.len() > BUCKETS {
            c.history.pop_front();
        }
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

/// The dashboard: requests and 5xx per 10 s over the last ten minutes, then
/// requests, mean latency and AWS calls as bars, and every counter. Static
/// HTML and SVG that reloads itself every 5 s; no script.
pub fn dashboard() -> String {
    use medrec_edge::fhir::primitives::escape_html as esc;
    let c = collector().lock().expect("metrics lock");
    let pick = |metric: &str, label: &str| -> Vec<(String, f64, u64)> {
        let mut rows: Vec<(String, f64, u64)> = c
            .series
            .iter()
            .filter(|((name, labels), _)| name == metric && labels.iter().any(|(k, _)| k == label))
            .map(|((_, labels), (sum, n))| {
                let key = labels.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" · ");
                (key, *sum, *n)
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows
    };
    let mut page = String::from(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">",
        "<title>medrec local metrics</title></head><body style=\"font-family:sans-serif;max-width:60em\">",
        "<h1>medrec local metrics</h1><p>What CloudWatch would hold; Prometheus text at <a href=\"/metrics\">/metrics</a>.</p>",
    ));
    page.push_str("<h2>API requests per 10 s (red: 5xx)</h2>");
    let peak = c.history.iter().map(|h| h.1).max().unwrap_or(0).max(1) as f64;
    let _ = write!(page, "<svg width=\"600\" height=\"120\" role=\"img\" aria-label=\"requests per 10 seconds\">");
    for (i, (_, requests, errors)) in c.history.iter().enumerate() {
        let (h, e) = (*requests as f64 / peak * 110.0, *errors as f64 / peak * 110.0);
        let x = i * 10;
        let _ = write!(page, "<rect x=\"{x}\" y=\"{:.1}\" width=\"8\" height=\"{h:.1}\" fill=\"#4a7bd0\"/>", 115.0 - h);
        let _ = write!(page, "<rect x=\"{x}\" y=\"{:.1}\" width=\"8\" height=\"{e:.1}\" fill=\"#c0392b\"/>", 115.0 - e);
    }
    page.push_str("</svg>");
    let bars = |page: &mut String, title: &str, rows: &[(String, f64)], unit: &str| {
        let _ = write!(page, "<h2>{}</h2>", esc(title));
        let peak = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-9);
        let _ = write!(page, "<svg width=\"800\" height=\"{}\">", rows.len() * 18 + 4);
        for (i, (key, v)) in rows.iter().enumerate() {
            let (y, w) = (i * 18, v / peak * 300.0);
            let _ = write!(page, "<rect x=\"0\" y=\"{y}\" width=\"{w:.1}\" height=\"14\" fill=\"#4a7bd0\"/>");
            let _ =
                write!(page, "<text x=\"310\" y=\"{}\" font-size=\"12\">{:.1}{unit} {}</text>", y + 11, v, esc(key));
        }
        page.push_str("</svg>");
    };
    let requests: Vec<(String, f64)> = pick("Requests", "Route").into_iter().map(|(k, v, _)| (k, v)).collect();
    bars(&mut page, "Requests by function and route", &requests, "");
    let latency: Vec<(String, f64)> =
        pick("Latency", "Route").into_iter().map(|(k, v, n)| (k, v / n.max(1) as f64)).collect();
    bars(&mut page, "Mean handler latency by route", &latency, " ms");
    let calls: Vec<(String, f64)> = pick("AwsCalls", "AwsService").into_iter().map(|(k, v, _)| (k, v)).collect();
    bars(&mut page, "AWS calls by service", &calls, "");
    page.push_str("<h2>Counters by function</h2><table><tr><th>counter</th><th>function</th><th>total</th></tr>");
    for ((name, labels), (sum, _)) in &c.series {
        let by_function = labels.len() == 1 && labels[0].0 == "Function";
        if by_function && c.units.get(name).is_some_and(|u| u == "Count") && *sum > 0.0 {
            let _ = write!(page, "<tr><td>{}</td><td>{}</td><td>{sum}</td></tr>", esc(name), esc(&labels[0].1));
        }
    }
    page.push_str("</table></body></html>");
    page
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
        let page = dashboard();
        assert!(page.contains("GET /fhir/Patient/{id}") && page.contains("<svg"), "{page}");
        assert!(page.contains("2.0 ms TestFunction · GET /fhir/Patient/{id}"), "the mean latency: {page}");
        assert!(!page.contains("<script"));
        assert_eq!((snake("AwsCallTime"), escape("a\"b\\")), ("aws_call_time".into(), "a\\\"b\\\\".into()));
    }
}
