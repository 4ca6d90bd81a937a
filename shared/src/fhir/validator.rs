//! FHIR R4 structural validation driven by the model generated from the
//! official definitions (`medrec gen-fhir-model`, shared/src/fhir/r4-model.json):
//! unknown elements, cardinality, types including choice types, primitive
//! formats, `_element` primitive extensions, contained and nested resources,
//! reference formats and target types, required bindings over enumerable
//! value sets, and the invariants ele-1 (no empty elements) and ext-1.
//! Each problem is one issue located by a FHIRPath-style expression.

use super::outcome::Issue;
use super::primitives as p;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const MODEL_JSON: &str = include_str!("r4-model.json");

struct TypeRef {
    code: String,
    targets: Vec<String>,
}

struct Element {
    min: u64,
    many: bool,
    types: Vec<TypeRef>,
    /// For contentReference elements: the path whose children apply.
    content_ref: Option<String>,
    value_set: Option<String>,
}

/// A child element as `Model::children_of` describes it.
#[derive(Debug, Clone)]
pub struct ElementInfo {
    /// As in the definition's path: `status`, `value[x]`.
    pub name: String,
    pub min: u64,
    pub many: bool,
    pub types: Vec<String>,
    /// A required binding to a value set whose codes the model knows.
    pub enumerable_binding: bool,
}

pub struct Model {
    elements: HashMap<String, Element>,
    /// Parent path -> child names as they appear in paths (`value[x]` included).
    children: HashMap<String, Vec<String>>,
    resources: HashSet<String>,
    primitives: HashSet<String>,
    /// Value set URL -> (system, code) members.
    value_sets: HashMap<String, HashSet<(String, String)>>,
}

/// The model, parsed once per process (cold start).
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(Model::bundled)
}

impl Model {
    /// Parses the bundled model (what `model()` does once per process).
    pub fn bundled() -> Model {
        Model::parse(MODEL_JSON).expect("the bundled FHIR model is valid")
    }

    fn parse(text: &str) -> Result<Model, serde_json::Error> {
        let raw: Value = serde_json::from_str(text)?;
        let mut m = Model {
            elements: HashMap::new(),
            children: HashMap::new(),
            resources: HashSet::new(),
            primitives: HashSet::new(),
            value_sets: HashMap::new(),
        };
        for (name, info) in raw["types"].as_object().into_iter().flatten() {
            match info["kind"].as_str() {
                Some("resource") if info["abstract"] != true => {
                    m.resources.insert(name.clone());
                }
                Some("primitive-type") => {
                    m.primitives.insert(name.clone());
                }
                _ => {}
            }
        }
        for els in raw["elements"].as_object().into_iter().flatten().map(|(_, v)| v) {
            for e in els.as_array().into_iter().flatten() {
                let path = e["p"].as_str().unwrap_or_default().to_owned();
                let types = e["t"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| match t {
                        Value::String(code) => TypeRef { code: code.clone(), targets: vec![] },
                        _ => TypeRef {
                            code: t[0].as_str().unwrap_or_default().to_owned(),
                            targets: t[1]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect(),
                        },
                    })
                    .collect();
                if let Some((parent, child)) = path.rsplit_once('.') {
                    m.children.entry(parent.to_owned()).or_default().push(child.to_owned());
                }
                m.elements.insert(
                    path,
                    Element {
                        min: e["min"].as_u64().unwrap_or(0),
                        many: e["max"].as_str() != Some("1") && e["max"].as_str() != Some("0"),
                        types,
                        content_ref: e["ref"].as_str().map(str::to_owned),
                        value_set: e["vs"].as_str().map(str::to_owned),
                    },
                );
            }
        }
        for (url, systems) in raw["valueSets"].as_object().into_iter().flatten() {
            let mut codes = HashSet::new();
            for (system, list) in systems.as_object().into_iter().flatten() {
                for c in list.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    codes.insert((system.clone(), c.to_owned()));
                }
            }
            m.value_sets.insert(url.clone(), codes);
        }
        Ok(m)
    }

    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resources.contains(name)
    }

    /// The child elements defined under `path` (a type name or a backbone
    /// path), for tools that derive test data from the definitions.
    pub fn children_of(&self, path: &str) -> Vec<ElementInfo> {
        self.children
            .get(path)
            .into_iter()
            .flatten()
            .map(|name| {
                let el = &self.elements[&format!("{path}.{name}")];
                ElementInfo {
                    name: name.clone(),
                    min: el.min,
                    many: el.many,
                    types: el.types.iter().map(|t| t.code.clone()).collect(),
                    enumerable_binding: el.value_set.as_ref().is_some_and(|vs| self.value_sets.contains_key(vs)),
                }
            })
            .collect()
    }

    /// Validates a resource of any type.
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        self.resource(resource, None, &mut issues);
        issues
    }

    fn resource(&self, v: &Value, at: Option<&str>, issues: &mut Vec<Issue>) {
        let Some(obj) = v.as_object() else {
            issues.push(Issue::error("structure", "a resource must be a JSON object").at(at.unwrap_or("Resource")));
            return;
        };
        let rt = match obj.get("resourceType").and_then(Value::as_str) {
            Some(t) if self.resources.contains(t) => t,
            _ => {
                issues.push(
                    Issue::error("structure", "resourceType is missing or not an R4 resource type")
                        .at(at.unwrap_or("Resource")),
                );
                return;
            }
        };
        let expr = at.map_or_else(|| rt.to_owned(), str::to_owned);
        if obj.len() > 1 {
            self.object(obj, rt, &expr, true, issues);
        }
    }

    /// Resolves a JSON key under `def_path` to (element path, chosen type).
    fn lookup(&self, def_path: &str, key: &str) -> Option<(String, Option<String>)> {
        let children = self.children.get(def_path)?;
        if children.iter().any(|c| c == key) {
            return Some((format!("{def_path}.{key}"), None));
        }
        for c in children.iter().filter(|c| c.ends_with("[x]")) {
            let stem = &c[..c.len() - 3];
            if let Some(suffix) = key.strip_prefix(stem) {
                let path = format!("{def_path}.{c}");
                let el = self.elements.get(&path)?;
                if let Some(t) = el.types.iter().find(|t| upper_first(&t.code) == suffix) {
                    return Some((path, Some(t.code.clone())));
                }
            }
        }
        None
    }

    fn object(&self, obj: &Map<String, Value>, def_path: &str, expr: &str, is_resource: bool, issues: &mut Vec<Issue>) {
        if obj.is_empty() {
            issues.push(Issue::error("invariant", "ele-1: elements must have a value or children").at(expr));
            return;
        }
        let mut present: HashMap<String, usize> = HashMap::new();
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, primitive_ext) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let Some((path, chosen)) = self.lookup(def_path, name) else {
                issues.push(Issue::error("structure", format!("unknown element '{}'", truncate(key))).at(expr));
                continue;
            };
            let el = &self.elements[&path];
            let ty = chosen.or_else(|| el.types.first().map(|t| t.code.clone())).unwrap_or_default();
            if !primitive_ext {
                *present.entry(path.clone()).or_default() += 1;
            } else {
                present.entry(path.clone()).or_default();
            }
            let child = format!("{expr}.{key}");
            if primitive_ext {
                if !self.primitives.contains(&ty) {
                    issues.push(
                        Issue::error("structure", format!("'{}' is not a primitive element", truncate(key))).at(expr),
                    );
                } else {
                    self.primitive_extension(value, el.many, &child, issues);
                }
            } else {
                let paired_nulls = obj.contains_key(&format!("_{key}"));
                self.field(value, el, &path, &ty, &child, paired_nulls, issues);
            }
        }
        if let Some(children) = self.children.get(def_path) {
            for c in children {
                let path = format!("{def_path}.{c}");
                let el = &self.elements[&path];
                if el.min > 0 && !present.contains_key(&path) {
                    issues.push(
                        Issue::error("required", format!("element '{c}' is required"))
                            .at(format!("{expr}.{}", c.trim_end_matches("[x]"))),
                    );
                }
                if c.ends_with("[x]")
                    && obj.keys().filter(|k| self.lookup(def_path, k).is_some_and(|(p, _)| p == path)).count() > 1
                {
                    issues.push(Issue::error("structure", format!("only one type of {c} may be present")).at(expr));
                }
            }
        }
        if def_path == "Extension"
            || self.elements.get(def_path).is_some_and(|e| e.types.iter().any(|t| t.code == "Extension"))
        {
            // A value given only through its primitive extension (`_valueString`) exists too.
            let has_value = obj.keys().any(|k| k.starts_with("value") || k.starts_with("_value"));
            if has_value == obj.contains_key("extension") {
                issues.push(
                    Issue::error(
                        "invariant",
                        "ext-1: an extension has either nested extensions or a value[x], not both or neither",
                    )
                    .at(expr),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn field(
        &self,
        value: &Value,
        el: &Element,
        path: &str,
        ty: &str,
        expr: &str,
        paired_nulls: bool,
        issues: &mut Vec<Issue>,
    ) {
        match (el.many, value) {
            (true, Value::Array(items)) => {
                if items.is_empty() {
                    issues.push(Issue::error("invariant", "ele-1: arrays must not be empty").at(expr));
                }
                for (i, item) in items.iter().enumerate() {
                    if item.is_null() && paired_nulls {
                        continue;
                    }
                    self.value(item, el, path, ty, &format!("{expr}[{i}]"), issues);
                }
            }
            (true, _) => {
                issues.push(Issue::error("structure", "this element repeats: it must be a JSON array").at(expr))
            }
            (false, Value::Array(_)) => {
                issues.push(Issue::error("structure", "this element does not repeat: it must not be an array").at(expr))
            }
            (false, v) => self.value(v, el, path, ty, expr, issues),
        }
    }

    fn value(&self, v: &Value, el: &Element, path: &str, ty: &str, expr: &str, issues: &mut Vec<Issue>) {
        if self.primitives.contains(ty) {
            if let Err(what) = check_primitive(ty, v) {
                issues.push(Issue::error("value", format!("value is not a valid {what}")).at(expr));
            } else if let (Some(vs), Some(code)) = (&el.value_set, v.as_str()) {
                if self.value_sets.get(vs).is_some_and(|set| !set.iter().any(|(_, c)| c == code)) {
                    issues.push(
                        Issue::error("code-invalid", format!("code is not in the required value set {vs}")).at(expr),
                    );
                }
            }
            return;
        }
        if ty == "Resource" || self.resources.contains(ty) {
            if ty != "Resource" && v.get("resourceType").and_then(Value::as_str).is_some_and(|rt| rt != ty) {
                issues.push(Issue::error("structure", format!("this element holds a {ty}")).at(expr));
            }
            self.resource(v, Some(expr), issues);
            return;
        }
        let Some(obj) = v.as_object() else {
            issues.push(Issue::error("structure", format!("a {ty} must be a JSON object")).at(expr));
            return;
        };
        let def_path = match &el.content_ref {
            Some(r) => r.as_str(),
            None if self.children.contains_key(path) => path,
            None => ty,
        };
        self.object(obj, def_path, expr, false, issues);
        match ty {
            "Reference" => {
                let targets =
                    el.types.iter().find(|t| t.code == "Reference").map(|t| t.targets.as_slice()).unwrap_or(&[]);
                if let Some(r) = obj.get("reference").and_then(Value::as_str) {
                    check_reference(r, targets, &format!("{expr}.reference"), issues);
                }
            }
            "Coding" | "CodeableConcept" => {
                if let Some(set) = el.value_set.as_ref().and_then(|vs| self.value_sets.get(vs)) {
                    let codings: Vec<&Value> = if ty == "Coding" {
                        vec![v]
                    } else {
                        obj.get("coding").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
                    };
                    let member = |c: &Value| {
                        let code = c.get("code").and_then(Value::as_str);
                        let system = c.get("system").and_then(Value::as_str);
                        code.is_some_and(|code| set.iter().any(|(s, k)| k == code && system.is_none_or(|sys| sys == s)))
                    };
                    if !codings.is_empty() && !codings.iter().any(|c| member(c)) {
                        issues.push(Issue::error("code-invalid", "no coding is in the required value set").at(expr));
                    }
                }
            }
            _ => {}
        }
    }

    fn primitive_extension(&self, value: &Value, many: bool, expr: &str, issues: &mut Vec<Issue>) {
        let one = |v: &Value, expr: &str, issues: &mut Vec<Issue>| match v.as_object() {
            Some(o) => self.object(o, "Element", expr, false, issues),
            None => issues.push(Issue::error("structure", "primitive extensions must be objects").at(expr)),
        };
        match (many, value) {
            (true, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate().filter(|(_, v)| !v.is_null()) {
                    one(item, &format!("{expr}[{i}]"), issues);
                }
            }
            (false, v) => one(v, expr, issues),
            (true, _) => {
                issues.push(Issue::error("structure", "this element repeats: it must be a JSON array").at(expr))
            }
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn check_primitive(ty: &str, v: &Value) -> Result<(), &'static str> {
    let ok = match (ty, v) {
        ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        ("unsignedInt", Value::Number(n)) => n.as_i64().is_some_and(|i| (0..=i32::MAX as i64).contains(&i)),
        ("positiveInt", Value::Number(n)) => n.as_i64().is_some_and(|i| (1..=i32::MAX as i64).contains(&i)),
        ("decimal", Value::Number(_)) => true,
        (_, Value::String(s)) => match ty {
            "string" | "markdown" => p::is_string(s),
            "code" => p::is_code(s),
            "id" => p::is_id(s),
            "uri" | "url" | "canonical" => p::is_uri(s),
            "oid" => s
                .strip_prefix("urn:oid:")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit() || b == b'.')),
            "uuid" => s
                .strip_prefix("urn:uuid:")
                .is_some_and(|r| r.len() == 36 && r.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')),
            "base64Binary" => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s.split_whitespace().collect::<String>()).is_ok()
            }
            "instant" => p::is_instant(s),
            "date" => p::is_date(s),
            "dateTime" => p::is_date_time(s),
            "time" => p::is_time(s),
            "xhtml" => p::is_safe_xhtml(s),
            _ => false,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(match ty {
            "xhtml" => "xhtml narrative (a <div> without scripts, forms or event handlers)",
            "boolean" => "boolean",
            "integer" => "integer",
            "decimal" => "decimal",
            "date" => "date",
            "dateTime" => "dateTime",
            "instant" => "instant",
            "code" => "code",
            "id" => "id",
            _ => "value of its type",
        })
    }
}

/// `Type/id` (optionally versioned), an absolute URL, a `#local` or `urn:`
/// reference. Any absolute URL is a valid reference; only RESTful ones
/// (`.../Type/id` naming an R4 type) can be checked against target types.
fn check_reference(r: &str, targets: &[String], expr: &str, issues: &mut Vec<Issue>) {
    if r.starts_with('#') || r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
        return;
    }
    let absolute = r.contains("://");
    let relative = r.split("/_history/").next().unwrap_or(r);
    let mut parts = relative.rsplitn(3, '/');
    let (id, ty) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let restful = model().resources.contains(ty) && p::is_id(id);
    if !restful {
        if !(absolute && p::is_uri(r)) {
            issues.push(Issue::error("value", "reference must be Type/id, an absolute URL or a local #id").at(expr));
        }
    } else if !targets.is_empty() && !targets.iter().any(|t| t == ty || t == "Resource") {
        issues.push(Issue::error("value", format!("reference must point to one of: {}", targets.join(", "))).at(expr));
    }
}
