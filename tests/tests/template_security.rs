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
