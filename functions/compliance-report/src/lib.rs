//! The compliance report Lambda, on a monthly EventBridge schedule: reads
//! the evidence from the running system (`medrec_edge::evidence`), for the
//! previous calendar month, and archives it as HTML and JSON under Object
//! Lock (`compliance/<YYYY-MM>/`), each run under its own name so a retried
//! run never overwrites one. An invocation may name its own period
//! (`{"since": instant, "until": instant}`); `medrec compliance report
//! --live` builds the same report against the local stack.

use lambda_http::LambdaEvent;
use medrec_edge::aws::checkpoints::Checkpoints;
use medrec_edge::aws::kms::names_key;
use medrec_edge::aws::mirror::AuditMirror;
use medrec_edge::aws::rekey::key_status;
use medrec_edge::config::{ConfigError, Settings};
use medrec_edge::crypto::DataKey;
use medrec_edge::evidence::{trail_items, Item, Report, Status, TrailTally};
use medrec_edge::ports::{AuditArchive, AuditLog, Series};
use medrec_edge::runtime::{BootError, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;

/// How long a break-glass access may wait for its review before the report
/// flags it.
const REVIEW_DAYS: i64 = 7;
/// How old the newest checkpoint may be (they are signed every five minutes).
const CHECKPOINT_MINUTES: i64 = 15;

pub struct App {
    /// The function's name, for its metrics.
    name: String,
    rt: Runtime,
    checkpoints: Checkpoints,
    mirror: AuditMirror,
    kms: aws_sdk_kms::Client,
    sqs: aws_sdk_sqs::Client,
    chain_key: DataKey,
    /// (name, URL) of every dead-letter and failure queue.
    dead_letters: Vec<(String, String)>,
}

/// `Name=url,Name=url`: the queues the template names.
fn queues(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    value
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, u)) if !n.trim().is_empty() && u.starts_with("http") => {
                Ok((n.trim().to_owned(), u.trim().to_owned()))
            }
            _ => Err(ConfigError::Invalid("MEDREC_DEAD_LETTER_QUEUES", "expected Name=https://...,...".into())),
        })
        .collect()
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let req = |k: &'static str| settings.get(k).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(k));
    let dead_letters = queues(&req("MEDREC_DEAD_LETTER_QUEUES")?)?;
    let rt = Runtime::from_config(config.clone()).await?;
    let local = config.deployment == medrec_edge::config::Deployment::Local;
    let ddb = aws_sdk_dynamodb::Client::new(&rt.sdk);
    let kms = aws_sdk_kms::Client::new(&rt.sdk);
    let records_keys = medrec_edge::runtime::records_keys(&config, &rt.sdk);
    let chain_key = medrec_edge::aws::service_keys(&ddb, &records_keys, &config.records_table).await?.audit_chain;
    let archive_bucket = req("MEDREC_AUDIT_ARCHIVE_BUCKET")?;
    let checkpoints = Checkpoints {
        ddb,
        kms: kms.clone(),
        s3: medrec_edge::aws::s3_client(&rt.sdk, local),
        audit_table: config.audit_table.clone(),
        archive_bucket: archive_bucket.clone(),
        signing_key_id: req("MEDREC_AUDIT_SIGNING_KEY_ID")?,
        shards: config.audit_shards,
    };
    let mirror = AuditMirror { s3: medrec_edge::aws::s3_client(&rt.sdk, local), bucket: archive_bucket };
    let sqs = aws_sdk_sqs::Client::new(&rt.sdk);
    Ok(App { name: config.function_name.clone(), rt, checkpoints, mirror, kms, sqs, chain_key, dead_letters })
}

/// The previous calendar month, for the scheduled run.
fn previous_month(now: time::OffsetDateTime) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let first = now.replace_day(1).expect("day 1").replace_time(time::Time::MIDNIGHT);
    let before = first - time::Duration::days(1);
    (before.replace_day(1).expect("day 1"), first - time::Duration::milliseconds(1))
}

fn instant(t: time::OffsetDateTime) -> String {
    medrec_edge::fhir::instant(t)
}

fn parse(value: &str) -> Option<time::OffsetDateTime> {
    medrec_edge::fhir::primitives::datetime_bounds(value).map(|(t, _)| t)
}

impl App {
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let name = self.name.clone();
        medrec_edge::emf::invocation(&name, self.run(event), |r| r.is_err()).await
    }

    async fn run(self: Arc<Self>, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
        let (since, until) = medrec_edge::scheduled::requested_window(&event.payload)?
            .unwrap_or_else(|| previous_month(time::OffsetDateTime::now_utc()));
        let report = self.report(since, until).await?;
        let prefix = format!("compliance/{:04}-{:02}", since.year(), u8::from(since.month()));
        let stamp = report.generated.replace([':', '.'], "");
        let json_key = format!("{prefix}/report-{stamp}.json");
        self.checkpoints.archive(&json_key, report.to_json().to_string().into_bytes(), "application/json").await?;
        self.checkpoints
            .archive(
                &format!("{prefix}/report-{stamp}.html"),
                report.to_html().into_bytes(),
                "text/html; charset=utf-8",
            )
            .await?;
        let attention: Vec<&str> =
            report.items.iter().filter(|i| i.status == Status::Attention).map(|i| i.id).collect();
        tracing::info!(items = report.items.len(), attention = attention.len(), "compliance report archived");
        Ok(json!({"archived": json_key, "attention": attention, "report": report.to_json()}))
    }

    /// Every figure of the report, read now, the trail's for the period.
    pub async fn report(&self, since: time::OffsetDateTime, until: time::OffsetDateTime) -> Result<Report, String> {
        if until <= since {
            return Err("the period must end after it starts".into());
        }
        let err = |e: medrec_edge::error::PortError| e.to_string();
        let now = time::OffsetDateTime::now_utc();
        let mut tally = TrailTally::default();
        for e in self.rt.services.store.trail(&instant(since), &instant(until)).await.map_err(err)? {
            tally.add(&e);
        }
        let mut items =
            vec![self.verification().await?, self.checkpoint_freshness(now).await?, self.records_key(now).await];
        items.extend(trail_items(&tally));
        items.push(self.break_glass(since, until, now).await.map_err(err)?);
        items.push(self.dead_letters().await);
        items.push(self.legal_holds().await.map_err(err)?);
        items.push(Item {
            id: "mfa",
            title: "Multi-factor authentication",
            status: Status::Unknown,
            value: json!("not read"),
            breakdown: vec![],
            detail: "the report does not read the user pool yet; template.yaml declares MfaConfiguration ON (verified by its security test)".into(),
            source: "cognito-idp DescribeUserPool (not called)",
        });
        Ok(Report { since: instant(since), until: instant(until), generated: instant(now), items })
    }

    async fn verification(&self) -> Result<Item, String> {
        let v = medrec_edge::aws::verification::verify_trail(
            &self.checkpoints.ddb,
            &self.checkpoints.audit_table,
            &self.chain_key,
            Some(&self.checkpoints),
            Some(&self.mirror),
            |_, _| {},
        )
        .await
        .map_err(|e| e.to_string())?;
        let mirror = v.mirror.as_ref().map_or("no mirror".to_owned(), |m| {
            format!("{} records agree with the archive's mirror, {} not mirrored yet", m.matched, m.unmirrored)
        });
        Ok(Item {
            id: "audit-verification",
            title: "Audit trail verified",
            status: if v.tampered() { Status::Attention } else { Status::Ok },
            value: json!(if v.tampered() { "TAMPERED" } else { "intact" }),
            breakdown: vec![],
            detail: format!(
                "{} records in {} chains recomputed in {:.1} s, {} broken; {} signed checkpoints agree{}; {mirror}",
                v.records,
                v.shards,
                v.seconds,
                v.breaks.len(),
                v.checkpoints,
                if v.finding.is_some() { ", one contradicts" } else { "" }
            ),
            source: "audit chains HMAC-recomputed with the chain key; CHECKPOINT series verified with the signing key's public key; mirror/ objects in the archive bucket",
        })
    }

    async fn checkpoint_freshness(&self, now: time::OffsetDateTime) -> Result<Item, String> {
        let last = self.checkpoints.last(Series::Checkpoint).await.map_err(|e| e.to_string())?;
        let at = last
            .as_ref()
            .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
            .and_then(|b| b["at"].as_str().and_then(parse));
        let (status, value, detail) = match (last, at) {
            (Some((n, _)), Some(at)) => {
                let minutes = (now - at).whole_minutes();
                let status = if minutes > CHECKPOINT_MINUTES { Status::Attention } else { Status::Ok };
                (
                    status,
                    json!(minutes),
                    format!(
                        "checkpoint {n}, signed {} minutes ago (every 5 minutes; flagged beyond {CHECKPOINT_MINUTES})",
                        minutes
                    ),
                )
            }
            _ => (Status::Attention, json!("none"), "no signed checkpoint".to_owned()),
        };
        Ok(Item {
            id: "checkpoint-freshness",
            title: "Minutes since the latest signed checkpoint",
            status,
            value,
            breakdown: vec![],
            detail,
            source: "audit table, partition CHECKPOINT, newest item",
        })
    }

    async fn records_key(&self, now: time::OffsetDateTime) -> Item {
        let key_id = &self.rt.config.records_key_id;
        let rotation = self.kms.get_key_rotation_status().key_id(key_id).send().await;
        let described = self.kms.describe_key().key_id(key_id).send().await;
        let created = described.ok().and_then(|d| d.key_metadata()?.creation_date().map(|c| c.secs()));
        let age = created.map(|c| (now.unix_timestamp() - c) / 86_400);
        let (mut status, value) = match rotation.map(|r| r.key_rotation_enabled()) {
            Ok(true) => (Status::Ok, "rotation on"),
            Ok(false) => (Status::Attention, "rotation off"),
            Err(_) => (Status::Unknown, "not read"),
        };
        let mut detail = match age {
            Some(days) => format!("created {days} days ago; KMS rotates its key material yearly when on"),
            None => "creation date not read".into(),
        };
        let mut breakdown = vec![];
        match key_status(&self.checkpoints.ddb, &self.rt.config.records_table, now).await {
            Ok(keys) => {
                // A re-wrap that recorded another CMK than the current one
                // has not finished (or went the wrong way).
                let elsewhere: u64 = keys
                    .by_cmk
                    .iter()
                    .filter(|(cmk, _)| *cmk != "as created" && !names_key(key_id, cmk))
                    .map(|(_, n)| n)
                    .sum();
                if elsewhere > 0 {
                    status = Status::Attention;
                }
                detail.push_str(&format!(
                    "; {} patient data keys, the oldest made {}, {elsewhere} under another CMK than this one",
                    keys.data_keys,
                    keys.oldest.as_deref().unwrap_or("-")
                ));
                breakdown = keys.by_age.iter().map(|(age, n)| (format!("data keys {age}"), *n)).collect();
            }
            Err(_) => status = Status::Unknown,
        }
        Item {
            id: "records-key",
            title: "Records key (KMS CMK wrapping every patient's data key) and the data keys",
            status,
            value: json!(value),
            breakdown,
            detail,
            source: "kms GetKeyRotationStatus and DescribeKey on the records key; the records table's wrapped keys (pk, sk, cmk, created only)",
        }
    }

    async fn break_glass(
        &self,
        since: time::OffsetDateTime,
        until: time::OffsetDateTime,
        now: time::OffsetDateTime,
    ) -> Result<Item, medrec_edge::error::PortError> {
        let (from, to) = (instant(since), instant(until));
        let store = &self.rt.services.store;
        let mut breakdown = std::collections::BTreeMap::new();
        let (mut uses, mut overdue) = (0, 0);
        for reviewed in [false, true] {
            let mut after: Option<String> = None;
            loop {
                let page = store.break_glass_accesses(reviewed, after.as_deref(), 100).await?;
                for a in &page {
                    if reviewed && (a.recorded < from || a.recorded > to) {
                        continue;
                    }
                    let outcome = a.review.as_ref().map_or("pending review", |r| r.outcome.as_str());
                    *breakdown.entry(outcome.to_owned()).or_insert(0u64) += 1;
                    uses += u64::from(a.recorded >= from && a.recorded <= to);
                    let waited = parse(&a.recorded).map(|t| (now - t).whole_days()).unwrap_or(0);
                    overdue += u64::from(a.review.is_none() && waited > REVIEW_DAYS);
                }
                match page.last() {
                    Some(last) if page.len() == 100 => after = Some(last.position()),
                    _ => break,
                }
            }
        }
        Ok(Item {
            id: "break-glass",
            title: "Break-glass accesses and their review",
            status: if overdue > 0 { Status::Attention } else { Status::Ok },
            value: json!(uses),
            breakdown: breakdown.into_iter().collect(),
            detail: format!("{uses} in the period; {overdue} awaiting review for more than {REVIEW_DAYS} days (all pending ones are listed, whenever made)"),
            source: "GET /fhir/AuditEvent?subtype=break-glass&_review=pending|reviewed (records table, break-glass queue)",
        })
    }

    async fn dead_letters(&self) -> Item {
        let mut breakdown = vec![];
        let mut unknown = false;
        for (name, url) in &self.dead_letters {
            let depth = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.attributes()?
                        .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)?
                        .parse()
                        .ok()
                });
            unknown |= depth.is_none();
            breakdown.push((name.clone(), depth.unwrap_or(0)));
        }
        let total: u64 = breakdown.iter().map(|(_, n)| n).sum();
        Item {
            id: "dead-letters",
            title: "Messages in dead-letter and failure queues",
            status: match (total, unknown) {
                (0, false) => Status::Ok,
                (0, true) => Status::Unknown,
                _ => Status::Attention,
            },
            value: json!(total),
            breakdown,
            detail: "events a consumer could not process; `medrec events dlq redrive` moves them back (consumers are idempotent)".into(),
            source: "sqs GetQueueAttributes ApproximateNumberOfMessages of each dead-letter and failure queue",
        }
    }

    async fn legal_holds(&self) -> Result<Item, medrec_edge::error::PortError> {
        let holds =
            medrec_edge::aws::purge::holds_in_force(&self.checkpoints.ddb, &self.rt.config.records_table).await?;
        let mut reasons = std::collections::BTreeMap::new();
        for h in &holds {
            *reasons.entry(h.reason.clone()).or_insert(0u64) += 1;
        }
        Ok(Item {
            id: "legal-holds",
            title: "Legal holds in force",
            status: Status::Ok,
            value: json!(holds.len()),
            breakdown: reasons.into_iter().collect(),
            detail: "patients and resources the purge may not touch, by reason code".into(),
            source: "records table, partition HOLD",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduled_period_is_the_previous_month_and_queues_are_checked() {
        let now = time::macros::datetime!(2026-03-01 04:00 UTC);
        let (since, until) = previous_month(now);
        assert_eq!(
            (instant(since), instant(until)),
            ("2026-02-01T00:00:00.000Z".into(), "2026-02-28T23:59:59.999Z".into())
        );
        let (since, _) = previous_month(time::macros::datetime!(2026-01-15 00:00 UTC));
        assert_eq!(instant(since), "2025-12-01T00:00:00.000Z");
        assert_eq!(queues("A=https://q/a,B=https://q/b").unwrap().len(), 2);
        assert!(queues("A=ftp://x").is_err() && queues("=https://q").is_err());
    }
}
