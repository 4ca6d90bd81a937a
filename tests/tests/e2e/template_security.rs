//! What `template.yaml` promises for data at rest and in transit, checked
//! on every resource so a new one cannot forget it: every bucket refuses
//! plain HTTP and public access and is KMS-encrypted, every table and queue
//! and log group is encrypted, every function logs to a KMS-encrypted group
//! kept six years or more, and no IAM statement grants `*` actions.

use medrec_infra::template::{Resource, Template};
use serde_yaml::Value;

fn template() -> Template {
    Template::load(&medrec_infra::emulator::repo_root().join("template.yaml")).unwrap()
}

fn of<'a>(t: &'a Template, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
    t.resources.iter().filter(move |r| r.kind == kind)
}

/// The logical id a `!Ref X` / `!GetAtt X.Arn` / `!Sub "${X.Arn}/*"` names.
fn names(v: &Value) -> Vec<String> {
    match v {
        Value::Tagged(t) => match &t.value {
            Value::String(s) => {
                vec![s.trim_start_matches("${").split(['.', '}']).next().unwrap_or_default().to_owned()]
            }
            other => names(other),
        },
        Value::Sequence(s) => s.iter().flat_map(names).collect(),
        _ => vec![],
    }
}

#[test]
fn every_bucket_refuses_plain_http_and_public_access_and_is_encrypted() {
    let t = template();
    let buckets: Vec<&Resource> = of(&t, "AWS::S3::Bucket").collect();
    assert!(buckets.len() >= 3);
    for b in buckets {
        let p = &b.properties;
        let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"];
        assert_eq!(sse["SSEAlgorithm"].as_str(), Some("aws:kms"), "{}", b.logical_id);
        let block = &p["PublicAccessBlockConfiguration"];
        for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
            assert_eq!(block[k].as_bool(), Some(true), "{} {k}", b.logical_id);
        }
        let denies_plain_http = of(&t, "AWS::S3::BucketPolicy").any(|policy| {
            names(&policy.properties["Bucket"]).contains(&b.logical_id)
                && policy.properties["PolicyDocument"]["Statement"].as_sequence().into_iter().flatten().any(|s| {
                    s["Effect"].as_str() == Some("Deny")
                        && s["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
                })
        });
        assert!(denies_plain_http, "{} accepts plain HTTP", b.logical_id);
    }
}

#[test]
fn every_table_queue_secret_and_log_group_is_encrypted_at_rest() {
    let t = template();
    for table in of(&t, "AWS::DynamoDB::Table") {
        let sse = &table.properties["SSESpecification"];
        assert_eq!(
            (sse["SSEEnabled"].as_bool(), sse["SSEType"].as_str()),
            (Some(true), Some("KMS")),
            "{}",
            table.logical_id
        );
    }
    for q in of(&t, "AWS::SQS::Queue") {
        let p = &q.properties;
        assert!(
            p["SqsManagedSseEnabled"].as_bool() == Some(true) || !p["KmsMasterKeyId"].is_null(),
            "{}",
            q.logical_id
        );
    }
    for s in of(&t, "AWS::SecretsManager::Secret") {
        assert!(!s.properties["KmsKeyId"].is_null(), "{}", s.logical_id);
    }
    for g in of(&t, "AWS::Logs::LogGroup") {
        assert!(!g.properties["KmsKeyId"].is_null(), "{}", g.logical_id);
        assert!(g.properties["RetentionInDays"].as_u64().unwrap_or(0) >= 2190, "{}: six years", g.logical_id);
    }
    for f in of(&t, "AWS::Serverless::Function") {
        let group = &f.properties["LoggingConfig"]["LogGroup"];
        let named = names(group);
        assert!(
            named.len() == 1 && of(&t, "AWS::Logs::LogGroup").any(|g| g.logical_id == named[0]),
            "{}",
            f.logical_id
        );
    }
}

#[test]
fn no_function_is_granted_every_action() {
    let t = template();
    for f in of(&t, "AWS::Serverless::Function") {
        for policy in f.properties["Policies"].as_sequence().into_iter().flatten() {
            for s in policy["Statement"].as_sequence().into_iter().flatten() {
                let actions: Vec<&str> = match &s["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Sequence(l) => l.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                for a in actions {
                    assert!(!a.ends_with(":*") && a != "*", "{}: {a}", f.logical_id);
                }
                assert_ne!(s["Resource"].as_str(), Some("*"), "{}: Resource *", f.logical_id);
            }
        }
    }
}

/// Every IAM statement of every function, with its function.
fn statements(t: &Template) -> Vec<(&str, &Value)> {
    of(t, "AWS::Serverless::Function")
        .flat_map(|f| {
            f.properties["Policies"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|p| p["Statement"].as_sequence().into_iter().flatten())
                .map(move |s| (f.logical_id.as_str(), s))
        })
        .collect()
}

fn actions(s: &Value) -> Vec<&str> {
    match &s["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Sequence(l) => l.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn leading_keys(s: &Value) -> Vec<&str> {
    let c = &s["Condition"];
    [&c["ForAllValues:StringLike"]["dynamodb:LeadingKeys"], &c["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]]
        .into_iter()
        .flat_map(|v| v.as_sequence().into_iter().flatten().filter_map(Value::as_str))
        .collect()
}

/// Audit records are appended by the API functions (with their writes, in
/// one transaction) and by nobody rewritten unseen: every right to write
/// the audit table is bounded by key, only the checkpoint function writes
/// its own checkpoints and exports and deletes nothing but its pending
/// marker, no function may update or delete a chain record or head, and one
/// function alone mirrors the table's stream into the locked archive.
#[test]
fn the_audit_trail_is_append_only_and_mirrored_by_one_role() {
    let t = template();
    let audit = of(&t, "AWS::DynamoDB::Table").find(|r| r.logical_id == "AuditTable").unwrap();
    assert_eq!(audit.properties["StreamSpecification"]["StreamViewType"].as_str(), Some("NEW_AND_OLD_IMAGES"));
    let mut appenders = 0;
    for (function, s) in statements(&t) {
        if !names(&s["Resource"]).contains(&"AuditTable".to_owned()) || s["Effect"].as_str() != Some("Allow") {
            continue;
        }
        let writes: Vec<&str> = actions(s)
            .into_iter()
            .filter(|a| {
                matches!(
                    *a,
                    "dynamodb:PutItem" | "dynamodb:UpdateItem" | "dynamodb:DeleteItem" | "dynamodb:BatchWriteItem"
                )
            })
            .collect();
        if writes.is_empty() {
            continue;
        }
        let keys = leading_keys(s);
        assert!(!keys.is_empty(), "{function}: {writes:?} on the audit table without a key condition");
        let chain = keys.iter().any(|k| k.starts_with("HEAD#") || k.starts_with("CHAIN#"));
        if chain {
            assert_eq!(writes, ["dynamodb:PutItem"], "{function}: chain records and heads are only ever put");
            assert!(keys.iter().all(|k| ["HEAD#*", "CHAIN#*"].contains(k)), "{function}: {keys:?}");
            assert_ne!(function, "AuditCheckpointFunction", "the checkpoint function writes no chain");
            appenders += 1;
        }
        if writes.contains(&"dynamodb:DeleteItem") {
            assert_eq!((function, keys.as_slice()), ("AuditCheckpointFunction", ["EXPORT#pending"].as_slice()));
        }
    }
    assert!(appenders >= 10, "{appenders} functions append audit records");
    let mirror_writers: Vec<&str> = statements(&t)
        .into_iter()
        .filter(|(_, s)| actions(s).contains(&"s3:PutObject"))
        .filter(|(_, s)| match &s["Resource"] {
            Value::Tagged(tag) => {
                tag.value.as_str().is_some_and(|r| r.contains("AuditArchiveBucket") && r.contains("/mirror/"))
            }
            _ => false,
        })
        .map(|(f, _)| f)
        .collect();
    assert_eq!(mirror_writers, ["AuditMirrorFunction"]);
    let archive_writers: Vec<&str> = statements(&t)
        .into_iter()
        .filter(|(_, s)| actions(s).iter().any(|a| a.starts_with("s3:Put") || a.starts_with("s3:Delete")))
        .filter(|(_, s)| names(&s["Resource"]).contains(&"AuditArchiveBucket".to_owned()))
        .map(|(f, _)| f)
        .collect();
    assert!(
        archive_writers
            .iter()
            .all(|f| ["AuditMirrorFunction", "AuditCheckpointFunction", "ComplianceReportFunction"].contains(f)),
        "{archive_writers:?}"
    );
    // The compliance report writes its own prefix, nothing of the trail's.
    for (f, s) in statements(&t) {
        let puts = actions(s).iter().any(|a| a.starts_with("s3:Put") || a.starts_with("s3:Delete"));
        if f == "ComplianceReportFunction" && puts {
            let resource = match &s["Resource"] {
                Value::Tagged(tag) => tag.value.as_str().unwrap_or_default().to_owned(),
                other => format!("{other:?}"),
            };
            assert!(resource.ends_with("/compliance/*"), "{resource}");
        }
    }
    let schedule =
        &of(&t, "AWS::Serverless::Function").find(|f| f.logical_id == "AuditCheckpointFunction").unwrap().properties
            ["Events"];
    let every: Vec<&str> =
        schedule.as_mapping().unwrap().values().filter_map(|e| e["Properties"]["Schedule"].as_str()).collect();
    assert_eq!(every, ["rate(5 minutes)"], "checkpoints every few minutes");
}

/// The account administers the keys; only this stack's roles (and the
/// operators') use them, and the storage services on the account's behalf.
#[test]
fn key_policies_administer_and_bound_use() {
    let t = template();
    let keys: Vec<&Resource> = of(&t, "AWS::KMS::Key").collect();
    assert!(keys.len() >= 3);
    for key in keys {
        for s in key.properties["KeyPolicy"]["Statement"].as_sequence().unwrap() {
            let sid = s["Sid"].as_str().unwrap_or_default();
            let acts = actions(s);
            assert!(!acts.iter().any(|a| *a == "kms:*" || *a == "*"), "{}: {sid} grants everything", key.logical_id);
            let uses = acts.iter().any(|a| {
                [
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:Sign",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                ]
                .contains(a)
            });
            let account = s["Principal"]["AWS"].as_str().is_some()
                || matches!(&s["Principal"]["AWS"], Value::Tagged(tag) if tag.value.as_str().is_some_and(|v| v.ends_with(":root")));
            if uses && account {
                let c = &s["Condition"];
                let bounded =
                    !c["ArnLike"]["aws:PrincipalArn"].is_null() || !c["StringEquals"]["kms:ViaService"].is_null();
                assert!(bounded, "{}: {sid} lets any principal of the account use the key", key.logical_id);
            }
        }
    }
}

/// Who a user is (`fhirUser`, which consent provisions name) comes from an
/// attribute only administrators set, through the token trigger.
#[test]
fn users_cannot_name_themselves() {
    let t = template();
    let client = of(&t, "AWS::Cognito::UserPoolClient").next().unwrap();
    let writable: Vec<&str> = client.properties["WriteAttributes"]
        .as_sequence()
        .expect("writable attributes listed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!writable.iter().any(|a| a.starts_with("custom:")), "{writable:?}");
    let pool = of(&t, "AWS::Cognito::UserPool").next().unwrap();
    let trigger = &pool.properties["LambdaConfig"]["PreTokenGenerationConfig"];
    assert_eq!(trigger["LambdaVersion"].as_str(), Some("V2_0"), "claims in access tokens need version 2");
    assert_eq!(names(&trigger["LambdaArn"]), ["TokenClaimsFunction"]);
}

/// Every alarm notifies the alarm topic, which is KMS-encrypted; the
/// dashboard is JSON once CloudFormation substitutes it, naming only
/// resources of the stack, and shows every alarm.
#[test]
fn alarms_notify_the_topic_and_the_dashboard_shows_them() {
    let t = template();
    let alarms: Vec<&Resource> = of(&t, "AWS::CloudWatch::Alarm").collect();
    assert!(alarms.len() >= 12, "{}", alarms.len());
    for alarm in &alarms {
        assert_eq!(names(&alarm.properties["AlarmActions"]), ["AlarmTopic"], "{}", alarm.logical_id);
    }
    let topic = of(&t, "AWS::SNS::Topic").find(|r| r.logical_id == "AlarmTopic").expect("the alarm topic");
    assert_eq!(names(&topic.properties["KmsMasterKeyId"]), ["AlarmKey"]);
    let dashboard = of(&t, "AWS::CloudWatch::Dashboard").next().expect("a dashboard");
    let Value::Tagged(sub) = &dashboard.properties["DashboardBody"] else { panic!("DashboardBody is a !Sub") };
    let body = sub.value.as_str().unwrap();
    let logical_ids: Vec<&str> = t.resources.iter().map(|r| r.logical_id.as_str()).collect();
    let mut substituted = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        let end = start + rest[start..].find('}').unwrap();
        let name = &rest[start + 2..end];
        let id = name.split('.').next().unwrap();
        assert!(id.starts_with("AWS::") || logical_ids.contains(&id), "the dashboard names {name}");
        substituted.push_str(&rest[..start]);
        substituted.push('x');
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&substituted).expect("the dashboard body is JSON");
    let widgets = json["widgets"].as_array().unwrap();
    let shown =
        widgets.iter().find(|w| w["type"] == "alarm").unwrap()["properties"]["alarms"].as_array().unwrap().len();
    assert_eq!(shown, alarms.len(), "every alarm on the dashboard");
}
