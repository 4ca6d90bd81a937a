//! The consent Lambda: FHIR REST for Consent, in the patient's compartment
//! like every record. Status changes raise ConsentGranted / ConsentRevoked;
//! enforcement happens in every function at access time
//! (`medrec_edge::consent`). Routes only; the REST edge is
//! `medrec_edge::rest::CompartmentApi`.

use medrec_edge::config::Settings;
use medrec_edge::lambda::Route;
use medrec_edge::rest::CompartmentApi;
use medrec_edge::runtime::BootError;

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/Consent", interaction: "create" },
    Route { method: "GET", path: "/fhir/Consent", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/Consent", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Consent", interaction: "delete" },
    Route { method: "POST", path: "/fhir/Consent/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Consent/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Consent/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Consent/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Consent/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Consent/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Consent/{id}/_history/{vid}", interaction: "vread" },
];

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<CompartmentApi, BootError> {
    CompartmentApi::new(settings.config.clone(), ROUTES).await
}
