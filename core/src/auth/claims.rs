//! The claims Cognito adds to a user's tokens (its pre-token-generation
//! trigger), which say who the user is in FHIR terms: `fhirUser` from the
//! user's `custom:fhirUser` attribute (which only administrators set: the
//! app client cannot write it, or a user could name themself someone a
//! consent does not refuse), and for a patient their `patient` context.
//! Locally, `medrec dev-token` mints the same claims.

use super::jwt::fhir_user_reference;
use std::collections::HashMap;

/// The user attribute holding the person the user is.
pub const FHIR_USER_ATTRIBUTE: &str = "custom:fhirUser";

/// (claim, value) pairs to add to the user's access and ID tokens. A
/// missing or malformed attribute adds nothing: such a token names no
/// person, and refusals naming a person bind it (`crate::consent`).
pub fn person_claims(attributes: &HashMap<String, String>, groups: &[String]) -> Vec<(&'static str, String)> {
    let Some(user) = attributes.get(FHIR_USER_ATTRIBUTE).and_then(|u| fhir_user_reference(u)) else {
        return vec![];
    };
    let mut claims = vec![];
    // A patient's own compartment is their launch context; nobody else's
    // fhirUser gives them one.
    if let Some(id) = user.strip_prefix("Patient/") {
        if groups.iter().any(|g| g == "patient") {
            claims.push(("patient", id.to_owned()));
        }
    }
    claims.push(("fhirUser", user));
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(user: &str) -> HashMap<String, String> {
        HashMap::from([(FHIR_USER_ATTRIBUTE.to_owned(), user.to_owned()), ("email".into(), "x@example.org".into())])
    }

    #[test]
    fn people_get_their_reference_and_patients_their_compartment() {
        let staff = person_claims(&attrs("Practitioner/dr-1"), &["clinician".into()]);
        assert_eq!(staff, vec![("fhirUser", "Practitioner/dr-1".to_owned())]);
        let absolute = person_claims(&attrs("https://ehr.example/fhir/Practitioner/dr-1"), &[]);
        assert_eq!(absolute, vec![("fhirUser", "Practitioner/dr-1".to_owned())]);
        let patient = person_claims(&attrs("Patient/p1"), &["patient".into()]);
        assert_eq!(patient, vec![("patient", "p1".to_owned()), ("fhirUser", "Patient/p1".to_owned())]);
        let staff_as_patient = person_claims(&attrs("Patient/p1"), &["clinician".into()]);
        assert_eq!(
            staff_as_patient,
            vec![("fhirUser", "Patient/p1".to_owned())],
            "no launch context from a reference alone"
        );
        for bad in ["", "Practitioner/", "Organization/o1", "Practitioner/../x", "Practitioner/a b", "Device/d1"] {
            assert!(person_claims(&attrs(bad), &["patient".into()]).is_empty(), "{bad}");
        }
        assert!(person_claims(&HashMap::new(), &[]).is_empty());
    }
}
