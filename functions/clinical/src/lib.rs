//! The clinical Lambda: FHIR REST for every record type of a patient's
//! compartment in the resource table, on generic `/fhir/{type}` routes,
//! the history of a whole compartment (`/fhir/_history`), and batch
//! Bundles at the base URL (`POST /fhir`), whose entries are those records'
//! requests and documents' (DocumentReference, Binary).
//! Routes only; the REST edge is `medrec_edge::rest::CompartmentApi`, the
//! use cases `medrec_edge::service::clinical`.

use medrec_edge::config::Settings;
use medrec_edge::lambda::Route;
use medrec_edge::rest::CompartmentApi;
use medrec_edge::runtime::BootError;

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/{type}", interaction: "create" },
    Route { method: "GET", path: "/fhir/{type}", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/{type}", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/{type}", interaction: "delete" },
    Route { method: "POST", path: "/fhir/{type}/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/{type}/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/{type}/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/{type}/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/{type}/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/{type}/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/{type}/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "GET", path: "/fhir/_history", interaction: "history-system" },
    Route { method: "POST", path: "/fhir", interaction: "batch" },
];

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<CompartmentApi, BootError> {
    Ok(CompartmentApi::new(settings.config.clone(), ROUTES).await?.with_documents(settings.documents()?))
}
