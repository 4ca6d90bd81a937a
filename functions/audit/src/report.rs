//! The accounting of disclosures as a human-readable page: a timeline of
//! accesses per day and one row per access. Plain HTML and SVG attributes
//! only, no script and no style sheet, so the API's CSP (`default-src
//! 'none'`) can stay as strict on this page as everywhere else. Every value
//! is escaped, although audit records hold only ids and codes.

use medrec_edge::fhir::primitives::escape_html;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

fn codes(v: &Value) -> String {
    let mut out: Vec<&str> = vec![];
    for c in v.as_array().into_iter().flatten() {
        for coding in c["coding"].as_array().into_iter().flatten() {
            out.extend(coding["code"].as_str());
        }
    }
    out.join(", ")
}

/// Bars of accesses per day, scaled to the busiest day.
fn timeline(events: &[Value]) -> String {
    let mut per_day: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        if let Some(day) = e["recorded"].as_str().and_then(|r| r.get(..10)) {
            *per_day.entry(day).or_default() += 1;
        }
    }
    let (w, h) = (640usize, 120usize);
    let max = per_day.values().copied().max().unwrap_or(1);
    let bar = (w / per_day.len().max(1)).clamp(2, 40);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" role="img" aria-label="Accesses per day">"#,
        h + 20
    );
    for (i, (day, n)) in per_day.iter().enumerate() {
        let bh = (n * h / max).max(1);
        let _ = write!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{bh}" fill="#3b6ea5"><title>{}: {n}</title></rect>"##,
            i * bar,
            h - bh,
            bar.saturating_sub(1),
            escape_html(day)
        );
    }
    if let (Some(first), Some(last)) = (per_day.keys().next(), per_day.keys().next_back()) {
        let _ = write!(svg, r#"<text x="0" y="{}" font-size="11">{}</text>"#, h + 15, escape_html(first));
        let _ = write!(
            svg,
            r#"<text x="{w}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
            h + 15,
            escape_html(last)
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn html(patient: &str, start: Option<&str>, end: Option<&str>, events: &[Value]) -> String {
    let mut page = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Accounting of disclosures</title></head><body>"#,
    );
    let _ = write!(
        page,
        "<h1>Accounting of disclosures</h1><p>Patient/{} &middot; from {} to {} &middot; {} accesses</p>",
        escape_html(patient),
        escape_html(start.unwrap_or("the first record")),
        escape_html(end.unwrap_or("now")),
        events.len()
    );
    page.push_str(&timeline(events));
    page.push_str(r#"<table border="1" cellpadding="4"><thead><tr><th>When</th><th>Who</th><th>Roles</th><th>What</th><th>Why</th><th>How</th><th>From</th></tr></thead><tbody>"#);
    for e in events {
        let agent = &e["agent"][0];
        let roles: Vec<&str> =
            agent["role"].as_array().into_iter().flatten().filter_map(|r| r["text"].as_str()).collect();
        let what: Vec<&str> = e["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|en| en["role"]["code"] != "1")
            .filter_map(|en| en["what"]["reference"].as_str())
            .collect();
        let how = e["subtype"][0]["code"].as_str().unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(e["recorded"].as_str().unwrap_or_default()),
            escape_html(
                agent["who"]["reference"]
                    .as_str()
                    .or(agent["who"]["identifier"]["value"].as_str())
                    .or(agent["who"]["display"].as_str())
                    .unwrap_or_default()
            ),
            escape_html(&roles.join(", ")),
            escape_html(&what.join(" ")),
            escape_html(&codes(&e["purposeOfEvent"])),
            escape_html(how),
            escape_html(agent["network"]["address"].as_str().unwrap_or_default()),
        );
    }
    page.push_str("</tbody></table></body></html>");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_escaped_and_days_are_bars() {
        let e = |day: &str, who: &str| {
            json!({"recorded": format!("{day}T10:00:00.000Z"), "agent": [{"who": {"identifier": {"value": who}}}],
                "subtype": [{"code": "read"}], "purposeOfEvent": [{"coding": [{"code": "TREAT"}]}],
                "entity": [{"what": {"reference": "Observation/o1/_history/1"}}]})
        };
        let page = html("p1", None, None, &[e("2026-11-20", "<script>"), e("2026-11-20", "dr"), e("2026-11-21", "dr")]);
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        assert_eq!(page.matches("<rect").count(), 2, "one bar per day");
        assert!(page.contains("2026-11-20: 2"));
        assert!(page.contains("Observation/o1/_history/1") && page.contains("TREAT"));
    }
}
