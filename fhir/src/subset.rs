//! `_summary` and `_elements`: a resource cut down to what the client asked
//! for, tagged SUBSETTED so that nobody mistakes it for the whole record.
//! Applied to top-level elements (nested summaries are not cut).

use super::validator::model;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The elements the definitions mark `isSummary`, plus mandatory ones.
    True,
    /// Narrative, identity and mandatory elements.
    Text,
    /// Everything but the narrative.
    Data,
    /// No resources, only the total.
    Count,
    False,
}

impl Summary {
    pub fn parse(v: &str) -> Option<Summary> {
        Some(match v {
            "true" => Summary::True,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            "false" => Summary::False,
            _ => return None,
        })
    }
}

/// Is `key` (a JSON property) the element `name` (`value[x]` for choices)?
fn is_element(key: &str, name: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    match name.strip_suffix("[x]") {
        Some(stem) => key.strip_prefix(stem).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
        None => key == name,
    }
}

/// The top-level element names of a type, for checking `_elements`.
pub fn element_names(resource_type: &str) -> Vec<String> {
    model().children_of(resource_type).into_iter().map(|e| e.name).collect()
}

/// Cuts `resource` down; returns whether anything was cut off.
pub fn apply(resource: &mut Value, summary: Summary, elements: Option<&[String]>) -> bool {
    let ty = resource["resourceType"].as_str().unwrap_or_default().to_owned();
    let children = model().children_of(&ty);
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let info = children.iter().find(|c| is_element(key, &c.name));
        let mandatory = info.is_some_and(|c| c.min > 0);
        match (elements, summary) {
            (Some(list), _) => mandatory || list.iter().any(|n| is_element(key, n)),
            (None, Summary::True) => mandatory || info.is_some_and(|c| c.summary),
            (None, Summary::Text) => mandatory || key == "text",
            (None, Summary::Data) => key != "text",
            (None, _) => true,
        }
    };
    let Some(obj) = resource.as_object_mut() else { return false };
    let before = obj.len();
    obj.retain(|k, _| keep(k));
    let cut = obj.len() < before;
    if cut {
        let meta = obj.entry("meta").or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            let tags = m.entry("tag").or_insert_with(|| json!([]));
            if let Some(t) = tags.as_array_mut() {
                t.push(
                    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}),
                );
            }
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "name": [{"family": "F"}], "birthDate": "1961-07-13", "photo": [{"contentType": "image/png"}],
            "multipleBirthInteger": 2, "_birthDate": {"extension": []}})
    }

    #[test]
    fn summary_keeps_summary_elements_and_tags_the_cut() {
        let mut p = patient();
        assert!(apply(&mut p, Summary::True, None));
        assert!(p.get("name").is_some() && p.get("birthDate").is_some() && p.get("_birthDate").is_some());
        assert!(p.get("photo").is_none() && p.get("text").is_none() && p.get("multipleBirthInteger").is_none());
        assert_eq!(p["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn text_data_and_elements() {
        let mut p = patient();
        apply(&mut p, Summary::Text, None);
        assert_eq!(p.as_object().unwrap().keys().cloned().collect::<Vec<_>>(), ["id", "meta", "resourceType", "text"]);
        let mut p = patient();
        apply(&mut p, Summary::Data, None);
        assert!(p.get("text").is_none() && p.get("photo").is_some());
        let mut p = patient();
        apply(&mut p, Summary::False, Some(&["multipleBirth[x]".into()]));
        assert!(p.get("multipleBirthInteger").is_some() && p.get("name").is_none());
        let mut p = patient();
        assert!(!apply(&mut p, Summary::False, None), "nothing cut, no tag");
        assert!(p["meta"].get("tag").is_none());
    }
}
