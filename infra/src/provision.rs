//! Creates the template's DynamoDB tables, KMS keys and aliases, S3 buckets,
//! SQS queues and EventBridge buses and rules on the emulator, with a name
//! prefix so that parallel test runs never share a resource. Resources are
//! created in dependency order (repeated passes until every reference resolves).
//! Types the emulator does not need (IAM, Cognito, API, Lambda, Logs,
//! policies) are skipped: the local stack plays those parts itself.

use crate::template::{Resource, Template};
use aws_sdk_dynamodb::types as ddb;
use serde_yaml::Value;
use std::collections::{BTreeMap, HashMap};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}: {1}")]
    Aws(String, String),
    #[error("cannot resolve references of {0}")]
    Unresolved(String),
    #[error("{0}: unsupported property value {1}")]
    Property(String, &'static str),
}

/// What a logical id resolved to: `!Ref` value and `!GetAtt` attributes.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    pub reference: String,
    pub attributes: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub prefix: String,
    pub resources: HashMap<String, Physical>,
    pub parameters: BTreeMap<String, String>,
}

impl Provisioned {
    pub fn reference(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id).map(|p| p.reference.as_str())
    }

    pub fn resolve_attribute(&self, logical_id: &str, attribute: &str) -> Option<String> {
        self.resources.get(logical_id)?.attributes.get(attribute).cloned()
    }

    /// Resolves a template value (`!Ref`, `!GetAtt`, `!Sub` or a scalar) to a string.
    pub fn resolve(&self, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Tagged(t) => {
                let inner = t.value.as_str();
                match t.tag.to_string().as_str() {
                    "!Ref" => self.ref_value(inner?),
                    "!GetAtt" => {
                        let (id, attr) = inner?.split_once('.')?;
                        self.resources.get(id)?.attributes.get(attr).cloned()
                    }
                    "!Sub" => self.substitute(inner?),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn ref_value(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(REGION.into()),
            "AWS::AccountId" => Some(ACCOUNT.into()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::StackName" => Some(self.prefix.clone()),
            _ => self.parameters.get(name).cloned().or_else(|| self.reference(name).map(str::to_owned)),
        }
    }

    fn substitute(&self, s: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            let name = &rest[start + 2..end];
            let value = match name.split_once('.') {
                Some((id, attr)) => self.resources.get(id)?.attributes.get(attr).cloned()?,
                None => self.ref_value(name)?,
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

fn aws_err(what: &str, e: impl std::fmt::Debug) -> ProvisionError {
    let text = format!("{e:?}");
    ProvisionError::Aws(what.to_owned(), text.chars().take(300).collect())
}

pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
            s3: medrec_edge::aws::s3_client(sdk, true),
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

const SUPPORTED: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::KMS::Key",
    "AWS::KMS::Alias",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::Events::EventBus",
    "AWS::Events::Rule",
    "AWS::SecretsManager::Secret",
];

/// Provisions every supported resource of `template` under `prefix`.
pub async fn provision(clients: &Clients, template: &Template, prefix: &str) -> Result<Provisioned, ProvisionError> {
    let mut out = Provisioned {
        prefix: prefix.to_owned(),
        parameters: template.parameter_defaults.clone(),
        ..Default::default()
    };
    let mut pending: Vec<&Resource> =
        template.resources.iter().filter(|r| SUPPORTED.contains(&r.kind.as_str())).collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut still = vec![];
        for r in pending {
            if !references_resolve(&out, &r.properties) {
                still.push(r);
                continue;
            }
            let physical = create(clients, &out, r, prefix).await?;
            out.resources.insert(r.logical_id.clone(), physical);
        }
        if still.len() == before {
            return Err(ProvisionError::Unresolved(
                still.iter().map(|r| r.logical_id.as_str()).collect::<Vec<_>>().join(", "),
            ));
        }
        pending = still;
    }
    Ok(out)
}

/// True when every `!Ref`/`!GetAtt`/`!Sub` inside `v` that names a
/// provisionable resource already resolves.
fn references_resolve(p: &Provisioned, v: &Value) -> bool {
    match v {
        Value::Tagged(_) => p.resolve(v).is_some(),
        Value::Mapping(m) => m.values().all(|x| references_resolve(p, x)),
        Value::Sequence(s) => s.iter().all(|x| references_resolve(p, x)),
        _ => true,
    }
}

fn prop<'a>(r: &'a Resource, name: &str) -> Option<&'a Value> {
    r.properties.get(name)
}

fn prop_str(p: &Provisioned, r: &Resource, name: &str) -> Option<String> {
    prop(r, name).and_then(|v| p.resolve(v))
}

fn name_for(prefix: &str, r: &Resource) -> String {
    format!("{prefix}-{}", r.logical_id)
}

async fn create(c: &Clients, p: &Provisioned, r: &Resource, prefix: &str) -> Result<Physical, ProvisionError> {
    match r.kind.as_str() {
        "AWS::DynamoDB::Table" => create_table(c, p, r, prefix).await,
        "AWS::KMS::Key" => {
            let mut req = c.kms.create_key().description(prop_str(p, r, "Description").unwrap_or_default());
            if let Some(spec) = prop_str(p, r, "KeySpec") {
                req = req.key_spec(spec.as_str().into());
            }
            if let Some(usage) = prop_str(p, r, "KeyUsage") {
                req = req.key_usage(usage.as_str().into());
            }
            let meta = req
                .send()
                .await
                .map_err(|e| aws_err(&r.logical_id, e))?
                .key_metadata
                .ok_or_else(|| aws_err(&r.logical_id, "no metadata"))?;
            if prop_str(p, r, "EnableKeyRotation").as_deref() == Some("true") {
                c.kms.enable_key_rotation().key_id(&meta.key_id).send().await.map_err(|e| aws_err(&r.logical_id, e))?;
            }
            let arn = meta.arn.clone().unwrap_or_default();
            Ok(Physical {
                reference: meta.key_id,
                attributes: HashMap::from([("Arn".into(), arn), ("KeyId".into(), String::new())]),
            })
        }
        "AWS::KMS::Alias" => {
            let alias =
                prop_str(p, r, "AliasName").ok_or(ProvisionError::Property(r.logical_id.clone(), "AliasName"))?;
            let alias = alias.replacen("alias/", &format!("alias/{prefix}-"), 1);
            let target =
                prop_str(p, r, "TargetKeyId").ok_or(ProvisionError::Property(r.logical_id.clone(), "TargetKeyId"))?;
            c.kms
                .create_alias()
                .alias_name(&alias)
                .target_key_id(target)
                .send()
                .await
                .map_err(|e| aws_err(&r.logical_id, e))?;
            Ok(Physical { reference: alias, attributes: HashMap::new() })
        }
        "AWS::S3::Bucket" => {
            let name = name_for(prefix, r).to_ascii_lowercase();
            let lock = prop_str(p, r, "ObjectLockEnabled").as_deref() == Some("true");
            c.s3.create_bucket()
                .bucket(&name)
                .object_lock_enabled_for_bucket(lock)
                .send()
                .await
                .map_err(|e| aws_err(&r.logical_id, e))?;
            if prop(r, "VersioningConfiguration").and_then(|v| v.get("Status")).and_then(Value::as_str)
                == Some("Enabled")
            {
                let cfg = aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build();
                c.s3.put_bucket_versioning()
                    .bucket(&name)
                    .versioning_configuration(cfg)
                    .send()
                    .await
                    .map_err(|e| aws_err(&r.logical_id, e))?;
            }
            if let Some(retention) =
                prop(r, "ObjectLockConfiguration").and_then(|v| v.get("Rule")).and_then(|v| v.get("DefaultRetention"))
            {
                use aws_sdk_s3::types::{
                    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
                    ObjectLockRule,
                };
                let days = retention.get("Days").and_then(|d| p.resolve(d)).and_then(|d| d.parse().ok()).unwrap_or(1);
                let mode = retention.get("Mode").and_then(Value::as_str).unwrap_or("COMPLIANCE");
                let cfg = ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(ObjectLockRetentionMode::from(mode))
                                    .days(days)
                                    .build(),
                            )
                            .build(),
                    )
                    .build();
                c.s3.put_object_lock_configuration()
                    .bucket(&name)
                    .object_lock_configuration(cfg)
                    .send()
                    .await
                    .map_err(|e| aws_err(&r.logical_id, e))?;
            }
            let queues: Vec<aws_sdk_s3::types::QueueConfiguration> = prop(r, "NotificationConfiguration")
                .and_then(|n| n.get("QueueConfigurations"))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|q| {
                    aws_sdk_s3::types::QueueConfiguration::builder()
                        .queue_arn(p.resolve(q.get("Queue")?)?)
                        .events(aws_sdk_s3::types::Event::from(q.get("Event")?.as_str()?))
                        .build()
                        .ok()
                })
                .collect();
            if !queues.is_empty() {
                let cfg = aws_sdk_s3::types::NotificationConfiguration::builder()
                    .set_queue_configurations(Some(queues))
                    .build();
                c.s3.put_bucket_notification_configuration()
                    .bucket(&name)
                    .notification_configuration(cfg)
                    .send()
                    .await
                    .map_err(|e| aws_err(&r.logical_id, e))?;
            }
            let arn = format!("arn:aws:s3:::{name}");
            Ok(Physical { reference: name, attributes: HashMap::from([("Arn".into(), arn)]) })
        }
        "AWS::SQS::Queue" => {
            let name =
                prop_str(p, r, "QueueName").map(|n| format!("{prefix}-{n}")).unwrap_or_else(|| name_for(prefix, r));
            let mut req = c.sqs.create_queue().queue_name(&name);
            for (prop_name, attr) in [
                ("VisibilityTimeout", aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout),
                ("MessageRetentionPeriod", aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod),
                ("DelaySeconds", aws_sdk_sqs::types::QueueAttributeName::DelaySeconds),
            ] {
                if let Some(v) = prop_str(p, r, prop_name) {
                    req = req.attributes(attr, v);
                }
            }
            if let Some(redrive) = prop(r, "RedrivePolicy") {
                let target = redrive
                    .get("deadLetterTargetArn")
                    .and_then(|v| p.resolve(v))
                    .ok_or(ProvisionError::Property(r.logical_id.clone(), "deadLetterTargetArn"))?;
                let max = redrive.get("maxReceiveCount").and_then(|v| p.resolve(v)).unwrap_or_else(|| "5".into());
                let policy = serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max}).to_string();
                req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy);
            }
            let url = req.send().await.map_err(|e| aws_err(&r.logical_id, e))?.queue_url.unwrap_or_default();
            let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
            Ok(Physical {
                reference: url,
                attributes: HashMap::from([("Arn".into(), arn), ("QueueName".into(), name)]),
            })
        }
        "AWS::Events::EventBus" => {
            let name = format!("{prefix}-{}", prop_str(p, r, "Name").unwrap_or_else(|| r.logical_id.clone()));
            let out = c.events.create_event_bus().name(&name).send().await.map_err(|e| aws_err(&r.logical_id, e))?;
            Ok(Physical {
                reference: name.clone(),
                attributes: HashMap::from([
                    ("Arn".into(), out.event_bus_arn.unwrap_or_default()),
                    ("Name".into(), name),
                ]),
            })
        }
        "AWS::Events::Rule" => {
            let name = name_for(prefix, r);
            let bus = prop_str(p, r, "EventBusName");
            let pattern = prop(r, "EventPattern").map(yaml_to_json).transpose()?.map(|j| j.to_string());
            let mut req = c.events.put_rule().name(&name).set_event_bus_name(bus.clone()).set_event_pattern(pattern);
            if let Some(s) = prop_str(p, r, "ScheduleExpression") {
                req = req.schedule_expression(s);
            }
            let arn = req.send().await.map_err(|e| aws_err(&r.logical_id, e))?.rule_arn.unwrap_or_default();
            let targets: Vec<aws_sdk_eventbridge::types::Target> = prop(r, "Targets")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    let id = t.get("Id").and_then(|v| p.resolve(v))?;
                    let target_arn = t.get("Arn").and_then(|v| p.resolve(v))?;
                    aws_sdk_eventbridge::types::Target::builder().id(id).arn(target_arn).build().ok()
                })
                .collect();
            if !targets.is_empty() {
                c.events
                    .put_targets()
                    .rule(&name)
                    .set_event_bus_name(bus)
                    .set_targets(Some(targets))
                    .send()
                    .await
                    .map_err(|e| aws_err(&r.logical_id, e))?;
            }
            Ok(Physical { reference: name, attributes: HashMap::from([("Arn".into(), arn)]) })
        }
        "AWS::SecretsManager::Secret" => {
            // Created with the template's placeholder; whoever holds the real
            // value (an operator, or the local stack for its simulator) puts it.
            let placeholder = prop(r, "GenerateSecretString")
                .and_then(|g| g.get("SecretStringTemplate"))
                .and_then(|v| p.resolve(v))
                .unwrap_or_else(|| "{}".into());
            let out = c
                .secrets
                .create_secret()
                .name(name_for(prefix, r))
                .secret_string(placeholder)
                .send()
                .await
                .map_err(|e| aws_err(&r.logical_id, e))?;
            let arn = out.arn.unwrap_or_default();
            Ok(Physical { reference: arn.clone(), attributes: HashMap::from([("Id".into(), arn)]) })
        }
        _ => unreachable!("filtered by SUPPORTED"),
    }
}

fn yaml_to_json(v: &Value) -> Result<serde_json::Value, ProvisionError> {
    serde_json::to_value(v).map_err(|_| ProvisionError::Property("EventPattern".into(), "not JSON-compatible"))
}

async fn create_table(c: &Clients, p: &Provisioned, r: &Resource, prefix: &str) -> Result<Physical, ProvisionError> {
    let name = name_for(prefix, r);
    let bad = |what: &'static str| ProvisionError::Property(r.logical_id.clone(), what);
    let key_schema = |v: &Value| -> Result<Vec<ddb::KeySchemaElement>, ProvisionError> {
        v.as_sequence()
            .ok_or(bad("KeySchema"))?
            .iter()
            .map(|k| {
                ddb::KeySchemaElement::builder()
                    .attribute_name(k.get("AttributeName").and_then(Value::as_str).ok_or(bad("AttributeName"))?)
                    .key_type(ddb::KeyType::from(k.get("KeyType").and_then(Value::as_str).ok_or(bad("KeyType"))?))
                    .build()
                    .map_err(|_| bad("KeySchema"))
            })
            .collect()
    };
    let attrs: Vec<ddb::AttributeDefinition> = prop(r, "AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or(bad("AttributeDefinitions"))?
        .iter()
        .map(|a| {
            ddb::AttributeDefinition::builder()
                .attribute_name(a.get("AttributeName").and_then(Value::as_str).unwrap_or_default())
                .attribute_type(ddb::ScalarAttributeType::from(
                    a.get("AttributeType").and_then(Value::as_str).unwrap_or("S"),
                ))
                .build()
                .map_err(|_| bad("AttributeDefinitions"))
        })
        .collect::<Result<_, _>>()?;
    let mut req = c
        .dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(ddb::BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attrs))
        .set_key_schema(Some(key_schema(prop(r, "KeySchema").ok_or(bad("KeySchema"))?)?));
    for gsi in prop(r, "GlobalSecondaryIndexes").and_then(Value::as_sequence).into_iter().flatten() {
        let projection = gsi.get("Projection");
        let mut proj = ddb::Projection::builder().projection_type(ddb::ProjectionType::from(
            projection.and_then(|p| p.get("ProjectionType")).and_then(Value::as_str).unwrap_or("ALL"),
        ));
        for a in projection.and_then(|p| p.get("NonKeyAttributes")).and_then(Value::as_sequence).into_iter().flatten() {
            proj = proj.non_key_attributes(a.as_str().unwrap_or_default());
        }
        let index = ddb::GlobalSecondaryIndex::builder()
            .index_name(gsi.get("IndexName").and_then(Value::as_str).ok_or(bad("IndexName"))?)
            .set_key_schema(Some(key_schema(gsi.get("KeySchema").ok_or(bad("KeySchema"))?)?))
            .projection(proj.build())
            .build()
            .map_err(|_| bad("GlobalSecondaryIndexes"))?;
        req = req.global_secondary_indexes(index);
    }
    if let Some(view) = prop(r, "StreamSpecification").and_then(|s| s.get("StreamViewType")).and_then(Value::as_str) {
        req = req.stream_specification(
            ddb::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(ddb::StreamViewType::from(view))
                .build()
                .map_err(|_| bad("StreamSpecification"))?,
        );
    }
    let out = req.send().await.map_err(|e| aws_err(&r.logical_id, e))?;
    if let Some(ttl) = prop(r, "TimeToLiveSpecification") {
        if ttl.get("Enabled").and_then(|v| p.resolve(v)).as_deref() == Some("true") {
            let attr = ttl.get("AttributeName").and_then(Value::as_str).ok_or(bad("TimeToLiveSpecification"))?;
            let spec = ddb::TimeToLiveSpecification::builder()
                .attribute_name(attr)
                .enabled(true)
                .build()
                .map_err(|_| bad("TimeToLiveSpecification"))?;
            c.dynamodb
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| aws_err(&r.logical_id, e))?;
        }
    }
    let desc = out.table_description;
    let arn = desc.as_ref().and_then(|d| d.table_arn.clone()).unwrap_or_default();
    let stream = desc.as_ref().and_then(|d| d.latest_stream_arn.clone()).unwrap_or_default();
    Ok(Physical { reference: name, attributes: HashMap::from([("Arn".into(), arn), ("StreamArn".into(), stream)]) })
}
