//! The clinical Lambda: FHIR REST for Immunization and Observation, records
//! that live in a patient's compartment. Routes only; the REST edge is
//! `medrec_shared::rest::CompartmentApi`, the use cases
//! `medrec_shared::service::clinical`.

use medrec_shared::config::Config;
use medrec_shared::lambda::Route;
use medrec_shared::rest::CompartmentApi;
use medrec_shared::runtime::BootError;

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/Immunization", interaction: "create" },
    Route { method: "GET", path: "/fhir/Immunization", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/Immunization", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Immunization", interaction: "delete" },
    Route { method: "POST", path: "/fhir/Immunization/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Immunization/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Immunization/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Immunization/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Immunization/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Immunization/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Immunization/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "POST", path: "/fhir/Observation", interaction: "create" },
    Route { method: "GET", path: "/fhir/Observation", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/Observation", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Observation", interaction: "delete" },
    Route { method: "POST", path: "/fhir/Observation/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Observation/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Observation/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Observation/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Observation/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Observation/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Observation/{id}/_history/{vid}", interaction: "vread" },
];

/// The handler, built once at cold start.
pub async fn app(config: Config) -> Result<CompartmentApi, BootError> {
    CompartmentApi::new(config, ROUTES).await
}
