//! The patients Lambda: FHIR R4 REST for Patient (a row of the resource
//! table, served by the same REST edge as every record type), its
//! `$everything`, and the CapabilityStatement. Routes only; the REST edge is
//! `medrec_edge::rest::CompartmentApi`, the use cases
//! `medrec_edge::service::clinical` and `service::patients` (search).

use medrec_edge::config::Settings;
use medrec_edge::lambda::Route;
use medrec_edge::rest::CompartmentApi;
use medrec_edge::runtime::BootError;

/// Every route this function serves. template.yaml declares the same routes;
/// a test keeps the two in step.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/fhir/metadata", interaction: "capabilities" },
    Route { method: "POST", path: "/fhir/Patient", interaction: "create" },
    Route { method: "GET", path: "/fhir/Patient", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/Patient", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Patient", interaction: "delete" },
    Route { method: "POST", path: "/fhir/Patient/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Patient/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Patient/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Patient/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Patient/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Patient/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Patient/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "GET", path: "/fhir/Patient/{id}/{operation}", interaction: "operation" },
];

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<CompartmentApi, BootError> {
    CompartmentApi::new(settings.config.clone(), ROUTES).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use medrec_edge::error::Error;
    use medrec_edge::lambda;

    #[test]
    fn routing() {
        let route = |m, p| lambda::route(ROUTES, m, p);
        assert_eq!(route("GET", "/fhir/Patient/abc").unwrap().0.interaction, "read");
        assert_eq!(route("GET", "/fhir/Patient/abc/_history/2").unwrap().1, vec!["abc", "2"]);
        assert_eq!(route("POST", "/fhir/Patient/_search").unwrap().0.interaction, "search-type");
        assert!(matches!(route("POST", "/fhir/Patient/abc"), Err(Error::MethodNotAllowed)));
        assert!(matches!(route("GET", "/fhir/Observation"), Err(Error::NotFound)));
        assert!(route("POST", "/fhir/Patient/$validate").is_err(), "served by the validation function");
    }
}
