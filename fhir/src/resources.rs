//! The resource table: every type of the R4 Patient compartment medrec
//! stores as a compartment record, with the element that names its patient
//! and its search parameters, and the directory types (shared resources a
//! record references, in no patient's compartment), generated from the R4
//! definitions
//! (`medrec gen-resource-table`, resource-table.json). Routes, the
//! CapabilityStatement, the OpenAPI document and search all read it, so a
//! type is served everywhere or nowhere.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// The compartment's owner: its own compartment, found across
    /// compartments by the parameters its blind index serves.
    pub patient: ResourceDef,
    pub types: Vec<ResourceDef>,
    /// Shared resources (Practitioner, Organization, Location...): one
    /// directory, readable by staff, in no patient's compartment.
    pub directory: Vec<ResourceDef>,
    /// Compartment types that are not compartment records, and why.
    pub not_served: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDef {
    #[serde(rename = "type")]
    pub name: String,
    /// The reference element naming the record's patient (`subject`,
    /// `patient`...); none for a directory type.
    #[serde(default)]
    pub compartment: Option<String>,
    pub params: Vec<SearchParam>,
    /// Parameters of the type whose expressions the server cannot evaluate
    /// exactly (composites, `where` on values): refused, not half-served.
    pub left_out: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct SearchParam {
    pub name: String,
    /// token, string, date, reference, quantity, uri or number.
    #[serde(rename = "type")]
    pub kind: String,
    pub paths: Vec<ParamPath>,
}

/// An element a parameter searches: JSON names from the resource root, the
/// element's FHIR type, and the type a reference must target.
#[derive(Debug, Deserialize)]
pub struct ParamPath {
    pub path: Vec<String>,
    pub of: String,
    pub target: Option<String>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let json = crate::embedded::inflate(crate::embedded::RESOURCE_TABLE);
    serde_json::from_str(&json).expect("resource-table.json is generated and checked in CI")
});

static COMMON: LazyLock<Vec<SearchParam>> = LazyLock::new(|| {
    let param = |name: &str, kind: &str, path: &[&str], of: &str| SearchParam {
        name: name.to_owned(),
        kind: kind.to_owned(),
        paths: vec![ParamPath { path: path.iter().map(|s| s.to_string()).collect(), of: of.to_owned(), target: None }],
    };
    vec![
        param("_id", "token", &["id"], "id"),
        param("_lastUpdated", "date", &["meta", "lastUpdated"], "instant"),
        param("_tag", "token", &["meta", "tag"], "Coding"),
        param("_profile", "uri", &["meta", "profile"], "canonical"),
        param("_security", "token", &["meta", "security"], "Coding"),
    ]
});

pub fn table() -> &'static Table {
    &TABLE
}

/// The Patient's row.
pub fn patient_type() -> &'static ResourceDef {
    &TABLE.patient
}

/// The compartment record type of that name, if medrec stores it.
pub fn compartment_type(name: &str) -> Option<&'static ResourceDef> {
    TABLE.types.iter().find(|t| t.name == name)
}

/// The directory type of that name, if medrec serves it.
pub fn directory_type(name: &str) -> Option<&'static ResourceDef> {
    TABLE.directory.iter().find(|t| t.name == name)
}

/// The type of that name the resource table serves: the Patient, a
/// compartment record or a directory resource.
pub fn served_type(name: &str) -> Option<&'static ResourceDef> {
    served_types().find(|t| t.name == name)
}

/// Every type of the table: the Patient, the compartment's, then the directory's.
pub fn served_types() -> impl Iterator<Item = &'static ResourceDef> {
    std::iter::once(&TABLE.patient).chain(&TABLE.types).chain(&TABLE.directory)
}

/// The parameters every type has (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`).
pub fn common_params() -> &'static [SearchParam] {
    &COMMON
}

impl ResourceDef {
    /// A parameter of this type, its own or a common one.
    pub fn param(&self, name: &str) -> Option<&SearchParam> {
        self.params.iter().chain(common_params()).find(|p| p.name == name)
    }

    /// The parameters `_sort` takes: every one but references and uris,
    /// which have no order.
    pub fn sortable_params(&self) -> impl Iterator<Item = &SearchParam> {
        self.all_params().filter(|p| !matches!(p.kind.as_str(), "reference" | "uri"))
    }

    /// Every parameter of this type, common ones first.
    pub fn all_params(&self) -> impl Iterator<Item = &SearchParam> {
        common_params().iter().chain(&self.params)
    }

    /// The reference parameters that name the record's patient: what
    /// `_include` follows to the Patient and `_revinclude` back from it.
    pub fn patient_params(&self) -> impl Iterator<Item = &SearchParam> + Clone {
        self.params.iter().filter(|p| {
            p.kind == "reference"
                && !p.paths.is_empty()
                && p.paths.iter().all(|x| Some(x.path.join(".")) == self.compartment)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_whole_compartment_with_its_patient_elements() {
        let t = table();
        assert!(t.types.len() >= 55, "{} types", t.types.len());
        let element = |ty: &str| compartment_type(ty).and_then(|d| d.compartment.as_deref());
        assert_eq!(element("Observation"), Some("subject"));
        assert_eq!(element("Immunization"), Some("patient"));
        assert_eq!(element("Coverage"), Some("beneficiary"), "the required reference, not policyHolder");
        assert_eq!(element("Task"), Some("for"));
        for ty in t.not_served.keys() {
            assert!(compartment_type(ty).is_none(), "{ty}");
        }
        assert_eq!(element("Appointment"), Some("participant.actor"), "in a backbone element");
        for ty in ["Group", "Person", "AuditEvent"] {
            assert!(t.not_served.contains_key(ty), "{ty}");
        }
    }

    #[test]
    fn the_directory_is_apart_from_the_compartment() {
        for ty in ["Practitioner", "PractitionerRole", "Organization", "Location", "Medication", "Device"] {
            let def = directory_type(ty).unwrap_or_else(|| panic!("{ty}"));
            assert!(def.compartment.is_none() && compartment_type(ty).is_none(), "{ty}");
            assert!(std::ptr::eq(served_type(ty).unwrap(), def));
        }
        let name = directory_type("Practitioner").unwrap().param("name").unwrap();
        assert_eq!(name.kind, "string");
        assert_eq!(directory_type("Practitioner").unwrap().patient_params().count(), 0);
        assert!(served_types().count() == 1 + table().types.len() + table().directory.len());
    }

    #[test]
    fn the_patient_is_a_row_with_the_parameters_its_index_serves() {
        let patient = served_type("Patient").unwrap();
        assert!(patient.compartment.is_none() && compartment_type("Patient").is_none());
        assert!(directory_type("Patient").is_none() && !table().not_served.contains_key("Patient"));
        let names: Vec<&str> = patient.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["birthdate", "family", "gender", "given", "identifier", "name"]);
        assert!(patient.left_out.contains(&"address".to_owned()) && patient.left_out.contains(&"phone".to_owned()));
        assert_eq!(patient.param("family").unwrap().paths[0].path, ["name", "family"]);
    }

    #[test]
    fn parameters_are_element_paths_with_choices_named() {
        let obs = compartment_type("Observation").unwrap();
        let date = obs.param("date").unwrap();
        let paths: Vec<String> = date.paths.iter().map(|p| p.path.join(".")).collect();
        assert!(paths.contains(&"effectiveDateTime".to_owned()) && paths.contains(&"effectivePeriod".to_owned()));
        let patient = obs.param("patient").unwrap();
        assert_eq!(patient.paths[0].target.as_deref(), Some("Patient"));
        let names: Vec<&str> = obs.patient_params().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["patient", "subject"]);
        let doc = compartment_type("DocumentReference").unwrap();
        let ct = doc.param("contenttype").unwrap();
        assert_eq!(ct.paths[0].path, ["content", "attachment", "contentType"], "paths go on into data types");
        assert!(obs.param("_lastUpdated").is_some() && obs.param("code-value-quantity").is_none());
        assert!(obs.left_out.contains(&"code-value-quantity".to_owned()));
    }
}
