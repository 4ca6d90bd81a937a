//! Validation against profiles (constraint StructureDefinitions): the core
//! vital-signs profiles of R4 and US Core 6.1.0 Patient, Immunization and
//! Observation, as compiled from their differentials by `gen-fhir-model`.
//! A profile is checked on top of the base resource's own validation, with
//! its base profiles first: cardinality (per parent, per slice), slicing by
//! value and pattern discriminators, fixed and pattern values, type and
//! target-profile restrictions, required bindings over enumerable value
//! sets, extension profiles and invariants. Must-support is not enforced.

use super::fhirpath::{self, Ast, Env, Node};
use super::outcome::Issue;
use super::validator::Model;
use serde_json::Value;
use std::collections::HashMap;

/// One compiled profile.
pub struct Profile {
    ty: String,
    name: String,
    base: Option<String>,
    root: PNode,
}

/// An element of the differential, placed in a tree by its id.
#[derive(Default)]
struct PNode {
    /// As in the element id: `component`, `value[x]`, `valueQuantity`.
    name: String,
    slice: Option<String>,
    rule: Rule,
    children: Vec<PNode>,
}

#[derive(Default)]
struct Rule {
    min: Option<u64>,
    max: Option<String>,
    fixed: Option<Value>,
    pattern: Option<Value>,
    types: Vec<PType>,
    value_set: Option<String>,
    /// (discriminator type, path) and whether unmatched items are refused.
    slicing: Option<(Vec<(String, String)>, bool)>,
    invariants: Vec<(String, bool, String, Ast)>,
}

struct PType {
    code: String,
    profiles: Vec<String>,
    targets: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

/// Parses the `profiles` section of the generated model.
pub(crate) fn parse_all(raw: &Value) -> HashMap<String, Profile> {
    let mut out = HashMap::new();
    for (url, p) in raw.as_object().into_iter().flatten() {
        let mut root = PNode::default();
        for el in p["elements"].as_array().into_iter().flatten() {
            let id = el["id"].as_str().unwrap_or_default();
            let mut node = &mut root;
            for seg in id.split('.').skip(1) {
                let (name, slice) = match seg.split_once(':') {
                    // `value[x]:valueQuantity` restricts a choice to one type.
                    Some((n, s)) if n.ends_with("[x]") => (s.to_owned(), None),
                    Some((n, s)) => (n.to_owned(), Some(s.to_owned())),
                    None => (seg.to_owned(), None),
                };
                let pos = match node.children.iter().position(|c| c.name == name && c.slice == slice) {
                    Some(p) => p,
                    None => {
                        node.children.push(PNode { name, slice, ..Default::default() });
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[pos];
            }
            node.rule = Rule {
                min: el["min"].as_u64(),
                max: el["max"].as_str().map(str::to_owned),
                fixed: el.get("fixed").cloned(),
                pattern: el.get("pattern").cloned(),
                types: el["t"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| PType {
                        code: t[0].as_str().unwrap_or_default().to_owned(),
                        profiles: strings(&t[1]),
                        targets: strings(&t[2]),
                    })
                    .collect(),
                value_set: el["vs"].as_str().map(str::to_owned),
                slicing: el.get("slicing").map(|s| {
                    let d = s["d"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| (d[0].as_str().unwrap_or("").to_owned(), d[1].as_str().unwrap_or("").to_owned()))
                        .collect();
                    (d, s["closed"] == true)
                }),
                invariants: el["inv"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        let ast = fhirpath::parse(i[3].as_str()?).ok()?;
                        Some((i[0].as_str()?.to_owned(), i[1] == "error", i[2].as_str()?.to_owned(), ast))
                    })
                    .collect(),
            };
        }
        out.insert(
            url.clone(),
            Profile {
                ty: p["type"].as_str().unwrap_or_default().to_owned(),
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                base: p["base"].as_str().map(str::to_owned),
                root,
            },
        );
    }
    out
}

/// Does `actual` contain everything `pattern` has (arrays: each pattern
/// item matched by some actual item)?
fn matches_pattern(actual: &Value, pattern: &Value) -> bool {
    match (actual, pattern) {
        (Value::Object(a), Value::Object(p)) => {
            p.iter().all(|(k, pv)| a.get(k).is_some_and(|av| matches_pattern(av, pv)))
        }
        (Value::Array(a), Value::Array(p)) => p.iter().all(|pv| a.iter().any(|av| matches_pattern(av, pv))),
        (a, p) => a == p,
    }
}

/// The JSON values at a dotted path under `v` (arrays flattened).
fn values_at<'v>(v: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let next: Vec<&Value> = match v {
        Value::Array(items) => return items.iter().for_each(|i| values_at(i, path, out)),
        _ if head == "$this" => vec![v],
        _ => v.get(head).into_iter().collect(),
    };
    for n in next {
        match (rest, n) {
            (None, Value::Array(items)) => out.extend(items),
            (None, n) => out.push(n),
            (Some(r), n) => values_at(n, r, out),
        }
    }
}

/// Where an item sits, for issue locations.
#[derive(Clone)]
struct Located<'a> {
    node: Node<'a>,
    at: String,
}

struct Run<'a> {
    model: &'a Model,
    resource: Node<'a>,
    issues: Vec<Issue>,
}

impl Model {
    /// Checks `resource` against the profile `url` and its base profiles.
    /// None when the profile is not one medrec knows.
    pub fn check_profile<'a>(&'a self, resource: &'a Value, url: &str) -> Option<Vec<Issue>> {
        let url = url.split('|').next().unwrap_or(url);
        let profile = self.profile(url)?;
        let Some(root) = self.resource_node(resource) else { return Some(vec![]) };
        if root.ty != profile.ty {
            return Some(vec![Issue::error(
                "structure",
                format!("profile {} applies to {}, not {}", profile.name, profile.ty, root.ty),
            )
            .at(root.ty.to_owned())]);
        }
        let mut run = Run { model: self, resource: root, issues: Vec::new() };
        let mut chain = vec![profile];
        while let Some(base) = chain.last().and_then(|p| p.base.as_deref()).and_then(|b| self.profile(b)) {
            chain.push(base);
        }
        for p in chain.iter().rev() {
            let here = Located { node: root, at: root.ty.to_owned() };
            run.apply(p, &p.root, std::slice::from_ref(&here));
            run.rule(p, &p.root.rule, &here);
        }
        Some(run.issues)
    }
}

impl<'a> Run<'a> {
    /// Applies the children of `pnode` to each of `parents`.
    fn apply(&mut self, p: &Profile, pnode: &PNode, parents: &[Located<'a>]) {
        for parent in parents {
            for child in &pnode.children {
                let mut items = self.select(parent, &child.name);
                if let Some(slice) = &child.slice {
                    let sliced = pnode.children.iter().find(|c| c.name == child.name && c.slice.is_none());
                    let by_url = [("value".to_owned(), "url".to_owned())];
                    let disc = match sliced.and_then(|s| s.rule.slicing.as_ref()) {
                        Some((d, _)) => d.as_slice(),
                        // Extensions are sliced by url without saying so.
                        None if child.name.ends_with("xtension") => &by_url,
                        None => continue,
                    };
                    items.retain(|i| in_slice(i.node.v, child, disc));
                    self.cardinality(p, &child.rule, &items, parent, &format!("{}:{slice}", child.name));
                } else {
                    self.cardinality(p, &child.rule, &items, parent, &child.name);
                    if let Some((disc, true)) = &child.rule.slicing {
                        let slices: Vec<&PNode> =
                            pnode.children.iter().filter(|c| c.name == child.name && c.slice.is_some()).collect();
                        for i in items.iter().filter(|i| !slices.iter().any(|s| in_slice(i.node.v, s, disc))) {
                            self.issues.push(
                                Issue::error("structure", format!("{}: matches no slice of a closed slicing", p.name))
                                    .at(i.at.clone()),
                            );
                        }
                    }
                }
                for item in &items {
                    self.rule(p, &child.rule, item);
                }
                if !child.children.is_empty() && !items.is_empty() {
                    self.apply(p, child, &items);
                }
            }
        }
    }

    /// The children of `parent` named as in an element id (`value[x]`,
    /// `valueQuantity`, `component`).
    fn select(&self, parent: &Located<'a>, name: &str) -> Vec<Located<'a>> {
        let (fp_name, only_type) = match name.strip_suffix("[x]") {
            Some(stem) => (stem.to_owned(), None),
            None => match parent.node.def.and_then(|d| self.model.choice_of(d, name)) {
                Some((stem, ty)) => (stem, Some(ty)),
                None => (name.to_owned(), None),
            },
        };
        let mut out = Vec::new();
        self.model.child_nodes(&parent.node, Some(&fp_name), &mut |key, i, node| {
            if only_type.as_deref().is_none_or(|t| t == node.ty) {
                let at = match i {
                    Some(i) => format!("{}.{key}[{i}]", parent.at),
                    None => format!("{}.{key}", parent.at),
                };
                out.push(Located { node, at });
            }
        });
        out
    }

    fn cardinality(&mut self, p: &Profile, rule: &Rule, items: &[Located<'a>], parent: &Located<'a>, what: &str) {
        let n = items.len() as u64;
        let at = format!("{}.{}", parent.at, what.split(':').next().unwrap_or(what).trim_end_matches("[x]"));
        if let Some(min) = rule.min.filter(|m| n < *m) {
            self.issues.push(
                Issue::error("required", format!("{}: {what} needs at least {min} (found {n})", p.name)).at(at.clone()),
            );
        }
        match rule.max.as_deref().map(str::parse::<u64>) {
            Some(Ok(max)) if n > max => self
                .issues
                .push(Issue::error("structure", format!("{}: {what} allows at most {max} (found {n})", p.name)).at(at)),
            _ => {}
        }
    }

    fn rule(&mut self, p: &Profile, rule: &Rule, item: &Located<'a>) {
        let v = item.node.v;
        let mut found: Vec<(&'static str, String)> = Vec::new();
        let mut err = |code: &'static str, msg: String| found.push((code, msg));
        if rule.fixed.as_ref().is_some_and(|f| f != v) {
            err("value", format!("must be exactly {}", rule.fixed.as_ref().map(Value::to_string).unwrap_or_default()));
        }
        if rule.pattern.as_ref().is_some_and(|pat| !matches_pattern(v, pat)) {
            err("value", "does not match the pattern the profile requires".into());
        }
        if !rule.types.is_empty() && item.node.ty != "Resource" {
            if !rule.types.iter().any(|t| t.code == item.node.ty) {
                err("structure", format!("type {} is not allowed here", item.node.ty));
            }
            if let Some(t) = rule.types.iter().find(|t| t.code == "Reference" && !t.targets.is_empty()) {
                let allowed: Vec<&str> = t.targets.iter().map(|u| self.model.profile_type(u)).collect();
                let target = v.get("reference").and_then(Value::as_str).and_then(|r| {
                    let mut parts = r.rsplit('/');
                    let (_, ty) = (parts.next(), parts.next()?);
                    Some(if r.contains("/_history/") { r.split('/').rev().nth(3)? } else { ty })
                });
                if let Some(ty) = target.filter(|ty| self.model.is_resource_type(ty) && !allowed.contains(ty)) {
                    err("structure", format!("a reference to {ty} is not allowed here ({})", allowed.join(", ")));
                }
            }
        }
        if let Some(vs) = &rule.value_set {
            if self.model.bound_code_ok(vs, item.node.ty, v) == Some(false) {
                err("code-invalid", format!("code is not in the required value set {vs}"));
            }
        }
        for (code, msg) in found {
            self.issues.push(Issue::error(code, format!("{}: {msg}", p.name)).at(item.at.clone()));
        }
        for (key, error, human, ast) in &rule.invariants {
            let env = Env::new(self.model, self.resource, self.resource, item.node, false);
            if env.holds(ast) == Ok(false) {
                let text = format!("{}: {key}: {human}", p.name);
                self.issues.push(
                    if *error { Issue::error("invariant", text) } else { Issue::warning("invariant", text) }
                        .at(item.at.clone()),
                );
            }
        }
        // Extension and datatype profiles apply to the item itself.
        for url in rule.types.iter().flat_map(|t| &t.profiles) {
            if let Some(sub) = self.model.profile(url) {
                self.apply(sub, &sub.root, std::slice::from_ref(item));
            }
        }
    }
}

/// Does the instance item belong to `slice`, judged by the slicing's
/// value/pattern discriminators against the slice's fixed or pattern values?
fn in_slice(item: &Value, slice: &PNode, disc: &[(String, String)]) -> bool {
    disc.iter().all(|(kind, path)| {
        if !matches!(kind.as_str(), "value" | "pattern") {
            return true;
        }
        let expected = expected_at(slice, path).or_else(|| {
            // Extension slices name their url through the extension's profile.
            (path == "url")
                .then(|| slice.rule.types.iter().flat_map(|t| &t.profiles).next().map(|u| Value::from(u.as_str())))?
        });
        let Some(expected) = expected else { return true };
        let mut actual = Vec::new();
        values_at(item, path, &mut actual);
        actual.iter().any(|a| matches_pattern(a, &expected))
    })
}

/// The fixed or pattern value a slice sets at a discriminator path; the
/// value may sit inside a nested slice (`code.coding:SBPCode.code`).
fn expected_at(node: &PNode, path: &str) -> Option<Value> {
    if path == "$this" || path.is_empty() {
        return node.rule.fixed.clone().or_else(|| node.rule.pattern.clone());
    }
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    node.children.iter().filter(|c| c.name == head).find_map(|c| expected_at(c, rest))
}

impl Profile {
    pub(crate) fn ty(&self) -> &str {
        &self.ty
    }
}

/// The vital signs: the core profile, the sign's own LOINC code, and the
/// SNOMED CT concepts that name the same sign. R4 says a vital-signs
/// Observation SHALL conform to its sign's profile, and so carry the sign's
/// LOINC code. An Observation coded with the sign's LOINC code, or coded in
/// SNOMED CT with the sign's concept and no LOINC code at all, is held to
/// the profile: HL7's reference validator does the same from the same
/// concepts, less two it files under another sign (60621009 body mass index
/// under body weight, 86290005 respiratory rate under blood pressure),
/// here under their own, and those we could not confirm (a wrong entry
/// would refuse good data).
///
/// HL7's validator also applies the profiles to more specific LOINC codes
/// (8331-1 oral temperature, 8480-6 systolic pressure); medrec does not.
/// That list mixes component codes in (systolic 8480-6 but not diastolic
/// 8462-4), and EHR-shaped data sends them alone: the Synthea records medrec
/// is tested with carry standalone systolic pressures categorised
/// `laboratory` and oral temperatures without 8310-5. Refusing those would
/// turn realistic records away for a missing second code.
const VITAL_SIGNS: &[(&str, &str, &[&str])] = &[
    ("http://hl7.org/fhir/StructureDefinition/vitalspanel", "85353-1", &["46680005"]),
    ("http://hl7.org/fhir/StructureDefinition/resprate", "9279-1", &["86290005"]),
    (
        "http://hl7.org/fhir/StructureDefinition/heartrate",
        "8867-4",
        &["364075005", "249043002", "444981005", "399017001", "251670001", "429525003", "429614003"],
    ),
    (
        "http://hl7.org/fhir/StructureDefinition/oxygensat",
        "2708-6",
        &["103228002", "442349007", "442476006", "442440005", "431314004", "442734002", "713194001"],
    ),
    (
        "http://hl7.org/fhir/StructureDefinition/bodytemp",
        "8310-5",
        &[
            "386725007",
            "276885007",
            "300076005",
            "1222808002",
            "364246006",
            "307047009",
            "708499008",
            "431598003",
            "698831002",
            "698832009",
            "415882003",
            "415974002",
            "415929009",
            "415945006",
        ],
    ),
    (
        "http://hl7.org/fhir/StructureDefinition/bodyheight",
        "8302-2",
        &["1153637007", "1162419008", "50373000", "1162418000", "1230278008", "1162392001", "1162417005"],
    ),
    ("http://hl7.org/fhir/StructureDefinition/headcircum", "9843-4", &["363812007", "169876006", "1269262007"]),
    (
        "http://hl7.org/fhir/StructureDefinition/bodyweight",
        "29463-7",
        &["27113001", "735395000", "425024002", "424927000", "784399000", "1162416001", "1162415002"],
    ),
    ("http://hl7.org/fhir/StructureDefinition/bmi", "39156-5", &["60621009"]),
    (
        "http://hl7.org/fhir/StructureDefinition/bp",
        "85354-9",
        &[
            "75367002",
            "251076008",
            "163033001",
            "163035008",
            "386534000",
            "386536003",
            "271649006",
            "271650006",
            "407556006",
            "407554009",
            "716579001",
            "399304008",
        ],
    ),
];

/// The core vital-signs profile an Observation's code implies (see
/// `VITAL_SIGNS`), if any.
pub(crate) fn implied_vital_sign(code: &Value) -> Option<&'static str> {
    let codings = code["coding"].as_array()?;
    let codes =
        |system: &'static str| codings.iter().filter(move |c| c["system"] == system).filter_map(|c| c["code"].as_str());
    let mut loinc = codes("http://loinc.org").peekable();
    let sign = if loinc.peek().is_some() {
        loinc.find_map(|code| VITAL_SIGNS.iter().find(|(_, own, _)| *own == code))
    } else {
        codes("http://snomed.info/sct").find_map(|code| VITAL_SIGNS.iter().find(|(_, _, sct)| sct.contains(&code)))
    };
    sign.map(|(url, _, _)| *url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::{snomed, Model};
    use serde_json::json;

    #[test]
    fn every_vital_sign_names_a_core_profile_and_well_formed_codes() {
        let model = Model::bundled();
        for (url, loinc, sct) in VITAL_SIGNS {
            assert!(model.profile(url).is_some(), "{url}");
            let own = json!({"coding": [{"system": "http://loinc.org", "code": loinc}]});
            assert_eq!(implied_vital_sign(&own), Some(*url));
            assert!(sct.iter().all(|c| snomed::is_concept_id(c)), "{url}");
        }
    }

    #[test]
    fn a_sign_is_known_by_its_loinc_code_or_only_snomed_ct() {
        let code = |system: &str, code: &str| json!({"coding": [{"system": system, "code": code}]});
        let loinc = "http://loinc.org";
        let sct = "http://snomed.info/sct";
        let bp = Some("http://hl7.org/fhir/StructureDefinition/bp");
        assert_eq!(implied_vital_sign(&code(loinc, "85354-9")), bp);
        // A more specific LOINC code alone names no sign (see VITAL_SIGNS).
        assert_eq!(implied_vital_sign(&code(loinc, "76534-7")), None);
        assert_eq!(implied_vital_sign(&code(loinc, "8331-1")), None);
        assert_eq!(
            implied_vital_sign(&code(sct, "276885007")),
            Some("http://hl7.org/fhir/StructureDefinition/bodytemp")
        );
        assert_eq!(implied_vital_sign(&code(sct, "60621009")), Some("http://hl7.org/fhir/StructureDefinition/bmi"));
        // With a LOINC code, SNOMED CT is not consulted; a lab code, another
        // system or no code names no sign.
        let both = json!({"coding": [{"system": sct, "code": "276885007"}, {"system": loinc, "code": "29463-7"}]});
        assert_eq!(implied_vital_sign(&both), Some("http://hl7.org/fhir/StructureDefinition/bodyweight"));
        let specific = json!({"coding": [{"system": sct, "code": "276885007"}, {"system": loinc, "code": "8331-1"}]});
        assert_eq!(implied_vital_sign(&specific), None);
        assert_eq!(implied_vital_sign(&code(loinc, "2339-0")), None);
        assert_eq!(implied_vital_sign(&code("http://example.org", "8310-5")), None);
        assert_eq!(implied_vital_sign(&json!({"text": "temperature"})), None);
    }
}
