//! Reads template.yaml: the resources the local stack provisions, the
//! functions it mounts with their environment, and their HTTP API routes.

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template: {0}")]
    Io(#[from] std::io::Error),
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template problem: {0}")]
    Shape(String),
}

/// The HTTP API route that receives every request no other route matches.
pub const DEFAULT_ROUTE: &str = "$default";

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Value,
}

#[derive(Debug, Clone)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// Globals merged with the function's own variables, unresolved.
    pub environment: BTreeMap<String, Value>,
    pub routes: Vec<HttpRoute>,
    /// SQS event sources: (queue logical id, batch size).
    pub queues: Vec<(String, i32)>,
    /// EventBridge schedules (`rate(...)` expressions).
    pub schedules: Vec<String>,
    /// DynamoDB stream event sources: (table logical id, batch size).
    pub streams: Vec<(String, i32)>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub resources: Vec<Resource>,
    pub functions: Vec<Function>,
    pub parameter_defaults: BTreeMap<String, String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `Properties` of a function's events of one type (HttpApi, SQS, Schedule).
fn event_properties<'a>(function: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    function
        .get("Events")
        .and_then(Value::as_mapping)
        .into_iter()
        .flat_map(|events| events.values())
        .filter(move |e| e.get("Type").and_then(Value::as_str) == Some(kind))
        .filter_map(|e| e.get("Properties"))
}

fn env_vars(v: Option<&Value>) -> BTreeMap<String, Value> {
    v.and_then(|e| e.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone()))).collect())
        .unwrap_or_default()
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let doc: Value = serde_yaml::from_str(text)?;
        let resources_map = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| TemplateError::Shape("no Resources".into()))?;
        let globals = doc.get("Globals").and_then(|g| g.get("Function"));
        let parameter_defaults = doc
            .get("Parameters")
            .and_then(Value::as_mapping)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v.get("Default")?)?))).collect())
            .unwrap_or_default();
        let mut resources = vec![];
        let mut functions = vec![];
        for (id, body) in resources_map {
            let logical_id =
                id.as_str().ok_or_else(|| TemplateError::Shape("non-string logical id".into()))?.to_owned();
            let kind = body.get("Type").and_then(Value::as_str).unwrap_or_default().to_owned();
            let properties = body.get("Properties").cloned().unwrap_or(Value::Null);
            if kind == "AWS::Serverless::Function" {
                let mut environment = env_vars(globals);
                environment.extend(env_vars(Some(&properties)));
                let routes = event_properties(&properties, "HttpApi")
                    .filter_map(|p| match (p.get("Method"), p.get("Path")) {
                        // SAM: an HttpApi event without both is the `$default` route.
                        (None, None) => Some(HttpRoute { method: "ANY".into(), path: DEFAULT_ROUTE.into() }),
                        (m, p) => {
                            Some(HttpRoute { method: m?.as_str()?.to_ascii_uppercase(), path: p?.as_str()?.to_owned() })
                        }
                    })
                    .collect();
                // `Queue: !GetAtt Logical.Arn`, `Stream: !GetAtt Table.StreamArn`
                let sources = |kind: &'static str, key: &'static str, default_batch: i64| {
                    event_properties(&properties, kind)
                        .filter_map(|p| {
                            let Value::Tagged(t) = p.get(key)? else { return None };
                            let logical = t.value.as_str()?.split('.').next()?.to_owned();
                            let batch = p.get("BatchSize").and_then(Value::as_i64).unwrap_or(default_batch) as i32;
                            Some((logical, batch))
                        })
                        .collect::<Vec<_>>()
                };
                let queues = sources("SQS", "Queue", 10);
                let streams = sources("DynamoDB", "Stream", 100);
                let schedules = event_properties(&properties, "Schedule")
                    .filter_map(|p| Some(p.get("Schedule")?.as_str()?.to_owned()))
                    .collect();
                functions.push(Function {
                    logical_id: logical_id.clone(),
                    environment,
                    routes,
                    queues,
                    schedules,
                    streams,
                });
            }
            resources.push(Resource { logical_id, kind, properties });
        }
        Ok(Template { resources, functions, parameter_defaults })
    }

    /// Matches a request to a function route as API Gateway does: exact
    /// segments, `{name}` for one segment, `{name+}` greedy; when several
    /// routes match, the most specific wins (more literal segments, greedy
    /// last). Returns the function, the route key and the path parameters.
    pub fn route(&self, method: &str, path: &str) -> Option<(&Function, String, BTreeMap<String, String>)> {
        let routes = self
            .functions
            .iter()
            .flat_map(|f| f.routes.iter().map(move |r| (f, r)))
            .filter(|(_, r)| (r.method == method || r.method == "ANY") && r.path != DEFAULT_ROUTE)
            .map(|(f, r)| ((f, r), r.path.as_str()));
        medrec_edge::routing::most_specific(routes, path)
            .into_iter()
            .next()
            .map(|((f, r), params)| {
                let params = params.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
                (f, format!("{} {}", r.method, r.path), params)
            })
            .or_else(|| {
                let f = self.functions.iter().find(|f| f.routes.iter().any(|r| r.path == DEFAULT_ROUTE))?;
                Some((f, DEFAULT_ROUTE.to_owned(), BTreeMap::new()))
            })
    }
}

/// The period of a `rate(N unit)` schedule expression.
pub fn rate(expression: &str) -> Option<std::time::Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate("rate(1 day)"), Some(std::time::Duration::from_secs(86400)));
        assert_eq!(rate("rate(5 minutes)"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(rate("cron(0 3 * * ? *)"), None);
        assert_eq!(rate("rate(0 days)"), None);
    }

    #[test]
    fn route_matching() {
        let t = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        A: {Type: HttpApi, Properties: {Method: get, Path: '/fhir/Patient/{id}'}}\n        B: {Type: HttpApi, Properties: {Method: GET, Path: '/fhir/Patient'}}\n",
        )
        .unwrap();
        let (f, key, params) = t.route("GET", "/fhir/Patient/abc").unwrap();
        assert_eq!(f.logical_id, "F");
        assert_eq!(key, "GET /fhir/Patient/{id}");
        assert_eq!(params["id"], "abc");
        assert!(t.route("GET", "/fhir/Patient/abc/x").is_none());
        assert!(t.route("POST", "/fhir/Patient").is_none());
        assert!(t.route("GET", "/fhir/Patient/").is_none());
        let t = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        A: {Type: HttpApi, Properties: {Method: POST, Path: '/fhir/Patient/{operation}'}}\n        B: {Type: HttpApi, Properties: {Method: POST, Path: '/fhir/Patient/_search'}}\n",
        )
        .unwrap();
        assert_eq!(
            t.route("POST", "/fhir/Patient/_search").unwrap().1,
            "POST /fhir/Patient/_search",
            "literal beats variable"
        );
        assert_eq!(t.route("POST", "/fhir/Patient/$validate").unwrap().2["operation"], "$validate");
    }
}
