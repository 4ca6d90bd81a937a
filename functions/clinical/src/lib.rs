//! The clinical Lambda: FHIR REST for Immunization and Observation, records
//! that live in a patient's compartment. Routing and HTTP mapping only; the
//! use cases are `Services::*_record` in `medrec_shared::service::clinical`.

use lambda_http::{Body, Response};
use medrec_shared::audit::AuditEntry;
use medrec_shared::config::Config;
use medrec_shared::error::Error;
use medrec_shared::lambda::{Api, Ctx, Route};
use medrec_shared::rest;
use medrec_shared::runtime::{BootError, Runtime};

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/Immunization", interaction: "create" },
    Route { method: "GET", path: "/fhir/Immunization", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/Immunization/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Immunization/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Immunization/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Immunization/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Immunization/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Immunization/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Immunization/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "POST", path: "/fhir/Observation", interaction: "create" },
    Route { method: "GET", path: "/fhir/Observation", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/Observation/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Observation/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Observation/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Observation/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Observation/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Observation/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Observation/{id}/_history/{vid}", interaction: "vread" },
];

pub struct App {
    rt: Runtime,
}

impl App {
    /// Cold start in Lambda: config from the environment, validated.
    pub async fn from_env() -> Result<Self, BootError> {
        medrec_shared::log::init();
        Self::new(Config::from_env()?).await
    }

    pub async fn new(config: Config) -> Result<Self, BootError> {
        medrec_shared::fhir::validator::model();
        Ok(App { rt: Runtime::from_config(config).await? })
    }
}

impl Api for App {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn serve<'a>(
        &'a self,
        ctx: Ctx<'a>,
        audit: &'a mut AuditEntry,
    ) -> impl std::future::Future<Output = Result<Response<Body>, Error>> + Send + 'a {
        rest::serve_compartment_record(&self.rt, ctx, audit)
    }
}
