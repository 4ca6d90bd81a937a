//! The compliance report from live evidence: figures read from the running
//! system at the time of the report (the audit trail of the period, the
//! chains verified, checkpoints, keys, queues, holds), each with the query
//! it came from and a status, arranged as the HIPAA Security Rule, SOC 2
//! and GDPR views auditors ask for. Generated, never written by hand: the
//! gathering is the compliance function's (`functions/compliance-report`),
//! the tally of the trail and the rendering are here.

use crate::audit::anomaly::DETECTOR_SUBJECT;
use crate::fhir::primitives::escape_html;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Someone should look: tampering, an unreviewed emergency access, a
    /// message in a dead-letter queue, a stale checkpoint.
    Attention,
    /// The report could not establish it.
    Unknown,
}

/// One figure of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// The headline figure: a count, or a word where a count says nothing.
    pub value: Value,
    /// What the figure is made of, drawn as bars.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breakdown: Vec<(String, u64)>,
    /// What it means, and why the status.
    pub detail: String,
    /// Where it came from: the query a reviewer can rerun.
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The period the trail figures cover (instants, inclusive).
    pub since: String,
    pub until: String,
    pub generated: String,
    pub items: Vec<Item>,
}

/// A framework's sections, each citing items by id.
pub struct View {
    pub framework: &'static str,
    pub sections: &'static [(&'static str, &'static [&'static str])],
}

pub const VIEWS: [View; 3] = [
    View {
        framework: "HIPAA Security Rule (45 CFR §164.308, §164.312)",
        sections: &[
            ("§164.308(a)(1)(ii)(D) Information system activity review", &["anomaly-alerts", "failed-authentications"]),
            ("§164.312(a)(1) Access control", &["access-refusals", "consents"]),
            ("§164.312(a)(2)(ii) Emergency access procedure", &["break-glass"]),
            ("§164.312(a)(2)(iv) Encryption and decryption", &["records-key"]),
            ("§164.312(b) Audit controls", &["audit-verification", "checkpoint-freshness", "accesses"]),
            ("§164.312(c)(1) Integrity", &["audit-verification", "dead-letters"]),
            ("§164.312(d) Person or entity authentication", &["failed-authentications", "mfa"]),
            (
                "§164.316(b)(2)(i) Retention; §164.528 Accounting of disclosures",
                &["purges", "legal-holds", "registry-disclosures"],
            ),
        ],
    },
    View {
        framework: "SOC 2 (Trust Services Criteria 2017, rev. 2022)",
        sections: &[
            ("CC6.1 Logical access security, encryption keys", &["records-key", "mfa", "access-refusals"]),
            ("CC6.3 Access removed or restricted as authorised", &["consents", "break-glass"]),
            (
                "CC7.2 System components monitored for anomalies",
                &["anomaly-alerts", "failed-authentications", "checkpoint-freshness"],
            ),
            ("CC7.3 Security events evaluated", &["break-glass", "anomaly-alerts", "dead-letters"]),
            ("CC7.4 / CC8.1 Integrity of records and changes", &["audit-verification"]),
        ],
    },
    View {
        framework: "GDPR",
        sections: &[
            (
                "Art. 30 Records of processing activities",
                &["accesses", "processing-purposes", "registry-disclosures", "purges"],
            ),
            ("Art. 32 Security of processing", &["records-key", "audit-verification", "anomaly-alerts", "break-glass"]),
            ("Art. 17 / Art. 5(1)(e) Erasure and storage limitation", &["purges", "legal-holds"]),
        ],
    },
];

/// The period's audit trail, tallied in one pass (ids and codes only).
#[derive(Debug, Clone, Default)]
pub struct TrailTally {
    pub records: u64,
    /// Successful accesses by people: open, search, write.
    pub accesses: BTreeMap<String, u64>,
    pub purposes: BTreeMap<String, u64>,
    pub registry_submissions: u64,
    /// Refused requests by status (`HTTP 403`, ...).
    pub refusals: BTreeMap<String, u64>,
    pub failed_authentications: u64,
    /// Alerts on repeated failures (`service::security_alerts`).
    pub failure_alerts: u64,
    pub anomaly_alerts: BTreeMap<String, u64>,
    /// Consent changes by interaction.
    pub consents: BTreeMap<String, u64>,
    /// Purge records by interaction (patients shredded, resources purged),
    /// erasure requests, holds placed and released.
    pub purges: BTreeMap<String, u64>,
}

impl TrailTally {
    pub fn add(&mut self, e: &Value) {
        self.records += 1;
        let interaction = e["subtype"][0]["code"].as_str().unwrap_or("");
        let succeeded = e["outcome"] == "0";
        let agent = e["agent"][0]["who"]["identifier"]["value"].as_str().unwrap_or("");
        let entities: Vec<&str> =
            e["entity"].as_array().into_iter().flatten().filter_map(|en| en["what"]["reference"].as_str()).collect();
        if e["type"]["code"] == "110114" {
            self.failed_authentications += u64::from(!succeeded);
            return;
        }
        if !succeeded {
            *self.refusals.entry(e["outcomeDesc"].as_str().unwrap_or("other").to_owned()).or_default() += 1;
            return;
        }
        match interaction {
            "security-alert" if agent == DETECTOR_SUBJECT => {
                let detector = entities.iter().find_map(|r| r.strip_prefix("urn:medrec:anomaly:")).unwrap_or("other");
                *self.anomaly_alerts.entry(detector.to_owned()).or_default() += 1;
            }
            "security-alert" => self.failure_alerts += 1,
            "registry-submission" => self.registry_submissions += 1,
            "purge" | "purge-resource" | "erasure-request" | "hold-place" | "hold-release" => {
                *self.purges.entry(interaction.to_owned()).or_default() += 1
            }
            _ => {
                let kind = match interaction {
                    "create" | "update" | "patch" | "delete" => "write",
                    "search-type" | "search-system" | "history-type" => "search",
                    "read" | "vread" | "history-instance" | "operation" => "open",
                    _ => return,
                };
                if agent == "unauthenticated" {
                    return;
                }
                *self.accesses.entry(kind.to_owned()).or_default() += 1;
                let purpose = e["purposeOfEvent"][0]["coding"][0]["code"].as_str().unwrap_or("unstated");
                *self.purposes.entry(purpose.to_owned()).or_default() += 1;
                if kind == "write" && entities.iter().any(|r| r.starts_with("Consent/")) {
                    *self.consents.entry(interaction.to_owned()).or_default() += 1;
                }
            }
        }
    }
}

fn bars(map: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// The items the trail alone answers.
pub fn trail_items(t: &TrailTally) -> Vec<Item> {
    let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    vec![
        Item {
            id: "accesses",
            title: "Accesses to PHI by people",
            status: Status::Ok,
            value: json!(sum(&t.accesses)),
            breakdown: bars(&t.accesses),
            detail: format!("{} audit records in the period, every one hash-chained", t.records),
            source: "audit chains (CHAIN#*), AuditEvents recorded in the period, outcome 0, by subtype",
        },
        Item {
            id: "processing-purposes",
            title: "Processing by purpose of use",
            status: Status::Ok,
            value: json!(t.purposes.len()),
            breakdown: bars(&t.purposes),
            detail: "purposes of use (v3-ActReason) the period's accesses declared".into(),
            source: "audit chains, AuditEvent.purposeOfEvent of the period's accesses",
        },
        Item {
            id: "registry-disclosures",
            title: "Disclosures to the immunization registry",
            status: Status::Ok,
            value: json!(t.registry_submissions),
            breakdown: vec![],
            detail: "submissions (each also in the patient's accounting of disclosures)".into(),
            source: "audit chains, AuditEvent subtype registry-submission",
        },
        Item {
            id: "access-refusals",
            title: "Requests refused",
            status: Status::Ok,
            value: json!(sum(&t.refusals)),
            breakdown: bars(&t.refusals),
            detail: "denied or rejected requests (role, scope, consent, validation), by status".into(),
            source: "audit chains, AuditEvent outcome 4 or 8, by outcomeDesc",
        },
        Item {
            id: "failed-authentications",
            title: "Failed authentications",
            status: Status::Ok,
            value: json!(t.failed_authentications),
            breakdown: vec![("repeated-failure alerts".into(), t.failure_alerts)],
            detail: format!("{} SecurityAlerts for repeated failures or denials", t.failure_alerts),
            source: "audit chains, AuditEvent type 110114 with outcome other than 0; subtype security-alert",
        },
        Item {
            id: "anomaly-alerts",
            title: "Access-anomaly alerts",
            status: Status::Ok,
            value: json!(sum(&t.anomaly_alerts)),
            breakdown: bars(&t.anomaly_alerts),
            detail: "one per detector, user and day, each on the auditors' review list".into(),
            source: "GET /fhir/AuditEvent?agent=medrec-anomaly-detector (audit chains, by detector entity)",
        },
        Item {
            id: "consents",
            title: "Consent changes",
            status: Status::Ok,
            value: json!(sum(&t.consents)),
            breakdown: bars(&t.consents),
            detail: "Consent resources created, updated or deleted; every access is decided by them".into(),
            source: "audit chains, writes naming a Consent entity",
        },
        Item {
            id: "purges",
            title: "Retention: purges, erasure requests, holds",
            status: Status::Ok,
            value: json!(
                t.purges.get("purge").copied().unwrap_or(0) + t.purges.get("purge-resource").copied().unwrap_or(0)
            ),
            breakdown: bars(&t.purges),
            detail: "patients crypto-shredded and resources purged in the period, with requests and holds".into(),
            source:
                "audit chains, AuditEvent subtypes purge, purge-resource, erasure-request, hold-place, hold-release",
        },
    ]
}

impl Report {
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The JSON form, for GRC tools: the items and each view's sections.
    pub fn to_json(&self) -> Value {
        let views: Vec<Value> = VIEWS
            .iter()
            .map(|v| {
                json!({"framework": v.framework, "sections": v.sections.iter()
                    .map(|(title, ids)| json!({"title": title, "items": ids}))
                    .collect::<Vec<_>>()})
            })
            .collect();
        json!({"resourceType": "medrec-compliance-report", "since": self.since, "until": self.until,
            "generated": self.generated, "items": self.items, "views": views})
    }

    /// Printable HTML, no script: the items with bar charts (SVG), then
    /// each framework's view citing them.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>medrec compliance report</title><style>");
        out.push_str("body{font:14px system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}h2{border-bottom:1px solid #ccc;margin-top:2rem}");
        out.push_str(".item{border:1px solid #ddd;border-radius:4px;padding:.6rem 1rem;margin:.6rem 0;break-inside:avoid}.ok{border-left:6px solid #2a7}");
        out.push_str(".attention{border-left:6px solid #d33}.unknown{border-left:6px solid #999}.value{font-size:1.4rem;font-weight:600}");
        out.push_str(".source{color:#666;font-size:12px}table{border-collapse:collapse}td{padding:2px 8px;vertical-align:top}@media print{body{margin:0}}</style></head><body>");
        out.push_str(&format!(
            "<h1>medrec compliance report</h1><p>Evidence read from the running system at {}. Trail figures cover {} to {}.</p>",
            escape_html(&self.generated),
            escape_html(&self.since),
            escape_html(&self.until)
        ));
        let attention: Vec<&Item> = self.items.iter().filter(|i| i.status == Status::Attention).collect();
        out.push_str(&format!("<p><strong>{} items need attention</strong>", attention.len()));
        for i in &attention {
            out.push_str(&format!(" · <a href=\"#{}\">{}</a>", i.id, escape_html(i.title)));
        }
        out.push_str("</p><h2>Evidence</h2>");
        for i in &self.items {
            let status = match i.status {
                Status::Ok => "ok",
                Status::Attention => "attention",
                Status::Unknown => "unknown",
            };
            let value = i.value.as_str().map(str::to_owned).unwrap_or_else(|| i.value.to_string());
            out.push_str(&format!(
                "<div class=\"item {status}\" id=\"{}\"><div>{} <em>({status})</em></div><div class=\"value\">{}</div><div>{}</div>{}<div class=\"source\">Source: {}</div></div>",
                i.id,
                escape_html(i.title),
                escape_html(&value),
                escape_html(&i.detail),
                bar_chart(&i.breakdown),
                escape_html(i.source)
            ));
        }
        for v in &VIEWS {
            out.push_str(&format!("<h2>{}</h2><table>", escape_html(v.framework)));
            for (title, ids) in v.sections {
                let cited: Vec<String> = ids
                    .iter()
                    .filter_map(|id| self.item(id))
                    .map(|i| format!("<a href=\"#{}\">{}</a> ({:?})", i.id, escape_html(i.title), i.status))
                    .collect();
                out.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", escape_html(title), cited.join("<br>")));
            }
            out.push_str("</table>");
        }
        out.push_str("</body></html>\n");
        out
    }
}

/// Horizontal bars, one per label, scaled to the largest.
fn bar_chart(rows: &[(String, u64)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let height = rows.len() * 20;
    let mut svg = format!("<svg role=\"img\" width=\"480\" height=\"{height}\" viewBox=\"0 0 480 {height}\">");
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = i * 20;
        let w = (*n as f64 / max * 260.0).round();
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"170\" y=\"{}\" width=\"{w}\" height=\"14\" fill=\"#58a\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{n}</text>",
            y + 13,
            escape_html(label),
            y + 2,
            176.0 + w,
            y + 13
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Agent, AuditEntry, Outcome};

    fn entry(interaction: &'static str, subject: Option<&str>, status: u16) -> AuditEntry {
        AuditEntry {
            id: "a".into(),
            recorded: "2026-12-01T00:00:00.000Z".into(),
            interaction,
            outcome: Outcome::from_status(status),
            status,
            agent: Agent { subject: subject.map(str::to_owned), ..Agent::default() },
            purpose: "TREAT",
            break_glass: None,
            patient: None,
            entities: vec![],
            query_params: vec![],
            observer: "fn".into(),
            request_id: None,
        }
    }

    #[test]
    fn the_trail_is_tallied_by_what_each_record_is() {
        let mut t = TrailTally::default();
        let mut consent = entry("create", Some("reg"), 201);
        consent.entities = vec!["Consent/abc".into()];
        let mut anomaly = entry("security-alert", Some(DETECTOR_SUBJECT), 200);
        anomaly.entities = vec!["urn:medrec:anomaly:off-hours".into()];
        for e in [
            entry("read", Some("dr"), 200),
            entry("search-type", Some("dr"), 200),
            consent,
            entry("read", Some("dr"), 403),
            entry("authenticate", None, 401),
            entry("security-alert", Some("dr"), 200),
            anomaly,
            entry("purge", Some("ops"), 200),
        ] {
            t.add(&e.to_fhir());
        }
        assert_eq!(t.records, 8);
        assert_eq!(bars(&t.accesses), [("open".into(), 1), ("search".into(), 1), ("write".into(), 1)]);
        assert_eq!(t.purposes["TREAT"], 3);
        assert_eq!((t.failed_authentications, t.failure_alerts), (1, 1));
        assert_eq!(t.refusals["HTTP 403"], 1);
        assert_eq!(t.anomaly_alerts["off-hours"], 1);
        assert_eq!(t.consents["create"], 1);
        assert_eq!(t.purges["purge"], 1);
    }

    #[test]
    fn every_view_cites_items_the_report_has_and_the_html_escapes() {
        let mut items = trail_items(&TrailTally::default());
        for id in [
            "audit-verification",
            "checkpoint-freshness",
            "records-key",
            "break-glass",
            "dead-letters",
            "legal-holds",
            "mfa",
        ] {
            items.push(Item {
                id,
                title: "t",
                status: Status::Attention,
                value: json!("<b>"),
                breakdown: vec![("<x>".into(), 2)],
                detail: String::new(),
                source: "s",
            });
        }
        let report = Report { since: "a".into(), until: "b".into(), generated: "c".into(), items };
        for v in &VIEWS {
            for (_, ids) in v.sections {
                for id in *ids {
                    assert!(report.item(id).is_some(), "{id} is cited by {} but not gathered", v.framework);
                }
            }
        }
        let html = report.to_html();
        assert!(!html.contains("<b>") && !html.contains("<x>") && html.contains("&lt;x&gt;"));
        assert!(html.contains("<svg") && !html.contains("<script"));
        assert!(html.contains("7 items need attention"));
        assert_eq!(report.to_json()["views"].as_array().unwrap().len(), 3);
    }
}
