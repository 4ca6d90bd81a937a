//! The immunization registry (IRIS) integration: what medrec sends (a
//! vaccination with the patient demographics the registry matches on: a
//! public-health disclosure, 45 CFR 164.512(b), audited as such), what it
//! gets back (the registry's history of the patient), and the two wire
//! formats registries speak (HL7 v2.5.1 and FHIR JSON).

pub mod hl7;
pub mod resilience;
pub mod sign;

use serde_json::Value;

/// The item (in the processed-events table) where the registry sync
/// reports its breakers for `GET /health`.
pub const HEALTH_KEY: &str = "HEALTH#registry-sync";

/// One vaccination as the registry needs it: dates as HL7 `YYYYMMDD`.
#[derive(Debug, Clone, PartialEq)]
pub struct VaccinationRecord {
    pub patient_id: String,
    pub family: String,
    pub given: Vec<String>,
    pub birth_date: String,
    /// F, M or U (HL7 table 0001).
    pub sex: String,
    pub immunization_id: String,
    pub cvx: String,
    pub cvx_display: String,
    pub occurrence: String,
    pub lot: Option<String>,
    pub expiration: Option<String>,
    pub dose_ml: Option<f64>,
    /// Administered here (`00`) or historical (`01`).
    pub primary_source: bool,
    /// RXA-20: CP complete, RE refused, NA not administered, PA partial.
    pub completion: &'static str,
    /// An entered-in-error or deleted record: RXA-21 `D`.
    pub deleted: bool,
}

/// A dose in the registry's history of a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryDose {
    pub registry_id: String,
    pub date: String,
    pub cvx: String,
    pub lot: Option<String>,
    pub completion: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the patient lacks {0}, which the registry requires")]
    MissingDemographic(&'static str),
    #[error("the immunization lacks {0}")]
    MissingImmunization(&'static str),
}

fn hl7_date(fhir: &str) -> String {
    fhir.chars().take(10).filter(char::is_ascii_digit).collect()
}

impl VaccinationRecord {
    /// From the stored Patient and Immunization (FHIR R4).
    pub fn from_fhir(patient: &Value, immunization: &Value, deleted: bool) -> Result<Self, RecordError> {
        let name =
            patient["name"].as_array().and_then(|n| n.iter().find(|n| n["use"] == "official").or_else(|| n.first()));
        let family =
            name.and_then(|n| n["family"].as_str()).ok_or(RecordError::MissingDemographic("a family name"))?.to_owned();
        let given = name
            .and_then(|n| n["given"].as_array())
            .map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let birth_date =
            hl7_date(patient["birthDate"].as_str().ok_or(RecordError::MissingDemographic("a birth date"))?);
        let sex = match patient["gender"].as_str() {
            Some("female") => "F",
            Some("male") => "M",
            _ => "U",
        };
        let coding = immunization["vaccineCode"]["coding"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["system"] == crate::fhir::cvx::SYSTEM))
            .ok_or(RecordError::MissingImmunization("a CVX vaccine code"))?;
        let cvx = coding["code"].as_str().ok_or(RecordError::MissingImmunization("a CVX vaccine code"))?.to_owned();
        let occurrence = hl7_date(
            immunization["occurrenceDateTime"]
                .as_str()
                .ok_or(RecordError::MissingImmunization("an occurrence date"))?,
        );
        let dose_ml = match (&immunization["doseQuantity"]["value"], immunization["doseQuantity"]["code"].as_str()) {
            (Value::Number(n), Some("mL")) => n.as_f64(),
            _ => None,
        };
        let completion = match immunization["status"].as_str() {
            Some("not-done") => {
                if immunization["statusReason"]["coding"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["code"] == "PATOBJ"))
                {
                    "RE"
                } else {
                    "NA"
                }
            }
            _ => "CP",
        };
        Ok(VaccinationRecord {
            patient_id: patient["id"].as_str().unwrap_or_default().to_owned(),
            family,
            given,
            birth_date,
            sex: sex.into(),
            immunization_id: immunization["id"].as_str().unwrap_or_default().to_owned(),
            cvx_display: coding["display"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| crate::fhir::cvx::display(&cvx).map(str::to_owned))
                .unwrap_or_default(),
            cvx,
            occurrence,
            lot: immunization["lotNumber"].as_str().map(str::to_owned),
            expiration: immunization["expirationDate"].as_str().map(hl7_date),
            dose_ml,
            primary_source: immunization["primarySource"].as_bool().unwrap_or(true),
            completion,
            deleted: deleted || immunization["status"] == "entered-in-error",
        })
    }

    /// A patient alone, as a history query names them.
    pub fn subject(patient: &Value) -> Result<Self, RecordError> {
        let placeholder = serde_json::json!({
            "vaccineCode": {"coding": [{"system": crate::fhir::cvx::SYSTEM, "code": ""}]},
            "occurrenceDateTime": "",
        });
        Self::from_fhir(patient, &placeholder, false)
    }

    /// The FHIR transport's body: the Immunization with the demographics the
    /// registry matches on as a contained Patient, identified by medrec's ids.
    pub fn to_fhir(&self) -> Value {
        let mut v = self.fhir_body();
        if self.lot.is_none() {
            v.as_object_mut().expect("an object").remove("lotNumber");
        }
        v
    }

    fn fhir_body(&self) -> Value {
        let date = |d: &str| if d.len() == 8 { format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]) } else { d.to_owned() };
        let gender = match self.sex.as_str() {
            "F" => "female",
            "M" => "male",
            _ => "unknown",
        };
        serde_json::json!({
            "resourceType": "Immunization",
            "identifier": [{"system": "urn:medrec:immunization", "value": self.immunization_id}],
            "status": if self.deleted { "entered-in-error" } else if self.completion == "CP" { "completed" } else { "not-done" },
            "vaccineCode": {"coding": [{"system": crate::fhir::cvx::SYSTEM, "code": self.cvx}]},
            "contained": [{"resourceType": "Patient", "id": "p",
                "identifier": [{"system": "urn:medrec:patient", "value": self.patient_id}],
                "name": [{"family": self.family, "given": self.given}],
                "birthDate": date(&self.birth_date), "gender": gender}],
            "patient": {"reference": "#p"},
            "occurrenceDateTime": date(&self.occurrence),
            "primarySource": self.primary_source,
            "lotNumber": self.lot,
        })
    }
}
